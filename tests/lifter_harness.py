"""In-process harness for the lifter node's tests: the real LifterNode and a probe node that
publishes real keypoint messages and records everything the lifter publishes, in one rclpy
context spun by the test."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

# Logs to a temp dir, and no discovery outside this process (set before rclpy starts).
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="diffhpe_roslog_"))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "OFF"

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from keypoint_stream import FX, FY, HEIGHT, WIDTH  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from diffhpe_ros import conversions as cv  # noqa: E402
from diffhpe_ros.lifter_node import DIAGNOSTIC_NAME, LifterNode  # noqa: E402

T0_S = 1000.0  # first input stamp


class Harness:
    """LifterNode(params) + a probe; `send` publishes keypoints, `spin_until` waits for output."""

    def __init__(self, context, model_path, **overrides):
        self.context = context
        values = {"model_path": str(model_path), "diagnostics_period_s": 0.2,
                  "keypoint_format": "h36m17", "max_output_rate_hz": 0.0, **overrides}
        self.node = LifterNode(context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in values.items()])
        self.probe = rclpy.create_node("probe", context=context)
        self.pub = self.probe.create_publisher(PoseArray, "keypoints2d", qos_profile_sensor_data)
        self.info_pub = self.probe.create_publisher(CameraInfo, "camera_info", QoSProfile(depth=10))
        self.poses: list[PoseArray] = []
        self.points: list[PointCloud2] = []
        self.markers: list[MarkerArray] = []
        self.diagnostics: list[DiagnosticArray] = []
        qos = QoSProfile(depth=1000)
        self.probe.create_subscription(PoseArray, "pose3d", self.poses.append, qos)
        self.probe.create_subscription(PointCloud2, "pose3d/points", self.points.append, qos)
        self.probe.create_subscription(MarkerArray, "pose3d/markers", self.markers.append, qos)
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, qos)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.sent_stamps: list[float] = []
        self.spin_until(lambda: self.pub.get_subscription_count() > 0, 5.0)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()

    def spin_until(self, done, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.01)
        return done()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def send(self, stamp_s: float, points_px, conf=None, frame_id="cam_optical"):
        """Publish one frame: points (P, K, 2) px, conf (P, K) (default 1)."""
        points_px = np.asarray(points_px, dtype=np.float64)
        conf = np.ones(points_px.shape[:2]) if conf is None else conf
        msg = cv.keypoints_to_pose_array(points_px, conf, Header(stamp=cv.s_to_stamp(stamp_s),
                                                                 frame_id=frame_id))
        self.pub.publish(msg)
        self.sent_stamps.append(stamp_s)
        return msg

    def send_raw(self, msg: PoseArray, stamp_s: float):
        msg.header.stamp = cv.s_to_stamp(stamp_s)
        self.pub.publish(msg)
        self.sent_stamps.append(stamp_s)

    def send_camera_info(self, fx=FX, fy=FY, width=WIDTH, height=HEIGHT):
        msg = CameraInfo(width=width, height=height)
        msg.k = [fx, 0.0, width / 2, 0.0, fy, height / 2, 0.0, 0.0, 1.0]
        self.info_pub.publish(msg)
        return msg

    def stream(self, frames_px, fps=30.0, t0_s=T0_S, wait_each=True, conf=None):
        """Send (T, P, K, 2) frames at `fps` stamps; with wait_each, wait for each one's output
        (no drops) - else send as fast as possible."""
        for i, pts in enumerate(frames_px):
            before = self.counts()
            self.send(t0_s + i / fps, pts, None if conf is None else conf[i])
            if wait_each:
                assert self.wait_for_output(before), f"no output for frame {i}"
            else:
                self.executor.spin_once(timeout_sec=0.0)

    def received(self) -> int:
        """keypoints2d messages the node received so far (good or bad)."""
        return self.node.core.counters()["received_frames"]

    def counts(self) -> tuple[int, int, int]:
        """Messages received on pose3d, pose3d/points, pose3d/markers (compared elementwise)."""
        return len(self.poses), len(self.points), len(self.markers)

    def wait_for_output(self, after: tuple[int, int, int], timeout_s: float = 10.0) -> bool:
        """Wait until each output topic received a message more than the counts in `after`."""
        return self.spin_until(lambda: all(c > a for c, a in zip(self.counts(), after)), timeout_s)

    def latest_diagnostics(self, timeout_s=2.0) -> dict[str, str]:
        """Values of a diagnostics message published after this call."""
        n = len(self.diagnostics)
        assert self.spin_until(lambda: len(self.diagnostics) > n, timeout_s), "no diagnostics"
        return cv.diagnostic_values(self.diagnostics[-1], DIAGNOSTIC_NAME)

    def pose_stamps(self) -> list[float]:
        return [cv.stamp_to_s(m.header.stamp) for m in self.poses]


def assert_outputs_sane(h: Harness, start: int = 0) -> None:
    """What every run must satisfy: no NaN anywhere, 17 joints per person, output stamps are input
    stamps and strictly increasing (nothing stale published as new), the three topics agree.
    start: check the outputs from this index on (after a deliberate clock reset)."""
    stamps = h.pose_stamps()[start:]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "output stamps not increasing"
    sent = {round(s, 6) for s in h.sent_stamps}
    assert all(round(s, 6) in sent for s in stamps), "an output stamp was never an input stamp"
    for msg in h.poses[start:]:
        pose = cv.pose_array_to_pose3d(msg)
        assert len(pose) >= 1 and np.isfinite(pose).all()
    for msg in h.points[start:]:
        pts = cv.point_cloud2_to_array(msg)
        assert msg.is_dense and all(np.isfinite(pts[f]).all() for f in ("x", "y", "z", "spread"))
        assert (pts["spread"] >= 0).all()
    for arr in h.markers[start:]:
        for m in arr.markers:
            if m.type == Marker.SPHERE:  # a spread ball: placed by its pose, sized by the spread
                xyz = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]])
                assert m.scale.x > 0 and np.isfinite(m.scale.x)
            else:
                xyz = np.array([[p.x, p.y, p.z] for p in m.points])
            assert len(xyz) and np.isfinite(xyz).all()
    assert [cv.stamp_to_s(m.header.stamp) for m in h.points[start:]] == stamps
    assert [cv.stamp_to_s(m.markers[0].header.stamp) for m in h.markers[start:]] == stamps

"""ROS 2 node: 2D keypoints (PoseArray) in, DiffHPE 3D poses out (PoseArray, PointCloud2, markers).

The node declares the parameters, subscribes, converts messages, calls the ROS-free core
(lifter_core.py: stamp policy, tracking, windows, output checks, counters) and publishes.
keypoints2d is taken serialized, so that its size is checked before it is deserialized: a
message of 10,000 persons is refused at once instead of stalling the executor for seconds.
Worker thread: the core lifts the newest frame, `publish_poses` sends it.
"""
from __future__ import annotations

import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from diffhpe_models.runtime import load_lifter
from diffhpe_ros import body_frames, params
from diffhpe_ros.conversions import (
    BadMessage,
    diagnostic_array,
    intrinsics_from_camera_info,
    keypoints_from_pose_array,
    pose3d_to_point_cloud2,
    pose3d_to_pose_array,
    skeleton_markers,
    stamp_to_s,
)
from diffhpe_ros.entry import run_node
from diffhpe_ros.lifter_core import LifterCore, LiftResult, Settings

DEFAULT_FRAME_ID = "camera_optical_frame"
DIAGNOSTIC_NAME = "diffhpe_ros: lifter"
# A serialized geometry_msgs/Pose is 7 float64: the byte size of a PoseArray bounds its poses.
POSE_CDR_BYTES = 56


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, missing or unusable model)."""


class LifterNode(Node):
    """The lifter. Topics (relative, so they remap): sub `keypoints2d`, `camera_info`; pub
    `pose3d`, `pose3d/points`, `pose3d/markers`, and `/diagnostics`. The logic is `self.core`."""

    def __init__(self, node_name: str = params.NODE_NAME, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        try:
            self._setup()
        except BaseException:
            super().destroy_node()  # release the half-built node: the caller gets the error
            raise

    def _setup(self) -> None:
        self._started = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        declared = self.declare_parameters("", [(p.name, p.default, params.descriptor(p))
                                                for p in params.PARAMETERS])
        s = Settings(**{p.name: p.value for p in declared})
        self.lifter = self._load_lifter(s)
        logger = self.get_logger()
        self.core = LifterCore(s, self.lifter, warn=logger.warning, info=logger.info)
        self._started = True
        for text in params.degenerate(s, self.core.fps):
            logger.warning(f"[degenerate_parameter] {text}")

        out_qos = QoSProfile(depth=10)
        self.pub_pose = self.create_publisher(PoseArray, "pose3d", out_qos)
        self.pub_points = self.create_publisher(PointCloud2, "pose3d/points", out_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "pose3d/markers", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        # REP 155 outputs, when their message packages are importable (body_frames.py)
        missing = body_frames.unavailable()
        self.pub_tf = None if "tf" in missing else self.create_publisher(
            body_frames.TFMessage, body_frames.TF_TOPIC, QoSProfile(depth=100))
        self.pub_bodies = None if "tracked_bodies" in missing else self.create_publisher(
            body_frames.IdsList, body_frames.TRACKED_BODIES_TOPIC, out_qos)
        if body_frames.unavailable_note(s.publish_tf):
            logger.info(body_frames.unavailable_note(s.publish_tf))
        self.create_subscription(PoseArray, "keypoints2d", self._on_keypoints,
                                 qos_profile_sensor_data, raw=True)
        if s.use_camera_info:
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                     qos_profile_sensor_data)
        self.create_timer(s.diagnostics_period_s, self._publish_diagnostics)

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="diffhpe_lift", daemon=True)
        self._worker.start()
        logger.info(
            f"lifting {s.keypoint_format} keypoints with {self.lifter.backend_name} "
            f"(window {self.core.window} at {self.core.fps:g} Hz, {self.lifter.hypotheses} "
            f"hypotheses, {self.lifter.steps} steps{', mirrored' if self.lifter.mirror else ''}) "
            f"from {self._model_file}")

    @property
    def settings(self) -> Settings:
        return self.core.settings

    # --- parameters ------------------------------------------------------------------------

    def _on_set_parameters(self, changed) -> SetParametersResult:
        """Refuse a bad or read-only change with the reason (rclpy has checked type and range)."""
        for p in changed:
            spec = params.SPECS.get(p.name)
            if spec is None:
                continue  # e.g. use_sim_time: not ours
            reason = params.validate(p.name, p.value)
            if reason is None and spec.read_only and self._started \
                    and p.value != getattr(self.settings, p.name):
                reason = f"{p.name} is read-only while the node runs: restart the node to change it"
            if reason is not None:
                if self._started:
                    self.get_logger().warning(f"refused parameter change: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, changed) -> None:
        """Apply accepted changes (called once the new values are set)."""
        updates = {p.name: float(p.value) if params.SPECS[p.name].kind is float else p.value
                   for p in changed if p.name in params.SPECS}
        if not self._started or not updates:
            return
        before = set(params.degenerate(self.settings, self.core.fps))
        self.core.apply(updates)
        self.get_logger().info("parameters changed: " + ", ".join(
            f"{k}={v!r}" for k, v in updates.items()))
        for text in params.degenerate(self.settings, self.core.fps):
            if text not in before:
                self.get_logger().warning(f"[degenerate_parameter] {text}")

    def _load_lifter(self, s: Settings):
        try:
            self._model_file = params.resolve_path(s.model_path)
        except FileNotFoundError as e:
            raise StartupError(f"model_path: {e}") from e
        # Expectations are checked by the runtime against the file's manifest (0: not checked).
        expected = {"window_mode": "causal"}  # live: the current frame is the window's last
        for field, key in (("expected_steps", "steps"), ("expected_hypotheses", "hypotheses"),
                           ("expected_window", "window"), ("expected_fps", "fps")):
            if getattr(s, field):
                expected[key] = getattr(s, field)
        try:
            lifter = load_lifter(str(self._model_file), backend=s.backend, expected=expected,
                                 device=s.device, seed=s.seed, max_persons=s.max_persons,
                                 intra_op_threads=s.intra_op_threads,
                                 fixed_noise=s.fixed_noise,
                                 mirror=params.mirror_enabled(s.mirror, s.device, self._model_file))
        except Exception as e:  # the loaders raise many types for corrupt files: report any
            raise StartupError(f"model_path={str(self._model_file)!r} cannot be used with "
                               f"backend {s.backend!r}: {type(e).__name__}: {e}") from e
        if lifter.backend.max_persons is not None and lifter.max_persons < s.max_persons:
            mirrored = " (mirror: 2 windows per person)" if lifter.mirror else ""
            raise StartupError(f"max_persons={s.max_persons} exceeds the {lifter.backend_name} "
                               f"engine's limit of {lifter.max_persons} persons{mirrored}: lower "
                               "max_persons or rebuild the engine")
        return lifter

    # --- input -------------------------------------------------------------------------------

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.core.on_camera_info(intrinsics_from_camera_info(msg))
        except BadMessage as e:
            self.core.count_bad(e.reason, f"camera_info ignored: {e.detail}")

    def _on_keypoints(self, data: bytes, info) -> None:
        """keypoints2d, serialized: counted (and lost messages before it, from the publication
        sequence numbers), size-checked, then deserialized, converted and handed to the core."""
        received_s = time.perf_counter()
        core = self.core
        publisher = info.get("publisher_gid")
        core.count_received(publisher["data"] if publisher else None,
                            info.get("publication_sequence_number"))
        if not core.admit_size(len(data) // POSE_CDR_BYTES):
            return
        msg = deserialize_message(data, PoseArray)
        s = self.settings
        try:
            kp = keypoints_from_pose_array(msg, core.keypoints_per_person)
        except BadMessage as e:
            core.count_bad(e.reason, f"keypoints2d message ignored: {e.detail} "
                                     f"(keypoint_format {s.keypoint_format})")
            return
        header = Header(stamp=msg.header.stamp,
                        frame_id=s.camera_frame_id or msg.header.frame_id or DEFAULT_FRAME_ID)
        if not core.on_keypoints(stamp_to_s(msg.header.stamp), kp, header, received_s) \
                and len(kp.points_px) == 0:
            self.publish_bodies(header, ())  # nobody in view: an empty list

    # --- lifting (worker thread) and output ---------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            job = self.core.slot.take(timeout_s=0.1)
            if job is None:
                continue
            try:
                result = self.core.lift(job)
                self.publish_poses(result)
                self.core.finish(result)
            except Exception as e:  # keep lifting later frames whatever one frame did
                self.core.count_bad("lift_failed", f"lifting failed: {type(e).__name__}: {e}")

    def publish_poses(self, result: LiftResult) -> None:
        """Publish one lifted frame (the persons that passed the core's output checks; nothing
        when none did): the one place where poses leave the node."""
        if len(result.track_ids) == 0:
            return
        header = result.tag
        self.pub_pose.publish(pose3d_to_pose_array(result.pose_m, header))
        self.pub_points.publish(pose3d_to_point_cloud2(result.pose_m, result.spread_m,
                                                       result.track_ids, header))
        self.pub_markers.publish(skeleton_markers(result.pose_m, result.track_ids, header,
                                                  result.marker_lifetime_s,
                                                  spread_m=result.spread_m))
        self.publish_bodies(header, result.track_ids, result.pose_m)

    def publish_bodies(self, header: Header, track_ids, pose_m=None) -> None:
        """The tracked bodies' ids and, with their poses, their tf frames (REP 155)."""
        if self.pub_bodies is not None:
            self.pub_bodies.publish(body_frames.tracked_bodies(track_ids, header))
        if pose_m is not None and self.pub_tf is not None and self.settings.publish_tf:
            frames = body_frames.body_transforms(pose_m, track_ids, header)
            if frames.transforms:
                self.pub_tf.publish(frames)

    def _publish_diagnostics(self) -> None:
        level, message, values = self.core.diagnostic_snapshot()
        self.pub_diag.publish(diagnostic_array(self.get_clock().now().to_msg(), DIAGNOSTIC_NAME,
                                               self.get_fully_qualified_name(), level, message,
                                               values))

    def destroy_node(self):
        """Stop the worker before the publishers go away."""
        if hasattr(self, "_worker"):
            self._stop.set()
            self.core.slot.close()
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point `lifter_node`: exits 2 with a clear error when it cannot start. One executor
    thread is enough: the model runs in the node's worker thread."""
    return run_node(LifterNode, params.NODE_NAME, args, startup_errors=(StartupError,))


if __name__ == "__main__":
    sys.exit(main())

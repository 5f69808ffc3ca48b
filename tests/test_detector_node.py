"""detector_node: real MediaPipe Pose on real frames of the pose2sim demo video, through ROS."""
import os
import tempfile
import time

os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="ros_log_"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from diffhpe_models.skeleton import MEDIAPIPE33_NAMES  # noqa: E402
from diffhpe_ros.conversions import keypoints_from_pose_array  # noqa: E402
from diffhpe_ros.demo_videos import demo_video  # noqa: E402
from diffhpe_ros.detector_node import DetectorNode  # noqa: E402
from diffhpe_ros.images import image_msg_from_bgr, rgb_from_image_msg  # noqa: E402

W, H = 540, 960  # the 1080x1920 video at half size


@pytest.fixture(scope="module")
def frames_bgr():
    path, _ = demo_video("pose2sim", ".cache")
    cap = cv2.VideoCapture(str(path))
    frames = []
    for i in range(60):
        ok, frame = cap.read()
        assert ok, f"{path}: frame {i} unreadable"
        if i % 10 == 0:
            frames.append(cv2.resize(frame, (W, H), interpolation=cv2.INTER_AREA))
    return frames



class Harness:
    """A camera stand-in publishing images one by one and collecting keypoints2d."""

    def __init__(self, context, **params):
        self.node = Node("camera", context=context)
        self.pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.received = []
        self.node.create_subscription(PoseArray, "keypoints2d", self.received.append, QoSProfile(depth=50))
        self.detector = DetectorNode(context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in params.items()])
        self.ex = SingleThreadedExecutor(context=context)
        self.ex.add_node(self.node)
        self.ex.add_node(self.detector)
        self.spin_until(lambda: self.pub.get_subscription_count() > 0)
        self.seq = 0

    def spin_until(self, condition, timeout_s=10.0):
        end = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)
        return condition()

    def send(self, msg: Image) -> None:
        """Publish one image and spin until the detector has handled it (good or bad)."""
        self.seq += 1
        msg.header = Header(frame_id="cam")
        msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + self.seq, 1000 * self.seq
        before = self.detector.frames + self.detector.bad_images
        self.pub.publish(msg)
        assert self.spin_until(lambda: self.detector.frames + self.detector.bad_images > before)
        self.spin_until(lambda: len(self.received) >= self.detector.frames, 2.0)


def test_finds_the_person_in_real_frames(context, frames_bgr):
    h = Harness(context)
    for frame in frames_bgr:
        h.send(image_msg_from_bgr(frame, Header()))
    assert len(h.received) == len(frames_bgr)
    name = {n: i for i, n in enumerate(MEDIAPIPE33_NAMES)}
    for i, msg in enumerate(h.received):
        assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 101 + i  # image's header
        assert len(msg.poses) == 33, "one person, 33 MediaPipe landmarks"
        kp = keypoints_from_pose_array(msg, 33)
        pts, conf = kp.points_px[0], kp.conf[0]
        assert not kp.problems
        assert np.all((pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H))
        assert np.all((conf >= 0) & (conf <= 1)) and np.median(conf) > 0.5
        # an upright person: head above shoulders above hips above knees above ankles (v down)
        v = {n: pts[name[n], 1] for n in ("nose", "left_shoulder", "left_hip", "left_knee", "left_ankle")}
        assert v["nose"] < v["left_shoulder"] < v["left_hip"] < v["left_knee"] < v["left_ankle"]
        # about the size of the walker in this video: ~1/3 of the image height, head to ankles
        assert 0.25 * H < v["left_ankle"] - v["nose"] < 0.6 * H
    h.detector.destroy_node()


def test_rgb8_and_mono8_and_bad_images(context, frames_bgr):
    h = Harness(context, static_image_mode=True, warning_throttle_s=0.0)
    frame = frames_bgr[0]
    bgr = image_msg_from_bgr(frame, Header())
    rgb = image_msg_from_bgr(np.ascontiguousarray(frame[..., ::-1]), Header())
    rgb.encoding = "rgb8"
    mono = Image(height=H, width=W, encoding="mono8", step=W + 4)  # padded rows
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    mono.data = np.pad(grey, ((0, 0), (0, 4))).tobytes()
    assert np.array_equal(rgb_from_image_msg(mono)[..., 0], grey)
    for msg in (bgr, rgb, mono):
        h.send(msg)
    assert [len(m.poses) for m in h.received] == [33, 33, 33]
    pts = [keypoints_from_pose_array(m, 33).points_px[0] for m in h.received]
    assert np.abs(pts[1] - pts[0]).max() < 1.0, "rgb8 and bgr8 of the same frame must agree"
    assert np.median(np.linalg.norm(pts[2] - pts[0], axis=-1)) < 10.0, "mono8 roughly agrees"

    wrong_encoding = image_msg_from_bgr(frame, Header())
    wrong_encoding.encoding = "16UC1"
    truncated = image_msg_from_bgr(frame, Header())
    truncated.data = bytes(truncated.data)[:1000]
    for msg in (wrong_encoding, truncated):
        h.send(msg)
    assert h.detector.bad_images == 2 and len(h.received) == 3
    h.send(image_msg_from_bgr(frame, Header()))  # still alive afterwards
    assert len(h.received) == 4 and len(h.received[-1].poses) == 33

    # nobody in the frame: an empty PoseArray, not silence
    h.send(image_msg_from_bgr(np.full((H, W, 3), 90, np.uint8), Header()))
    assert len(h.received) == 5 and len(h.received[-1].poses) == 0
    h.detector.destroy_node()


def test_image_conversion_errors_name_the_field():
    frame = np.zeros((4, 5, 3), np.uint8)
    msg = image_msg_from_bgr(frame, Header())
    msg.step = 10
    with pytest.raises(ValueError, match="step"):
        rgb_from_image_msg(msg)
    msg = image_msg_from_bgr(frame, Header())
    msg.encoding = "yuv422"
    with pytest.raises(ValueError, match="encoding"):
        rgb_from_image_msg(msg)
    msg = image_msg_from_bgr(frame, Header())
    msg.height = 5
    with pytest.raises(ValueError, match="data"):
        rgb_from_image_msg(msg)


def test_unavailable_model_complexity_is_named(context):
    from diffhpe_ros.pose_detector import landmark_model_path

    if landmark_model_path(2).is_file():
        pytest.skip("heavy model installed here")
    with pytest.raises(FileNotFoundError, match="pose_landmark_heavy"):
        DetectorNode(context=context, parameter_overrides=[Parameter("model_complexity", value=2)])


def test_paced_video_source_loses_no_frame(context):
    # video_source paced by the detector's keypoints: MediaPipe (~60 ms a frame here) is far
    # slower than the file's 60 fps, yet every frame is detected once, in order.
    from diffhpe_ros.video_source import VideoSource

    path, _ = demo_video("pose2sim", ".cache")
    n = 8
    detector = DetectorNode(context=context)
    source = VideoSource(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in {
        "video_path": str(path), "scale": 0.5, "max_frames": n, "pace_topic": "keypoints2d"}.items()])
    sink = Node("sink", context=context)
    received = []
    sink.create_subscription(PoseArray, "keypoints2d", received.append, QoSProfile(depth=50))
    ex = SingleThreadedExecutor(context=context)
    for node in (detector, sink, source):
        ex.add_node(node)
    end = time.monotonic() + 60
    while time.monotonic() < end and len(received) < n:
        ex.spin_once(timeout_sec=0.01)
    assert detector.frames == n and len(detector.detect_ms) == n and source.resent == 0
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in received]
    assert stamps == [s for s, _ in source.published] and len(stamps) == n
    assert all(len(m.poses) == 33 for m in received)
    assert np.allclose(np.diff(stamps) / 1e9, 1 / 60, atol=1e-6), "stamps in the video's time base"
    for node in (source, sink, detector):
        node.destroy_node()

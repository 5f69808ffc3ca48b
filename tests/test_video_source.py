"""video_source: real video frames out as Image + CameraInfo, at the file's rate, with stamps."""
import math
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
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from diffhpe_ros.demo_videos import demo_video  # noqa: E402
from diffhpe_ros.images import rgb_from_image_msg  # noqa: E402
from diffhpe_ros.video_source import VideoSource, guess_intrinsics  # noqa: E402


@pytest.fixture(scope="module")
def pose2sim_video():
    return demo_video("pose2sim", ".cache")


def run_source(context, params, timeout_s=30.0):
    """Start a VideoSource with `params`, collect (arrival_s, msg) of both topics until it ends."""
    images, infos = [], []
    sink = Node("sink", context=context)
    sink.create_subscription(Image, "image", lambda m: images.append((time.monotonic(), m)),
                             qos_profile_sensor_data)
    sink.create_subscription(CameraInfo, "camera_info", lambda m: infos.append(m), qos_profile_sensor_data)
    source = VideoSource(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(sink)
    ex.add_node(source)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not (source.finished.is_set() and len(infos) == len(source.published)):
        ex.spin_once(timeout_sec=0.01)
    for _ in range(20):  # deliver what is still in flight
        ex.spin_once(timeout_sec=0.01)
    return source, images, infos


def test_publishes_real_frames_at_file_rate(context, pose2sim_video):
    path, _ = pose2sim_video
    n = 24
    source, images, infos = run_source(context, {"video_path": str(path), "max_frames": n, "scale": 0.5})
    assert source.fps == pytest.approx(60.0)
    assert len(source.published) == n and len(infos) == n
    assert len(images) >= n - 2, "best-effort images: at most a couple lost in one process"

    cap = cv2.VideoCapture(str(path))
    frames = [cap.read()[1] for _ in range(n + source.skipped)]
    by_stamp = dict(source.published)
    for _, msg in images:
        assert (msg.width, msg.height, msg.encoding) == (540, 960, "bgr8")
        index = by_stamp[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec]
        expected = cv2.resize(frames[index], (540, 960), interpolation=cv2.INTER_AREA)[..., ::-1]
        assert np.array_equal(rgb_from_image_msg(msg), expected)

    stamps_s = np.array([s for s, _ in source.published]) / 1e9
    assert np.all(np.diff(stamps_s) > 0)
    # paced by the file's 60 fps: never faster; slower only when the shared CPU cannot decode
    # 1080x1920 frames in time, so only a loose upper bound here (the rate itself is checked on
    # the small video below)
    assert 0.9 / 60 < np.median(np.diff(stamps_s)) < 6 / 60
    # real time: a frame whose time has passed while decoding lagged is passed over, not sent late
    indices = [i for _, i in source.published]
    assert indices[0] == 0 and np.all(np.diff(indices) >= 1)
    assert indices[-1] + 1 == n + source.skipped

    # camera_info: same header as the image; default intrinsics are the 60 degree guess, scaled.
    fx_expected = 1080 / (2 * math.tan(math.radians(30))) * 0.5
    for info in infos:
        assert (info.width, info.height) == (540, 960)
        assert info.k[0] == pytest.approx(fx_expected) and info.k[4] == pytest.approx(fx_expected)
        assert (info.k[2], info.k[5]) == (270.0, 480.0)
        assert info.p[0] == info.k[0] and list(info.d) == [0.0] * 5
    assert {(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in images} <= {
        (m.header.stamp.sec, m.header.stamp.nanosec) for m in infos}
    source.destroy_node()


def test_intrinsics_from_parameters_and_loop(context, tmp_path):
    # A 5-frame, 30 fps video whose frame i is uniformly grey level 40*i: order is visible
    # (every frame, even on a loaded machine: drop_late_frames off).
    path = tmp_path / "five.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    source, images, infos = run_source(context, {
        "video_path": str(path), "loop": True, "max_frames": 12, "rate_factor": 2.0,
        "fx": 100.0, "cy": 20.0, "frame_id": "cam", "drop_late_frames": False})
    assert [i for _, i in source.published] == [0, 1, 2, 3, 4] * 2 + [0, 1]
    levels = [int(np.median(rgb_from_image_msg(m))) for _, m in images]
    expected = [40 * i for _, i in source.published][: len(levels)]
    assert np.allclose(levels, expected, atol=6) and len(levels) >= 10
    # rate_factor 2: 60 frames a second from a 30 fps file
    assert np.median(np.diff([s for s, _ in source.published])) / 1e9 == pytest.approx(1 / 60, rel=0.15)
    info = infos[0]
    assert info.header.frame_id == "cam"
    assert (info.k[0], info.k[4], info.k[2], info.k[5]) == (100.0, 100.0, 32.0, 20.0)
    source.destroy_node()


def test_guess_and_bad_input(context, tmp_path):
    fx, fy, cx, cy = guess_intrinsics(1000, 500, 90.0)
    assert (fx, fy, cx, cy) == (pytest.approx(500.0), pytest.approx(500.0), 500.0, 250.0)
    with pytest.raises(ValueError, match="fov_deg"):
        guess_intrinsics(1000, 500, 180.0)
    with pytest.raises(FileNotFoundError, match="video_path"):
        VideoSource(context=context, parameter_overrides=[Parameter("video_path", value=str(tmp_path / "no.mp4"))])
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="junk.mp4"):
        VideoSource(context=context, parameter_overrides=[Parameter("video_path", value=str(tmp_path / "junk.mp4"))])


def test_scale_that_leaves_no_pixel_is_refused_clearly(context, tmp_path):
    path = tmp_path / "small.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    for scale in (0.0001, 0.0, -1.0):
        with pytest.raises(ValueError, match="video_source: .*scale"):
            VideoSource(context=context, parameter_overrides=[
                Parameter("video_path", value=str(path)), Parameter("scale", value=scale)])


def grey_video(path, n, fps=30.0):
    """An n-frame video whose frame i is uniformly grey level 20*i (order is visible)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_nothing_is_published_before_a_subscriber(context, tmp_path):
    path = grey_video(tmp_path / "grey.mp4", 6)
    source = VideoSource(context=context, parameter_overrides=[
        Parameter("video_path", value=str(path)), Parameter("rate_factor", value=4.0),
        Parameter("drop_late_frames", value=False)])  # every frame, even on a loaded machine
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(source)
    end = time.monotonic() + 0.5  # 12 timer periods
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.01)
    assert source.published == [], "frames sent before anyone listened"
    images = []
    sink = Node("late_sink", context=context)
    sink.create_subscription(Image, "image", images.append, qos_profile_sensor_data)
    ex.add_node(sink)
    end = time.monotonic() + 10
    while time.monotonic() < end and not (source.finished.is_set() and len(images) >= 5):
        ex.spin_once(timeout_sec=0.01)
    assert [i for _, i in source.published] == list(range(6))
    levels = [int(np.median(rgb_from_image_msg(m))) for m in images]
    assert levels[0] < 10, "the first frame is the file's first"
    source.destroy_node()


class SlowConsumer:
    """A stand-in for a slow detector: answers each image on keypoints2d after `delay_s`, with the
    image's header; ignores the first `ignore` images (as if they were lost)."""

    def __init__(self, context, delay_s, ignore=0):
        self.node = Node("slow_consumer", context=context)
        self.pub = self.node.create_publisher(PoseArray, "keypoints2d", 10)
        self.stamps, self.delay_s, self.ignore = [], delay_s, ignore
        self.node.create_subscription(Image, "image", self.on_image, qos_profile_sensor_data)

    def on_image(self, msg):
        self.stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        if len(self.stamps) <= self.ignore:
            return
        time.sleep(self.delay_s)  # the detector's work
        self.pub.publish(PoseArray(header=msg.header))


def spin_paced(context, params, consumer, timeout_s=30.0):
    source = VideoSource(context=context, parameter_overrides=[
        Parameter(k, value=v) for k, v in params.items()])
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(consumer.node)
    ex.add_node(source)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not source.finished.is_set():
        ex.spin_once(timeout_sec=0.01)
    return source


def test_paced_source_sends_every_frame_with_video_stamps(context, tmp_path):
    # The consumer needs 50 ms a frame, the file plays at 120 fps: in real time it would skip
    # most frames; paced, it gets every one, in order, stamped on the file's own time base.
    path = grey_video(tmp_path / "grey.mp4", 10, fps=120.0)
    consumer = SlowConsumer(context, delay_s=0.05)
    source = spin_paced(context, {"video_path": str(path), "pace_topic": "keypoints2d"}, consumer)
    assert source.finished.is_set() and source.resent == 0
    assert [i for _, i in source.published] == list(range(10))
    stamps = [s for s, _ in source.published]
    assert consumer.stamps == stamps, "each frame reached the consumer exactly once"
    assert np.allclose(np.diff(stamps) / 1e9, 1 / 120, atol=1e-6), "video time, not the clock"
    assert len(source.decode_ms) == 10 and all(ms > 0 for ms in source.decode_ms)
    source.destroy_node()


def test_paced_source_resends_a_frame_nobody_answered(context, tmp_path):
    path = grey_video(tmp_path / "grey.mp4", 3)
    consumer = SlowConsumer(context, delay_s=0.0, ignore=1)
    source = spin_paced(context, {"video_path": str(path), "pace_topic": "keypoints2d",
                                  "pace_timeout_s": 0.3}, consumer)
    assert source.resent == 1 and [i for _, i in source.published] == [0, 1, 2]
    assert consumer.stamps == [s for s, _ in source.published][:1] + [s for s, _ in source.published]
    source.destroy_node()


def test_real_time_passes_over_frames_it_is_late_for(context, tmp_path):
    # A source whose executor is stalled for 10 frame periods: it does not send those frames
    # late (stamped with the wrong time), it passes over them and goes on with the due one.
    path = grey_video(tmp_path / "grey.mp4", 40, fps=50.0)
    sink = Node("sink", context=context)
    sink.create_subscription(Image, "image", lambda m: None, qos_profile_sensor_data)
    source = VideoSource(context=context, parameter_overrides=[Parameter("video_path", value=str(path))])
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(sink)
    ex.add_node(source)
    end = time.monotonic() + 10
    while len(source.published) < 3 and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.01)
    time.sleep(0.2)  # 10 periods of 20 ms
    end = time.monotonic() + 10
    while time.monotonic() < end and not source.finished.is_set():
        ex.spin_once(timeout_sec=0.01)
    indices = [i for _, i in source.published]
    assert source.skipped >= 8 and len(indices) + source.skipped == 40
    assert np.all(np.diff(indices) >= 1) and max(np.diff(indices)) >= 9
    source.destroy_node()

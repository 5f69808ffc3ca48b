"""diffhpe_demo: a short real run (real video, real MediaPipe, the lifter node on the tiny model)
in one process, then its bag, summary, MP4 and PNG strip."""
import json
import os
import tempfile

os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="ros_log_"))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "OFF"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from diffhpe_ros.bag import read_bag  # noqa: E402
from diffhpe_ros.demo import load_run, main, run_demo  # noqa: E402

N_FRAMES = 30


@pytest.fixture(scope="module")
def demo_run(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # The tiny model is untrained: its poses cannot be placed in front of the camera, so the
    # lifter publishes them root-relative (use_camera_info false) instead of dropping them.
    summary = run_demo("pose2sim", model_path=str(tiny_checkpoint), out_dir=str(out),
                       max_frames=N_FRAMES, rate_factor=0.25, params_file=None,
                       lifter_overrides={"use_camera_info": False})
    return summary, out


def test_demo_records_lifts_and_measures(demo_run):
    summary, out = demo_run
    assert summary.frames_published == N_FRAMES and summary.video_fps == pytest.approx(60.0)
    # real time on 2 shared cores: stages may skip frames, but most must get through
    assert summary.keypoint_messages >= N_FRAMES // 3
    assert summary.lifted_frames >= N_FRAMES // 4
    assert summary.lifted_frames <= summary.keypoint_messages
    assert 0 < summary.lift_latency_p50_ms <= summary.lift_latency_p99_ms < 2000
    assert summary.lift_latency_p50_ms < summary.end_to_end_p50_ms
    assert 0 < summary.achieved_rate_hz <= 60.0 * 0.25 * 1.5  # not faster than the frames come

    topics = {m.topic for m in read_bag(out / "bag")}
    assert topics == {"/keypoints2d", "/camera_info", "/pose3d"}
    run = load_run(out / "bag")
    assert set(run["/pose3d"]) <= set(run["/keypoints2d"]), "every pose3d carries its keypoints' stamp"
    for stamp, (recv_ns, msg) in run["/pose3d"].items():
        assert len(msg.poses) == 17 and recv_ns > run["/keypoints2d"][stamp][0]
    for _, msg in run["/keypoints2d"].values():
        assert len(msg.poses) == 33, "the one person of the video is found in every processed frame"
    infos = [deserialize_message(m.raw, CameraInfo) for m in read_bag(out / "bag", ["/camera_info"])]
    # the demo video's own calibration (pose2sim cam01, fx = 1681 px at full size), scaled by 0.5
    assert infos and infos[0].k[0] == pytest.approx(1681.24 / 2, abs=0.1) and infos[0].width == 540
    saved = json.loads((out / "summary.json").read_text())
    assert saved["lifted_frames"] == summary.lifted_frames


def test_demo_renders_video_and_strip(demo_run):
    summary, out = demo_run
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary.lifted_frames
    ok, picture = cap.read()
    assert ok and picture.shape[0] == 540 and picture.shape[1] > 540
    strip = cv2.imread(str(out / "demo_strip.png"))
    assert strip is not None and strip.shape[1] > strip.shape[0]
    # not blank: the video frame (left panel) is there
    assert picture[:, : picture.shape[1] // 3].std() > 20
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_demo_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["--lifter-param", "no_separator", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="video_path"):
        run_demo(str(tmp_path / "missing.mp4"), out_dir=str(tmp_path), params_file=None)

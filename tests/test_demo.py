"""diffhpe_demo: a short real run (real video, real MediaPipe, the lifter node on the tiny model)
in one process, then its bag, summary, MP4 and PNG strip."""
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="ros_log_"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from diffhpe_ros.bag import read_bag  # noqa: E402
from diffhpe_ros.demo import load_run, main, report, run_demo, spin_recording_errors, wait_while_spinning  # noqa: E402

N_FRAMES = 30


@pytest.fixture(scope="module")
def demo_run(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # The tiny model is untrained: its poses cannot be placed in front of the camera, so the
    # lifter publishes them root-relative (use_camera_info false) instead of dropping them.
    summary = run_demo("pose2sim", model_path=str(tiny_checkpoint), out_dir=str(out),
                       max_frames=N_FRAMES, rate_factor=0.25, params_file=None,
                       lifter_overrides={"use_camera_info": False}, offline=False)
    return summary, out


@pytest.fixture(scope="module")
def offline_run(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_offline")
    summary = run_demo("pose2sim", model_path=str(tiny_checkpoint), out_dir=str(out),
                       max_frames=N_FRAMES, params_file=None, offline=True,
                       lifter_overrides={"use_camera_info": False})
    return summary, out


def test_offline_lifts_every_frame_with_video_stamps(offline_run):
    summary, out = offline_run
    assert summary.mode == "offline"
    assert (summary.frames_published, summary.keypoint_messages, summary.lifted_frames,
            summary.frames_dropped) == (N_FRAMES, N_FRAMES, N_FRAMES, 0)
    run = load_run(out / "bag")
    stamps = sorted(run["/keypoints2d"])
    assert sorted(run["/pose3d"]) == stamps and len(stamps) == N_FRAMES
    # the video's own time base (60 fps), not the clock: exact steps however slow the machine
    steps_ns = np.diff(stamps)
    assert np.all(np.abs(steps_ns - 1e9 / 60) < 1e3), steps_ns
    for stamp, (recv_ns, msg) in run["/pose3d"].items():
        assert len(msg.poses) == 17 and recv_ns >= run["/keypoints2d"][stamp][0]
    infos = [deserialize_message(m.raw, CameraInfo) for m in read_bag(out / "bag", ["/camera_info"])]
    assert len(infos) == N_FRAMES and infos[0].k[0] == pytest.approx(1681.24 / 2, abs=0.1)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["lifted_frames"] == N_FRAMES and saved["end_to_end_p50_ms"] is None
    assert list(saved["stage_ms"]) == ["decode", "detect", "lift", "render"]
    assert all(v["frames"] == N_FRAMES and v["p50"] > 0 for v in saved["stage_ms"].values())
    assert summary.throughput_fps > 0
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    text = report(summary)
    assert "30 lifted frames; 0 dropped" in text and "decode" in text and "render" in text


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
    assert saved["lifted_frames"] == summary.lifted_frames and saved["mode"] == "realtime"
    # the person is in every frame: whatever was not lifted was dropped, and is counted
    assert summary.frames_dropped >= N_FRAMES - summary.lifted_frames
    assert saved["stage_ms"]["decode"]["frames"] == N_FRAMES
    assert saved["stage_ms"]["detect"]["frames"] == summary.keypoint_messages


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


def test_demo_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--lifter-param", "no_separator", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="video_path"):
        run_demo(str(tmp_path / "missing.mp4"), out_dir=str(tmp_path), params_file=None)
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    for mode in ("--offline", "--realtime"):
        assert main(["--video", str(clip), mode, "--scale", "0.0001", "--out", str(tmp_path)]) == 2
    assert "scale=0.0001 makes the 64x48 video 0x0 pixels" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("fail", [False, True])
def test_demo_wait_ends_when_a_callback_kills_the_executor(fail):
    # The demo waits for the video source on the main thread while the executor spins in
    # another: a callback that raises ends that thread, and the wait must end too, not hang.
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    done = threading.Event()
    node = rclpy.create_node("callback_probe", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    try:
        def on_timer():
            if fail:
                raise ValueError("callback broke")
            done.set()

        node.create_timer(0.05, on_timer)
        executor.add_node(node)
        errors = []
        spinner = threading.Thread(target=spin_recording_errors, args=(executor, errors),
                                   daemon=True)
        spinner.start()
        start = time.monotonic()
        if fail:
            with pytest.raises(RuntimeError, match="executor stopped.*ValueError: callback broke"):
                wait_while_spinning(done, [spinner], errors, poll_s=0.1)
            assert not done.is_set() and not spinner.is_alive()
        else:
            wait_while_spinning(done, [spinner], errors, poll_s=0.1)
            assert spinner.is_alive() and not errors
        assert time.monotonic() - start < 10.0
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()

"""video_frames: frames with the file's own times, skipping without converting, clear errors;
offline: lifter settings checked, bags written whole."""
import cv2
import numpy as np
import pytest
from geometry_msgs.msg import PoseArray

from diffhpe_ros.bag import read_bag
from diffhpe_ros.offline import BagRecords, lifter_settings
from diffhpe_ros.video_frames import VideoFrames, scaled_size


def grey_video(path, n, fps):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_frames_times_skip_and_rewind(tmp_path):
    path = grey_video(tmp_path / "grey.mp4", 8, 25.0)
    with VideoFrames(path, scale=0.5) as video:
        assert (video.fps, video.width_px, video.height_px, video.frame_count) == (25.0, 32, 24, 8)
        first = video.read()
        assert first.index == 0 and first.time_s == 0.0 and first.bgr.shape == (24, 32, 3)
        assert video.skip(3) == 3 and video.next_index == 4
        frame = video.read()
        assert frame.index == 4 and frame.time_s == pytest.approx(4 / 25) and frame.decode_ms > 0
        assert abs(int(np.median(frame.bgr)) - 80) <= 6, "the 5th frame, not the 2nd"
        assert video.skip(10) == 3 and video.read() is None
        video.rewind()
        assert video.read().index == 0


def test_bad_videos_and_scales_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoFrames(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="junk.mp4"):
        VideoFrames(tmp_path / "junk.mp4")
    assert scaled_size(1080, 1920, 0.5, "v") == (540, 960)
    for scale in (0.0001, 0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="v: scale"):
            scaled_size(1080, 1920, scale, "v")


def test_offline_lifter_settings_are_checked():
    s = lifter_settings({"confidence_threshold": 0.3, "max_output_rate_hz": 30.0})
    assert s.confidence_threshold == 0.3 and s.max_output_rate_hz == 0.0, "offline lifts every frame"
    with pytest.raises(ValueError, match="confidence_threshold"):
        lifter_settings({"confidence_threshold": 2.0})


def test_bag_records_replace_a_bag_whole(tmp_path):
    for n in (3, 2):  # the second bag replaces the first
        records = BagRecords({"/pose3d": PoseArray})
        for i in range(n):
            msg = PoseArray()
            msg.header.stamp.sec = i
            records.add("/pose3d", msg)
        records.write(tmp_path / "bag")
        assert len(list(read_bag(tmp_path / "bag"))) == n
    assert [p.name for p in tmp_path.iterdir()] == ["bag"], "no staging directory left behind"

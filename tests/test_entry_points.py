"""Console entry points refuse a bad start with one clear line and exit code 2 (no traceback)."""
import os
import subprocess
import sys

import pytest

CASES = {
    "video_source": (["-p", "video_path:=/nonexistent/clip.mp4"], "video_path"),
    "replay": (["-p", "bag_path:=/nonexistent/bag"], "bag"),
    "lifter_node": (["-p", "model_path:=/nonexistent/lifter.onnx"], "model_path"),
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_bad_start_exits_2_with_a_clear_message(module, tmp_path):
    ros_args, named = CASES[module]
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path), ROS_AUTOMATIC_DISCOVERY_RANGE="OFF")
    proc = subprocess.run([sys.executable, "-m", f"diffhpe_ros.{module}", "--ros-args", *ros_args],
                          capture_output=True, text=True, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "cannot start" in out and named in out, out
    assert "Traceback" not in out, out

"""The real `ros2 launch diffhpe_ros lifter.launch.py`: launch, launch_ros and ros2cli built from
../shared/ros2-src and this package installed as a colcon overlay by .ci/ros2_workspace.sh.

Each test starts `ros2 launch` in its own session (process group), talks to the nodes from a
separate process in the workspace's environment (tests/ros2_launch_probe.py: keypoints and
camera_info in; pose3d, the tf frames and the tracked bodies out), sends SIGINT as
Ctrl-C does, and fails on a non-zero exit, a node that died ("process has died"), launch having
to escalate to SIGTERM/SIGKILL, or any process of the session left running.

Skipped when the workspace is not built (run `bash .ci/ros2_workspace.sh`); under CI (CI set),
where .ci/run builds it, a missing workspace is a failure. The package itself is reinstalled
into the workspace's overlay once per session (`.ci/ros2_workspace.sh --overlay`).
"""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from diffhpe_ros import body_frames, params

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / ".cache" / "ros2_ws"
SETUP = WORKSPACE / "overlay" / "install" / "setup.bash"
PROBE = REPO / "tests" / "ros2_launch_probe.py"
YAML = yaml.safe_load((REPO / "config" / "lifter.yaml").read_text())[f"/**/{params.NODE_NAME}"][
    "ros__parameters"]
DOMAINS = itertools.count()
STOP_TIMEOUT_S = 30.0  # launch itself gives a node 5 s after SIGINT before SIGTERM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def workspace():
    """The workspace, with the working tree's package installed as its overlay (seconds): what
    is launched is what is tested."""
    if not (WORKSPACE / "underlay" / "install" / "setup.bash").is_file():
        reason = (f"the ros2 launch workspace is not built (no {WORKSPACE}/underlay): "
                  "run `bash .ci/ros2_workspace.sh`")
        if os.environ.get("CI"):
            pytest.fail(reason + " - .ci/run must build it before `make test`")
        pytest.skip(reason)
    build = subprocess.run(["bash", str(REPO / ".ci" / "ros2_workspace.sh"), "--overlay"],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0 and SETUP.is_file(), build.stdout[-3000:] + build.stderr[-3000:]
    return SETUP


@pytest.fixture
def ros_env(tmp_path):
    """Environment of the launched nodes and the probe: a domain of their own (other tests,
    the nodes of an earlier test and concurrent runs never cross), discovery limited to this
    host, logs in tmp_path."""
    return dict(os.environ, ROS_DOMAIN_ID=str(10 + (os.getpid() + next(DOMAINS)) % 80),
                ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(tmp_path / "ros_log"),
                OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def in_workspace(command: list[str]) -> list[str]:
    return ["bash", "-c", f'source "{SETUP}" && exec "$@"', "in_workspace", *command]


def session_pids(sid: int) -> list[int]:
    """Live processes of the session `sid` (the launch's children keep it after it exits)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid and not is_zombie(int(entry)):
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def is_zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except (OSError, IndexError):
        return True


def describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                       .decode(errors="replace"))
        except OSError:
            pass
    return "; ".join(out)


class Launch:
    """`ros2 launch diffhpe_ros lifter.launch.py ARGS` in a session of its own, output in a file."""

    def __init__(self, env: dict, tmp_path: Path, *args: str):
        self.log_path = tmp_path / "launch.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                in_workspace(["ros2", "launch", params.PACKAGE, "lifter.launch.py", *args]),
                env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.sid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and self.proc.poll() is None:
            if text in self.log():
                return True
            time.sleep(0.2)
        return text in self.log()

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole process group; the exit code of `ros2 launch`."""
        os.killpg(self.sid, signal.SIGINT)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def kill_leftovers(self) -> list[int]:
        """Kill what is left of the session (a failed test must not leave nodes running)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        left = session_pids(self.sid)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def assert_clean_exit(self, code: int) -> None:
        log = self.log()
        assert code == 0, f"ros2 launch exited with {code}:\n{log}"
        assert "process has died" not in log, log
        assert "sending signal 'SIGTERM'" not in log and "SIGKILL" not in log, (
            "a node did not stop within launch's SIGINT grace period:\n" + log)
        time.sleep(0.5)  # a leftover would still be there; a process on its way out is gone
        left = session_pids(self.sid)
        assert not left, f"left running after ros2 launch exited: {describe(left)}\n{log}"


@pytest.fixture
def launch(workspace, ros_env, tmp_path):
    started = []

    def start(*args: str) -> Launch:
        started.append(Launch(ros_env, tmp_path, *args))
        return started[-1]

    yield start
    for launched in started:
        launched.kill_leftovers()


def run_probe(env: dict, *args: str, timeout_s: float = 90.0) -> dict:
    proc = subprocess.run(in_workspace([sys.executable, str(PROBE), *args]), env=env,
                          capture_output=True, text=True, timeout=timeout_s + 30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model", ["", str(REPO / "models" / "diffhpe_wrapper.pt")],
                         ids=["yaml_model_onnx", "torch_checkpoint"])
def test_launch_lifts_with_the_yaml_parameters_and_stops_cleanly(launch, ros_env, model):
    args = ["detector:=false"] + ([f"model:={model}"] if model else [])
    launched = launch(*args)
    report = run_probe(ros_env, "--poses", "15", "--timeout-s", "90",
                       *[a for name in YAML for a in ("--param", name)])
    log = launched.log()
    assert not report["errors"], (report["errors"], log)
    # pose3d arrives, in the keypoints' frame, one person of 17 joints
    assert len(report["pose3d"]) >= 15, (report["keypoints_sent"], len(report["pose3d"]), log)
    assert {(m["frame_id"], m["poses"]) for m in report["pose3d"]} == {
        ("probe_camera_optical_frame", 17)}
    # REP 155: one body, its id the same all along, its 17 frames in the keypoints' frame
    ids = {tuple(m["ids"]) for m in report["tracked"]}
    assert len(report["tracked"]) >= 10 and len(ids) == 1 and len(min(ids)) == 1, report["tracked"]
    (body,) = min(ids)
    assert len(report["tf"]) >= 10, len(report["tf"])
    for transforms in report["tf"]:
        assert [t["child"] for t in transforms] == list(body_frames.frame_ids(body))
        assert {t["parent"] for t in transforms} == {"probe_camera_optical_frame"}
        assert transforms[0]["xyz"][2] > body_frames.MIN_BODY_DEPTH_M  # placed: camera_info
    # the node runs with the installed config/lifter.yaml (and the model argument, when given)
    share = WORKSPACE / "overlay" / "install" / params.PACKAGE / "share" / params.PACKAGE
    lifter = [c for c in describe(session_pids(launched.sid)).split("; ") if "/lifter_node " in c]
    assert len(lifter) == 1 and f"--params-file {share}/config/lifter.yaml" in lifter[0], lifter
    expected = dict(YAML, **({"model_path": model} if model else {}))
    assert report["parameters"] == expected
    assert launched.proc.poll() is None, log
    launched.assert_clean_exit(launched.interrupt())
    assert re.search(r"\[lifter_node-\d+\]: process has finished cleanly", launched.log())


def test_rviz_without_rviz2_fails_before_starting_anything(launch, ros_env):
    probe = subprocess.run(in_workspace(["ros2", "pkg", "prefix", "rviz2"]), env=ros_env,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode == 0:
        pytest.skip("rviz2 is installed here")
    launched = launch("detector:=false", "rviz:=true")
    code = launched.proc.wait(timeout=STOP_TIMEOUT_S)
    log = launched.log()
    assert code != 0, log
    assert "rviz2 package is not installed" in log and "nothing was started" in log, log
    assert "process started" not in log, log
    left = session_pids(launched.sid)
    assert not left, f"left running: {describe(left)}\n{log}"


def test_loop_and_scale_reach_video_source(launch, ros_env, tmp_path):
    video = tmp_path / "grey.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for _ in range(10):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    launched = launch("detector:=false", f"video:={video}", "loop:=true", "scale:=0.5")
    report = run_probe(ros_env, "--node", "/video_source", "--poses", "0", "--timeout-s", "60",
                       "--param", "video_path", "--param", "loop", "--param", "scale")
    assert report["parameters"] == {"video_path": str(video), "loop": True, "scale": 0.5}, (
        report, launched.log())
    launched.assert_clean_exit(launched.interrupt())


def test_a_second_sigint_during_shutdown_still_exits_cleanly(tmp_path):
    """Ctrl-C under ros2 launch: the terminal's SIGINT and then launch's reach the node. Found by
    the launch test above: a second SIGINT during destroy_node raised KeyboardInterrupt there
    (traceback, exit code -2, "process has died"). No workspace needed: the console script."""
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path), ROS_AUTOMATIC_DISCOVERY_RANGE="OFF",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "lifter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "diffhpe_ros.lifter_node", "--ros-args",
                                 "--params-file", str(REPO / "config" / "lifter.yaml")],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 60
        while "lifting" not in log_path.read_text() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        assert proc.poll() is None, log_path.read_text()
        while proc.poll() is None and time.monotonic() < end:  # SIGINTs until it is gone
            proc.send_signal(signal.SIGINT)
            time.sleep(0.02)
        out = log_path.read_text()
        assert proc.wait(timeout=5) == 0, out
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

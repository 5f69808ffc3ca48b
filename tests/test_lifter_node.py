"""The lifter node in-process with rclpy: real messages in, real model (tiny, untrained) lifting,
real messages out. With an untrained model only structure is checked (shapes, stamps, ids, units
of the root placement), not accuracy."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from keypoint_stream import FX, FY, HEIGHT, WIDTH, detector_layout, keypoints_h36m  # noqa: E402
from lifter_harness import T0_S, Harness, assert_outputs_sane  # sets the ROS env first
from rclpy.parameter import Parameter  # noqa: E402

from diffhpe_models.skeleton import NUM_JOINTS  # noqa: E402
from diffhpe_ros import conversions as cv  # noqa: E402
from diffhpe_ros import params  # noqa: E402
from diffhpe_ros.lifter_core import place_roots  # noqa: E402

REPO = Path(__file__).resolve().parents[1]



@pytest.fixture
def harness(context, tiny_onnx, request):
    overrides = getattr(request, "param", {})
    h = Harness(context, tiny_onnx, **overrides)
    yield h
    h.close()


def handled(node) -> int:
    """Frames the node is done with: lifted, dropped as stale, failed or rate limited."""
    c = node.core.counters()
    return (c["lifted_frames"] + c["dropped_stale_frames"] + c["bad_input.lift_failed"]
            + c["rate_limited_frames"])


def send_and_wait(h, stamp_s, points_px, timeout_s=10.0):
    """Send one frame and wait (generously: the CI CPU is shared) until the node is done with it,
    whether or not anything is published, so that no frame is dropped as stale."""
    n = handled(h.node)
    h.send(stamp_s, points_px)
    assert h.spin_until(lambda: handled(h.node) > n, timeout_s), f"frame {stamp_s} never handled"


def test_place_roots_recovers_the_camera_frame_position():
    uv, pose_cam = keypoints_h36m(3)
    rel = pose_cam - pose_cam[:, :1]
    mask = np.ones((3, NUM_JOINTS))
    mask[1, 7:] = 0  # upper body hidden: still determined by the legs
    mask[2, 1:] = 0  # only the pelvis: under-determined
    k = cv.Intrinsics(WIDTH, HEIGHT, FX, FY, WIDTH / 2, HEIGHT / 2)
    placed_pose, placed = place_roots(rel, uv, mask, k)
    assert placed.tolist() == [True, True, False]
    np.testing.assert_allclose(placed_pose[:2], pose_cam[:2], atol=1e-4)
    np.testing.assert_array_equal(placed_pose[2], rel[2])  # left root-relative, flagged


@pytest.mark.parametrize("harness", [{"keypoint_format": "mediapipe33"}], indirect=True)
def test_walking_person_is_lifted_every_frame(harness):
    uv, _ = keypoints_h36m(45)
    frames = detector_layout(uv, "mediapipe33")[:, None]  # (T, 1, 33, 2)
    harness.stream(frames)
    assert harness.pose_stamps() == pytest.approx([T0_S + i / 30 for i in range(45)], abs=1e-6)
    assert_outputs_sane(harness)
    for msg in harness.poses:
        assert msg.header.frame_id == "cam_optical" and len(msg.poses) == NUM_JOINTS
        pose = cv.pose_array_to_pose3d(msg)[0]
        # Without camera_info: root-relative metres (an untrained model gives small poses).
        np.testing.assert_allclose(pose[0], 0.0, atol=1e-6)
        assert np.abs(pose).max() < 10.0
    clouds = [cv.point_cloud2_to_array(m) for m in harness.points]
    assert {c["person"][0] for c in clouds} == {clouds[0]["person"][0]}  # one id throughout
    assert all(c["joint"].tolist() == list(range(NUM_JOINTS)) for c in clouds)
    ids = {(m.ns, m.id) for arr in harness.markers for m in arr.markers
           if not m.ns.endswith("/spread")}
    assert len(ids) == 2  # one joints marker and one bones marker, updated in place
    # The spread drawn as see-through balls of radius = spread, one per joint with spread > 0,
    # matching the published point cloud of the same frame.
    spread = clouds[-1]["spread"]
    balls = {m.id % NUM_JOINTS: m for m in harness.markers[-1].markers if m.ns.endswith("/spread")}
    assert (spread > 0).sum() > 10 and set(balls) == set(np.flatnonzero(spread > 0).tolist())
    for j, ball in balls.items():
        assert ball.scale.x == pytest.approx(2 * spread[j], rel=1e-5) and ball.color.a < 0.5
        np.testing.assert_allclose([ball.pose.position.x, ball.pose.position.y,
                                    ball.pose.position.z], clouds[-1][["x", "y", "z"]][j].tolist(),
                                   atol=1e-5)


def test_camera_info_places_the_root_in_front_of_the_camera(harness):
    uv, _ = keypoints_h36m(30)
    info = harness.send_camera_info()
    assert harness.spin_until(lambda: harness.node.core.intrinsics is not None, 10.0)
    for i in range(30):  # each frame handled before the next: none dropped as stale
        send_and_wait(harness, T0_S + i / 30, uv[i][None])
    harness.spin_until(lambda: len(harness.poses) + harness.node.core.counters()[
        "bad_input.root_translation_failed"] >= 30, 5.0)  # the last publications in flight
    values = harness.latest_diagnostics()
    assert values["output"] == "absolute" and values["lifted_frames"] == "30"
    # The untrained model's poses are arbitrary (though the same every session: the fixture's
    # weights are seeded), so some may not be placeable in front of the camera: those are
    # counted and not published; the others must be placed (exact placement: test_place_roots_).
    failed = int(values["bad_input.root_translation_failed"])
    assert len(harness.poses) + failed == 30
    assert_outputs_sane(harness)
    a = (uv[:, :, 0] - info.k[2]) / FX
    b = (uv[:, :, 1] - info.k[5]) / FY
    for msg in harness.poses:
        i = round((cv.stamp_to_s(msg.header.stamp) - T0_S) * 30)
        pose = cv.pose_array_to_pose3d(msg)[0].astype(np.float64)
        assert pose[0, 2] > 0
        # Normal equations of the root's x and y in the least-squares placement: the residuals
        # X - aZ and Y - bZ sum to zero over the visible joints.
        scale = np.abs(pose).max()
        assert abs(np.sum(pose[:, 0] - a[i] * pose[:, 2])) < 1e-4 * scale * NUM_JOINTS
        assert abs(np.sum(pose[:, 1] - b[i] * pose[:, 2])) < 1e-4 * scale * NUM_JOINTS


def test_two_persons_are_lifted_in_one_batched_call_with_stable_ids(harness):
    calls = []
    lift = harness.node.lifter.lift

    def counting_lift(keypoints_px, mask, image_wh, **kwargs):  # the real lift; records shapes
        calls.append(keypoints_px.shape)
        return lift(keypoints_px, mask, image_wh, **kwargs)

    harness.node.lifter.lift = counting_lift
    a, _ = keypoints_h36m(20, x0_m=-0.8)
    b, _ = keypoints_h36m(20, x0_m=0.9)
    frames = np.stack([a, b], 1)
    frames[1::2] = frames[1::2, ::-1]  # detection order changes every other frame
    harness.stream(frames)
    assert len(calls) == 20 and all(shape == (2, 27, NUM_JOINTS, 2) for shape in calls)
    assert_outputs_sane(harness)
    people = [cv.point_cloud2_to_array(m)["person"].reshape(2, NUM_JOINTS)[:, 0].tolist()
              for m in harness.points]
    assert all(p == people[0] for p in people) and len(set(people[0])) == 2
    assert all(len([m for m in arr.markers if not m.ns.endswith("/spread")]) == 4
               for arr in harness.markers)
    assert harness.latest_diagnostics()["persons_tracked"] == "2"


@pytest.mark.parametrize("harness", [{"max_persons": 3}], indirect=True)
def test_a_person_keeps_its_noise_when_another_leaves(harness):
    # With fixed noise a person's output is a function of its own input only: when the person
    # with the lower id leaves (moving the other to batch position 0), a person standing still
    # must get exactly the same pose as before.
    slots = []
    lift = harness.node.lifter.lift

    def recording_lift(keypoints_px, mask, image_wh, noise_slots=None):  # the real lift
        slots.append(None if noise_slots is None else noise_slots.tolist())
        return lift(keypoints_px, mask, image_wh, noise_slots=noise_slots)

    harness.node.lifter.lift = recording_lift
    walker, _ = keypoints_h36m(40, x0_m=-0.9)
    still, _ = keypoints_h36m(1, x0_m=0.9)  # one pose, repeated: the same window every frame
    both = np.stack([walker[:30], np.repeat(still, 30, axis=0)], 1)
    harness.stream(both)
    harness.stream(np.repeat(still, 10, axis=0)[:, None], t0_s=T0_S + 1.0)  # the walker is gone
    assert_outputs_sane(harness)
    assert all(s is not None and len(set(s)) == len(s) for s in slots)  # never shared
    clouds = [cv.point_cloud2_to_array(m) for m in harness.points]
    ids = [c["person"].reshape(-1, NUM_JOINTS)[:, 0].tolist() for c in clouds]
    walker_id, still_id = ids[0]
    assert walker_id < still_id and ids[-1] == [still_id]
    assert slots[0] == slots[29] and slots[-1] == [slots[0][1]]  # the track keeps its slot

    def still_pose(cloud):
        pts = cloud[cloud["person"] == still_id]
        return np.stack([pts["x"], pts["y"], pts["z"]], -1)

    with_walker, alone = still_pose(clouds[29]), still_pose(clouds[-1])
    # The window is full of the same pose by frame 29, so the input is identical.
    np.testing.assert_allclose(alone, with_walker, rtol=0, atol=1e-6)
    np.testing.assert_allclose(still_pose(clouds[-2]), alone, rtol=0, atol=1e-6)


def test_diagnostics_report_rates_latency_and_backend(harness):
    uv, _ = keypoints_h36m(45)
    start = time.monotonic()
    for i in range(45):  # paced at 30 Hz in wall time
        harness.send(T0_S + i / 30, uv[i][None])
        harness.spin_until(lambda: harness.received() > i, 1.0)
        harness.spin_for(max(0.0, start + (i + 1) / 30 - time.monotonic()))
    assert harness.spin_until(lambda: handled(harness.node) == 45, 10.0), \
        harness.node.core.counters()
    assert harness.spin_until(lambda: len(harness.poses) == harness.node.core.counters()[
        "lifted_frames"], 5.0)
    values = harness.latest_diagnostics()
    assert values["backend"] == "onnxruntime" and values["mode"] == "causal"
    assert values["window"] == "27" and values["hypotheses"] == "3" and values["steps"] == "2"
    # A lift takes a few ms: all frames are lifted, unless the shared CPU stalls the worker for
    # more than a frame (then the stale frame is dropped, and counted): every frame accounted for.
    lifted, dropped = int(values["lifted_frames"]), int(values["dropped_stale_frames"])
    assert values["received_frames"] == "45" and lifted + dropped == 45 and lifted >= 10
    assert len(harness.poses) == lifted
    assert values["persons_tracked"] == "1" and values["bad_input_total"] == "0"
    doc = (REPO / "docs" / "lifter_node.md").read_text()
    for key in values:  # every published value is documented
        if key.startswith("bad_input."):
            assert f"`{key.split('.', 1)[1]}`" in doc and "`bad_input.<reason>`" in doc, key
        else:
            assert f"`{key}`" in doc, f"{key} missing from docs/lifter_node.md"
    p50, p99 = float(values["lift_latency_p50_ms"]), float(values["lift_latency_p99_ms"])
    assert 0 < p50 <= p99 < 3000
    assert float(values["total_latency_p50_ms"]) >= p50
    statuses = [d.status[0] for d in harness.diagnostics]
    rates = [float(cv.diagnostic_values(d, "diffhpe_ros: lifter")["input_rate_hz"])
             for d in harness.diagnostics]
    busy = [r for r in rates if r > 0]
    assert 10 < np.median(busy) < 90, rates  # ~30 Hz, measured over 0.2 s periods
    # Never an error; a warning only for latency (a loaded CPU can push p99 over the 33 ms
    # budget), and then the message gives the p99 that was published.
    last = statuses[-1]
    assert all(st.level in (b"\x00", b"\x01") for st in statuses), [st.message for st in statuses]
    if last.level == b"\x01" and "input messages lost" not in last.message:  # a stalled CPU
        assert "lift latency p99" in last.message and p99 > 1e3 / 30, (last.message, p99)
    else:
        assert last.message == "lifting" or last.message == "waiting for keypoints"


@pytest.mark.parametrize("harness", [{"max_output_rate_hz": 10.0}], indirect=True)
def test_output_rate_limit_still_feeds_the_windows(harness):
    uv, _ = keypoints_h36m(30)
    for i in range(30):  # each handled before the next: the limit, not the CPU, decides
        send_and_wait(harness, T0_S + i / 30, uv[i][None])
    harness.spin_until(lambda: len(harness.poses) >= 10, 5.0)
    harness.spin_for(0.1)  # nothing more may come
    assert len(harness.poses) == 10  # every third frame at 30 Hz (the limit is on stamps)
    values = harness.latest_diagnostics()
    assert values["rate_limited_frames"] == "20" and values["lifted_frames"] == "10"
    assert_outputs_sane(harness)


def test_parameters_are_declared_described_and_validated_at_run_time(harness):
    node = harness.node
    names = {p.name for p in params.PARAMETERS}
    assert names <= set(node._parameters)
    desc = node.describe_parameter("confidence_threshold")
    assert "confidence" in desc.description
    bounds = desc.floating_point_range[0]
    assert (bounds.from_value, bounds.to_value) == (0.0, 1.0)

    ok = node.set_parameters([Parameter("confidence_threshold", value=0.7)])[0]
    assert ok.successful and node.settings.confidence_threshold == 0.7
    ok = node.set_parameters([Parameter("association_gate", value=0.8)])[0]
    assert ok.successful and node.core.tracker.gate == 0.8
    for name, value, reason in (("model_path", "/tmp/other.onnx", "read-only"),
                                ("keypoint_format", "openpose25", "must be one of"),
                                ("max_gap_s", -1.0, "max_gap_s"),
                                ("confidence_threshold", float("nan"), "out of range")):
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and reason in result.reason, (name, result.reason)
    assert node.settings.keypoint_format == "h36m17" and node.settings.max_gap_s == 0.5
    uv, _ = keypoints_h36m(3)
    harness.stream(uv[:, None])  # still lifting
    assert len(harness.poses) == 3


def test_entry_point_starts_with_the_params_file_and_stops_cleanly(tiny_onnx, tmp_path):
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path), ROS_AUTOMATIC_DISCOVERY_RANGE="OFF",
               OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffhpe_ros.lifter_node", "--ros-args", "--params-file",
         str(REPO / "config" / "lifter.yaml"), "-p", f"model_path:={tiny_onnx}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "lifting mediapipe33 keypoints with onnxruntime" in line or proc.poll() is not None:
                break
        time.sleep(1.0)  # spinning by now
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, "".join(lines) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

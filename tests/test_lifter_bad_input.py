"""Bad input to the lifter node, each with real rclpy messages. For each: the node keeps running,
logs ONE clear (throttled) warning, publishes nothing wrong (no NaN, no stale pose presented as
new) and counts it in /diagnostics."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PoseArray  # noqa: E402
from keypoint_stream import detector_layout, keypoints_h36m  # noqa: E402
from lifter_harness import T0_S, Harness, assert_outputs_sane  # sets the ROS env first
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from diffhpe_ros import conversions as cv  # noqa: E402
from diffhpe_ros.lifter_node import LifterNode, StartupError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UV, _ = keypoints_h36m(60)



@pytest.fixture
def harness(context, tiny_onnx, request):
    h = Harness(context, tiny_onnx, **getattr(request, "param", {}))
    yield h
    h.close()


def warnings_about(capfd, *reasons: str) -> dict[str, list[str]] | list[str]:
    """The warning lines logged since the last call, for one reason (a list) or several (a dict:
    reading the captured output consumes it)."""
    err = capfd.readouterr().err.splitlines()
    found = {r: [line for line in err if "WARN" in line and f"[{r}]" in line] for r in reasons}
    return found[reasons[0]] if len(reasons) == 1 else found


def handled(node) -> int:
    """Frames the node is done with: lifted, dropped as stale, failed or rate limited."""
    c = node.core.counters()
    return (c["lifted_frames"] + c["dropped_stale_frames"] + c["bad_input.lift_failed"]
            + c["rate_limited_frames"])


def wait_all_handled(h: Harness, n: int, timeout_s: float = 10.0) -> None:
    """Wait (generously: the CI CPU is shared) until the worker is done with all n frames and
    everything lifted has reached the probe."""
    assert h.spin_until(lambda: handled(h.node) == n, timeout_s), h.node.core.counters()
    assert h.spin_until(lambda: len(h.poses) == h.node.core.counters()["lifted_frames"], timeout_s)


def still_lifting(h: Harness, stamp_s: float, frame: int = 0) -> None:
    """A good frame after the bad ones is lifted and published with its own stamp."""
    before = h.counts()
    h.send(stamp_s, UV[frame][None])
    assert h.wait_for_output(before), "the node stopped lifting"
    assert h.pose_stamps()[-1] == pytest.approx(stamp_s, abs=1e-6)


def test_nonfinite_coordinates_are_missing_keypoints(harness, capfd):
    for i in range(10):
        pts = UV[i][None].astype(np.float64).copy()
        pts[0, 3, 0] = np.nan
        pts[0, 5, 1] = np.inf
        before = harness.counts()
        harness.send(T0_S + i / 30, pts)
        assert harness.wait_for_output(before)  # 15 joints left: still lifted
    all_nan = np.full((1, 17, 2), np.nan)
    harness.send(T0_S + 10 / 30, all_nan)  # nothing left to lift: no output for this stamp
    still_lifting(harness, T0_S + 11 / 30, 11)
    assert T0_S + 10 / 30 not in harness.pose_stamps()
    assert_outputs_sane(harness)
    values = harness.latest_diagnostics()
    assert values["bad_input.nonfinite_keypoints"] == str(10 * 2 + 17)
    assert values["persons_too_few_joints"] == "1"
    assert len(warnings_about(capfd, "nonfinite_keypoints")) == 1


def test_huge_coordinates_are_missing_keypoints(harness, capfd):
    # 1e39 px is finite in float64 but inf in float32: it must never reach the model as visible.
    for i in range(5):
        pts = UV[i][None].astype(np.float64).copy()
        pts[0, 4, 0] = 1e39
        pts[0, 8, 1] = -5e6
        before = harness.counts()
        harness.send(T0_S + i / 30, pts)
        assert harness.wait_for_output(before), f"frame {i} not lifted"
    window = next(iter(harness.node.core.windows.values())).current()
    assert (window[1][-1, [4, 8]] == 0).all() and window[1][-1].sum() == 15
    assert np.abs(window[0]).max() < 1e4
    assert_outputs_sane(harness)
    values = harness.latest_diagnostics()
    assert values["bad_input.coordinate_out_of_range"] == "10"
    assert values["bad_input.lift_failed"] == "0"
    assert len(warnings_about(capfd, "coordinate_out_of_range")) == 1


@pytest.mark.parametrize("harness", [{"confidence_threshold": 0.0,
                                      "keypoint_format": "mediapipe33"}], indirect=True)
def test_unusable_keypoints_stay_missing_with_a_zero_confidence_threshold(harness):
    # Threshold 0 accepts every confidence in [0, 1]; a NaN or out-of-range keypoint must still
    # be missing, also in a joint derived from it (the pelvis from the hips).
    uv33 = detector_layout(UV[:3], "mediapipe33")
    for i in range(3):
        pts = uv33[i][None].astype(np.float64).copy()
        conf = np.ones((1, 33))
        pts[0, 23, 0] = np.nan  # left hip -> H36M left hip, and the pelvis
        conf[0, 26] = 2.0  # right knee
        before = harness.counts()
        harness.send(T0_S + i / 30, pts, conf)
        assert harness.wait_for_output(before), f"frame {i} not lifted"
    mask = next(iter(harness.node.core.windows.values())).current()[1][-1]
    assert mask[[0, 2, 4, 7]].tolist() == [0, 0, 0, 0]  # pelvis, r knee, l hip, spine
    assert mask.sum() == 13
    assert_outputs_sane(harness)


def test_wrong_number_of_poses_is_ignored(harness, capfd):
    msg = cv.keypoints_to_pose_array(UV[0][None, :16], np.ones((1, 16)), PoseArray().header)
    for i in range(10):
        harness.send_raw(msg, T0_S + i / 30)
        harness.spin_for(0.02)
    assert harness.poses == []
    still_lifting(harness, T0_S + 10 / 30)
    values = harness.latest_diagnostics()
    assert values["bad_input.wrong_pose_count"] == "10"
    lines = warnings_about(capfd, "wrong_pose_count")
    assert len(lines) == 1 and "16 poses is not a multiple of 17" in lines[0]


def test_empty_arrays_publish_nothing(harness, capfd):
    # The detector's "nobody in this frame": counted, noted once (info), not a bad input, and
    # the stamps still advance the track timeouts.
    harness.stream(UV[:3, None])
    for i in range(3, 40):
        harness.send_raw(PoseArray(), T0_S + i / 30)
        harness.spin_for(0.02)
    assert harness.spin_until(lambda: harness.received() == 40, 10.0)
    assert len(harness.poses) == len(harness.points) == len(harness.markers) == 3
    assert harness.node.core.tracker.tracks == {}  # 37 frames (1.2 s) of nobody > track_timeout_s
    still_lifting(harness, T0_S + 40 / 30)
    values = harness.latest_diagnostics()
    assert values["empty_frames"] == "37" and values["bad_input_total"] == "0"
    err = capfd.readouterr().err
    assert err.count("[empty]") == 1 and "WARN" not in err


@pytest.mark.parametrize("empty_first", [False, True])
def test_empty_frames_and_warnings_in_any_order_keep_the_node_alive(harness, capfd, empty_first):
    # Regression: an info-level [empty] note and a warning from one logging call site made rclpy
    # raise "Logger severity cannot be changed between calls", which killed the node.
    bad = cv.keypoints_to_pose_array(UV[0][None, :16], np.ones((1, 16)), PoseArray().header)
    sequence = [PoseArray(), bad] if empty_first else [bad, PoseArray()]
    for i, msg in enumerate(sequence * 2):
        harness.send_raw(msg, T0_S + i / 30)
        harness.spin_for(0.05)  # would raise out of spin_once before the fix
    still_lifting(harness, T0_S + 5 / 30)
    err = capfd.readouterr().err
    assert "[empty]" in err and "[wrong_pose_count]" in err and "severity" not in err


def test_a_failing_callback_does_not_stop_a_running_node(context):
    # run_node's loop: an exception escaping a callback is logged and spinning goes on (it used to
    # be reported as "cannot start" and end the process).
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from diffhpe_ros.entry import spin_guarded

    node = rclpy.create_node("flaky", context=context)
    calls, done = [], __import__("threading").Event()

    def tick():
        calls.append(1)
        if len(calls) == 3:
            done.set()
        raise ValueError("a bug in a callback")

    node.create_timer(0.01, tick)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        assert spin_guarded(node, executor, done) == 3
    finally:
        executor.shutdown()
        node.destroy_node()


def test_confidences_outside_0_1_are_missing_keypoints(harness, capfd):
    for i in range(10):
        conf = np.ones((1, 17))
        conf[0, [2, 6, 9]] = 1.5
        conf[0, [12, 15]] = -0.2
        before = harness.counts()
        harness.send(T0_S + i / 30, UV[i][None], conf)
        assert harness.wait_for_output(before)
    window = next(iter(harness.node.core.windows.values())).current()[1]
    assert (window[-1, [2, 6, 9, 12, 15]] == 0).all() and window[-1].sum() == 12
    assert_outputs_sane(harness)
    assert harness.latest_diagnostics()["bad_input.confidence_out_of_range"] == "50"
    assert len(warnings_about(capfd, "confidence_out_of_range")) == 1


def test_stamps_going_backwards_repeating_or_jumping(harness, capfd):
    harness.stream(UV[:10, None])
    n = len(harness.poses)
    for back in (5, 7, 8):  # late messages (even consecutive ones): ignored, never published
        harness.send(T0_S + back / 30, UV[back][None])
        harness.spin_for(0.02)
    harness.send(T0_S + 9 / 30, UV[9][None])  # repeated stamp
    assert harness.spin_until(lambda: harness.received() == 14, 10.0)
    harness.spin_for(0.1)
    assert len(harness.poses) == n
    track = next(iter(harness.node.core.windows))

    # Forward step beyond max_gap_s (0.5 s), within the track timeout (1 s): believed; the
    # person's window restarts (edge padded) with the new frame, the id stays.
    still_lifting(harness, T0_S + 9 / 30 + 0.8, 10)
    assert list(harness.node.core.windows) == [track]
    assert len(harness.node.core.windows[track]) == 1
    assert_outputs_sane(harness)

    # Far back (a restarted clock, e.g. a bag loop): believed once 3 messages agree, then all
    # tracks reset and lifting goes on.
    n = len(harness.poses)
    for i in range(2):
        harness.send(T0_S - 100.0 + i / 30, UV[11 + i][None])
        harness.spin_for(0.02)
    still_lifting(harness, T0_S - 100.0 + 2 / 30, 13)
    assert len(harness.poses) == n + 1 and list(harness.node.core.windows) != [track]
    assert_outputs_sane(harness, start=n)
    values = harness.latest_diagnostics()
    assert (values["bad_input.stamp_backwards"], values["bad_input.stamp_repeated"],
            values["input_gaps"], values["bad_input.clock_jump_back"]) == ("5", "1", "1", "1")
    reasons = ("stamp_backwards", "stamp_repeated", "clock_jump_back")
    for reason, lines in warnings_about(capfd, *reasons).items():
        assert len(lines) == 1, reason


def test_one_outlier_stamp_changes_no_id_and_is_never_published(harness):
    # Issue 10, item 5: a single frame stamped 0 or +1 h, or one message 0.6 s late, used to be
    # published with that stamp and to reset every track (new ids for everyone).
    a, _ = keypoints_h36m(60, x0_m=-0.8)
    b, _ = keypoints_h36m(60, x0_m=0.9)
    outliers = {15: 0.0, 30: T0_S + 30 / 30 + 3600.0, 45: T0_S + 45 / 30 - 0.6}
    for i in range(60):
        stamp = outliers.get(i, T0_S + i / 30)
        if i in outliers:
            n = harness.received()
            harness.send(stamp, np.stack([a[i], b[i]]))
            assert harness.spin_until(lambda: harness.received() == n + 1, 5.0)
        else:
            before = harness.counts()
            harness.send(stamp, np.stack([a[i], b[i]]))
            assert harness.wait_for_output(before), f"frame {i} not lifted"
    harness.spin_for(0.1)
    assert_outputs_sane(harness)
    assert harness.pose_stamps() == pytest.approx(
        [T0_S + i / 30 for i in range(60) if i not in outliers], abs=1e-6)
    ids = {tuple(cv.point_cloud2_to_array(m)["person"].reshape(-1, 17)[:, 0].tolist())
           for m in harness.points}
    assert ids == {(0, 1)}  # both persons kept their ids throughout
    values = harness.latest_diagnostics()
    assert values["tracks_created"] == "2" and values["bad_input.clock_jump_back"] == "0"
    assert (values["bad_input.stamp_backwards"], values["bad_input.stamp_jump"]) == ("2", "1")


def send_burst_300hz(harness, n: int) -> list[float]:
    """Send n frames stamped at 300 Hz, each as soon as the node took the previous one; returns
    the duration (ms) of every executor spin meanwhile."""
    spin_ms = []
    for i in range(n):
        harness.send(T0_S + i / 300, UV[i % 60][None])
        deadline = time.monotonic() + 2.0
        while harness.received() <= i and time.monotonic() < deadline:
            t = time.perf_counter()
            harness.executor.spin_once(timeout_sec=0.0)
            spin_ms.append(1e3 * (time.perf_counter() - t))
    return spin_ms


@pytest.mark.parametrize("harness", [{"max_output_rate_hz": 60.0}], indirect=True)
def test_burst_of_ten_times_the_rate(harness):
    n = 300  # 1 s of stamps at 300 Hz, each sent as soon as the node took the previous one
    spin_ms = send_burst_300hz(harness, n)
    wait_all_handled(harness, n)
    values = harness.latest_diagnostics()
    received, lifted, dropped, limited = (int(values[k]) for k in (
        "received_frames", "lifted_frames", "dropped_stale_frames", "rate_limited_frames"))
    assert received == n and lifted + dropped + limited == n  # every frame accounted for
    assert lifted <= 61 and limited >= received - 61  # at most 60 Hz for 1 s of stamps
    assert len(harness.poses) == lifted
    assert_outputs_sane(harness)
    # The executor only parses, tracks and hands over: not blocked for a frame (33 ms). The
    # max is not asserted: on the shared 2-core test machine the OS alone can stall a thread.
    # p95, not p99: a loaded CI machine stalls a few callbacks whatever the node does; a node
    # that lifted in its callback would fail the median already.
    assert np.median(spin_ms) < 5.0 and np.percentile(spin_ms, 95) < 33.0, \
        (np.median(spin_ms), np.percentile(spin_ms, 95), max(spin_ms))
    still_lifting(harness, T0_S + 1.5)


def test_slow_model_under_a_burst_drops_stale_frames_and_never_blocks(harness):
    lift = harness.node.lifter.lift

    def slow_lift(*args, **kwargs):  # the real lift, as slow as a heavy model on a small CPU
        time.sleep(0.05)
        return lift(*args, **kwargs)

    harness.node.lifter.lift = slow_lift
    spin_ms = send_burst_300hz(harness, 100)  # 300 Hz stamps against a 20 Hz model
    wait_all_handled(harness, 100)
    values = harness.latest_diagnostics()
    received, lifted, dropped = (int(values[k]) for k in (
        "received_frames", "lifted_frames", "dropped_stale_frames"))
    assert received == 100 and lifted + dropped == 100 and dropped > 50
    assert len(harness.poses) == lifted
    assert_outputs_sane(harness)
    # The newest frame always gets lifted: nothing is left behind in the queue.
    assert harness.pose_stamps()[-1] == pytest.approx(T0_S + 99 / 300, abs=1e-6)
    # A blocking node would spend >= 50 ms in most callbacks.
    assert np.median(spin_ms) < 5.0 and np.percentile(spin_ms, 95) < 33.0, \
        (np.median(spin_ms), np.percentile(spin_ms, 95), max(spin_ms))
    assert float(values["lift_latency_p50_ms"]) >= 50.0


@pytest.mark.parametrize("harness", [{"max_persons": 3, "track_timeout_s": 0.2}], indirect=True)
def test_person_appearing_and_vanishing_every_frame(harness):
    a, _ = keypoints_h36m(40, x0_m=-0.9)
    b, _ = keypoints_h36m(40, x0_m=0.9)
    rng = np.random.default_rng(0)
    people_per_stamp = {}
    for i in range(40):
        frame = [a[i]]
        if i % 2 == 0:
            frame.append(b[i])  # flickers: present every other frame
        if i % 3 == 0:  # a ghost somewhere new each time
            frame.append(a[i] + rng.uniform(-250, 250, 2) + [0, 600])
        before = harness.counts()
        harness.send(T0_S + i / 30, np.stack(frame))
        assert harness.wait_for_output(before)
        people_per_stamp[round(T0_S + i / 30, 6)] = len(frame)
        assert len(harness.node.core.tracker.tracks) <= 3 and len(harness.node.core.windows) <= 3
    assert_outputs_sane(harness)
    ids_a = set()
    for msg in harness.points:
        cloud = cv.point_cloud2_to_array(msg)
        stamp = round(cv.stamp_to_s(msg.header.stamp), 6)
        ids = cloud["person"].reshape(-1, 17)[:, 0]
        assert len(ids) <= people_per_stamp[stamp]  # nobody absent from the frame is published
        ids_a.add(int(ids.min()))  # a was seen first: the smallest live id
    assert len(ids_a) == 1


def test_a_failing_lift_is_reported_and_lifting_resumes(harness, capfd):
    lift = harness.node.lifter.lift

    def failing_lift(*args, **kwargs):  # fault injection: e.g. a GPU lost by the driver
        raise RuntimeError("device lost")

    harness.node.lifter.lift = failing_lift
    diag = harness.diagnostics
    n = len(diag)
    for i in range(5):  # each one failed before the next is sent: none dropped as stale
        done = handled(harness.node)
        harness.send(T0_S + i / 30, UV[i][None])
        assert harness.spin_until(lambda: handled(harness.node) > done, 10.0), f"frame {i}"
    assert harness.poses == []
    counters = harness.node.core.counters()
    assert counters["bad_input.lift_failed"] == 5 and counters["lifted_frames"] == 0
    m = len(diag)
    assert harness.spin_until(lambda: len(diag) > m, 5.0)  # a status after the last failure
    assert b"\x02" in [d.status[0].level for d in diag[n:]]  # ERROR while lifts fail
    assert cv.diagnostic_values(diag[-1], "diffhpe_ros: lifter")["bad_input.lift_failed"] == "5"
    lines = warnings_about(capfd, "lift_failed")
    assert len(lines) == 1 and "RuntimeError: device lost" in lines[0]
    harness.node.lifter.lift = lift
    still_lifting(harness, T0_S + 5 / 30, 5)
    assert_outputs_sane(harness)


def test_bad_camera_info_is_ignored(harness, capfd):
    harness.send_camera_info(fx=0.0)
    harness.send_camera_info(width=0)
    harness.spin_for(0.3)
    assert harness.node.core.intrinsics is None
    harness.stream(UV[:3, None])
    values = harness.latest_diagnostics()
    assert values["output"] == "root_relative" and values["bad_input.bad_camera_info"] == "2"
    assert len(warnings_about(capfd, "bad_camera_info")) == 1


def test_absurd_camera_info_is_refused(harness, capfd):
    # Issue 10, item 2: these passed validation; the roots landed ~1e38 m away and overflowed to
    # +inf in pose3d/points.
    harness.send_camera_info(fx=1e-39, fy=1e-39)
    harness.send_camera_info(fx=1e-38)
    info = CameraInfo(width=640, height=480, k=[500.0, 0.0, 1e41, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    harness.info_pub.publish(info)
    harness.spin_until(lambda: harness.node.core.counters()["bad_input.bad_camera_info"] == 3, 5.0)
    assert harness.node.core.intrinsics is None
    harness.stream(UV[:3, None])
    assert_outputs_sane(harness)
    values = harness.latest_diagnostics()
    assert values["output"] == "root_relative" and values["bad_input.bad_camera_info"] == "3"
    lines = warnings_about(capfd, "bad_camera_info")
    assert len(lines) == 1 and "fx=1e-39 px is not a lens" in lines[0]
    harness.send_camera_info()  # a good one after the bad ones is used
    assert harness.spin_until(lambda: harness.node.core.intrinsics is not None, 5.0)


def test_absurd_lifted_poses_are_never_published(harness, capfd):
    lift = harness.node.lifter.lift

    def blown_up_lift(*args, **kwargs):  # fault injection: the real output, scaled absurdly
        pose, spread = lift(*args, **kwargs)
        return pose * 1e30, spread

    harness.node.lifter.lift = blown_up_lift
    for i in range(3):
        done = handled(harness.node)
        harness.send(T0_S + i / 30, UV[i][None])
        assert harness.spin_until(lambda: handled(harness.node) > done, 10.0), f"frame {i}"
    harness.spin_for(0.1)
    assert harness.poses == [] and harness.points == []
    values = harness.latest_diagnostics()
    assert values["bad_input.absurd_output"] == "3" and values["lifted_frames"] == "3"
    assert len(warnings_about(capfd, "absurd_output")) == 1
    harness.node.lifter.lift = lift
    still_lifting(harness, T0_S + 3 / 30, 3)
    assert_outputs_sane(harness)


@pytest.mark.parametrize("harness", [{"max_persons": 2}], indirect=True)
def test_an_oversized_message_is_refused_before_it_is_parsed(harness, capfd):
    # Issue 10, item 3: 3,000 persons used to be deserialized and parsed in Python on the
    # executor thread (about a second, all other input lost meanwhile).
    harness.stream(UV[:3, None])
    crowd = np.stack([UV[3] + [dx, 0.0] for dx in (0.0, 300.0, -300.0, 150.0)])
    before = harness.counts()
    harness.send(T0_S + 3 / 30, crowd)  # 2 x max_persons: parsed, the extra two counted
    assert harness.wait_for_output(before)
    flood = np.tile(UV[4][None], (3000, 1, 1))
    msg = cv.keypoints_to_pose_array(flood, np.ones((3000, 17)), PoseArray().header)
    n = harness.received()
    harness.send_raw(msg, T0_S + 4 / 30)
    assert harness.spin_until(lambda: harness.received() == n + 1, 10.0)
    still_lifting(harness, T0_S + 5 / 30, 5)
    assert T0_S + 4 / 30 not in harness.pose_stamps()
    values = harness.latest_diagnostics()
    assert values["bad_input.message_too_large"] == "1"
    assert values["bad_input.too_many_persons"] == "1"  # the crowd's message only
    lines = warnings_about(capfd, "message_too_large")
    assert len(lines) == 1 and "refused unparsed" in lines[0] and "max_persons=2" in lines[0]
    assert_outputs_sane(harness)


def test_messages_lost_before_the_node_are_counted(harness):
    # Issue 10, item 6: the sensor-data queue (depth 5) overwrites what the executor has not
    # taken; 30 messages published without spinning lose about 25, which used to be counted
    # nowhere. Counted from the publication sequence numbers of rmw_fastrtps.
    harness.send(T0_S, UV[0][None])  # the publisher's first message: the count starts there
    assert harness.spin_until(lambda: harness.received() == 1, 5.0)
    for i in range(1, 31):
        harness.send(T0_S + i / 30, UV[i][None])
    harness.spin_for(1.0)
    c = harness.node.core.counters()
    assert c["received_frames"] < 31 and c["received_frames"] + c["lost_messages"] == 31, c
    values = harness.latest_diagnostics()
    assert values["lost_messages"] == str(c["lost_messages"])


@pytest.mark.parametrize("harness", [{"max_gap_s": 0.001}], indirect=True)
def test_degenerate_parameters_are_warned_about(capfd, harness):
    # Issue 10, item 6: valid values that silently degrade the output.
    err = capfd.readouterr().err
    assert "[degenerate_parameter] max_gap_s=0.001 s" in err
    ok = harness.node.set_parameters([Parameter("track_timeout_s", value=0.01)])[0]
    assert ok.successful
    err = capfd.readouterr().err
    assert "[degenerate_parameter] track_timeout_s=0.01 s" in err
    assert "max_gap_s" not in err  # only a newly introduced one is warned about again


def test_missing_or_corrupt_model_file(context, tiny_onnx, tiny_checkpoint, tmp_path):
    missing = tmp_path / "nope.onnx"
    corrupt_onnx = tmp_path / "corrupt.onnx"
    corrupt_onnx.write_bytes(b"\x00garbage" * 100)
    (tmp_path / "corrupt.onnx.json").write_text(Path(f"{tiny_onnx}.json").read_text())
    truncated_pt = tmp_path / "truncated.pt"
    truncated_pt.write_bytes(Path(tiny_checkpoint).read_bytes()[:1000])
    for path, text in ((missing, "not found"), (corrupt_onnx, "corrupt.onnx"),
                       (truncated_pt, "truncated.pt")):
        with pytest.raises(StartupError, match="model_path") as e:
            LifterNode(context=context, parameter_overrides=[Parameter("model_path", value=str(path))])
        assert text in str(e.value)


def test_nonsensical_parameters_at_start(context, tiny_onnx):
    for name, value, text in (("confidence_threshold", 2.0, "confidence_threshold"),
                              ("keypoint_format", "openpose25", "must be one of"),
                              ("max_persons", 0, "max_persons"),
                              ("device", "gpu", "device must be")):
        with pytest.raises(ParameterException, match=text):
            LifterNode(context=context, parameter_overrides=[
                Parameter("model_path", value=str(tiny_onnx)), Parameter(name, value=value)])
    with pytest.raises(StartupError, match="window: file has 27, configuration wants 81"):
        LifterNode(context=context, parameter_overrides=[
            Parameter("model_path", value=str(tiny_onnx)), Parameter("expected_window", value=81)])


def test_nonsensical_parameter_at_run_time_keeps_the_node_running(harness):
    result = harness.node.set_parameters([Parameter("min_visible_joints", value=40)])[0]
    assert not result.successful and "min_visible_joints" in result.reason
    result = harness.node.set_parameters([Parameter("camera_frame_id", value=3)])[0]
    assert not result.successful
    harness.stream(UV[:3, None])
    assert len(harness.poses) == 3


@pytest.mark.parametrize("args, text", [
    (["-p", "model_path:=/nonexistent/lifter.onnx"], "/nonexistent/lifter.onnx"),
    (["-p", "confidence_threshold:=7.0"], "confidence_threshold"),
    # Issue 10, item 6: rcl's parse errors used to end in a traceback (exit 1).
    (["-p", "model_path:="], "bad command-line arguments: Couldn't parse parameter override"),
    (["-p", "max_persons"], "-p max_persons"),
    (["--params-file", "/nonexistent/params.yaml"], "Couldn't parse params file"),
])
def test_entry_point_exits_non_zero_with_a_clear_error(args, text, tmp_path):
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path), ROS_AUTOMATIC_DISCOVERY_RANGE="OFF")
    run = subprocess.run([sys.executable, "-m", "diffhpe_ros.lifter_node", "--ros-args", *args],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    out = run.stdout + run.stderr
    assert "cannot start" in out and text in out and "Traceback" not in out

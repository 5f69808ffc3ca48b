"""The lifter's ROS-free core (lifter_core, stamp_policy, checks): numbers in, decisions out, no
rclpy. All but the last two tests run in milliseconds; those lift with the real tiny ONNX model."""
import types

import numpy as np
import pytest
from keypoint_stream import FX, FY, HEIGHT, WIDTH, keypoints_h36m

from diffhpe_models.skeleton import NUM_JOINTS
from diffhpe_ros import params
from diffhpe_ros.checks import (
    MAX_BODY_EXTENT_M,
    MAX_ROOT_DISTANCE_M,
    BadMessage,
    Intrinsics,
    checked_intrinsics,
    focal_range_px,
    keypoints_from_xyz,
    output_problems,
)
from diffhpe_ros.lifter_core import MESSAGE_PERSONS_FACTOR, LifterCore, Settings
from diffhpe_ros.stamp_policy import CONFIRMATIONS, SequenceGaps, StampPolicy

T0 = 1000.0
# What the core reads of the model before lifting (window, rate, noise rows): the tests that only
# feed frames need no model; the ones that lift use the real tiny ONNX lifter.
MODEL_SHAPE = types.SimpleNamespace(window=27, fps=30.0, max_persons=8, backend_name="none",
                                    mode="causal", hypotheses=1, steps=1, mirror=False)
A, _ = keypoints_h36m(60, x0_m=-0.8)
B, _ = keypoints_h36m(60, x0_m=0.9)


def make_core(lifter=MODEL_SHAPE, **overrides):
    values = {**params.DEFAULTS, "keypoint_format": "h36m17", "max_output_rate_hz": 0.0,
              **overrides}
    logs = []
    core = LifterCore(Settings(**values), lifter, warn=lambda t: logs.append(("warn", t)),
                      info=lambda t: logs.append(("info", t)))
    return core, logs


def send(core, stamp_s, persons_px):
    """One frame of persons (P, 17, 2) px, confidence 1: the job handed over, or None."""
    persons_px = np.asarray(persons_px, dtype=np.float64)
    xyz = np.concatenate([persons_px, np.ones(persons_px.shape[:2] + (1,))], -1)
    core.on_keypoints(stamp_s, keypoints_from_xyz(xyz.reshape(-1, 3), NUM_JOINTS), stamp_s, 0.0)
    return core.slot.take(timeout_s=0.0)


def bad(core):
    return {k.split(".", 1)[1]: v for k, v in core.counters().items()
            if k.startswith("bad_input.") and v}


# --- stamp policy ----------------------------------------------------------------------------

def test_single_outlier_stamps_are_ignored_and_every_person_keeps_its_id():
    core, logs = make_core()
    outliers = {10: 0.0, 20: T0 + 20 / 30 + 3600.0, 30: T0 + 30 / 30 - 0.6, 40: T0 + 39 / 30}
    ids = set()
    for i in range(50):
        stamp = outliers.get(i, T0 + i / 30)
        job = send(core, stamp, np.stack([A[i], B[i]]))
        if i in outliers:
            assert job is None, f"outlier {i} was lifted"
        else:
            assert job is not None and job.tag == stamp, i
            ids.add(tuple(job.track_ids.tolist()))
    assert ids == {(0, 1)} and core.tracker.created == 2  # nobody lost their id
    assert bad(core) == {"stamp_backwards": 2, "stamp_jump": 1, "stamp_repeated": 1}
    assert all(level == "warn" for level, _ in logs)


def test_a_clock_reset_is_believed_once_three_messages_agree():
    core, _ = make_core()
    for i in range(10):
        assert send(core, T0 + i / 30, A[i][None]) is not None
    restart = 5.0  # a bag that loops: far back
    for i in range(CONFIRMATIONS - 1):
        assert send(core, restart + i / 30, A[i][None]) is None
    job = send(core, restart + (CONFIRMATIONS - 1) / 30, A[2][None])
    assert job is not None and job.tag == restart + 2 / 30
    assert job.track_ids.tolist() == [1]  # all tracks reset: a new id
    assert bad(core) == {"stamp_backwards": 2, "clock_jump_back": 1}
    assert send(core, restart + 3 / 30, A[3][None]).track_ids.tolist() == [1]


def test_a_long_pause_ahead_costs_two_frames_and_expires_the_tracks():
    core, _ = make_core()
    for i in range(10):
        send(core, T0 + i / 30, A[i][None])
    resume = T0 + 10.0
    assert send(core, resume, A[10][None]) is None
    assert send(core, resume + 1 / 30, A[11][None]) is None
    job = send(core, resume + 2 / 30, A[12][None])
    assert job is not None and job.track_ids.tolist() == [1]  # 10 s > track_timeout_s
    assert bad(core) == {"stamp_jump": 2, "clock_jump_ahead": 1}


def test_late_messages_never_move_the_clock():
    # A lagging second publisher: consecutive, agreeing, but all in the past. Lifting them would
    # publish stamps older than ones already published.
    core, _ = make_core()
    for i in range(20):
        send(core, T0 + i / 30, A[i][None])
    for i in range(10, 16):
        assert send(core, T0 + i / 30, A[i][None]) is None
    assert bad(core) == {"stamp_backwards": 6}
    assert send(core, T0 + 20 / 30, A[20][None]).track_ids.tolist() == [0]


def test_stamps_that_disagree_never_confirm_a_jump():
    policy = StampPolicy()
    assert policy.check(T0, 1.0).accepted
    for i in range(20):  # garbage alternating between two far-away values
        v = policy.check(0.0 if i % 2 else T0 + 3600.0, 1.0)
        assert not v.accepted and v.reason in ("stamp_backwards", "stamp_jump")
    assert policy.last_s == T0 and policy.check(T0 + 0.1, 1.0).accepted
    for t in (5.0, 5.0, 5.1, 5.1):  # duplicated messages of a restarted clock
        assert not policy.check(t, 1.0).accepted
    assert policy.check(5.2, 1.0).reason == "clock_jump_back"


def test_a_normal_step_over_max_gap_is_an_input_gap_not_bad_input():
    core, _ = make_core()
    send(core, T0, A[0][None])
    job = send(core, T0 + 0.8, A[1][None])  # > max_gap_s 0.5, < 1 s: believed
    assert job is not None and job.track_ids.tolist() == [0]
    assert core.counters()["input_gaps"] == 1 and bad(core) == {}
    assert len(core.windows[0]) == 1  # the window restarted


# --- message size and lost messages -----------------------------------------------------------

def test_message_size_bound_admits_a_crowd_and_refuses_a_flood():
    core, logs = make_core(max_persons=4)
    limit = core.max_message_poses()
    assert limit >= MESSAGE_PERSONS_FACTOR * 4 * 17
    assert core.admit_size(limit) and not core.admit_size(limit + 1)
    assert not core.admit_size(10_000 * 17)
    assert bad(core) == {"message_too_large": 2}
    assert "message_too_large" in logs[0][1] and "max_persons=4" in logs[0][1]
    core.apply({"keypoint_format": "mediapipe33"})  # the bound follows the format
    assert core.max_message_poses() > limit


def test_lost_messages_are_counted_from_sequence_gaps():
    gaps = SequenceGaps()
    assert [gaps.lost(b"p", n) for n in (1, 2, 3, 7, 8)] == [0, 0, 0, 3, 0]
    assert gaps.lost(b"q", 50) == 0  # another publisher's first message
    assert gaps.lost(b"p", 5) == 0 and gaps.lost(b"p", 10) == 1  # reordered: no loss
    assert gaps.lost(None, None) == 0 and gaps.lost(b"r", 0) == 0  # no sequence numbers
    core, logs = make_core()
    for n in (1, 2, 6, 7):
        core.count_received(b"pub", n)
    counters = core.counters()
    assert counters["received_frames"] == 4 and counters["lost_messages"] == 3
    level, message, values = core.diagnostic_snapshot()
    assert level == "warn" and "3 input messages lost" in message
    assert values["lost_messages"] == 3


# --- camera intrinsics -------------------------------------------------------------------------

def test_intrinsics_are_bounded_relative_to_the_image():
    good = checked_intrinsics(WIDTH, HEIGHT, [FX, 0, 320, 0, FY, 240, 0, 0, 1])
    assert good == Intrinsics(WIDTH, HEIGHT, FX, FY, 320.0, 240.0)
    lo, hi = focal_range_px(WIDTH)
    assert lo < 0.05 * WIDTH and hi > 50 * WIDTH  # 170 to 1 degree field of view
    for fx, fy, cx, cy, text in ((1e-39, 1e-39, 320, 240, "fx=1e-39"),
                                 (1e-38, 500, 320, 240, "fx=1e-38"),
                                 (1e9, 1e9, 320, 240, r"fx=1e\+09"),
                                 (500, 500, 1e41, 240, "principal point"),
                                 (500, 500, 320, -1e6, "principal point"),
                                 (500, 1600, 320, 240, "fx/fy")):
        with pytest.raises(BadMessage, match=text) as e:
            checked_intrinsics(WIDTH, HEIGHT, [fx, 0, cx, 0, fy, cy, 0, 0, 1])
        assert e.value.reason == "bad_camera_info"
    with pytest.raises(BadMessage, match="image size"):
        checked_intrinsics(10**6, HEIGHT, [FX, 0, 320, 0, FY, 240, 0, 0, 1])


# --- output checks -----------------------------------------------------------------------------

def test_output_checks_refuse_nonfinite_and_absurd_poses():
    _, pose_cam = keypoints_h36m(1)
    rel = pose_cam - pose_cam[:, :1]
    poses = np.repeat(rel, 5, axis=0)
    spread = np.full((5, NUM_JOINTS), 0.01)
    poses[1, 3, 0] = np.inf
    poses[2] *= 20.0  # a 35 m person
    poses[3] += [0.0, 0.0, 2 * MAX_ROOT_DISTANCE_M]  # placed 2 km away
    spread[4, 0] = 2 * MAX_BODY_EXTENT_M
    nonfinite, absurd = output_problems(poses, spread)
    assert nonfinite.tolist() == [False, True, False, False, False]
    assert absurd.tolist() == [False, False, True, True, True]
    huge = np.full((1, NUM_JOINTS, 3), 1e39)  # finite in float64, inf in float32
    assert output_problems(huge, np.zeros((1, NUM_JOINTS)))[1].tolist() == [True]


# --- parameters --------------------------------------------------------------------------------

def test_degenerate_parameters_are_named():
    defaults = Settings(**params.DEFAULTS)
    assert params.degenerate(defaults, 30.0) == []
    found = params.degenerate(Settings(**{**params.DEFAULTS, "max_gap_s": 0.001,
                                          "track_timeout_s": 0.01, "association_gate": 0.001,
                                          "marker_lifetime_s": 0.001}), 30.0)
    assert [t.split("=")[0] for t in found] == ["max_gap_s", "track_timeout_s",
                                                "association_gate", "marker_lifetime_s"]
    assert "restarts each person's window" in found[0] and "new id" in found[1]


# --- lifting with the real model ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lifter(tiny_onnx):
    from diffhpe_models.runtime import load_lifter
    return load_lifter(str(tiny_onnx), backend="onnxruntime", max_persons=8, fixed_noise=True)


def test_core_lifts_and_refuses_absurd_output(tiny_lifter, monkeypatch):
    core, logs = make_core(tiny_lifter)
    for i in range(5):
        job = send(core, T0 + i / 30, np.stack([A[i], B[i]]))
    result = core.lift(job)
    assert result.track_ids.tolist() == [0, 1] and result.pose_m.shape == (2, NUM_JOINTS, 3)
    assert np.isfinite(result.pose_m).all() and result.tag == T0 + 4 / 30
    real_lift = tiny_lifter.lift

    def absurd_lift(*args, **kwargs):  # fault injection: the real output, person 1 blown up
        pose, spread = real_lift(*args, **kwargs)
        pose[1] *= 1e6
        return pose, spread

    monkeypatch.setattr(tiny_lifter, "lift", absurd_lift)
    result = core.lift(send(core, T0 + 5 / 30, np.stack([A[5], B[5]])))
    assert result.track_ids.tolist() == [0]
    assert bad(core) == {"absurd_output": 1}
    core.finish(result)
    assert core.counters()["lifted_frames"] == 1


def test_core_with_camera_refuses_roots_placed_beyond_the_bound(tiny_lifter, monkeypatch):
    # The model's output replaced by the true pose (fault injection: the untrained model's poses
    # are arbitrary); one person seen at 4 m, one at 2 km (0.4 px tall, placed beyond 1 km).
    _, pose_cam = keypoints_h36m(1)
    real_lift = tiny_lifter.lift

    def true_pose_lift(*args, **kwargs):
        pose, spread = real_lift(*args, **kwargs)
        pose[:] = pose_cam[0] - pose_cam[0, :1]
        return pose, spread

    monkeypatch.setattr(tiny_lifter, "lift", true_pose_lift)
    core, _ = make_core(tiny_lifter)
    core.on_camera_info(Intrinsics(WIDTH, HEIGHT, FX, FY, WIDTH / 2, HEIGHT / 2))

    def seen(p):
        return np.stack([FX * p[..., 0] / p[..., 2] + WIDTH / 2,
                         FY * p[..., 1] / p[..., 2] + HEIGHT / 2], -1)

    near, far = seen(pose_cam[0]), seen(pose_cam[0] + [0.0, 0.0, 2000.0])
    result = core.lift(send(core, T0, np.stack([near, far])))
    assert result.track_ids.tolist() == [0]
    np.testing.assert_allclose(result.pose_m[0], pose_cam[0], atol=1e-3)
    assert bad(core) == {"absurd_output": 1}


def test_published_spread_is_a_running_average_per_person(tiny_lifter, monkeypatch):
    """spread_smoothing w: each person's published spread^2 is w * this frame's + (1 - w) * its
    previous published one; a new person starts from its own first frame; w = 1 publishes the
    frame's spread as lifted."""
    real_lift = tiny_lifter.lift
    frame_spread = iter([1.0, 3.0, 3.0])

    def lift_with_known_spread(*args, **kwargs):  # the real output, spread set per frame
        pose, spread = real_lift(*args, **kwargs)
        return pose, np.full_like(spread, next(frame_spread))

    monkeypatch.setattr(tiny_lifter, "lift", lift_with_known_spread)
    core, _ = make_core(tiny_lifter, spread_smoothing=0.5)
    published = []
    for i in range(3):
        job = send(core, T0 + i / 30, A[i][None])
        published.append(core.lift(job).spread_m[0, 1])
    np.testing.assert_allclose(published, [1.0, np.sqrt(5.0), np.sqrt(7.0)])
    assert list(core.spread_sq) == [0]
    core._reset_tracks()
    assert core.spread_sq == {}

    frame_spread = iter([1.0, 3.0])
    plain, _ = make_core(tiny_lifter, spread_smoothing=1.0)
    out = [plain.lift(send(plain, T0 + i / 30, A[i][None])).spread_m[0, 1] for i in range(2)]
    np.testing.assert_allclose(out, [1.0, 3.0])


def test_core_with_a_mirrored_lifter_lifts_and_reports_it(tiny_onnx):
    from diffhpe_models.runtime import load_lifter
    mirrored = load_lifter(str(tiny_onnx), backend="onnxruntime", max_persons=8, fixed_noise=True,
                           mirror=True)
    core, _ = make_core(mirrored, mirror="always")
    for i in range(5):
        job = send(core, T0 + i / 30, np.stack([A[i], B[i]]))
    result = core.lift(job)
    assert result.track_ids.tolist() == [0, 1] and np.isfinite(result.pose_m).all()
    core.finish(result)
    assert core.diagnostic_snapshot()[2]["mirror"] is True
    assert make_core(MODEL_SHAPE)[0].diagnostic_snapshot()[2]["mirror"] is False

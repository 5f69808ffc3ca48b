"""Metrics against values computed by hand on tiny poses, plus the invariances they promise."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from diffhpe_models import metrics
from diffhpe_models.skeleton import BONES, NUM_JOINTS, PARENTS, SYMMETRIC_BONE_PAIRS

# Child-from-parent offsets (metres, Z up) of a standing, left/right symmetric H36M-17 body.
OFFSETS = {
    1: (-0.13, 0, 0), 2: (0, 0, -0.45), 3: (0, 0, -0.45),
    4: (0.13, 0, 0), 5: (0, 0, -0.45), 6: (0, 0, -0.45),
    7: (0, 0.02, 0.23), 8: (0, 0, 0.25), 9: (0, -0.08, 0.12), 10: (0, 0.03, 0.12),
    11: (0.16, 0, 0), 12: (0, 0, -0.28), 13: (0, -0.05, -0.25),
    14: (-0.16, 0, 0), 15: (0, 0, -0.28), 16: (0, -0.05, -0.25),
}


def standing_pose(offsets=OFFSETS):
    pose = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        pose[j] = pose[PARENTS[j]] + np.asarray(offsets[j], dtype=float)
    return pose


def test_mpjpe_hand_value_and_per_joint():
    target = standing_pose()
    pred = target + np.array([0.003, 0.004, 0.0])  # 5 mm everywhere
    assert metrics.mpjpe(pred, target) == pytest.approx(5.0)
    pred = target.copy()
    pred[13] += (0.0, 0.0, 0.017)  # 17 mm on the left wrist only -> 1 mm on average
    assert metrics.mpjpe(pred, target) == pytest.approx(1.0)
    per_joint = metrics.mpjpe(pred, target, per_joint=True)
    assert per_joint.shape == (NUM_JOINTS,)
    assert per_joint[13] == pytest.approx(17.0)
    assert np.delete(per_joint, 13) == pytest.approx(np.zeros(16))


def test_mpjpe_averages_over_batch_dims():
    target = np.broadcast_to(standing_pose(), (2, 3, NUM_JOINTS, 3))
    pred = target.copy()
    pred[1] += (0.0, 0.006, 0.0)  # half the frames off by 6 mm
    assert metrics.mpjpe(pred, target) == pytest.approx(3.0)


def test_p_mpjpe_collapsed_prediction_maps_to_target_centroid():
    # All predicted joints coincide -> scale 0, aligned pose = target centroid.
    target = np.zeros((NUM_JOINTS, 3))
    target[1] = (0.017, 0.0, 0.0)  # centroid (0.001, 0, 0): distances 0.016 once, 0.001 x 16
    pred = np.zeros((NUM_JOINTS, 3))
    assert metrics.p_mpjpe(pred, target) == pytest.approx((16.0 + 16 * 1.0) / 17)


def test_p_mpjpe_invariant_to_similarity_of_prediction():
    rng = np.random.default_rng(0)
    target = standing_pose() + rng.normal(0, 0.02, (4, NUM_JOINTS, 3))
    pred = target + rng.normal(0, 0.03, target.shape)
    base = metrics.p_mpjpe(pred, target)
    assert base > 1.0
    rots = Rotation.random(4, random_state=1).as_matrix()
    moved = 2.7 * np.einsum("fij,fkj->fki", rots, pred) + rng.normal(0, 1, (4, 1, 3))
    assert metrics.p_mpjpe(moved, target) == pytest.approx(base, rel=1e-9)
    assert metrics.mpjpe(moved, target) > 10 * base
    # An exact similarity copy aligns perfectly.
    assert metrics.p_mpjpe(0.5 * target @ rots[0].T + 3.0, target) == pytest.approx(0, abs=1e-9)


def test_p_mpjpe_rejects_reflections_and_matches_kabsch():
    # A mirrored (non-planar) pose cannot be aligned by a proper rotation: the error stays > 0,
    # and equals the one from scipy's independent rotation fit (Kabsch, det +1) + best scale.
    target = standing_pose()
    pred = target * np.array([-1.0, 1.0, 1.0]) + 0.01 * np.arange(NUM_JOINTS)[:, None] ** 0.5
    p = pred - pred.mean(0)
    q = target - target.mean(0)
    rot, _ = Rotation.align_vectors(q, p)
    p_rot = rot.apply(p)
    scale = np.sum(p_rot * q) / np.sum(p * p)
    expected = np.linalg.norm(scale * p_rot - q, axis=-1).mean() * 1000
    got = metrics.p_mpjpe(pred, target)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got > 20.0
    aligned = metrics.procrustes_align(pred, target)
    # The alignment is a similarity with det +1: the signed volume keeps pred's orientation.
    vol = np.linalg.det(np.stack([aligned[j] - aligned[0] for j in (3, 13, 10)]))
    vol_pred = np.linalg.det(np.stack([pred[j] - pred[0] for j in (3, 13, 10)]))
    assert np.sign(vol) == np.sign(vol_pred)


def test_mpjve_and_accel_error_hand_values():
    T = 5
    target = np.broadcast_to(standing_pose(), (T, NUM_JOINTS, 3))
    t = np.arange(T, dtype=float)[:, None, None]
    linear = target + t * np.array([0.001, 0.0, 0.0])  # 1 mm per frame drift
    assert metrics.mpjve(linear, target) == pytest.approx(1.0)
    assert metrics.accel_error(linear, target) == pytest.approx(0.0, abs=1e-9)
    quadratic = target + t**2 * np.array([0.0, 0.0, 0.001])  # second difference 2 mm
    assert metrics.accel_error(quadratic, target) == pytest.approx(2.0)
    # velocities 1, 3, 5, 7 mm/frame -> mean 4
    assert metrics.mpjve(quadratic, target) == pytest.approx(4.0)
    per_joint = metrics.mpjve(linear, target, per_joint=True)
    assert per_joint.shape == (NUM_JOINTS,) and per_joint == pytest.approx(np.ones(NUM_JOINTS))


def test_segment_std_hand_value():
    frames = []
    for shin in (0.40, 0.42, 0.44):  # right shin (bone 3 -> 2) lengths; std (ddof 1) = 20 mm
        offsets = dict(OFFSETS)
        offsets[3] = (0, 0, -shin)
        frames.append(standing_pose(offsets))
    seq = np.stack(frames)
    assert metrics.segment_std(seq) == pytest.approx(20.0 / 16)
    per_bone = metrics.segment_std(seq, per_bone=True)
    shin = BONES.index((3, 2))
    assert per_bone[shin] == pytest.approx(20.0)
    assert np.delete(per_bone, shin) == pytest.approx(np.zeros(15), abs=1e-9)
    # A rigidly moving body has perfectly consistent segments.
    moving = standing_pose() + np.arange(4)[:, None, None] * np.array([0.1, 0.2, 0.0])
    assert metrics.segment_std(moving) == pytest.approx(0.0, abs=1e-9)


def test_sagittal_symmetry_gap_hand_value():
    assert metrics.sagittal_symmetry_gap(standing_pose()) == pytest.approx(0.0, abs=1e-9)
    offsets = dict(OFFSETS)
    offsets[13] = (0, -0.05, -0.28)  # left forearm: sqrt(.05^2+.28^2) vs sqrt(.05^2+.25^2)
    gap_m = np.hypot(0.05, 0.28) - np.hypot(0.05, 0.25)
    pose = standing_pose(offsets)
    assert metrics.sagittal_symmetry_gap(pose) == pytest.approx(gap_m * 1000 / 6)
    per_pair = metrics.sagittal_symmetry_gap(pose, per_pair=True)
    forearms = SYMMETRIC_BONE_PAIRS.index(((13, 12), (16, 15)))
    assert per_pair[forearms] == pytest.approx(gap_m * 1000)
    assert np.delete(per_pair, forearms) == pytest.approx(np.zeros(5), abs=1e-9)


def test_bad_inputs_raise_clear_errors():
    pose = standing_pose()
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.mpjpe(pose[None], np.stack([pose, pose]))
    with pytest.raises(ValueError, match=r"pred: expected shape"):
        metrics.mpjpe(pose[:16], pose[:16])
    bad = pose.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="target: contains NaN"):
        metrics.p_mpjpe(pose, bad)
    with pytest.raises(ValueError, match="at least 2 frames"):
        metrics.mpjve(pose[None], pose[None])
    with pytest.raises(ValueError, match="at least 3 frames"):
        metrics.accel_error(np.stack([pose, pose]), np.stack([pose, pose]))
    with pytest.raises(ValueError, match="at least 2 frames"):
        metrics.segment_std(pose)

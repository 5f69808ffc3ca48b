"""The H36M-17 skeleton definition and the detector mappings (MediaPipe Pose 33, COCO 17)."""
import numpy as np
import pytest

from diffhpe_models import skeleton as sk

# The reference (VideoPose3D / DiffHPE) after the 32 -> 17 reduction.
REFERENCE_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15]
# COCO keypoint order as published with the COCO person keypoints annotations.
COCO_KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                  "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                  "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]


def test_definition_matches_the_reference():
    assert len(sk.JOINT_NAMES) == sk.NUM_JOINTS == 17
    assert sk.PARENTS.tolist() == REFERENCE_PARENTS
    assert sk.LEFT_JOINTS == (4, 5, 6, 11, 12, 13) and sk.RIGHT_JOINTS == (1, 2, 3, 14, 15, 16)
    for j in sk.LEFT_JOINTS:
        assert sk.JOINT_NAMES[j].startswith("left_") and sk.side_of(j) == "left"
    for j in sk.RIGHT_JOINTS:
        assert sk.JOINT_NAMES[j].startswith("right_") and sk.side_of(j) == "right"
    assert [sk.side_of(j) for j in (0, 7, 8, 9, 10)] == ["centre"] * 5
    # Parents come before children (forward kinematics / drawing order).
    assert all(p < j for j, p in enumerate(sk.PARENTS) if p >= 0)


def test_flip_permutation_swaps_names():
    flip = sk.FLIP_PERMUTATION
    assert sorted(flip.tolist()) == list(range(17))
    np.testing.assert_array_equal(flip[flip], np.arange(17))
    for j, name in enumerate(sk.JOINT_NAMES):
        mirrored = name.replace("left_", "@").replace("right_", "left_").replace("@", "right_")
        assert sk.JOINT_NAMES[flip[j]] == mirrored


def test_bones_pairs_parts_and_adjacency():
    assert len(sk.BONES) == 16 and all(sk.PARENTS[c] == p for c, p in sk.BONES)
    flip = sk.FLIP_PERMUTATION
    for (lc, lp), (rc, rp) in sk.SYMMETRIC_BONE_PAIRS:
        assert (flip[lc], flip[lp]) == (rc, rp)
        assert sk.side_of(lc) == "left" and sk.side_of(rc) == "right"
    parts = sorted(j for joints in sk.BODY_PARTS.values() for j in joints)
    assert parts == list(range(17))
    a = sk.adjacency()
    np.testing.assert_array_equal(a, a.T)
    assert np.trace(a) == 17 and (a.sum() - 17) == 2 * 16
    assert np.trace(sk.adjacency(self_loops=False)) == 0
    # thorax (8) touches spine, neck/nose and both shoulders
    assert set(np.flatnonzero(sk.adjacency(False)[8])) == {7, 9, 11, 14}


def test_bone_lengths_in_bones_order():
    pose = np.zeros((2, 17, 3))
    pose[:, :, 2] = np.arange(17)  # joint j at height j
    lengths = sk.bone_lengths(pose)
    assert lengths.shape == (2, 16)
    np.testing.assert_allclose(lengths[0], [abs(c - p) for c, p in sk.BONES])


def test_mediapipe_names_are_mediapipes_own():
    from mediapipe.python.solutions.pose import PoseLandmark
    assert sk.MEDIAPIPE33_NAMES == tuple(p.name.lower() for p in PoseLandmark)
    assert sk.COCO17_NAMES == tuple(COCO_KEYPOINTS)


def _random_points(names, dim, seed):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(4, len(names), dim))
    conf = rng.uniform(size=(4, len(names)))
    return pts, conf, {n: i for i, n in enumerate(names)}


@pytest.mark.parametrize("fmt, names, dim", [("mediapipe33", sk.MEDIAPIPE33_NAMES, 2),
                                             ("coco17", sk.COCO17_NAMES, 3)])
def test_detector_mapping(fmt, names, dim):
    pts, conf, ix = _random_points(names, dim, seed=len(names))
    out, c = sk.to_h36m17(pts, conf, fmt)
    assert out.shape == (4, 17, dim) and c.shape == (4, 17)
    j = {n: i for i, n in enumerate(sk.JOINT_NAMES)}
    direct = {"right_hip": "right_hip", "right_knee": "right_knee", "right_foot": "right_ankle",
              "left_hip": "left_hip", "left_knee": "left_knee", "left_foot": "left_ankle",
              "neck_nose": "nose", "left_shoulder": "left_shoulder", "left_elbow": "left_elbow",
              "left_wrist": "left_wrist", "right_shoulder": "right_shoulder",
              "right_elbow": "right_elbow", "right_wrist": "right_wrist"}
    for h, d in direct.items():
        np.testing.assert_array_equal(out[:, j[h]], pts[:, ix[d]], err_msg=h)
        np.testing.assert_array_equal(c[:, j[h]], conf[:, ix[d]], err_msg=h)
    p = lambda n: pts[:, ix[n]]  # noqa: E731
    pelvis = (p("left_hip") + p("right_hip")) / 2
    thorax = (p("left_shoulder") + p("right_shoulder")) / 2
    ears = (p("left_ear") + p("right_ear")) / 2
    np.testing.assert_allclose(out[:, j["pelvis"]], pelvis)
    np.testing.assert_allclose(out[:, j["thorax"]], thorax)
    np.testing.assert_allclose(out[:, j["spine"]], (pelvis + thorax) / 2)
    np.testing.assert_allclose(out[:, j["head"]], ears + sk.HEAD_TOP_EXTRAPOLATION * (ears - thorax))
    cf = lambda *ns: np.min([conf[:, ix[n]] for n in ns], axis=0)  # noqa: E731
    np.testing.assert_allclose(c[:, j["pelvis"]], cf("left_hip", "right_hip"))
    np.testing.assert_allclose(c[:, j["spine"]], cf("left_hip", "right_hip", "left_shoulder", "right_shoulder"))
    np.testing.assert_allclose(c[:, j["head"]], cf("left_ear", "right_ear", "left_shoulder", "right_shoulder"))


def test_mapping_keeps_left_and_right():
    # A mirrored body (x -> -x) with mirrored labels maps to the mirrored H36M pose.
    pts, conf, ix = _random_points(sk.COCO17_NAMES, 3, seed=3)
    swap = [ix[n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")]
            for n in sk.COCO17_NAMES]
    mirrored = pts[:, swap] * [-1, 1, 1]
    a, _ = sk.to_h36m17(pts, conf, "coco17")
    b, _ = sk.to_h36m17(mirrored, conf[:, swap], "coco17")
    np.testing.assert_allclose(b, a[:, sk.FLIP_PERMUTATION] * [-1, 1, 1])


def test_mapping_errors_and_passthrough():
    with pytest.raises(ValueError, match="unknown keypoint format 'openpose'"):
        sk.to_h36m17(np.zeros((17, 2)), np.ones(17), "openpose")
    with pytest.raises(ValueError, match="mediapipe33 needs 33 keypoints"):
        sk.to_h36m17(np.zeros((17, 2)), np.ones(17), "mediapipe33")
    pts = np.arange(34.0).reshape(17, 2)
    out, conf = sk.to_h36m17(pts, np.ones(17), "h36m17")
    np.testing.assert_array_equal(out, pts)
    out[0, 0] = -1
    assert pts[0, 0] == 0  # a copy, not a view

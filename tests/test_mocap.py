"""The real mocap sources (fetched with pip into .cache/packages) mapped onto H36M-17."""
import io
from pathlib import Path

import numpy as np
import pytest

from diffhpe_models import mocap
from diffhpe_models.bvh import parse_bvh
from diffhpe_models.fetch import read_archive_member, read_archive_text
from diffhpe_models.skeleton import JOINT_NAMES, LEFT_JOINTS, RIGHT_JOINTS, SYMMETRIC_BONE_PAIRS, side_of

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "packages"
J = {n: i for i, n in enumerate(JOINT_NAMES)}


@pytest.fixture(scope="module")
def archives():
    return mocap.fetch_sources(CACHE)


@pytest.fixture(scope="module")
def sequences(archives):
    return mocap.load_sources(archives)


@pytest.fixture(scope="module")
def holosoma_names(archives):
    return mocap.holosoma_joint_names(archives[mocap.HOLOSOMA[0]])


def _bvh(archives, src):
    text = read_archive_text(archives[mocap.BVHTOOLS[0]], f"{mocap.BVH_DIR}/{src.file}")
    return parse_bvh(text, source=src.file)


def test_holosoma_names_come_from_the_archive(archives, holosoma_names):
    assert len(holosoma_names) == 53
    assert holosoma_names[:5] == ["Hips", "Spine", "Spine1", "Neck", "Head"]
    members = mocap.holosoma_climb_members(archives[mocap.HOLOSOMA[0]])
    assert [m.split("/")[-2] for m in members] == [f"mocap_climb_seq_{i}" for i in range(5)]
    raw = np.load(io.BytesIO(read_archive_member(archives[mocap.HOLOSOMA[0]], members[0])))
    assert raw.dtype == np.float32 and raw.shape == (2801, 53, 3)


@pytest.mark.parametrize("mapping, side_words", [
    (mocap.HOLOSOMA_TO_H36M, ("Left", "Right")),
    (mocap.LAFAN_TO_H36M, ("Left", "Right")),
    (mocap.RIGIFY_TO_H36M, (".L", ".R")),
])
def test_mappings_are_complete_and_keep_sides(mapping, side_words):
    assert list(mapping) == list(JOINT_NAMES)
    derived = [n for n, v in mapping.items() if v is mocap.DERIVED]
    assert derived == ["neck_nose", "head"]
    for j, name in enumerate(JOINT_NAMES):
        source = mapping[name]
        if source is mocap.DERIVED:
            continue
        want = {"left": side_words[0], "right": side_words[1]}.get(side_of(j))
        if want is None:  # centre joints must not come from a sided source joint
            assert not any(w in source for w in side_words), (name, source)
        else:
            assert want in source, (name, source)
    named = [v for v in mapping.values() if v is not mocap.DERIVED]
    assert len(set(named)) == len(named)


def test_mapped_names_exist_in_the_real_skeletons(archives, holosoma_names):
    assert set(v for v in mocap.HOLOSOMA_TO_H36M.values() if v) <= set(holosoma_names)
    for src in mocap.BVH_SOURCES:
        names = _bvh(archives, src).names
        assert set(v for v in src.mapping.values() if v) | {mocap.HEAD_JOINT[src.skeleton]} <= set(names)


def test_y_up_conversion_is_a_rotation():
    r = mocap.Y_UP_TO_Z_UP
    np.testing.assert_allclose(r @ r.T, np.eye(3))
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r @ [0, 1, 0], [0, 0, 1])  # BVH up becomes world up


def _facing_fraction(points, names, left, right, pairs):
    """Fraction of frames in which each (tip, base) vector points along left x up."""
    ix = {n: i for i, n in enumerate(names)}
    forward = np.cross(points[:, ix[left]] - points[:, ix[right]], [0.0, 0.0, 1.0])
    return [float(np.mean(np.sum((points[:, ix[t]] - points[:, ix[b]]) * forward, -1) > 0))
            for t, b in pairs]


def test_world_frames_are_right_handed_with_z_up(archives, holosoma_names):
    # Toes point forward of the ankles: with Z up, forward = left x up. A mirrored conversion or
    # swapped left/right names would flip this for nearly every frame.
    holo = archives[mocap.HOLOSOMA[0]]
    for member in mocap.holosoma_climb_members(holo):
        raw = np.load(io.BytesIO(read_archive_member(holo, member)))
        fr = _facing_fraction(raw, holosoma_names, "LeftArm", "RightArm",
                              [("LeftToeBase", "LeftFoot"), ("RightToeBase", "RightFoot")])
        assert min(fr) > 0.9, (member, fr)
    toes = {"lafan": [("LeftToe", "LeftFoot"), ("RightToe", "RightFoot")],
            "rigify": [("foot.L_End", "foot.L"), ("foot.R_End", "foot.R")]}
    for src in mocap.BVH_SOURCES:
        b = _bvh(archives, src)
        pos, _, _ = mocap.bvh_world_points(b, src)
        fr = _facing_fraction(pos, b.names, src.mapping["left_shoulder"],
                              src.mapping["right_shoulder"], toes[src.skeleton])
        assert min(fr) > 0.9, (src.file, fr)


def test_walking_goes_forward(sequences):
    # Independent of the toes: the LAFAN takes mostly walk forwards.
    for seq in sequences:
        if seq.subject != "lafan":
            continue
        p = seq.positions_m.astype(np.float64)
        forward = np.cross(p[:, J["left_hip"]] - p[:, J["right_hip"]], [0.0, 0.0, 1.0])[:, :2]
        v = np.gradient(p[:, 0, :2], axis=0) * seq.fps
        speed = np.linalg.norm(v, axis=-1)
        moving = speed > 0.3
        cos = np.sum(v[moving] * forward[moving], -1) / speed[moving] / np.linalg.norm(forward[moving], axis=-1)
        assert moving.sum() > 500 and np.median(cos) > 0.5, (seq.key, np.median(cos))


# Plausible adult bone lengths (m); thorax = shoulder midpoint. The rigify take is a smaller figure: thigh 0.33 m.
RANGES = {
    ("left_knee", "left_hip"): (0.30, 0.55), ("left_foot", "left_knee"): (0.30, 0.55),
    ("left_elbow", "left_shoulder"): (0.22, 0.40), ("left_wrist", "left_elbow"): (0.18, 0.32),
    ("left_hip", "pelvis"): (0.06, 0.16), ("left_shoulder", "thorax"): (0.0, 0.25),
    ("thorax", "spine"): (0.15, 0.35), ("spine", "pelvis"): (0.15, 0.40),
    ("neck_nose", "thorax"): (0.10, 0.30), ("head", "neck_nose"): (0.10, 0.25),
}


def test_bone_lengths_are_human_and_symmetric(sequences):
    for seq in sequences:
        p = seq.positions_m.astype(np.float64)
        for (a, b), (lo, hi) in RANGES.items():
            length = np.median(np.linalg.norm(p[:, J[a]] - p[:, J[b]], axis=-1))
            assert lo <= length <= hi, (seq.key, a, b, length)
        for (lc, lp), (rc, rp) in SYMMETRIC_BONE_PAIRS:
            left = np.median(np.linalg.norm(p[:, lc] - p[:, lp], axis=-1))
            right = np.median(np.linalg.norm(p[:, rc] - p[:, rp], axis=-1))
            assert abs(left - right) <= 0.1 * max(left, right), (seq.key, JOINT_NAMES[lc], left, right)


def test_sides_are_where_the_names_say(sequences):
    # Left joints lie on the +left side of the body's mid-plane (left = up x forward). Checked with
    # the toes above; here for the mapped H36M pose: left hip/shoulder on the left of the pelvis.
    for seq in sequences:
        p = seq.positions_m.astype(np.float64)
        left_axis = p[:, J["left_hip"]] - p[:, J["right_hip"]]
        for lj, rj in zip(LEFT_JOINTS, RIGHT_JOINTS):
            d = np.sum((p[:, lj] - p[:, rj]) * left_axis, -1)
            assert np.mean(d > 0) > 0.6, (seq.key, JOINT_NAMES[lj], np.mean(d > 0))


def test_head_points_are_plausible(sequences):
    for seq in sequences:
        p = seq.positions_m.astype(np.float64)
        upright = mocap.upright_frames(p[:, J["pelvis"]], p[:, J["thorax"]])
        if upright.sum() < 100:
            continue
        q = p[upright]
        top_above = q[:, J["head"], 2] - q[:, J["thorax"], 2]
        nose_above = q[:, J["neck_nose"], 2] - q[:, J["thorax"], 2]
        assert 0.2 < np.median(top_above) < 0.40, (seq.key, np.median(top_above))
        assert 0.07 < np.median(nose_above) < np.median(top_above), seq.key
        forward = np.cross(q[:, J["left_shoulder"]] - q[:, J["right_shoulder"]], [0.0, 0.0, 1.0])
        assert np.mean(np.sum((q[:, J["neck_nose"]] - q[:, J["thorax"]]) * forward, -1) > 0) > 0.95


def test_frames_fps_units_and_grounding(sequences):
    frames = {}
    for seq in sequences:
        p = seq.positions_m
        assert p.dtype == np.float32 and p.shape[1:] == (17, 3) and np.isfinite(p).all()
        assert mocap.frozen_frames(p) == 0, seq.key
        feet = np.minimum(p[:, J["left_foot"], 2], p[:, J["right_foot"], 2])
        assert 0.0 < np.percentile(feet, 1) < 0.2, seq.key  # ankles just above the floor
        frames[seq.subject] = frames.get(seq.subject, 0) + len(p)
        if seq.subject == "holosoma":
            assert seq.fps == 30.0 and seq.fps_assumed
        else:
            assert seq.fps == {"lafan": 30.0, "rigify": 24.0}[seq.subject] and not seq.fps_assumed
    # Every frame of every file is used once (test3.bvh loses its repeated last frame).
    assert frames == {"holosoma": 12939, "lafan": 7184 + 3945, "rigify": 3088}


def test_split_is_by_whole_sequence_and_holds_real_held_out_data(sequences):
    by_split = {s: [q for q in sequences if q.split == s] for s in mocap.SPLITS}
    for split in ("validation", "test"):
        assert sum(len(q.positions_m) for q in by_split[split]) > 3000
        assert {q.subject for q in by_split[split]} == {"holosoma", "lafan", "rigify"}
    assert len({q.key for q in sequences}) == len(sequences)
    # Chunks of one file are contiguous and do not overlap.
    for src in sorted({q.source for q in sequences}):
        chunks = sorted((q.first_frame, q.first_frame + len(q.positions_m)) for q in sequences
                        if q.source == src)
        for (_, stop), (start, _) in zip(chunks, chunks[1:]):
            assert stop == start, src


def test_bad_input_raises_clear_errors(holosoma_names):
    x = np.zeros((5, 17, 3))
    x[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="clip.npy: non-finite value at frame 3, joint 2"):
        mocap.check_positions(x, "clip.npy")
    with pytest.raises(ValueError, match=r"lacks joints \['Hips'"):
        mocap.map_to_h36m(np.zeros((4, 2, 3)), ["A", "B"], mocap.HOLOSOMA_TO_H36M, "Head", source="s")
    y = np.cumsum(np.ones((6, 17, 3)), axis=0)
    y = np.concatenate([y[:1], y, y[-1:], y[-1:]])
    trimmed, head, tail = mocap.trim_frozen_ends(y)
    assert (head, tail, len(trimmed)) == (1, 2, 6)

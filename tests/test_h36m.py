"""Human3.6M loader on small arrays written in VideoPose3D's exact layout (pickled dicts) and in
the pickle-free layout."""
import numpy as np
import pytest

from diffhpe_models.dataset import DatasetError
from diffhpe_models.h36m import (
    CAMERA_RESOLUTIONS,
    KEPT_JOINTS,
    align_2d_to_3d,
    load_h36m_2d,
    load_h36m_3d,
    reduce_32_to_17,
    save_h36m_npz,
)
from diffhpe_models.skeleton import PARENTS

SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


def _pose32(n, offset=0.0):
    """(n, 32, 3): joint j of frame t sits at (j, t, offset) so every joint is identifiable."""
    t = np.arange(n, dtype=np.float32)[:, None]
    j = np.arange(32, dtype=np.float32)[None, :]
    return np.stack(np.broadcast_arrays(j, t, np.full_like(t * j, offset)), -1).astype(np.float32)


def _nested_3d():
    return {s: {"Walking 1": _pose32(6, i), "Directions": _pose32(4, 10 + i)}
            for i, s in enumerate(SUBJECTS)}


def _nested_2d(n=6, extra=2):
    return {s: {"Walking 1": [np.full((n + extra, 17, 2), c, np.float32) for c in range(4)],
                "Directions": [np.full((4, 17, 2), c, np.float32) for c in range(4)]}
            for s in SUBJECTS}


@pytest.fixture
def videopose3d_files(tmp_path):
    """Files exactly as VideoPose3D's prepare_data_h36m.py writes them (dicts -> pickled)."""
    p3 = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(p3, positions_3d=_nested_3d())
    p2 = tmp_path / "data_2d_h36m_cpn_ft_h36m_dbb.npz"
    np.savez_compressed(p2, positions_2d=_nested_2d(), metadata={
        "layout_name": "h36m", "num_joints": 17,
        "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]})
    return p3, p2


def test_reduction_keeps_the_reference_joints():
    assert KEPT_JOINTS == (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
    pose = reduce_32_to_17(_pose32(2))
    assert pose.shape == (2, 17, 3)
    np.testing.assert_array_equal(pose[0, :, 0], KEPT_JOINTS)
    # VideoPose3D's 32-joint parents, re-indexed over the kept joints (skipping removed ones), give
    # skeleton.PARENTS after its explicit rewiring of the shoulders (new 11, 14) onto the thorax (8).
    h36m32_parents = [-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20,
                      19, 22, 12, 24, 25, 26, 27, 28, 27, 30]
    new_index = {old: new for new, old in enumerate(KEPT_JOINTS)}
    for new, old in enumerate(KEPT_JOINTS):
        p = h36m32_parents[old]
        while p != -1 and p not in new_index:
            p = h36m32_parents[p]
        parent = new_index[p] if p != -1 else -1
        if new in (11, 14):
            assert parent == 7  # via the removed joints 16 / 24 onto 12 (spine), hence the rewiring
            parent = 8
        assert parent == PARENTS[new]
    with pytest.raises(ValueError, match="expected 32"):
        reduce_32_to_17(np.zeros((2, 17, 3)))


def test_pickled_layout_needs_explicit_trust(videopose3d_files):
    p3, p2 = videopose3d_files
    with pytest.raises(DatasetError, match="pickled dict .* trust_pickle=True"):
        load_h36m_3d(p3)
    with pytest.raises(DatasetError, match="pickled dict"):
        load_h36m_2d(p2)
    with pytest.warns(UserWarning, match="allow_pickle=True"):
        ds = load_h36m_3d(p3, trust_pickle=True)
    assert len(ds) == 14 and ds.sequences["S9/Walking 1"].shape == (6, 17, 3)
    assert {ds.split[k] for k in ds.sequences if k.startswith(("S9/", "S11/"))} == {"test"}
    assert {ds.split[k] for k in ds.sequences if not k.startswith(("S9/", "S11/"))} == {"train"}
    assert set(ds.fps.values()) == {50.0}
    np.testing.assert_array_equal(ds.sequences["S5/Walking 1"][3, :, 0], KEPT_JOINTS)
    assert ds.subset("test").num_frames() == 2 * (6 + 4)
    with pytest.warns(UserWarning):
        kp = load_h36m_2d(p2, trust_pickle=True)
    assert len(kp["S1/Walking 1"]) == 4 and kp["S1/Walking 1"][3].shape == (8, 17, 2)
    aligned = align_2d_to_3d(kp, ds)
    assert [len(c) for c in aligned["S1/Walking 1"]] == [6] * 4  # 2D trimmed to the 3D length
    assert len(CAMERA_RESOLUTIONS) == 4


def test_pickle_free_layout_round_trip(tmp_path):
    path = save_h36m_npz(tmp_path / "h36m.npz", _nested_3d(), _nested_2d())
    with np.load(path, allow_pickle=False) as z:
        assert "positions_3d/S11/Directions" in z.files and "positions_2d/S1/Walking 1/3" in z.files
    ds = load_h36m_3d(path)  # no trust needed, no warning
    assert len(ds) == 14
    np.testing.assert_array_equal(ds.sequences["S11/Directions"], reduce_32_to_17(_pose32(4, 16)))
    kp = load_h36m_2d(path)
    np.testing.assert_array_equal(kp["S8/Directions"][2], np.full((4, 17, 2), 2))


def test_bad_h36m_files(tmp_path):
    p = tmp_path / "short2d.npz"
    save_h36m_npz(p, {"S1": {"A": _pose32(6)}}, {"S1": {"A": [np.zeros((5, 17, 2))] * 4}})
    with pytest.raises(DatasetError, match="S1/A camera 0: 5 2D frames < 6 3D frames"):
        align_2d_to_3d(load_h36m_2d(p), load_h36m_3d(p))
    p = save_h36m_npz(tmp_path / "s2.npz", {"S2": {"A": _pose32(3)}})
    with pytest.raises(DatasetError, match="subject 'S2' has no split"):
        load_h36m_3d(p)
    p = save_h36m_npz(tmp_path / "nan.npz", {"S1": {"A": np.full((3, 32, 3), np.nan)}})
    with pytest.raises(DatasetError, match="non-finite value at frame 0"):
        load_h36m_3d(p)
    p = save_h36m_npz(tmp_path / "j20.npz", {"S1": {"A": np.zeros((3, 20, 3))}})
    with pytest.raises(DatasetError, match=r"shape \(3, 20, 3\)"):
        load_h36m_3d(p)
    p = save_h36m_npz(tmp_path / "cams.npz", {"S1": {"A": _pose32(3)}}, {"S1": {"A": [np.zeros((3, 17, 2))] * 3}})
    with pytest.raises(DatasetError, match="3 cameras, expected 4"):
        load_h36m_2d(p)
    with pytest.raises(DatasetError, match="subject/action name 'a/b'"):
        save_h36m_npz(tmp_path / "x.npz", {"S1": {"a/b": _pose32(2)}})
    with pytest.raises(DatasetError, match="Human3.6M file not found"):
        load_h36m_3d(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    with pytest.raises(DatasetError, match="no 'positions_3d' dict"):
        load_h36m_3d(tmp_path / "other.npz")

"""Windows, resampling and the mocap WindowDataset (synthetic walking and, if built, real data)."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diffhpe_models.camera import Camera, project
from diffhpe_models.skeleton import FLIP_PERMUTATION, NUM_JOINTS, PARENTS
from diffhpe_models.windows import WindowDataset, extract_window, resample_sequence, window_bounds

DATASET = Path(__file__).resolve().parents[1] / "data" / "mocap_h36m17.npz"
KEYS = {"keypoints_px": (17, 2), "mask": (17,), "image_wh": None, "pose3d_m": (17, 3),
        "root_cam_m": (3,), "camera": None}

# Child-from-parent offsets (metres) of a standing body facing +y, Z up.
OFFSETS = np.array([
    (0, 0, 0), (-0.13, 0, 0), (0, 0, -0.45), (0, 0, -0.44), (0.13, 0, 0), (0, 0, -0.45),
    (0, 0, -0.44), (0, 0.02, 0.23), (0, 0, 0.25), (0, 0.08, 0.12), (0, -0.03, 0.12),
    (0.16, 0, 0), (0, 0, -0.28), (0, 0, -0.25), (-0.16, 0, 0), (0, 0, -0.28), (0, 0, -0.25),
])


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def walking_sequence(T, fps, heading=0.3, speed_mps=1.2, cadence_hz=0.9, z0=0.0):
    """(T, 17, 3) world metres, Z up: a body walking along `heading` with swinging limbs."""
    t = np.arange(T) / fps
    phase = 2 * np.pi * cadence_hz * t
    swing = {2: 0.45 * np.sin(phase), 5: -0.45 * np.sin(phase),  # thighs (joint = knee)
             12: -0.35 * np.sin(phase), 15: 0.35 * np.sin(phase)}  # upper arms (joint = elbow)
    knee = 0.5 * np.sin(phase + 1.0)
    bend = {3: -np.maximum(0, knee), 6: -np.maximum(0, -knee),  # shins (joint = foot)
            13: np.full(T, 0.3), 16: np.full(T, 0.3)}  # forearms (joint = wrist)
    poses = np.zeros((T, NUM_JOINTS, 3))
    for f in range(T):
        angle = np.zeros(NUM_JOINTS)
        for j in range(1, NUM_JOINTS):
            angle[j] = angle[PARENTS[j]] if PARENTS[j] in swing or PARENTS[j] in bend else 0.0
            angle[j] += swing.get(j, np.zeros(T))[f] + bend.get(j, np.zeros(T))[f]
            poses[f, j] = poses[f, PARENTS[j]] + _rot_x(angle[j]) @ OFFSETS[j]
    c, s = np.cos(heading), np.sin(heading)
    yaw = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    pelvis = np.stack([np.zeros(T), speed_mps * t, 0.93 + z0 + 0.02 * np.sin(2 * phase)], -1)
    return poses @ yaw.T + pelvis[:, None] @ yaw.T


def sequences():
    seqs = {"walk_a": walking_sequence(200, 60.0), "walk_b": walking_sequence(95, 30.0, -2.0),
            "short": walking_sequence(5, 30.0, 1.0, z0=1.2)}
    fps = {"walk_a": 60.0, "walk_b": 30.0, "short": 30.0}
    return seqs, fps


def dataset(**kw):
    seqs, fps = sequences()
    params = dict(sequences=seqs, fps=fps, noise_sigma_frac=0.0, outlier_prob=0.0)
    params.update(kw)
    return WindowDataset(**params)


def distance_matrix(points):
    p = points.reshape(-1, 3)
    return np.linalg.norm(p[:, None] - p[None], axis=-1)


def check_item(item, L):
    assert set(item) == set(KEYS)
    for key, tail in KEYS.items():
        assert item[key].dtype == np.float32, key
        assert np.all(np.isfinite(item[key])), key
        if tail is not None:
            assert item[key].shape == (L,) + tail, key
    assert item["image_wh"].shape == (2,) and item["camera"].shape == (4,)
    assert np.all(item["pose3d_m"][:, 0] == 0)
    assert np.all(item["root_cam_m"][:, 2] > 0)


def item_index(ds, name, frame):
    """Index of the item of sequence `name` whose chunk starts at `frame` (stride 1: its target)."""
    hits = [k for k in range(len(ds)) if ds.names[ds._item_seq[k]] == name
            and ds._item_frame[k] == frame]
    assert len(hits) == 1
    return hits[0]


def camera_of(item):
    fx, fy, cx, cy = item["camera"].astype(np.float64)
    w, h = item["image_wh"]
    return Camera(R=np.eye(3), t=np.zeros(3), fx=fx, fy=fy, cx=cx, cy=cy, width=int(w),
                  height=int(h))


def test_window_bounds_hand_values():
    assert window_bounds(10, 1, 5, "causal").tolist() == [0, 0, 0, 0, 1]
    assert window_bounds(10, 6, 5, "causal").tolist() == [2, 3, 4, 5, 6]
    assert window_bounds(10, 1, 5, "centred").tolist() == [0, 0, 1, 2, 3]
    assert window_bounds(10, 9, 5, "centred").tolist() == [7, 8, 9, 9, 9]
    seq = np.arange(10)[:, None] * np.ones((1, 3))
    assert extract_window(seq, 9, 3, "causal")[:, 0].tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="odd"):
        window_bounds(10, 3, 4, "centred")
    with pytest.raises(ValueError, match="mode"):
        window_bounds(10, 3, 5, "future")
    with pytest.raises(ValueError, match="outside"):
        window_bounds(10, 10, 5, "causal")


def test_resample_sequence_times_and_counts():
    t = np.arange(61) / 60.0  # one second at 60 fps
    poly = np.stack([t, t**2, t**3], -1)[:, None, :] * np.ones((1, 17, 1))
    out = resample_sequence(poly, 60.0, 30.0)
    assert out.shape == (31, 17, 3)
    t_out = np.arange(31) / 30.0
    np.testing.assert_allclose(out[:, 5], np.stack([t_out, t_out**2, t_out**3], -1), atol=1e-9)
    fast = resample_sequence(poly, 60.0, 30.0, speed=2.0, kind="linear")
    assert fast.shape == (16, 17, 3)
    np.testing.assert_allclose(fast[:, 0, 0], np.arange(16) * 2 / 30.0, atol=1e-12)
    slow = resample_sequence(poly, 60.0, 30.0, speed=0.5)
    assert slow.shape == (61, 17, 3)
    sine = np.sin(2 * np.pi * np.arange(100) / 30.0)[:, None, None] * np.ones((1, 17, 3))
    up = resample_sequence(sine, 30.0, 90.0)
    np.testing.assert_allclose(up[:, 0, 0], np.sin(2 * np.pi * np.arange(len(up)) / 90.0),
                               atol=2e-3)
    assert resample_sequence(poly[:2], 60.0, 30.0).shape == (1, 17, 3)
    with pytest.raises(ValueError, match="speed"):
        resample_sequence(poly, 60.0, 30.0, speed=0.0)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("mode, L", [("causal", 27), ("centred", 9)])
def test_items_shapes_root_and_projection(train, mode, L):
    ds = dataset(train=train, mode=mode, window=L, occlusion="random")
    for i in range(0, len(ds), max(1, len(ds) // 25)):
        item = ds[i]
        check_item(item, L)
        # Without detector noise the 2D is exactly the projection of the 3D.
        points = item["pose3d_m"].astype(np.float64) + item["root_cam_m"][:, None]
        np.testing.assert_allclose(project(points, camera_of(item)), item["keypoints_px"],
                                   atol=2e-3, rtol=1e-5)
        assert 0.5 < item["mask"].mean() < 1.0 or item["mask"].mean() == 1.0


def test_lengths_follow_chunks_and_stride():
    # After resampling to 30 fps: walk_a 200 frames at 60 -> 100, walk_b 95, short 5.
    assert len(dataset(train=True, window=27)) == 4 + 4 + 1
    assert len(dataset(train=False, window=27)) == 100 + 95 + 5
    assert len(dataset(train=False, window=27, stride=10)) == 10 + 10 + 1


@pytest.mark.parametrize("mode", ["causal", "centred"])
def test_eval_windows_are_the_sequence_frames_seen_by_a_rigid_camera(mode):
    seqs, fps = sequences()
    ds = dataset(train=False, mode=mode, window=9)
    base = {k: resample_sequence(v, fps[k], 30.0) for k, v in seqs.items()}
    starts = np.cumsum([0] + [len(base[k]) for k in ds.names])
    for k, name in enumerate(ds.names):
        for frame in (0, 3, len(base[name]) - 1):
            item = ds[starts[k] + frame]
            cam_points = item["pose3d_m"] + item["root_cam_m"][:, None]
            world = extract_window(base[name], frame, 9, mode)
            np.testing.assert_allclose(distance_matrix(cam_points), distance_matrix(world),
                                       atol=2e-5)


def test_eval_is_deterministic_per_seed_and_index():
    a = dataset(train=False, occlusion="mixed", noise_sigma_frac=0.01, outlier_prob=0.05, seed=3)
    b = dataset(train=False, occlusion="mixed", noise_sigma_frac=0.01, outlier_prob=0.05, seed=3)
    c = dataset(train=False, occlusion="mixed", noise_sigma_frac=0.01, outlier_prob=0.05, seed=4)
    order = [17, 3, 150, 3, 0]
    first = [a[i] for i in order]
    second = [b[i] for i in reversed(order)][::-1]
    for x, y in zip(first, second):
        for key in KEYS:
            np.testing.assert_array_equal(x[key], y[key])
    assert not np.array_equal(a[17]["camera"], c[17]["camera"])


def test_train_flip_mirrors_and_swaps_sides():
    seqs, fps = sequences()
    base = resample_sequence(seqs["walk_b"], 30.0, 30.0)
    kw = dict(train=True, stride=1, speed_range=(1.0, 1.0), window=9)
    flipped = dataset(flip_prob=1.0, **kw)
    plain = dataset(flip_prob=0.0, **kw)
    i = item_index(flipped, "walk_b", 40)
    world = extract_window(base, 40, 9, "causal")
    for ds, mirrored in ((flipped, True), (plain, False)):
        item = ds[i]
        points = (item["pose3d_m"] + item["root_cam_m"][:, None]).astype(np.float64)
        if mirrored:  # swapping the sides back gives the same point set (up to the mirror)
            points = points[:, FLIP_PERMUTATION]
        np.testing.assert_allclose(distance_matrix(points), distance_matrix(world), atol=2e-5)
        # Handedness: the signed volume of (pelvis -> right hip, thorax, nose) flips sign.
        ratio = _volume(points) / _volume(world)
        assert ratio == pytest.approx(-1.0 if mirrored else 1.0, rel=1e-4)


def _volume(p):
    return np.linalg.det(np.stack([p[0, j] - p[0, 0] for j in (1, 8, 9)]))


def test_train_speed_stretches_window():
    seqs, fps = sequences()
    base = resample_sequence(seqs["walk_a"], 60.0, 30.0)
    ds = dataset(train=True, stride=1, speed_range=(2.0, 2.0), flip_prob=0.0, window=9)
    item = ds[item_index(ds, "walk_a", 60)]
    frames = np.clip(60 + 2 * np.arange(-8, 1), 0, len(base) - 1)
    points = item["pose3d_m"] + item["root_cam_m"][:, None]
    np.testing.assert_allclose(distance_matrix(points), distance_matrix(base[frames]), atol=2e-5)


def test_train_randomness_differs_between_workers_and_epochs():
    ds = dataset(train=True, occlusion="mixed")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    epochs = [[batch["camera"].numpy() for batch in loader] for _ in range(2)]
    assert not np.allclose(epochs[0][0], epochs[0][1])  # workers 0 and 1
    assert not np.allclose(epochs[0][0], epochs[1][0])  # same worker, next epoch


def test_mixed_occlusion_draws_several_patterns_and_noise_is_relative():
    ds = dataset(train=False, occlusion="mixed", stride=1)
    kinds = set()
    for i in range(0, len(ds), 2):
        m = ds[i]["mask"]
        kinds.add((int((m == 0).sum()), bool((m.min(axis=1) == 0).any())))
    assert len(kinds) >= 4
    noisy = dataset(train=False, noise_sigma_frac=0.01, outlier_prob=0.0)
    clean = dataset(train=False)
    for i in (5, 50, 150):
        a, b = noisy[i], clean[i]
        np.testing.assert_array_equal(a["camera"], b["camera"])  # same camera, noise added
        size = np.ptp(b["keypoints_px"], axis=1).max(axis=-1).mean()
        err = (a["keypoints_px"] - b["keypoints_px"]).std()
        assert 0.005 * size < err < 0.02 * size


def test_mask_outside_image():
    keep = dataset(train=False)
    drop = dataset(train=False, mask_outside_image=True)
    n_outside = 0
    for i in range(len(keep)):
        a, b = keep[i], drop[i]
        uv, (w, h) = a["keypoints_px"], a["image_wh"]
        outside = (uv[..., 0] < 0) | (uv[..., 0] >= w) | (uv[..., 1] < 0) | (uv[..., 1] >= h)
        n_outside += outside.sum()
        assert np.all(a["mask"] == 1)
        np.testing.assert_array_equal(b["mask"], (~outside).astype(np.float32))
        np.testing.assert_array_equal(a["keypoints_px"], b["keypoints_px"])
    assert n_outside > 0  # the default cameras do cut people off now and then


def test_bad_arguments_name_the_problem():
    seqs, fps = sequences()
    with pytest.raises(ValueError, match="'walk_a' must be"):
        WindowDataset(sequences={**seqs, "walk_a": seqs["walk_a"][:, :16]}, fps=fps)
    with pytest.raises(ValueError, match="no fps for sequence 'short'"):
        WindowDataset(sequences=seqs, fps={"walk_a": 60.0, "walk_b": 30.0})
    with pytest.raises(ValueError, match="unknown occlusion"):
        WindowDataset(sequences=seqs, fps=fps, occlusion="half")
    with pytest.raises(ValueError, match="odd"):
        WindowDataset(sequences=seqs, fps=fps, mode="centred", window=10)


def _load_npz_by_contract(path):
    """The dataset file as docs/architecture.md lays it out (independent of dataset.py)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["metadata"][()]))
        seqs = {k[len("positions_3d/"):]: z[k] for k in z.files if k.startswith("positions_3d/")}
    fps = {name: float(meta["sequences"][name]["fps"]) for name in seqs}
    return seqs, fps


@pytest.mark.skipif(not DATASET.exists(), reason=f"{DATASET} not built (make data)")
def test_real_mocap_windows():
    seqs, fps = _load_npz_by_contract(DATASET)
    assert seqs, "no sequences in the dataset file"
    for train in (True, False):
        ds = WindowDataset(sequences=seqs, fps=fps, train=train, occlusion="mixed",
                           noise_sigma_frac=0.0, outlier_prob=0.0, seed=1)
        idx = np.random.default_rng(0).choice(len(ds), 200, replace=False)
        start = time.perf_counter()
        items = [ds[int(i)] for i in idx]
        per_item_s = (time.perf_counter() - start) / len(idx)
        assert per_item_s < 5e-3  # ~0.3 ms measured; a loose bound for a shared CPU
        for item in items:
            check_item(item, 27)
            points = item["pose3d_m"].astype(np.float64) + item["root_cam_m"][:, None]
            np.testing.assert_allclose(project(points, camera_of(item)), item["keypoints_px"],
                                       atol=2e-3, rtol=1e-5)
            # A human-sized subject: 17 joints within 2.5 m of the pelvis.
            assert np.abs(item["pose3d_m"]).max() < 2.5


def test_mirror_occlusion_hides_either_side_in_training_only():
    """structured_joint hides the right leg (1, 2, 3); with mirror_occlusion, training windows
    hide the left leg (4, 5, 6) about half the time, and evaluation windows never change."""
    right, left = [1, 2, 3], [4, 5, 6]

    def hidden_sides(ds, n=200):
        sides = []
        for i in range(n):                  # training items draw afresh on every access
            m = ds[i % len(ds)]["mask"]
            sides.append(((m[:, right] == 0).any(), (m[:, left] == 0).any()))
        return np.array(sides)

    plain = hidden_sides(dataset(train=True, occlusion="structured_joint", seed=3))
    assert plain[:, 0].all() and not plain[:, 1].any()
    mirrored = hidden_sides(dataset(train=True, occlusion="structured_joint", seed=3,
                                    mirror_occlusion=True))
    assert (mirrored[:, 0] ^ mirrored[:, 1]).all()           # one leg per window, never both
    assert 0.35 < mirrored[:, 1].mean() < 0.65
    evaluation = hidden_sides(dataset(train=False, occlusion="structured_joint",
                                      mirror_occlusion=True), n=50)
    assert evaluation[:, 0].all() and not evaluation[:, 1].any()


def items(ds, n):
    """n items of a dataset (training items draw afresh on every access)."""
    return [ds[i % len(ds)] for i in range(n)]


def keypoint_errors(item):
    """(keypoints minus the exact projection of the 3D pose (L, 17, 2) px, person size (L,) px)."""
    points = item["pose3d_m"].astype(np.float64) + item["root_cam_m"][:, None]
    clean = project(points, camera_of(item))
    return item["keypoints_px"] - clean, (clean.max(axis=1) - clean.min(axis=1)).max(axis=-1)


def test_noise_level_varies_per_training_window_only():
    """noise_sigma_frac_max draws each training window's 2D noise std log-uniformly in
    [noise_sigma_frac, noise_sigma_frac_max] of the person's size; evaluation windows keep
    noise_sigma_frac."""
    def noise_fractions(ds, n=120):
        return np.array([np.std(error / size[:, None, None])
                         for error, size in map(keypoint_errors, items(ds, n))])

    varied = noise_fractions(dataset(train=True, noise_sigma_frac=0.005, noise_sigma_frac_max=0.04,
                                     flip_prob=0.0, speed_range=(1.0, 1.0), seed=2))
    assert varied.min() < 0.008 and varied.max() > 0.03
    assert 0.004 < varied.min() and varied.max() < 0.045
    fixed = noise_fractions(dataset(train=True, noise_sigma_frac=0.005, flip_prob=0.0, seed=2))
    np.testing.assert_allclose(fixed, 0.005, rtol=0.15)
    evaluation = noise_fractions(dataset(train=False, noise_sigma_frac=0.005,
                                         noise_sigma_frac_max=0.04), n=40)
    np.testing.assert_allclose(evaluation, 0.005, rtol=0.15)
    with pytest.raises(ValueError, match="noise_sigma_frac_max must be 0 \\(off\\) or >="):
        dataset(noise_sigma_frac=0.01, noise_sigma_frac_max=0.005)


def test_keypoint_bias_is_one_offset_per_keypoint_per_training_window():
    """keypoint_bias_frac: a detector's systematic error, the same 2D offset for a keypoint on
    every frame of a window (std = the fraction of the person's size), none in evaluation."""
    def offsets(ds, n=60):
        return np.array([error / size.max()                                  # (L, 17, 2) each
                         for error, size in map(keypoint_errors, items(ds, n))])

    biased = offsets(dataset(train=True, keypoint_bias_frac=0.03, seed=5))
    np.testing.assert_allclose(biased, biased[:, :1].repeat(biased.shape[1], 1), atol=2e-4)
    assert 0.02 < biased[:, 0].std() < 0.04                  # about 0.03 of the person's size
    assert np.abs(offsets(dataset(train=False, keypoint_bias_frac=0.03), n=20)).max() < 1e-4
    with pytest.raises(ValueError, match="keypoint_bias_frac must be in"):
        dataset(keypoint_bias_frac=0.5)

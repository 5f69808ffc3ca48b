"""Published streams: one camera per sequence, causal windows frame by frame, fixed noise."""
import numpy as np

from diffhpe_models.camera import CameraSampler
from diffhpe_models.streams import OCCLUDERS, causal_windows, lift_stream, make_stream, split_streams


def _walk(t=120):
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.2, (17, 3)) + [0, 0, 1.0]
    base[0] = [0, 0, 1.0]
    path = np.stack([np.linspace(0, 2, t), np.zeros(t), np.zeros(t)], -1)
    return base[None] + path[:, None]


def test_causal_windows_end_at_each_frame_with_edge_padding():
    x = np.arange(5)
    w = causal_windows(x, 3)
    np.testing.assert_array_equal(w, [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]])


def test_a_stream_is_one_camera_with_lasting_occlusions():
    s = make_stream("walk", _walk(), np.random.default_rng(1), CameraSampler(), noise_sigma_frac=0.0,
                    outlier_prob=0.0, occluded_fraction=0.3)
    assert s.keypoints_px.shape == (120, 17, 2) and s.pose3d_m.shape == (120, 17, 3)
    np.testing.assert_allclose(s.pose3d_m[:, 0], 0.0, atol=1e-6)
    # The 2D is the projection of the 3D through the one camera (root-relative 3D + a fixed
    # camera: the projected rays of the 3D and the 2D agree up to the root's depth offset).
    fx, fy, cx, cy = s.camera
    assert s.image_wh.shape == (2,) and fx > 0
    hidden = s.mask == 0
    frames_hidden = hidden.any(-1).mean()
    assert 0.3 <= frames_hidden < 0.8
    # Occlusions last: a hidden joint is usually still hidden in the next frame.
    stays = (hidden[1:] & hidden[:-1]).sum() / max(hidden[:-1].sum(), 1)
    assert stays > 0.9
    limbs = [set(v) for v in OCCLUDERS.values()]
    assert limbs  # the occluders name joints of the skeleton


def test_lift_stream_publishes_the_last_frame_of_each_window_with_fixed_noise():
    s = make_stream("walk", _walk(40), np.random.default_rng(2), CameraSampler())
    calls = []

    def lift(batch, noise):
        calls.append(noise)
        b, l = batch["keypoints_px"].shape[:2]
        # A fake lifter that returns each window's frame index so we can see which is published.
        pose = np.broadcast_to(batch["keypoints_px"][:, :, :1, :1], (b, l, 17, 3)).copy()
        return pose, np.zeros((b, l, 17))

    pose, spread = lift_stream(lift, s, window=9, hypotheses=3, seed=0, batch_size=16,
                               fixed_noise=True)
    assert pose.shape == (40, 17, 3) and spread.shape == (40, 17)
    np.testing.assert_allclose(pose[:, 0, 0], s.keypoints_px[:, 0, 0])   # frame t's own 2D
    assert len(calls) == 3 and all((n == calls[0][0]).all() for c in calls for n in c)


def test_split_streams_skips_short_sequences_and_is_reproducible():
    seqs = {"a": _walk(200), "b": _walk(30)}
    fps = {"a": 30.0, "b": 30.0}
    one = split_streams(seqs, fps, 30.0, CameraSampler(), seed=3, max_frames=100)
    two = split_streams(seqs, fps, 30.0, CameraSampler(), seed=3, max_frames=100)
    assert [s.name for s in one] == ["a"] and len(one[0].mask) == 100
    np.testing.assert_array_equal(one[0].keypoints_px, two[0].keypoints_px)


def test_lift_stream_with_fresh_noise_and_a_smoothed_spread():
    """fixed_noise False: every frame its own noise (reproducible from the seed); the spread is
    published as the node smooths it (uncertainty.smooth_spread)."""
    from diffhpe_models.uncertainty import smooth_spread

    s = make_stream("walk", _walk(40), np.random.default_rng(1), CameraSampler(), noise_sigma_frac=0.0,
                    outlier_prob=0.0)
    calls = []

    def lift(batch, noise):
        calls.append(noise)
        n = len(noise)
        spread = np.abs(noise[:, 0, :, :, 0])                       # (n, L, 17): from the noise
        return np.zeros((n, 9, 17, 3)), spread

    _, raw = lift_stream(lift, s, window=9, hypotheses=2, seed=4, batch_size=16, fixed_noise=False,
                         spread_smoothing=1.0)
    noise = np.concatenate(calls)
    assert len({n.tobytes() for n in noise}) == 40                 # fresh every frame
    calls.clear()
    _, smoothed = lift_stream(lift, s, window=9, hypotheses=2, seed=4, batch_size=16,
                              fixed_noise=False, spread_smoothing=0.3)
    np.testing.assert_array_equal(np.concatenate(calls), noise)      # the same draws from the seed
    np.testing.assert_allclose(smoothed, smooth_spread(raw, 0.3))
    assert smoothed.std(axis=0).mean() < raw.std(axis=0).mean()    # steadier over frames

"""Calibration metrics of the hypotheses' spread, and the published stream's temporal metrics."""
import numpy as np
import pytest

from diffhpe_models import uncertainty as u


def test_a_calibrated_spread_scores_well_and_a_constant_one_does_not():
    rng = np.random.default_rng(0)
    n, j = 4000, 17
    visible = rng.random((n, j)) > 0.2
    sigma = np.where(visible, 0.02, 0.08) * rng.uniform(0.5, 1.5, (n, j))   # hidden: 4x wider
    # 3D Gaussian error with per-axis std sigma / sqrt(3): RMS distance = sigma, like the spread.
    error = np.linalg.norm(rng.normal(size=(n, j, 3)), axis=-1) * sigma / np.sqrt(3)
    good = u.calibration_report(sigma, error, visible)
    assert good["hidden_visible_ratio"] > 3.5
    # The error's own hidden/visible ratio: what a calibrated spread's ratio should be (~4 here).
    assert 3.5 < good["error_hidden_visible_ratio"] < 4.5
    assert good["error_hidden_mm"] > good["error_visible_mm"]
    assert good["rank_correlation"] > 0.3
    cov = [good[f"coverage_k{k:g}"] for k in u.COVERAGE_K]
    assert cov[0] < cov[1] < cov[2] and cov[2] > 0.95
    # The reference the reports print: a spread equal to the true RMS error covers this much.
    assert all(abs(c - u.calibrated_coverage(k)) < 0.02 for c, k in zip(cov, u.COVERAGE_K))
    # A spread that carries no information: equal on hidden and visible joints, uncorrelated.
    flat = u.calibration_report(np.full((n, j), 0.004) + rng.uniform(0, 1e-4, (n, j)), error, visible)
    assert 0.9 < flat["hidden_visible_ratio"] < 1.1 and abs(flat["rank_correlation"]) < 0.05
    curve = good["reliability"]
    assert curve["error_mm"] == sorted(curve["error_mm"]) and sum(curve["count"]) == n * j


def test_rank_correlation_is_within_joints():
    # Joint 0 always errs more and spreads more than joint 1, but within each joint the spread is
    # unrelated to the error: a pooled correlation would be high, the within-joint one is ~0.
    rng = np.random.default_rng(1)
    spread = np.stack([1.0 + rng.random(5000), rng.random(5000)], axis=1)
    error = np.stack([1.0 + rng.random(5000), rng.random(5000)], axis=1)
    assert abs(u.within_joint_rank_correlation(spread, error)) < 0.05


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        u.calibration_report(np.zeros((3, 17)), np.zeros((3, 16)), np.ones((3, 17), bool))
    with pytest.raises(ValueError, match="T >= 3"):
        u.stream_metrics(np.zeros((2, 17, 3)), np.zeros((2, 17, 3)))


def test_stream_metrics():
    t = np.arange(30)[:, None, None] * np.ones((1, 17, 3))
    gt = 0.001 * t ** 2 / 2                       # constant acceleration 1 mm/frame^2 per axis
    m = u.stream_metrics(gt, gt)
    assert m["accel_error_mm"] == 0 and m["mpjve_mm"] == 0
    assert m["jitter_mm"] == pytest.approx(np.sqrt(3), rel=1e-9) == m["gt_jitter_mm"]
    noisy = gt + np.where(np.arange(30) % 2 == 0, 0.005, -0.005)[:, None, None]
    assert u.stream_metrics(noisy, gt)["accel_error_mm"] == pytest.approx(20 * np.sqrt(3), rel=1e-9)


def test_smoothed_spread_is_a_causal_running_average_of_its_square():
    from diffhpe_models.uncertainty import smooth_spread, smooth_spread_step

    first = smooth_spread_step(None, np.array([2.0, 0.0]), 0.3)
    np.testing.assert_allclose(first, [4.0, 0.0])                  # no history: the frame itself
    np.testing.assert_allclose(smooth_spread_step(first, np.array([0.0, 1.0]), 0.25), [3.0, 0.25])
    steps = np.array([[1.0], [1.0], [3.0], [3.0], [3.0]])
    out = smooth_spread(steps, 0.5)
    np.testing.assert_allclose(out[:, 0], np.sqrt([1, 1, 5, 7, 8]))
    assert smooth_spread(steps, 1.0) is not None and (smooth_spread(steps, 1.0) == steps).all()
    for weight in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="spread smoothing weight must be in"):
            smooth_spread_step(None, np.ones(2), weight)


def test_noise_is_kept_where_it_would_move_the_pose():
    from diffhpe_models.uncertainty import noise_is_fixed

    assert noise_is_fixed(False, "conditioner") is False     # only the spread moves
    assert noise_is_fixed(True, "conditioner") is True
    assert all(noise_is_fixed(False, a) for a in ("mean", "median", "reproj"))
    assert noise_is_fixed(False, None) is False               # deterministic: nothing moves


def test_block_bootstrap_brackets_the_numbers_and_narrows_with_more_frames():
    rng = np.random.default_rng(3)

    def segment(frames):
        visible = rng.random((frames, 16)) > 0.1
        rms = np.where(visible, 0.05, 0.12) * rng.uniform(0.5, 2.0, (frames, 16))
        error = np.linalg.norm(rng.normal(size=(frames, 16, 3)), axis=-1) * rms / np.sqrt(3)
        return rms, error, visible

    short = [segment(100) for _ in range(3)]
    long = [segment(1000) for _ in range(3)]
    ci_short, ci_long = (u.block_bootstrap(s, block=10, resamples=100) for s in (short, long))
    pooled = [np.concatenate([s[k] for s in short]) for k in range(3)]
    ratio = u.hidden_visible_ratio(pooled[0], pooled[2])["hidden_visible_ratio"]
    rank = u.within_joint_rank_correlation(pooled[0], pooled[1])
    for key, value in (("hidden_visible_ratio", ratio), ("rank_correlation", rank)):
        low, high = ci_short[key]
        assert low < value < high
        assert ci_long[key][1] - ci_long[key][0] < 0.6 * (high - low)   # ~ 1 / sqrt(10) as wide
    assert u.block_bootstrap(short, block=10, resamples=100) == ci_short   # seeded
    no_hidden = [(s[0], s[1], np.ones_like(s[2])) for s in short]
    assert u.block_bootstrap(no_hidden, resamples=20)["hidden_visible_ratio"] is None
    with pytest.raises(ValueError, match="block and resamples must be >= 1"):
        u.block_bootstrap(short, block=0)

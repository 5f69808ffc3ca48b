"""Occlusion patterns (the reference table), detector-like noise and confidence masks."""
import numpy as np
import pytest

from diffhpe_models.occlusion import (
    PATTERNS,
    apply_pattern,
    confidence_mask,
    detector_noise,
    occluded_frame_count,
    occlusion_mask,
)


def _missing_frames(mask, joints):
    """Frames where exactly `joints` are missing (and nothing else is)."""
    expected = np.ones(mask.shape[1])
    expected[list(joints)] = 0
    return [f for f in range(len(mask)) if np.array_equal(mask[f], expected)]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_masks_shape_dtype_binary(pattern):
    mask = occlusion_mask(pattern, 27, 17, np.random.default_rng(0))
    assert mask.shape == (27, 17) and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}


def test_reference_patterns_at_27_frames():
    rng = np.random.default_rng(1)
    for _ in range(50):
        m = occlusion_mask("random_left_arm_right_leg", 27, 17, rng)
        assert len(_missing_frames(m, (1, 2, 3, 11, 12, 13))) == 10
        assert (m == 0).sum() == 60
        m = occlusion_mask("structured_joint", 27, 17, rng)
        frames = _missing_frames(m, (1, 2, 3))
        assert len(frames) == 10 and frames == list(range(frames[0], frames[0] + 10))
        assert (m == 0).sum() == 30
        m = occlusion_mask("structured_frame", 27, 17, rng)
        frames = _missing_frames(m, range(17))
        assert len(frames) == 5 and frames == list(range(frames[0], frames[0] + 5))
        assert (m == 0).sum() == 5 * 17
    assert occlusion_mask("none", 27, 17, rng).min() == 1
    assert occlusion_mask("noisy", 27, 17, rng).min() == 1


def test_random_pattern_rate_and_independence():
    rng = np.random.default_rng(2)
    masks = np.stack([occlusion_mask("random", 27, 17, rng) for _ in range(400)])
    assert 1 - masks.mean() == pytest.approx(0.2, abs=0.005)
    # Every (frame, joint) cell is dropped at about the same rate: no structure.
    per_cell = 1 - masks.mean(axis=0)
    assert per_cell.min() > 0.1 and per_cell.max() < 0.3


def test_structured_start_covers_whole_window():
    rng = np.random.default_rng(3)
    starts = {int(np.argmin(occlusion_mask("structured_frame", 27, 17, rng)[:, 0]))
              for _ in range(400)}
    assert starts == set(range(0, 27 - 5 + 1))


@pytest.mark.parametrize("L, long_n, short_n", [(27, 10, 5), (81, 30, 15), (9, 3, 2), (1, 1, 1),
                                                (243, 90, 45)])
def test_frame_counts_scale_with_window(L, long_n, short_n):
    assert occluded_frame_count("structured_joint", L) == long_n
    assert occluded_frame_count("random_left_arm_right_leg", L) == long_n
    assert occluded_frame_count("structured_frame", L) == short_n
    m = occlusion_mask("structured_frame", L, 17, np.random.default_rng(0))
    assert (m.min(axis=1) == 0).sum() == short_n


def test_bad_pattern_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown occlusion pattern 'randm'"):
        occlusion_mask("randm", 27, 17, rng)
    with pytest.raises(ValueError, match="H36M-17"):
        occlusion_mask("structured_joint", 27, 33, rng)
    with pytest.raises(ValueError, match="image_wh"):
        apply_pattern(np.zeros((27, 17, 2)), "none", rng, (0, 480))


def test_apply_pattern_keeps_coordinates_of_missing_points():
    rng = np.random.default_rng(4)
    uv = rng.uniform(0, 640, (27, 17, 2)).astype(np.float32)
    out, mask = apply_pattern(uv, "structured_frame", rng, (640, 480))
    assert out.dtype == np.float32 and mask.sum() == (27 - 5) * 17
    np.testing.assert_array_equal(out, uv)  # masked points are not zeroed here


def test_noisy_pattern_sigma_scales_with_width():
    rng = np.random.default_rng(5)
    uv = np.full((27, 17, 2), 300.0)
    diffs = np.concatenate([apply_pattern(uv, "noisy", rng, (2000, 1000))[0] - uv
                            for _ in range(100)])
    assert diffs.std() == pytest.approx(10.0, rel=0.03)  # 5 px per 1000 px of width
    assert abs(diffs.mean()) < 0.2


def _person(frames=200):
    """A 400 px tall, 200 px wide stick figure, repeated over frames."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (17, 2)) * [200, 400] + [100, 50]
    pts[0] = (100, 50)
    pts[1] = (300, 450)  # the bbox is exactly 200 x 400
    return np.broadcast_to(pts, (frames, 17, 2)).copy()


def test_detector_noise_jitter_relative_to_person_size():
    rng = np.random.default_rng(6)
    uv = _person()
    noisy = detector_noise(uv, rng, (1280, 720), sigma_frac=0.02, outlier_prob=0.0)
    assert (noisy - uv).std() == pytest.approx(0.02 * 400, rel=0.05)
    np.testing.assert_array_equal(uv, _person())  # input untouched
    # A collapsed box (all points equal) still gets noise, from the floor (2 % of the width).
    dot = np.full((200, 17, 2), 50.0)
    noisy = detector_noise(dot, rng, (1000, 1000), sigma_frac=0.05, outlier_prob=0.0)
    assert (noisy - dot).std() == pytest.approx(0.05 * 20, rel=0.05)


def test_detector_noise_outliers():
    rng = np.random.default_rng(7)
    uv = _person(400)
    out = detector_noise(uv, rng, (1280, 720), sigma_frac=0.0, outlier_prob=0.1,
                         outlier_frac=0.3)
    moved = np.linalg.norm(out - uv, axis=-1)
    assert (moved > 0).mean() == pytest.approx(0.1, abs=0.01)
    assert moved.max() <= 0.3 * 400 + 1e-9
    assert moved.max() > 0.25 * 400  # the lengths do reach the amplitude
    with pytest.raises(ValueError, match="outlier_prob"):
        detector_noise(uv, rng, (1280, 720), outlier_prob=1.5)


def test_confidence_mask():
    conf = np.array([[0.9, 0.3, np.nan, 0.5], [0.49, 1.0, 0.0, np.nan]])
    expected = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=np.float32)
    got = confidence_mask(conf, 0.5)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="threshold"):
        confidence_mask(conf, float("nan"))

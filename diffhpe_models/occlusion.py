"""Occlusion patterns of DiffHPE, detector-like 2D noise, and confidence masking.

Missing keypoints: a missing point keeps whatever coordinate it has and gets mask = 0. This module
never zeroes coordinates: the MODEL zeroes the *normalised* coordinate wherever mask = 0, so that
training (masks from these patterns) and run time (masks from detector confidences) represent a
missing point identically, whatever pixel value the detector left there.

The five reference patterns (DiffHPE, valeoai/diffhpe `PoseSequenceGenerator`), defined for
L = 27 frames and scaled to other window lengths by keeping the fraction of frames
(n = round(frames_at_27 * L / 27), at least 1 and at most L):

| name                        | removes                                                      |
|-----------------------------|--------------------------------------------------------------|
| `none`                      | nothing                                                      |
| `random`                    | each (frame, joint) independently with probability 0.2       |
| `random_left_arm_right_leg` | joints 1, 2, 3, 11, 12, 13 in 10/27 of the frames, at random |
| `structured_joint`          | right leg 1, 2, 3 in 10/27 of the frames, consecutive        |
| `structured_frame`          | every joint in 5/27 of the frames, consecutive               |
| `noisy`                     | nothing; adds Gaussian noise, sigma 5 px per 1000 px of width |

The reference's `noise_sigma=5` is in H36M pixels (1000 px wide images); here it scales with the
image width so that it is the same relative error at any resolution.
"""
from __future__ import annotations

import numpy as np

from .skeleton import NUM_JOINTS

PATTERNS = ("none", "random", "random_left_arm_right_leg", "structured_joint",
            "structured_frame", "noisy")
# The patterns 'mixed' training draws from (the reference's "all"): `noisy` is left out as there,
# since detector-like noise is a separate augmentation (detector_noise).
MIXED_PATTERNS = ("none", "random", "random_left_arm_right_leg", "structured_joint",
                  "structured_frame")

RANDOM_MISS_RATE = 0.2
LEFT_ARM_RIGHT_LEG = (1, 2, 3, 11, 12, 13)
RIGHT_LEG = (1, 2, 3)
REFERENCE_WINDOW = 27
FRAMES_AT_27 = {"random_left_arm_right_leg": 10, "structured_joint": 10, "structured_frame": 5}
NOISY_SIGMA_PX_PER_1000 = 5.0


def occluded_frame_count(pattern: str, window: int) -> int:
    """Frames a frame-based pattern removes in a window of `window` frames (10 or 5 at 27)."""
    n = int(round(FRAMES_AT_27[pattern] * window / REFERENCE_WINDOW))
    return min(max(n, 1), window)


def _check_pattern(pattern: str) -> None:
    if pattern not in PATTERNS:
        raise ValueError(f"unknown occlusion pattern {pattern!r}; expected one of {PATTERNS}")


def occlusion_mask(pattern: str, L: int, J: int, rng: np.random.Generator) -> np.ndarray:
    """(L, J) float32 visibility mask (1 = visible, 0 = missing) of a named pattern.

    Joint-specific patterns use H36M-17 indices and so need J = 17.
    """
    _check_pattern(pattern)
    if L < 1 or J < 1:
        raise ValueError(f"occlusion_mask: need L >= 1 and J >= 1, got L={L}, J={J}")
    mask = np.ones((L, J), dtype=np.float32)
    if pattern in ("none", "noisy"):
        return mask
    if pattern == "random":
        mask[rng.random((L, J)) < RANDOM_MISS_RATE] = 0.0
        return mask
    n = occluded_frame_count(pattern, L)
    if pattern in ("random_left_arm_right_leg", "structured_joint") and J != NUM_JOINTS:
        raise ValueError(f"occlusion pattern {pattern!r} names H36M-17 joints; got J={J}")
    if pattern == "random_left_arm_right_leg":
        frames = rng.choice(L, size=n, replace=False)
        mask[np.ix_(frames, LEFT_ARM_RIGHT_LEG)] = 0.0
        return mask
    start = int(rng.integers(0, L - n + 1))
    if pattern == "structured_joint":
        mask[start:start + n, list(RIGHT_LEG)] = 0.0
    else:  # structured_frame
        mask[start:start + n] = 0.0
    return mask


def _check_uv(uv_px, image_wh) -> tuple[np.ndarray, np.ndarray]:
    uv = np.asarray(uv_px)
    wh = np.asarray(image_wh, dtype=np.float64)
    if uv.ndim < 2 or uv.shape[-1] != 2:
        raise ValueError(f"uv_px: expected (..., J, 2) pixels, got {uv.shape}")
    if wh.shape != (2,) or np.any(~(wh > 0)):
        raise ValueError(f"image_wh: expected (2,) positive (width, height), got {wh}")
    return uv, wh


def apply_pattern(uv_px, pattern: str, rng: np.random.Generator, image_wh):
    """Apply a named pattern to one window of 2D keypoints.

    uv_px: (L, J, 2) pixels; image_wh: (2,) pixels. Returns (uv_px (L, J, 2) in uv_px's float
    dtype, mask (L, J) float32). Coordinates change only for `noisy`; masked points keep their
    coordinates (see the module docstring).
    """
    uv, wh = _check_uv(uv_px, image_wh)
    if uv.ndim != 3:
        raise ValueError(f"apply_pattern: uv_px must be one window (L, J, 2), got {uv.shape}")
    L, J, _ = uv.shape
    mask = occlusion_mask(pattern, L, J, rng)
    out = np.array(uv, dtype=uv.dtype if uv.dtype.kind == "f" else np.float64)
    if pattern == "noisy":
        sigma_px = NOISY_SIGMA_PX_PER_1000 * wh[0] / 1000.0
        out += rng.normal(0.0, sigma_px, size=out.shape).astype(out.dtype)
    return out, mask


def person_size_px(uv_px, min_px: float = 0.0) -> np.ndarray:
    """(..., J, 2) -> (...,) the larger side of the keypoints' bounding box, at least min_px."""
    uv = np.asarray(uv_px)
    size = (uv.max(axis=-2) - uv.min(axis=-2)).max(axis=-1)
    return np.maximum(size, min_px)


def detector_noise(uv_px, rng: np.random.Generator, image_wh, sigma_frac: float = 0.01,
                   outlier_prob: float = 0.005, outlier_frac: float = 0.3,
                   min_size_frac: float = 0.02) -> np.ndarray:
    """Detector-like 2D errors: Gaussian jitter on every point plus occasional gross outliers.

    uv_px: (..., J, 2) pixels, image_wh: (2,) pixels. Amplitudes are relative to the person's
    size s = the larger side of the 2D bounding box of each frame (floored at min_size_frac * the
    image width, so that tiny or collapsed boxes still get pixel-level noise):
    - jitter: N(0, (sigma_frac * s)^2) per coordinate (0.01: about 4 px on a 400 px person,
      the order of a good detector's error);
    - outliers: each point with probability outlier_prob moves by a uniform random direction and
      a length uniform in [0, outlier_frac * s] (a keypoint on the wrong limb or a background
      blob). Returns a new array, same shape and float dtype.
    """
    uv, wh = _check_uv(uv_px, image_wh)
    for name, v in (("sigma_frac", sigma_frac), ("outlier_prob", outlier_prob),
                    ("outlier_frac", outlier_frac), ("min_size_frac", min_size_frac)):
        if not v >= 0:
            raise ValueError(f"detector_noise: {name} must be >= 0, got {v}")
    if outlier_prob > 1:
        raise ValueError(f"detector_noise: outlier_prob must be <= 1, got {outlier_prob}")
    out = np.array(uv, dtype=uv.dtype if uv.dtype.kind == "f" else np.float64)
    size = person_size_px(uv, min_size_frac * wh[0])[..., None, None]  # (..., 1, 1)
    if sigma_frac > 0:
        out += (rng.standard_normal(out.shape) * (sigma_frac * size)).astype(out.dtype)
    if outlier_prob > 0:
        hit = rng.random(out.shape[:-1]) < outlier_prob
        k = int(hit.sum())
        if k:
            angle = rng.uniform(0.0, 2 * np.pi, k)
            length = rng.uniform(0.0, 1.0, k) * outlier_frac * np.broadcast_to(
                size[..., 0], hit.shape)[hit]
            out[hit] += np.stack([np.cos(angle), np.sin(angle)], -1).astype(out.dtype) \
                * length[:, None].astype(out.dtype)
    return out


def confidence_mask(conf, threshold: float) -> np.ndarray:
    """Detector confidences (...,) -> float32 mask: 1 where conf >= threshold, 0 where below or
    NaN (a NaN confidence is a point the detector did not report)."""
    if not np.isfinite(threshold):
        raise ValueError(f"confidence_mask: threshold must be finite, got {threshold}")
    c = np.asarray(conf, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (c >= threshold).astype(np.float32)

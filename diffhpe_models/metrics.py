"""Pose metrics of the lifting literature (numpy; poses in metres in, millimetres out).

Poses are `(..., T, 17, 3)` arrays (any leading batch dimensions; the time axis is the third from
the end where a metric needs time). Every metric averages over all leading dimensions and returns
a float, or a per-joint / per-bone / per-pair array where the function says so.
"""
from __future__ import annotations

import numpy as np

from .skeleton import BONES, NUM_JOINTS, SYMMETRIC_BONE_PAIRS, bone_lengths

M_TO_MM = 1000.0


def _as_pose(x, name: str, min_frames: int = 0) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"{name}: expected shape (..., {NUM_JOINTS}, 3), got {x.shape}")
    if min_frames and (x.ndim < 3 or x.shape[-3] < min_frames):
        raise ValueError(f"{name}: needs a time axis of at least {min_frames} frames "
                         f"(shape (..., T, {NUM_JOINTS}, 3)), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains NaN or inf")
    return x


def _as_pair(pred, target, min_frames: int = 0) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_pose(pred, "pred", min_frames)
    target = _as_pose(target, "target", min_frames)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    return pred, target


def _mean_error(err: np.ndarray, per_joint: bool):
    """err (..., J) per-joint distances in metres -> float mm, or (J,) mm."""
    if per_joint:
        return err.reshape(-1, err.shape[-1]).mean(axis=0) * M_TO_MM
    return float(err.mean() * M_TO_MM)


def mpjpe(pred, target, per_joint: bool = False):
    """Mean per-joint position error, protocol #1 (mm).

    pred, target: (..., 17, 3) metres, already root-relative (pelvis at the origin): no alignment
    is applied here. Returns a float, or (17,) with `per_joint=True`.
    """
    pred, target = _as_pair(pred, target)
    return _mean_error(np.linalg.norm(pred - target, axis=-1), per_joint)


def procrustes_align(pred, target) -> np.ndarray:
    """Similarity-align each pose of `pred` onto `target` (rotation, uniform scale, translation).

    pred, target: (..., J, 3). Returns the aligned pred, same shape. Uses the SVD solution of
    Umeyama (1991); a reflection is never allowed (det(R) = +1): when the best orthogonal matrix
    is a reflection, the axis of the smallest singular value is flipped and the scale adjusted.
    A pose whose joints all coincide gets scale 0 (it maps to the target's centroid).
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mu_p = pred.mean(axis=-2, keepdims=True)
    mu_t = target.mean(axis=-2, keepdims=True)
    p = pred - mu_p
    q = target - mu_t
    # Find R, s minimising || s * p @ R - q ||: H = p^T q = U S V^T, R = U D V^T.
    u, s, vt = np.linalg.svd(np.swapaxes(p, -1, -2) @ q)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    s[..., -1] *= d
    u[..., :, -1] *= d[..., None]
    rot = u @ vt
    var_p = np.sum(p * p, axis=(-2, -1))
    scale = np.where(var_p > 0, s.sum(axis=-1) / np.where(var_p > 0, var_p, 1.0), 0.0)
    return scale[..., None, None] * (p @ rot) + mu_t


def p_mpjpe(pred, target, per_joint: bool = False):
    """Procrustes-aligned MPJPE, protocol #2 (mm).

    Each frame of pred (..., 17, 3) metres is aligned to target by a similarity transform
    (rotation without reflection, uniform scale, translation) before the error is measured.
    Returns a float, or (17,) with `per_joint=True`.
    """
    pred, target = _as_pair(pred, target)
    aligned = procrustes_align(pred, target)
    return _mean_error(np.linalg.norm(aligned - target, axis=-1), per_joint)


def mpjve(pred, target, per_joint: bool = False):
    """Mean per-joint velocity error (mm per frame), as VideoPose3D's `mean_velocity_error`.

    pred, target: (..., T, 17, 3) metres, T >= 2. The mean norm of the difference of the
    frame-to-frame displacements. Returns a float, or (17,) with `per_joint=True`.
    """
    pred, target = _as_pair(pred, target, min_frames=2)
    err = np.linalg.norm(np.diff(pred, axis=-3) - np.diff(target, axis=-3), axis=-1)
    return _mean_error(err, per_joint)


def accel_error(pred, target, per_joint: bool = False):
    """Acceleration error (mm per frame^2): mean norm of the difference of second differences.

    pred, target: (..., T, 17, 3) metres, T >= 3. Returns a float, or (17,) with `per_joint=True`.
    """
    pred, target = _as_pair(pred, target, min_frames=3)
    err = np.linalg.norm(np.diff(pred, n=2, axis=-3) - np.diff(target, n=2, axis=-3), axis=-1)
    return _mean_error(err, per_joint)


def segment_std(pred, per_bone: bool = False):
    """Segment-length consistency "seg std" (mm): lower = bones keep their length over time.

    pred: (..., T, 17, 3) metres, T >= 2. The unbiased (ddof=1) std over the T frames of each of
    the 16 bone lengths, averaged over bones and leading dimensions. Returns a float, or (16,) in
    skeleton.BONES order with `per_bone=True`.
    """
    pred = _as_pose(pred, "pred", min_frames=2)
    std = bone_lengths(pred).std(axis=-2, ddof=1)  # (..., 16)
    if per_bone:
        return std.reshape(-1, len(BONES)).mean(axis=0) * M_TO_MM
    return float(std.mean() * M_TO_MM)


_BONE_INDEX = {bone: i for i, bone in enumerate(BONES)}
_LEFT_BONES = [_BONE_INDEX[left] for left, _ in SYMMETRIC_BONE_PAIRS]
_RIGHT_BONES = [_BONE_INDEX[right] for _, right in SYMMETRIC_BONE_PAIRS]


def sagittal_symmetry_gap(pred, per_pair: bool = False):
    """Sagittal symmetry gap "sag sym" (mm): mean |left - right| bone length.

    pred: (..., 17, 3) metres. Over the 6 pairs of skeleton.SYMMETRIC_BONE_PAIRS (hips, thighs,
    shins, shoulders, upper arms, forearms) and all leading dimensions. Returns a float, or (6,)
    in SYMMETRIC_BONE_PAIRS order with `per_pair=True`.
    """
    pred = _as_pose(pred, "pred")
    lengths = bone_lengths(pred)
    gap = np.abs(lengths[..., _LEFT_BONES] - lengths[..., _RIGHT_BONES])  # (..., 6)
    if per_pair:
        return gap.reshape(-1, len(SYMMETRIC_BONE_PAIRS)).mean(axis=0) * M_TO_MM
    return float(gap.mean() * M_TO_MM)

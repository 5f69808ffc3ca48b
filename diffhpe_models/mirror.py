"""Test-time mirroring: lift each window together with its left/right mirror image and publish the
mean of the two poses (the flip augmentation of VideoPose3D's and MixSTE's evaluations).

A lifter is not exactly mirror-symmetric, and where it errs the two answers disagree: their mean
is more accurate and smoother than either. A diffusion model's hypotheses of both images are
pooled, so their disagreement joins its spread; a deterministic model keeps spread 0 (the
disagreement alone is no calibrated error estimate: on the real-video check it covers the error
4 % of the time). The mirror image is taken about the point the model's 2D normalisation maps
to 0 (camera.normalize_input): the principal point of a "rays" model (u' = 2 cx - u, the
intrinsics unchanged) and the image centre of a "screen" model (u' = w - u), so the model sees
exactly the negated normalised x.
Both go through the model in one batch of 2P windows: twice the work per person.

Works on any lift function (a torch pipeline, an ONNX or TensorRT graph) from its inputs and
outputs alone; numpy only.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .skeleton import FLIP_PERMUTATION

# lift(keypoints_px, mask, calibration, noise) -> (pose3d_m (P, L, 17, 3), spread_m (P, L, 17))
LiftCall = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def mirror_keypoints(keypoints_px: np.ndarray, calibration: np.ndarray,
                     normalisation: str) -> np.ndarray:
    """(P, L, J, 2) pixels -> the mirror image's keypoints (left and right joints swapped).
    calibration: (P, 2) image_wh for "screen", (P, 4) fx, fy, cx, cy for "rays"."""
    calibration = np.asarray(calibration, dtype=np.float32)
    if normalisation == "screen":
        axis = calibration[:, 0]                 # u_n = 2 u / w - 1 is 0 at u = w / 2
    elif normalisation == "rays":
        axis = 2.0 * calibration[:, 2]           # u_n = (u - cx) / fx is 0 at u = cx
    else:
        raise ValueError(f"input normalisation must be 'screen' or 'rays', got {normalisation!r}")
    mirrored = np.array(keypoints_px, dtype=np.float32)[:, :, FLIP_PERMUTATION]
    mirrored[..., 0] = axis[:, None, None] - mirrored[..., 0]
    return mirrored


def unmirror_pose(pose_m: np.ndarray) -> np.ndarray:
    """A pose lifted from the mirror image (camera frame, x right) -> the original's frame."""
    pose = np.array(pose_m)[..., FLIP_PERMUTATION, :]
    pose[..., 0] = -pose[..., 0]
    return pose


def merge(pose_a: np.ndarray, spread_a: np.ndarray, pose_b: np.ndarray, spread_b: np.ndarray,
          has_spread: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two answers for the same windows (b already unmirrored) -> (their mean pose, the spread of
    both answers' hypotheses around it): spread^2 = (spread_a^2 + spread_b^2) / 2 + (d / 2)^2,
    d = |pose_a - pose_b| per joint: the RMS distance of the pooled hypotheses from the mean pose
    when each pose is its hypotheses' mean and each spread their RMS distance from it (about
    that when the pose is another point estimate, as the Wrapper's conditioner pose).
    has_spread False (a deterministic model): spread 0."""
    pose = 0.5 * (pose_a + pose_b)
    if not has_spread:
        return pose.astype(np.float32), np.zeros(pose.shape[:-1], np.float32)
    half_gap_sq = 0.25 * np.sum(np.square(pose_a - pose_b), axis=-1)
    spread = np.sqrt(0.5 * (np.square(spread_a) + np.square(spread_b)) + half_gap_sq)
    return pose.astype(np.float32), spread.astype(np.float32)


def lift_mirrored(lift: LiftCall, keypoints_px: np.ndarray, mask: np.ndarray,
                  calibration: np.ndarray, noise: np.ndarray, normalisation: str,
                  has_spread: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`lift` run once on the P windows and their P mirror images (one batch of 2P, the same
    noise for both halves) -> merge() of the two answers (has_spread: False for a deterministic
    model)."""
    p = len(keypoints_px)
    mask = np.asarray(mask, dtype=np.float32)
    pose, spread = lift(
        np.concatenate([np.asarray(keypoints_px, np.float32),
                        mirror_keypoints(keypoints_px, calibration, normalisation)]),
        np.ascontiguousarray(np.concatenate([mask, mask[:, :, FLIP_PERMUTATION]])),
        np.concatenate([calibration, calibration]), np.concatenate([noise, noise]))
    return merge(pose[:p], spread[:p], unmirror_pose(pose[p:]),
                 np.asarray(spread[p:])[..., FLIP_PERMUTATION], has_spread)

"""Published streams: a sequence seen by ONE fixed camera, lifted frame by frame as the node does
(causal window ending at each frame, the window's last frame published, the same initial noise for
the person every frame), so temporal metrics measure what a robot receives, not a window's inside.

Also the per-joint calibration data (spread, error, visibility of the published joints) of such
streams, with occlusions that last in time the way real ones do (a limb hidden for a second).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .camera import CameraSampler
from .occlusion import detector_noise
from .skeleton import JOINT_NAMES, ROOT
from .uncertainty import PUBLISHED_FIXED_NOISE, PUBLISHED_SPREAD_SMOOTHING, smooth_spread
from .windows import resample_sequence

_J = {n: i for i, n in enumerate(JOINT_NAMES)}
# Limbs hidden together, as behind a table, a door frame or the person's own body.
OCCLUDERS = {
    "right_arm": ("right_shoulder", "right_elbow", "right_wrist"),
    "left_arm": ("left_shoulder", "left_elbow", "left_wrist"),
    "legs": ("right_knee", "right_foot", "left_knee", "left_foot"),
    "right_leg": ("right_hip", "right_knee", "right_foot"),
}


@dataclass
class Stream:
    """One camera's view of one sequence: keypoints_px (T, 17, 2), mask (T, 17) (1 = visible),
    image_wh (2,), camera (4,) = fx, fy, cx, cy, pose3d_m (T, 17, 3) root-relative camera frame."""

    name: str
    keypoints_px: np.ndarray
    mask: np.ndarray
    image_wh: np.ndarray
    camera: np.ndarray
    pose3d_m: np.ndarray


def make_stream(name: str, world_m: np.ndarray, rng: np.random.Generator, sampler: CameraSampler,
                noise_sigma_frac: float = 0.01, outlier_prob: float = 0.005,
                occluded_fraction: float = 0.3, occlusion_frames: tuple[int, int] = (15, 45)) -> Stream:
    """world_m (T, 17, 3) metres Z up at the model's rate -> a Stream: one camera for the whole
    sequence (looking at the mean pelvis), detector-like 2D noise, and occlusion spans: a limb of
    OCCLUDERS hidden for U(occlusion_frames) frames, until about `occluded_fraction` of the frames
    have one. Keypoints outside the image are missing too."""
    world = np.asarray(world_m, dtype=np.float64)
    cam = sampler.sample(rng, world[:, ROOT].mean(axis=0), world[..., 2].min())
    points = world @ cam.R.T + cam.t
    closest = points[..., 2].min()
    if closest < 0.5:  # the subject walks into the camera: back off along the axis
        points[..., 2] += 0.5 - closest
    uv = cam.fx * points[..., 0] / points[..., 2] + cam.cx, cam.fy * points[..., 1] / points[..., 2] + cam.cy
    uv = np.stack(uv, axis=-1)
    wh = cam.image_wh.astype(np.float64)
    uv = detector_noise(uv, rng, wh, sigma_frac=noise_sigma_frac, outlier_prob=outlier_prob)
    mask = ((uv >= 0).all(-1) & (uv[..., 0] < wh[0]) & (uv[..., 1] < wh[1])).astype(np.float32)
    t = len(world)
    hidden = np.zeros(t, dtype=bool)
    while hidden.mean() < occluded_fraction:
        start = int(rng.integers(0, t))
        stop = min(t, start + int(rng.integers(*occlusion_frames)))
        limb = list(OCCLUDERS)[int(rng.integers(len(OCCLUDERS)))]
        mask[start:stop, [_J[j] for j in OCCLUDERS[limb]]] = 0.0
        hidden[start:stop] = True
    root = points[:, ROOT:ROOT + 1]
    return Stream(name, uv.astype(np.float32), mask, wh.astype(np.float32),
                  np.array([cam.fx, cam.fy, cam.cx, cam.cy], np.float32),
                  (points - root).astype(np.float32))


def causal_windows(x: np.ndarray, window: int) -> np.ndarray:
    """(T, ...) -> (T, window, ...): the window ending at each frame, the first frame repeated
    before the start (the node's edge padding)."""
    idx = np.arange(len(x))[:, None] + np.arange(-window + 1, 1)[None]
    return x[np.clip(idx, 0, None)]


LiftFn = Callable[[dict, np.ndarray], tuple[np.ndarray, np.ndarray]]


def lift_stream(lift: LiftFn, stream: Stream, window: int, hypotheses: int, seed: int,
                batch_size: int = 256, fixed_noise: bool = PUBLISHED_FIXED_NOISE,
                spread_smoothing: float = PUBLISHED_SPREAD_SMOOTHING) -> tuple[np.ndarray, np.ndarray]:
    """Publish one pose per frame: lift(batch of windows, noise) -> (pose (B, L, 17, 3),
    spread (B, L, 17)) is called on the causal window of every frame, all with the same initial
    noise (the node's fixed noise slot of a tracked person) or, with fixed_noise False, fresh noise
    every frame; the spread is smoothed over frames as the node does (uncertainty.smooth_spread).
    The defaults are the node's (uncertainty.PUBLISHED_*). Returns (pose (T, 17, 3), spread (T, 17))."""
    rng = np.random.default_rng(seed)
    shape = (hypotheses, window, 17, 3)
    noise = rng.standard_normal((1, *shape), dtype=np.float32)
    kp, mask = causal_windows(stream.keypoints_px, window), causal_windows(stream.mask, window)
    poses, spreads = [], []
    for a in range(0, len(kp), batch_size):
        n = len(kp[a:a + batch_size])
        batch = {"keypoints_px": kp[a:a + n], "mask": mask[a:a + n],
                 "image_wh": np.repeat(stream.image_wh[None], n, 0),
                 "camera": np.repeat(stream.camera[None], n, 0)}
        frame_noise = (np.repeat(noise, n, 0) if fixed_noise
                       else rng.standard_normal((n, *shape), dtype=np.float32))
        pose, spread = lift(batch, frame_noise)
        poses.append(pose[:, -1])
        spreads.append(spread[:, -1])
    return np.concatenate(poses), smooth_spread(np.concatenate(spreads), spread_smoothing)


def split_streams(sequences: dict[str, np.ndarray], fps: dict[str, float], target_fps: float,
                  sampler: CameraSampler, seed: int, max_frames: int = 300, min_frames: int = 60,
                  **stream_options) -> list[Stream]:
    """One Stream per sequence (its first `max_frames` frames at `target_fps`; shorter ones are
    skipped), each with its own camera drawn from (seed, sequence index)."""
    out = []
    for k, name in enumerate(sorted(sequences)):
        seq = resample_sequence(sequences[name], fps[name], target_fps)[:max_frames]
        if len(seq) < min_frames:
            continue
        out.append(make_stream(name, seq, np.random.default_rng([seed, k]), sampler, **stream_options))
    return out

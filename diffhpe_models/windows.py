"""Temporal windows (causal and centred) and the training/evaluation dataset built from mocap.

A window of L frames serves one target frame t:
- `causal`  (live): frames t-L+1 .. t, the target is the last frame;
- `centred` (offline, L odd): frames t-(L-1)/2 .. t+(L-1)/2, the target is the middle frame.
Frames before the start or after the end of a sequence repeat the first / last frame (edge
padding), so every frame of a sequence has a full window.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import make_interp_spline

from .augmentation import BodyScaler, scale_bones
from .camera import Camera, CameraSampler
from .config import CameraConfig
from .occlusion import MIXED_PATTERNS, PATTERNS, apply_pattern, detector_noise, person_size_px
from .skeleton import FLIP_PERMUTATION, NUM_JOINTS, ROOT

MODES = ("causal", "centred")


def target_frame(mode: str, L: int) -> int:
    """Index in the window of the frame it is lifted for: last (causal) or middle (centred)."""
    return int(np.flatnonzero(window_offsets(L, mode) == 0)[0])


def window_offsets(L: int, mode: str) -> np.ndarray:
    """(L,) integer frame offsets of a window relative to its target frame."""
    if mode not in MODES:
        raise ValueError(f"unknown window mode {mode!r}; expected one of {MODES}")
    if L < 1:
        raise ValueError(f"window length must be >= 1, got {L}")
    if mode == "causal":
        return np.arange(-(L - 1), 1)
    if L % 2 == 0:
        raise ValueError(f"a centred window needs an odd length, got {L}")
    return np.arange(L) - (L - 1) // 2


def window_bounds(T: int, index: int, L: int, mode: str) -> np.ndarray:
    """(L,) frame indices of the window whose target is frame `index` of a T-frame sequence,
    clipped to [0, T-1] (edge padding)."""
    if T < 1 or not 0 <= index < T:
        raise ValueError(f"target frame {index} outside a sequence of {T} frames")
    return np.clip(index + window_offsets(L, mode), 0, T - 1)


def extract_window(seq, index: int, L: int, mode: str) -> np.ndarray:
    """seq (T, ...) -> (L, ...) the window whose target is frame `index`, edge-padded."""
    seq = np.asarray(seq)
    return seq[window_bounds(len(seq), index, L, mode)]


def resample_sequence(seq, fps_in: float, fps_out: float, speed: float = 1.0,
                      kind: str = "cubic") -> np.ndarray:
    """Resample a (T, J, 3) sequence from fps_in to fps_out, played `speed` times faster.

    Output frame k shows the input at time k * speed / fps_out seconds; the output covers the
    whole input ((T-1)/fps_in/speed seconds). kind: 'cubic' (interpolating B-spline, smooth
    velocities) or 'linear'. Sequences too short for a cubic spline (T < 4) are interpolated with
    the highest degree they allow.
    """
    seq = np.asarray(seq, dtype=np.float64)
    if seq.ndim < 1 or len(seq) < 1:
        raise ValueError(f"resample_sequence: empty sequence, shape {seq.shape}")
    if not (fps_in > 0 and fps_out > 0 and speed > 0):
        raise ValueError(f"resample_sequence: fps_in, fps_out and speed must be > 0, got "
                         f"{fps_in}, {fps_out}, {speed}")
    if kind not in ("cubic", "linear"):
        raise ValueError(f"resample_sequence: kind must be 'cubic' or 'linear', got {kind!r}")
    T = len(seq)
    if T == 1:
        return seq.copy()
    duration_s = (T - 1) / fps_in
    n_out = int(np.floor(duration_s / speed * fps_out + 1e-9)) + 1
    t_out = np.minimum(np.arange(n_out) * speed / fps_out, duration_s)
    degree = min(3 if kind == "cubic" else 1, T - 1)
    spline = make_interp_spline(np.arange(T) / fps_in, seq, k=degree, axis=0)
    return spline(t_out)


def _check_sequences(sequences, fps) -> None:
    if not sequences:
        raise ValueError("WindowDataset: no sequences given")
    for name, seq in sequences.items():
        if name not in fps:
            raise ValueError(f"WindowDataset: no fps for sequence {name!r}")
        if not fps[name] > 0:
            raise ValueError(f"WindowDataset: fps of {name!r} must be > 0, got {fps[name]}")
        shape = np.shape(seq)
        if len(shape) != 3 or shape[1:] != (NUM_JOINTS, 3) or shape[0] < 1:
            raise ValueError(f"WindowDataset: sequence {name!r} must be (T, {NUM_JOINTS}, 3) "
                             f"world metres, got {shape}")
        if not np.all(np.isfinite(seq)):
            raise ValueError(f"WindowDataset: sequence {name!r} contains NaN or inf")


class WindowDataset(torch.utils.data.Dataset):
    """Windows of mocap seen by random virtual cameras, with 2D noise and occlusions.

    sequences: {name: (T, 17, 3) world metres, Z up}; fps: {name: frames per second}. Each
    sequence is resampled once to `target_fps` (cubic). A sample is one window of `window` frames
    (`mode` 'causal' or 'centred'):
    - train=True: len = sum over sequences of ceil(T / stride) (stride defaults to the window:
      one window per non-overlapping chunk per epoch, as the reference); item i takes a random
      target frame in chunk i, a playback speed log-uniform in `speed_range` (the window then
      spans (L-1)*speed frames of the sequence, linearly interpolated), a left/right mirror with
      probability `flip_prob`, a camera from `camera_sampler`, detector-like noise
      (`noise_sigma_frac`, `outlier_prob`, see occlusion.detector_noise; with
      `noise_sigma_frac_max` > 0 the std fraction is log-uniform in [noise_sigma_frac,
      noise_sigma_frac_max] per window; with `keypoint_bias_frac` > 0 each keypoint also gets one
      offset for the whole window, std that fraction of the person's size) and the occlusion
      pattern `occlusion` (a name of occlusion.PATTERNS, or 'mixed': one of
      occlusion.MIXED_PATTERNS per sample). Randomness comes from a generator seeded by `seed`
      and, in DataLoader workers, the worker's seed (different per worker and per epoch).
    - train=False: targets every `stride` frames (default 1), speed 1, no mirror; the camera,
      noise and occlusion of item i depend only on (seed, i): evaluation is reproducible.
    A random rotation of the subject about the vertical axis is not applied separately: the
    cameras' yaw is uniform over 360 deg around the subject, which is the same distribution.
    The camera looks at the window's mean pelvis; if a joint comes closer than `min_depth_m` to
    the camera plane (fast motion over a long window), the camera backs off along its axis.
    With the default CameraSampler about 2 % of the joints (in about a quarter of the windows)
    project outside the image (close cameras with long lenses); they stay visible unless
    `mask_outside_image=True`, which masks them as a detector would. With `body_scaler`, each
    training window gets another body (augmentation.scale_bones: stature and proportions).

    Items are dicts of float32 numpy arrays: keypoints_px (L, 17, 2), mask (L, 17) 1 = visible,
    image_wh (2,), pose3d_m (L, 17, 3) camera frame root-relative, root_cam_m (L, 3) the pelvis
    in the camera frame, camera (4,) = fx, fy, cx, cy pixels.
    """

    def __init__(self, *, sequences: dict[str, np.ndarray], fps: dict[str, float],
                 window: int = 27, mode: str = "causal", target_fps: float = 30.0,
                 train: bool = True, speed_range: tuple[float, float] = (0.5, 2.0),
                 occlusion: str = "none", camera_sampler: CameraSampler | None = None,
                 noise_sigma_frac: float = 0.01, outlier_prob: float = 0.005,
                 noise_sigma_frac_max: float = 0.0, keypoint_bias_frac: float = 0.0,
                 stride: int | None = None, seed: int = 0, flip_prob: float = 0.5,
                 min_depth_m: float = 0.5, mask_outside_image: bool = False,
                 body_scaler: BodyScaler | None = None, mirror_occlusion: bool = False):
        _check_sequences(sequences, fps)
        self.offsets = window_offsets(window, mode).astype(np.float64)
        if occlusion != "mixed" and occlusion not in PATTERNS:
            raise ValueError(f"WindowDataset: unknown occlusion {occlusion!r}; expected 'mixed' "
                             f"or one of {PATTERNS}")
        lo, hi = speed_range
        if not 0 < lo <= hi:
            raise ValueError(f"WindowDataset: speed_range needs 0 < low <= high, got {speed_range}")
        if not target_fps > 0:
            raise ValueError(f"WindowDataset: target_fps must be > 0, got {target_fps}")
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"WindowDataset: flip_prob must be in [0, 1], got {flip_prob}")
        self.window, self.mode, self.train = window, mode, train
        self.target_fps, self.speed_range, self.occlusion = target_fps, speed_range, occlusion
        self.camera_sampler = camera_sampler if camera_sampler is not None else CameraSampler()
        self.noise_sigma_frac, self.outlier_prob = noise_sigma_frac, outlier_prob
        if noise_sigma_frac_max and not noise_sigma_frac_max >= noise_sigma_frac > 0:
            raise ValueError(f"WindowDataset: noise_sigma_frac_max must be 0 (off) or >= "
                             f"noise_sigma_frac > 0, got {noise_sigma_frac_max}, {noise_sigma_frac}")
        self.noise_sigma_frac_max = float(noise_sigma_frac_max)
        if not 0 <= keypoint_bias_frac <= 0.2:
            raise ValueError(f"WindowDataset: keypoint_bias_frac must be in [0, 0.2], got {keypoint_bias_frac}")
        self.keypoint_bias_frac = float(keypoint_bias_frac)
        self.seed, self.flip_prob, self.min_depth_m = seed, flip_prob, min_depth_m
        self.mirror_occlusion = mirror_occlusion
        self.mask_outside_image = mask_outside_image
        self.body_scaler = body_scaler if body_scaler is not None and body_scaler.active else None
        self.stride = int(stride) if stride is not None else (window if train else 1)
        if self.stride < 1:
            raise ValueError(f"WindowDataset: stride must be >= 1, got {stride}")

        self.names = sorted(sequences)
        self._seqs = [resample_sequence(sequences[n], fps[n], target_fps) for n in self.names]
        seq_ids, starts = [], []
        for k, s in enumerate(self._seqs):
            first = np.arange(0, len(s), self.stride)
            seq_ids.append(np.full(len(first), k))
            starts.append(first)
        self._item_seq = np.concatenate(seq_ids)
        self._item_frame = np.concatenate(starts)
        self._rng, self._rng_key = None, None

    def __len__(self) -> int:
        return len(self._item_seq)

    def _train_rng(self) -> np.random.Generator:
        # One generator per process: in a DataLoader worker it is keyed by the worker's seed
        # (which torch draws afresh per worker and per epoch), so workers never repeat each other.
        info = torch.utils.data.get_worker_info()
        key = None if info is None else int(info.seed)
        if self._rng is None or key != self._rng_key:
            entropy = [self.seed] if key is None else [self.seed, key]
            self._rng, self._rng_key = np.random.default_rng(entropy), key
        return self._rng

    def _world_window(self, seq: np.ndarray, target: float, speed: float) -> np.ndarray:
        """(L, 17, 3) world metres at times target + offsets * speed (frames), edge-padded."""
        times = np.clip(target + self.offsets * speed, 0, len(seq) - 1)
        i0 = np.floor(times).astype(np.int64)
        i1 = np.minimum(i0 + 1, len(seq) - 1)
        frac = (times - i0)[:, None, None]
        return seq[i0] * (1 - frac) + seq[i1] * frac

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"WindowDataset index {i} out of range ({len(self)} items)")
        i = int(i) % len(self)
        seq = self._seqs[self._item_seq[i]]
        start = int(self._item_frame[i])
        if self.train:
            rng = self._train_rng()
            target = int(rng.integers(start, min(start + self.stride, len(seq))))
            lo, hi = np.log(self.speed_range[0]), np.log(self.speed_range[1])
            speed = float(np.exp(rng.uniform(lo, hi)))
            flip = rng.random() < self.flip_prob
        else:
            rng = np.random.default_rng([self.seed, i])
            target, speed, flip = start, 1.0, False
        world = self._world_window(seq, target, speed)
        if flip:  # mirror across a vertical plane, then swap left and right joints
            world = world[:, FLIP_PERMUTATION] * np.array([-1.0, 1.0, 1.0])
        if self.train and self.body_scaler is not None:  # another body (training only)
            world = scale_bones(world, self.body_scaler.sample(rng))

        cam = self.camera_sampler.sample(rng, world[:, ROOT].mean(axis=0), world[..., 2].min())
        points = world @ cam.R.T + cam.t
        closest = points[..., 2].min()
        if closest < self.min_depth_m:
            shift = self.min_depth_m - closest
            points[..., 2] += shift
            cam = Camera(R=cam.R, t=cam.t + np.array([0.0, 0.0, shift]), fx=cam.fx, fy=cam.fy,
                         cx=cam.cx, cy=cam.cy, width=cam.width, height=cam.height)
        uv = np.empty(points.shape[:-1] + (2,))
        uv[..., 0] = cam.fx * points[..., 0] / points[..., 2] + cam.cx
        uv[..., 1] = cam.fy * points[..., 1] / points[..., 2] + cam.cy
        image_wh = cam.image_wh

        sigma_frac = self.noise_sigma_frac
        if self.train and self.noise_sigma_frac_max > sigma_frac:
            sigma_frac = float(np.exp(rng.uniform(np.log(sigma_frac), np.log(self.noise_sigma_frac_max))))
        if sigma_frac > 0 or self.outlier_prob > 0:
            uv = detector_noise(uv, rng, image_wh, sigma_frac=sigma_frac,
                                outlier_prob=self.outlier_prob)
        if self.train and self.keypoint_bias_frac > 0:  # systematic: one offset per keypoint
            size = float(person_size_px(uv).max())
            uv = uv + rng.normal(0.0, self.keypoint_bias_frac * size, (1,) + uv.shape[1:])
        pattern = self.occlusion
        if pattern == "mixed":
            pattern = MIXED_PATTERNS[int(rng.integers(len(MIXED_PATTERNS)))]
        if self.train and self.mirror_occlusion and rng.random() < 0.5:
            # The patterns name sides (the right leg, the left arm): half the time hide the
            # mirror-image joints instead, so the model learns no side-specific prior.
            uv, mask = apply_pattern(uv[:, FLIP_PERMUTATION], pattern, rng, image_wh)
            uv, mask = uv[:, FLIP_PERMUTATION], mask[:, FLIP_PERMUTATION]
        else:
            uv, mask = apply_pattern(uv, pattern, rng, image_wh)
        if self.mask_outside_image:
            inside = (uv >= 0).all(-1) & (uv[..., 0] < image_wh[0]) & (uv[..., 1] < image_wh[1])
            mask = mask * inside.astype(np.float32)

        root = points[:, ROOT]
        return {
            "keypoints_px": uv.astype(np.float32),
            "mask": mask,
            "image_wh": image_wh.astype(np.float32),
            "pose3d_m": (points - root[:, None]).astype(np.float32),
            "root_cam_m": root.astype(np.float32),
            "camera": cam.intrinsics.astype(np.float32),
        }


def camera_sampler(c: CameraConfig) -> CameraSampler:
    """The virtual cameras of a config's data.camera (training, validation and test windows)."""
    return CameraSampler(
        distance_m=(c.distance_min_m, c.distance_max_m), height_m=(c.height_min_m, c.height_max_m),
        jitter_deg=c.aim_jitter_deg, roll_deg=c.roll_deg, focal_over_width=(c.focal_min, c.focal_max),
        pitch_deg=(c.pitch_min_deg, c.pitch_max_deg), portrait_prob=c.portrait_prob,
        principal_jitter_frac=c.principal_jitter_frac)

"""Test data for the lifter node's tests: 2D keypoint streams from projected 3D motion.

The motion is real mocap from data/mocap_h36m17.npz when that file exists (the dataset layout of
docs/architecture.md), otherwise a constructed walk: an H36M-17 skeleton with human proportions,
legs and arms swinging at 1 Hz while the body moves sideways. Both are world metres, Z up, seen by
a pinhole camera 4 m away.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffhpe_models.camera import Camera, look_at_rotation, project
from diffhpe_models.skeleton import COCO17_NAMES, MEDIAPIPE33_NAMES

DATASET = Path(__file__).resolve().parents[1] / "data" / "mocap_h36m17.npz"
WIDTH, HEIGHT = 640, 480
FX = FY = 500.0


def camera(distance_m: float = 4.0) -> Camera:
    """A camera at 1 m height looking horizontally at the origin from -Y."""
    position = np.array([0.0, -distance_m, 1.0])
    R = look_at_rotation(position, np.array([0.0, 0.0, 1.0]))
    return Camera(R, -R @ position, FX, FY, WIDTH / 2, HEIGHT / 2, WIDTH, HEIGHT)


def constructed_walk(n_frames: int, fps: float, x0_m: float = 0.0) -> np.ndarray:
    """(T, 17, 3) world metres, Z up: a walk in H36M-17 order, 1.75 m tall."""
    t = np.arange(n_frames) / fps
    swing = 0.35 * np.sin(2 * np.pi * t)  # radians
    T = len(t)
    pose = np.zeros((T, 17, 3))
    pelvis = np.stack([x0_m + 0.3 * t, np.zeros(T), np.full(T, 0.95)], -1)

    def limb(root, angle, length):  # swing in the x-z plane, hanging down
        return root + length * np.stack([np.sin(angle), np.zeros(T), -np.cos(angle)], -1)

    for side, sign in (("right", -1), ("left", 1)):
        hip = pelvis + np.array([sign * 0.12, 0.0, 0.0])
        knee = limb(hip, sign * swing, 0.44)
        foot = limb(knee, sign * swing * 0.5 - 0.1, 0.43)
        j = (1, 2, 3) if side == "right" else (4, 5, 6)
        pose[:, j[0]], pose[:, j[1]], pose[:, j[2]] = hip, knee, foot
    pose[:, 0] = pelvis
    pose[:, 7] = pelvis + [0.0, 0.0, 0.23]  # spine
    pose[:, 8] = pelvis + [0.0, 0.0, 0.47]  # thorax
    pose[:, 9] = pelvis + [0.0, -0.05, 0.58]  # neck/nose
    pose[:, 10] = pelvis + [0.0, 0.0, 0.70]  # head top
    for sign, j in ((1, (11, 12, 13)), (-1, (14, 15, 16))):
        shoulder = pose[:, 8] + [sign * 0.17, 0.0, -0.02]
        elbow = limb(shoulder, -sign * swing, 0.28)
        wrist = limb(elbow, -sign * swing * 1.3, 0.25)
        pose[:, j[0]], pose[:, j[1]], pose[:, j[2]] = shoulder, elbow, wrist
    return pose


def mocap_motion(n_frames: int) -> np.ndarray | None:
    """(n_frames, 17, 3) world metres from a test-split sequence of the dataset file, its first
    pelvis moved over the origin, or None without the file."""
    if not DATASET.exists():
        return None
    with np.load(DATASET, allow_pickle=False) as data:
        sequences = json.loads(str(data["metadata"]))["sequences"]
        for name, info in sorted(sequences.items()):
            seq = data[f"positions_3d/{name}"]
            if info.get("split") == "test" and len(seq) >= n_frames:
                seq = seq[:n_frames].astype(np.float64)
                return seq - [seq[0, 0, 0], seq[0, 0, 1], 0.0]
    return None


def world_motion(n_frames: int, fps: float = 30.0, x0_m: float = 0.0) -> np.ndarray:
    """(T, 17, 3) world metres: mocap when available, else the constructed walk."""
    motion = mocap_motion(n_frames)
    if motion is None:
        return constructed_walk(n_frames, fps, x0_m)
    return motion + [x0_m, 0.0, 0.0]


def keypoints_h36m(n_frames: int, fps: float = 30.0, x0_m: float = 0.0,
                   cam: Camera | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, 17, 2) px and the (T, 17, 3) camera-frame metres they project from."""
    cam = cam or camera()
    pose_cam = cam.world_to_camera(world_motion(n_frames, fps, x0_m))
    return project(pose_cam, cam).astype(np.float32), pose_cam


def detector_layout(points_h36m: np.ndarray, fmt: str) -> np.ndarray:
    """(..., 17, 2) H36M points -> (..., K, 2) in a detector's layout (coco17 / mediapipe33),
    filling the keypoints the mapping reads (ears from the head, the rest nearby)."""
    names = {"coco17": COCO17_NAMES, "mediapipe33": MEDIAPIPE33_NAMES}[fmt]
    h = points_h36m
    thorax = h[..., 8, :]
    # to_h36m17 puts the head top at ears + 0.5 (ears - thorax): invert for the ear midpoint.
    ears = (h[..., 10, :] + 0.5 * thorax) / 1.5
    lateral = 0.25 * (h[..., 11, :] - h[..., 14, :])
    src = {"nose": h[..., 9, :], "left_ear": ears + lateral, "right_ear": ears - lateral,
           "left_shoulder": h[..., 11, :], "right_shoulder": h[..., 14, :],
           "left_elbow": h[..., 12, :], "right_elbow": h[..., 15, :],
           "left_wrist": h[..., 13, :], "right_wrist": h[..., 16, :],
           "left_hip": h[..., 4, :], "right_hip": h[..., 1, :],
           "left_knee": h[..., 5, :], "right_knee": h[..., 2, :],
           "left_ankle": h[..., 6, :], "right_ankle": h[..., 3, :]}
    out = np.zeros(h.shape[:-2] + (len(names), h.shape[-1]), dtype=h.dtype)
    for i, name in enumerate(names):
        out[..., i, :] = src.get(name, h[..., 9, :])  # face/hand/foot details: near the nose
    return out

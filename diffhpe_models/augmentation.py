"""Body-shape augmentation: other people than the few mocap actors.

The mocap comes from a handful of adult performers (and rigs that place the hip and shoulder joints
differently), while the node meets children, tall adults and detectors whose hip and shoulder
keypoints sit wider apart. `scale_bones` re-poses a window bone by bone along the kinematic tree:
every joint keeps its direction from its parent, and only the segment lengths change.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import JOINT_NAMES, PARENTS

_J = {n: i for i, n in enumerate(JOINT_NAMES)}
# Bone groups (by child joint) scaled together; left and right share a factor (bodies are symmetric).
SEGMENT_GROUPS = {
    "hip_width": ("left_hip", "right_hip"),
    "thigh": ("left_knee", "right_knee"),
    "shank": ("left_foot", "right_foot"),
    "trunk": ("spine", "thorax"),        # one factor: spine stays the pelvis-thorax midpoint
    "neck_head": ("neck_nose", "head"),
    "shoulder_width": ("left_shoulder", "right_shoulder"),
    "upper_arm": ("left_elbow", "right_elbow"),
    "forearm": ("left_wrist", "right_wrist"),
}
WIDTHS = ("hip_width", "shoulder_width")


@dataclass(frozen=True)
class BodyScaler:
    """Random bodies. stature: overall factor range (1 = the mocap actor; 0.6 is a ~1 m child for a
    1.65 m actor, 1.2 a ~2 m adult). segment_jitter: each segment group's length also varies by
    U(1 +- jitter) (other proportions); width_range: hip and shoulder widths vary further by this
    factor range (rigs and detectors disagree most about them)."""

    stature: tuple[float, float] = (1.0, 1.0)
    segment_jitter: float = 0.0
    width_range: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        for name in ("stature", "width_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"BodyScaler.{name}: need 0 < low <= high, got ({lo}, {hi})")
        if not 0 <= self.segment_jitter < 1:
            raise ValueError(f"BodyScaler.segment_jitter must be in [0, 1), got {self.segment_jitter}")

    @property
    def active(self) -> bool:
        return self.stature != (1.0, 1.0) or self.segment_jitter > 0 or self.width_range != (1.0, 1.0)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """(17,) length factor of the bone ending at each joint (index 0, the root, is 1)."""
        factors = np.ones(len(JOINT_NAMES))
        stature = rng.uniform(*self.stature)
        for group, joints in SEGMENT_GROUPS.items():
            f = stature * rng.uniform(1 - self.segment_jitter, 1 + self.segment_jitter)
            if group in WIDTHS:
                f *= rng.uniform(*self.width_range)
            factors[[_J[j] for j in joints]] = f
        return factors


def scale_bones(pose: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """pose (..., 17, 3) -> the same motion with each bone (parent -> joint) scaled by
    factors[joint]; the root stays where it is. PARENTS is in topological order."""
    pose = np.asarray(pose, dtype=np.float64)
    out = np.empty_like(pose)
    out[..., 0, :] = pose[..., 0, :]
    for j in range(1, len(PARENTS)):
        p = PARENTS[j]
        out[..., j, :] = out[..., p, :] + factors[j] * (pose[..., j, :] - pose[..., p, :])
    return out

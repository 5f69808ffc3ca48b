"""What the lifter accepts, without ROS: 2D keypoints, camera intrinsics and its own 3D output.

Each bound is a physical limit with a margin, so that only garbage is refused: a keypoint beyond
1e6 px, a camera whose field of view is under 1 degree or over 170 degrees, a person 1 km away
or 10 m tall. The node converts messages to numbers (conversions.py) and checks them here; the
core (lifter_core.py) checks the model's output here before anything is published.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from diffhpe_models.skeleton import NUM_JOINTS


class BadMessage(ValueError):
    """A message that cannot be used at all; `reason` is a short key counted in diagnostics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --- 2D keypoints ----------------------------------------------------------------------------

# Larger than any image: such a coordinate is garbage (and 1e39 would overflow float32 to inf).
MAX_ABS_COORDINATE_PX = 1e6


@dataclass
class Keypoints2D:
    """Keypoints of one message. points_px (P, K, 2) float32, conf (P, K) float32 in [0, 1] or NaN.

    Keypoints that were unusable (non-finite, |x| or |y| > MAX_ABS_COORDINATE_PX, confidence
    outside [0, 1]) have conf NaN and coordinates 0: NaN is below every threshold (see
    `confidence_mask`), so they are missing even with confidence_threshold 0, where a conf of 0
    would pass. `problems` counts them by reason.
    """

    points_px: np.ndarray
    conf: np.ndarray
    problems: dict[str, int] = field(default_factory=dict)


def keypoints_from_xyz(xyz: np.ndarray, keypoints_per_person: int) -> Keypoints2D:
    """(N, 3) float64 rows (x, y = px, z = confidence), K per person in consecutive blocks ->
    Keypoints2D.

    Raises BadMessage('wrong_pose_count') when N is not a multiple of K. N = 0 is valid (no
    person). Problems counted per keypoint: 'nonfinite_keypoints' (x, y or z NaN/inf),
    'coordinate_out_of_range' (|x| or |y| above MAX_ABS_COORDINATE_PX),
    'confidence_out_of_range' (z outside [0, 1]).
    """
    k = int(keypoints_per_person)
    if k <= 0:
        raise ValueError(f"keypoints_per_person must be > 0, got {k}")
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    n = len(xyz)
    if n % k != 0:
        raise BadMessage("wrong_pose_count",
                         f"{n} poses is not a multiple of {k} keypoints per person")
    flat = xyz.reshape(n // k, k, 3)
    points = flat[..., :2]
    conf = flat[..., 2]
    problems: dict[str, int] = {}
    nonfinite = ~np.isfinite(flat).all(axis=-1)
    if nonfinite.any():
        problems["nonfinite_keypoints"] = int(nonfinite.sum())
    # Checked in float64, before the cast to float32 could turn a huge value into inf.
    with np.errstate(invalid="ignore"):
        too_far = ~nonfinite & (np.abs(points) > MAX_ABS_COORDINATE_PX).any(axis=-1)
    if too_far.any():
        problems["coordinate_out_of_range"] = int(too_far.sum())
    out_of_range = ~nonfinite & ~too_far & ((conf < 0.0) | (conf > 1.0))
    if out_of_range.any():
        problems["confidence_out_of_range"] = int(out_of_range.sum())
    unusable = nonfinite | too_far | out_of_range
    points = np.where(unusable[..., None], 0.0, points)
    conf = np.where(unusable, np.nan, conf)
    return Keypoints2D(points.astype(np.float32), conf.astype(np.float32), problems)


# --- camera intrinsics -----------------------------------------------------------------------

# Field of view of the image (horizontal from fx and the width, vertical from fy and the height):
# 1 degree is a strong telephoto, 170 degrees more than any pinhole model of a real lens (a
# fisheye's equidistant K has fx ~ w / pi, a 120 degree equivalent). fx outside the matching
# range (about 0.044 w to 57 w) is a broken calibration; with fx = 1e-38 the roots would land
# 1e38 m away.
MIN_FOV_DEG = 1.0
MAX_FOV_DEG = 170.0
# Pixels are square within this factor (anamorphic lenses squeeze up to 2x).
MAX_PIXEL_ASPECT = 2.0
# The principal point lies in the image, or at most one image size beyond its edges (crops).
PRINCIPAL_POINT_MARGIN = 1.0
MAX_IMAGE_SIDE_PX = 100_000  # as the image_width / image_height parameters


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the image the keypoints come from (pixels)."""

    width_px: int
    height_px: int
    fx: float
    fy: float
    cx: float
    cy: float


def focal_range_px(side_px: float) -> tuple[float, float]:
    """(lowest, highest) focal length in px for an image side: MAX_FOV_DEG .. MIN_FOV_DEG."""
    return (side_px / (2 * math.tan(math.radians(MAX_FOV_DEG) / 2)),
            side_px / (2 * math.tan(math.radians(MIN_FOV_DEG) / 2)))


def checked_intrinsics(width: int, height: int, k: list[float] | np.ndarray) -> Intrinsics:
    """Image size + row-major 3x3 K (as in CameraInfo) -> Intrinsics, refused with
    BadMessage('bad_camera_info') unless every value is physically sensible for that image."""
    k = np.asarray(k, dtype=np.float64)
    if k.shape != (9,) or not np.isfinite(k).all():
        raise BadMessage("bad_camera_info", f"K must be 9 finite numbers, got {k.tolist()}")
    if not (0 < width <= MAX_IMAGE_SIDE_PX and 0 < height <= MAX_IMAGE_SIDE_PX):
        raise BadMessage("bad_camera_info", f"image size {width}x{height} px (each side must be "
                                            f"in [1, {MAX_IMAGE_SIDE_PX}])")
    fx, fy, cx, cy = (float(v) for v in (k[0], k[4], k[2], k[5]))
    if fx <= 0 or fy <= 0:
        raise BadMessage("bad_camera_info", f"focal lengths fx={fx}, fy={fy} must be > 0")
    for name, f, side in (("fx", fx, width), ("fy", fy, height)):
        lo, hi = focal_range_px(side)
        if not lo <= f <= hi:
            raise BadMessage("bad_camera_info", (
                f"{name}={f:g} px is not a lens for a {side} px image side: it must be in "
                f"[{lo:.3g}, {hi:.3g}] px (field of view {MIN_FOV_DEG:g} to {MAX_FOV_DEG:g} deg)"))
    if not 1 / MAX_PIXEL_ASPECT <= fx / fy <= MAX_PIXEL_ASPECT:
        raise BadMessage("bad_camera_info", f"fx/fy = {fx / fy:.3g}: pixels that are not square "
                                            f"within a factor {MAX_PIXEL_ASPECT:g}")
    m = PRINCIPAL_POINT_MARGIN
    if not (-m * width <= cx <= (1 + m) * width and -m * height <= cy <= (1 + m) * height):
        raise BadMessage("bad_camera_info", (
            f"principal point ({cx:g}, {cy:g}) px lies more than {m:g} image size outside the "
            f"{width}x{height} px image"))
    return Intrinsics(int(width), int(height), fx, fy, cx, cy)


# --- 3D output -------------------------------------------------------------------------------

# A person placed farther than this from the camera is a failed placement, not a person: a
# detector cannot find a 1.75 m person 1 km away even with a 1 degree lens (~100 px tall).
MAX_ROOT_DISTANCE_M = 1000.0
# No joint of a person lies farther than this from its root, and the hypotheses never spread
# more (a human is under 3 m with arms raised).
MAX_BODY_EXTENT_M = 10.0


def output_problems(pose_m: np.ndarray, spread_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per person of (P, 17, 3) metres (root at joint 0, root-relative or placed) and (P, 17)
    spread: (nonfinite (P,), absurd (P,)) bool. Absurd: finite but the root farther than
    MAX_ROOT_DISTANCE_M, or a joint or spread beyond MAX_BODY_EXTENT_M (also what keeps every
    published value far inside float32's range)."""
    pose_m = np.asarray(pose_m, dtype=np.float64)
    spread_m = np.asarray(spread_m, dtype=np.float64)
    if pose_m.ndim != 3 or pose_m.shape[1:] != (NUM_JOINTS, 3) \
            or spread_m.shape != pose_m.shape[:2]:
        raise ValueError(f"need pose (P, 17, 3) and spread (P, 17), got {pose_m.shape}, "
                         f"{spread_m.shape}")
    nonfinite = ~(np.isfinite(pose_m).all(axis=(1, 2)) & np.isfinite(spread_m).all(axis=1))
    with np.errstate(invalid="ignore", over="ignore"):
        root_m = np.linalg.norm(pose_m[:, 0], axis=-1)
        extent_m = np.linalg.norm(pose_m - pose_m[:, :1], axis=-1).max(axis=1)
        absurd = ((root_m > MAX_ROOT_DISTANCE_M) | (extent_m > MAX_BODY_EXTENT_M)
                  | (np.abs(spread_m).max(axis=1) > MAX_BODY_EXTENT_M))
    return nonfinite, ~nonfinite & absurd

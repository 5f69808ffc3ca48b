"""Pinhole cameras: projection, the 2D normalisation the model sees, random virtual cameras, and
recovering the root's camera-frame position from 2D.

Camera frame = OpenCV / REP 103 optical: x right, y down, z forward (metres). A world point X_w
maps to the camera frame as X_c = R @ X_w + t, and to pixels as u = fx x/z + cx, v = fy y/z + cy.
World coordinates are Z up (the dataset convention).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --- 2D normalisation (numpy and torch alike: plain arithmetic and indexing only) -------------


def _per_point(values, ndim: int, what: str = "image_wh"):
    """Insert axes so that per-image values (..., C) (image_wh, intrinsics) broadcast against
    points of `ndim` dimensions whose leading dimensions are theirs ((P, 2) against (P, L, J, 2))."""
    if isinstance(values, (list, tuple)):
        values = np.asarray(values, dtype=np.float64)
    extra = ndim - values.ndim
    if extra < 0:
        raise ValueError(f"{what} has {values.ndim} dims, more than the {ndim} of the points")
    return values[(Ellipsis,) + (None,) * extra + (slice(None),)]


# The reference's 2D normalisation, as recorded in checkpoints and export manifests.
NORMALISATION = "u_n = u / w * 2 - 1, v_n = v / w * 2 - h / w"


def normalize_screen(uv_px, image_wh):
    """Pixels -> the reference normalisation: u_n = u/w*2 - 1, v_n = v/w*2 - h/w.

    uv_px: (..., 2) pixels; image_wh: (..., 2) (width, height) pixels, its leading dimensions
    aligned with uv_px's from the left (a (P, 2) image_wh serves (P, L, J, 2) points). Works on
    numpy arrays and torch tensors (traceable for ONNX). The image width maps to [-1, 1]; the
    aspect ratio is kept (v spans [-h/w, h/w]).
    """
    wh = _per_point(image_wh, uv_px.ndim)
    w = wh[..., 0:1]
    return (uv_px * 2 - wh) / w


def denormalize_screen(uv_n, image_wh):
    """Inverse of normalize_screen: u = (u_n + 1) * w/2, v = (v_n + h/w) * w/2 (pixels)."""
    wh = _per_point(image_wh, uv_n.ndim)
    w = wh[..., 0:1]
    return (uv_n * w + wh) / 2


# Camera-aware normalisation: with intrinsics K the model sees rays (x/z, y/z), not pixels, so
# one model serves any lens and image size. Without K the runtime guesses the intrinsics from the
# image size with this horizontal field of view (typical webcams and robot cameras: 60-70 deg).
RAY_NORMALISATION = "u_n = (u - cx) / fx, v_n = (v - cy) / fy"
GUESS_HFOV_DEG = 65.0


def normalize_rays(uv_px, intrinsics):
    """Pixels -> normalised image coordinates (rays): ((u - cx) / fx, (v - cy) / fy).

    uv_px: (..., 2) pixels; intrinsics: (..., 4) = fx, fy, cx, cy pixels, leading dimensions
    aligned with uv_px's from the left (a (P, 4) serves (P, L, J, 2) points). numpy and torch
    alike (traceable for ONNX)."""
    k = _per_point(intrinsics, uv_px.ndim, "intrinsics")
    return (uv_px - k[..., 2:4]) / k[..., 0:2]


def denormalize_rays(uv_n, intrinsics):
    """Inverse of normalize_rays: u = u_n fx + cx, v = v_n fy + cy (pixels)."""
    k = _per_point(intrinsics, uv_n.ndim, "intrinsics")
    return uv_n * k[..., 0:2] + k[..., 2:4]


def guess_intrinsics(image_wh, hfov_deg: float = GUESS_HFOV_DEG) -> np.ndarray:
    """(..., 2) image (width, height) px -> (..., 4) fx, fy, cx, cy: square pixels, principal
    point at the centre, fx = w / (2 tan(hfov / 2)). Used when no camera_info is known."""
    if not 1.0 <= hfov_deg <= 179.0:
        raise ValueError(f"hfov_deg must be in [1, 179], got {hfov_deg}")
    wh = np.asarray(image_wh, dtype=np.float64)
    if wh.shape[-1:] != (2,) or not (np.isfinite(wh).all() and (wh > 0).all()):
        raise ValueError(f"image_wh must be (..., 2) positive sizes, got {wh.tolist() if wh.size < 9 else wh.shape}")
    f = wh[..., 0] / (2 * np.tan(np.deg2rad(hfov_deg) / 2))
    return np.stack([f, f, wh[..., 0] / 2, wh[..., 1] / 2], axis=-1)


def normalize_input(uv_px, calibration, mode: str):
    """The 2D the model sees, by the config's `data.input_normalisation`: mode "screen" takes
    calibration = image_wh (..., 2) (normalize_screen); mode "rays" takes intrinsics (..., 4)
    (normalize_rays). The one place both training and the run-time pipeline normalise."""
    if mode == "screen":
        return normalize_screen(uv_px, calibration)
    if mode == "rays":
        return normalize_rays(uv_px, calibration)
    raise ValueError(f"input normalisation must be 'screen' or 'rays', got {mode!r}")


# --- Cameras and projection -----------------------------------------------------------------

_EYE3 = np.eye(3)


@dataclass
class Camera:
    """A pinhole camera. R (3, 3) and t (3,) metres map world -> camera: X_c = R @ X_w + t.
    Intrinsics fx, fy, cx, cy in pixels; image width, height in pixels."""

    R: np.ndarray
    t: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        self.R = np.asarray(self.R, dtype=np.float64)
        self.t = np.asarray(self.t, dtype=np.float64)
        if self.R.shape != (3, 3) or self.t.shape != (3,):
            raise ValueError(f"Camera: R must be (3, 3) and t (3,), got {self.R.shape}, "
                             f"{self.t.shape}")
        # Cheap checks (np.allclose / np.linalg.det cost ~70 us; a camera is built per sample).
        orthonormal = np.abs(self.R @ self.R.T - _EYE3).max() <= 1e-6
        if not orthonormal or self.R[0] @ _cross3(self.R[1], self.R[2]) < 0:
            raise ValueError("Camera: R is not a rotation matrix")
        if self.fx <= 0 or self.fy <= 0 or self.width <= 0 or self.height <= 0:
            raise ValueError(f"Camera: focal lengths and image size must be positive, got "
                             f"fx={self.fx}, fy={self.fy}, size={self.width}x{self.height}")

    @property
    def intrinsics(self) -> np.ndarray:
        """(4,) [fx, fy, cx, cy] pixels."""
        return np.array([self.fx, self.fy, self.cx, self.cy])

    @property
    def image_wh(self) -> np.ndarray:
        """(2,) [width, height] pixels."""
        return np.array([self.width, self.height], dtype=np.float64)

    @property
    def position(self) -> np.ndarray:
        """(3,) the camera centre in world metres."""
        return -self.R.T @ self.t

    def world_to_camera(self, points_world_m) -> np.ndarray:
        """(..., 3) world metres -> (..., 3) camera-frame metres."""
        return np.asarray(points_world_m) @ self.R.T + self.t

    def camera_to_world(self, points_cam_m) -> np.ndarray:
        """(..., 3) camera-frame metres -> (..., 3) world metres."""
        return (np.asarray(points_cam_m) - self.t) @ self.R


def project(points_cam_m, cam: Camera, min_depth_m: float = 1e-6) -> np.ndarray:
    """(..., 3) camera-frame metres -> (..., 2) pixels. Raises if a point is not in front of the
    camera (z <= min_depth_m): its projection would be meaningless."""
    p = np.asarray(points_cam_m)
    if p.shape[-1] != 3:
        raise ValueError(f"project: points must be (..., 3), got {p.shape}")
    z = p[..., 2]
    if np.any(~(z > min_depth_m)):
        raise ValueError(f"project: {int(np.sum(~(z > min_depth_m)))} point(s) at depth <= "
                         f"{min_depth_m} m (behind the camera or NaN)")
    return np.stack([cam.fx * p[..., 0] / z + cam.cx, cam.fy * p[..., 1] / z + cam.cy], axis=-1)


def backproject(uv_px, depth_m, cam: Camera) -> np.ndarray:
    """(..., 2) pixels and (...,) depths (camera z, metres) -> (..., 3) camera-frame metres."""
    uv = np.asarray(uv_px, dtype=np.float64)
    z = np.asarray(depth_m, dtype=np.float64)
    return np.stack([(uv[..., 0] - cam.cx) / cam.fx * z, (uv[..., 1] - cam.cy) / cam.fy * z, z],
                    axis=-1)


def look_at_rotation(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World -> camera rotation (3, 3) of an optical-frame camera at `position` looking at
    `target` with no roll (the image's x axis horizontal). Rows = the camera axes in world
    coordinates: right, down, forward."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    forward = forward / np.sqrt(forward @ forward)
    right = _cross3(forward, np.asarray(up, dtype=np.float64))
    norm = np.sqrt(right @ right)
    if norm < 1e-9:
        raise ValueError("look_at_rotation: the viewing direction is parallel to 'up'")
    right = right / norm
    return np.array([right, _cross3(forward, right), forward])


def _cross3(a, b):
    # np.cross on single 3-vectors costs ~40 us; the dataset builds a camera per sample.
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                     a[0] * b[1] - a[1] * b[0]])


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class CameraSampler:
    """Random virtual cameras around a subject, for training and evaluating on mocap.

    Placement: yaw uniform over 360 deg around the subject; horizontal distance `distance_m` from
    the look-at point (the subject's pelvis); camera centre `height_m` above the ground. The camera
    looks at the pelvis, then is perturbed by uniform pan/tilt/roll of up to `jitter_deg` (so the
    subject is not always dead centre and the horizon not always level).
    Intrinsics: an image size drawn from `image_sizes` (4:3 robot/webcam, H36M's square 1000 px,
    16:9 HD), fx = w * U(focal_over_width) (H36M is about 1.15; wide robot cameras 0.7, narrow
    lenses 1.6), fy = fx * (1 + U(+-pixel_aspect_jitter)), principal point at the image centre
    +- principal_jitter_frac * w (uniform).
    Optional (defaults keep the behaviour above): `roll_deg` bounds the roll separately from the
    pan/tilt `jitter_deg` (a large aim jitter puts people off centre and partly outside the image
    without tilting the horizon much); `pitch_deg` = (min, max) clips the optical axis' elevation
    (negative = looking down); `portrait_prob` swaps width and height (a phone held upright).
    """

    distance_m: tuple[float, float] = (3.0, 6.0)
    height_m: tuple[float, float] = (0.8, 2.0)
    jitter_deg: float = 5.0
    focal_over_width: tuple[float, float] = (0.7, 1.6)
    image_sizes: tuple[tuple[int, int], ...] = field(
        default_factory=lambda: ((640, 480), (1000, 1000), (1280, 720)))
    principal_jitter_frac: float = 0.02
    pixel_aspect_jitter: float = 0.01
    roll_deg: float | None = None            # None: jitter_deg
    pitch_deg: tuple[float, float] | None = None
    portrait_prob: float = 0.0

    def __post_init__(self):
        for name in ("distance_m", "height_m", "focal_over_width"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"CameraSampler.{name}: need 0 < low <= high, got ({lo}, {hi})")
        if not self.image_sizes or any(w <= 0 or h <= 0 for w, h in self.image_sizes):
            raise ValueError(f"CameraSampler.image_sizes: need positive sizes, "
                             f"got {self.image_sizes}")
        if self.jitter_deg < 0 or self.principal_jitter_frac < 0 or self.pixel_aspect_jitter < 0 \
                or (self.roll_deg is not None and self.roll_deg < 0):
            raise ValueError("CameraSampler: jitters must be >= 0")
        if self.pitch_deg is not None and not -90 <= self.pitch_deg[0] <= self.pitch_deg[1] <= 90:
            raise ValueError(f"CameraSampler.pitch_deg: need -90 <= min <= max <= 90, got {self.pitch_deg}")
        if not 0 <= self.portrait_prob <= 1:
            raise ValueError(f"CameraSampler.portrait_prob must be in [0, 1], got {self.portrait_prob}")

    def sample(self, rng: np.random.Generator, look_at_world_m, ground_z_m: float = 0.0) -> Camera:
        """One random camera looking at `look_at_world_m` (3,) world metres (Z up); the camera
        height is measured from `ground_z_m` (the floor under the subject)."""
        target = np.asarray(look_at_world_m, dtype=np.float64)
        u = rng.random(10)
        yaw = 2 * np.pi * u[0]
        dist = self.distance_m[0] + (self.distance_m[1] - self.distance_m[0]) * u[1]
        height = self.height_m[0] + (self.height_m[1] - self.height_m[0]) * u[2]
        position = np.array([target[0] + dist * np.cos(yaw), target[1] + dist * np.sin(yaw),
                             ground_z_m + height])
        # Pan (about the camera's y), tilt (x) and roll (z) jitter, applied in the camera frame.
        pan, tilt, roll = np.deg2rad(self.jitter_deg) * (2 * u[3:6] - 1)
        if self.roll_deg is not None:
            roll = np.deg2rad(self.roll_deg) * (2 * u[5] - 1)
        if self.pitch_deg is not None:  # elevation of the optical axis after the tilt jitter
            aim = target - position
            elevation = np.arctan2(aim[2], np.hypot(aim[0], aim[1]))
            lo, hi = np.deg2rad(self.pitch_deg)
            # tilt about the camera's x axis: positive tilt turns the axis downwards (y down)
            tilt = -(np.clip(elevation - tilt, lo, hi) - elevation)
        R = _rot_z(roll) @ _rot_x(tilt) @ _rot_y(pan) @ look_at_rotation(position, target)
        w, h = self.image_sizes[int(u[6] * len(self.image_sizes))]
        if self.portrait_prob and rng.random() < self.portrait_prob:
            w, h = h, w
        lo, hi = self.focal_over_width
        fx = w * (lo + (hi - lo) * u[7])
        fy = fx * (1 + self.pixel_aspect_jitter * (2 * u[8] - 1))
        cx, cy = np.array([w, h]) / 2 + self.principal_jitter_frac * w * (2 * rng.random(2) - 1)
        return Camera(R=R, t=-R @ position, fx=float(fx), fy=float(fy), cx=float(cx),
                      cy=float(cy), width=int(w), height=int(h))


# --- Root translation and weak perspective from 2D ---------------------------------------------

def solve_root_translation(pose_rel_m, uv_px, mask, fx, fy, cx, cy) -> np.ndarray:
    """Camera-frame root position that best reprojects a root-relative pose onto 2D keypoints.

    pose_rel_m: (..., J, 3) camera-frame metres, root-relative; uv_px: (..., J, 2) pixels;
    mask: (..., J) weights (1 = visible, 0 = missing); fx, fy, cx, cy: pixels, scalars or (...,).
    Returns (..., 3) metres, the root T with u_j = fx (x_j + T_x)/(z_j + T_z) + cx (same for v).

    Linear least squares on the equations multiplied out by the depth (with a = (u - cx)/fx,
    b = (v - cy)/fy: T_x - a T_z = a z - x, T_y - b T_z = b z - y), solved in closed form (T_x,
    T_y eliminated, then T_z from the 1-D normal equation). Exact for noiseless projections; with
    noise it is close to the reprojection optimum because the body's depth range is small next to
    its distance. Frames with fewer than 2 visible joints, or whose visible joints all project to
    one point, are under-determined: their result is NaN (check with np.isnan).
    """
    pose = np.asarray(pose_rel_m, dtype=np.float64)
    uv = np.asarray(uv_px, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    if pose.shape[-1] != 3 or uv.shape[-1] != 2 or pose.shape[:-1] != uv.shape[:-1] \
            or m.shape != uv.shape[:-1]:
        raise ValueError(f"solve_root_translation: need pose (..., J, 3), uv (..., J, 2), mask "
                         f"(..., J); got {pose.shape}, {uv.shape}, {m.shape}")
    fx, fy, cx, cy = (np.asarray(v, dtype=np.float64)[..., None] for v in (fx, fy, cx, cy))
    a = (uv[..., 0] - cx) / fx
    b = (uv[..., 1] - cy) / fy
    r1 = a * pose[..., 2] - pose[..., 0]
    r2 = b * pose[..., 2] - pose[..., 1]
    n = m.sum(-1)
    n_safe = np.where(n > 0, n, 1.0)

    def centred(x):
        return x - ((m * x).sum(-1) / n_safe)[..., None]

    ac, bc, r1c, r2c = centred(a), centred(b), centred(r1), centred(r2)
    spread = (m * (ac * ac + bc * bc)).sum(-1)
    ok = ((m > 0).sum(-1) >= 2) & (spread > 1e-12 * n_safe)
    tz = -(m * (ac * r1c + bc * r2c)).sum(-1) / np.where(ok, spread, 1.0)
    tx = ((m * (r1 + a * tz[..., None])).sum(-1)) / n_safe
    ty = ((m * (r2 + b * tz[..., None])).sum(-1)) / n_safe
    out = np.stack([tx, ty, tz], axis=-1)
    out[~ok] = np.nan
    return out


def weak_perspective_fit(pose_rel, uv_n, mask, eps: float = 1e-9):
    """Least-squares weak perspective: scale s and offset o per frame with s * (x, y) + o ~ uv_n.

    pose_rel: (..., J, 3) root-relative camera-frame pose (only x, y are used); uv_n: (..., J, 2)
    normalised 2D (normalize_screen); mask: (..., J) weights (0 = missing).
    Returns (scale (...,), offset (..., 2)), scale in normalised units per pose unit.

    Closed form from masked sums (weighted means, then s = cov / var), written with plain
    arithmetic so it runs on numpy arrays and on torch tensors, and exports to ONNX (no loops,
    no lstsq). Frames with no visible joint, or whose visible joints coincide in x, y, get s = 0
    (and o = the mean visible 2D point, or 0); s is never negative.
    """
    xy = pose_rel[..., :2]
    m = mask[..., None]
    n = mask.sum(-1)[..., None, None] + eps
    xy_mean = (m * xy).sum(-2)[..., None, :] / n
    uv_mean = (m * uv_n).sum(-2)[..., None, :] / n
    dxy = xy - xy_mean
    duv = uv_n - uv_mean
    cov = (m * dxy * duv).sum(-1).sum(-1)
    var = (m * dxy * dxy).sum(-1).sum(-1)
    scale = cov / (var + eps)
    # A camera cannot mirror the image: a negative fit would score a pose turned 180 degrees
    # about the optical axis as a perfect reprojection. Clamp (plain arithmetic: numpy or torch).
    scale = scale * (scale > 0)
    offset = uv_mean[..., 0, :] - scale[..., None] * xy_mean[..., 0, :]
    return scale, offset

"""Multi-view triangulation of 2D keypoints, and the pieces of the real-video check that need no
detector: picking the views that see the same person, MediaPipe world landmarks in a camera
frame, and the check's metrics.

Cameras are `camera.Camera` (X_c = R X_w + t, pinhole, no distortion). A point is first
triangulated linearly (DLT, confidence-weighted), then refined by `scipy.optimize.least_squares`
on the reprojection errors in pixels with a robust loss (soft L1: quadratic below `f_scale_px`,
linear above), so one view that is off by tens of pixels pulls the point much less than it would
in plain least squares.
"""
from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np

from .camera import Camera
from .metrics import M_TO_MM, mpjpe, p_mpjpe, procrustes_align


def projection_matrix(cam: Camera) -> np.ndarray:
    """(3, 4) P = K [R | t]."""
    k = np.array([[cam.fx, 0.0, cam.cx], [0.0, cam.fy, cam.cy], [0.0, 0.0, 1.0]])
    return k @ np.hstack([cam.R, cam.t[:, None]])


def project_points(points_w: np.ndarray, cam: Camera) -> np.ndarray:
    """(..., 3) world metres -> (..., 2) pixels (points behind the camera give garbage: callers
    only project points triangulated in front of the cameras)."""
    pc = np.asarray(points_w, dtype=np.float64) @ cam.R.T + cam.t
    z = np.where(np.abs(pc[..., 2]) > 1e-9, pc[..., 2], 1e-9)
    return np.stack([cam.fx * pc[..., 0] / z + cam.cx, cam.fy * pc[..., 1] / z + cam.cy], axis=-1)


def _check_views(uv_px, weights, cameras) -> tuple[np.ndarray, np.ndarray]:
    uv = np.asarray(uv_px, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if uv.ndim != 3 or uv.shape[-1] != 2 or uv.shape[0] != len(cameras):
        raise ValueError(f"uv_px: expected (V={len(cameras)}, N, 2), got {uv.shape}")
    if w.shape != uv.shape[:2]:
        raise ValueError(f"weights: expected {uv.shape[:2]}, got {w.shape}")
    if not (np.isfinite(uv[w > 0]).all() and np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("uv_px/weights: non-finite values, or negative weights")
    return uv, w


def triangulate_dlt(uv_px, weights, cameras: Sequence[Camera]) -> np.ndarray:
    """Linear triangulation. uv_px (V, N, 2), weights (V, N) (0 = the view does not see the point).

    Returns (N, 3) world points; NaN where fewer than 2 views have a positive weight.
    """
    uv, w = _check_views(uv_px, weights, cameras)
    proj = np.stack([projection_matrix(c) for c in cameras])  # (V, 3, 4)
    # Rows u P3 - P1 and v P3 - P2 per view, scaled by the weight (and by 1/f so pixel-size
    # rows of different cameras weigh alike).
    scale = w / np.array([c.fx for c in cameras])[:, None]  # (V, N)
    rows_u = uv[..., 0:1] * proj[:, None, 2] - proj[:, None, 0]  # (V, N, 4)
    rows_v = uv[..., 1:2] * proj[:, None, 2] - proj[:, None, 1]
    a = np.concatenate([rows_u * scale[..., None], rows_v * scale[..., None]], axis=0)  # (2V, N, 4)
    a = np.transpose(a, (1, 0, 2))  # (N, 2V, 4)
    _, _, vt = np.linalg.svd(a)
    x = vt[:, -1]  # (N, 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        points = x[:, :3] / x[:, 3:4]
    points[(w > 0).sum(axis=0) < 2] = np.nan
    return points


def reprojection_errors(points_w, uv_px, cameras: Sequence[Camera]) -> np.ndarray:
    """(N, 3) world points, (V, N, 2) pixels -> (V, N) pixel distances (NaN for NaN points)."""
    proj = np.stack([project_points(points_w, c) for c in cameras])
    return np.linalg.norm(proj - np.asarray(uv_px, dtype=np.float64), axis=-1)


def triangulate(uv_px, weights, cameras: Sequence[Camera], f_scale_px: float = 5.0,
                loss: str = "soft_l1") -> np.ndarray:
    """Robust triangulation: DLT, then least squares on the weighted pixel residuals with a robust
    `loss` (scipy's names; residuals beyond ~f_scale_px count linearly, not quadratically).

    uv_px (V, N, 2), weights (V, N) >= 0. Returns (N, 3); NaN for points seen by < 2 views.
    All points are refined in one call (their Jacobian is block-diagonal).
    """
    from scipy.optimize import least_squares
    from scipy.sparse import csr_matrix

    uv, w = _check_views(uv_px, weights, cameras)
    x0 = triangulate_dlt(uv, w, cameras)
    ok = np.isfinite(x0).all(axis=1)
    out = np.full_like(x0, np.nan)
    if not ok.any():
        return out
    uv_ok, sw = uv[:, ok], np.sqrt(w[:, ok])  # (V, n, 2), (V, n)
    n, nv = int(ok.sum()), len(cameras)
    rot = np.stack([c.R for c in cameras])  # (V, 3, 3)
    trans = np.stack([c.t for c in cameras])  # (V, 3)
    focal = np.array([[c.fx, c.fy] for c in cameras])  # (V, 2)
    centre = np.array([[c.cx, c.cy] for c in cameras])
    # Residuals are point-major (point, view, u/v): point i owns rows 2V i .. 2V (i+1) and
    # columns 3i .. 3i+2, so the Jacobian is block-diagonal.
    rows = np.repeat(np.arange(2 * nv * n).reshape(n, 2 * nv), 3, axis=1).reshape(-1)
    cols = np.repeat(np.arange(3 * n).reshape(n, 1, 3), 2 * nv, axis=1).reshape(-1)

    def camera_points(flat):
        return np.einsum("vij,nj->vni", rot, flat.reshape(n, 3)) + trans[:, None]  # (V, n, 3)

    def residuals(flat):
        pc = camera_points(flat)
        proj = focal[:, None] * pc[..., :2] / pc[..., 2:3] + centre[:, None]
        r = (proj - uv_ok) * sw[..., None]  # (V, n, 2)
        return np.transpose(r, (1, 0, 2)).reshape(-1)

    def jacobian(flat):
        pc = camera_points(flat)
        z = pc[..., 2:3]  # (V, n, 1)
        # d(f x/z)/dX = f/z (R_row0 - x/z R_row2), likewise for y.
        d = rot[:, None, :2, :] - (pc[..., :2] / z)[..., None] * rot[:, None, 2:3, :]  # V,n,2,3
        d = d * (focal[:, None, :, None] / z[..., None]) * sw[..., None, None]
        blocks = np.transpose(d, (1, 0, 2, 3)).reshape(n, 2 * nv, 3)
        return csr_matrix((blocks.reshape(-1), (rows, cols)), shape=(2 * nv * n, 3 * n))

    fit = least_squares(residuals, x0[ok].reshape(-1), jac=jacobian, loss=loss,
                        f_scale=f_scale_px, method="trf", tr_solver="lsmr")
    out[ok] = fit.x.reshape(n, 3)
    return out


# --- which views see the same person ---------------------------------------------------------


def consistent_views(uv_px, conf, cameras: Sequence[Camera], candidates: Sequence[int],
                     min_conf: float = 0.5, max_error_px: float = 20.0, min_views: int = 2,
                     min_points: int = 8, f_scale_px: float = 5.0):
    """The largest set of `candidates` views whose keypoints triangulate consistently.

    A monocular detector that tracks one person may follow different people in different views;
    a set of views is consistent when, triangulating from all of them, every view's median
    reprojection error over its confident points is at most max_error_px. Among consistent sets
    of the largest size (>= min_views), the one with the lowest worst-view median error wins.

    uv_px (V, N, 2), conf (V, N): one frame's keypoints in all V views (conf 0 = no detection).
    Returns (views tuple, (N, 3) points, (V, N) reprojection errors) or None when no set holds.
    """
    best = None
    for size in range(len(candidates), min_views - 1, -1):
        for subset in combinations(candidates, size):
            w = np.zeros_like(np.asarray(conf, dtype=np.float64))
            for v in subset:
                w[v] = np.where(conf[v] >= min_conf, conf[v], 0.0)
            if ((w > 0).sum(axis=0) >= 2).sum() < min_points:
                continue
            points = triangulate(uv_px, w, cameras, f_scale_px=f_scale_px)
            err = reprojection_errors(points, uv_px, cameras)
            worst = max(view_median_error(err[v], w[v] > 0) for v in subset)
            if worst <= max_error_px and (best is None or worst < best[0]):
                best = (worst, subset, points, err)
        if best is not None:
            return best[1], best[2], best[3]
    return None


def view_median_error(err_px: np.ndarray, used: np.ndarray) -> float:
    """Median reprojection error (px) of one view over the points it contributes (inf if none)."""
    e = err_px[used & np.isfinite(err_px)]
    return float(np.median(e)) if e.size else float("inf")


def multiview_reference(uv_px, conf, cameras: Sequence[Camera], min_conf: float = 0.5,
                        max_error_px: float = 20.0, f_scale_px: float = 5.0,
                        min_points: int = 8, min_views: int = 3) -> dict[str, np.ndarray]:
    """The triangulated reference of a multi-view stream where each view's detector follows one
    person, not necessarily the same one in every view.

    Per frame, the views that see the same person are found (`consistent_views` over the views
    with at least min_points confident points; at least min_views of them, so that a view's
    agreement is checked against two others, not only along an epipolar line). The reference
    ('points') is triangulated from all of them. As a check of how much a view's own keypoints
    pull the reference it is scored against, each view v of the set also gets 'points_loo',
    triangulated from the others only, and its median reprojection error against them.
    uv_px (V, T, N, 2), conf (V, T, N) (0 where a view found nobody).
    Returns {'consistent': (T, V) bool, 'points': (T, N, 3) world metres (NaN where there is no
    reference or a point has < 2 confident views), 'error_px': (V, T) median reprojection error
    of each view against 'points' (inf where not computed), 'points_loo': (V, T, N, 3),
    'error_loo_px': (V, T)}.
    """
    uv = np.asarray(uv_px, dtype=np.float64)
    conf = np.asarray(conf, dtype=np.float64)
    nv, nt, npts = conf.shape
    if uv.shape != (nv, nt, npts, 2) or nv != len(cameras):
        raise ValueError(f"uv_px {uv.shape} / conf {conf.shape} / {len(cameras)} cameras disagree")
    if min_views < 2:
        raise ValueError(f"min_views must be >= 2, got {min_views}")
    consistent = np.zeros((nt, nv), bool)
    points = np.full((nt, npts, 3), np.nan)
    error = np.full((nv, nt), np.inf)
    points_loo = np.full((nv, nt, npts, 3), np.nan)
    error_loo = np.full((nv, nt), np.inf)
    for t in range(nt):
        seen = [v for v in range(nv) if (conf[v, t] >= min_conf).sum() >= min_points]
        found = consistent_views(uv[:, t], conf[:, t], cameras, seen, min_conf, max_error_px,
                                 min_views=min_views, min_points=min_points, f_scale_px=f_scale_px)
        if found is None:
            continue
        views, points[t], err = found
        consistent[t, list(views)] = True
        for v in views:
            own = conf[v, t] >= min_conf
            error[v, t] = view_median_error(err[v], own)
            w = np.zeros((nv, npts))
            for o in views:
                if o != v:
                    w[o] = np.where(conf[o, t] >= min_conf, conf[o, t], 0.0)
            points_loo[v, t] = triangulate(uv[:, t], w, cameras, f_scale_px=f_scale_px)
            error_loo[v, t] = view_median_error(
                reprojection_errors(points_loo[v, t], uv[:, t], cameras)[v], own)
    return {"consistent": consistent, "points": points, "error_px": error,
            "points_loo": points_loo, "error_loo_px": error_loo}


def pair_offset_errors(uv_px, conf, cameras: Sequence[Camera], pair: tuple[int, int],
                       offsets: Sequence[int], frames: np.ndarray, min_conf: float = 0.5
                       ) -> np.ndarray:
    """A synchronisation check: how well views a and b agree when b is shifted by each offset.

    For each offset o, every frame t of `frames` (bool (T,)) with t + o in range pairs view a at
    t with view b at t + o; the two are triangulated linearly and the median reprojection error
    over the points both see is taken; the result is the median over frames. Frames are the
    same for every offset (those where t + o is in range for all offsets), so that the errors
    compare. uv_px (V, T, N, 2), conf (V, T, N). Returns (len(offsets),) pixels (NaN if none).
    """
    uv = np.asarray(uv_px, dtype=np.float64)
    conf = np.asarray(conf, dtype=np.float64)
    a, b = pair
    nt = uv.shape[1]
    lo, hi = max(0, -min(offsets)), min(nt, nt - max(offsets))
    ts = [t for t in range(lo, hi) if frames[t]]
    cams = [cameras[a], cameras[b]]
    out = []
    for o in offsets:
        per_frame = []
        for t in ts:
            u = np.stack([uv[a, t], uv[b, t + o]])
            c = np.stack([conf[a, t], conf[b, t + o]])
            w = np.where(c >= min_conf, c, 0.0)
            both = (w > 0).all(axis=0)
            if both.sum() < 4:
                continue
            pts = triangulate_dlt(u[:, both], w[:, both], cams)
            per_frame.append(np.median(reprojection_errors(pts, u[:, both], cams)))
        out.append(float(np.median(per_frame)) if per_frame else float("nan"))
    return np.array(out)


# --- MediaPipe world landmarks in a camera frame -----------------------------------------------


def ray_rotation(uv_px, intrinsics) -> np.ndarray:
    """(..., 2) pixels, (4,) fx, fy, cx, cy -> (..., 3, 3) the smallest rotation that turns the
    optical axis (0, 0, 1) onto the viewing ray through the pixel (Rodrigues' formula)."""
    fx, fy, cx, cy = np.asarray(intrinsics, dtype=np.float64)
    uv = np.asarray(uv_px, dtype=np.float64)
    d = np.stack([(uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy, np.ones(uv.shape[:-1])], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    # Axis z x d = (-d_y, d_x, 0), sin = |z x d|, cos = d_z.
    kx, ky = -d[..., 1], d[..., 0]
    s = np.sqrt(kx ** 2 + ky ** 2)
    c = d[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        kx, ky = np.where(s > 1e-12, kx / s, 1.0), np.where(s > 1e-12, ky / s, 0.0)
    zero = np.zeros_like(kx)
    k = np.stack([np.stack([zero, zero, ky], -1), np.stack([zero, zero, -kx], -1),
                  np.stack([-ky, kx, zero], -1)], -2)  # cross-product matrix of (kx, ky, 0)
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + s[..., None, None] * k + (1 - c)[..., None, None] * (k @ k)


WORLD_LANDMARK_FRAMES = ("camera", "ray")


def world_landmarks_to_camera(world_m, root_px, intrinsics, frame: str = "camera") -> np.ndarray:
    """MediaPipe pose_world_landmarks -> the camera's optical frame (metres, same origin).

    MediaPipe gives world landmarks in metres around the hips' midpoint, with axes aligned with
    the camera's orientation: x right, y down (as the image's), z away from the camera.
    frame 'camera' (default): read them as camera-frame offsets as they are (identity rotation),
    which is what a MediaPipe user gets. frame 'ray': the landmarks are estimated from a crop
    around the person, which sees the person along the viewing ray through the hips, not along
    the optical axis; this reading rotates them by the smallest rotation taking the optical axis
    onto that ray (through `root_px`). The two differ by the ray's angle to the optical axis (a
    few degrees for a person near the image centre).

    world_m (..., J, 3), root_px (..., 2) pixels (used by 'ray'), intrinsics (4,) fx, fy, cx, cy.
    Returns (..., J, 3).
    """
    world = np.asarray(world_m, dtype=np.float64)
    if frame == "camera":
        return world.copy()
    if frame != "ray":
        raise ValueError(f"frame must be one of {WORLD_LANDMARK_FRAMES}, got {frame!r}")
    rot = ray_rotation(root_px, intrinsics)  # (..., 3, 3)
    return world @ np.swapaxes(rot, -1, -2)


def alignment_rotation_deg(pred, target) -> np.ndarray:
    """(..., J, 3) poses -> (...,) angle (degrees) of the rotation of the Procrustes alignment of
    pred onto target (no reflection): how far a pose's orientation is off, whatever its shape."""
    p = np.asarray(pred, dtype=np.float64)
    q = np.asarray(target, dtype=np.float64)
    p = p - p.mean(axis=-2, keepdims=True)
    q = q - q.mean(axis=-2, keepdims=True)
    u, _, vt = np.linalg.svd(np.swapaxes(p, -1, -2) @ q)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= np.where(d == 0, 1.0, d)[..., None]
    rot = u @ vt
    cos = (np.trace(rot, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


# --- metrics of the check ---------------------------------------------------------------------


def runs_of(keep: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of consecutive True values of a (T,) bool array."""
    keep = np.asarray(keep, dtype=bool)
    edges = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def second_differences(pose_m: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(T, J, 3) poses, (T,) kept frames -> (K, J, 3) second differences x[t+1] - 2x[t] + x[t-1]
    over every three consecutive kept frames (a dropped frame breaks the stream there)."""
    pieces = [np.diff(pose_m[a:b], n=2, axis=0) for a, b in runs_of(keep) if b - a >= 3]
    return np.concatenate(pieces) if pieces else np.zeros((0,) + pose_m.shape[1:])


def jitter_mm(pose_m: np.ndarray, keep: np.ndarray) -> float:
    """Mean norm of the second differences of a root-relative pose stream, mm per frame^2 at the
    stream's rate (NaN when no three consecutive frames are kept)."""
    acc = second_differences(np.asarray(pose_m, dtype=np.float64), keep)
    return float(np.linalg.norm(acc, axis=-1).mean() * M_TO_MM) if len(acc) else float("nan")


def root_relative(pose_m: np.ndarray, root: int = 0) -> np.ndarray:
    pose_m = np.asarray(pose_m, dtype=np.float64)
    return pose_m - pose_m[..., root:root + 1, :]


# Joints whose definition a detector and a mocap skeleton share best (the limbs): pelvis, spine,
# thorax, nose and head are midpoints or extrapolations whose places differ between the two.
LIMB_JOINTS = (2, 3, 5, 6, 11, 12, 13, 14, 15, 16)


def stream_metrics(pred_m: np.ndarray, ref_m: np.ndarray, keep: np.ndarray) -> dict:
    """The check's metrics of one method on one view's stream.

    pred_m, ref_m (T, 17, 3) camera frame (made root-relative here), keep (T,) the frames where
    both exist. MPJPE and P-MPJPE (mm) over the kept frames, P-MPJPE over LIMB_JOINTS only,
    per-joint MPJPE, the Procrustes rotation angle per frame, jitter of pred's stream and of the
    reference (mm/frame^2), as sums that pool views exactly (`pool_metrics`).
    """
    keep = np.asarray(keep, dtype=bool)
    pred, ref = root_relative(pred_m), root_relative(ref_m)
    n = int(keep.sum())
    acc = second_differences(pred, keep)
    acc_ref = second_differences(ref, keep)
    out = {"frames": n, "jitter_terms": int(len(acc)),
           "jitter_sum_mm": float(np.linalg.norm(acc, axis=-1).mean(axis=-1).sum() * M_TO_MM),
           "ref_jitter_sum_mm": float(np.linalg.norm(acc_ref, axis=-1).mean(axis=-1).sum()
                                      * M_TO_MM)}
    if n:
        out["mpjpe_sum_mm"] = mpjpe(pred[keep], ref[keep]) * n
        out["p_mpjpe_sum_mm"] = p_mpjpe(pred[keep], ref[keep]) * n
        limbs = list(LIMB_JOINTS)
        out["p_mpjpe_limbs_sum_mm"] = float(np.linalg.norm(
            procrustes_align(pred[keep][:, limbs], ref[keep][:, limbs]) - ref[keep][:, limbs],
            axis=-1).mean() * M_TO_MM * n)
        out["rotation_deg"] = alignment_rotation_deg(pred[keep], ref[keep]).tolist()
        out["per_joint_sum_mm"] = (mpjpe(pred[keep], ref[keep], per_joint=True) * n).tolist()
    return out


def pool_metrics(parts: Sequence[dict]) -> dict:
    """Pool `stream_metrics` of several views: means weighted by frames (jitter: by its terms)."""
    frames = sum(p["frames"] for p in parts)
    terms = sum(p["jitter_terms"] for p in parts)
    out = {"frames": frames, "mpjpe_mm": None, "p_mpjpe_mm": None, "p_mpjpe_limbs_mm": None,
           "rotation_error_deg_median": None, "per_joint_mpjpe_mm": None, "jitter_mm": None,
           "reference_jitter_mm": None}
    if frames:
        for k in ("mpjpe", "p_mpjpe", "p_mpjpe_limbs"):
            out[f"{k}_mm"] = sum(p.get(f"{k}_sum_mm", 0.0) for p in parts) / frames
        out["rotation_error_deg_median"] = float(np.median(
            [a for p in parts for a in p.get("rotation_deg", [])]))  # frames > 0: not empty
        out["per_joint_mpjpe_mm"] = (np.sum([p["per_joint_sum_mm"] for p in parts if p["frames"]],
                                            axis=0) / frames).tolist()
    if terms:
        out["jitter_mm"] = sum(p["jitter_sum_mm"] for p in parts) / terms
        out["reference_jitter_mm"] = sum(p["ref_jitter_sum_mm"] for p in parts) / terms
    return out

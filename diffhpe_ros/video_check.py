"""The real-video check's data: MediaPipe on every view of a multi-view video (cached), and lifting
one view frame by frame as the lifter node does. No ROS here (the detector and the window buffer
are plain Python).

MediaPipe on 4 views costs ~60 ms per frame per view on one core, so the detections are cached in
`<cache_dir>/video_check/det_<key>.npz`, the key hashing the video's bytes and the detector
settings: re-running the check with another model only lifts.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from diffhpe_models.atomic import atomic_save_npz
from diffhpe_models.camera import Camera
from diffhpe_models.contract import sha256_file as file_sha256
from diffhpe_models.skeleton import MEDIAPIPE33_NAMES, NUM_JOINTS, to_h36m17
from diffhpe_models.uncertainty import CALIBRATION_JOINTS, block_bootstrap
from diffhpe_ros.params import DEFAULTS, mirror_enabled

CACHE_VERSION = 1  # bump when what is cached changes meaning
BOOTSTRAP_BLOCK_FRAMES = 10  # the spread's calibration interval: blocks of scored frames (1/6 s)
HIPS = [MEDIAPIPE33_NAMES.index("left_hip"), MEDIAPIPE33_NAMES.index("right_hip")]


def source_hash(*modules) -> str:
    """Hash of the source files of `modules`: a cache entry made by other code is not reused."""
    h = hashlib.sha256()
    for m in modules:
        h.update(Path(inspect.getfile(m)).read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class DetectorSettings:
    """The detector node's defaults (diffhpe_ros/detector_node.py)."""

    model_complexity: int = 1
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    static_image_mode: bool = False


def cache_key(*parts: object) -> str:
    """A short stable hash of JSON-serialisable parts (file hashes, settings)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def detect_video(video: str | os.PathLike, settings: DetectorSettings = DetectorSettings(),
                 max_frames: int = 0, progress=None) -> dict[str, np.ndarray]:
    """Run MediaPipe over a video file, one detector for the whole stream (tracking on).

    Returns {'keypoints_px': (T, 33, 2), 'conf': (T, 33), 'world_m': (T, 33, 3) float32,
    'found': (T,) bool, 'fps': (), 'image_wh': (2,)}; frames without a person are zeros with
    found False. max_frames: 0 = all.
    """
    import cv2

    from diffhpe_ros.pose_detector import NUM_LANDMARKS, PoseDetector

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise ValueError(f"{video}: cannot open the video")
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    if not fps > 0:
        raise ValueError(f"{video}: the video states no frame rate")
    kp, conf, world, found = [], [], [], []
    image_wh = None
    try:
        with PoseDetector(**asdict(settings)) as detector:
            while not max_frames or len(found) < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                image_wh = (bgr.shape[1], bgr.shape[0])
                k, c, w = detector.detect_with_world(np.ascontiguousarray(bgr[:, :, ::-1]))
                hit = len(k) > 0
                kp.append(k[0] if hit else np.zeros((NUM_LANDMARKS, 2), np.float32))
                conf.append(c[0] if hit else np.zeros(NUM_LANDMARKS, np.float32))
                world.append(w[0] if hit else np.zeros((NUM_LANDMARKS, 3), np.float32))
                found.append(hit)
                if progress is not None:
                    progress(len(found))
    finally:
        cap.release()
    if not found:
        raise ValueError(f"{video}: no frame could be decoded")
    return {"keypoints_px": np.stack(kp), "conf": np.stack(conf), "world_m": np.stack(world),
            "found": np.array(found), "fps": np.float64(fps), "image_wh": np.array(image_wh)}


def cached_detections(video: str | os.PathLike, cache_dir: str | os.PathLike,
                      settings: DetectorSettings = DetectorSettings(), max_frames: int = 0,
                      progress=None) -> tuple[dict[str, np.ndarray], Path, bool]:
    """`detect_video`, cached by the video's content and the settings.

    Returns (detections, cache file (its stem holds the key), whether it came from the cache)."""
    from diffhpe_ros import pose_detector

    key = cache_key(CACHE_VERSION, file_sha256(video), asdict(settings), max_frames,
                    source_hash(pose_detector))
    path = Path(cache_dir) / "video_check" / f"det_{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}, path, True
    det = detect_video(video, settings, max_frames, progress)
    atomic_save_npz(path, **det)
    return det, path, False


# --- lifting a view as the node does --------------------------------------------------------


def takes_intrinsics(lifter) -> bool:
    """Whether this runtime's `lift` takes camera intrinsics (a camera-aware model uses them)."""
    return "intrinsics" in inspect.signature(lifter.lift).parameters


def core_settings(node_params: dict | None = None):
    """The lifter node's settings: params.DEFAULTS with `node_params` over them, each validated;
    no output rate limit (every frame is lifted, as diffhpe_ros/offline.py does)."""
    from diffhpe_ros import params
    from diffhpe_ros.lifter_core import Settings

    values = {**DEFAULTS, **(node_params or {}), "max_output_rate_hz": 0.0}
    for name, value in values.items():
        reason = params.validate(name, value)
        if reason is not None:
            raise ValueError(f"lifter parameter {reason}")
    return Settings(**{f.name: values[f.name] for f in fields(Settings)})


@dataclass
class LiftedView:
    """One view lifted frame by frame (`lift_view`): T frames, H36M-17 joints."""

    pose_m: np.ndarray  # (T, 17, 3) the published pose, root-relative, camera frame; 0 if not lifted
    lifted: np.ndarray  # (T,) bool: the node published a pose for the frame
    spread_m: np.ndarray  # (T, 17) the lifter's spread of the published frame (0 if not lifted)
    observed: np.ndarray  # (T, 17) bool: the joints the lifter got as observed in that frame
    #   (the node's confidence mask of the frame: MediaPipe visibility >= confidence_threshold)


def lift_view(lifter, keypoints_px: np.ndarray, conf: np.ndarray, found: np.ndarray,
              fps: float, camera: Camera, node_params: dict | None = None,
              warn=None) -> LiftedView:
    """Lift one view's MediaPipe stream frame by frame through the lifter node's own logic
    (lifter_core.LifterCore: H36M-17 mapping, confidence mask, tracking, causal windows on the
    model's grid, noise slots, output checks), fed what the node would get: the camera's
    intrinsics as camera_info (passed on to `lift` when the runtime takes them), then one
    keypoints message per frame stamped t / fps.

    keypoints_px (T, 33, 2), conf (T, 33), found (T,): MediaPipe's output per frame.
    Frames with nobody, too few visible joints or an output the node would not publish are not
    lifted. `observed` is the last frame of the mask the lifter was given with the window (the
    joints it did not receive as missing).
    """
    from diffhpe_ros.checks import Intrinsics, keypoints_from_xyz
    from diffhpe_ros.lifter_core import LifterCore

    core = LifterCore(core_settings(node_params), lifter, warn=warn or (lambda text: None),
                      info=lambda text: None)
    core.on_camera_info(Intrinsics(camera.width, camera.height, *map(float, camera.intrinsics)))
    if not takes_intrinsics(lifter):
        core.intrinsics = None  # an older runtime: image size only (the node's parameters)
        core.settings = replace(core.settings, image_width=camera.width,
                                image_height=camera.height)
    xyz = np.concatenate([keypoints_px, conf[..., None]], axis=-1).astype(np.float64)
    out = np.zeros((len(found), NUM_JOINTS, 3))
    spread = np.zeros((len(found), NUM_JOINTS))
    observed = np.zeros((len(found), NUM_JOINTS), bool)
    lifted = np.zeros(len(found), bool)
    for t in range(len(found)):
        kp = keypoints_from_xyz(xyz[t] if found[t] else np.zeros((0, 3)), xyz.shape[1])
        if not core.on_keypoints(t / fps, kp, tag=t, received_s=0.0):
            continue
        job = core.slot.take(timeout_s=0.0)
        result = core.lift(job)
        if len(result.track_ids):
            out[t] = result.pose_m[0] - result.pose_m[0, :1]
            spread[t] = result.spread_m[0]
            person = int(np.flatnonzero(job.track_ids == result.track_ids[0])[0])
            observed[t] = job.mask[person, -1] > 0
            lifted[t] = True
    return LiftedView(out, lifted, spread, observed)


def lift_stream(lifter, keypoints_px: np.ndarray, conf: np.ndarray, found: np.ndarray,
                fps: float, camera: Camera, node_params: dict | None = None,
                warn=None) -> tuple[np.ndarray, np.ndarray]:
    """`lift_view`'s (pose_m (T, 17, 3) root-relative camera frame, lifted (T,) bool)."""
    view = lift_view(lifter, keypoints_px, conf, found, fps, camera, node_params, warn)
    return view.pose_m, view.lifted


# --- the calibration of the spread (issue 9) ---------------------------------------------------



def spread_goals() -> dict[str, float]:
    """Issue 9's goals of the spread, as the synthetic evaluation states them."""
    from diffhpe_models.evaluation import RANK_CORRELATION_GOAL, SPREAD_HIDDEN_VISIBLE_GOAL

    return {"hidden_visible_ratio": SPREAD_HIDDEN_VISIBLE_GOAL,
            "rank_correlation": RANK_CORRELATION_GOAL}


def spread_calibration(spread_m: np.ndarray, error_m: np.ndarray, observed: np.ndarray) -> dict:
    """uncertainty.calibration_report of a lifter's spread on the scored frames, pooled.

    spread_m, error_m (N, 17) metres (error: distance of the published root-relative joint from
    the reference), observed (N, 17) bool (False: hidden, the lifter got the joint as missing).
    Over the non-root joints (CALIBRATION_JOINTS). A deterministic lifter (no spread > 0) or no
    scored joint: `applicable` False and every number None. Otherwise issue 9's goals (spread
    hidden >= 2x visible, within-joint rank correlation >= 0.3) with `margin` = value - goal
    (>= 0: met); a goal whose value cannot be computed (no hidden joint) is neither met nor missed.
    """
    from diffhpe_models.uncertainty import COVERAGE_K, calibration_report

    spread = np.asarray(spread_m, dtype=np.float64)
    error = np.asarray(error_m, dtype=np.float64)
    seen = np.asarray(observed, dtype=bool)
    if not (spread.shape == error.shape == seen.shape) or spread.ndim != 2 \
            or spread.shape[1] != NUM_JOINTS:
        raise ValueError(f"spread, error and observed must share one shape (N, {NUM_JOINTS}), "
                         f"got {np.shape(spread_m)}, {np.shape(error_m)}, {np.shape(observed)}")
    joints = list(CALIBRATION_JOINTS)
    spread, error, seen = spread[:, joints], error[:, joints], seen[:, joints]
    out = {"joints": len(joints), "frames": int(len(spread)), "hidden": int((~seen).sum()),
           "visible": int(seen.sum())}
    if spread.size == 0 or not (spread > 0).any():
        return {**out, "applicable": False,
                "reason": "no scored frame" if spread.size == 0 else "deterministic: spread 0",
                **dict.fromkeys(["spread_hidden_mm", "spread_visible_mm", "hidden_visible_ratio",
                                 "rank_correlation", *(f"coverage_k{k:g}" for k in COVERAGE_K),
                                 "reliability"]), "goals": {}}
    report = calibration_report(spread, error, seen)
    goals = {}
    for key, goal in spread_goals().items():
        value = report[key]
        goals[key] = {"value": value, "goal": goal,
                      "met": None if value is None else bool(value >= goal),
                      "margin": None if value is None else float(value - goal)}
    return {**out, "applicable": True, **report, "goals": goals}


# --- the triangulated reference (cached) ------------------------------------------------------


@dataclass(frozen=True)
class ReferenceSettings:
    """How the reference is triangulated and which frames count (see triangulation.py)."""

    min_conf: float = 0.5  # the node's confidence_threshold: points below it are not used
    max_error_px: float = 20.0  # Pose2Sim's reproj_error_threshold_association
    f_scale_px: float = 5.0  # robust loss: residuals beyond ~5 px count linearly
    min_points: int = 8  # landmarks a view needs above min_conf to take part in a frame


def stack_views(detections: dict[str, dict[str, np.ndarray]], cameras: list[str]):
    """Per-view detections -> (uv (V, T, 33, 2), conf (V, T, 33) with 0 where nobody was found),
    cut to the shortest view (T frames)."""
    t = min(len(detections[c]["found"]) for c in cameras)
    uv = np.stack([detections[c]["keypoints_px"][:t] for c in cameras]).astype(np.float64)
    conf = np.stack([detections[c]["conf"][:t] * detections[c]["found"][:t, None]
                     for c in cameras]).astype(np.float64)
    return uv, conf


def cached_reference(detections: dict[str, dict[str, np.ndarray]], det_keys: dict[str, str],
                     cameras: dict[str, Camera], cache_dir: str | os.PathLike,
                     settings: ReferenceSettings = ReferenceSettings()
                     ) -> tuple[dict[str, np.ndarray], Path, bool]:
    """`triangulation.multiview_reference` of all 33 landmarks over the views in `cameras`
    (their order), cached by the detections' cache keys, the calibration and the settings."""
    from diffhpe_models import triangulation

    names = list(cameras)
    calib = {n: [cameras[n].R.tolist(), cameras[n].t.tolist(), cameras[n].intrinsics.tolist()]
             for n in names}
    key = cache_key(CACHE_VERSION, [det_keys[n] for n in names], calib, asdict(settings),
                    source_hash(triangulation))
    path = Path(cache_dir) / "video_check" / f"ref_{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}, path, True
    uv, conf = stack_views(detections, names)
    ref = triangulation.multiview_reference(uv, conf, [cameras[n] for n in names],
                                            **asdict(settings))
    atomic_save_npz(path, **ref)
    return ref, path, False


# --- the compared poses, in one view's camera frame --------------------------------------------


def reference_in_camera(points_w: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Triangulated MediaPipe-33 landmarks (T, 33, 3) world metres (NaN = not triangulated) ->
    (H36M-17 root-relative in the camera frame (T, 17, 3), valid (T,): every joint present)."""
    present = np.isfinite(points_w).all(axis=-1).astype(np.float64)
    p17, c17 = to_h36m17(np.nan_to_num(points_w), present, "mediapipe33")
    cam = camera.world_to_camera(p17)
    return cam - cam[:, :1], (c17 > 0).all(axis=-1)


def mediapipe_world_in_camera(detections: dict[str, np.ndarray], camera: Camera,
                              frame: str = "camera") -> np.ndarray:
    """MediaPipe's world landmarks of one view as H36M-17 (T, 17, 3), root-relative, in the
    camera frame (see triangulation.world_landmarks_to_camera; the ray is the one through the
    detected hips' midpoint)."""
    from diffhpe_models.triangulation import world_landmarks_to_camera

    w17, _ = to_h36m17(detections["world_m"], detections["conf"], "mediapipe33")
    uv17, _ = to_h36m17(detections["keypoints_px"], detections["conf"], "mediapipe33")
    cam = world_landmarks_to_camera(w17, uv17[:, 0], camera.intrinsics, frame)
    return cam - cam[:, :1]


# --- the check ----------------------------------------------------------------------------------

MEDIAPIPE_ROW = "mediapipe_world"  # the baseline: world landmarks, axes = the camera's
MEDIAPIPE_RAY_ROW = "mediapipe_world_ray"  # the same, turned onto the ray through the person
# Goals of issue 8: a model's value at most this fraction of the baseline's.
GOALS = {"mpjpe_mm": 0.8, "p_mpjpe_mm": 0.8, "jitter_mm": 0.5}


def run_check(source: str, models: dict[str, str], views: list[str] | None = None,
              cache_dir: str | os.PathLike = ".cache", max_frames: int = 300,
              detector: DetectorSettings = DetectorSettings(),
              reference: ReferenceSettings = ReferenceSettings(), log=print,
              seed: int | None = None, fixed_noise: bool | None = None,
              mirror: Iterable[str] = ()) -> dict:
    """The real-video check: MediaPipe on every view (cached), the triangulated reference (cached),
    each model lifting each view in `views` frame by frame, metrics per row pooled over views.

    models: {row name: model file}. Every row is scored on the same frames: those of each view
    where the view is one of the >= 3 views that agree on the person, every reference joint is
    triangulated, MediaPipe found the person and every model lifted it. Each model row also gets
    the calibration of its spread on those frames (`spread_calibration`, pooled and per view).
    seed, fixed_noise: the lifters' noise (default: the node's parameters); with one tracked
    person per view, one noise draw decides much of a view's spread. mirror: the rows whose
    lifter also lifts the mirror image (the node's `mirror` parameter; the others follow its
    default).
    """
    from diffhpe_models.runtime import load_lifter
    from diffhpe_models.triangulation import pool_metrics, stream_metrics
    from diffhpe_ros.demo_videos import multiview_demo

    videos, cameras = multiview_demo(source, cache_dir)
    views = list(views or cameras)
    unknown = sorted(set(views) - set(cameras))
    if unknown:
        raise ValueError(f"views {unknown} are not cameras of {source} ({sorted(cameras)})")
    dets, keys = {}, {}
    for name, video in videos.items():
        dets[name], path, hit = cached_detections(video, cache_dir, detector, max_frames)
        keys[name] = path.stem
        log(f"{name}: MediaPipe {'from cache' if hit else 'ran'} ({path}): "
            f"{int(dets[name]['found'].sum())}/{len(dets[name]['found'])} frames with a person")
    fps = {float(d["fps"]) for d in dets.values()}
    if len(fps) != 1:
        raise ValueError(f"{source}: views run at different rates {sorted(fps)}")
    fps = fps.pop()
    ref, path, hit = cached_reference(dets, keys, cameras, cache_dir, reference)
    log(f"reference {'from cache' if hit else 'triangulated'} ({path})")
    names = list(cameras)
    noise = {"seed": DEFAULTS["seed"] if seed is None else int(seed),
             "fixed_noise": DEFAULTS["fixed_noise"] if fixed_noise is None else bool(fixed_noise)}
    mirror = set(mirror)
    if mirror - set(models):
        raise ValueError(f"mirror: rows {sorted(mirror - set(models))} are not among the models")
    lifters = {row: load_lifter(p, **noise, intra_op_threads=1, mirror=row in mirror or
                                mirror_enabled(DEFAULTS["mirror"], "cpu", p))
               for row, p in models.items()}
    parts = {row: [] for row in [*models, MEDIAPIPE_ROW, MEDIAPIPE_RAY_ROW]}
    calib = {row: {"spread": [], "error": [], "observed": []} for row in models}
    loo_parts = {row: [] for row in parts}
    per_view = {}
    for view in views:
        i, cam, det = names.index(view), cameras[view], dets[view]
        t_len = ref["points"].shape[0]
        det = {k: det[k][:t_len] for k in ("keypoints_px", "conf", "world_m", "found")}
        ref_cam, ref_ok = reference_in_camera(ref["points"], cam)
        loo_cam, loo_ok = reference_in_camera(ref["points_loo"][i], cam)
        preds, ok = {}, ref["consistent"][:, i] & ref_ok & det["found"]
        lifted_views = {}
        for row, lifter in lifters.items():
            lifted_views[row] = lift_view(lifter, det["keypoints_px"], det["conf"],
                                          det["found"], fps, cam)
            preds[row] = lifted_views[row].pose_m
            ok &= lifted_views[row].lifted
        for row, lv in lifted_views.items():
            calib[row]["spread"].append(lv.spread_m[ok])
            calib[row]["error"].append(np.linalg.norm(lv.pose_m[ok] - ref_cam[ok], axis=-1))
            calib[row]["observed"].append(lv.observed[ok])
        preds[MEDIAPIPE_ROW] = mediapipe_world_in_camera(det, cam, "camera")
        preds[MEDIAPIPE_RAY_ROW] = mediapipe_world_in_camera(det, cam, "ray")
        loo_keep = ok & loo_ok
        root_cam = cam.world_to_camera(ref["points"][:, HIPS].mean(axis=1))
        per_view[view] = {"frames": int(ok.sum()), "frames_in_video": int(t_len),
                          "person_found": int(det["found"].sum()),
                          "view_agrees": int(ref["consistent"][:, i].sum()),
                          "median_reprojection_error_px": _median_finite(ref["error_px"][i][ok]),
                          "median_root_depth_m": _median_finite(root_cam[ok, 2]),
                          "median_root_off_axis_deg": _median_finite(np.degrees(np.arccos(
                              root_cam[ok, 2] / np.linalg.norm(root_cam[ok], axis=-1)))),
                          "leave_one_out_frames": int(loo_keep.sum()),
                          "leave_one_out_reprojection_error_px": _median_finite(
                              ref["error_loo_px"][i][loo_keep])}
        for row, pred in preds.items():
            parts[row].append(stream_metrics(pred, ref_cam, ok))
            loo_parts[row].append(stream_metrics(pred, loo_cam, loo_keep))
        per_view[view]["rows"] = {row: {k: v for k, v in pool_metrics([parts[row][-1]]).items()
                                        if k in ("mpjpe_mm", "p_mpjpe_mm", "jitter_mm")}
                                  for row in parts}
        for row, c in calib.items():  # the view's own calibration (no reliability curve)
            cal = spread_calibration(c["spread"][-1], c["error"][-1], c["observed"][-1])
            per_view[view]["rows"][row]["spread_calibration"] = {
                k: v for k, v in cal.items() if k != "reliability"}
        log(f"{view}: {per_view[view]}")
    sync = sync_check(dets, cameras, ref, reference.min_conf)
    log(f"synchronisation check (best frame offset per pair): "
        f"{ {k: v['best_offset'] for k, v in sync.items()} }")
    rows = {}
    for row in parts:
        rows[row] = pool_metrics(parts[row])
        loo = pool_metrics(loo_parts[row])
        rows[row]["leave_one_out"] = {k: loo[k] for k in ("frames", "mpjpe_mm", "p_mpjpe_mm")}
        if row in models:
            rows[row]["model"] = str(models[row])
            rows[row]["model_sha256"] = file_sha256(models[row])
            rows[row]["backend"] = lifters[row].backend_name
            rows[row]["intrinsics_given"] = takes_intrinsics(lifters[row])
            rows[row]["spread_calibration"] = cal = spread_calibration(
                *(np.concatenate(calib[row][k]) for k in ("spread", "error", "observed")))
            if cal["applicable"]:  # how much a short clip can say: blocks of 10 scored frames
                joints = list(CALIBRATION_JOINTS)
                cal["interval_90"] = block_bootstrap(
                    [(s[:, joints], e[:, joints], o[:, joints]) for s, e, o in
                     zip(calib[row]["spread"], calib[row]["error"], calib[row]["observed"])],
                    block=BOOTSTRAP_BLOCK_FRAMES)
    base = rows[MEDIAPIPE_ROW]
    for row, r in rows.items():
        r["ratio_to_mediapipe"] = {k: _ratio(r[k], base[k]) for k in GOALS}
        if row in models:
            r["goals"] = {k: {"ratio": r["ratio_to_mediapipe"][k], "goal": g,
                              "target": None if base[k] is None else g * base[k],
                              "met": r["ratio_to_mediapipe"][k] is not None
                              and r["ratio_to_mediapipe"][k] <= g} for k, g in GOALS.items()}
    return {"source": source, "video_fps": fps, "views": views, "per_view": per_view,
            "sync_check": sync,
            "settings": {"detector": asdict(detector), "reference": asdict(reference),
                         "max_frames": max_frames, "node_defaults": {
                             k: DEFAULTS[k] for k in ("confidence_threshold", "min_visible_joints",
                                                      "max_gap_s", "fixed_noise", "seed")},
                         "noise": noise, "mirror": sorted(r for r in models if lifters[r].mirror)},
            "rows": rows}


SYNC_OFFSETS = tuple(range(-12, 13))  # frames (0.2 s at 60 fps)


def sync_check(detections, cameras: dict[str, Camera], ref: dict[str, np.ndarray],
               min_conf: float) -> dict:
    """`triangulation.pair_offset_errors` for each pair of views that agree on the person in at
    least half the frames, over the frames where both agree: {"camA-camB": {"offsets",
    "median_error_px", "best_offset"}}. Offset 0 at or near the minimum: the views are in sync."""
    from diffhpe_models.triangulation import pair_offset_errors

    names = list(cameras)
    uv, conf = stack_views(detections, names)
    agree = ref["consistent"]
    steady = [i for i in range(len(names)) if agree[:, i].mean() >= 0.5]
    out = {}
    for k, a in enumerate(steady):
        for b in steady[k + 1:]:
            err = pair_offset_errors(uv, conf, [cameras[n] for n in names], (a, b), SYNC_OFFSETS,
                                     agree[:, a] & agree[:, b], min_conf)
            best = int(SYNC_OFFSETS[int(np.nanargmin(err))]) if np.isfinite(err).any() else None
            out[f"{names[a]}-{names[b]}"] = {"offsets": list(SYNC_OFFSETS),
                                             "median_error_px": [round(float(e), 2) if
                                                                 np.isfinite(e) else None
                                                                 for e in err],
                                             "best_offset": best}
    return out


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else float(a / b)


def _median_finite(x: np.ndarray):
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None

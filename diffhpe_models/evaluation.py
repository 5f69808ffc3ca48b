"""Evaluation of trained lifters: accuracy, temporal coherence, occlusion robustness, sampler cost.

The logic behind `training/evaluate.py` and `training/occlusion_matrix.py`; the report (markdown,
JSON, figures) is written by `evaluation_report.py`.

Protocol
- Windows of one split (default test), every `stride`-th window in the dataset's order; the 2D
  input is what `windows.WindowDataset(train=False)` makes (fixed virtual cameras, the named
  occlusion pattern drawn from `seed`), so every model sees exactly the same windows.
- MPJPE and P-MPJPE are measured on the *target frame* of each window (the middle frame for
  centred windows, the last frame for causal ones): that is the frame a lifter outputs.
- MPJVE, acceleration error, segment-length std and the sagittal symmetry gap are measured over
  all L frames of each window's output (they need time, or are about the whole window).
- Each metric is averaged over windows (every window weighs the same).
- Diffusion noise comes from a numpy Generator seeded with `seed` and drawn in window order, so
  the numbers depend neither on the batch size nor on the device (beyond float rounding).
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from . import metrics, uncertainty
from .checkpoint import read_checkpoint
from .config import CameraConfig, ExperimentConfig, aggregations_for
from .dataset import Dataset, load_dataset
from .lifter import build_pipeline, window_calibration
from .mirror import lift_mirrored
from .occlusion import PATTERNS
from .sampler import SamplerSettings
from .streams import lift_stream, split_streams
from .windows import WindowDataset, camera_sampler, target_frame

MODES = ("centred", "causal")
# Metric key -> (where it is measured, description) - the report's legend.
METRICS = {
    "mpjpe_mm": ("target frame", "MPJPE, protocol 1 (root-relative)"),
    "p_mpjpe_mm": ("target frame", "P-MPJPE, protocol 2 (per-frame Procrustes)"),
    "mpjve_mm": ("window", "MPJVE: velocity error, mm per frame"),
    "accel_error_mm": ("window", "acceleration error, mm per frame^2"),
    "segment_std_mm": ("window", "segment-length std over the window's frames"),
    "sagittal_symmetry_gap_mm": ("window", "mean |left - right| bone length"),
}
# Metrics of the prediction alone (also reported for the ground truth, as a floor).
POSE_ONLY_METRICS = ("segment_std_mm", "sagittal_symmetry_gap_mm")
SAMPLER_STEPS = (1, 2, 5, 10, 50)
SAMPLER_HYPOTHESES = (1, 5, 10)
MATRIX_MODELS = ("mixste", "diffhpe_wrapper")


# --- metrics over windows -----------------------------------------------------------------


def window_metrics(pred_m: np.ndarray, gt_m: np.ndarray, mode: str) -> dict[str, float | None]:
    """All report metrics for a batch of windows, averaged over the windows.

    pred_m, gt_m: (N, L, 17, 3) root-relative camera-frame metres. MPJPE/P-MPJPE on the target
    frame (`target_frame(mode, L)`), the others over the L frames. A metric that needs more frames
    than L (MPJVE: 2, acceleration: 3, segment std: 2) is None. Values in mm.
    """
    pred_m = np.asarray(pred_m)
    gt_m = np.asarray(gt_m)
    if pred_m.ndim != 4 or pred_m.shape != gt_m.shape:
        raise ValueError(f"window_metrics: expected pred and gt of one shape (N, L, 17, 3), "
                         f"got {pred_m.shape} and {gt_m.shape}")
    window = pred_m.shape[1]
    t = target_frame(mode, window)
    return {
        "mpjpe_mm": metrics.mpjpe(pred_m[:, t], gt_m[:, t]),
        "p_mpjpe_mm": metrics.p_mpjpe(pred_m[:, t], gt_m[:, t]),
        "mpjve_mm": metrics.mpjve(pred_m, gt_m) if window >= 2 else None,
        "accel_error_mm": metrics.accel_error(pred_m, gt_m) if window >= 3 else None,
        "segment_std_mm": metrics.segment_std(pred_m) if window >= 2 else None,
        "sagittal_symmetry_gap_mm": metrics.sagittal_symmetry_gap(pred_m),
    }


def pose_metrics(pose_m: np.ndarray) -> dict[str, float | None]:
    """The prediction-only metrics (segment std, sagittal gap) of (N, L, 17, 3) poses, mm."""
    return {
        "segment_std_mm": metrics.segment_std(pose_m) if pose_m.shape[1] >= 2 else None,
        "sagittal_symmetry_gap_mm": metrics.sagittal_symmetry_gap(pose_m),
    }


class MeanOverWindows:
    """Accumulates per-batch metric means into a mean over all windows (each window weighs 1)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, batch_means: dict[str, float | None], n: int) -> None:
        for key, value in batch_means.items():
            if value is None:
                self.sums.setdefault(key, None)
            else:
                self.sums[key] = (self.sums.get(key) or 0.0) + value * n
        self.count += n

    def result(self) -> dict[str, float | None]:
        if self.count == 0:
            raise ValueError("no windows were evaluated (empty split, or stride too large)")
        return {k: (None if v is None else v / self.count) for k, v in self.sums.items()}


# --- models --------------------------------------------------------------------------------


@dataclass
class EvaluatedModel:
    """A lifting pipeline with the sampler settings it runs with."""

    name: str
    checkpoint: str
    pipeline: torch.nn.Module     # LiftingPipeline (kp_px, mask, wh, noise) -> (pose, spread)
    variant: str                  # mixste | diffhpe_2d | diffhpe_wrapper
    trained_mode: str             # the window mode of its training (data.window_mode)
    trained_occlusion: str
    window: int
    steps: int | None = None      # None for the deterministic MixSTE
    hypotheses: int = 1
    aggregation: str | None = None
    parameters: int = 0
    config: ExperimentConfig | None = None
    mirror: bool = False          # lifted with its mirror image too, the mean published (mirror.py)

    def describe(self) -> dict:
        return {"checkpoint": self.checkpoint, "variant": self.variant,
                "trained_mode": self.trained_mode, "trained_occlusion": self.trained_occlusion,
                "window": self.window, "steps": self.steps, "hypotheses": self.hypotheses,
                "aggregation": self.aggregation, "parameters": self.parameters,
                "mirror": self.mirror}


def checkpoint_config(path: str | Path):
    """The `ExperimentConfig` stored in a checkpoint (CheckpointError naming the file if bad)."""
    return read_checkpoint(path)["config"]


def load_model(name: str, path: str | Path, device: str, steps: int | None = None,
               hypotheses: int | None = None, aggregation: str | None = None,
               settings: SamplerSettings | None = None, mirror: bool = False) -> EvaluatedModel:
    """Build the run-time pipeline of a checkpoint, in eval mode on `device`.

    Sampler settings: `settings` (a SamplerSettings), or steps / hypotheses / aggregation
    overriding the checkpoint's `diffusion` settings (its real-time default); giving `steps`
    selects the DDIM sampler. A MixSTE checkpoint is deterministic: the settings are ignored and
    it reports H = 1, steps None. `mirror`: every batch is lifted with its mirror image too and
    the mean published, as the node's `mirror` parameter does (mirror.lift_mirrored).
    """
    config = checkpoint_config(path)
    if config.model.variant == "mixste":
        pipeline = build_pipeline(path)
    elif settings is not None:
        pipeline = build_pipeline(path, settings)
    else:
        pipeline = build_pipeline(path, steps=steps, hypotheses=hypotheses,
                                  aggregation=aggregation,
                                  sampler="ddim" if steps is not None else None)
    pipeline = pipeline.to(device).eval()
    run = pipeline.settings  # what the sampler runs (None: deterministic)
    return EvaluatedModel(
        name=name, checkpoint=str(path), pipeline=pipeline, variant=config.model.variant,
        trained_mode=config.data.window_mode, trained_occlusion=config.data.occlusion,
        window=config.data.window, steps=run.steps if run else None,
        hypotheses=pipeline.hypotheses, aggregation=run.aggregation if run else None,
        parameters=sum(p.numel() for p in pipeline.parameters()), config=config, mirror=mirror)


def _to_tensor(x, device: str) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32).to(device)


def lift(model: EvaluatedModel, batch: dict[str, np.ndarray], noise: np.ndarray,
         device: str) -> tuple[np.ndarray, np.ndarray]:
    """Run one batch of windows (keypoints_px (P, L, 17, 2) px, mask (P, L, 17), image_wh
    (P, 2), camera (P, 4) intrinsics), noise (P, H, L, 17, 3) -> (pose3d_m (P, L, 17, 3),
    spread_m (P, L, 17)) as numpy. The model gets the calibration its input normalisation
    takes (lifter.window_calibration)."""
    calibration = window_calibration(batch, model.pipeline.input_normalisation)

    def run(keypoints_px, mask, calibration, noise):
        with torch.inference_mode():
            pose, spread = model.pipeline(*(_to_tensor(x, device) for x in
                                            (keypoints_px, mask, calibration, noise)))
        return pose.float().cpu().numpy(), spread.float().cpu().numpy()

    if model.mirror:
        return lift_mirrored(run, batch["keypoints_px"], batch["mask"], np.asarray(calibration),
                             noise, model.pipeline.input_normalisation,
                             has_spread=model.pipeline.is_diffusion)
    return run(batch["keypoints_px"], batch["mask"], calibration, noise)


def draw_noise(rng: np.random.Generator, batch: int, model: EvaluatedModel) -> np.ndarray:
    """(batch, H, L, 17, 3) float32 standard normal, drawn in window order from `rng`."""
    return rng.standard_normal((batch, model.hypotheses, model.window, 17, 3), dtype=np.float32)


# --- windows -------------------------------------------------------------------------------


def split_sequences(dataset_path: str | Path, split: str) -> Dataset:
    """The `Dataset` of one split of a dataset file (clear error when the split is empty)."""
    subset = load_dataset(dataset_path).subset(split)
    if len(subset.sequences) == 0:
        raise ValueError(f"{dataset_path}: split {split!r} holds no sequences")
    return subset


@dataclass(frozen=True)
class WindowProtocol:
    """How test windows are made - the same for every model of a report."""

    window: int                   # L frames
    fps: float                    # the sequences are resampled to the models' frame rate
    noise_sigma_frac: float       # detector-like 2D noise (occlusion.detector_noise)
    outlier_prob: float
    camera: CameraConfig = field(default_factory=CameraConfig)  # the first model's data.camera

    @classmethod
    def of(cls, models: Iterable[EvaluatedModel]) -> "WindowProtocol":
        """The protocol of the checkpoints' data configs: window and fps must agree (a model
        only runs on its own window length and frame rate); the 2D noise and the virtual cameras
        (data.camera: the cameras the models are meant for) are the first one's."""
        models = list(models)
        for field_name in ("window", "fps"):
            values = {m.name: getattr(m.config.data, field_name) for m in models}
            if len(set(values.values())) != 1:
                raise ValueError(f"the checkpoints differ in data.{field_name} {values}; "
                                 "evaluate them in separate runs")
        d = models[0].config.data
        return cls(window=d.window, fps=d.fps, noise_sigma_frac=d.noise_sigma_frac,
                   outlier_prob=d.outlier_prob, camera=d.camera)


def make_windows(subset: Dataset, protocol: WindowProtocol, mode: str, occlusion: str,
                 seed: int) -> WindowDataset:
    """The evaluation `WindowDataset` of a split: one window per target frame, no speed change or
    mirror; camera, 2D noise and occlusion of window i depend only on (seed, i)."""
    if occlusion not in PATTERNS:
        raise ValueError(f"unknown occlusion pattern {occlusion!r}; expected one of {PATTERNS}")
    return WindowDataset(sequences=subset.sequences, fps=subset.fps, window=protocol.window,
                         mode=mode, target_fps=protocol.fps, train=False, occlusion=occlusion,
                         noise_sigma_frac=protocol.noise_sigma_frac,
                         outlier_prob=protocol.outlier_prob, stride=1, seed=seed, flip_prob=0.0,
                         camera_sampler=camera_sampler(protocol.camera),
                         mask_outside_image=protocol.camera.mask_outside_image)


def iterate_batches(windows, indices: Sequence[int], batch_size: int, workers: int = 0,
                    desc: str = "") -> Iterable[dict[str, np.ndarray]]:
    """Batches (dicts of stacked numpy arrays) of the windows at `indices`, in order, with tqdm."""
    subset = torch.utils.data.Subset(windows, list(indices))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers, collate_fn=_stack)
    yield from tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _stack(items: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([np.asarray(it[k]) for it in items]) for k in items[0]}


def evaluate_windows(models: dict[str, EvaluatedModel], windows, indices: Sequence[int], mode: str,
                     device: str, batch_size: int = 256, seed: int = 0, workers: int = 0,
                     desc: str = "") -> dict[str, dict]:
    """Run every model over the same windows; returns name -> metric means (mm).

    The key "ground_truth" holds the prediction-only metrics of the ground truth itself (segment
    std, sagittal gap): the floor a model can reach on this data. Each model draws its noise from
    its own Generator seeded with `seed`, so adding a model does not change the others' numbers.
    """
    acc = {name: MeanOverWindows() for name in models}
    acc_gt = MeanOverWindows()
    rngs = {name: np.random.default_rng(seed) for name in models}
    for batch in iterate_batches(windows, indices, batch_size, workers, desc):
        gt = batch["pose3d_m"]
        n = gt.shape[0]
        acc_gt.add(pose_metrics(gt), n)
        for name, model in models.items():
            noise = draw_noise(rngs[name], n, model)
            pred, _ = lift(model, batch, noise, device)
            acc[name].add(window_metrics(pred, gt, mode), n)
    out = {name: a.result() for name, a in acc.items()}
    out["ground_truth"] = acc_gt.result()
    return out


def strided(n: int, stride: int) -> range:
    """Every `stride`-th window index of n."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return range(0, n, stride)


# --- timing --------------------------------------------------------------------------------


def time_per_window_ms(model: EvaluatedModel, sample: dict[str, np.ndarray], device: str,
                       threads: int | None = None, warmup: int = 3, min_runs: int = 10,
                       min_seconds: float = 1.0, max_runs: int = 200) -> dict[str, float]:
    """Wall time of one forward pass for one person and one window (batch of 1), in ms.

    sample: one window (keypoints_px (L, 17, 2), mask (L, 17), image_wh (2,), camera (4,)).
    Runs `warmup`
    passes, then at least `min_runs` and `min_seconds`; returns median and p90 and the count.
    On CUDA the device is synchronised around each pass. `threads` sets torch's CPU threads for the
    measurement (restored after).
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        kp = _to_tensor(sample["keypoints_px"][None], device)
        mask = _to_tensor(sample["mask"][None], device)
        calibration = window_calibration(sample, model.pipeline.input_normalisation)
        wh = _to_tensor(np.asarray(calibration)[None], device)
        noise = _to_tensor(draw_noise(np.random.default_rng(0), 1, model), device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        times = []
        with torch.inference_mode():
            for i in range(warmup + max_runs):
                sync()
                t0 = time.perf_counter()
                model.pipeline(kp, mask, wh, noise)
                sync()
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
                    if len(times) >= min_runs and sum(times) >= min_seconds:
                        break
    finally:
        torch.set_num_threads(previous)
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "runs": int(ms.size)}


def machine_description(device: str, threads: int | None) -> str:
    """A line naming the processor (CPU model from /proc/cpuinfo, or the CUDA device)."""
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    n = threads or torch.get_num_threads()
    return f"{name}, torch {torch.__version__}, {n} thread{'' if n == 1 else 's'}"


# --- the three studies ---------------------------------------------------------------------


def compare_models(models: dict[str, EvaluatedModel], subset, device: str, stride: int = 1,
                   batch_size: int = 256, seed: int = 0, workers: int = 0,
                   modes: Sequence[str] = MODES) -> dict:
    """Clean-input comparison per window mode: mode -> {windows, metrics, evaluated_mode}.

    A model is only ever fed windows of the mode it was trained with (a causal model's temporal
    attention and position embeddings expect the target at the end). In the table of the other
    mode it appears with the numbers of its own mode, and `evaluated_mode[name]` says so.
    metrics: name -> metric means (mm), plus "ground_truth" (pose-only metrics of that mode).
    """
    protocol = WindowProtocol.of(models.values())
    evaluated = {}
    for mode in modes:
        group = {n: m for n, m in models.items() if m.trained_mode == mode}
        windows = make_windows(subset, protocol, mode, "none", seed)
        indices = strided(len(windows), stride)
        evaluated[mode] = (len(indices), evaluate_windows(group, windows, indices, mode, device,
                                                          batch_size, seed, workers,
                                                          desc=f"compare {mode}"))
    out = {}
    for mode in modes:
        count, res = evaluated[mode]
        metrics_by_model, own_mode = {}, {}
        for name, model in models.items():
            own_mode[name] = model.trained_mode if model.trained_mode in evaluated else None
            if own_mode[name] is None:
                raise ValueError(f"{name}: trained with {model.trained_mode} windows, which this "
                                 f"run does not evaluate (modes {list(modes)})")
            metrics_by_model[name] = evaluated[own_mode[name]][1][name]
        out[mode] = {"windows": count, "evaluated_mode": own_mode,
                     "metrics": {**metrics_by_model, "ground_truth": res["ground_truth"]}}
    return out


# --- published streams: temporal coherence, per content, calibration of the spread -----------


def content_of(subset: Dataset, key: str) -> str:
    """A sequence's kind of motion: the Bandai Namco content label, else the source's subject."""
    return subset.info.get(key, {}).get("content") or key.split("/", 1)[0]


def make_streams(subset: Dataset, protocol: WindowProtocol, seed: int = 0, max_frames: int = 300,
                 stride: int = 1) -> list:
    """Every `stride`-th sequence of the split as a published stream (streams.split_streams: one
    camera, lasting limb occlusions, detector-like noise), at most `max_frames` frames each."""
    keys = sorted(subset.sequences)[::stride]
    streams = split_streams({k: subset.sequences[k] for k in keys}, {k: subset.fps[k] for k in keys},
                            protocol.fps, camera_sampler(protocol.camera), seed, max_frames=max_frames,
                            min_frames=min(max_frames, protocol.window + 3),
                            noise_sigma_frac=protocol.noise_sigma_frac, outlier_prob=protocol.outlier_prob)
    if not streams:
        raise ValueError(f"no sequence of the split has the {protocol.window}+ frames a stream needs")
    return streams


def lift_streams(model: EvaluatedModel, streams: list, device: str, seed: int = 0,
                 batch_size: int = 256, desc: str = "streams"):
    """Yield (pose (T, 17, 3), spread (T, 17)) of each stream as the node publishes them: stream
    k lifted with the noise of seed + k and the node's noise and spread smoothing defaults
    (streams.lift_stream)."""
    for k, st in enumerate(tqdm(streams, desc=desc, leave=False)):
        yield lift_stream(lambda b, n: lift(model, b, n, device), st, model.window,
                          model.hypotheses, seed=seed + k, batch_size=batch_size,
                          fixed_noise=uncertainty.noise_is_fixed(uncertainty.PUBLISHED_FIXED_NOISE,
                                                                 model.aggregation))


def stream_study(models: dict[str, EvaluatedModel], subset: Dataset, protocol: WindowProtocol,
                 device: str, seed: int = 0, max_frames: int = 300, stride: int = 1,
                 batch_size: int = 256) -> dict:
    """Every `stride`-th sequence of the split as a stream (streams.split_streams: one camera,
    lasting limb occlusions), lifted frame by frame as the node publishes. Per model: MPJPE and
    P-MPJPE of the published poses, jitter / acceleration error / MPJVE of the stream, the same
    per content, and the calibration of the spread (uncertainty.calibration_report, on the
    published non-root joints: hidden = masked in the published frame)."""
    streams = make_streams(subset, protocol, seed, max_frames, stride)
    out = {"streams": len(streams), "frames": int(sum(len(st.mask) for st in streams)),
           "max_frames": max_frames, "models": {}}
    for name, model in models.items():
        per_stream, by_content = [], {}
        spreads, errors, visible = [], [], []
        for st, (pose, spread) in zip(streams, lift_streams(model, streams, device, seed, batch_size,
                                                            desc=f"streams {name}")):
            m = {"frames": len(pose), "mpjpe_mm": metrics.mpjpe(pose, st.pose3d_m),
                 "p_mpjpe_mm": metrics.p_mpjpe(pose, st.pose3d_m),
                 **uncertainty.stream_metrics(pose, st.pose3d_m)}
            per_stream.append(m)
            by_content.setdefault(content_of(subset, st.name), []).append(m)
            spreads.append(spread)
            errors.append(np.linalg.norm(pose - st.pose3d_m, axis=-1))
            visible.append(st.mask > 0)

        def mean(rows):
            n = sum(r["frames"] for r in rows)
            return {"frames": n, **{key: float(sum(r[key] * r["frames"] for r in rows) / n)
                                    for key in rows[0] if key != "frames"}}

        result = {"overall": mean(per_stream),
                  "by_content": {c: mean(rows) for c, rows in sorted(by_content.items())}}
        if model.hypotheses > 1:
            joints = list(uncertainty.CALIBRATION_JOINTS)
            result["calibration"] = uncertainty.calibration_report(
                np.concatenate(spreads)[:, joints], np.concatenate(errors)[:, joints],
                np.concatenate(visible)[:, joints])
        out["models"][name] = result
    return out


def matrix_checkpoint(runs_dir: str | Path, pattern: str, kind: str) -> Path:
    """Where training/occlusion_matrix.py puts the model `kind` trained on `pattern`."""
    return Path(runs_dir) / pattern / kind / "best.pt"


def degradation(matrix_mm: np.ndarray) -> dict[str, float | None]:
    """Mismatch degradation of a train x test MPJPE matrix (mm).

    diagonal_mm: mean of the matched cells; off_diagonal_mm: mean of the mismatched cells;
    degradation_mm = off_diagonal - diagonal (the paper's robustness claim: smaller for the
    diffusion model); relative = degradation / diagonal. NaN cells (not evaluated) are left out.
    """
    m = np.asarray(matrix_mm, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"degradation: expected a square matrix, got shape {m.shape}")
    diag_mask = np.eye(len(m), dtype=bool)
    diag = m[diag_mask & np.isfinite(m)]
    off = m[~diag_mask & np.isfinite(m)]
    if diag.size == 0 or off.size == 0:
        return {"diagonal_mm": None, "off_diagonal_mm": None, "degradation_mm": None,
                "relative": None}
    d, o = float(diag.mean()), float(off.mean())
    return {"diagonal_mm": d, "off_diagonal_mm": o, "degradation_mm": o - d,
            "relative": (o - d) / d if d > 0 else None}


def occlusion_matrix(runs_dir: str | Path, subset, device: str,
                     patterns: Sequence[str] = PATTERNS, kinds: Sequence[str] = MATRIX_MODELS,
                     stride: int = 1, batch_size: int = 256, seed: int = 0,
                     workers: int = 0, load: Callable[..., EvaluatedModel] = load_model) -> dict:
    """Train-pattern x test-pattern MPJPE (target frame, mm) for each model kind.

    Checkpoints are read from `matrix_checkpoint(runs_dir, pattern, kind)`; a missing one leaves
    its row NaN (reported as not trained). Each model is evaluated in the window mode it was
    trained in. Returns {patterns, windows, missing, models: kind -> {matrix_mm, ...degradation}}.
    """
    for p in patterns:
        if p not in PATTERNS:
            raise ValueError(f"unknown occlusion pattern {p!r}; expected one of {PATTERNS}")
    models: dict[str, EvaluatedModel] = {}
    missing = []
    for kind in kinds:
        for p in patterns:
            path = matrix_checkpoint(runs_dir, p, kind)
            if path.is_file():
                models[f"{kind}@{p}"] = load(f"{kind}@{p}", path, device)
            else:
                missing.append(str(path))
    if not models:
        raise FileNotFoundError(f"{runs_dir}: no occlusion-matrix checkpoints "
                                f"(<pattern>/<model>/best.pt) found")
    protocol = WindowProtocol.of(models.values())
    n = len(patterns)
    matrices = {kind: np.full((n, n), np.nan) for kind in kinds}
    window_counts = {}
    for j, test_pattern in enumerate(patterns):
        for mode in MODES:
            group = {k: m for k, m in models.items() if m.trained_mode == mode}
            if not group:
                continue
            windows = make_windows(subset, protocol, mode, test_pattern, seed)
            indices = strided(len(windows), stride)
            window_counts[mode] = len(indices)
            res = evaluate_windows(group, windows, indices, mode, device, batch_size, seed,
                                   workers, desc=f"matrix test={test_pattern} {mode}")
            for key in group:
                kind, train_pattern = key.split("@")
                matrices[kind][patterns.index(train_pattern), j] = res[key]["mpjpe_mm"]
    out_models = {}
    for kind in kinds:
        if np.isfinite(matrices[kind]).any():
            trained = {m.trained_mode for k, m in models.items() if k.startswith(kind + "@")}
            out_models[kind] = {"matrix_mm": _nan_to_none(matrices[kind]),
                                "window_mode": sorted(trained), **degradation(matrices[kind])}
    return {"runs_dir": str(runs_dir), "patterns": list(patterns), "windows": window_counts,
            "protocol": asdict(protocol),
            "missing": missing, "models": out_models}


def _nan_to_none(a: np.ndarray) -> list:
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in np.asarray(a)]


def sampler_tradeoff(name: str, path: str | Path, subset, device: str, stride: int = 1,
                     batch_size: int = 256, seed: int = 0, workers: int = 0,
                     steps_grid: Sequence[int] = SAMPLER_STEPS,
                     hypotheses_grid: Sequence[int] = SAMPLER_HYPOTHESES,
                     aggregations: Sequence[str] | None = None,
                     timing_device: str = "cpu", timing_threads: int | None = 2,
                     timing_seconds: float = 1.0,
                     load: Callable[..., EvaluatedModel] = load_model) -> dict:
    """Steps x hypotheses grid of a diffusion checkpoint, plus the aggregations at its default.

    aggregations: None = every one the model can run (config.aggregations_for).
    Accuracy on clean windows in the checkpoint's training window mode; latency = one window,
    one person, batch 1, torch, on `timing_device` with `timing_threads` CPU threads, at least
    `timing_seconds` and 10 runs per setting. Steps above
    the checkpoint's diffusion.timesteps are skipped (listed in `skipped_steps`).
    """
    config = checkpoint_config(path)
    if config.model.variant == "mixste":
        raise ValueError(f"{path}: the sampler trade-off needs a diffusion checkpoint, "
                         "got a MixSTE one")
    default = load(name, path, device)
    if aggregations is None:
        aggregations = aggregations_for(config.model)
    steps_ok = [s for s in steps_grid if 1 <= s <= config.diffusion.timesteps]
    cells = [(s, h) for s in steps_ok for h in hypotheses_grid]
    if (default.steps, default.hypotheses) not in cells:  # the default is always measured
        cells.append((default.steps, default.hypotheses))
    grid = {f"steps={s},H={h}": load(name, path, device, steps=s, hypotheses=h,
                                     aggregation=default.aggregation) for s, h in sorted(cells)}
    aggs = {f"aggregation={a}": load(name, path, device, steps=default.steps,
                                     hypotheses=default.hypotheses, aggregation=a)
            for a in aggregations}
    mode = default.trained_mode
    windows = make_windows(subset, WindowProtocol.of([default]), mode, "none", seed)
    indices = strided(len(windows), stride)
    res = evaluate_windows({**grid, **aggs}, windows, indices, mode, device, batch_size, seed,
                           workers, desc="sampler grid")
    sample = windows[indices[0]]
    timed = {}
    for key, model in tqdm({**grid, **aggs}.items(), desc="timing", leave=False):
        model.pipeline.to(timing_device)
        timed[key] = time_per_window_ms(model, sample, timing_device, timing_threads,
                                        min_seconds=timing_seconds)
        model.pipeline.to(device)
    rows = [{"steps": m.steps, "hypotheses": m.hypotheses, **res[k],
             "ms_per_window": timed[k]["median_ms"], "p90_ms": timed[k]["p90_ms"]}
            for k, m in grid.items()]
    agg_rows = [{"aggregation": m.aggregation, **res[k], "ms_per_window": timed[k]["median_ms"],
                 "p90_ms": timed[k]["p90_ms"]} for k, m in aggs.items()]
    return {"model": name, "checkpoint": str(path), "window_mode": mode,
            "windows": len(indices), "default": {"steps": default.steps,
                                                "hypotheses": default.hypotheses,
                                                "aggregation": default.aggregation},
            "skipped_steps": [s for s in steps_grid if s not in steps_ok],
            "timing": {"device": timing_device,
                       "machine": machine_description(timing_device, timing_threads),
                       "threads": timing_threads, "batch": 1, "persons": 1, "backend": "torch"},
            "grid": rows, "aggregations": agg_rows}


def example_windows(models: dict[str, EvaluatedModel], hypotheses_model: str | None, subset,
                    device: str, count: int = 3, seed: int = 0, stride: int = 1) -> dict:
    """A few clean test windows for the figure: ground truth and every model's target frame.

    The windows sit at evenly spaced positions of the evaluated (strided) windows - a fixed rule,
    not a selection by error. Mode: the training mode of `hypotheses_model` (else the first
    model's). For `hypotheses_model` (a diffusion model) the H individual samples are returned as
    well: hypothesis h is the same pipeline run with H = 1 on the h-th noise slice (the
    hypotheses are independent samples folded into the batch). Poses in metres.
    """
    lead = models[hypotheses_model] if hypotheses_model else next(iter(models.values()))
    mode = lead.trained_mode
    protocol = WindowProtocol.of(models.values())
    window = protocol.window
    windows = make_windows(subset, protocol, mode, "none", seed)
    indices = strided(len(windows), stride)
    picks = [indices[int(len(indices) * (2 * k + 1) / (2 * count))] for k in range(count)]
    batch = _stack([windows[i] for i in picks])
    t = target_frame(mode, window)
    out = {"mode": mode, "target_frame": t, "window_indices": picks,
           "ground_truth_m": batch["pose3d_m"][:, t], "models": {}}
    for name, model in models.items():
        noise = draw_noise(np.random.default_rng(seed), len(picks), model)
        pose, spread = lift(model, batch, noise, device)
        entry = {"pose_m": pose[:, t], "spread_m": spread[:, t],
                 "mpjpe_mm": [metrics.mpjpe(pose[k, t], batch["pose3d_m"][k, t])
                              for k in range(len(picks))]}
        if name == hypotheses_model and model.variant != "mixste":
            # The same sampler settings (sampler, steps, eta), one hypothesis per run.
            single = load_model(name, model.checkpoint, device,
                                settings=model.pipeline.settings.replace(hypotheses=1))
            samples = [lift(single, batch, noise[:, h:h + 1], device)[0][:, t]
                       for h in range(model.hypotheses)]
            entry["samples_m"] = np.stack(samples, axis=1)  # (count, H, 17, 3)
        out["models"][name] = entry
    return out


# --- claims --------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    return f"{v:.1f} mm"


def state_claims(results: dict, ours: str = "diffhpe_wrapper", baseline: str = "mixste") -> list:
    """The paper's claims checked against the numbers: [{claim, holds (bool | None), evidence}].

    holds is None when the numbers needed are not in `results` (a model or the matrix missing).
    A claim over both window modes holds only if it holds in each.
    """
    claims = []
    compare = results.get("comparison", {})

    def lower_everywhere(metric_keys, title):
        evidence, verdicts = [], []
        for mode, res in compare.items():
            m = res["metrics"]
            if ours not in m or baseline not in m:
                continue
            own = res.get("evaluated_mode", {})
            if own.get(ours, mode) != mode and own.get(baseline, mode) != mode:
                continue  # both shown with their other-mode numbers: already counted there
            for key in metric_keys:
                a, b = m[ours].get(key), m[baseline].get(key)
                if a is None or b is None:
                    continue
                verdicts.append(a < b)
                evidence.append(f"{key.removesuffix('_mm')} {mode}: {ours} {_fmt(a)} vs "
                                f"{baseline} {_fmt(b)} ({a - b:+.1f})")
        holds = all(verdicts) if verdicts else None
        claims.append({"claim": title, "holds": holds, "evidence": "; ".join(evidence)})

    lower_everywhere(("mpjpe_mm", "p_mpjpe_mm"),
                     f"{ours} is more accurate than {baseline} (MPJPE and P-MPJPE)")
    lower_everywhere(("segment_std_mm", "sagittal_symmetry_gap_mm"),
                     f"{ours} is more coherent than {baseline} (segment std and sagittal gap)")
    matrix = (results.get("occlusion") or {}).get("models", {})
    a = (matrix.get(ours) or {}).get("degradation_mm")
    b = (matrix.get(baseline) or {}).get("degradation_mm")
    claim = f"{ours} degrades less than {baseline} when train and test occlusions differ"
    if a is None or b is None:
        claims.append({"claim": claim, "holds": None,
                       "evidence": "occlusion matrix not evaluated for both models"})
    else:
        claims.append({"claim": claim, "holds": bool(a < b),
                       "evidence": f"mean off-diagonal minus diagonal MPJPE: {ours} {_fmt(a)} vs "
                                   f"{baseline} {_fmt(b)}"})
    claims += stream_claims(results.get("streams") or {}, ours, baseline)
    return claims


# Goals of the diffusion's uncertainty and of the published stream (issue 9).
SPREAD_HIDDEN_VISIBLE_GOAL = 2.0
RANK_CORRELATION_GOAL = 0.3


def _ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def stream_claims(streams: dict, ours: str, baseline: str) -> list[dict]:
    """The diffusion's own promises, measured on published streams: an uncertainty that grows on
    hidden joints and with the error, and a stream no more jittery than the deterministic one."""
    models = streams.get("models", {})
    cal = (models.get(ours) or {}).get("calibration")
    out = []
    if cal is None:
        out.append({"claim": f"{ours}'s spread is larger on hidden joints and grows with the error",
                    "holds": None, "evidence": "stream study not run for a diffusion model"})
    else:
        ratio, rho = cal["hidden_visible_ratio"], cal["rank_correlation"]
        out.append({"claim": f"{ours}'s spread of hidden joints is >= {SPREAD_HIDDEN_VISIBLE_GOAL:g}x "
                             "that of visible ones",
                    "holds": None if ratio is None else bool(ratio >= SPREAD_HIDDEN_VISIBLE_GOAL),
                    "evidence": f"median spread hidden {_fmt(cal['spread_hidden_mm'] or math.nan)} vs "
                                f"visible {_fmt(cal['spread_visible_mm'] or math.nan)} mm: ratio "
                                f"{'n/a' if ratio is None else f'{ratio:.2f}'} (the error's "
                                f"ratio, what a calibrated spread would show: "
                                f"{_ratio(cal.get('error_hidden_visible_ratio'))})"})
        out.append({"claim": f"{ours}'s spread and error are rank-correlated within a joint "
                             f"(>= {RANK_CORRELATION_GOAL:g})",
                    "holds": None if rho is None else bool(rho >= RANK_CORRELATION_GOAL),
                    "evidence": f"Spearman {'n/a' if rho is None else f'{rho:.2f}'}; coverage of "
                                "error < k x spread for k = 1, 2, 3: " + ", ".join(
                                    f"{cal[f'coverage_k{k:g}']:.2f}" for k in uncertainty.COVERAGE_K)})
    a, b = (models.get(ours) or {}).get("overall"), (models.get(baseline) or {}).get("overall")
    claim = f"{ours}'s published stream is no more jittery than {baseline}'s (jitter, acceleration error)"
    if a is None or b is None:
        out.append({"claim": claim, "holds": None, "evidence": "stream study not run for both"})
    else:
        out.append({"claim": claim,
                    "holds": bool(a["jitter_mm"] <= b["jitter_mm"] and a["accel_error_mm"] <= b["accel_error_mm"]),
                    "evidence": f"jitter {_fmt(a['jitter_mm'])} vs {_fmt(b['jitter_mm'])}, acceleration "
                                f"error {_fmt(a['accel_error_mm'])} vs {_fmt(b['accel_error_mm'])} mm/frame^2 "
                                f"(ground-truth jitter {_fmt(a['gt_jitter_mm'])})"})
    return out


# --- the whole evaluation ------------------------------------------------------------------


@dataclass
class EvaluationSettings:
    """What `run_evaluation` evaluates and how (the CLI's arguments)."""

    checkpoints: dict[str, str]                  # report name -> checkpoint path
    mirror: tuple[str, ...] = ()                 # also lift these mirrored, as rows "NAME+mirror"
    dataset: str | None = None                   # default: the first checkpoint's data.dataset
    split: str = "test"
    device: str = "cpu"
    stride: int = 1
    batch_size: int = 256
    seed: int = 0
    workers: int = 0
    occlusion_runs: str | None = None
    patterns: tuple[str, ...] = PATTERNS
    matrix_stride: int | None = None             # default: stride
    sampler_model: str = "diffhpe_wrapper"
    sampler_steps: tuple[int, ...] = SAMPLER_STEPS
    sampler_hypotheses: tuple[int, ...] = SAMPLER_HYPOTHESES
    sampler_stride: int | None = None            # default: stride
    timing_device: str = "cpu"
    timing_threads: int | None = 2
    timing_seconds: float = 1.0                  # measured time per sampler setting, at least
    examples: int = 3
    stream_frames: int = 300                     # frames per published stream (0: no stream study)
    stream_stride: int = 1                       # every k-th sequence of the split as a stream
    modes: tuple[str, ...] = MODES
    extra: dict = field(default_factory=dict)    # recorded as is (e.g. the command line)


def run_evaluation(s: EvaluationSettings) -> dict:
    """Every study of the report; returns the JSON-ready results (numbers in mm, ms)."""
    if not s.checkpoints:
        raise ValueError("no checkpoints to evaluate")
    unknown = sorted(set(s.mirror) - set(s.checkpoints))
    if unknown:
        raise ValueError(f"mirror: {unknown} are not among the checkpoints ({sorted(s.checkpoints)})")
    torch.manual_seed(s.seed)
    models = {name: load_model(name, path, s.device) for name, path in s.checkpoints.items()}
    for name in s.mirror:
        models[f"{name}+mirror"] = load_model(f"{name}+mirror", s.checkpoints[name], s.device,
                                              mirror=True)
    dataset = s.dataset or checkpoint_config(next(iter(s.checkpoints.values()))).data.dataset
    subset = split_sequences(dataset, s.split)
    results = {
        "split": s.split, "dataset": str(dataset), "sequences": len(subset.sequences),
        "device": s.device, "stride": s.stride, "seed": s.seed, "batch_size": s.batch_size,
        "torch": torch.__version__, **s.extra,
        "protocol": asdict(WindowProtocol.of(models.values())),
        "metrics": {k: {"measured_on": v[0], "description": v[1]} for k, v in METRICS.items()},
        "models": {name: m.describe() for name, m in models.items()},
        "comparison": compare_models(models, subset, s.device, s.stride, s.batch_size, s.seed,
                                     s.workers, s.modes),
    }
    if s.occlusion_runs:
        results["occlusion"] = occlusion_matrix(
            s.occlusion_runs, subset, s.device, s.patterns, stride=s.matrix_stride or s.stride,
            batch_size=s.batch_size, seed=s.seed, workers=s.workers)
    sampler_name = s.sampler_model if s.sampler_model in models else None
    if sampler_name and models[sampler_name].variant != "mixste":
        results["sampler"] = sampler_tradeoff(
            sampler_name, s.checkpoints[sampler_name], subset, s.device,
            stride=s.sampler_stride or s.stride, batch_size=s.batch_size, seed=s.seed,
            workers=s.workers, steps_grid=s.sampler_steps, hypotheses_grid=s.sampler_hypotheses,
            timing_device=s.timing_device, timing_threads=s.timing_threads,
            timing_seconds=s.timing_seconds)
    if s.stream_frames > 0:
        results["streams"] = stream_study(models, subset, WindowProtocol.of(models.values()),
                                          s.device, s.seed, max_frames=s.stream_frames,
                                          stride=s.stream_stride, batch_size=s.batch_size)
    if s.examples > 0:
        results["examples"] = example_windows(models, sampler_name, subset, s.device,
                                              s.examples, s.seed, s.stride)
    results["claims"] = state_claims(results)
    return results

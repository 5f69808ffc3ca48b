"""Is the spread of the hypotheses an uncertainty a robot can use? Calibration metrics.

spread_m: per joint, the RMS distance of the H hypotheses from the published (aggregated) joint
(aggregation.spread). error_m: the distance of the published joint from the ground truth.
A useful spread is larger where the pose is ambiguous (hidden joints), grows with the error within
a joint (rank correlation), and bounds the error a known fraction of the time (coverage of
error < k x spread). Numpy only; metres in, mm out where the name says so.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import chi2, spearmanr

from .skeleton import NUM_JOINTS, ROOT

COVERAGE_K = (1.0, 2.0, 3.0)
# The joints calibration is measured on: not the root, whose root-relative error and spread are 0
# by construction (they would pull the visible joints' median down).
CALIBRATION_JOINTS = tuple(j for j in range(NUM_JOINTS) if j != ROOT)


def calibrated_coverage(k: float) -> float:
    """P(error < k x spread) when the spread equals the joint's true RMS 3D error and the error is
    an isotropic 3D Gaussian: |e|^2 / (spread^2 / 3) ~ chi2(3). 0.61 / 0.99 / 1.00 for k = 1, 2, 3."""
    return float(chi2.cdf(3.0 * k * k, 3))


# The reference the reports print next to measured coverages.
CALIBRATED_COVERAGE_TEXT = " / ".join(f"{calibrated_coverage(k):.2f}" for k in COVERAGE_K)


def _flat(spread_m, error_m, visible) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spread = np.asarray(spread_m, dtype=np.float64)
    error = np.asarray(error_m, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    if not (spread.shape == error.shape == vis.shape) or spread.ndim < 1 or spread.shape[-1] < 1:
        raise ValueError(f"spread, error and visible must share one shape (..., J), got "
                         f"{spread.shape}, {error.shape}, {vis.shape}")
    j = spread.shape[-1]
    return spread.reshape(-1, j), error.reshape(-1, j), vis.reshape(-1, j)


def hidden_visible_ratio(spread_m, visible) -> dict[str, float | None]:
    """Median spread of hidden and of visible joints (mm) and their ratio (goal >= 2)."""
    spread = np.asarray(spread_m, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    if spread.shape != vis.shape:
        raise ValueError(f"spread and visible must share one shape, got {spread.shape}, {vis.shape}")
    hidden_mm = float(np.median(spread[~vis])) * 1e3 if (~vis).any() else None
    visible_mm = float(np.median(spread[vis])) * 1e3 if vis.any() else None
    ratio = hidden_mm / visible_mm if hidden_mm is not None and visible_mm else None
    return {"spread_hidden_mm": hidden_mm, "spread_visible_mm": visible_mm, "hidden_visible_ratio": ratio}


def within_joint_rank_correlation(spread_m, error_m, visible=None) -> float | None:
    """Spearman correlation of spread and error computed per joint (so the joints' different
    typical errors do not inflate it), averaged over joints weighted by their sample counts.
    None when no joint has two distinct values of both."""
    vis = np.ones(np.shape(spread_m), dtype=bool) if visible is None else visible
    spread, error, _ = _flat(spread_m, error_m, vis)
    values, weights = [], []
    for j in range(spread.shape[1]):
        s, e = spread[:, j], error[:, j]
        if len(s) < 3 or np.ptp(s) == 0 or np.ptp(e) == 0:
            continue
        values.append(spearmanr(s, e).statistic)
        weights.append(len(s))
    return float(np.average(values, weights=weights)) if values else None


def coverage(spread_m, error_m, ks=COVERAGE_K) -> dict[str, float]:
    """Fraction of joints whose error is below k x spread, for each k (calibrated_coverage(k) for
    a spread that is the true RMS error: 0.61 / 0.99 / 1.00)."""
    spread = np.asarray(spread_m, dtype=np.float64).ravel()
    error = np.asarray(error_m, dtype=np.float64).ravel()
    if spread.shape != error.shape or spread.size == 0:
        raise ValueError("spread and error must be non-empty and of one shape")
    return {f"coverage_k{k:g}": float(np.mean(error < k * spread)) for k in ks}


def reliability_curve(spread_m, error_m, bins: int = 10) -> dict[str, list[float]]:
    """Mean error per quantile bin of the spread (mm): the reliability plot's points."""
    spread = np.asarray(spread_m, dtype=np.float64).ravel()
    error = np.asarray(error_m, dtype=np.float64).ravel()
    edges = np.unique(np.quantile(spread, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, spread, side="right") - 1, 0, len(edges) - 2)
    used = [b for b in range(len(edges) - 1) if (which == b).any()]
    return {"spread_mm": [float(spread[which == b].mean() * 1e3) for b in used],
            "error_mm": [float(error[which == b].mean() * 1e3) for b in used],
            "count": [int((which == b).sum()) for b in used]}


def block_bootstrap(segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]], block: int = 10,
                    resamples: int = 200, seed: int = 0,
                    quantiles: tuple[float, float] = (0.05, 0.95)) -> dict[str, list[float] | None]:
    """How far the hidden/visible ratio and the within-joint rank correlation could move with
    other frames of the same kind: a moving-block bootstrap over time. segments: per stream (one
    view of a video), (spread (T, J), error (T, J), visible (T, J)) in frame order; each is cut
    into blocks of `block` consecutive frames (frames close in time are not independent), and
    `resamples` draws of as many blocks, with replacement over all segments, give the
    `quantiles` of each number ([low, high]; None when it cannot be computed, e.g. no hidden
    joint). Deterministic given `seed`."""
    if block < 1 or resamples < 1:
        raise ValueError(f"block and resamples must be >= 1, got {block}, {resamples}")
    blocks = [tuple(np.asarray(x)[a:a + block] for x in seg)
              for seg in segments for a in range(0, len(seg[0]), block)]
    if not blocks:
        return {"hidden_visible_ratio": None, "rank_correlation": None}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"hidden_visible_ratio": [], "rank_correlation": []}
    for _ in range(resamples):
        pick = [blocks[i] for i in rng.integers(0, len(blocks), len(blocks))]
        spread, error, visible = (np.concatenate([b[k] for b in pick]) for k in range(3))
        draws["hidden_visible_ratio"].append(hidden_visible_ratio(spread, visible)["hidden_visible_ratio"])
        draws["rank_correlation"].append(within_joint_rank_correlation(spread, error))
    out = {}
    for key, values in draws.items():
        values = [v for v in values if v is not None and np.isfinite(v)]
        out[key] = ([float(np.quantile(values, q)) for q in quantiles]
                    if len(values) >= resamples // 2 else None)
    return out


def calibration_report(spread_m, error_m, visible) -> dict:
    """All of the above for (N, J) arrays of spread, error (metres) and visibility."""
    errors = hidden_visible_ratio(error_m, visible)   # what a calibrated spread's ratio would be
    return {**hidden_visible_ratio(spread_m, visible),
            "error_hidden_mm": errors["spread_hidden_mm"],
            "error_visible_mm": errors["spread_visible_mm"],
            "error_hidden_visible_ratio": errors["hidden_visible_ratio"],
            "rank_correlation": within_joint_rank_correlation(spread_m, error_m),
            **coverage(spread_m, error_m),
            "reliability": reliability_curve(spread_m, error_m)}


# --- the published spread over time -------------------------------------------------------------

# How the lifter node publishes the spread (its parameters `fixed_noise` and `spread_smoothing`
# default to these, and the evaluation's published streams, streams.lift_stream, follow them):
# fresh noise every frame and a running average of the spread (weight 0.3: about 5 frames of
# hypotheses). Chosen on the validation streams over one fixed noise per person: rank correlation
# of spread and error 0.50 vs 0.42, and no per-person bias from one noise draw.
PUBLISHED_FIXED_NOISE = False
PUBLISHED_SPREAD_SMOOTHING = 0.3


def noise_is_fixed(fixed_noise: bool, aggregation: str | None) -> bool:
    """Whether a lifter keeps one initial noise per person: when asked to, and always when its
    published pose depends on the noise (a diffusion aggregation other than 'conditioner', whose
    pose is the frozen MixSTE's), so that fresh noise never makes a pose jitter."""
    return bool(fixed_noise) or (aggregation is not None and aggregation != "conditioner")


def smooth_spread_step(previous_sq: np.ndarray | None, spread_m: np.ndarray,
                       weight: float) -> np.ndarray:
    """One frame of the published spread's causal exponential average: the new squared spread
    weight * spread^2 + (1 - weight) * previous_sq (previous_sq None: a new person, no history).
    With fresh noise every frame this pools the hypotheses of the last few frames (about
    2 / weight - 1 of them), a steadier estimate than one frame's H, without the per-person bias
    of one fixed noise draw. weight 1: no smoothing. Returns the new squared spread (m^2)."""
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"spread smoothing weight must be in (0, 1], got {weight}")
    sq = np.square(np.asarray(spread_m, dtype=np.float64))
    return sq if previous_sq is None else weight * sq + (1.0 - weight) * previous_sq


def smooth_spread(spread_m: np.ndarray, weight: float) -> np.ndarray:
    """A stream's spread (T, J) as published with smooth_spread_step, frame after frame."""
    if weight == 1.0:
        return np.asarray(spread_m)
    out, sq = np.empty(np.shape(spread_m)), None
    for t, s in enumerate(np.asarray(spread_m, dtype=np.float64)):
        sq = smooth_spread_step(sq, s, weight)
        out[t] = np.sqrt(sq)
    return out


# --- the published stream (one pose per frame, as the node publishes) --------------------------


def stream_metrics(pred_m, gt_m) -> dict[str, float]:
    """Temporal metrics of a published stream (T, J, 3), root-relative, one pose per frame:
    jitter = mean norm of the prediction's second differences, acceleration error = mean norm of
    the difference of second differences, velocity error (MPJVE) likewise, all mm per frame(^2)."""
    pred = np.asarray(pred_m, dtype=np.float64)
    gt = np.asarray(gt_m, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[0] < 3:
        raise ValueError(f"need two (T >= 3, J, 3) streams of one shape, got {pred.shape}, {gt.shape}")
    acc_p, acc_g = np.diff(pred, 2, axis=0), np.diff(gt, 2, axis=0)
    vel_p, vel_g = np.diff(pred, axis=0), np.diff(gt, axis=0)
    return {"jitter_mm": float(np.linalg.norm(acc_p, axis=-1).mean() * 1e3),
            "gt_jitter_mm": float(np.linalg.norm(acc_g, axis=-1).mean() * 1e3),
            "accel_error_mm": float(np.linalg.norm(acc_p - acc_g, axis=-1).mean() * 1e3),
            "mpjve_mm": float(np.linalg.norm(vel_p - vel_g, axis=-1).mean() * 1e3)}

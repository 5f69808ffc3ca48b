"""The evaluation report: markdown for a person, JSON for a program, PNG figures.

`write_report(results, out_dir)` renders what `evaluation.run_evaluation` returns into
`evaluation.md`, `evaluation.json` and `img/*.png` (matplotlib, Agg backend), all written
atomically. Kept apart from `evaluation.py` so that the numbers are computed without drawing.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: the report is written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

from . import uncertainty  # noqa: E402
from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402
from .evaluation import METRICS, POSE_ONLY_METRICS  # noqa: E402
from .skeleton import BONES, side_of  # noqa: E402

SIDE_COLOURS = {"left": "tab:blue", "right": "tab:red", "centre": "0.25"}
METRIC_HEADERS = {
    "mpjpe_mm": "MPJPE", "p_mpjpe_mm": "P-MPJPE", "mpjve_mm": "MPJVE", "accel_error_mm": "Accel",
    "segment_std_mm": "Seg std", "sagittal_symmetry_gap_mm": "Sag gap",
}
MODE_TARGET = {"centred": "middle frame", "causal": "last frame"}
PATTERN_LABELS = {"random_left_arm_right_leg": "random\nL arm R leg",
                  "structured_joint": "structured\njoint", "structured_frame": "structured\nframe"}


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_occlusion_heatmaps(matrices_mm: dict[str, np.ndarray], patterns: Sequence[str],
                            path: str | Path) -> Path:
    """One heatmap per model: rows = training pattern, columns = test pattern, MPJPE in mm.

    matrices_mm: model name -> (P, P) array (NaN where a cell was not evaluated). One colour scale
    for all panels so that the models compare by colour too.
    """
    names = list(matrices_mm)
    values = np.concatenate([np.ravel(m) for m in matrices_mm.values()])
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    n = len(patterns)
    panel = max(3.4, 0.72 * n + 1.3)
    fig, axes = plt.subplots(1, len(names), figsize=(panel * len(names) + 1.2, panel - 0.3),
                             squeeze=False, layout="constrained")
    labels = [PATTERN_LABELS.get(p, p) for p in patterns]
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        m = np.asarray(matrices_mm[name], dtype=float)
        im = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=vmax)
        for i in range(n):
            for j in range(n):
                if np.isfinite(m[i, j]):
                    # Dark text on the bright end of viridis, light text on the dark end.
                    bright = (m[i, j] - vmin) > 0.6 * (vmax - vmin)
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=8,
                            color="black" if bright else "white",
                            fontweight="bold" if i == j else "normal")
                else:
                    ax.text(j, i, "not\ntrained", ha="center", va="center", fontsize=6,
                            color="0.4")
        ax.set_xticks(range(n), labels, fontsize=7)
        ax.set_yticks(range(n), labels if k == 0 else [], fontsize=7)
        ax.set_xlabel("test occlusion")
        if k == 0:
            ax.set_ylabel("training occlusion")
        ax.set_title(f"{name}: MPJPE (mm)")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="MPJPE (mm); bold: matched")
    return _save(fig, path)


def plot_reliability(calibration: dict[str, dict], path: str | Path) -> Path:
    """Reliability plot of each model's spread: mean error per spread decile against the
    decile's mean spread (a spread that is the RMS error lies near the diagonal), and the
    coverage of error < k x spread against k with the calibrated reference."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    top = 0.0
    for name, c in calibration.items():
        rel = c["reliability"]
        axes[0].plot(rel["spread_mm"], rel["error_mm"], marker="o", label=name)
        top = max(top, *rel["spread_mm"], *rel["error_mm"])
        axes[1].plot(uncertainty.COVERAGE_K, [c[f"coverage_k{k:g}"] for k in uncertainty.COVERAGE_K],
                     marker="o", label=name)
    axes[0].plot([0, top], [0, top], "k--", lw=1, label="error = spread")
    axes[0].set_xlabel("spread (mm, mean per decile)")
    axes[0].set_ylabel("error of the published joint (mm, mean)")
    ks = np.linspace(0.25, 3.0, 23)
    axes[1].plot(ks, [uncertainty.calibrated_coverage(k) for k in ks], "k--", lw=1,
                 label="spread = true RMS error")
    axes[1].set_xlabel("k")
    axes[1].set_ylabel("fraction of joints with error < k x spread")
    axes[1].set_ylim(0, 1.02)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("Calibration of the spread on published streams (non-root joints)", fontsize=10)
    return _save(fig, path)


def plot_sampler_tradeoff(rows: Sequence[dict], path: str | Path, machine: str) -> Path:
    """MPJPE and segment-length std against milliseconds per window, one line per H.

    rows: dicts with steps, hypotheses, ms_per_window, mpjpe_mm, segment_std_mm.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for h in sorted({r["hypotheses"] for r in rows}):
        sel = sorted((r for r in rows if r["hypotheses"] == h), key=lambda r: r["steps"])
        ms = [r["ms_per_window"] for r in sel]
        for ax, key in zip(axes, ("mpjpe_mm", "segment_std_mm")):
            line, = ax.plot(ms, [r[key] for r in sel], marker="o", label=f"H = {h}")
            for r in sel:
                ax.annotate(f"{r['steps']}", (r["ms_per_window"], r[key]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points", color=line.get_color())
    for ax, label in zip(axes, ("MPJPE (mm)", "segment-length std (mm)")):
        ax.set_xscale("log")
        # Plain 1, 2, 5, 10, ... labels (log axes default to mathtext and crowd narrow ranges).
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("ms per window (median)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="hypotheses")
    fig.suptitle("Sampler: accuracy vs latency (point labels = DDIM steps)\n"
                 f"latency: 1 person, 1 window, batch 1, PyTorch, {machine}", fontsize=10)
    return _save(fig, path)


def _camera_to_plot(pose_m: np.ndarray) -> np.ndarray:
    """Camera frame (x right, y down, z forward) -> plot axes (x right, z depth, up = -y)."""
    return np.stack([pose_m[..., 0], pose_m[..., 2], -pose_m[..., 1]], axis=-1)


def _draw_skeleton(ax, pose_m: np.ndarray, alpha: float = 1.0, linewidth: float = 2.0) -> None:
    p = _camera_to_plot(pose_m)
    for child, parent in BONES:
        ax.plot(*p[[child, parent]].T, color=SIDE_COLOURS[side_of(child)], alpha=alpha,
                linewidth=linewidth, solid_capstyle="round")


def plot_skeleton_examples(examples: Sequence[dict], path: str | Path) -> Path:
    """A grid of 3D skeletons: one row per test window, columns = the panels of each example.

    examples: dicts with `title` (str) and `panels`, a list of dicts with `title`, `pose_m`
    (17, 3) camera-frame root-relative metres, and optionally `samples_m` (H, 17, 3) drawn faintly
    (the hypotheses of a diffusion model). Left joints blue, right red.
    """
    n_rows = len(examples)
    n_cols = max(len(e["panels"]) for e in examples)
    fig = plt.figure(figsize=(3.2 * n_cols, 3.4 * n_rows))
    for r, ex in enumerate(examples):
        # One box per row, shared by its panels, so that the skeletons compare at one scale.
        pts = np.concatenate([_camera_to_plot(np.concatenate(
            [p["pose_m"][None], p.get("samples_m", np.empty((0, 17, 3)))], axis=0)).reshape(-1, 3)
            for p in ex["panels"]])
        centre = 0.5 * (pts.max(0) + pts.min(0))
        half = 0.5 * float((pts.max(0) - pts.min(0)).max()) + 0.05
        for c, panel in enumerate(ex["panels"]):
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1, projection="3d")
            for sample in panel.get("samples_m", ()):
                _draw_skeleton(ax, sample, alpha=0.18, linewidth=1.0)
            _draw_skeleton(ax, panel["pose_m"])
            ax.set_xlim(centre[0] - half, centre[0] + half)
            ax.set_ylim(centre[1] - half, centre[1] + half)
            ax.set_zlim(centre[2] - half, centre[2] + half)
            ax.set_box_aspect((1, 1, 1), zoom=1.25)
            ax.view_init(elev=12, azim=-70)
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            ax.set_zticklabels([])
            ax.set_title(panel["title"], fontsize=9)
            if c == 0:
                ax.text2D(-0.08, 0.5, ex["title"], transform=ax.transAxes, rotation=90,
                          va="center", ha="center", fontsize=8)
    fig.subplots_adjust(wspace=0.02, hspace=0.22)
    fig.suptitle("Test windows, target frame (left side blue, right side red; "
                 "faint: the individual hypotheses)", fontsize=10)
    return _save(fig, path)


def plot_metric_bars(table: dict[str, dict[str, dict[str, float]]], metrics: Sequence[str],
                     path: str | Path) -> Path:
    """Grouped bars: one panel per metric, groups = window modes, bars = models.

    table: mode -> model -> metric -> value (mm).
    """
    modes = list(table)
    models = list(dict.fromkeys(m for mode in modes for m in table[mode]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.0 * len(metrics), 3.4), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, metric in zip(axes[0], metrics):
        for k, model in enumerate(models):
            vals = [table[mode].get(model, {}).get(metric, np.nan) for mode in modes]
            ax.bar(np.arange(len(modes)) + (k - (len(models) - 1) / 2) * width, vals, width,
                   label=model)
        ax.set_xticks(range(len(modes)), modes)
        ax.set_title(f"{METRIC_HEADERS.get(metric, metric)} (mm)", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(models), fontsize=8,
               bbox_to_anchor=(0.5, 1.08))
    return _save(fig, path)


# --- markdown ------------------------------------------------------------------------------



def _mm(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(holds) -> str:
    return {True: "**Holds**", False: "**Does not hold**", None: "**Not measured**"}[holds]


def _sampler_label(m: dict) -> str:
    mirrored = "; with its mirror image (mean)" if m.get("mirror") else ""
    if m["steps"] is None:
        return "deterministic" + mirrored
    return f"DDIM {m['steps']} steps, H = {m['hypotheses']}, {m['aggregation']}{mirrored}"


def _models_section(r: dict) -> list[str]:
    rows = [[name, m["variant"], m["trained_mode"], m["trained_occlusion"], _sampler_label(m),
             f"{m['parameters'] / 1e6:.2f} M", f"`{m['checkpoint']}`"]
            for name, m in r["models"].items()]
    return ["## Models", "", _table(["model", "variant", "trained window", "trained occlusion",
                                     "sampler", "parameters", "checkpoint"], rows), ""]


def _comparison_section(r: dict) -> list[str]:
    out = ["## Accuracy and temporal coherence (clean 2D input)", "",
           "MPJPE and P-MPJPE are measured on the **target frame** of each window (the frame a "
           "lifter is run for: the middle frame of a centred window, the last frame of a causal "
           "one). MPJVE, acceleration error, segment-length std and the sagittal symmetry gap are "
           "measured over **all frames of each window's output**. Every window weighs the same. "
           "All values in mm (MPJVE per frame, acceleration per frame squared); lower is better. "
           "The ground-truth row is the floor of the two pose-only metrics on this data. A model "
           "is only fed windows of the mode it was trained with (marked † in the other "
           "table).", ""]
    for mode, res in r["comparison"].items():
        own = res.get("evaluated_mode", {})
        others = [n for n in r["models"] if own.get(n, mode) != mode]
        out += [f"### {mode.capitalize()} windows (target = {MODE_TARGET[mode]}, "
                f"{res['windows']} windows)", ""]
        rows = []
        for name, m in res["metrics"].items():
            if name == "ground_truth":
                continue
            rows.append([name + (" †" if name in others else "")]
                        + [_mm(m.get(k)) for k in METRICS])
        gt = res["metrics"].get("ground_truth", {})
        rows.append(["ground truth"] + [_mm(gt.get(k)) if k in POSE_ONLY_METRICS else "-"
                                        for k in METRICS])
        out += [_table(["model"] + [METRIC_HEADERS[k] for k in METRICS], rows), ""]
        if others:
            modes = sorted({own[n] for n in others})
            out += [f"† Trained with {' / '.join(modes)} windows only: a model is evaluated "
                    f"with the windows it was trained with, so these rows repeat its "
                    f"{' / '.join(modes)} numbers (target = "
                    f"{' / '.join(MODE_TARGET[m] for m in modes)}), not a {mode} evaluation.",
                    ""]
    out += ["![metrics per model and window mode](img/eval_metrics.png)", ""]
    return out


def _occlusion_section(r: dict) -> list[str]:
    out = ["## Occlusion robustness", ""]
    occ = r.get("occlusion")
    if not occ:
        return out + ["Not evaluated in this run (no `--occlusion-runs`; the checkpoints come "
                      "from `training/occlusion_matrix.py`).", ""]
    patterns = occ["patterns"]
    windows = ", ".join(f"{n} {mode}" for mode, n in occ["windows"].items())
    out += [f"One model per training occlusion pattern (rows), each tested on every pattern "
            f"(columns): MPJPE on the target frame, mm, {windows} windows per cell, each model in "
            f"the window mode it was trained in. Degradation = mean of the mismatched "
            f"(off-diagonal) cells minus the mean of the matched (diagonal) cells: the paper "
            f"claims it is smaller for the diffusion model. Checkpoints from `{occ['runs_dir']}`.",
            ""]
    for kind, m in occ["models"].items():
        rows = [[f"**{patterns[i]}**"] + [_mm(v) for v in row]
                for i, row in enumerate(m["matrix_mm"])]
        out += [f"### {kind}", "", _table(["train \\ test"] + patterns, rows), ""]
    rows = [[kind, _mm(m["diagonal_mm"]), _mm(m["off_diagonal_mm"]), _mm(m["degradation_mm"]),
             "n/a" if m["relative"] is None else f"{100 * m['relative']:+.1f} %"]
            for kind, m in occ["models"].items()]
    out += [_table(["model", "matched (diagonal)", "mismatched (off-diagonal)", "degradation",
                    "relative"], rows), "",
            "![occlusion matrix](img/eval_occlusion_matrix.png)", ""]
    if occ["missing"]:
        out += ["Not trained (cells left empty): " + ", ".join(f"`{p}`" for p in occ["missing"]),
                ""]
    return out


# The lifting goal on the 2-core CPU (docs: real-time budget): p99 <= 10 ms per lifted frame.
LATENCY_BUDGET_MS = 10.0


def fastest_near_best(rows: Sequence[dict], tolerance_mm: float = 1.0) -> dict | None:
    """The fastest grid setting whose MPJPE is within `tolerance_mm` of the grid's best."""
    if not rows:
        return None
    best = min(r["mpjpe_mm"] for r in rows)
    ok = [r for r in rows if r["mpjpe_mm"] <= best + tolerance_mm]
    return min(ok, key=lambda r: r["ms_per_window"])


def best_within_budget(rows: Sequence[dict], budget_ms: float = LATENCY_BUDGET_MS) -> dict | None:
    """The most accurate grid setting whose p90 latency fits `budget_ms` (None if none fits)."""
    ok = [r for r in rows if r["p90_ms"] <= budget_ms]
    return min(ok, key=lambda r: (r["mpjpe_mm"], r["ms_per_window"])) if ok else None


def _sampler_section(r: dict) -> list[str]:
    sm = r.get("sampler")
    out = ["## Sampler trade-off", ""]
    if not sm:
        return out + ["Not evaluated in this run (needs a diffusion checkpoint named "
                      "`diffhpe_wrapper`).", ""]
    t, d = sm["timing"], sm["default"]
    out += [f"{sm['model']} (`{sm['checkpoint']}`), clean {sm['window_mode']} windows "
            f"({sm['windows']} windows), aggregation {d['aggregation']}. Latency: median (and "
            f"p90) wall time of one forward pass for **one person, one window, batch of 1, "
            f"PyTorch** (not ONNX Runtime / TensorRT) on {t['machine']}.", ""]
    if d["aggregation"] == "conditioner":
        out += ["With the `conditioner` aggregation the published pose is the frozen MixSTE's "
                "whatever the steps and H, so the accuracy columns below do not move: the "
                "sampler's own pose is in the aggregation table (`mean`), and what steps and H "
                "change is the spread (its calibration: *Calibration of the spread* below) and "
                "the latency.", ""]
    rows = [[r_["steps"], r_["hypotheses"], _mm(r_["mpjpe_mm"]), _mm(r_["p_mpjpe_mm"]),
             _mm(r_["segment_std_mm"]), f"{r_['ms_per_window']:.2f} ({r_['p90_ms']:.2f})"
             + (" *default*" if (r_["steps"], r_["hypotheses"]) == (d["steps"], d["hypotheses"])
                else "")]
            for r_ in sm["grid"]]
    out += [_table(["DDIM steps", "H", "MPJPE", "P-MPJPE", "Seg std", "ms per window (p90)"],
                   rows), ""]
    if sm["skipped_steps"]:
        out += [f"Skipped steps {sm['skipped_steps']}: more than the model's diffusion "
                "timesteps.", ""]
    near, fits = fastest_near_best(sm["grid"]), best_within_budget(sm["grid"])
    if near:
        out += [f"- Fastest setting within 1 mm of the grid's best MPJPE: {near['steps']} steps, "
                f"H = {near['hypotheses']} ({_mm(near['mpjpe_mm'])} mm, "
                f"{near['ms_per_window']:.2f} ms).",
                f"- Most accurate setting with p90 <= {LATENCY_BUDGET_MS:.0f} ms (the lifting "
                "budget per frame): " + (f"{fits['steps']} steps, H = {fits['hypotheses']} "
                                         f"({_mm(fits['mpjpe_mm'])} mm, {fits['p90_ms']:.2f} ms)."
                                         if fits else "none."),
                f"- The checkpoint's default: {d['steps']} steps, H = {d['hypotheses']}.", ""]
    rows = [[a["aggregation"], _mm(a["mpjpe_mm"]), _mm(a["p_mpjpe_mm"]),
             _mm(a["segment_std_mm"]), f"{a['ms_per_window']:.2f} ({a['p90_ms']:.2f})"]
            for a in sm["aggregations"]]
    out += [f"Aggregations at the default ({d['steps']} steps, H = {d['hypotheses']}):", "",
            _table(["aggregation", "MPJPE", "P-MPJPE", "Seg std", "ms per window (p90)"], rows),
            "", "![sampler trade-off](img/eval_sampler_tradeoff.png)", ""]
    return out


def _streams_section(r: dict) -> list[str]:
    st = r.get("streams")
    if not st:
        return []
    models = st["models"]
    out = ["## Published streams (what the node publishes)", "",
           f"{st['streams']} sequences of the split, each seen by ONE virtual camera for up to "
           f"{st['max_frames']} frames ({st['frames']} frames in all), with detector-like noise, "
           "keypoints outside the image missing and limbs hidden for 0.5-1.5 s at a time (about "
           "30 % of the frames have one). Lifted frame by frame as the node does (causal window "
           "ending at the frame, that frame published, the same initial noise for the person "
           "every frame). Jitter is the mean norm of the published joints' second differences "
           "(mm/frame^2); the ground truth's own is given for scale.", ""]
    keys = ("mpjpe_mm", "p_mpjpe_mm", "jitter_mm", "accel_error_mm", "mpjve_mm")
    rows = [[name] + [_mm(m["overall"][k]) for k in keys] for name, m in models.items()]
    gt = next(iter(models.values()))["overall"]["gt_jitter_mm"]
    rows.append(["ground truth", "-", "-", _mm(gt), "-", "-"])
    out += [_table(["model", "MPJPE", "P-MPJPE", "jitter", "accel err", "MPJVE"], rows), ""]
    contents = sorted({c for m in models.values() for c in m["by_content"]})
    rows = []
    for c in contents:
        cells = [models[n]["by_content"].get(c) for n in models]
        frames = next(x["frames"] for x in cells if x)
        rows.append([c, frames] + [f"{_mm(x['mpjpe_mm'])} / {_mm(x['p_mpjpe_mm'])}" if x else "-"
                                   for x in cells])
    out += ["Per kind of motion (MPJPE / P-MPJPE, mm):", "",
            _table(["content", "frames"] + list(models), rows), ""]
    cal = {n: m["calibration"] for n, m in models.items() if m.get("calibration")}
    if cal:
        out += ["### Calibration of the spread", "",
                "`spread` (published on `pose3d/points`) is the RMS distance of the H hypotheses "
                "from the published joint. Measured on the published joints of the streams: "
                "median spread of hidden and visible joints, the Spearman rank correlation of "
                "spread and error within each joint (averaged over joints), and how often the "
                "error is below k x spread (a spread equal to the joint's true RMS error, "
                f"Gaussian, gives {uncertainty.CALIBRATED_COVERAGE_TEXT}).", ""]
        ratio = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        rows = [[n, _mm(c["spread_hidden_mm"]), _mm(c["spread_visible_mm"]),
                 ratio(c["hidden_visible_ratio"]), ratio(c.get("error_hidden_visible_ratio")),
                 ratio(c["rank_correlation"]),
                 *(f"{c[f'coverage_k{k:g}']:.2f}" for k in (1, 2, 3))] for n, c in cal.items()]
        out += [_table(["model", "spread hidden", "spread visible", "ratio", "error ratio",
                        "rank corr", "cover k=1", "k=2", "k=3"], rows), "",
                "(medians; \"error ratio\": the published joints' own hidden/visible error ratio, "
                "what a calibrated spread's ratio would be)", "",
                "![reliability of the spread](img/eval_reliability.png)", ""]
        for n, c in cal.items():
            rel = c["reliability"]
            out += [f"Reliability of {n} (mean error per spread decile, mm): "
                    + ", ".join(f"{s:.0f} -> {e:.0f}" for s, e in zip(rel["spread_mm"], rel["error_mm"])),
                    ""]
    return out


def render_markdown(r: dict) -> str:
    """The report a person reads: what was run, the claims, the tables, the figures."""
    windows = ", ".join(f"{res['windows']} {mode}" for mode, res in r["comparison"].items())
    pr = r["protocol"]
    out = ["# Evaluation", "",
           "Written by `training/evaluate.py` - regenerate it rather than editing it:", "",
           "```", r.get("command", "(command not recorded)"), "```", "",
           f"**Split: {r['split']}** ({r['sequences']} sequences of `{r['dataset']}`), "
           + ("every window" if r["stride"] == 1 else f"every {r['stride']}th window")
           + f" (`--stride {r['stride']}`): {windows} windows of {pr['window']} frames at "
           f"{pr['fps']:g} fps. 2D input: a random virtual camera per window with detector-like "
           f"noise (std {100 * pr['noise_sigma_frac']:g} % of the person's size, "
           f"{100 * pr['outlier_prob']:g} % outliers), drawn from seed {r['seed']}: the same "
           f"windows for every model. Device "
           f"{r['device']}, torch {r['torch']}, batches of {r['batch_size']} windows. "
           + ("This is the split model selection and the spread's calibration used."
              if r["split"] == "validation" else
              "Model selection happened on the validation split; this report changes nothing."),
           "",
           "## Claims", ""]
    out += [f"- {_verdict(c['holds'])}: {c['claim']}. {c['evidence']}" for c in r["claims"]]
    out += [""]
    out += _models_section(r)
    out += _comparison_section(r)
    out += _occlusion_section(r)
    out += _sampler_section(r)
    out += _streams_section(r)
    out += ["## Real video and model sizes", "",
            "The same models on a real multi-view video against MediaPipe's world landmarks: "
            "[video_check.md](video_check.md) (`training/evaluate_video.py`); accuracy against "
            "cost of the model sizes: [size_table.md](size_table.md) (`training/size_table.py`).",
            ""]
    if r.get("examples"):
        ex = r["examples"]
        out += ["## Examples", "",
                f"Clean {ex['mode']} windows at evenly spaced positions of the test windows "
                f"(indices {ex['window_indices']}; a fixed rule, not picked by error), target "
                "frame, camera view from slightly above. Left side blue, right side red; faint "
                "skeletons are the individual hypotheses of the diffusion model.", "",
                "![examples](img/eval_examples.png)", ""]
    return "\n".join(out)


def to_jsonable(obj):
    """numpy arrays and scalars -> lists and floats (0.1 mm precision kept), NaN -> None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(np.round(obj.astype(np.float64), 5).tolist()
                           if obj.dtype.kind == "f" else obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _example_figure_data(r: dict) -> list[dict]:
    ex = r["examples"]
    examples = []
    for k, idx in enumerate(ex["window_indices"]):
        panels = [{"title": "ground truth", "pose_m": np.asarray(ex["ground_truth_m"][k])}]
        for name, m in ex["models"].items():
            panel = {"title": f"{name}\n{m['mpjpe_mm'][k]:.0f} mm",
                     "pose_m": np.asarray(m["pose_m"][k])}
            if "samples_m" in m:
                panel["samples_m"] = np.asarray(m["samples_m"][k])
                panel["title"] += f", spread {1000 * float(np.mean(m['spread_m'][k])):.0f} mm"
            panels.append(panel)
        examples.append({"title": f"window {idx}", "panels": panels})
    return examples


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write evaluation.md, evaluation.json and img/*.png under `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    img = out_dir / "img"
    paths = {}
    table = {mode: {n: v for n, v in res["metrics"].items() if n != "ground_truth"}
             for mode, res in results["comparison"].items()}
    paths["metrics"] = plot_metric_bars(table, list(METRICS), img / "eval_metrics.png")
    occ = results.get("occlusion")
    if occ and occ["models"]:
        mats = {k: np.array([[np.nan if v is None else v for v in row] for row in m["matrix_mm"]])
                for k, m in occ["models"].items()}
        paths["occlusion"] = plot_occlusion_heatmaps(mats, occ["patterns"],
                                                     img / "eval_occlusion_matrix.png")
    if results.get("sampler"):
        sm = results["sampler"]
        paths["sampler"] = plot_sampler_tradeoff(sm["grid"], img / "eval_sampler_tradeoff.png",
                                                 sm["timing"]["machine"])
    streams = (results.get("streams") or {}).get("models", {})
    calibration = {n: m["calibration"] for n, m in streams.items() if m.get("calibration")}
    if calibration:
        paths["reliability"] = plot_reliability(calibration, img / "eval_reliability.png")
    if results.get("examples"):
        paths["examples"] = plot_skeleton_examples(_example_figure_data(results),
                                                   img / "eval_examples.png")
    paths["json"] = atomic_write_json(out_dir / "evaluation.json", to_jsonable(results))
    paths["markdown"] = atomic_write_text(out_dir / "evaluation.md", render_markdown(results))
    return paths

#!/usr/bin/env python3
"""The real-video check: lifters against MediaPipe's own world landmarks on a real multi-view video.

    python training/evaluate_video.py --model models/diffhpe_lifter.onnx [--model models/mixste.pt]
        [--source pose2sim_multiperson] [--views cam01 cam02 ...] [--out docs/video_check.json]

MediaPipe runs on every view of pose2sim's Demo_MultiPerson (never the README's single-person
showcase); the views that agree on one person give a triangulated reference; each model lifts
each view frame by frame as the lifter node does; MPJPE (root-relative, camera frame), P-MPJPE and
jitter are compared with MediaPipe's world landmarks on the same frames. Detections and the
reference are cached under <cache-dir>/video_check/, so another model only costs the lifting.
The logic lives in diffhpe_ros/video_check.py and diffhpe_models/triangulation.py.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from diffhpe_models.atomic import atomic_replace_section, atomic_write_json
from diffhpe_models.skeleton import JOINT_NAMES
from diffhpe_models.uncertainty import CALIBRATED_COVERAGE_TEXT, COVERAGE_K, PUBLISHED_FIXED_NOISE
from diffhpe_ros.demo_videos import MULTIVIEW_DEMOS
from diffhpe_ros.video_check import (
    BOOTSTRAP_BLOCK_FRAMES,
    GOALS,
    MEDIAPIPE_RAY_ROW,
    MEDIAPIPE_ROW,
    ReferenceSettings,
    run_check,
)


def model_arg(text: str) -> tuple[str, str]:
    """[NAME=]PATH; the name defaults to the file's stem."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).stem, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected [NAME=]PATH, got {text!r}")
    return name, path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", action="append", type=model_arg, metavar="[NAME=]PATH",
                   help="lifter to check (.onnx with manifest, or .pt); repeatable "
                        "(default: models/diffhpe_lifter.onnx)")
    p.add_argument("--source", default="pose2sim_multiperson", choices=sorted(MULTIVIEW_DEMOS))
    p.add_argument("--views", nargs="+", help="cameras to lift, one at a time (default: all)")
    p.add_argument("--max-frames", type=int, default=300, help="frames read per view (0 = all)")
    p.add_argument("--max-error-px", type=float, default=ReferenceSettings.max_error_px,
                   help="largest median reprojection error of a view that agrees on the person")
    p.add_argument("--noise-seeds", type=int, default=0, metavar="N",
                   help="also lift with the node's noise seeds 0..N-1, fixed per person and fresh "
                        "every frame, and report the spread's calibration over them")
    p.add_argument("--mirror", nargs="+", default=[], metavar="NAME",
                   help="also lift these models with their mirror image (the node's `mirror` "
                        "parameter), as rows 'NAME+mirror'")
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--out", default="docs/video_check.json", help="JSON report ('' = none)")
    p.add_argument("--md", default="docs/video_check.md",
                   help="markdown file whose generated section gets the tables ('' = none)")
    args = p.parse_args(argv)
    if args.noise_seeds < 0:
        p.error(f"--noise-seeds must be >= 0, got {args.noise_seeds}")
    return args


def fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def table(result: dict) -> str:
    """The rows as a markdown table, then the goals of issue 8 met or missed."""
    lines = ["| row | MPJPE mm | P-MPJPE mm | jitter mm/frame^2 | frames | MPJPE x MP | "
             "P-MPJPE x MP | jitter x MP | P-MPJPE limbs mm | rotation deg (median) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        ratio = r["ratio_to_mediapipe"]
        lines.append(f"| {name} | {fmt(r['mpjpe_mm'])} | {fmt(r['p_mpjpe_mm'])} | "
                     f"{fmt(r['jitter_mm'], '.2f')} | {r['frames']} | "
                     + " | ".join(fmt(ratio[k], ".2f") for k in GOALS)
                     + f" | {fmt(r['p_mpjpe_limbs_mm'])} | {fmt(r['rotation_error_deg_median'])} |")
    ref_jitter = result["rows"][MEDIAPIPE_ROW]["reference_jitter_mm"]
    lines.append(f"\nReference (triangulated) jitter on the same frames: {fmt(ref_jitter, '.2f')} "
                 "mm/frame^2.")
    for name, r in result["rows"].items():
        for k, g in r.get("goals", {}).items():
            state = "met" if g["met"] else "MISSED"
            lines.append(f"- {name}: {k} {fmt(r[k], '.2f')} = {fmt(g['ratio'], '.2f')}x MediaPipe "
                         f"(goal <= {g['goal']}x = {fmt(g['target'], '.2f')}): {state}")
    return "\n".join(lines)


def calibration_table(result: dict) -> str:
    """The spread's calibration per model (issue 9), then its goals met or missed; '-' for a
    deterministic model (no spread)."""
    lines = ["| model | joint-frames hidden / visible | spread hidden mm | spread visible mm | "
             "hidden / visible | rank corr | "
             + " | ".join(f"error < {k:g}x spread" for k in COVERAGE_K) + " |",
             "|---" * (6 + len(COVERAGE_K)) + "|"]
    goals = []
    for name, r in result["rows"].items():
        c = r.get("spread_calibration")
        if c is None:
            continue
        lines.append(f"| {name} | {c['hidden']} / {c['visible']} | "
                     f"{fmt(c['spread_hidden_mm'])} | {fmt(c['spread_visible_mm'])} | "
                     f"{fmt(c['hidden_visible_ratio'], '.2f')} | "
                     f"{fmt(c['rank_correlation'], '.2f')} | "
                     + " | ".join(fmt(c[f"coverage_k{k:g}"], ".2f") for k in COVERAGE_K) + " |")
        if not c["applicable"]:
            goals.append(f"- {name}: not applicable ({c['reason']})")
            continue
        for key, g in c["goals"].items():
            label = {"hidden_visible_ratio": "spread hidden / visible",
                     "rank_correlation": "within-joint rank correlation"}.get(key, key)
            state = ("not measurable" if g["met"] is None else
                     f"met (by {g['margin']:.2f})" if g["met"] else
                     f"MISSED (by {-g['margin']:.2f})")
            interval = (c.get("interval_90") or {}).get(key)
            spread = (f"; 90 % interval over resampled blocks of {BOOTSTRAP_BLOCK_FRAMES} frames "
                      f"{interval[0]:.2f} - {interval[1]:.2f}" if interval else "")
            goals.append(f"- {name}: {label} {fmt(g['value'], '.2f')} (goal >= {g['goal']:g}): "
                         f"{state}{spread}")
        views = {v: p["rows"][name]["spread_calibration"]
                 for v, p in result.get("per_view", {}).items()}
        if views:
            goals.append(f"- {name}, each view alone (hidden / visible ratio, rank corr): "
                         + ", ".join(f"{v} {fmt(c_v['hidden_visible_ratio'], '.2f')}, "
                                     f"{fmt(c_v['rank_correlation'], '.2f')} "
                                     f"({c_v['frames']} frames)" for v, c_v in views.items()))
    return "\n".join(lines + [""] + goals)


def noise_seed_study(args, models: dict[str, str], result: dict, log=print) -> dict:
    """Per model with a spread: its calibration (hidden/visible ratio, rank correlation) with the
    node's noise seeds 0..N-1, fixed per person (the node's default) and fresh every frame."""
    spread_models = {n: p for n, p in models.items()
                     if result["rows"][n]["spread_calibration"]["applicable"]}
    study = {n: {"fixed": [], "fresh": []} for n in spread_models}
    for mode in ("fixed", "fresh"):
        for seed in range(args.noise_seeds):
            sub = run_check(args.source, spread_models, args.views, args.cache_dir,
                            args.max_frames, reference=ReferenceSettings(max_error_px=args.max_error_px),
                            log=lambda m: None, seed=seed, fixed_noise=mode == "fixed",
                            mirror=mirror_rows(args) & set(spread_models))
            for name in spread_models:
                c = sub["rows"][name]["spread_calibration"]
                study[name][mode].append({"seed": seed, "hidden_visible_ratio": c["hidden_visible_ratio"],
                                          "rank_correlation": c["rank_correlation"]})
                log(f"{name} {mode} noise, seed {seed}: {study[name][mode][-1]}")
    return study


def noise_seeds_table(result: dict) -> str:
    def span(values):
        values = [v for v in values if v is not None]
        return (f"{min(values):.2f} - {max(values):.2f} (mean {np.mean(values):.2f})"
                if values else "-")
    lines = ["| model | noise | seeds | spread hidden / visible | rank corr |", "|---|---|---|---|---|"]
    for name, modes in result["noise_seeds"].items():
        for mode, runs in modes.items():
            label = "fixed per person" if mode == "fixed" else "fresh every frame"
            if (mode == "fixed") == PUBLISHED_FIXED_NOISE:
                label += " (node default)"
            lines.append(f"| {name} | {label} | {len(runs)} | "
                         f"{span([r['hidden_visible_ratio'] for r in runs])} | "
                         f"{span([r['rank_correlation'] for r in runs])} |")
    return "\n".join(lines)


def per_joint_table(result: dict) -> str:
    rows = result["rows"]
    lines = ["| joint | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for j, joint in enumerate(JOINT_NAMES):
        lines.append(f"| {joint} | " + " | ".join(
            fmt(r["per_joint_mpjpe_mm"][j] if r["per_joint_mpjpe_mm"] else None)
            for r in rows.values()) + " |")
    return "\n".join(lines)


def per_view_table(result: dict) -> str:
    lines = ["| view | frames scored | person found | agrees with >= 2 other views | median "
             "reprojection error px | median depth m | median angle off the optical axis deg |",
             "|---|---|---|---|---|---|---|"]
    for view, v in result["per_view"].items():
        lines.append(f"| {view} | {v['frames']} / {v['frames_in_video']} | {v['person_found']} | "
                     f"{v['view_agrees']} | {fmt(v['median_reprojection_error_px'])} | "
                     f"{fmt(v['median_root_depth_m'], '.2f')} | "
                     f"{fmt(v['median_root_off_axis_deg'])} |")
    return "\n".join(lines)


def per_view_errors_table(result: dict) -> str:
    names = list(result["rows"])
    lines = ["| view | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for view, v in result["per_view"].items():
        lines.append(f"| {view} | " + " | ".join(
            f"{fmt(v['rows'][n]['mpjpe_mm'])} / {fmt(v['rows'][n]['p_mpjpe_mm'])}"
            for n in names) + " |")
    return "\n".join(lines)


def sync_table(result: dict) -> str:
    offsets = (-12, -6, -2, 0, 2, 6, 12)
    lines = ["| views | best offset (frames) | "
             + " | ".join(f"error px at {o:+d}" for o in offsets) + " |",
             "|---" * (len(offsets) + 2) + "|"]
    for pair, c in result["sync_check"].items():
        err = dict(zip(c["offsets"], c["median_error_px"]))
        lines.append(f"| {pair} | {c['best_offset']} | "
                     + " | ".join(fmt(err.get(o)) for o in offsets) + " |")
    return "\n".join(lines)


def leave_one_out_table(result: dict) -> str:
    lines = ["| row | frames | MPJPE mm | P-MPJPE mm |", "|---|---|---|---|"]
    for name, r in result["rows"].items():
        loo = r["leave_one_out"]
        lines.append(f"| {name} | {loo['frames']} | {fmt(loo['mpjpe_mm'])} | "
                     f"{fmt(loo['p_mpjpe_mm'])} |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    return "\n\n".join([
        f"Command: `{result['command']}`", table(result),
        "Calibration of the spread (issue 9; scored frames, non-root joints; hidden = the lifter "
        "got the joint as missing: MediaPipe visibility below the node's confidence threshold; "
        f"a spread equal to the true RMS error would cover {CALIBRATED_COVERAGE_TEXT}):\n\n"
        + calibration_table(result),
        *(["The same over the node's noise seeds (`--noise-seeds`; one tracked person per view, "
            "so one noise draw sets much of a view's spread):\n\n" + noise_seeds_table(result)]
          if result.get("noise_seeds") else []),
        "Frames per view:\n\n" + per_view_table(result),
        "MPJPE / P-MPJPE (mm) per view:\n\n" + per_view_errors_table(result),
        "Synchronisation check (two-view reprojection error with the second view shifted):\n\n"
        + sync_table(result),
        "Per-joint MPJPE (mm):\n\n" + per_joint_table(result),
        "Against a reference triangulated without the scored view (frames where every joint is "
        "seen by two other views):\n\n" + leave_one_out_table(result)])


def mirror_rows(args) -> set[str]:
    return {f"{name}+mirror" for name in args.mirror}


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    models = dict(args.model or [model_arg("models/diffhpe_lifter.onnx")])
    if len(models) != len(args.model or [None]):
        raise SystemExit("--model: a name is given twice (name them NAME=PATH)")
    unknown = sorted(set(args.mirror) - set(models))
    if unknown:
        raise SystemExit(f"--mirror: {unknown} are not --model names ({sorted(models)})")
    models.update({f"{name}+mirror": models[name] for name in args.mirror})
    clash = {MEDIAPIPE_ROW, MEDIAPIPE_RAY_ROW} & set(models)
    if clash:
        raise SystemExit(f"--model: {sorted(clash)} is the name of a baseline row")
    try:
        result = run_check(args.source, models, args.views, args.cache_dir, args.max_frames,
                           reference=ReferenceSettings(max_error_px=args.max_error_px),
                           log=lambda m: print(m, flush=True), mirror=mirror_rows(args))
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"evaluate_video: {e}") from None
    if args.noise_seeds > 0:
        result["noise_seeds"] = noise_seed_study(args, models, result,
                                                 log=lambda m: print(m, flush=True))
    result["command"] = "python training/evaluate_video.py " + shlex.join(argv)
    print(table(result))
    print("\nPer-joint MPJPE (mm):\n" + per_joint_table(result))
    print("\nCalibration of the spread:\n" + calibration_table(result))
    if result.get("noise_seeds"):
        print("\nOver the noise seeds:\n" + noise_seeds_table(result))
    if args.out:
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")
    if args.md:
        atomic_replace_section(args.md, "video_check", markdown(result), title="# Real-video check")
        print(f"wrote the generated section of {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fit the published spread's calibration on the VALIDATION split and store it in a checkpoint.

    python training/calibrate_spread.py models/diffhpe_wrapper.pt [--out OTHER.pt]

The hypotheses of a few-step sampler trained on a proper score still come out too narrow where
it learned least (hidden joints, wrists). Like temperature scaling of a classifier, the spread is
rescaled on the validation split's published streams (evaluation.make_streams: one camera per
sequence, lasting limb occlusions, the node's noise and spread averaging) by a factor per group
(joints observed / missing in the published frame) times a factor per joint:

    spread_{j,g} = raw_{j,g} x scale_g x joint_j

fitted so that the mean square spread equals the mean squared error of the published joints in
each group and, as nearly as the product allows, of each joint (alternating the two fits; the
joint factors' geometric mean is 1, so the group factors keep their meaning). Two groups and 16
joints: 18 numbers fitted on about a quarter of a million joint-frames. The stored result also
holds a held-out check (`holdout`): factors fitted on every other stream, the calibration of
the rest, per group only and per group x joint.

The factors go into the checkpoint config (diffusion.spread_scale_visible / _hidden /
_joint; export.py bakes them into the graph and records them in the manifest). Never fit them
on the test split.
Exit codes: 0 written, 2 bad arguments or checkpoint (nothing written).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from diffhpe_models import evaluation as ev
from diffhpe_models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diffhpe_models.config import ConfigError
from diffhpe_models.skeleton import NUM_JOINTS
from diffhpe_models.threads import configure_torch
from diffhpe_models.uncertainty import CALIBRATION_JOINTS, calibration_report


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a diffusion checkpoint (e.g. models/diffhpe_wrapper.pt)")
    p.add_argument("--out", help="where to write the calibrated checkpoint (default: in place)")
    p.add_argument("--dataset", help="dataset file (default: the checkpoint's data.dataset)")
    p.add_argument("--split", default="validation", choices=("validation",),
                   help="fitted on validation only: the test split stays for the report")
    p.add_argument("--stream-frames", type=int, default=150, help="frames per stream")
    p.add_argument("--stream-stride", type=int, default=3, help="every k-th sequence")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def fit_scales(spread_m: np.ndarray, error_m: np.ndarray, visible: np.ndarray,
               rounds: int = 50) -> dict:
    """(N, 17) raw spread, error (metres), visible (bool) -> {"visible": s, "hidden": s,
    "joint": [17 factors], counts}: spread x group factor x joint factor matches the mean squared
    error of each group exactly and of each joint as nearly as the product allows (alternating
    fits). A group with no joint or no spread gets 1.0; the root (no spread: the pose is
    root-relative) and a joint with no spread keep a joint factor of 1.0."""
    joints = list(CALIBRATION_JOINTS)
    spread, error = np.asarray(spread_m)[:, joints], np.asarray(error_m)[:, joints]
    seen = np.asarray(visible, dtype=bool)[:, joints]
    groups = (("visible", seen), ("hidden", ~seen))

    def ratio(err_sq: float, spread_sq: float) -> float:
        return float(np.sqrt(err_sq / spread_sq)) if spread_sq > 0 else 1.0

    def group_factors(joint: np.ndarray) -> dict[str, float]:
        return {name: ratio(np.mean(error[m] ** 2), np.mean((spread * joint)[m] ** 2))
                if m.any() else 1.0 for name, m in groups}

    joint = np.ones(len(joints))
    for _ in range(rounds):
        group = group_factors(joint)
        scaled = spread * np.where(seen, group["visible"], group["hidden"])
        ms = np.mean(scaled ** 2, axis=0)
        joint = np.array([ratio(e, s) for e, s in zip(np.mean(error ** 2, axis=0), ms)])
        has = ms > 0
        if has.any():
            joint[has] /= np.exp(np.mean(np.log(joint[has])))   # geometric mean 1
    group = group_factors(joint)
    full = np.ones(np.shape(spread_m)[1])
    full[joints] = joint
    out = {**group, "joint": [float(v) for v in full]}
    for name, m in groups:
        out[f"{name}_joints"] = int(m.sum())
    return out


def holdout_check(spreads: list, errors: list, visible: list) -> dict | None:
    """Per-stream raw spread, error, visible -> the calibration of the odd streams with factors
    fitted on the even ones: per group only, and per group x joint (what this script stores).
    None with fewer than 2 streams."""
    if len(spreads) < 2:
        return None
    joints = list(CALIBRATION_JOINTS)
    out = {"fitted_streams": len(spreads[0::2]), "checked_streams": len(spreads[1::2])}
    for name, rounds in (("group", 0), ("group_joint", 50)):
        s = fit_scales(*(np.concatenate(x[0::2]) for x in (spreads, errors, visible)), rounds)
        cal = [sp * np.where(v, s["visible"], s["hidden"]) * np.asarray(s["joint"])
               for sp, v in zip(spreads[1::2], visible[1::2])]
        r = calibration_report(np.concatenate(cal)[:, joints], np.concatenate(errors[1::2])[:, joints],
                               np.concatenate(visible[1::2])[:, joints])
        out[name] = {k: r[k] for k in ("hidden_visible_ratio", "rank_correlation", "coverage_k1",
                                       "coverage_k2", "coverage_k3")}
    return out


def calibrate(checkpoint: str, out: str, dataset: str | None = None, stream_frames: int = 150,
              stream_stride: int = 3, seed: int = 0) -> dict:
    model, config, extra = load_checkpoint(checkpoint)
    if config.model.variant == "mixste":
        raise ConfigError(f"{checkpoint}: a deterministic model has no spread to calibrate")
    evaluated = ev.load_model("model", checkpoint, "cpu")
    d = config.diffusion
    applied = (d.spread_scale_visible, d.spread_scale_hidden)
    applied_joint = np.asarray(d.spread_scale_joint or [1.0] * NUM_JOINTS)
    subset = ev.split_sequences(dataset or config.data.dataset, "validation")
    streams = ev.make_streams(subset, ev.WindowProtocol.of([evaluated]), seed, stream_frames,
                              stream_stride)
    spreads, errors, visible = [], [], []
    for st, (pose, spread) in zip(streams, ev.lift_streams(evaluated, streams, "cpu", seed)):
        seen = st.mask > 0                               # the published frame's input mask
        # undo a calibration already stored
        spreads.append(spread / np.where(seen, *applied) / applied_joint)
        errors.append(np.linalg.norm(pose - st.pose3d_m, axis=-1))
        visible.append(seen)
    scales = fit_scales(np.concatenate(spreads), np.concatenate(errors), np.concatenate(visible))
    calibrated = dataclasses.replace(config, diffusion=dataclasses.replace(
        d, spread_scale_visible=scales["visible"], spread_scale_hidden=scales["hidden"],
        spread_scale_joint=tuple(scales["joint"])))
    kept = {k: v for k, v in extra.items() if k not in ("normalisation", "metrics")}
    kept["spread_calibration"] = {"split": "validation", "streams": len(streams),
                                  "stream_frames": stream_frames, "stream_stride": stream_stride,
                                  "seed": seed, **scales,
                                  "holdout": holdout_check(spreads, errors, visible)}
    save_checkpoint(out, model, calibrated, kept, metrics=extra.get("metrics", {}))
    return kept["spread_calibration"]


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_torch()
    try:
        result = calibrate(args.checkpoint, args.out or args.checkpoint, args.dataset,
                           args.stream_frames, args.stream_stride, args.seed)
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"calibrate_spread.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    print(f"wrote {args.out or args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

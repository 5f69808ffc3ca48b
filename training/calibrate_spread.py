#!/usr/bin/env python3
"""Fit the published spread's calibration on the VALIDATION split and store it in a checkpoint.

    python training/calibrate_spread.py models/diffhpe_wrapper.pt [--out OTHER.pt]

The hypotheses of a few-step sampler trained on a proper score still come out too narrow where
it learned least (hidden joints). Like temperature scaling of a classifier, two factors, one for
joints observed and one for joints missing in the published frame, rescale the spread so that on
the validation split's published streams (evaluation.make_streams: one camera per sequence,
lasting limb occlusions, the node's noise and spread averaging) its mean square equals the mean
squared error of the published joint in each group:

    scale_g = sqrt(mean(error^2) / mean(spread^2))   over the non-root joints of group g

The factors go into the checkpoint config (diffusion.spread_scale_visible / _hidden; export.py
bakes them into the graph and records them in the manifest). Never fit them on the test split.
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
from diffhpe_models.threads import configure_torch
from diffhpe_models.uncertainty import CALIBRATION_JOINTS


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


def fit_scales(spread_m: np.ndarray, error_m: np.ndarray, visible: np.ndarray) -> dict:
    """(N, 17) raw spread, error (metres), visible (bool) -> {"visible": s, "hidden": s, counts}:
    per group, sqrt(mean(error^2) / mean(spread^2)) over the non-root joints (1.0 for a group with
    no joint or no spread)."""
    joints = list(CALIBRATION_JOINTS)
    spread, error = np.asarray(spread_m)[:, joints], np.asarray(error_m)[:, joints]
    seen = np.asarray(visible, dtype=bool)[:, joints]
    out = {}
    for name, group in (("visible", seen), ("hidden", ~seen)):
        s2 = float(np.mean(spread[group] ** 2)) if group.any() else 0.0
        out[name] = float(np.sqrt(np.mean(error[group] ** 2) / s2)) if s2 > 0 else 1.0
        out[f"{name}_joints"] = int(group.sum())
    return out


def calibrate(checkpoint: str, out: str, dataset: str | None = None, stream_frames: int = 150,
              stream_stride: int = 3, seed: int = 0) -> dict:
    model, config, extra = load_checkpoint(checkpoint)
    if config.model.variant == "mixste":
        raise ConfigError(f"{checkpoint}: a deterministic model has no spread to calibrate")
    evaluated = ev.load_model("model", checkpoint, "cpu")
    applied = (config.diffusion.spread_scale_visible, config.diffusion.spread_scale_hidden)
    subset = ev.split_sequences(dataset or config.data.dataset, "validation")
    streams = ev.make_streams(subset, ev.WindowProtocol.of([evaluated]), seed, stream_frames,
                              stream_stride)
    spreads, errors, visible = [], [], []
    for st, (pose, spread) in zip(streams, ev.lift_streams(evaluated, streams, "cpu", seed)):
        seen = st.mask > 0                               # the published frame's input mask
        spreads.append(spread / np.where(seen, *applied))   # undo a calibration already stored
        errors.append(np.linalg.norm(pose - st.pose3d_m, axis=-1))
        visible.append(seen)
    scales = fit_scales(np.concatenate(spreads), np.concatenate(errors), np.concatenate(visible))
    calibrated = dataclasses.replace(config, diffusion=dataclasses.replace(
        config.diffusion, spread_scale_visible=scales["visible"], spread_scale_hidden=scales["hidden"]))
    kept = {k: v for k, v in extra.items() if k not in ("normalisation", "metrics")}
    kept["spread_calibration"] = {"split": "validation", "streams": len(streams),
                                  "stream_frames": stream_frames, "stream_stride": stream_stride,
                                  "seed": seed, **scales}
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

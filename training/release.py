#!/usr/bin/env python3
"""Make a shipped checkpoint from a training run's: weights, config and fps, no optimizer state,
with the run-time sampler defaults chosen on the validation split.

    python training/release.py runs/diffhpe_wrapper/best.pt models/diffhpe_wrapper.pt \
        --aggregation conditioner --hypotheses 3 --steps 2

The sampler settings are the checkpoint's run-time defaults (what evaluate.py, the node and
export.py run when not told otherwise); they are checked against the trained schedule and the
model (sampler.SamplerSettings, config.validate) before anything is written. The training history
stays in `extra.released_from` (epoch and validation numbers), not the optimizer.
Paths the config records (data.dataset, model.conditioner_checkpoint) that lie under the working
directory are written relative to it, so a run made from another directory ships no machine's
absolute path. `--dataset` names the dataset file for a run trained elsewhere (a GPU machine's
own copy of the same splits), so that calibration and evaluation here find it.
Exit codes: 0 written, 2 bad arguments or checkpoint (nothing written).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from diffhpe_models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diffhpe_models.config import AGGREGATIONS, ConfigError, validate
from diffhpe_models.sampler import SamplerSettings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a training run's best.pt / last.pt")
    p.add_argument("out", help="the shipped checkpoint to write (e.g. models/diffhpe_wrapper.pt)")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's)")
    p.add_argument("--hypotheses", type=int, help="H (default: the checkpoint's)")
    p.add_argument("--aggregation", choices=AGGREGATIONS, help="default: the checkpoint's")
    p.add_argument("--dataset", help="the data.dataset to record (default: the checkpoint's); must exist")
    return p.parse_args(argv)


def _relative(path: str) -> str:
    """`path` relative to the working directory when it lies under it, else unchanged."""
    p = Path(path)
    if p.is_absolute() and p.is_relative_to(Path.cwd()):
        return str(p.relative_to(Path.cwd()))
    return path


def release(checkpoint: str, out: str, steps: int | None = None, hypotheses: int | None = None,
            aggregation: str | None = None, dataset: str | None = None) -> dict:
    """Write `out`; returns the sampler settings it records. Raises CheckpointError/ConfigError."""
    if dataset is not None and not Path(dataset).is_file():
        raise ConfigError(f"--dataset {dataset}: no such file")
    model, config, extra = load_checkpoint(checkpoint)
    if config.model.variant == "mixste":
        if any(v is not None for v in (steps, hypotheses, aggregation)):
            raise ConfigError("a 'mixste' checkpoint is deterministic: it has no sampler settings")
        settings = None
    else:
        settings = SamplerSettings.from_config(config.diffusion, steps=steps, hypotheses=hypotheses,
                                               aggregation=aggregation)
        diffusion = dataclasses.replace(config.diffusion, sampler=settings.sampler,
                                        steps=settings.steps, hypotheses=settings.hypotheses,
                                        eta=settings.eta, aggregation=settings.aggregation)
        config = dataclasses.replace(config, diffusion=diffusion)
        validate(config)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, dataset=_relative(dataset or config.data.dataset)),
        model=dataclasses.replace(config.model,
                                  conditioner_checkpoint=_relative(config.model.conditioner_checkpoint)))
    training = extra.get("training") or {}
    kept = {k: v for k, v in extra.items() if k not in ("training", "normalisation", "metrics")}
    metrics = extra.get("metrics", {})
    kept["released_from"] = {"checkpoint": str(checkpoint), "metrics": metrics,
                             "epochs_trained": len(training.get("history", [])) or None}
    save_checkpoint(out, model, config, kept, metrics=metrics)
    return settings.as_dict() if settings else {}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        settings = release(args.checkpoint, args.out, args.steps, args.hypotheses, args.aggregation,
                           args.dataset)
    except (CheckpointError, ConfigError) as e:
        print(f"release.py: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}" + (f" (sampler {settings})" if settings else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

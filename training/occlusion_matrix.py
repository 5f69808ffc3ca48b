#!/usr/bin/env python3
"""Train one MixSTE and one DiffHPE-Wrapper per occlusion pattern, then evaluate the matrix.

    python training/occlusion_matrix.py --runs runs/occlusion --device cuda [--epochs N]
        [--configs mixste=training/configs/mixste.yaml \\
                   diffhpe_wrapper=training/configs/diffhpe_wrapper.yaml]
        [--patterns none random ...] [--force] [--skip-training] [--split test] [--stride 1]

For each pattern P (clean + the five of DiffHPE) it writes RUNS/P/<model>/derived.yaml - the
variant's YAML with data.occlusion = P and, for the Wrapper, model.conditioner_checkpoint = the
MixSTE trained on the same pattern - and runs training/train.py on it. A run whose last.pt has
reached the epoch count is skipped, an interrupted one resumes from its last.pt (--force trains
everything afresh), so the command can simply be run again after an interruption.
Then every model is tested on every pattern: RUNS/occlusion_matrix.json and .png. The full report
(training/evaluate.py --occlusion-runs RUNS) evaluates the same checkpoints.
"""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np

from diffhpe_models.atomic import atomic_write_json
from diffhpe_models.checkpoint import read_checkpoint
from diffhpe_models.config import load_config, save_config
from diffhpe_models.evaluation import MATRIX_MODELS, matrix_checkpoint, occlusion_matrix, split_sequences
from diffhpe_models.evaluation_report import plot_occlusion_heatmaps, to_jsonable
from diffhpe_models.occlusion import PATTERNS

TRAIN_SCRIPT = Path(__file__).resolve().parent / "train.py"
DEFAULT_CONFIGS = {kind: f"training/configs/{kind}.yaml" for kind in MATRIX_MODELS}


def derived_config(base_yaml: str | Path, kind: str, pattern: str, runs_dir: str | Path):
    """The variant's config trained on `pattern` (the Wrapper on the MixSTE of that pattern)."""
    config = load_config(base_yaml)
    if config.model.variant != kind:
        raise ValueError(f"{base_yaml}: model.variant is {config.model.variant!r}, expected "
                         f"{kind!r} for the {kind} row of the matrix")
    model = config.model
    if kind == "diffhpe_wrapper":
        model = dataclasses.replace(model, conditioner_checkpoint=str(
            matrix_checkpoint(runs_dir, pattern, "mixste")))
    return dataclasses.replace(config, name=f"{config.name}_{pattern}", model=model,
                               data=dataclasses.replace(config.data, occlusion=pattern))


def epochs_done(out_dir: Path) -> int:
    """Epochs completed by the run in `out_dir` (from its last.pt; 0 when there is none)."""
    last = out_dir / "last.pt"
    if not last.is_file():
        return 0
    return int(read_checkpoint(last)["extra"]["training"]["epoch"]) + 1


def train_one(config_path: Path, out_dir: Path, device: str, epochs: int | None,
              resume: bool = False) -> None:
    """Run training/train.py in a subprocess (its own process: memory freed between runs)."""
    cmd = [sys.executable, str(TRAIN_SCRIPT), "--config", str(config_path), "--out", str(out_dir),
           "--device", device, "--no-progress"]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if resume:
        cmd += ["--resume", str(out_dir / "last.pt")]
    print("+ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise SystemExit(f"training failed (exit {result.returncode}): {' '.join(cmd)}")
    if not (out_dir / "best.pt").is_file():
        raise SystemExit(f"{out_dir}: training finished without writing best.pt")


def train_matrix(configs: dict[str, str], runs_dir: Path, patterns, device: str,
                 epochs: int | None, force: bool) -> None:
    """Train (or finish) every (pattern, model) run; MixSTE before the Wrapper of its pattern."""
    kinds = sorted(configs, key=lambda k: k != "mixste")
    for pattern in patterns:
        for kind in kinds:
            out_dir = runs_dir / pattern / kind
            config = derived_config(configs[kind], kind, pattern, runs_dir)
            target = epochs if epochs is not None else config.train.epochs
            done = 0 if force else epochs_done(out_dir)
            if done >= target and matrix_checkpoint(runs_dir, pattern, kind).is_file():
                print(f"= {out_dir}: {done} epochs done, not retrained", flush=True)
                continue
            config_path = out_dir / "derived.yaml"
            save_config(config, config_path)
            train_one(config_path, out_dir, device, epochs, resume=done > 0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", default="runs/occlusion", help="run directory of the matrix")
    p.add_argument("--configs", nargs="+", metavar="MODEL=YAML",
                   default=[f"{k}={v}" for k, v in DEFAULT_CONFIGS.items()],
                   help=f"variant configs; models: {', '.join(MATRIX_MODELS)}")
    p.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS)
    p.add_argument("--device", default="cpu", help="torch device for training and evaluation")
    p.add_argument("--epochs", type=int, help="override train.epochs of every run")
    p.add_argument("--force", action="store_true", help="retrain runs that have a best.pt")
    p.add_argument("--skip-training", action="store_true", help="only evaluate")
    p.add_argument("--split", default="test", help="split the matrix is evaluated on")
    p.add_argument("--dataset", help="dataset file (default: the MixSTE config's data.dataset)")
    p.add_argument("--stride", type=int, default=1, help="evaluate every k-th window")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    configs = {}
    for item in args.configs:
        kind, sep, path = item.partition("=")
        if not sep or kind not in MATRIX_MODELS:
            raise SystemExit(f"--configs: expected MODEL=YAML with MODEL in {MATRIX_MODELS}, "
                             f"got {item!r}")
        configs[kind] = path
    if "diffhpe_wrapper" in configs and "mixste" not in configs:
        raise SystemExit("--configs: the Wrapper rows need the MixSTE of the same pattern; "
                         "give a mixste config too")
    runs_dir = Path(args.runs)
    if not args.skip_training:
        train_matrix(configs, runs_dir, args.patterns, args.device, args.epochs, args.force)
    dataset = args.dataset or load_config(next(iter(configs.values()))).data.dataset
    subset = split_sequences(dataset, args.split)
    result = occlusion_matrix(runs_dir, subset, args.device, args.patterns, kinds=tuple(configs),
                              stride=args.stride, batch_size=args.batch_size, seed=args.seed)
    result.update(split=args.split, dataset=str(dataset), stride=args.stride, seed=args.seed)
    atomic_write_json(runs_dir / "occlusion_matrix.json", to_jsonable(result))
    mats = {k: np.array([[np.nan if v is None else v for v in row] for row in m["matrix_mm"]])
            for k, m in result["models"].items()}
    plot_occlusion_heatmaps(mats, args.patterns, runs_dir / "occlusion_matrix.png")
    for kind, m in result["models"].items():
        print(f"{kind}: matched {m['diagonal_mm']:.1f} mm, mismatched {m['off_diagonal_mm']:.1f} "
              f"mm, degradation {m['degradation_mm']:+.1f} mm"
              if m["degradation_mm"] is not None else f"{kind}: too few cells for degradation")
    print(f"wrote {runs_dir / 'occlusion_matrix.json'}, {runs_dir / 'occlusion_matrix.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

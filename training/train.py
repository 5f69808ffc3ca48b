#!/usr/bin/env python3
"""Train one variant (MixSTE, DiffHPE-2D, DiffHPE-Wrapper) from a YAML config.

    python training/train.py --config training/configs/mixste.yaml [--out runs/mixste]
        [--resume runs/mixste/last.pt] [--device cuda|cpu] [--epochs N] [--no-progress]
    torchrun --nproc_per_node=N training/train.py --config ...     # multi-GPU / multi-node

Writes OUT/config.yaml, OUT/log.csv (per epoch: train loss, validation MPJPE / P-MPJPE of the
few-step sampler), OUT/last.pt (every epoch; --resume continues exactly), OUT/best.pt (best
validation MPJPE), OUT/tensorboard/ if tensorboard is installed. Train the MixSTE first: the
Wrapper's config names its checkpoint (model.conditioner_checkpoint).
"""
from __future__ import annotations

import argparse
import sys

from diffhpe_models.checkpoint import CheckpointError
from diffhpe_models.config import ConfigError, load_config
from diffhpe_models.dataset import DatasetError
from diffhpe_models.training import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="training/configs/<variant>.yaml")
    parser.add_argument("--out", help="output directory (default runs/<config name>)")
    parser.add_argument("--resume", help="a last.pt to continue from")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda if available")
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or epoch lines")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    try:
        config = load_config(args.config)
        result = train(config, args.out or f"runs/{config.name}", resume=args.resume,
                       device=args.device, epochs=args.epochs, progress=not args.no_progress)
    except (ConfigError, CheckpointError, DatasetError, ValueError, FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    best = result["best"]
    if result["rank"] == 0 and best is not None:
        print(f"best epoch {best['epoch'] + 1}: val MPJPE {best['val_mpjpe_mm']:.1f} mm, "
              f"P-MPJPE {best['val_p_mpjpe_mm']:.1f} mm"
              + (f", energy score {best['val_energy_mm']:.2f} mm" if best.get("val_energy_mm") is not None
                 else "") + f" -> {result['out_dir']}/best.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Evaluate trained lifters and write the report (docs/evaluation.md, .json, docs/img/*.png).

    python training/evaluate.py --checkpoints mixste=runs/mixste/best.pt \\
        diffhpe_2d=runs/diffhpe_2d/best.pt diffhpe_wrapper=runs/diffhpe_wrapper/best.pt \\
        [--occlusion-runs runs/occlusion] [--split test] [--device cpu|cuda] [--out docs]

The logic lives in diffhpe_models.evaluation (numbers) and diffhpe_models.evaluation_report
(markdown, JSON, figures). The same command gives the same numbers (fixed seeds).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

from diffhpe_models.checkpoint import CheckpointError
from diffhpe_models.config import ConfigError
from diffhpe_models.dataset import DatasetError
from diffhpe_models.evaluation import SAMPLER_HYPOTHESES, SAMPLER_STEPS, EvaluationSettings, run_evaluation
from diffhpe_models.evaluation_report import write_report
from diffhpe_models.occlusion import PATTERNS


def named_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoints", nargs="+", type=named_path, required=True, metavar="NAME=PATH",
                   help="checkpoints by report name; the claims compare 'diffhpe_wrapper' with "
                        "'mixste', the sampler study runs on 'diffhpe_wrapper'")
    p.add_argument("--occlusion-runs", help="run directory of training/occlusion_matrix.py "
                                            "(<pattern>/<model>/best.pt); omit to skip the matrix")
    p.add_argument("--split", default="test", help="dataset split to evaluate "
                                                   "(model selection belongs on validation)")
    p.add_argument("--dataset", help="dataset file (default: the first checkpoint's data.dataset)")
    p.add_argument("--device", default="cpu", help="torch device for the evaluation: cpu, cuda")
    p.add_argument("--out", default="docs", help="report directory")
    p.add_argument("--stride", type=positive, default=1,
                   help="evaluate every k-th window (1 = every window of the split)")
    p.add_argument("--matrix-stride", type=positive,
                   help="stride of the occlusion matrix (default: --stride)")
    p.add_argument("--sampler-stride", type=positive,
                   help="stride of the sampler grid (default: --stride); the 50-step, H=10 cells "
                        "cost ~100x the default sampler")
    p.add_argument("--batch-size", type=positive, default=256, help="windows per forward pass")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers making windows")
    p.add_argument("--seed", type=int, default=0, help="seed of cameras, occlusions and noise")
    p.add_argument("--mirror", nargs="+", default=[], metavar="NAME",
                   help="also lift these models with their mirror image (the node's `mirror` "
                        "parameter), as rows 'NAME+mirror'")
    p.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS,
                   help="occlusion patterns of the matrix")
    p.add_argument("--sampler-steps", nargs="+", type=positive, default=list(SAMPLER_STEPS))
    p.add_argument("--sampler-hypotheses", nargs="+", type=positive,
                   default=list(SAMPLER_HYPOTHESES))
    p.add_argument("--timing-device", default="cpu", help="device of the latency measurement")
    p.add_argument("--timing-threads", type=positive, default=2,
                   help="torch CPU threads for the latency measurement (the deployment CPU has 2)")
    p.add_argument("--timing-seconds", type=float, default=1.0,
                   help="measure each sampler setting for at least this long (and 10 runs)")
    p.add_argument("--examples", type=int, default=3, help="windows in the example figure")
    p.add_argument("--stream-frames", type=int, default=300,
                   help="frames per published stream (0: skip the stream and calibration study)")
    p.add_argument("--stream-stride", type=positive, default=1,
                   help="every k-th sequence of the split as a stream")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    names = [n for n, _ in args.checkpoints]
    if len(set(names)) != len(names):
        raise SystemExit(f"--checkpoints: a name is given twice: {names}")
    settings = EvaluationSettings(
        checkpoints=dict(args.checkpoints), mirror=tuple(args.mirror), dataset=args.dataset,
        split=args.split,
        device=args.device, stride=args.stride, batch_size=args.batch_size, seed=args.seed,
        workers=args.workers, occlusion_runs=args.occlusion_runs, patterns=tuple(args.patterns),
        matrix_stride=args.matrix_stride, sampler_steps=tuple(args.sampler_steps),
        sampler_hypotheses=tuple(args.sampler_hypotheses), sampler_stride=args.sampler_stride,
        timing_device=args.timing_device, timing_threads=args.timing_threads,
        timing_seconds=args.timing_seconds, examples=args.examples,
        stream_frames=args.stream_frames, stream_stride=args.stream_stride,
        extra={"command": "python training/evaluate.py " + shlex.join(argv)})
    t0 = time.perf_counter()
    try:
        results = run_evaluation(settings)
    except (CheckpointError, ConfigError, DatasetError, ValueError, FileNotFoundError) as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    results["seconds"] = round(time.perf_counter() - t0, 1)
    paths = write_report(results, args.out)
    for claim in results["claims"]:
        print(f"[{ {True: 'holds', False: 'fails', None: 'n/a'}[claim['holds']]}] "
              f"{claim['claim']}: {claim['evidence']}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

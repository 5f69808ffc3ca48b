#!/usr/bin/env python3
"""Accuracy against lifting cost of model sizes: the table the shipped size is chosen from.

    python training/size_table.py --size "MixSTE 32x4=training/configs/mixste.yaml:/work/runs/mixste" \\
        --size "MixSTE 48x4=/work/runs/mixste48.yaml:/work/runs/mixste48" \\
        --size "Wrapper (MixSTE 32x4 + C32x3, 2 steps x H5)=training/configs/diffhpe_wrapper.yaml" \\
        [--epoch 5] [--rounds 30] [--out docs/size_table.md]

Per size: parameters, GFLOP of the exported graph for one person-window, ONNX Runtime latency of
one person (1 intra-op thread, the node's default; sizes timed in turns, so load hits all alike),
and - where a run directory is given - the validation MPJPE / P-MPJPE from its log.csv at epoch
`--epoch` (the same training budget for every size) and its best. The machine's load is printed
under the table. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_size(text: str) -> tuple[str, Path, Path | None]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=CONFIG[:RUN_DIR], got {text!r}")
    config, _, run = rest.partition(":")
    return name, Path(config), Path(run) if run else None


def validation_at(run: Path | None, epoch: int) -> tuple[str, str]:
    """('MPJPE / P-MPJPE' at `epoch` (1-based), 'best MPJPE (epoch)') from a run's log.csv."""
    if run is None or not (run / "log.csv").is_file():
        return "-", "-"
    rows = list(csv.DictReader(open(run / "log.csv")))
    at = next((r for r in rows if int(r["epoch"]) + 1 == epoch), None)
    best = min(rows, key=lambda r: float(r["val_mpjpe_mm"])) if rows else None
    fmt = lambda r: f"{float(r['val_mpjpe_mm']):.1f} / {float(r['val_p_mpjpe_mm']):.1f}"  # noqa: E731
    return (fmt(at) if at else f"(only {len(rows)} epochs)",
            f"{float(best['val_mpjpe_mm']):.1f} (epoch {int(best['epoch']) + 1} of {len(rows)})" if best else "-")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=parse_size, action="append", required=True,
                   metavar="NAME=CONFIG[:RUN_DIR]")
    p.add_argument("--epoch", type=int, default=5, help="compare validation at this epoch")
    p.add_argument("--rounds", type=int, default=30, help="timed turns per size")
    p.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = p.parse_args(argv)

    # The thread policy (OMP_WAIT_POLICY) must be in place before torch loads.
    from diffhpe_models.threads import configure_torch  # isort: skip
    import onnxruntime as ort  # isort: skip
    import torch  # isort: skip

    from diffhpe_models.atomic import atomic_write_text
    from diffhpe_models.config import ConfigError, load_config
    from diffhpe_models.export import example_inputs, export_pipeline_onnx, graph_flops
    from diffhpe_models.lifter import LiftingPipeline, build_model
    from diffhpe_models.runtime import session_options

    configure_torch(1)
    rows, sessions = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, config_path, run) in enumerate(args.size):
            try:
                config = load_config(config_path)
            except ConfigError as e:
                print(f"size_table: {e}", file=sys.stderr)
                return 2
            torch.manual_seed(0)
            model = build_model(config)  # untrained: the cost does not depend on the weights
            pipeline = LiftingPipeline(model, config).eval()
            path = Path(tmp) / f"size{k}.onnx"
            onnx_model = export_pipeline_onnx(pipeline, path)
            flops = graph_flops(onnx_model, persons=1)["flops"]
            session = ort.InferenceSession(str(path), session_options(ort, 1),
                                           providers=["CPUExecutionProvider"])
            example = example_inputs(config.data.window, pipeline.hypotheses, persons=1)
            feed = {n: example[n] for n in pipeline.input_names}
            for _ in range(5):
                session.run(None, feed)
            sessions.append((session, feed, []))
            params = sum(p.numel() for p in model.parameters())
            rows.append([name, f"{params / 1e6:.2f} M", f"{flops / 1e9:.3f}", *validation_at(run, args.epoch)])
        for _ in range(args.rounds):  # in turns: every size sees the same load
            for session, feed, times in sessions:
                for _ in range(3):
                    t0 = time.perf_counter()
                    session.run(None, feed)
                    times.append((time.perf_counter() - t0) * 1e3)
    for row, (_, _, times) in zip(rows, sessions):
        row[3:3] = [f"{np.percentile(times, 50):.1f}", f"{np.percentile(times, 90):.1f}"]
    header = ["size", "parameters", "GFLOP / person-window", "1 person p50 ms", "p90 ms",
              f"val MPJPE / P-MPJPE at epoch {args.epoch}", "best val MPJPE"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    load = os.getloadavg()
    lines += ["", f"ONNX Runtime, 1 intra-op thread, {args.rounds * 3} calls per size in turns; "
                  f"load average {load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} CPUs."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, "# Model sizes: accuracy against cost\n\nWritten by "
                          "`training/size_table.py` " + " ".join(
                              f'--size "{n}={c}' + (f':{r}"' if r else '"') for n, c, r in args.size)
                          + f" --epoch {args.epoch}\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

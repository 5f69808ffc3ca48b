"""Export a checkpoint's whole run-time computation to ONNX (+ manifest), then TensorRT engines.

    python training/export.py --checkpoint runs/wrapper/best.pt --steps 2 --hypotheses 5 \
        --out models/diffhpe_lifter

writes models/diffhpe_lifter.onnx and models/diffhpe_lifter.onnx.json (what the graph runs: the
sampler settings, the input normalisation of the checkpoint's config - "screen": the graph takes
image_wh, "rays": intrinsics), and, where TensorRT and a CUDA GPU are present,
models/diffhpe_lifter.fp32.engine and .fp16.engine with their manifests.
Without TensorRT it says so, prints the equivalent trtexec commands and exits 0.

On the target (e.g. a Jetson, engines are per GPU and TensorRT version), from the shipped graph:
    python training/export.py --from-onnx models/diffhpe_lifter.onnx --engine fp16
and for an engine built there with the printed trtexec command, write its manifest with:
    python training/export.py --register-engine models/diffhpe_lifter.fp16.engine \
        --from-onnx models/diffhpe_lifter.onnx
Exit codes: 0 done (engines skipped counts as done), 1 export or engine build failed, 2 bad
arguments (including a --window the checkpoint was not trained for).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffhpe_models import export
from diffhpe_models.checkpoint import CheckpointError, read_checkpoint
from diffhpe_models.config import AGGREGATIONS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help=".pt checkpoint to export")
    src.add_argument("--from-onnx", type=Path,
                     help="an exported .onnx (with manifest): only build/register engines")
    p.add_argument("--out", type=Path,
                   help="with --checkpoint: output path without extension (models/NAME -> "
                        "models/NAME.onnx)")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint config's); "
                                             "the graph runs a deterministic DDIM (eta 0)")
    p.add_argument("--hypotheses", type=int, help="H (default: the checkpoint config's)")
    p.add_argument("--sampler", choices=("ddim", "ddpm"),
                   help="default: the checkpoint config's; only a deterministic DDIM exports")
    p.add_argument("--eta", type=float, help="DDIM noise scale (default: the checkpoint "
                                             "config's); only 0 exports")
    p.add_argument("--aggregation", choices=AGGREGATIONS,
                   help="default: the checkpoint config's")
    p.add_argument("--window", type=int,
                   help="L; must be the checkpoint's own (the temporal weights are per length)")
    p.add_argument("--engine", choices=("both", "fp32", "fp16", "none"), default="both",
                   help="TensorRT engines to build when TensorRT and a GPU are present")
    p.add_argument("--register-engine", type=Path,
                   help="with --from-onnx: write the manifest of this trtexec-built engine")
    p.add_argument("--min-persons", type=int, default=export.MIN_PERSONS)
    p.add_argument("--opt-persons", type=int, default=export.OPT_PERSONS)
    p.add_argument("--max-persons", type=int, default=export.MAX_PERSONS)
    args = p.parse_args(argv)
    if args.checkpoint is not None and args.out is None:
        p.error("--checkpoint needs --out")
    if args.register_engine is not None and args.from_onnx is None:
        p.error("--register-engine needs --from-onnx (the graph the engine was built from)")
    return args


def export_onnx(args) -> tuple[Path | None, int]:
    """Export the checkpoint -> (.onnx path, 0), or (None, exit code) after printing why not."""
    onnx_path = args.out if args.out.suffix == ".onnx" else args.out.with_name(args.out.name + ".onnx")
    try:
        config = read_checkpoint(args.checkpoint)["config"]
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return None, 2
    if args.window is not None and args.window != config.data.window:
        print(f"error: --window {args.window}: {args.checkpoint} was trained for window "
              f"{config.data.window}; its temporal weights are per window length (train a model "
              "for that window instead)", file=sys.stderr)
        return None, 2
    try:
        result = export.export_checkpoint(args.checkpoint, onnx_path, args.steps, args.hypotheses,
                                          args.aggregation, sampler=args.sampler, eta=args.eta)
    except (export.ExportError, ValueError) as e:  # ValueError: ConfigError of steps/H/aggregation
        print(f"error: {e}", file=sys.stderr)
        return None, 1
    m = result.manifest
    print(f"wrote {result.path} ({m['bytes'] / 1e6:.2f} MB, {m['nodes']} nodes, opset {m['opset']}, "
          f"parity {m['parity_max_abs_diff_m']:.2e} m) and {result.manifest_path}")
    print(f"  {m['variant']}: L={m['window']} ({m['window_mode']}), sampler={m['sampler']}, "
          f"H={m['hypotheses']}, steps={m['steps']}, eta={m['eta']}, "
          f"aggregation={m['aggregation']}, fps={m['fps']}")
    guess = (f", without intrinsics: {m['intrinsics_guess_hfov_deg']} deg horizontal FOV guess"
             if m["input_normalisation"] == "rays" else "")
    print(f"  input normalisation {m['input_normalisation']!r}: the graph takes "
          f"{', '.join(m['inputs'])}{guess}")
    return result.path, 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.checkpoint is not None:
        onnx_path, code = export_onnx(args)
        if onnx_path is None:
            return code
    else:
        onnx_path = args.from_onnx
        try:
            export.read_manifest(onnx_path)
        except export.ManifestError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    if args.register_engine is not None:
        fp16 = args.engine == "fp16" or ".fp16." in args.register_engine.name
        try:
            reg = export.register_engine(args.register_engine, onnx_path, fp16=fp16)
        except (export.TensorRTUnavailable, export.ExportError, export.ManifestError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"wrote {reg.manifest_path}")
        return 0

    precisions = {"both": (False, True), "fp32": (False,), "fp16": (True,), "none": ()}[args.engine]
    for fp16 in precisions:
        try:
            built = export.build_tensorrt_engine(onnx_path, fp16=fp16,
                                                 min_persons=args.min_persons,
                                                 opt_persons=args.opt_persons,
                                                 max_persons=args.max_persons)
        except export.TensorRTUnavailable as e:
            print(f"TensorRT engine ({'fp16' if fp16 else 'fp32'}) not built: {e}")
            continue
        except export.ExportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"wrote {built.path} ({built.manifest['precision']}, TensorRT "
              f"{built.manifest['tensorrt_version']}, {built.manifest['gpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

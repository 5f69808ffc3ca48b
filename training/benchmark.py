"""Lifting latency benchmark (a benchmark, not a test): prints markdown tables.

    python training/benchmark.py                          # CPU, ~5 min on 2 cores
    python training/benchmark.py --quick                  # ~1 min, for quick checks
    python training/benchmark.py --out docs/benchmarks.md # also write them (lifting section)
    python training/benchmark.py --device cuda            # GPU: torch eager vs CUDA graphs

What it measures, each after a warm-up, as one `Lifter.lift` call per frame (noise drawing and
input checks included, as the node pays them): p50/p99/max latency and throughput; backends side
by side; scaling over persons, DDIM steps, hypotheses H and window L (each exported on the fly
into a temp dir, one factor at a time around the default); FLOPs per call of each exported graph
(MatMul/Gemm/Conv/Einsum) and the achieved fraction of the CPU's ~84 GFLOP/s practical peak;
peak RSS of a subprocess that loads the default graph and lifts 10,000 windows. It states the
real-time goals, the measured values, met/missed and by how much.

The model: --checkpoint (default models/diffhpe_lifter.pt); without one, an untrained model of
--config (default training/configs/diffhpe_wrapper.yaml): latency does not depend on the weights.
Default settings (steps, H, aggregation) are those of --onnx (default models/diffhpe_lifter.onnx,
the shipped graph) when it exists, else the checkpoint config's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PEAK_GFLOPS = 84.0  # practical fp32 peak of the 2-core CPU (reference/real-time-budget.md)
SECTION = "lifting-benchmark"  # the part of docs/benchmarks.md this script writes
GOAL_P99_MS, GOAL_FPS_4P, GOAL_RSS_MB, GOAL_SPEEDUP = 10.0, 30.0, 1000.0, 2.0
MIN_CALLS = 8


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=REPO / "models" / "diffhpe_wrapper.pt",
                   help="the shipped checkpoint (the torch rows, and the source of every export)")
    p.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "diffhpe_wrapper.yaml",
                   help="model of the untrained stand-in when there is no checkpoint")
    p.add_argument("--onnx", type=Path, default=REPO / "models" / "diffhpe_lifter.onnx",
                   help="the shipped graph: its settings are the defaults; used for the RSS run")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch / onnxruntime intra-op threads (default: all cores)")
    p.add_argument("--iterations", type=int, default=200, help="timed calls per measurement")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--max-seconds", type=float, default=6.0,
                   help="stop a measurement after this long (with at least 8 calls)")
    p.add_argument("--rss-windows", type=int, default=10_000)
    p.add_argument("--gpu-persons", type=int, default=8)
    p.add_argument("--quick", action="store_true",
                   help="few iterations, fewer settings, 2,000 RSS windows")
    p.add_argument("--out", type=Path, help="write the tables into this markdown file")
    p.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.iterations, args.warmup, args.max_seconds = 40, 5, 2.0
        args.rss_windows = min(args.rss_windows, 2_000)
    return args


# --- timing -------------------------------------------------------------------------------


@dataclass
class Timing:
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    calls: int
    calls_per_s: float


def lift_inputs(window: int, hypotheses: int, persons: int, seed: int = 0):
    from diffhpe_models.export import example_inputs

    ex = example_inputs(window, hypotheses, persons=persons, seed=seed)
    return ex["keypoints_px"], ex["mask"], ex["image_wh"]


def measure(lifter, persons: int, args) -> Timing:
    """Warm up, then time `lifter.lift` one call at a time, back to back.

    Warm-up stops after `args.warmup` calls or a quarter of `args.max_seconds`; timing after
    `args.iterations` calls or `args.max_seconds` (but at least MIN_CALLS calls), so that slow
    settings (torch eager, 16 persons, 10 steps) do not dominate the run time."""
    inputs = lift_inputs(lifter.window, lifter.hypotheses, persons)
    start = time.perf_counter()
    for _ in range(args.warmup):
        lifter.lift(*inputs)
        if time.perf_counter() - start > args.max_seconds / 4:
            break
    times = []
    start = time.perf_counter()
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        lifter.lift(*inputs)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > args.max_seconds and len(times) >= MIN_CALLS:
            break
    total = time.perf_counter() - start
    ms = np.array(times) * 1e3
    return Timing(float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max()),
                  float(ms.mean()), len(ms), len(ms) / total)


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --- models: one checkpoint, exported per setting ------------------------------------------


class Models:
    """The benchmark's checkpoint(s) and their exports, cached per (steps, H, L)."""

    def __init__(self, args, tmp: Path):
        from diffhpe_models.checkpoint import load_checkpoint, save_checkpoint
        from diffhpe_models.config import load_config
        from diffhpe_models.lifter import build_model

        self.tmp = tmp
        self.args = args
        if args.checkpoint.is_file():
            self.checkpoint = args.checkpoint
            self.label = f"`{args.checkpoint.relative_to(REPO) if args.checkpoint.is_relative_to(REPO) else args.checkpoint}`"
        else:
            config = load_config(args.config)
            self.checkpoint = save_checkpoint(tmp / "untrained.pt", build_model(config), config,
                                              extra={"fps": 30.0})
            self.label = (f"untrained model of `{args.config.name}` (no {args.checkpoint.name}; "
                          "latency does not depend on the weights)")
        model, self.config, _ = load_checkpoint(self.checkpoint)
        self.parameters = sum(p.numel() for p in model.parameters())
        d = self.config.diffusion
        self.defaults = {"steps": d.steps, "hypotheses": d.hypotheses,
                         "aggregation": d.aggregation, "window": self.config.data.window}
        self.shipped = None
        if args.onnx.is_file():
            from diffhpe_models.export import read_manifest

            m = read_manifest(args.onnx)
            self.shipped = args.onnx
            self.defaults.update({k: m[k] for k in ("steps", "hypotheses", "aggregation")})
            if m["window"] != self.config.data.window:
                raise SystemExit(f"{args.onnx}: window {m['window']} but {self.checkpoint} has "
                                 f"{self.config.data.window}")
        self._checkpoints = {self.config.data.window: self.checkpoint}
        self._exports: dict[tuple, Path] = {}

    def checkpoint_for(self, window: int) -> Path:
        """The checkpoint for window L: the real one, or an untrained copy of its config at L
        (the GCN's temporal weights are per window length)."""
        if window not in self._checkpoints:
            from diffhpe_models.checkpoint import save_checkpoint
            from diffhpe_models.config import from_dict, to_dict
            from diffhpe_models.lifter import build_model

            data = to_dict(self.config)
            data["data"]["window"] = window
            config = from_dict(data)
            self._checkpoints[window] = save_checkpoint(self.tmp / f"untrained_L{window}.pt",
                                                        build_model(config), config,
                                                        extra={"fps": 30.0})
        return self._checkpoints[window]

    def onnx(self, steps: int, hypotheses: int, window: int) -> Path:
        from diffhpe_models.export import export_checkpoint

        key = (steps, hypotheses, window)
        if key not in self._exports:
            out = self.tmp / f"lifter_s{steps}_h{hypotheses}_l{window}.onnx"
            # Latency does not need the 1e-4 m parity of a shipped export (tested there); a
            # reproj tie flipping between near-identical hypotheses must not stop the benchmark.
            export_checkpoint(self.checkpoint_for(window), out, steps, hypotheses,
                              self.defaults["aggregation"], parity_tolerance_m=1e-2)
            self._exports[key] = out
        return self._exports[key]

    def flops(self, steps: int, hypotheses: int, window: int, persons: int = 1) -> float:
        import onnx

        from diffhpe_models.export import graph_flops

        return float(graph_flops(onnx.load(self.onnx(steps, hypotheses, window)), persons)["flops"])


def load(models: Models, backend: str, args, steps=None, hypotheses=None, window=None, **kw):
    """A Lifter for one backend and setting ('torch', 'torch-1thread', 'torch-cudagraph',
    'torch-compile', 'onnxruntime', 'onnxruntime-1thread', 'onnxruntime-cuda')."""
    from diffhpe_models.runtime import TorchBackend, load_lifter

    steps = steps or models.defaults["steps"]
    hypotheses = hypotheses or models.defaults["hypotheses"]
    window = window or models.defaults["window"]
    if backend.startswith("onnxruntime"):
        threads = 1 if backend.endswith("1thread") else args.threads
        device = args.device if backend == "onnxruntime-cuda" else "cpu"
        return load_lifter(models.onnx(steps, hypotheses, window), backend="onnxruntime",
                           device=device, intra_op_threads=threads, **kw)
    threads = 1 if backend.endswith("1thread") else args.threads
    lifter = load_lifter(models.checkpoint_for(window), backend="torch", device=args.device,
                         steps=steps, hypotheses=hypotheses,
                         aggregation=models.defaults["aggregation"], intra_op_threads=threads,
                         cuda_graphs=backend == "torch-cudagraph", **kw)
    if backend == "torch-compile":
        import torch

        compiled = torch.compile(lifter.backend.pipeline, mode="max-autotune-no-cudagraphs")
        lifter.backend = TorchBackend(compiled, device=args.device)
        lifter.backend_name = lifter.backend.name = "torch-compile"
    return lifter


# --- sections -----------------------------------------------------------------------------


def section_backends(models: Models, args, results: dict) -> str:
    cuda = args.device.startswith("cuda")
    if cuda:
        backends = ["torch", "torch-cudagraph", "torch-compile", "onnxruntime"]
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            backends.append("onnxruntime-cuda")
        persons_list = [1, args.gpu_persons]
    else:
        backends = ["torch", "torch-1thread", "onnxruntime", "onnxruntime-1thread"]
        persons_list = [1, 4]
    rows = []
    for backend in backends:
        try:
            lifter = load(models, backend, args)
        except Exception as e:  # torch.compile in particular may not work everywhere
            rows.append([backend, "-", f"not available: {type(e).__name__}: {e}"[:120], "", "", "", "", ""])
            continue
        for persons in persons_list:
            try:
                t = measure(lifter, persons, args)
            except Exception as e:
                rows.append([backend, persons, f"failed: {type(e).__name__}: {e}"[:120], "", "", "", "", ""])
                continue
            results[(backend, persons)] = t
            rows.append([lifter.backend_name + (" (1 thread)" if backend.endswith("1thread") else ""),
                         persons, t.p50_ms, t.p99_ms, t.max_ms, t.calls_per_s, t.calls_per_s * persons,
                         t.calls])
    d = models.defaults
    head = (f"### Backends side by side ({args.device}, steps={d['steps']}, H={d['hypotheses']}, "
            f"L={d['window']}, {args.threads} threads unless noted)\n\n")
    return head + table(["backend", "persons", "p50 ms", "p99 ms", "max ms", "calls/s",
                         "person-windows/s", "timed calls"], rows)


def scaling_backend(args) -> str:
    return "torch-cudagraph" if args.device.startswith("cuda") else "onnxruntime"


def section_scaling(models: Models, args, results: dict) -> str:
    backend = scaling_backend(args)
    d = models.defaults
    cuda = args.device.startswith("cuda")
    out = [f"### Scaling ({backend}, one factor at a time around steps={d['steps']}, "
           f"H={d['hypotheses']}, L={d['window']}, 1 person unless varied)"]
    flop_headers = ["GFLOP/call", "GFLOP/s"] + ([] if cuda else ["% of 84 GFLOP/s"])

    def flop_cells(flops, t):
        rate = flops / (t.p50_ms * 1e-3) / 1e9
        return [flops / 1e9, rate] + ([] if cuda else [100 * rate / PEAK_GFLOPS])

    # Persons: one graph, dynamic axis.
    lifter = load(models, backend, args)
    rows = []
    for persons in ([1, 4, 16] if args.quick else [1, 2, 4, 8, 16]):
        t = measure(lifter, persons, args)
        results[("persons", persons)] = t
        flops = models.flops(d["steps"], d["hypotheses"], d["window"], persons)
        rows.append([persons, t.p50_ms, t.p99_ms, t.max_ms, t.p50_ms / persons,
                     t.calls_per_s * persons, *flop_cells(flops, t)])
    out.append(table(["persons", "p50 ms", "p99 ms", "max ms", "p50 ms/person",
                      "person-windows/s", *flop_headers], rows))

    settings = [("steps", [1, 2] if args.quick else [1, 2, 5, 10]),
                ("hypotheses", [1, 5] if args.quick else [1, 5, 10]),
                ("window", [d["window"]] if args.quick else sorted({d["window"], 27, 81}))]
    for name, values in settings:
        rows = []
        for value in values:
            kw = {"steps": d["steps"], "hypotheses": d["hypotheses"], "window": d["window"]}
            kw[name] = value
            t0 = time.perf_counter()
            lifter = load(models, backend, args, **kw)
            prepared_s = time.perf_counter() - t0
            t = measure(lifter, 1, args)
            flops = models.flops(kw["steps"], kw["hypotheses"], kw["window"])
            note = "" if kw["window"] == models.config.data.window or name != "window" else " (untrained)"
            rows.append([f"{value}{note}", t.p50_ms, t.p99_ms, t.max_ms, t.calls_per_s,
                         *flop_cells(flops, t), prepared_s])
        out.append(table([name, "p50 ms", "p99 ms", "max ms", "calls/s", *flop_headers,
                          "export+load s"], rows))
    return "\n\n".join(out)


def rss_child(onnx_path: Path, windows: int, threads: int) -> int:
    """Subprocess: load the graph, lift `windows` single-person windows, report RSS (MiB)."""
    from diffhpe_models.runtime import load_lifter

    def status_mib(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mib() -> float:
        return status_mib("VmRSS")

    lifter = load_lifter(onnx_path, backend="onnxruntime", intra_op_threads=threads)
    inputs = [lift_inputs(lifter.window, lifter.hypotheses, 1, seed=i) for i in range(8)]
    lifter.lift(*inputs[0])
    report = {"after_load_mib": rss_mib(), "torch_imported": "torch" in sys.modules}
    start = time.perf_counter()
    for i in range(1, windows + 1):
        lifter.lift(*inputs[i % len(inputs)])
        if i == 1000:
            report["at_1000_mib"] = rss_mib()
    report[f"at_{windows}_mib"] = rss_mib()
    report["windows"] = windows
    report["seconds"] = time.perf_counter() - start
    # VmHWM, not ru_maxrss: on Linux ru_maxrss survives fork + exec, so it would report the
    # parent's (torch-laden) peak.
    report["peak_mib"] = status_mib("VmHWM")
    print(json.dumps(report))
    return 0


def section_memory(models: Models, args, results: dict) -> str:
    d = models.defaults
    onnx_path = models.shipped or models.onnx(d["steps"], d["hypotheses"], d["window"])
    # One intra-op thread, as the node runs by default (config/lifter.yaml): memory does not
    # depend on it, and the run is fastest on a busy 2-core machine.
    command = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(onnx_path),
               "--rss-windows", str(args.rss_windows), "--threads", "1"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        return f"### Memory\n\nRSS subprocess failed:\n```\n{proc.stderr[-2000:]}\n```"
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    results["rss"] = r
    n = r["windows"]
    growth = r[f"at_{n}_mib"] - r.get("at_1000_mib", r["after_load_mib"])
    rows = [["after load + 1 lift", r["after_load_mib"]], ["after 1,000 windows", r.get("at_1000_mib", "-")],
            [f"after {n:,} windows", r[f"at_{n}_mib"]], ["peak (VmHWM)", r["peak_mib"]],
            ["growth 1,000 -> end", growth]]
    name = onnx_path.name if models.shipped else "default export"
    return (f"### Memory (subprocess: onnxruntime, 1 thread, on {name}, {n:,} single-person "
            f"windows in {r['seconds']:.0f} s; torch imported: {r['torch_imported']})\n\n"
            + table(["RSS", "MiB"], rows))


def section_goals(args, results: dict) -> str:
    if args.device.startswith("cuda"):
        return "### Goals\n\nThe goals are for the 2-core CPU: run without `--device cuda`."
    rows = []

    def row(goal, measured, target, unit, higher_better):
        if measured is None:
            rows.append([goal, "not measured", "-", "-"])
            return
        met = measured >= target if higher_better else measured <= target
        margin = (measured / target if higher_better else target / measured) if measured else float("inf")
        verdict = (f"met ({margin:.2f}x margin)" if met else
                   f"missed (by {abs(measured - target):.3g} {unit}, {1 / margin:.2f}x too "
                   f"{'low' if higher_better else 'high'})")
        rows.append([goal, f"{measured:.3g} {unit}", verdict, f"{target:g} {unit}"])

    one = results.get(("onnxruntime", 1)) or results.get(("persons", 1))
    four = results.get(("onnxruntime", 4)) or results.get(("persons", 4))
    torch_one = results.get(("torch", 1))
    row("p99 latency per lifted frame (onnxruntime, 1 person)", one and one.p99_ms, GOAL_P99_MS,
        "ms", False)
    row("sustained lifted frames/s with 4 persons (1 call lifts the 4)", four and four.calls_per_s,
        GOAL_FPS_4P, "frames/s", True)
    rss = results.get("rss")
    row("peak RSS of the lifting process", rss and rss["peak_mib"] * 2**20 / 1e6, GOAL_RSS_MB, "MB",
        False)
    speedup = torch_one.p50_ms / one.p50_ms if (one and torch_one) else None
    row(f"onnxruntime speed-up over torch eager (p50, 1 person, {args.threads} threads)", speedup,
        GOAL_SPEEDUP, "x", True)
    one_1, torch_1 = results.get(("onnxruntime-1thread", 1)), results.get(("torch-1thread", 1))
    if one_1 and torch_1:
        row("the same, 1 thread each", torch_1.p50_ms / one_1.p50_ms, GOAL_SPEEDUP, "x", True)
    return "### Goals (shipped default, onnxruntime)\n\n" + table(
        ["goal", "measured", "verdict", "target"], rows)


def section_header(models: Models, args, argv: list[str]) -> str:
    import onnxruntime
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    d = models.defaults
    gpu = f", GPU {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    command = "python training/benchmark.py" + ("" if not argv else " " + shlex.join(argv))
    load1 = os.getloadavg()[0]
    return "\n".join([
        "## Lifting (`training/benchmark.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}, "
        f"{cpu} x {os.cpu_count()} cores{gpu}, load average {load1:.2f} at start "
        "(other work on the machine makes timings noisy)  ",
        f"Versions: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"Python {platform.python_version()}  ",
        f"Model: {models.label}; {models.config.model.variant}, {models.parameters / 1e6:.2f} M "
        f"parameters; defaults steps={d['steps']}, H={d['hypotheses']}, L={d['window']} "
        f"({models.config.data.window_mode}), aggregation={d['aggregation']}  ",
        f"Method: {args.warmup} warm-up calls, then up to {args.iterations} timed calls "
        f"(at most {args.max_seconds:g} s) of `Lifter.lift` per row; one call lifts all persons "
        "of one frame. FLOPs: MatMul/Gemm/Conv/Einsum of the exported graph; GFLOP/s at p50.",
    ])


def write_section(path: Path, markdown: str) -> None:
    """Replace the lifting section of `path` (between its markers), keeping everything else."""
    from diffhpe_models.atomic import atomic_replace_section

    atomic_replace_section(path, SECTION, markdown, title="# Benchmarks")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child, args.rss_windows, args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="diffhpe_bench_") as tmp:
        models = Models(args, Path(tmp))
        parts = [section_header(models, args, argv)]
        for section in (section_backends, section_scaling, section_memory):
            t0 = time.perf_counter()
            parts.append(section(models, args, results))
            print(parts[-1] + "\n", flush=True)
            print(f"<!-- {section.__name__}: {time.perf_counter() - t0:.0f} s -->\n", file=sys.stderr)
        parts.append(section_goals(args, results))
    markdown = "\n\n".join(parts) + "\n"
    print(parts[-1])
    if args.out:
        write_section(args.out, markdown)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

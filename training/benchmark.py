"""Lifting latency benchmark (a benchmark, not a test): prints markdown tables.

    python training/benchmark.py                          # CPU, ~5 min on 2 cores
    python training/benchmark.py --quick                  # ~1 min, for quick checks
    python training/benchmark.py --out docs/benchmarks.md # also write them (the model's section)
    python training/benchmark.py --checkpoint models/mixste.pt --onnx models/mixste_lifter.onnx
    python training/benchmark.py --device cuda            # GPU: torch eager vs CUDA graphs

What it measures, each after a warm-up, as one `Lifter.lift` call per frame (noise drawing and
input checks included, as the node pays them): p50/p99/max latency and throughput; backends side
by side; scaling over persons, DDIM steps, hypotheses H and window L (each exported on the fly
into a temp dir, one factor at a time around the default; a deterministic model such as MixSTE
has no sampler: its one setting, labelled 'deterministic', instead of the steps and H sweeps);
FLOPs per call of each exported graph (MatMul/Gemm/Conv/Einsum) and the achieved fraction of the
CPU's ~84 GFLOP/s practical peak; peak RSS of a subprocess that loads the default graph and
lifts 10,000 windows; the lifter next to MediaPipe on the demo video (lift time per person-frame /
detection time per frame). It states the real-time goals, the measured values, met/missed and by
how much.

Noisy machines: the rows a table compares are measured interleaved (a few calls of each row in
turn, round after round), so a load that comes and goes hits them alike, and each table says
the machine's load average (before -> after) and CPU count. Threads follow the one policy of
diffhpe_models/threads.py (ONNX Runtime spinning off, torch OMP_WAIT_POLICY=PASSIVE).

The model: --checkpoint (default models/diffhpe_wrapper.pt, the shipped checkpoint); without
one, an untrained model of --config (default training/configs/diffhpe_wrapper.yaml): latency
does not depend on the weights. Default settings (steps, H, aggregation) are those of --onnx
(default: the graph beside the checkpoint whose manifest names it, e.g. models/diffhpe_lifter.onnx
for models/diffhpe_wrapper.pt and models/mixste_lifter.onnx for models/mixste.pt) when there is
one, else the checkpoint's; a graph of another variant is refused.

--out writes one section per model variant (markers `lifting-benchmark-<variant>`), replacing
that variant's previous run and keeping everything else in the file (the other variants' sections,
the end-to-end section of training/benchmark_e2e.py).
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

from diffhpe_models import threads  # (the thread policy, set before torch loads)

REPO = Path(__file__).resolve().parents[1]
# Practical fp32 peak of the 2-core CPU: a 1024^3 torch matmul reached 79-84 GFLOP/s on it.
PEAK_GFLOPS = 84.0
SECTION = "lifting-benchmark"  # docs/benchmarks.md: this script writes SECTION-<variant>
GOAL_P99_MS, GOAL_FPS_4P, GOAL_RSS_MB, GOAL_SPEEDUP = 10.0, 30.0, 1000.0, 2.0
GOAL_LIFT_PER_DETECT = 0.33  # lift of one person-frame / MediaPipe on one frame
MIN_CALLS = 8
BACKENDS = ("torch", "torch-1thread", "torch-cudagraph", "torch-compile", "onnxruntime",
            "onnxruntime-1thread", "onnxruntime-cuda")
CHUNK = 4  # calls of one row before the next row's turn (interleaving)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=REPO / "models" / "diffhpe_wrapper.pt",
                   help="the shipped checkpoint (the torch rows, and the source of every export)")
    p.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "diffhpe_wrapper.yaml",
                   help="model of the untrained stand-in when there is no checkpoint")
    p.add_argument("--onnx", type=Path,
                   help="the shipped graph of --checkpoint: its settings are the defaults; used for "
                        "the RSS run and next to the detector (default: the graph beside the "
                        "checkpoint whose manifest names it, if any)")
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
    p.add_argument("--out", type=Path,
                   help="write the tables into this markdown file, as the model variant's section "
                        "(replaced; the other sections are kept)")
    p.add_argument("--skip", nargs="+", default=[], metavar="BACKEND",
                   help="leave out these backends of the side-by-side table (e.g. torch-compile, "
                        "whose max-autotune takes minutes on a GPU)")
    p.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = sorted(set(args.skip) - set(BACKENDS))
    if unknown:
        p.error(f"--skip: unknown backends {unknown}; expected some of {list(BACKENDS)}")
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


@dataclass
class Case:
    """One row to time: a lifter, the persons per call, and the torch threads it runs with
    (torch's thread count is process-wide: set before each of its turns; None: not torch)."""

    lifter: object
    persons: int
    torch_threads: int | None = None


def measure_interleaved(cases: list[Case], args) -> list[Timing]:
    """Time `lifter.lift` of every case, one call at a time, the cases taking turns.

    Each case is warmed up (`args.warmup` calls or a quarter of `args.max_seconds`); then, round
    after round, each case makes CHUNK calls (the order rotates every round) until every case has
    `args.iterations` calls, or the budget of `args.max_seconds` per case is spent and each has
    MIN_CALLS. A load that comes and goes thus hits all rows alike. calls/s = 1000 / mean ms."""
    inputs = [lift_inputs(c.lifter.window, c.lifter.hypotheses, c.persons) for c in cases]

    def turn(k: int, calls: int, out: list | None = None, budget_s: float = float("inf")):
        if cases[k].torch_threads:
            import torch

            torch.set_num_threads(cases[k].torch_threads)
        start = time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter()
            cases[k].lifter.lift(*inputs[k])
            if out is not None:
                out.append(time.perf_counter() - t0)
            if time.perf_counter() - start > budget_s:
                break

    for k in range(len(cases)):
        turn(k, args.warmup, budget_s=args.max_seconds / 4)
    times: list[list[float]] = [[] for _ in cases]
    start, budget_s, rnd = time.perf_counter(), args.max_seconds * len(cases), 0
    while True:
        for j in range(len(cases)):
            k = (j + rnd) % len(cases)
            if len(times[k]) < args.iterations:
                turn(k, min(CHUNK, args.iterations - len(times[k])), times[k])
        rnd += 1
        if all(len(t) >= args.iterations for t in times):
            break
        if time.perf_counter() - start > budget_s and all(len(t) >= MIN_CALLS for t in times):
            break
    out = []
    for t in times:
        ms = np.array(t) * 1e3
        out.append(Timing(float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                          float(ms.max()), float(ms.mean()), len(ms), 1e3 / float(ms.mean())))
    return out


def measure(lifter, persons: int, args) -> Timing:
    """One row alone (see measure_interleaved)."""
    return measure_interleaved([Case(lifter, persons)], args)[0]


class MachineLoad:
    """The 1-minute load average when a table starts and when it ends, with the CPU count:
    printed under each table (a load above the CPU count means the rows shared the cores)."""

    def __init__(self):
        self.before = os.getloadavg()[0]

    def line(self) -> str:
        return (f"Machine load: 1-min load average {self.before:.2f} -> {os.getloadavg()[0]:.2f} "
                f"on {os.cpu_count()} CPUs; rows measured interleaved.")


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
            shown = (args.checkpoint.relative_to(REPO) if args.checkpoint.is_relative_to(REPO)
                     else args.checkpoint)
            self.label = f"`{shown}`"
        else:
            config = load_config(args.config)
            self.checkpoint = save_checkpoint(tmp / "untrained.pt", build_model(config), config,
                                              extra={"fps": 30.0})
            self.label = (f"untrained model of `{args.config.name}` (no {args.checkpoint.name}; "
                          "latency does not depend on the weights)")
        from diffhpe_models.lifter import LiftingPipeline

        model, self.config, _ = load_checkpoint(self.checkpoint)
        self.parameters = sum(p.numel() for p in model.parameters())
        self.variant = self.config.model.variant
        # A deterministic model (MixSTE) runs no sampler: no steps, 1 hypothesis, no aggregation
        # (the manifest's convention), and refuses sampler settings.
        self.deterministic = LiftingPipeline(model, self.config).settings is None
        if self.deterministic:
            self.defaults = {"steps": 0, "hypotheses": 1, "aggregation": None}
        else:
            d = self.config.diffusion
            self.defaults = {"steps": d.steps, "hypotheses": d.hypotheses,
                             "aggregation": d.aggregation}
        self.defaults["window"] = self.config.data.window
        self.shipped = None
        onnx = args.onnx if args.onnx is not None else graph_of(args.checkpoint)
        if onnx is not None and onnx.is_file():
            from diffhpe_models.export import read_manifest

            m = read_manifest(onnx)
            if m["variant"] != self.variant:
                raise SystemExit(f"{onnx}: a {m['variant']!r} graph but {self.checkpoint} is a "
                                 f"{self.variant!r} model: give the graph exported from it (--onnx)")
            self.shipped = onnx
            self.defaults.update({k: m[k] for k in ("steps", "hypotheses", "aggregation")})
            if m["window"] != self.config.data.window:
                raise SystemExit(f"{onnx}: window {m['window']} but {self.checkpoint} has "
                                 f"{self.config.data.window}")
        self._checkpoints = {self.config.data.window: self.checkpoint}
        self._exports: dict[tuple, Path] = {}

    def setting(self) -> str:
        """The default setting, as the section headings name it."""
        d = self.defaults
        if self.deterministic:
            return f"deterministic (no sampler), L={d['window']}"
        return f"steps={d['steps']}, H={d['hypotheses']}, L={d['window']}"

    def sampler_kw(self, steps: int, hypotheses: int) -> dict:
        """The sampler settings to export / load with ({} for a deterministic model, which has
        none: it refuses them)."""
        if self.deterministic:
            if (steps, hypotheses) != (0, 1):
                raise ValueError(f"a deterministic {self.variant!r} model has no steps / "
                                 f"hypotheses to set (got steps {steps}, H {hypotheses})")
            return {}
        return {"steps": steps, "hypotheses": hypotheses,
                "aggregation": self.defaults["aggregation"]}

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
            name = (f"lifter_deterministic_l{window}" if self.deterministic
                    else f"lifter_s{steps}_h{hypotheses}_l{window}")
            out = self.tmp / f"{name}.onnx"
            # Latency does not need the 1e-4 m parity of a shipped export (tested there); a
            # reproj tie flipping between near-identical hypotheses must not stop the benchmark.
            export_checkpoint(self.checkpoint_for(window), out, parity_tolerance_m=1e-2,
                              **self.sampler_kw(steps, hypotheses))
            self._exports[key] = out
        return self._exports[key]

    def flops(self, steps: int, hypotheses: int, window: int, persons: int = 1) -> float:
        import onnx

        from diffhpe_models.export import graph_flops

        return float(graph_flops(onnx.load(self.onnx(steps, hypotheses, window)), persons)["flops"])

    def default_graph(self) -> Path:
        """The shipped graph, else the default setting exported here."""
        d = self.defaults
        return self.shipped or self.onnx(d["steps"], d["hypotheses"], d["window"])


def graph_of(checkpoint: Path) -> Path | None:
    """The exported graph beside `checkpoint` whose manifest names it (its sha256), if any."""
    from diffhpe_models.contract import manifest_path, sha256_file

    if not checkpoint.is_file():
        return None
    digest = sha256_file(checkpoint)
    for graph in sorted(checkpoint.parent.glob("*.onnx")):
        try:
            manifest = json.loads(manifest_path(graph).read_text())
        except (OSError, ValueError):
            continue
        if (manifest.get("source") or {}).get("checkpoint_sha256") == digest:
            return graph
    return None


def load(models: Models, backend: str, args, steps=None, hypotheses=None, window=None, **kw):
    """A Lifter for one backend and setting ('torch', 'torch-1thread', 'torch-cudagraph',
    'torch-compile', 'onnxruntime', 'onnxruntime-1thread', 'onnxruntime-cuda')."""
    from diffhpe_models.runtime import TorchBackend, load_lifter

    steps = models.defaults["steps"] if steps is None else steps
    hypotheses = hypotheses or models.defaults["hypotheses"]
    window = window or models.defaults["window"]
    n_threads = 1 if backend.endswith("1thread") else args.threads
    if backend.startswith("onnxruntime"):
        device = args.device if backend == "onnxruntime-cuda" else "cpu"
        return load_lifter(models.onnx(steps, hypotheses, window), backend="onnxruntime",
                           device=device, intra_op_threads=n_threads, **kw)
    lifter = load_lifter(models.checkpoint_for(window), backend="torch", device=args.device,
                         **models.sampler_kw(steps, hypotheses), intra_op_threads=n_threads,
                         cuda_graphs=backend == "torch-cudagraph", **kw)
    if backend == "torch-compile":
        import torch

        compiled = torch.compile(lifter.backend.pipeline, mode="max-autotune-no-cudagraphs")
        lifter.backend = TorchBackend(compiled, device=args.device)
        lifter.backend_name = lifter.backend.name = "torch-compile"
    return lifter


# --- sections -----------------------------------------------------------------------------


def torch_threads_of(backend: str, args) -> int | None:
    """The torch thread count a backend's rows run with (None: not a CPU torch backend)."""
    if not backend.startswith("torch") or args.device.startswith("cuda"):
        return None
    return 1 if backend.endswith("1thread") else args.threads


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
    backends = [b for b in backends if b not in args.skip]
    load_note = MachineLoad()
    rows, cases, keys = [], [], []
    for backend in backends:
        try:
            lifter = load(models, backend, args)
            for persons in persons_list:  # the first call compiles / captures: fail here
                lifter.lift(*lift_inputs(lifter.window, lifter.hypotheses, persons))
        except Exception as e:  # torch.compile in particular may not work everywhere
            rows.append([backend, "-", f"not available: {type(e).__name__}: {e}"[:120], "", "", "", "", ""])
            continue
        for persons in persons_list:
            cases.append(Case(lifter, persons, torch_threads_of(backend, args)))
            keys.append((backend, persons))
            rows.append(None)  # filled below, in this order
    for key, case, t in zip(keys, cases, measure_interleaved(cases, args)):
        backend, persons = key
        results[key] = t
        rows[rows.index(None)] = [
            case.lifter.backend_name + (" (1 thread)" if backend.endswith("1thread") else ""),
            persons, t.p50_ms, t.p99_ms, t.max_ms, t.calls_per_s, t.calls_per_s * persons, t.calls]
    head = (f"### Backends side by side ({args.device}, {models.setting()}, "
            f"{args.threads} threads unless noted)\n\n")
    return head + table(["backend", "persons", "p50 ms", "p99 ms", "max ms", "calls/s",
                         "person-windows/s", "timed calls"], rows) + "\n\n" + load_note.line()


def scaling_backend(args) -> str:
    return "torch-cudagraph" if args.device.startswith("cuda") else "onnxruntime"


def section_scaling(models: Models, args, results: dict) -> str:
    backend = scaling_backend(args)
    torch_threads = torch_threads_of(backend, args)
    d = models.defaults
    cuda = args.device.startswith("cuda")
    out = [f"### Scaling ({backend}, one factor at a time around {models.setting()}, "
           "1 person unless varied)"]
    flop_headers = ["GFLOP/call", "GFLOP/s"] + ([] if cuda else ["% of 84 GFLOP/s"])

    def flop_cells(flops, t):
        rate = flops / (t.p50_ms * 1e-3) / 1e9
        return [flops / 1e9, rate] + ([] if cuda else [100 * rate / PEAK_GFLOPS])

    # Persons: one graph, dynamic axis.
    load_note = MachineLoad()
    lifter = load(models, backend, args)
    persons_list = [1, 4, 16] if args.quick else [1, 2, 4, 8, 16]
    timings = measure_interleaved([Case(lifter, p, torch_threads) for p in persons_list], args)
    rows = []
    for persons, t in zip(persons_list, timings):
        results[("persons", persons)] = t
        flops = models.flops(d["steps"], d["hypotheses"], d["window"], persons)
        rows.append([persons, t.p50_ms, t.p99_ms, t.max_ms, t.p50_ms / persons,
                     t.calls_per_s * persons, *flop_cells(flops, t)])
    out.append(table(["persons", "p50 ms", "p99 ms", "max ms", "p50 ms/person",
                      "person-windows/s", *flop_headers], rows) + "\n\n" + load_note.line())

    windows = ("window", [d["window"]] if args.quick else sorted({d["window"], 27, 81}))
    if models.deterministic:  # no sampler: its one setting instead of the steps and H sweeps
        settings = [("sampler", ["deterministic"]), windows]
    else:
        settings = [("steps", [1, 2] if args.quick else [1, 2, 5, 10]),
                    ("hypotheses", [1, 5] if args.quick else [1, 5, 10]), windows]
    for name, values in settings:
        lifters, prepared_s, kws = [], [], []
        for value in values:  # export and load them all, then time them interleaved
            kw = {"steps": d["steps"], "hypotheses": d["hypotheses"], "window": d["window"]}
            if name in kw:
                kw[name] = value
            t0 = time.perf_counter()
            lifters.append(load(models, backend, args, **kw))
            prepared_s.append(time.perf_counter() - t0)
            kws.append(kw)
        load_note = MachineLoad()
        timings = measure_interleaved([Case(lf, 1, torch_threads) for lf in lifters], args)
        rows = []
        for value, kw, t, prep in zip(values, kws, timings, prepared_s):
            flops = models.flops(kw["steps"], kw["hypotheses"], kw["window"])
            note = "" if kw["window"] == models.config.data.window or name != "window" else " (untrained)"
            if name == "sampler":
                note = f" (no steps, H=1, L={kw['window']})"
            rows.append([f"{value}{note}", t.p50_ms, t.p99_ms, t.max_ms, t.calls_per_s,
                         *flop_cells(flops, t), prep])
        out.append(table([name, "p50 ms", "p99 ms", "max ms", "calls/s", *flop_headers,
                          "export+load s"], rows) + "\n\n" + load_note.line())
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
    onnx_path = models.default_graph()
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


def section_lifter_vs_detector(models: Models, args, results: dict) -> str:
    """MediaPipe and the lifter side by side on the demo video, frame after frame in one loop:
    decode a frame, detect it, then lift the causal window that ends at it (the node's window
    logic) for 1 person and for 4 (the same window 4 times), and for 1 person with the node's
    `mirror` parameter (the window and its mirror image, one batch of 2). The lifter runs as
    deployed: the shipped graph on onnxruntime with the thread policy's default (1 thread)."""
    from diffhpe_models.occlusion import confidence_mask
    from diffhpe_models.runtime import load_lifter
    from diffhpe_models.skeleton import to_h36m17
    from diffhpe_ros.demo_videos import demo_video
    from diffhpe_ros.pose_detector import PoseDetector
    from diffhpe_ros.video_frames import VideoFrames
    from diffhpe_ros.window_buffer import CausalWindow

    onnx_path = models.default_graph()
    lifter = load_lifter(onnx_path, backend="onnxruntime")
    lifters = {False: lifter, True: load_lifter(onnx_path, backend="onnxruntime", mirror=True)}
    video_path, _ = demo_video("pose2sim", REPO / ".cache")
    runs = [(1, False), (4, False), (1, True)]          # (persons, mirror)

    def key(p, mirrored):
        return f"lift{p}{'m' if mirrored else ''}"

    times: dict[str, list[float]] = {"decode": [], "detect": [], **{key(*r): [] for r in runs}}
    cpu: dict[str, list[float]] = {k: [] for k in times if k != "decode"}  # process CPU ms
    passes = 1 if args.quick else 2
    skip = 10  # MediaPipe's first detections (no track yet) and the lifter's first calls
    load_note = MachineLoad()
    with VideoFrames(video_path, 0.5) as video, PoseDetector() as detector:
        size = np.array([video.width_px, video.height_px], np.float32)
        for n_pass in range(passes):
            video.rewind()
            window = CausalWindow(lifter.window, lifter.fps, max_gap_s=0.5)
            while (frame := video.read()) is not None:
                counted = n_pass > 0 or frame.index >= skip
                rgb = np.ascontiguousarray(frame.bgr[..., ::-1])
                t0, c0 = time.perf_counter(), time.process_time()
                points, conf = detector.detect(rgb)
                detect_ms = (time.perf_counter() - t0) * 1e3
                detect_cpu = (time.process_time() - c0) * 1e3
                if len(points) == 0:
                    continue
                pts, c = to_h36m17(points, conf, "mediapipe33")
                mask = confidence_mask(c, 0.5)
                window.push(frame.time_s, np.where(mask[..., None] > 0, pts, 0.0)[0], mask[0])
                kp, m = window.current()
                lift_ms, lift_cpu = {}, {}
                for p, mirrored in runs:
                    t0, c0 = time.perf_counter(), time.process_time()
                    lifters[mirrored].lift(np.repeat(kp[None], p, 0), np.repeat(m[None], p, 0),
                                           np.repeat(size[None], p, 0))
                    lift_ms[key(p, mirrored)] = (time.perf_counter() - t0) * 1e3
                    lift_cpu[key(p, mirrored)] = (time.process_time() - c0) * 1e3
                if counted:
                    times["decode"].append(frame.decode_ms)
                    times["detect"].append(detect_ms)
                    cpu["detect"].append(detect_cpu)
                    for k in lift_ms:
                        times[k].append(lift_ms[k])
                        cpu[k].append(lift_cpu[k])
    detect_p50, detect_cpu_p50 = float(np.median(times["detect"])), float(np.median(cpu["detect"]))
    rows = [["decode + resize (1080x1920 -> 540x960)", np.median(times["decode"]),
             np.mean(times["decode"]), "-", "-", "-", "-"],
            ["MediaPipe Pose (complexity 1), 1 person in view", detect_p50,
             np.mean(times["detect"]), "-", 1.0, detect_cpu_p50, 1.0]]
    for p, mirrored in runs:
        lift = times[key(p, mirrored)]
        per_person = float(np.median(lift)) / p
        per_person_cpu = float(np.median(cpu[key(p, mirrored)])) / p
        if not mirrored:     # the goals are the default's (mirror off)
            results[("lift_per_detect", p)] = per_person / detect_p50
            results[("lift_per_detect_cpu", p)] = per_person_cpu / detect_cpu_p50
        rows.append([f"lift {p} person{'s' if p > 1 else ''} ({lifter.backend_name}, 1 thread"
                     f"{', mirror: always' if mirrored else ''})",
                     np.median(lift), np.mean(lift), per_person, per_person / detect_p50,
                     per_person_cpu, per_person_cpu / detect_cpu_p50])
    head = (f"### Lifter next to the detector (pose2sim demo video, {len(times['detect'])} timed frames "
            f"in {passes} pass{'es' if passes > 1 else ''}, one loop: decode, detect, lift)\n\n")
    note = ("CPU ms: the process's CPU time (all its threads, MediaPipe's included) per call, "
            "p50; unlike wall time it does not grow when other processes take the cores, so its "
            "ratio is the one to trust on a loaded machine.")
    return head + table(["stage", "p50 ms", "mean ms", "p50 ms per person-frame",
                         "per person-frame / detection (p50)", "CPU ms per person-frame",
                         "CPU / detection CPU"], rows) + "\n\n" + note + "  \n" + load_note.line()


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
    row("lift per person-frame / MediaPipe per frame (1 person, demo video, wall p50)",
        results.get(("lift_per_detect", 1)), GOAL_LIFT_PER_DETECT, "x", False)
    row("the same in process CPU time (unaffected by other processes' load)",
        results.get(("lift_per_detect_cpu", 1)), GOAL_LIFT_PER_DETECT, "x", False)
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
        f"## Lifting: {models.variant}{', deterministic' if models.deterministic else ''} "
        "(`training/benchmark.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}, "
        f"{cpu} x {os.cpu_count()} cores{gpu}, load average {load1:.2f} at start "
        "(other work on the machine makes timings noisy)  ",
        f"Versions: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"Python {platform.python_version()}  ",
        f"Model: {models.label}; {models.config.model.variant}, {models.parameters / 1e6:.2f} M "
        + (f"parameters; deterministic (no sampler: no steps, 1 hypothesis), L={d['window']} "
           f"({models.config.data.window_mode})  " if models.deterministic else
           f"parameters; defaults steps={d['steps']}, H={d['hypotheses']}, L={d['window']} "
           f"({models.config.data.window_mode}), aggregation={d['aggregation']}  "),
        f"Method: {args.warmup} warm-up calls, then up to {args.iterations} timed calls "
        f"(at most {args.max_seconds:g} s) of `Lifter.lift` per row; one call lifts all persons "
        "of one frame. FLOPs: MatMul/Gemm/Conv/Einsum of the exported graph; GFLOP/s at p50.",
    ])


def section_key(models: Models) -> str:
    """The markers of this model's section in the --out file: one section per variant."""
    return f"{SECTION}-{models.variant}"


def write_section(path: Path, key: str, markdown: str) -> None:
    """Replace section `key` of `path` (between its markers), keeping everything else (the other
    models' sections included); appended when the file has none yet."""
    from diffhpe_models.atomic import atomic_replace_section

    atomic_replace_section(path, key, markdown, title="# Benchmarks")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child, args.rss_windows, args.threads)
    import torch

    threads.configure_torch(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="diffhpe_bench_") as tmp:
        models = Models(args, Path(tmp))
        parts = [section_header(models, args, argv)]
        for section in (section_backends, section_scaling, section_memory,
                        section_lifter_vs_detector):
            t0 = time.perf_counter()
            parts.append(section(models, args, results))
            print(parts[-1] + "\n", flush=True)
            print(f"<!-- {section.__name__}: {time.perf_counter() - t0:.0f} s -->\n", file=sys.stderr)
        parts.append(section_goals(args, results))
        key = section_key(models)
    markdown = "\n\n".join(parts) + "\n"
    print(parts[-1])
    if args.out:
        write_section(args.out, key, markdown)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

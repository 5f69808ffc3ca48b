"""ONNX export of the whole run-time computation, its manifest, and the TensorRT engine build.

One graph holds everything a frame needs (2D normalisation, conditioning features, all DDIM steps
unrolled, aggregation); its inputs and outputs are the run-time contract (contract.py:
`keypoints_px`, `mask`, `image_wh` or `intrinsics` by the model's input normalisation, `noise`;
`pose3d_m`, `spread_m`). Only the persons axis P is dynamic, so TensorRT builds one optimisation
profile over P and everything else is static.

Every exported file `F` gets a manifest `F.json` beside it, written from the objects that run
(the pipeline's sampler settings and config, contract.describe_pipeline), with the sha256 of `F`
and the exporter versions; the contract fields are also stored in the graph's metadata, so the
runtime can refuse a manifest that disagrees with its graph (contract.py reads and checks).

torch, onnx and onnxruntime are imported inside the functions that need them.
"""
from __future__ import annotations

import datetime
import os
import shlex
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import tensorrt_ops
from .atomic import atomic_write_bytes, atomic_write_json
from .camera import guess_intrinsics
from .contract import (
    ENGINE_MANIFEST_FORMAT,
    MANIFEST_FORMAT,
    MAX_PERSONS,
    MIN_PERSONS,
    OPT_PERSONS,
    OUTPUT_NAMES,
    PERSONS,
    ManifestError,  # noqa: F401  (raised by read_manifest; callers catch it here)
    describe_pipeline,
    engine_path_for,
    gpu_name,
    graph_metadata,
    import_tensorrt,
    input_names,
    io_shapes,
    manifest_path,
    manifest_problems,
    read_manifest,
    sha256_file,
)
from .skeleton import NUM_JOINTS

OPSET = 17
# Parity of ONNX Runtime against PyTorch (FP32), metres.
PARITY_TOLERANCE_M = 1e-4


class ExportError(RuntimeError):
    """The export (or an engine build) cannot produce a valid file."""


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing; `command` is the equivalent trtexec command line."""

    def __init__(self, message: str, command: str):
        super().__init__(f"{message}\nBuild the engine where TensorRT runs with:\n  {command}")
        self.command = command


# --- shapes and example inputs -------------------------------------------------------------


def example_inputs(window: int, hypotheses: int, persons: int = 2, seed: int = 0,
                   missing_rate: float = 0.1) -> dict[str, np.ndarray]:
    """Plausible float32 inputs: a standing skeleton in a 640x480 image, jittered, some joints
    missing (coordinate 0 and mask 0, as the contract says), standard normal noise. Holds both
    calibrations (`image_wh` and `intrinsics`, the latter the documented guess): feed a graph
    the ones its `input_names` take."""
    rng = np.random.default_rng(seed)
    # Rough H36M-17 standing pose in pixels (x right, y down), centred near the image middle.
    stand = np.array([
        [320, 300], [300, 300], [300, 370], [300, 440], [340, 300], [340, 370], [340, 440],
        [320, 260], [320, 220], [320, 200], [320, 180], [345, 225], [355, 265], [360, 300],
        [295, 225], [285, 265], [280, 300]], dtype=np.float32)
    kp = stand[None, None] + rng.normal(0.0, 5.0, (persons, window, NUM_JOINTS, 2))
    kp += rng.uniform(-100, 100, (persons, 1, 1, 2))  # each person elsewhere in the image
    mask = (rng.random((persons, window, NUM_JOINTS)) >= missing_rate).astype(np.float32)
    kp = (kp * mask[..., None]).astype(np.float32)
    image_wh = np.tile(np.array([[640.0, 480.0]], dtype=np.float32), (persons, 1))
    noise = rng.standard_normal((persons, hypotheses, window, NUM_JOINTS, 3), dtype=np.float32)
    return {"keypoints_px": kp, "mask": mask, "image_wh": image_wh,
            "intrinsics": guess_intrinsics(image_wh).astype(np.float32), "noise": noise}


# --- graph checks --------------------------------------------------------------------------


def _dims(value_info) -> list[int | str | None]:
    """Dims of an ONNX ValueInfo: int (static), str (symbolic), None (unknown)."""
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def tensorrt_graph_problems(model, persons: str = PERSONS) -> list[str]:
    """Everything in `model` (an onnx.ModelProto) that would stop TensorRT 8.6 or our contract.

    Checks: onnx.checker and strict shape inference pass; opset == 17 and only the default
    domain; every op is in the onnx-tensorrt 8.6 operator list (`tensorrt_ops`) and none is
    forbidden (Loop/If/Scan, random ops); inputs that TensorRT needs constant are constant; inputs
    and outputs have a static shape except axis 0 named `persons`; no float64 tensors; the graph is
    constant-folded: no node with only constant inputs, no Shape that reads only static dims and
    no Gather that picks static dims out of a Shape (the chains that tracing leaves behind).
    Returns the problems found, [] when there are none.
    """
    import onnx

    problems: list[str] = []
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises several error types; all mean "invalid model"
        problems.append(f"onnx.checker: {e}")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except Exception as e:
        problems.append(f"onnx shape inference: {e}")
        inferred = model

    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            if op.version != tensorrt_ops.MAX_OPSET:
                problems.append(f"opset {op.version}, expected {tensorrt_ops.MAX_OPSET}")
        else:
            problems.append(f"operator domain {op.domain!r} (only the default ONNX domain)")

    graph = inferred.graph
    known = {vi.name: _dims(vi) for vi in [*graph.input, *graph.output, *graph.value_info]}
    shape_reads = _shape_reads(graph, known)
    # Initializers and Constant-node outputs (an unfolded trace has the latter).
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            constants[node.output[0]] = None if value is None else onnx.numpy_helper.to_array(value)

    for node in graph.node:
        label = f"node {node.name or '?'} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{label}: custom domain {node.domain!r}")
        elif node.op_type not in tensorrt_ops.SUPPORTED_OPS:
            problems.append(f"{label}: not supported by TensorRT {tensorrt_ops.TENSORRT_VERSION}")
        if node.op_type in tensorrt_ops.FORBIDDEN_OPS:
            problems.append(f"{label}: control flow or random op in a graph that must be a "
                            "straight line")
        for index in tensorrt_ops.CONSTANT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                problems.append(f"{label}: input {index} must be constant for TensorRT")
        inputs = [i for i in node.input if i]
        if node.op_type != "Constant" and inputs and all(i in constants for i in inputs):
            problems.append(f"{label}: all inputs are constant (graph not constant-folded)")
        if node.op_type == "Shape" and node.output[0] in shape_reads:
            read = shape_reads[node.output[0]]
            if read and all(isinstance(d, int) for d in read):
                problems.append(f"{label}: reads only static dims {read} (not constant-folded)")
        if (node.op_type == "Gather" and node.input[0] in shape_reads
                and constants.get(node.input[1]) is not None):
            picked = _picked_dims(shape_reads[node.input[0]], constants[node.input[1]])
            if all(isinstance(d, int) for d in picked):
                problems.append(f"{label}: picks static dims {picked} from a Shape "
                                "(not constant-folded)")

    for vi in [*model.graph.input, *model.graph.output]:
        dims = _dims(vi)
        if not dims or dims[0] != persons:
            problems.append(f"{vi.name}: axis 0 must be the dynamic axis {persons!r}, got {dims}")
        others = dims[1:]
        if not all(isinstance(d, int) and d > 0 for d in others):
            problems.append(f"{vi.name}: only axis 0 may be dynamic, got dims {dims}")

    for t in graph.initializer:
        if t.data_type == onnx.TensorProto.DOUBLE:
            problems.append(f"initializer {t.name}: float64 (TensorRT wants float32)")
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE:
            problems.append(f"tensor {vi.name}: float64 (TensorRT wants float32)")
    return problems


def interface_problems(model, window: int, hypotheses: int, normalisation: str) -> list[str]:
    """Differences between the graph's inputs/outputs and the contract (names, order, shapes)."""
    shapes = io_shapes(window, hypotheses, normalisation)
    problems = []
    for kind, values, names in (("input", model.graph.input, input_names(normalisation)),
                                ("output", model.graph.output, OUTPUT_NAMES)):
        got = [v.name for v in values]
        if got != list(names):
            problems.append(f"{kind}s are {got}, expected {list(names)}")
            continue
        for v in values:
            if tuple(_dims(v)) != shapes[v.name]:
                problems.append(f"{kind} {v.name}: shape {_dims(v)}, expected {shapes[v.name]}")
            if v.type.tensor_type.elem_type != 1:  # TensorProto.FLOAT
                problems.append(f"{kind} {v.name}: element type must be float32")
    return problems


def _static_persons(model, persons: int):
    """A copy of `model` with the persons axis of its inputs fixed to `persons`, shapes inferred."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for vi in [*fixed.graph.input, *fixed.graph.output]:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param == PERSONS:
                d.dim_value = persons
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed, data_prop=True)


def _runtime_shapes(model, names: list[str], persons: int) -> dict[str, list[int]]:
    """Shapes of the float32 tensors `names`, by running the graph in ONNX Runtime once."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    dims = {i.name: _dims(i) for i in model.graph.input}
    feeds = example_inputs(dims["keypoints_px"][1], dims["noise"][1], persons=persons)
    values = session.run(names, {i.name: feeds[i.name] for i in model.graph.input})
    return {n: list(v.shape) for n, v in zip(names, values)}


def graph_flops(model, persons: int = 1) -> dict[str, Any]:
    """Multiply-add FLOPs (2 per MAC) of one call of an exported graph, from its MatMul, Gemm,
    Conv and Einsum nodes at a given persons count (shapes by ONNX shape inference).

    Returns {"flops": int, "by_op": {op: flops}, "unknown": [nodes whose shapes were not
    inferred]}. Element-wise work is not counted (small next to the matmuls here).
    """
    import onnx

    inferred = _static_persons(model, persons)
    graph = inferred.graph
    shapes: dict[str, list] = {vi.name: _dims(vi) for vi in
                               [*graph.input, *graph.output, *graph.value_info]}
    shapes.update({t.name: list(t.dims) for t in graph.initializer})

    def static(name):
        dims = shapes.get(name)
        return dims if dims is not None and all(isinstance(d, int) for d in dims) else None

    counted = [n for n in graph.node if n.op_type in ("MatMul", "Gemm", "Conv", "Einsum")]
    missing = {i for n in counted for i in [*n.input[:2], n.output[0]] if static(i) is None}
    if missing:  # shape inference gave up somewhere (e.g. Expand to a computed shape): run it
        shapes.update(_runtime_shapes(model, sorted(missing), persons))

    by_op: dict[str, int] = {}
    unknown = []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv", "Einsum"):
            continue
        ins = [static(i) for i in node.input]
        out = static(node.output[0])
        if out is None or any(d is None for d in ins[:2]):
            unknown.append(f"{node.name} ({node.op_type})")
            continue
        if node.op_type == "MatMul":
            k = ins[0][-1]
            flops = 2 * int(np.prod(out, dtype=np.int64)) * k
        elif node.op_type == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            k = ins[0][0] if trans_a else ins[0][1]
            flops = 2 * int(np.prod(out, dtype=np.int64)) * k
        elif node.op_type == "Conv":
            w = ins[1]  # (C_out, C_in / group, k...)
            flops = 2 * int(np.prod(out, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
        else:  # Einsum: every index of the equation is looped over once
            equation = onnx.helper.get_attribute_value(
                next(a for a in node.attribute if a.name == "equation")).decode()
            lhs = equation.split("->")[0].split(",")
            sizes = {}
            for term, dims in zip(lhs, ins):
                for letter, size in zip(term.strip(), dims):
                    sizes[letter] = size
            flops = 2 * int(np.prod(list(sizes.values()), dtype=np.int64))
        by_op[node.op_type] = by_op.get(node.op_type, 0) + flops
    return {"flops": sum(by_op.values()), "by_op": by_op, "unknown": unknown}


# --- export --------------------------------------------------------------------------------


def simplify(model):
    """onnxscript's constant folding (with shape inference: it also folds Shape/Size of static
    dims) and its clean-up passes, on an onnx.ModelProto.

    Not `onnxscript.optimizer.optimize`: its pattern rewrites (onnxscript 0.5.4) emit an opset-18
    Split (`num_outputs`) into an opset-17 graph, which onnx.checker and TensorRT 8.6 reject.
    """
    import onnx_ir.passes.common as common_passes
    from onnxscript import ir
    from onnxscript.optimizer import fold_constants_ir

    model_ir = ir.serde.deserialize_model(model)
    fold_constants_ir(model_ir, onnx_shape_inference=True)
    ir.passes.Sequential(
        common_passes.RemoveUnusedNodesPass(),
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.DeduplicateInitializersPass(),
        common_passes.CommonSubexpressionEliminationPass(),
        common_passes.RemoveUnusedNodesPass(),
    )(model_ir)
    return ir.serde.serialize_model(model_ir)


def _shape_reads(graph, known: dict[str, list]) -> dict[str, list]:
    """For each Shape output: the dims of its input that it reads (int, symbolic str or None)."""
    reads = {}
    for node in graph.node:
        if node.op_type == "Shape" and node.input[0] in known:
            dims = known[node.input[0]]
            attrs = {a.name: a.i for a in node.attribute}
            reads[node.output[0]] = dims[attrs.get("start", 0):attrs.get("end", len(dims))]
    return reads


def _picked_dims(dims: list, index: np.ndarray) -> list:
    """The entries of `dims` that a Gather with (possibly negative) `index` picks, flattened."""
    return [dims[int(i)] for i in np.ravel(index)]


def fold_static_shapes(model, max_rounds: int = 8):
    """Replace `Gather(Shape(x), constant indices)` by a constant where the dims it picks are
    static (by ONNX shape inference), then fold what became constant, until nothing changes.

    Tracing turns every `x.shape[i]` into such a chain because the persons axis is dynamic; only
    the picks of persons-dependent dims must stay in the graph.
    """
    import onnx
    from onnx import numpy_helper

    for _ in range(max_rounds):
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        graph = inferred.graph
        known = {vi.name: _dims(vi) for vi in [*graph.input, *graph.output, *graph.value_info]}
        reads = _shape_reads(graph, known)
        constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        replaced = []
        for node in model.graph.node:
            if node.op_type != "Gather" or node.input[0] not in reads or node.input[1] not in constants:
                continue
            index = constants[node.input[1]]
            picked = _picked_dims(reads[node.input[0]], index)
            if all(isinstance(d, int) for d in picked):
                value = np.asarray(picked, dtype=np.int64).reshape(index.shape)
                model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
                replaced.append(node)
        if not replaced:
            break
        for node in replaced:
            model.graph.node.remove(node)
        model = fold_constants(model)
    return model


def fold_constants(model):
    """Evaluate (with onnx's reference evaluator) every node whose inputs are all constants,
    replace it by initializers, and drop initializers nothing reads any more.

    onnxscript's optimizer leaves some of these on purpose (ConstantOfShape, which it keeps as a
    compact constant, and what depends on it); TensorRT would fold them too, but the graph we
    check and ship should be exactly the computation, with nothing left over from tracing.
    Nodes are in topological order (ONNX requires it), so one pass folds whole chains.
    """
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if not all(i in values for i in inputs):
            kept.append(node)
            continue
        single = onnx.helper.make_model(
            onnx.helper.make_graph(
                [node], "fold", [], [onnx.helper.make_empty_tensor_value_info(o) for o in node.output],
                initializer=[numpy_helper.from_array(values[i], i) for i in inputs]),
            opset_imports=model.opset_import)
        for name, value in zip(node.output, ReferenceEvaluator(single).run(None, {})):
            values[name] = np.asarray(value)
            graph.initializer.append(numpy_helper.from_array(values[name], name))
    # Drop nodes (in reverse order, so chains go) and initializers that nothing reads any more.
    outputs = {o.name for o in graph.output}
    used = set(outputs)
    live = []
    for node in reversed(kept):
        if any(o in used for o in node.output):
            live.append(node)
            used.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(live))
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    return model


def export_pipeline_onnx(pipeline, onnx_path: str | os.PathLike, example_persons: int = 2,
                         metadata: dict[str, str] | None = None):
    """Trace `pipeline` (a LiftingPipeline in eval mode) into one ONNX graph at `onnx_path`.

    Inputs are the pipeline's `input_names` (the calibration input follows its input
    normalisation), shapes its window and hypotheses. The TorchScript-based exporter is used on
    purpose: it emits opset 17 natively (TensorRT 8.6's limit), while the torch.export-based one
    starts at opset 18. The graph is then constant-folded (`simplify`, `fold_constants`), given
    `metadata` (ONNX metadata_props) and checked (`tensorrt_graph_problems`,
    `interface_problems`); the file is written atomically only when the checks pass.
    Returns the onnx.ModelProto.
    """
    import io

    import onnx
    import torch

    names = list(pipeline.input_names)
    window, hypotheses = pipeline.window, pipeline.hypotheses
    ex = example_inputs(window, hypotheses, persons=example_persons)
    args = tuple(torch.from_numpy(ex[n]) for n in names)
    pipeline = pipeline.eval()
    buffer = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated, and that traced shapes are constants
        # (which is what we want: only the persons axis is dynamic).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            pipeline, args, buffer, input_names=names, output_names=list(OUTPUT_NAMES),
            dynamic_axes={n: {0: PERSONS} for n in (*names, *OUTPUT_NAMES)},
            opset_version=OPSET, do_constant_folding=True, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    model = fold_static_shapes(fold_constants(simplify(model)))
    model.producer_name = "diffhpe_ros"
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    problems = tensorrt_graph_problems(model) + interface_problems(
        model, window, hypotheses, pipeline.input_normalisation)
    if problems:
        raise ExportError(f"{onnx_path}: the exported graph fails its checks:\n  "
                          + "\n  ".join(problems))
    atomic_write_bytes(onnx_path, model.SerializeToString())
    return model


def onnx_parity(pipeline, onnx_path: str | os.PathLike, persons: int = 3, seed: int = 1) -> float:
    """Max abs difference (metres) between ONNX Runtime (CPU, FP32) and PyTorch on the same inputs
    and noise, over both outputs. Uses a persons count different from the export's example, so
    the dynamic axis is exercised."""
    import onnxruntime as ort
    import torch

    names = list(pipeline.input_names)
    ex = example_inputs(pipeline.window, pipeline.hypotheses, persons=persons, seed=seed)
    feeds = {n: ex[n] for n in names}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), feeds)
    with torch.inference_mode():
        want = pipeline(*(torch.from_numpy(feeds[n]) for n in names))
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


def exporter_versions() -> dict[str, str]:
    """Versions of the tools that produced an exported file."""
    from importlib import metadata

    versions = {}
    for dist in ("diffhpe_ros", "torch", "onnx", "onnxscript", "onnxruntime", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_manifest(model_path: str | os.PathLike, fields: dict[str, Any]) -> Path:
    """Write `F.json` for the file `F` with `fields` plus its sha256 and size (atomically)."""
    model_path = Path(model_path)
    manifest = dict(fields)
    manifest["file"] = model_path.name
    manifest["sha256"] = sha256_file(model_path)
    manifest["bytes"] = model_path.stat().st_size
    manifest["created_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    return atomic_write_json(manifest_path(model_path), manifest)


@dataclass
class ExportResult:
    """An exported file (ONNX graph or TensorRT engine), its manifest's path and content."""

    path: Path
    manifest_path: Path
    manifest: dict[str, Any]


def export_problems(pipeline) -> list[str]:
    """Why `pipeline` cannot become a graph, before anything is traced ([] when it can)."""
    settings = pipeline.settings
    if settings is not None and not settings.deterministic:
        steps = (f"all {settings.steps} trained steps" if settings.sampler == "ddpm"
                 else f"{settings.steps} steps")
        return [f"sampler {settings.sampler!r} ({steps}, eta = {settings.eta:g}) draws fresh "
                "noise at every step, which a graph cannot (its only randomness is the `noise` "
                "input): export a deterministic DDIM, sampler 'ddim' with eta = 0"]
    return []


def export_model(pipeline, out_path: str | os.PathLike, fps: float,
                 source: dict[str, Any] | None = None, example_persons: int = 2,
                 parity_tolerance_m: float | None = None) -> ExportResult:
    """Export a built LiftingPipeline to `out_path` (.onnx) with its manifest; verify parity.

    The manifest records what the pipeline runs (contract.describe_pipeline: its sampler's
    settings, its config's window and input normalisation) and `fps`, its training frame rate;
    `source` is recorded as is (e.g. the checkpoint's name and sha256). Raises ExportError (and
    writes nothing) if the pipeline cannot export (`export_problems`: a stochastic sampler), the
    graph fails its checks, or ONNX Runtime differs from PyTorch by more than
    `parity_tolerance_m` (default PARITY_TOLERANCE_M). With `reproj` aggregation and nearly
    identical hypotheses, float rounding can flip a per-joint choice, so parity is only as tight
    as the hypotheses are close: a latency benchmark may pass a looser tolerance.
    """
    out_path = Path(out_path)
    tolerance = PARITY_TOLERANCE_M if parity_tolerance_m is None else parity_tolerance_m
    problems = export_problems(pipeline)
    if problems:
        raise ExportError(f"{out_path}: cannot export: " + "; ".join(problems))
    fields = describe_pipeline(pipeline, fps)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Export, check and describe the new graph in a staging directory beside the target; only a
    # graph that passed everything replaces the old one (a shipped model is never lost to a
    # failed export).
    with tempfile.TemporaryDirectory(prefix=f".{out_path.name}.", dir=out_path.parent) as tmp:
        staged = Path(tmp) / out_path.name
        model = export_pipeline_onnx(pipeline, staged, example_persons, graph_metadata(fields))
        parity = onnx_parity(pipeline, staged)
        if not parity < tolerance:
            raise ExportError(f"{out_path}: ONNX Runtime differs from PyTorch by {parity:.3g} m "
                              f"(> {tolerance} m); export discarded")
        staged_manifest = write_manifest(staged, _manifest_fields(fields, model, parity, source))
        os.replace(staged, out_path)
        os.replace(staged_manifest, manifest_path(out_path))
    return ExportResult(out_path, manifest_path(out_path), read_manifest(out_path))


def _manifest_fields(fields, model, parity, source) -> dict[str, Any]:
    shapes = io_shapes(fields["window"], fields["hypotheses"], fields["input_normalisation"])
    out = {"format": MANIFEST_FORMAT, **fields}
    out.update({
        "opset": OPSET,
        "persons_axis": PERSONS,
        "inputs": {n: list(shapes[n]) for n in input_names(fields["input_normalisation"])},
        "outputs": {n: list(shapes[n]) for n in OUTPUT_NAMES},
        "nodes": len(model.graph.node),
        "parity_max_abs_diff_m": parity,
        "source": source or {},
        "exporter": exporter_versions(),
    })
    problems = manifest_problems(out)
    if problems:  # a bug here, not in the model: never write a manifest the runtime refuses
        raise ExportError("the manifest would be inconsistent:\n  " + "\n  ".join(problems))
    return out


def export_checkpoint(checkpoint_path: str | os.PathLike, out_path: str | os.PathLike,
                      steps: int | None = None, hypotheses: int | None = None,
                      aggregation: str | None = None,
                      parity_tolerance_m: float | None = None, sampler: str | None = None,
                      eta: float | None = None) -> ExportResult:
    """Export a checkpoint's run-time computation. Sampler settings: overrides of the
    checkpoint config's (None = its value; sampler.SamplerSettings.from_config), refused with
    a ConfigError (a ValueError) when invalid. The input normalisation ("screen" or "rays") is
    the checkpoint's: the graph takes `image_wh` or `intrinsics` accordingly."""
    from .checkpoint import checkpoint_fps, load_checkpoint
    from .lifter import LiftingPipeline

    model, config, extra = load_checkpoint(checkpoint_path)
    pipeline = LiftingPipeline(model, config, steps=steps, hypotheses=hypotheses,
                               aggregation=aggregation, sampler=sampler, eta=eta)
    source = {"checkpoint": Path(checkpoint_path).name,
              "checkpoint_sha256": sha256_file(checkpoint_path)}
    return export_model(pipeline, out_path, fps=checkpoint_fps(extra), source=source,
                        parity_tolerance_m=parity_tolerance_m)


# --- TensorRT ------------------------------------------------------------------------------


def trtexec_command(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                    manifest: dict[str, Any], fp16: bool, min_persons: int = MIN_PERSONS,
                    opt_persons: int = OPT_PERSONS, max_persons: int = MAX_PERSONS) -> str:
    """The trtexec command line that builds the same engine as `build_tensorrt_engine` from the
    graph that `manifest` describes."""
    names = input_names(manifest["input_normalisation"])

    def shapes(p: int) -> str:
        dims = io_shapes(manifest["window"], manifest["hypotheses"],
                         manifest["input_normalisation"], p)
        return ",".join(f"{n}:{'x'.join(map(str, dims[n]))}" for n in names)

    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if fp16:
        parts.append("--fp16")
    parts += [f"--minShapes={shapes(min_persons)}", f"--optShapes={shapes(opt_persons)}",
              f"--maxShapes={shapes(max_persons)}"]
    return " ".join(shlex.quote(p) for p in parts)


def build_tensorrt_engine(onnx_path: str | os.PathLike, fp16: bool = False,
                          engine_path: str | os.PathLike | None = None,
                          min_persons: int = MIN_PERSONS, opt_persons: int = OPT_PERSONS,
                          max_persons: int = MAX_PERSONS, workspace_mib: int = 1024,
                          trt=None, device_name: str | None = None) -> ExportResult:
    """Build a serialized TensorRT engine from an exported ONNX file, with its manifest.

    The engine manifest copies the ONNX manifest's settings and adds the TensorRT version, the GPU
    name, the precision, the persons profile and the ONNX file's sha256: engines only run on the
    GPU model and TensorRT version they were built with. `trt` (default: `import tensorrt`) and
    `device_name` (default: `gpu_name()`) exist so the logic can run against a stand-in.
    Raises TensorRTUnavailable (carrying the trtexec command) when TensorRT or a GPU is missing.
    """
    onnx_path = Path(onnx_path)
    onnx_manifest = read_manifest(onnx_path)
    if onnx_manifest.get("format") != MANIFEST_FORMAT:
        raise ExportError(f"{onnx_path}: not an exported ONNX file (manifest format "
                          f"{onnx_manifest.get('format')!r})")
    if not 1 <= min_persons <= opt_persons <= max_persons:
        raise ValueError(f"persons profile must satisfy 1 <= min <= opt <= max, got "
                         f"{min_persons}, {opt_persons}, {max_persons}")
    engine_path = Path(engine_path) if engine_path else engine_path_for(onnx_path, fp16)
    command = trtexec_command(onnx_path, engine_path, onnx_manifest, fp16, min_persons,
                              opt_persons, max_persons)
    trt = trt or import_tensorrt()
    if trt is None:
        raise TensorRTUnavailable("TensorRT is not installed (`import tensorrt` failed).", command)
    device_name = device_name or gpu_name()
    if device_name is None:
        raise TensorRTUnavailable("No CUDA GPU is visible to torch.", command)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # required in 8.x, default in 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    normalisation = onnx_manifest["input_normalisation"]
    for name in input_names(normalisation):
        profile.set_shape(name, *(io_shapes(onnx_manifest["window"], onnx_manifest["hypotheses"],
                                            normalisation, p)[name]
                                  for p in (min_persons, opt_persons, max_persons)))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    return _write_engine_manifest(engine_path, onnx_path, onnx_manifest, fp16, trt, device_name,
                                  (min_persons, opt_persons, max_persons), command)


def _write_engine_manifest(engine_path: Path, onnx_path: Path, onnx_manifest: dict, fp16: bool,
                           trt, device_name: str, profile: tuple[int, int, int],
                           command: str) -> ExportResult:
    fields = {k: v for k, v in onnx_manifest.items()
              if k not in ("format", "file", "sha256", "bytes", "created_utc", "nodes")}
    fields.update({
        "format": ENGINE_MANIFEST_FORMAT,
        "precision": "fp16" if fp16 else "fp32",
        "tensorrt_version": str(trt.__version__),
        "gpu": device_name,
        "persons_profile": list(profile),
        "onnx": {"file": onnx_path.name, "sha256": onnx_manifest["sha256"]},
        "trtexec_equivalent": command,
    })
    mpath = write_manifest(engine_path, fields)
    return ExportResult(engine_path, mpath, read_manifest(engine_path))


def register_engine(engine_path: str | os.PathLike, onnx_path: str | os.PathLike, fp16: bool,
                    trt=None, device_name: str | None = None) -> ExportResult:
    """Write the manifest of an engine built outside Python (trtexec) from an exported ONNX file.

    The engine is deserialized with this machine's TensorRT first (so a manifest is only written
    for an engine that loads here), and its persons profile is read from it.
    """
    engine_path, onnx_path = Path(engine_path), Path(onnx_path)
    onnx_manifest = read_manifest(onnx_path)
    trt = trt or import_tensorrt()
    device_name = device_name or gpu_name()
    command = trtexec_command(onnx_path, engine_path, onnx_manifest, fp16)
    if trt is None or device_name is None:
        raise TensorRTUnavailable("registering an engine needs TensorRT and a CUDA GPU here",
                                  command)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise ExportError(f"{engine_path}: TensorRT {trt.__version__} cannot deserialize it "
                          "(built by another TensorRT version or for another GPU?)")
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    graph_names = (*input_names(onnx_manifest["input_normalisation"]), *OUTPUT_NAMES)
    if names != set(graph_names):
        raise ExportError(f"{engine_path}: engine tensors {sorted(names)} are not the exported "
                          f"graph's {sorted(graph_names)}")
    profile = tuple(int(engine.get_tensor_profile_shape("keypoints_px", 0)[k][0]) for k in range(3))
    return _write_engine_manifest(engine_path, onnx_path, onnx_manifest, fp16, trt, device_name,
                                  profile, command)

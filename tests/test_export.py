"""ONNX export: TensorRT 8.6 compatibility of the graph, parity with PyTorch, manifests, the CLI."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from diffhpe_models import contract, export, tensorrt_ops
from diffhpe_models.contract import OUTPUT_NAMES, ManifestError, input_names, read_manifest
from diffhpe_models.export import ExportError, example_inputs, tensorrt_graph_problems
from diffhpe_models.lifter import build_pipeline

INPUT_NAMES = input_names("screen")

REPO = Path(__file__).resolve().parents[1]


# --- the operator list ---------------------------------------------------------------------


def test_operator_list_is_the_86_table():
    ops = tensorrt_ops.SUPPORTED_OPS
    assert len(ops) > 140
    # Rows the 8.6 table marks "N" must not be in the list; "Y" rows must.
    for unsupported in ("Bernoulli", "Unique", "STFT", "SequenceAt", "MatMulInteger", "Hardmax"):
        assert unsupported not in ops
    for supported in ("MatMul", "Gemm", "Conv", "Einsum", "LayerNormalization", "Softmax",
                      "GatherElements", "ArgMin", "Erf", "Where"):
        assert supported in ops
    assert tensorrt_ops.MAX_OPSET == 17
    assert "8.6-GA" in tensorrt_ops.SOURCE


# --- the exported graph --------------------------------------------------------------------


def test_exported_graph_is_tensorrt_86_compatible(tiny_onnx):
    model = onnx.load(tiny_onnx)
    assert tensorrt_graph_problems(model) == []
    assert export.interface_problems(model, 27, 3, "screen") == []
    assert export.interface_problems(model, 27, 3, "rays") == [
        "inputs are ['keypoints_px', 'mask', 'image_wh', 'noise'], expected "
        "['keypoints_px', 'mask', 'intrinsics', 'noise']"]
    # Walk the graph explicitly too: op list, opset, no control flow, only axis 0 dynamic.
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    ops = {n.op_type for n in model.graph.node}
    assert ops <= tensorrt_ops.SUPPORTED_OPS, ops - tensorrt_ops.SUPPORTED_OPS
    assert not ops & {"Loop", "If", "Scan"}
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        assert dims[0].dim_param == "persons"
        assert all(d.HasField("dim_value") for d in dims[1:]), vi.name
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)


def test_raw_trace_has_shape_chains_that_the_export_folds(tiny_checkpoint):
    """The legacy tracer leaves Shape->Gather chains of static dims; the export removes them
    (so the constant-folding check is not vacuous)."""
    pipeline = build_pipeline(tiny_checkpoint)
    ex = example_inputs(27, 3)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(pipeline, tuple(torch.from_numpy(ex[n]) for n in INPUT_NAMES), buffer,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes={n: {0: "persons"} for n in (*INPUT_NAMES, *OUTPUT_NAMES)},
                          opset_version=17, do_constant_folding=True, dynamo=False)
    raw = onnx.load_from_string(buffer.getvalue())
    problems = tensorrt_graph_problems(raw)
    assert any("from a Shape (not constant-folded)" in p for p in problems), problems
    folded = export.fold_static_shapes(export.fold_constants(export.simplify(raw)))
    assert tensorrt_graph_problems(folded) == []
    assert len(folded.graph.node) < len(raw.graph.node)


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def test_checker_flags_each_kind_of_problem():
    x, y = _vi("x", ["persons", 4]), _vi("y", ["persons", 4])
    good = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    assert tensorrt_graph_problems(good) == []

    opset18 = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=18)
    assert any("opset 18" in p for p in tensorrt_graph_problems(opset18))

    unsupported = _model([helper.make_node("Hardmax", ["x"], ["y"])], [x], [y])
    assert any("not supported by TensorRT 8.6" in p for p in tensorrt_graph_problems(unsupported))

    frames = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["persons", "frames"])],
                    [_vi("y", ["persons", "frames"])])
    assert any("only axis 0 may be dynamic" in p for p in tensorrt_graph_problems(frames))
    batch_named = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["batch", 4])],
                         [_vi("y", ["batch", 4])])
    assert any("axis 0 must be the dynamic axis" in p for p in tensorrt_graph_problems(batch_named))

    # Loop (control flow): body adds 1 to a carried value.
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), _vi("v_in", ["persons", 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _vi("v_out", ["persons", 4])],
        initializer=[numpy_helper.from_array(np.ones(4, np.float32), "one")])
    loop = _model([helper.make_node("Loop", ["trip", "", "x"], ["y"], body=body)], [x], [y],
                  [numpy_helper.from_array(np.array(3, np.int64), "trip")])
    assert any("control flow" in p for p in tensorrt_graph_problems(loop))

    # Constant -> Shape -> Gather left from tracing: everything constant, not folded.
    chain = _model(
        [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.zeros((2, 4), np.float32))),
         helper.make_node("Shape", ["c"], ["s"]),
         helper.make_node("Gather", ["s", "i1"], ["n"]),
         helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["x", "nf"], ["y"])],
        [x], [y], [numpy_helper.from_array(np.array(1, np.int64), "i1")])
    problems = tensorrt_graph_problems(chain)
    assert any("(Shape): all inputs are constant" in p for p in problems), problems
    assert any("(Shape): reads only static dims [2, 4]" in p for p in problems), problems
    folded = export.fold_constants(chain)
    assert tensorrt_graph_problems(folded) == []
    assert [n.op_type for n in folded.graph.node] == ["Mul"]

    # Shape of a tensor with a dynamic persons axis, picking its static dim.
    pick = _model([helper.make_node("Shape", ["x"], ["s"]),
                   helper.make_node("Gather", ["s", "i1"], ["n"]),
                   helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
                   helper.make_node("Mul", ["x", "nf"], ["y"])],
                  [x], [y], [numpy_helper.from_array(np.array(1, np.int64), "i1")])
    assert any("picks static dims [4]" in p for p in tensorrt_graph_problems(pick))
    assert tensorrt_graph_problems(export.fold_static_shapes(pick)) == []

    double = _model([helper.make_node("Relu", ["x"], ["y"])],
                    [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["persons", 4])],
                    [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["persons", 4])])
    assert any("float64" in p for p in tensorrt_graph_problems(double))

    computed_axes = _model([helper.make_node("Shape", ["x"], ["s"]),
                            helper.make_node("Slice", ["s", "st", "en"], ["ax"]),
                            helper.make_node("Unsqueeze", ["x", "ax"], ["u"]),
                            helper.make_node("Squeeze", ["u", "ax0"], ["y"])],
                           [x], [y], [numpy_helper.from_array(np.array([0], np.int64), "st"),
                                      numpy_helper.from_array(np.array([1], np.int64), "en"),
                                      numpy_helper.from_array(np.array([0], np.int64), "ax0")])
    assert any("(Unsqueeze): input 1 must be constant" in p
               for p in tensorrt_graph_problems(computed_axes))


def _feeds(persons, seed):
    """Inputs of a "screen" graph (example_inputs holds both calibrations)."""
    return {n: v for n, v in example_inputs(27, 3, persons, seed).items() if n in INPUT_NAMES}


def test_parity_onnxruntime_equals_pytorch(tiny_checkpoint, tiny_onnx):
    import onnxruntime as ort

    pipeline = build_pipeline(tiny_checkpoint)
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    outputs = []
    for persons, seed in ((1, 0), (5, 1), (2, 2)):
        feeds = _feeds(persons, seed)
        got = session.run(list(OUTPUT_NAMES), feeds)
        with torch.inference_mode():
            want = [t.numpy() for t in pipeline(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))]
        assert got[0].shape == (persons, 27, 17, 3) and got[1].shape == (persons, 27, 17)
        for g, w in zip(got, want):
            assert np.abs(g - w).max() < 1e-4
        outputs.append(got)
    # Not vacuous: the output depends on the 2D input and on the noise.
    feeds = _feeds(2, 2)
    feeds["keypoints_px"] = feeds["keypoints_px"] * 1.3
    moved = session.run(list(OUTPUT_NAMES), feeds)
    assert np.abs(moved[0] - outputs[2][0]).max() > 1e-3
    feeds = _feeds(2, 2)
    feeds["noise"] = np.random.default_rng(9).standard_normal(feeds["noise"].shape, dtype=np.float32)
    renoised = session.run(list(OUTPUT_NAMES), feeds)
    assert np.abs(renoised[1] - outputs[2][1]).max() > 1e-4
    # Root-relative output: the pelvis is the origin.
    assert np.abs(outputs[0][0][:, :, 0]).max() < 1e-6


def test_residual_wrapper_exports_with_parity(tmp_path):
    """A residual Wrapper (x0 = its MixSTE's pose + the denoiser's correction) exports, and
    the graph computes what PyTorch does."""
    import copy

    import onnxruntime as ort
    from conftest import TINY_CONFIG, make_untrained_checkpoint

    from diffhpe_models.export import export_checkpoint

    config = copy.deepcopy(TINY_CONFIG)
    config["model"]["residual"] = True
    config["diffusion"]["pose_scale_m"] = 0.25
    checkpoint = make_untrained_checkpoint(tmp_path / "residual.pt", config)
    onnx_path = export_checkpoint(checkpoint, tmp_path / "residual.onnx").path
    pipeline = build_pipeline(checkpoint)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = _feeds(2, 3)
    got = session.run(list(OUTPUT_NAMES), feeds)
    with torch.inference_mode():
        want = [t.numpy() for t in pipeline(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))]
    for g, w in zip(got, want):
        assert np.abs(g - w).max() < 1e-4
    assert got[1].max() > 1e-4                       # the hypotheses differ


# --- manifest ------------------------------------------------------------------------------


def test_manifest_describes_the_export(tiny_checkpoint, tiny_onnx):
    m = read_manifest(tiny_onnx)
    assert m["format"] == contract.MANIFEST_FORMAT
    assert (m["variant"], m["steps"], m["hypotheses"], m["window"]) == ("diffhpe_wrapper", 2, 3, 27)
    assert (m["window_mode"], m["fps"], m["opset"], m["aggregation"]) == ("causal", 30.0, 17, "mean")
    assert (m["sampler"], m["eta"]) == ("ddim", 0.0)
    assert m["joints"][0] == "pelvis" and len(m["joints"]) == 17
    assert list(m["inputs"]) == ["keypoints_px", "mask", "image_wh", "noise"]
    assert m["inputs"]["noise"] == ["persons", 3, 27, 17, 3]
    assert m["sha256"] == contract.sha256_file(tiny_onnx)
    assert m["source"]["checkpoint_sha256"] == contract.sha256_file(tiny_checkpoint)
    assert {"torch", "onnx", "onnxruntime"} <= set(m["exporter"])
    assert m["parity_max_abs_diff_m"] < 1e-4
    assert m["input_normalisation"] == "screen" and "u / w" in m["normalisation"]
    assert m["intrinsics_guess_hfov_deg"] is None  # a screen model never uses intrinsics
    # The graph carries the same contract fields (checked against the manifest at load).
    meta = {p.key: p.value for p in onnx.load(tiny_onnx).metadata_props}
    assert json.loads(meta[contract.GRAPH_METADATA_KEY]) == {k: m[k] for k in contract.CONTRACT_FIELDS}


def test_rays_export_takes_intrinsics_and_records_the_guess(tiny_rays_checkpoint, tiny_rays_onnx):
    import onnxruntime as ort

    m = read_manifest(tiny_rays_onnx)
    assert m["input_normalisation"] == "rays" and "(u - cx) / fx" in m["normalisation"]
    assert list(m["inputs"]) == ["keypoints_px", "mask", "intrinsics", "noise"]
    assert m["inputs"]["intrinsics"] == ["persons", 4]
    assert m["intrinsics_guess_hfov_deg"] == 65.0
    model = onnx.load(tiny_rays_onnx)
    assert tensorrt_graph_problems(model) == []
    assert export.interface_problems(model, 27, 3, "rays") == []
    # Parity with PyTorch, and the graph really reads the intrinsics.
    pipeline = build_pipeline(tiny_rays_checkpoint)
    session = ort.InferenceSession(str(tiny_rays_onnx), providers=["CPUExecutionProvider"])
    feeds = {n: v for n, v in example_inputs(27, 3, persons=2).items()
             if n in pipeline.input_names}
    got = session.run(list(OUTPUT_NAMES), feeds)
    with torch.inference_mode():
        want = pipeline(*(torch.from_numpy(feeds[n]) for n in pipeline.input_names))
    assert max(np.abs(g - w.numpy()).max() for g, w in zip(got, want)) < 1e-4
    feeds["intrinsics"] = feeds["intrinsics"] * np.float32([1.5, 1.5, 1.0, 1.0])
    assert np.abs(session.run(["pose3d_m"], feeds)[0] - got[0]).max() > 1e-3


def test_manifest_records_what_the_sampler_runs(tiny_checkpoint, tmp_path):
    """The manifest is written from the pipeline's sampler (its settings object), not from the
    config or the call's arguments: the two cannot differ."""
    from diffhpe_models.checkpoint import load_checkpoint
    from diffhpe_models.lifter import LiftingPipeline
    from diffhpe_models.sampler import SamplerSettings

    model, config, _ = load_checkpoint(tiny_checkpoint)
    settings = SamplerSettings("ddim", 3, 2, 0.0, "median")
    pipeline = LiftingPipeline(model, config, settings)
    m = export.export_model(pipeline, tmp_path / "s3.onnx", fps=25.0).manifest
    ran = pipeline.sampler
    assert {k: m[k] for k in ("sampler", "steps", "hypotheses", "eta", "aggregation")} == \
        ran.settings.as_dict()
    assert (m["steps"], m["eta"]) == (len(ran.timesteps), ran.eta) == (3, 0.0)
    assert m["hypotheses"] == pipeline.hypotheses == 2 and m["fps"] == 25.0
    assert m["steps"] != config.diffusion.steps  # the config's default is not what ran
    # The graph unrolls exactly those steps: one time embedding per denoiser call.
    calls = []
    pipeline.model.denoiser.register_forward_hook(lambda *a: calls.append(1))
    with torch.inference_mode():
        ex = example_inputs(27, 2, persons=1)
        pipeline(*(torch.from_numpy(ex[n]) for n in pipeline.input_names))
    assert len(calls) == m["steps"]


def test_manifest_refuses_changed_files_and_mismatched_configs(tiny_onnx, tmp_path):
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(tiny_onnx.read_bytes())
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(copy)
    manifest = json.loads(contract.manifest_path(tiny_onnx).read_text())
    with pytest.raises(ManifestError, match="describes 'tiny.onnx'"):
        contract.manifest_path(copy).write_text(json.dumps(manifest))
        read_manifest(copy)
    manifest["file"] = "copy.onnx"
    contract.manifest_path(copy).write_text(json.dumps(manifest))
    assert read_manifest(copy)["sha256"] == manifest["sha256"]
    data = bytearray(copy.read_bytes())
    data[-10] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256 .* does not match"):
        read_manifest(copy)
    contract.manifest_path(copy).write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable manifest"):
        read_manifest(copy)
    with pytest.raises(ManifestError, match="window: file has 27, configuration wants 81"):
        contract.check_expected(manifest, {"window": 81, "steps": 2})
    # A manifest of the old format is refused with what to do.
    manifest["format"] = "diffhpe-export-v1"
    contract.manifest_path(copy).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="re-export with training/export.py"):
        read_manifest(copy, verify_checksum=False)


def test_stochastic_sampler_is_refused_clearly_and_leaves_no_file(tiny_checkpoint, tmp_path):
    from diffhpe_models.checkpoint import load_checkpoint
    from diffhpe_models.lifter import LiftingPipeline

    model, config, _ = load_checkpoint(tiny_checkpoint)
    out = tmp_path / "stochastic.onnx"
    with pytest.raises(ExportError, match=r"sampler 'ddim' \(2 steps, eta = 0.5\) draws fresh noise"):
        export.export_model(LiftingPipeline(model, config, eta=0.5), out, fps=30.0)
    # DDPM: one message before tracing (not one graph error per random op), saying what to do.
    with pytest.raises(ExportError) as info:
        export.export_model(LiftingPipeline(model, config, sampler="ddpm"), out, fps=30.0)
    message = str(info.value)
    assert "sampler 'ddpm' (all 50 trained steps, eta = 1)" in message
    assert "export a deterministic DDIM, sampler 'ddim' with eta = 0" in message
    assert message.count("\n") == 0
    assert list(tmp_path.iterdir()) == []


# --- FLOPs ---------------------------------------------------------------------------------


def test_graph_flops_counts_matmul_gemm_conv_einsum():
    inits = [numpy_helper.from_array(np.ones((8, 5), np.float32), "w"),
             numpy_helper.from_array(np.ones((5, 3), np.float32), "g"),
             numpy_helper.from_array(np.ones((6, 1, 3), np.float32), "k"),
             numpy_helper.from_array(np.ones((3, 2), np.float32), "e")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]),                 # (P,4,8)@(8,5)
             helper.make_node("Reshape", ["a", "shape"], ["a2"]),            # (4P, 5)
             helper.make_node("Gemm", ["a2", "g"], ["b"]),                  # (4P,5)@(5,3)
             helper.make_node("Unsqueeze", ["b", "ax"], ["b3"]),            # (4P,1,3)
             helper.make_node("Conv", ["b3", "k"], ["c"], kernel_shape=[3]),  # -> (4P,6,1)
             helper.make_node("Einsum", ["b", "e"], ["y"], equation="ij,jk->ik")]
    inits += [numpy_helper.from_array(np.array([-1, 5], np.int64), "shape"),
              numpy_helper.from_array(np.array([1], np.int64), "ax")]
    model = _model(nodes, [_vi("x", ["persons", 4, 8])], [_vi("y", ["persons", 2]), _vi("c", None)],
                   inits)
    for persons in (1, 3):
        rows = 4 * persons
        expected = {"MatMul": 2 * rows * 8 * 5, "Gemm": 2 * rows * 5 * 3,
                    "Conv": 2 * rows * 6 * 1 * 3, "Einsum": 2 * rows * 3 * 2}
        counted = export.graph_flops(model, persons)
        assert counted["by_op"] == expected and counted["unknown"] == []
        assert counted["flops"] == sum(expected.values())


def test_exported_graph_flops_scale_with_persons(tiny_onnx):
    model = onnx.load(tiny_onnx)
    one, four = export.graph_flops(model, 1), export.graph_flops(model, 4)
    assert one["unknown"] == [] and one["flops"] > 1e6
    # The condition network and the H x steps denoiser calls all scale with the batch;
    # only per-joint constant work (none here) would not.
    assert four["flops"] == 4 * one["flops"]


# --- CLI -----------------------------------------------------------------------------------


def test_export_cli_writes_graph_and_manifest_and_explains_tensorrt(tiny_checkpoint, tmp_path):
    out = tmp_path / "models" / "lifter"
    result = subprocess.run(
        [sys.executable, str(REPO / "training" / "export.py"), "--checkpoint", str(tiny_checkpoint),
         "--steps", "1", "--hypotheses", "2", "--window", "27", "--out", str(out)],
        capture_output=True, text=True, timeout=180, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    onnx_path = out.with_suffix(".onnx")
    manifest = read_manifest(onnx_path)
    assert (manifest["steps"], manifest["hypotheses"]) == (1, 2)
    assert "graph takes keypoints_px, mask, image_wh, noise" in result.stdout
    if contract.import_tensorrt() is None or contract.gpu_name() is None:
        assert "trtexec --onnx=" in result.stdout and "--fp16" in result.stdout
        assert "--minShapes=keypoints_px:1x27x17x2" in result.stdout
        assert "--maxShapes=keypoints_px:16x27x17x2" in result.stdout
    # A window the checkpoint was not trained for is refused (weights are per window length).
    bad = subprocess.run(
        [sys.executable, str(REPO / "training" / "export.py"), "--checkpoint", str(tiny_checkpoint),
         "--window", "81", "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, timeout=180, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert bad.returncode == 2 and "window 81" in bad.stderr
    assert not (tmp_path / "bad.onnx").exists()
    # A sampler that cannot export: one clear line, exit 1, nothing written.
    ddpm = subprocess.run(
        [sys.executable, str(REPO / "training" / "export.py"), "--checkpoint", str(tiny_checkpoint),
         "--sampler", "ddpm", "--out", str(tmp_path / "ddpm")],
        capture_output=True, text=True, timeout=180, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert ddpm.returncode == 1 and "draws fresh noise at every step" in ddpm.stderr
    assert not (tmp_path / "ddpm.onnx").exists()


def _env():
    import os

    return dict(os.environ)


def test_failed_export_keeps_the_existing_model(tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "lifter.onnx"
    first = export.export_checkpoint(tiny_checkpoint, out)
    before = out.read_bytes(), first.manifest_path.read_bytes()
    monkeypatch.setattr(export, "PARITY_TOLERANCE_M", 0.0)  # nothing can pass now
    with pytest.raises(ExportError, match="discarded"):
        export.export_checkpoint(tiny_checkpoint, out)
    assert (out.read_bytes(), first.manifest_path.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lifter.onnx", "lifter.onnx.json"]
    read_manifest(out)  # still a consistent pair

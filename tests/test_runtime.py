"""runtime.load_lifter / Lifter.lift on the torch and onnxruntime backends (real, CPU): both
input normalisations, and the refusal of model files whose manifest disagrees with the graph."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from diffhpe_models import contract, export
from diffhpe_models.camera import guess_intrinsics
from diffhpe_models.contract import ManifestError
from diffhpe_models.runtime import BackendError, load_lifter


def _inputs(persons, seed=0):
    ex = export.example_inputs(27, 3, persons=persons, seed=seed)
    return ex["keypoints_px"], ex["mask"], ex["image_wh"]


@pytest.fixture(scope="module")
def onnx_lifter(tiny_onnx):
    return load_lifter(tiny_onnx, intra_op_threads=1)


def test_onnx_lifter_attributes_and_output(onnx_lifter):
    lifter = onnx_lifter
    assert lifter.backend_name == "onnxruntime"
    assert (lifter.window, lifter.hypotheses, lifter.steps) == (27, 3, 2)
    assert (lifter.fps, lifter.mode) == (30.0, "causal")
    pose, spread = lifter.lift(*_inputs(3))
    assert pose.shape == (3, 27, 17, 3) and spread.shape == (3, 27, 17)
    assert pose.dtype == np.float32 and spread.dtype == np.float32
    assert np.isfinite(pose).all() and (spread >= 0).all() and spread.max() > 0
    np.testing.assert_allclose(pose[:, :, 0], 0.0, atol=1e-6)  # root-relative


def test_torch_and_onnxruntime_agree_with_the_same_seed(tiny_checkpoint, tiny_onnx):
    torch_lifter = load_lifter(tiny_checkpoint, seed=7)
    ort_lifter = load_lifter(tiny_onnx, seed=7)
    assert torch_lifter.backend_name == "torch"
    assert torch_lifter.manifest["steps"] == ort_lifter.steps
    for persons in (1, 4):
        a, b = torch_lifter.lift(*_inputs(persons)), ort_lifter.lift(*_inputs(persons))
        for x, y in zip(a, b):
            assert np.abs(x - y).max() < 1e-4


def test_checkpoint_overrides_of_steps_and_hypotheses(tiny_checkpoint):
    lifter = load_lifter(tiny_checkpoint, steps=1, hypotheses=5)
    assert (lifter.steps, lifter.hypotheses) == (1, 5)
    assert lifter.lift(*_inputs(2))[0].shape == (2, 27, 17, 3)
    with pytest.raises(BackendError, match="steps"):
        load_lifter(tiny_checkpoint, steps=0)


def test_noise_fresh_fixed_and_seeded(tiny_onnx):
    """Fresh noise every call where it only moves the spread (the shipped Wrapper, aggregation
    'conditioner'); a model whose pose depends on the noise (the tiny one: 'mean') keeps one
    noise per person even when asked for fresh noise, so its pose never jitters."""
    shipped = Path(__file__).resolve().parents[1] / "models" / "diffhpe_lifter.onnx"
    fresh = load_lifter(shipped, seed=1)
    assert fresh.fixed_noise is False
    buffer = fresh._noise
    kp, mask, wh = _inputs(2)
    kp = kp * 3.0 + 200.0                                  # a person-sized pose in pixels
    first, second = fresh.lift(kp, mask, wh), fresh.lift(kp, mask, wh)
    np.testing.assert_array_equal(first[0], second[0])     # the pose: the frozen MixSTE's
    assert np.abs(first[1] - second[1]).max() > 1e-5       # the spread: new noise each call
    assert fresh._noise is buffer                          # drawn into the preallocated buffer
    again = load_lifter(shipped, seed=1).lift(kp, mask, wh)
    np.testing.assert_array_equal(again[1], first[1])      # same seed, same first call
    kept = load_lifter(tiny_onnx, seed=1)
    assert kept.fixed_noise is True
    np.testing.assert_array_equal(kept.lift(*_inputs(2))[0], kept.lift(*_inputs(2))[0])
    fixed = load_lifter(shipped, seed=1, fixed_noise=True)
    np.testing.assert_array_equal(fixed.lift(kp, mask, wh)[1], fixed.lift(kp, mask, wh)[1])
    # More persons than preallocated: the buffer grows, earlier rows keep their noise.
    small = load_lifter(tiny_onnx, seed=1, max_persons=2, fixed_noise=True)
    before = small.lift(*_inputs(2))[0]
    pose, _ = small.lift(*[np.concatenate([a, a]) for a in _inputs(2)])
    assert small.max_persons == 4
    np.testing.assert_allclose(pose[:2], before, atol=1e-6)


def test_bad_inputs_raise_clear_errors(onnx_lifter):
    kp, mask, wh = _inputs(2)
    with pytest.raises(ValueError, match=r"keypoints_px: expected shape \(P, 27, 17, 2\)"):
        onnx_lifter.lift(kp[:, :26], mask, wh)
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 27, 17\)"):
        onnx_lifter.lift(kp, mask[:1], wh)
    with pytest.raises(ValueError, match="image_wh: expected shape"):
        onnx_lifter.lift(kp, mask, wh[:, :1])
    with pytest.raises(ValueError, match="image sizes must be positive"):
        onnx_lifter.lift(kp, mask, np.zeros(2))
    bad = kp.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        onnx_lifter.lift(bad, mask, wh)
    # One image size for all persons, float64 input: accepted.
    pose, _ = onnx_lifter.lift(kp.astype(np.float64), mask, np.array([640, 480]))
    assert pose.shape == (2, 27, 17, 3)
    empty = onnx_lifter.lift(kp[:0], mask[:0], wh[:0])
    assert empty[0].shape == (0, 27, 17, 3) and empty[1].shape == (0, 27, 17)


def test_load_time_errors(tiny_checkpoint, tiny_onnx, tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_lifter(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="backend 'tflite'"):
        load_lifter(tiny_onnx, backend="tflite")
    with pytest.raises(BackendError, match="needs the .pt checkpoint"):
        load_lifter(tiny_onnx, backend="torch")
    with pytest.raises(BackendError, match="export it"):
        load_lifter(tiny_checkpoint, backend="onnxruntime")
    with pytest.raises(BackendError, match="sampler settings are fixed in an exported graph"):
        load_lifter(tiny_onnx, steps=5)
    with pytest.raises(ManifestError, match="hypotheses: file has 3, configuration wants 5"):
        load_lifter(tiny_onnx, expected={"hypotheses": 5, "window": 27})
    with pytest.raises(ManifestError, match="window_mode: file has 'causal'"):
        load_lifter(tiny_checkpoint, expected={"window_mode": "centred"})
    assert load_lifter(tiny_onnx, expected={"hypotheses": 3, "fps": 30.0}).hypotheses == 3

    # A graph whose bytes are garbage but whose manifest is consistent: onnxruntime refuses it
    # at load time, not at the first frame.
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    manifest = json.loads(contract.manifest_path(tiny_onnx).read_text())
    manifest.update(file="broken.onnx", sha256=contract.sha256_file(broken))
    contract.manifest_path(broken).write_text(json.dumps(manifest))
    with pytest.raises(BackendError, match="onnxruntime could not load"):
        load_lifter(broken)
    corrupt_ckpt = tmp_path / "corrupt.pt"
    corrupt_ckpt.write_bytes(b"garbage")
    with pytest.raises(BackendError, match="cannot build the lifter"):
        load_lifter(corrupt_ckpt)


def test_noise_slots_keep_a_persons_output_when_others_come_and_go(tiny_onnx):
    lifter = load_lifter(tiny_onnx, seed=3, max_persons=4, fixed_noise=True)
    kp, mask, wh = _inputs(2)
    both, _ = lifter.lift(kp, mask, wh, noise_slots=np.array([1, 3]))
    # Person in slot 3 alone, now first in the batch: same noise row, same output.
    alone, _ = lifter.lift(kp[1:], mask[1:], wh[1:], noise_slots=np.array([3]))
    np.testing.assert_allclose(alone[0], both[1], atol=1e-6)
    # Without slots it would take row 0: a different output (the test can fail).
    shifted, _ = lifter.lift(kp[1:], mask[1:], wh[1:])
    assert np.abs(shifted[0] - both[1]).max() > 1e-5
    with pytest.raises(ValueError, match="noise_slots"):
        lifter.lift(kp, mask, wh, noise_slots=np.array([0, 4]))


def test_gpu_request_without_gpu_providers_is_refused(tiny_onnx):
    import onnxruntime as ort

    if any(p in ort.get_available_providers() for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")):
        pytest.skip("this onnxruntime build has GPU providers")
    with pytest.raises(BackendError, match="no GPU execution provider"):
        load_lifter(tiny_onnx, backend="onnxruntime", device="cuda:1")


# --- camera-aware input ---------------------------------------------------------------------


def test_lifter_reports_its_sampler_settings(tiny_checkpoint, onnx_lifter):
    expected = {"sampler": "ddim", "steps": 2, "hypotheses": 3, "eta": 0.0, "aggregation": "mean"}
    assert onnx_lifter.sampler_settings == expected
    assert load_lifter(tiny_checkpoint).sampler_settings == expected
    ddpm = load_lifter(tiny_checkpoint, sampler="ddpm")
    assert ddpm.sampler_settings == {**expected, "sampler": "ddpm", "steps": 50, "eta": 1.0}
    assert ddpm.steps == 50


def test_screen_model_ignores_intrinsics(tiny_checkpoint, tiny_onnx):
    for path in (tiny_checkpoint, tiny_onnx):
        lifter = load_lifter(path, fixed_noise=True)
        assert lifter.input_normalisation == "screen"
        kp, mask, wh = _inputs(2)
        plain = lifter.lift(kp, mask, wh)
        with_k = lifter.lift(kp, mask, wh, intrinsics=[900.0, 900.0, 100.0, 50.0])
        np.testing.assert_array_equal(plain[0], with_k[0])
        # The image size is what it uses: not vacuous.
        assert np.abs(lifter.lift(kp, mask, wh * 1.5)[0] - plain[0]).max() > 1e-4
        with pytest.raises(ValueError, match="intrinsics: expected shape"):
            lifter.lift(kp, mask, wh, intrinsics=np.ones(3))


def test_rays_model_uses_intrinsics_or_the_documented_guess(tiny_rays_checkpoint, tiny_rays_onnx):
    kp, mask, wh = _inputs(2)
    k = np.array([[520.0, 515.0, 330.0, 250.0], [480.0, 480.0, 310.0, 235.0]], np.float32)
    results = {}
    for path in (tiny_rays_checkpoint, tiny_rays_onnx):
        lifter = load_lifter(path, fixed_noise=True, seed=4)
        assert lifter.input_normalisation == "rays" and lifter.guess_hfov_deg == 65.0
        guessed = lifter.lift(kp, mask, wh)
        explicit_guess = lifter.lift(kp, mask, wh, intrinsics=guess_intrinsics(wh, 65.0))
        np.testing.assert_allclose(guessed[0], explicit_guess[0], atol=1e-6)
        given = lifter.lift(kp, mask, wh, intrinsics=k)
        assert np.abs(given[0] - guessed[0]).max() > 1e-4      # the intrinsics are used
        one_k = lifter.lift(kp, mask, wh, intrinsics=k[0])        # (4,) for every person
        np.testing.assert_allclose(one_k[0][0], given[0][0], atol=1e-6)
        for bad, message in ((k[:, :3], "expected shape"), (k * [0, 1, 1, 1], "positive"),
                             (k * np.nan, "finite")):
            with pytest.raises(ValueError, match=f"intrinsics: .*{message}"):
                lifter.lift(kp, mask, wh, intrinsics=bad)
        results[lifter.backend_name] = given
    for a, b in zip(results["torch"], results["onnxruntime"]):
        assert np.abs(a - b).max() < 1e-4


# --- manifests that disagree with their graph: refused at load, one test per field ----------


def _tampered(tiny_onnx, tmp_path, graph=None, **changes):
    """A copy of the tiny export whose manifest (checksum kept right) has `changes`; `graph`
    replaces the graph file (an onnx.ModelProto)."""
    path = tmp_path / "tampered.onnx"
    if graph is not None:
        onnx.save(graph, path)
    else:
        path.write_bytes(tiny_onnx.read_bytes())
    manifest = json.loads(contract.manifest_path(tiny_onnx).read_text())
    manifest.update(changes, file=path.name, sha256=contract.sha256_file(path))
    contract.manifest_path(path).write_text(json.dumps(manifest))
    return path


def _consistent(window=27, hypotheses=3, normalisation="screen"):
    """Manifest fields that agree with themselves for these settings (so the graph check, not
    the manifest's own, is what refuses)."""
    shapes = contract.io_shapes(window, hypotheses, normalisation)
    return {"window": window, "hypotheses": hypotheses, "input_normalisation": normalisation,
            "normalisation": contract.NORMALISATION_FORMULAS[normalisation],
            "intrinsics_guess_hfov_deg": 65.0 if normalisation == "rays" else None,
            "inputs": {n: list(shapes[n]) for n in contract.input_names(normalisation)},
            "outputs": {n: list(shapes[n]) for n in contract.OUTPUT_NAMES}}


def test_manifest_window_that_is_not_the_graphs_is_refused(tiny_onnx, tmp_path):
    path = _tampered(tiny_onnx, tmp_path, **_consistent(window=81))
    with pytest.raises(ManifestError, match="manifest disagrees with its graph") as info:
        load_lifter(path)
    assert "input keypoints_px: graph shape" in str(info.value)
    assert "window: graph says 27, manifest says 81" in str(info.value)


def test_manifest_hypotheses_that_are_not_the_graphs_are_refused(tiny_onnx, tmp_path):
    path = _tampered(tiny_onnx, tmp_path, **_consistent(hypotheses=5))
    with pytest.raises(ManifestError, match=r"input noise: graph shape \['persons', 3, 27, 17, 3\], "
                                            r"manifest says \['persons', 5, 27, 17, 3\]"):
        load_lifter(path)


def test_manifest_fps_that_is_not_the_graphs_is_refused(tiny_onnx, tmp_path):
    path = _tampered(tiny_onnx, tmp_path, fps=25.0)
    with pytest.raises(ManifestError, match="fps: graph says 30.0, manifest says 25.0"):
        load_lifter(path)


def test_manifest_steps_that_are_not_the_graphs_are_refused(tiny_onnx, tmp_path):
    path = _tampered(tiny_onnx, tmp_path, steps=10)
    with pytest.raises(ManifestError, match="steps: graph says 2, manifest says 10"):
        load_lifter(path)


def test_manifest_inputs_that_are_not_the_graphs_are_refused(tiny_onnx, tmp_path):
    """A manifest claiming a camera-aware graph for a "screen" graph: the runtime would feed
    intrinsics where the graph wants the image size."""
    path = _tampered(tiny_onnx, tmp_path, **_consistent(normalisation="rays"))
    with pytest.raises(ManifestError, match=r"inputs: graph has \['image_wh', 'keypoints_px', "
                                            r"'mask', 'noise'\], manifest says \['keypoints_px', "
                                            r"'mask', 'intrinsics', 'noise'\]"):
        load_lifter(path)


def test_manifest_that_contradicts_itself_is_refused(tiny_onnx, tmp_path):
    path = _tampered(tiny_onnx, tmp_path, window=81)  # its inputs still say 27
    with pytest.raises(ManifestError, match=r"inconsistent manifest:\n.*inputs.keypoints_px: "
                                            r"shape \['persons', 27, 17, 2\], but window 81"):
        load_lifter(path)
    path = _tampered(tiny_onnx, tmp_path, **{**_consistent(normalisation="rays"),
                                             "intrinsics_guess_hfov_deg": None})
    with pytest.raises(ManifestError, match="a 'rays' model needs the field of view"):
        load_lifter(path)


def test_graph_without_contract_metadata_is_refused(tiny_onnx, tmp_path):
    graph = onnx.load(tiny_onnx)
    del graph.metadata_props[:]
    path = _tampered(tiny_onnx, tmp_path, graph=graph)
    with pytest.raises(ManifestError, match="carries no readable 'diffhpe_contract' metadata"):
        load_lifter(path)

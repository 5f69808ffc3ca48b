"""The TensorRT path (engine build, manifest checks, backend) against a stand-in of TensorRT.

TensorRT cannot be installed on our machines. `FakeTensorRTModule` below is a small stand-in of
the parts of the `tensorrt` Python API that export.py and runtime.py use (builder, ONNX parser,
runtime, engine, execution context with name-based tensor addresses). Its "engine" runs the ONNX
graph with ONNX Runtime, reading inputs from and writing outputs to the raw buffer addresses the
backend registered, so the backend's logic (binding by name, buffers allocated once, shapes set
per persons count) is exercised for real; TensorRT's own kernels are not.
"""
from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest

from diffhpe_models import contract, export, tensorrt_ops
from diffhpe_models.contract import OUTPUT_NAMES, ManifestError
from diffhpe_models.export import TensorRTUnavailable
from diffhpe_models.runtime import BackendError, TensorRTBackend, load_lifter


class FakeTensorRTModule:
    """Stand-in for `import tensorrt` (the 8.6 / 10.x name-based tensor API subset we use)."""

    def __init__(self, version: str = "8.6.1"):
        self.__version__ = version
        self.calls = {"set_tensor_address": 0, "set_input_shape": 0, "execute_async_v3": 0,
                      "build_serialized_network": 0}
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level):
                self.level = level

        class TensorIOMode:
            INPUT, OUTPUT = "INPUT", "OUTPUT"

        class NetworkDefinitionCreationFlag:
            EXPLICIT_BATCH = 0

        class MemoryPoolType:
            WORKSPACE = 0

        class BuilderFlag:
            FP16 = 1

        class Network:
            def __init__(self):
                self.onnx = None

        class OnnxParser:
            """Parses by checking the graph against the 8.6 operator list."""

            def __init__(self, network, logger):
                self.network, self.errors = network, []

            def parse(self, data: bytes) -> bool:
                import onnx

                model = onnx.load_from_string(data)
                self.errors = [f"unsupported op {n.op_type}" for n in model.graph.node
                               if n.op_type not in tensorrt_ops.SUPPORTED_OPS]
                self.network.onnx = data
                return not self.errors

            @property
            def num_errors(self):
                return len(self.errors)

            def get_error(self, i):
                return self.errors[i]

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes[name] = [list(lo), list(opt), list(hi)]

        class Config:
            def __init__(self):
                self.flags, self.profiles = set(), []

            def set_memory_pool_limit(self, pool, size):
                assert size > 0

            def set_flag(self, flag):
                self.flags.add(flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls["build_serialized_network"] += 1
                header = json.dumps({"profile": config.profiles[0].shapes,
                                     "fp16": BuilderFlag.FP16 in config.flags}).encode()
                return header + b"\n" + network.onnx

        class Context:
            def __init__(self, engine):
                self.engine, self.addresses, self.shapes = engine, {}, {}

            def set_tensor_address(self, name, ptr):
                fake.calls["set_tensor_address"] += 1
                self.addresses[name] = ptr
                return True

            def set_input_shape(self, name, shape):
                fake.calls["set_input_shape"] += 1
                lo, _, hi = self.engine.profile[name]
                if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                    return False
                self.shapes[name] = tuple(shape)
                return True

            def _view(self, name, shape):
                count = int(np.prod(shape))
                return np.ctypeslib.as_array((ctypes.c_float * count).from_address(
                    self.addresses[name])).reshape(shape)

            def execute_async_v3(self, stream):
                fake.calls["execute_async_v3"] += 1
                feeds = {n: self._view(n, self.shapes[n]).copy() for n in self.engine.inputs}
                outs = self.engine.session.run(list(OUTPUT_NAMES), feeds)
                for name, value in zip(OUTPUT_NAMES, outs):
                    self._view(name, value.shape)[...] = value
                return True

        class Engine:
            def __init__(self, header, onnx_bytes):
                import onnxruntime as ort

                self.profile = header["profile"]
                self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
                # Like TensorRT: the graph's tensors, the dynamic axis reported as -1.
                values = [*self.session.get_inputs(), *self.session.get_outputs()]
                self.inputs = [i.name for i in self.session.get_inputs()]
                self.names = [v.name for v in values]
                self.shapes = {v.name: tuple(d if isinstance(d, int) else -1 for d in v.shape)
                               for v in values}

            @property
            def num_io_tensors(self):
                return len(self.names)

            def get_tensor_name(self, i):
                return self.names[i]

            def get_tensor_mode(self, name):
                return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

            def get_tensor_shape(self, name):
                return self.shapes[name]

            def get_tensor_profile_shape(self, name, profile_index):
                return tuple(tuple(s) for s in self.profile[name])

            def create_execution_context(self):
                return Context(self)

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data: bytes):
                try:
                    header, onnx_bytes = data.split(b"\n", 1)
                    return Engine(json.loads(header), onnx_bytes)
                except Exception:  # like TensorRT: a bad engine deserializes to None
                    return None

        for cls in (Logger, TensorIOMode, NetworkDefinitionCreationFlag, MemoryPoolType,
                    BuilderFlag, OnnxParser, Builder, Runtime):
            setattr(self, cls.__name__, cls)


def _lift_inputs(persons, seed=0):
    ex = export.example_inputs(27, 3, persons=persons, seed=seed)
    return ex["keypoints_px"], ex["mask"], ex["image_wh"]


@pytest.fixture
def engine(tiny_onnx, tmp_path):
    """An FP16 'engine' of the tiny graph built with the stand-in, next to a copy of the graph."""
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(tiny_onnx.read_bytes())
    contract.manifest_path(onnx_path).write_text(contract.manifest_path(tiny_onnx).read_text())
    trt = FakeTensorRTModule()
    result = export.build_tensorrt_engine(onnx_path, fp16=True, max_persons=6, trt=trt,
                                          device_name="cpu")
    return result, trt, onnx_path


def test_build_writes_engine_and_manifest(engine):
    result, trt, onnx_path = engine
    assert result.path.name == "tiny.fp16.engine" and result.path.is_file()
    m = result.manifest
    assert m["format"] == contract.ENGINE_MANIFEST_FORMAT
    assert (m["precision"], m["tensorrt_version"], m["gpu"]) == ("fp16", "8.6.1", "cpu")
    assert m["persons_profile"] == [1, 4, 6]
    assert m["onnx"] == {"file": "tiny.onnx", "sha256": contract.sha256_file(onnx_path)}
    assert (m["window"], m["hypotheses"], m["steps"]) == (27, 3, 2)
    assert "--fp16" in m["trtexec_equivalent"] and "--maxShapes=keypoints_px:6x27x17x2" in m["trtexec_equivalent"]
    header = json.loads(result.path.read_bytes().split(b"\n", 1)[0])
    assert header["fp16"] is True
    assert header["profile"]["noise"] == [[1, 3, 27, 17, 3], [4, 3, 27, 17, 3], [6, 3, 27, 17, 3]]


def test_engine_lifts_like_onnxruntime_with_buffers_bound_once(engine, tiny_onnx):
    result, trt, _ = engine
    lifter = load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt, seed=3)
    reference = load_lifter(tiny_onnx, backend="onnxruntime", seed=3, max_persons=6)
    assert lifter.backend_name == "tensorrt" and lifter.max_persons == 6
    backend: TensorRTBackend = lifter.backend
    addresses = {n: b.data_ptr() for n, b in backend.device_buffers.items()}
    assert trt.calls["set_tensor_address"] == 6  # 4 inputs + 2 outputs, at load time
    for persons in (1, 4, 4, 6, 2):
        got = lifter.lift(*_lift_inputs(persons, seed=persons))
        want = reference.lift(*_lift_inputs(persons, seed=persons))
        assert got[0].shape == (persons, 27, 17, 3) and got[1].shape == (persons, 27, 17)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-5)
    # No buffer was reallocated or re-bound; shapes were set only when the persons count changed.
    assert {n: b.data_ptr() for n, b in backend.device_buffers.items()} == addresses
    assert trt.calls["set_tensor_address"] == 6
    assert trt.calls["set_input_shape"] == 4 * 4  # persons 1, 4, 6, 2 (the second 4 reuses)
    assert trt.calls["execute_async_v3"] == 5
    # Results are the caller's: the next call does not overwrite them.
    first = lifter.lift(*_lift_inputs(1))
    kept = first[0].copy()
    lifter.lift(*_lift_inputs(1, seed=9))
    np.testing.assert_array_equal(first[0], kept)
    with pytest.raises(ValueError, match="at most 6"):
        lifter.lift(*_lift_inputs(7))


def test_mirrored_engine_lifter_takes_half_the_persons(engine, tiny_onnx):
    # Each person is two windows of the engine's batch (itself and its mirror image).
    result, trt, _ = engine
    lifter = load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt, seed=3,
                         mirror=True)
    reference = load_lifter(tiny_onnx, backend="onnxruntime", seed=3, max_persons=3, mirror=True)
    assert lifter.max_persons == 3 and lifter.mirror
    for persons in (1, 3):
        got = lifter.lift(*_lift_inputs(persons, seed=persons))
        want = reference.lift(*_lift_inputs(persons, seed=persons))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-5)
    with pytest.raises(ValueError, match=r"at most 3 \(mirror: 2 windows per person\)"):
        lifter.lift(*_lift_inputs(4))


def test_an_engine_of_one_window_cannot_mirror(tiny_onnx, tmp_path):
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(tiny_onnx.read_bytes())
    contract.manifest_path(onnx_path).write_text(contract.manifest_path(tiny_onnx).read_text())
    trt = FakeTensorRTModule()
    result = export.build_tensorrt_engine(onnx_path, fp16=False, opt_persons=1, max_persons=1,
                                          trt=trt, device_name="cpu")
    with pytest.raises(BackendError, match="takes 1 window\\(s\\), a mirrored person needs 2"):
        load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt, mirror=True)
    assert load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt).max_persons == 1


def test_engine_for_another_tensorrt_or_gpu_is_refused_or_rebuilt(engine):
    result, trt, _ = engine
    newer = FakeTensorRTModule(version="10.3.0")
    with pytest.raises(ManifestError, match="engine built for '8.6.1', this machine has '10.3.0'"):
        load_lifter(result.path, backend="tensorrt", device="cpu", trt=newer)
    with pytest.raises(ManifestError, match="gpu: engine built for 'cpu'"):
        load_lifter(result.path, backend="tensorrt", device="cpu:1", trt=trt)
    lifter = load_lifter(result.path, backend="tensorrt", device="cpu", trt=newer,
                         rebuild_engine=True)
    assert newer.calls["build_serialized_network"] == 1
    assert lifter.manifest["tensorrt_version"] == "10.3.0"
    assert lifter.manifest["persons_profile"] == [1, 4, 6]
    assert contract.read_manifest(result.path)["tensorrt_version"] == "10.3.0"
    assert lifter.lift(*_lift_inputs(2))[0].shape == (2, 27, 17, 3)


def test_corrupted_or_mismatched_engine_fails_at_load(engine):
    result, trt, _ = engine
    with pytest.raises(ManifestError, match="window: file has 27, configuration wants 81"):
        load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt, expected={"window": 81})
    data = bytearray(result.path.read_bytes())
    data[5] ^= 0xFF
    result.path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt)
    # Checksum right (manifest rewritten) but the engine unreadable: a load-time error.
    manifest = json.loads(contract.manifest_path(result.path).read_text())
    manifest["sha256"] = contract.sha256_file(result.path)
    contract.manifest_path(result.path).write_text(json.dumps(manifest))
    with pytest.raises(BackendError, match="could not deserialize"):
        load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt)


def test_engine_whose_manifest_disagrees_with_its_tensors_is_refused(engine):
    result, trt, _ = engine
    manifest = json.loads(contract.manifest_path(result.path).read_text())
    shapes = contract.io_shapes(27, 5, "screen")
    manifest.update(hypotheses=5, inputs={n: list(shapes[n]) for n in contract.input_names("screen")})
    contract.manifest_path(result.path).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"input noise: graph shape \[-1, 3, 27, 17, 3\], "
                                            r"manifest says \['persons', 5, 27, 17, 3\]"):
        load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt)


def test_rays_engine_takes_intrinsics(tiny_rays_onnx, tmp_path):
    onnx_path = tmp_path / "rays.onnx"
    onnx_path.write_bytes(tiny_rays_onnx.read_bytes())
    contract.manifest_path(onnx_path).write_text(contract.manifest_path(tiny_rays_onnx).read_text())
    trt = FakeTensorRTModule()
    result = export.build_tensorrt_engine(onnx_path, fp16=False, max_persons=4, trt=trt,
                                          device_name="cpu")
    assert "intrinsics:1x4" in result.manifest["trtexec_equivalent"]
    assert result.manifest["input_normalisation"] == "rays"
    lifter = load_lifter(result.path, backend="tensorrt", device="cpu", trt=trt, seed=2,
                         fixed_noise=True)
    reference = load_lifter(tiny_rays_onnx, backend="onnxruntime", seed=2, max_persons=4,
                            fixed_noise=True)
    assert set(lifter.backend.device_buffers) == {"keypoints_px", "mask", "intrinsics", "noise",
                                                  "pose3d_m", "spread_m"}
    kp, mask, wh = _lift_inputs(3)
    k = np.array([500.0, 500.0, 320.0, 240.0], np.float32)
    for intrinsics in (None, k):  # the guess, then given intrinsics
        got = lifter.lift(kp, mask, wh, intrinsics=intrinsics)
        want = reference.lift(kp, mask, wh, intrinsics=intrinsics)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-5)


def test_register_trtexec_engine(engine, tmp_path):
    result, trt, onnx_path = engine
    built_elsewhere = tmp_path / "tiny.fp32.engine"
    built_elsewhere.write_bytes(result.path.read_bytes())
    reg = export.register_engine(built_elsewhere, onnx_path, fp16=False, trt=trt, device_name="cpu")
    assert reg.manifest["persons_profile"] == [1, 4, 6]
    assert reg.manifest["precision"] == "fp32"
    lifter = load_lifter(built_elsewhere, device="cpu", trt=trt)
    assert lifter.backend_name == "tensorrt"


def test_auto_picks_tensorrt_only_when_usable(engine, caplog):
    result, trt, onnx_path = engine
    with caplog.at_level("INFO", logger="diffhpe_models.runtime"):
        lifter = load_lifter(onnx_path, device="cpu", trt=trt)
    assert lifter.backend_name == "onnxruntime"
    assert "tensorrt unusable: device is 'cpu'" in caplog.text
    with pytest.raises(BackendError, match="tensorrt backend unusable: device is 'cpu'"):
        load_lifter(onnx_path, backend="tensorrt", device="cpu", trt=trt)


@pytest.mark.skipif(contract.import_tensorrt() is not None, reason="TensorRT is installed here")
def test_without_tensorrt_build_explains_and_gives_trtexec_command(tiny_onnx, tmp_path):
    with pytest.raises(TensorRTUnavailable) as info:
        export.build_tensorrt_engine(tiny_onnx, fp16=True)
    command = info.value.command
    assert command.startswith("trtexec --onnx=") and "--fp16" in command
    assert "--saveEngine=" in command and command.count("noise:") == 3
    assert "TensorRT is not installed" in str(info.value)
    with pytest.raises(BackendError, match="TensorRT is not installed"):
        load_lifter(tiny_onnx, backend="tensorrt", device="cuda")

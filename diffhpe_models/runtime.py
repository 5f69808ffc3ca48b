"""Run-time lifting: one small interface over three backends (PyTorch, ONNX Runtime, TensorRT).

    lifter = load_lifter("models/lifter.onnx")                # backend="auto"
    pose3d_m, spread_m = lifter.lift(keypoints_px, mask, image_wh, intrinsics=K)

`Lifter.lift` takes numpy arrays `keypoints_px (P, L, 17, 2)` pixels, `mask (P, L, 17)` (1 =
observed), `image_wh (P, 2)` (or `(2,)` for all persons) and optionally `intrinsics (P, 4)` or
`(4,)` = fx, fy, cx, cy pixels, and returns `pose3d_m (P, L, 17, 3)` (root-relative, camera
frame, metres) and `spread_m (P, L, 17)` (RMS distance of the hypotheses from the pose, metres).
The model file says which calibration its graph takes (manifest `input_normalisation`): a
"screen" model takes the image size and ignores intrinsics; a "rays" model takes intrinsics and,
when none are given, uses `camera.guess_intrinsics(image_wh)` with the manifest's field of view
(`intrinsics_guess_hfov_deg`: principal point at the image centre, square pixels).
It draws the sampler's initial noise `(P, H, L, 17, 3)` from its own seeded generator into a
preallocated buffer. Everything that can fail (missing backend, wrong or corrupted file, manifest
that contradicts itself, its graph or the configuration) fails in `load_lifter`, not on the
first frame. The contract it reads (names, shapes, manifest checks) is contract.py's.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import contract
from .camera import guess_intrinsics
from .contract import OUTPUT_NAMES, ManifestError
from .mirror import lift_mirrored
from .skeleton import NUM_JOINTS
from .threads import configure_ort_session, configure_torch
from .uncertainty import noise_is_fixed

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


class BackendError(RuntimeError):
    """A backend cannot be used: not installed, no device, or its model file does not load."""


# --- backends: run(keypoints_px, mask, calibration, noise) -> (pose3d_m, spread_m), numpy --


class TorchBackend:
    """The reference: the LiftingPipeline itself. On CUDA it can capture one CUDA graph per
    persons count (`cuda_graphs=True`): the whole sampler then replays as a single launch."""

    name = "torch"

    def __init__(self, pipeline, device: str = "cpu", cuda_graphs: bool = False,
                 threads: int | None = None):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"torch backend: device {device!r} asked for, but CUDA is not "
                               "available to torch")
        if cuda_graphs and self.device.type != "cuda":
            raise BackendError("torch backend: cuda_graphs needs a CUDA device")
        if self.device.type == "cpu" or threads is not None:
            configure_torch(threads)  # the one thread policy (diffhpe_models/threads.py)
        self.pipeline = pipeline.eval().to(self.device)
        self.cuda_graphs = cuda_graphs
        self.max_persons = None
        self._graphs: dict[int, tuple] = {}  # persons -> (graph, static inputs, static outputs)
        if cuda_graphs:
            self.name = "torch-cudagraph"

    def _capture(self, persons: int, arrays):
        torch = self.torch
        static_in = [torch.from_numpy(a).to(self.device) for a in arrays]
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm up (lazy init, cuBLAS handles) outside the capture
                self.pipeline(*static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self.pipeline(*static_in)
        entry = (graph, static_in, static_out)
        self._graphs[persons] = entry
        return entry

    def run(self, keypoints_px, mask, calibration, noise):
        torch = self.torch
        arrays = (keypoints_px, mask, calibration, noise)
        if self.cuda_graphs:
            persons = keypoints_px.shape[0]
            graph, static_in, static_out = self._graphs.get(persons) or self._capture(persons, arrays)
            for dst, src in zip(static_in, arrays):
                dst.copy_(torch.from_numpy(src), non_blocking=False)
            graph.replay()
            return tuple(o.cpu().numpy() for o in static_out)
        with torch.inference_mode():
            out = self.pipeline(*(torch.from_numpy(a).to(self.device) for a in arrays))
        return tuple(o.cpu().numpy() for o in out)


def onnxruntime_providers(device: str = "cpu") -> list:
    """Execution providers for `device`: 'cpu' -> CPU only; 'cuda' / 'cuda:N' -> TensorRT, CUDA
    (on GPU N), then CPU, each only when this onnxruntime build has it. Asking for a GPU from a
    build without GPU providers is an error, not a silent CPU run."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpu = {"device_id": int(device.partition(":")[2] or 0)}
    available = ort.get_available_providers()
    chosen = [(p, gpu) for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
              if p in available]
    if not chosen:
        raise BackendError(f"device={device!r}: this onnxruntime build has no GPU execution "
                           f"provider (it has {available}); use device 'cpu' or install "
                           "onnxruntime-gpu")
    return chosen + ["CPUExecutionProvider"]


def session_options(ort, intra_op_threads: int | None = None):
    """The ONNX Runtime SessionOptions of the lifter: full graph optimisation, sequential
    execution, threads and spinning by the one thread policy (diffhpe_models/threads.py)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    configure_ort_session(options, intra_op_threads)
    return options


class OnnxRuntimeBackend:
    """ONNX Runtime on the exported graph. Threads and spinning follow diffhpe_models/threads.py
    (`intra_op_threads` None: its default, 1; 0: one per core).

    The graph is checked against its manifest at load (inputs, shapes, and the contract fields
    stored in the graph's metadata: window, hypotheses, fps, sampler, input normalisation...):
    a file whose manifest disagrees with its graph raises ManifestError here."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, manifest: dict[str, Any],
                 providers: list[str] | None = None, intra_op_threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError(f"onnxruntime backend: onnxruntime is not installed ({e})") from None
        providers = providers or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(onnx_path), session_options(ort, intra_op_threads),
                                                providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"{onnx_path}: onnxruntime could not load the graph: {e}") from None
        contract.check_graph(
            manifest, {i.name: i.shape for i in self.session.get_inputs()},
            {o.name: o.shape for o in self.session.get_outputs()},
            self.session.get_modelmeta().custom_metadata_map, str(onnx_path))
        self.input_names = contract.input_names(manifest["input_normalisation"])
        self.providers = self.session.get_providers()
        self.max_persons = None
        if self.providers[0] != "CPUExecutionProvider":
            self.name = f"onnxruntime-{self.providers[0].removesuffix('ExecutionProvider').lower()}"

    def run(self, keypoints_px, mask, calibration, noise):
        feeds = dict(zip(self.input_names, (keypoints_px, mask, calibration, noise)))
        return tuple(self.session.run(OUTPUT_NAMES, feeds))


class TensorRTBackend:
    """A serialized TensorRT engine (TensorRT >= 8.5 name-based tensor API, also 10.x).

    Tensors are bound by name; device buffers (and host staging buffers) for the engine's largest
    persons count are allocated once here and their addresses set once, so `run` allocates
    nothing on the device: it copies inputs in, sets the input shapes when the persons count
    changes, enqueues, and copies outputs out. Buffers are torch tensors (torch is how we reach
    CUDA without another dependency); `device` exists so the logic can run on a stand-in.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike, manifest: dict[str, Any],
                 device: str = "cuda", trt=None):
        import torch

        self.torch = torch
        self.trt = trt or contract.import_tensorrt()
        if self.trt is None:
            raise BackendError("tensorrt backend: TensorRT is not installed (`import tensorrt` "
                               "failed)")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("tensorrt backend: no CUDA GPU is visible to torch")
        trt = self.trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(f"{engine_path}: TensorRT could not deserialize the engine")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        modes = {n: self.engine.get_tensor_mode(n) for n in names}
        dims = {n: tuple(self.engine.get_tensor_shape(n)) for n in names}  # axis 0: -1
        # An engine has no metadata: its tensors' names and shapes are what can be checked.
        contract.check_graph(manifest, {n: d for n, d in dims.items()
                                        if modes[n] == trt.TensorIOMode.INPUT},
                             {n: d for n, d in dims.items() if modes[n] == trt.TensorIOMode.OUTPUT},
                             None, str(engine_path))
        self.input_names = contract.input_names(manifest["input_normalisation"])
        # The profile's max persons (TensorRT stores min/opt/max per input) sizes the buffers.
        self.max_persons = min(int(self.engine.get_tensor_profile_shape(n, 0)[2][0])
                               for n in self.input_names)
        shapes = contract.io_shapes(manifest["window"], manifest["hypotheses"],
                                    manifest["input_normalisation"], self.max_persons)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{engine_path}: TensorRT could not create an execution context")
        self.device_buffers = {n: torch.empty(shapes[n], dtype=torch.float32, device=self.device)
                               for n in (*self.input_names, *OUTPUT_NAMES)}
        pin = self.device.type == "cuda"
        self.host_outputs = {n: torch.empty(shapes[n], dtype=torch.float32, pin_memory=pin)
                             for n in OUTPUT_NAMES}
        for n, buf in self.device_buffers.items():
            if not self.context.set_tensor_address(n, buf.data_ptr()):
                raise BackendError(f"{engine_path}: TensorRT refused the address of tensor {n}")
        self._persons = None

    def run(self, keypoints_px, mask, calibration, noise):
        torch = self.torch
        persons = keypoints_px.shape[0]
        if persons > self.max_persons:
            raise ValueError(f"tensorrt backend: {persons} persons, the engine was built for at "
                             f"most {self.max_persons}")
        arrays = dict(zip(self.input_names, (keypoints_px, mask, calibration, noise)))
        for n, a in arrays.items():
            self.device_buffers[n][:persons].copy_(torch.from_numpy(a))
        if persons != self._persons:
            for n, a in arrays.items():
                if not self.context.set_input_shape(n, tuple(a.shape)):
                    raise RuntimeError(f"tensorrt backend: shape {a.shape} refused for {n}")
            self._persons = persons
        stream = torch.cuda.current_stream(self.device).cuda_stream if self.device.type == "cuda" else 0
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("tensorrt backend: execute_async_v3 failed")
        out = []
        for n in OUTPUT_NAMES:
            host = self.host_outputs[n][:persons]
            host.copy_(self.device_buffers[n][:persons])  # synchronous on the current stream
            out.append(host.numpy().copy())  # the caller owns its result; buffers are reused
        return tuple(out)


# --- the Lifter ---------------------------------------------------------------------------


class Lifter:
    """`lift(keypoints_px, mask, image_wh, intrinsics=None) -> (pose3d_m, spread_m)` over one
    backend.

    Attributes: `window` (L), `fps`, `hypotheses` (H), `steps`, `mode` ('causal' | 'centred'),
    `input_normalisation` ('screen' | 'rays'), `sampler_settings` (dict: sampler, steps,
    hypotheses, eta, aggregation: what the graph runs, for logs and diagnostics), `backend_name`,
    `manifest` (the model file's). Noise: a numpy Generator seeded with `seed`; with
    `fixed_noise=True` the same noise is used for every call (the output is then a deterministic
    function of the input, which removes sampling jitter between frames). A model whose pose
    depends on the noise (aggregation other than 'conditioner') always keeps its noise
    (uncertainty.noise_is_fixed); `fixed_noise` says what runs. `mirror=True` lifts every
    window together with its left/right mirror image and returns the mean pose (mirror.py):
    more accurate and smoother, twice the work; an engine then takes half as many persons.
    """

    def __init__(self, backend, manifest: dict[str, Any], seed: int = 0, max_persons: int = 16,
                 fixed_noise: bool = False, mirror: bool = False):
        self.backend = backend
        self.manifest = manifest
        self.window = int(manifest["window"])
        self.hypotheses = int(manifest["hypotheses"])
        self.steps = int(manifest["steps"])
        self.fps = float(manifest["fps"])
        self.mode = manifest["window_mode"]
        self.input_normalisation = manifest["input_normalisation"]
        self.guess_hfov_deg = manifest.get("intrinsics_guess_hfov_deg")
        self.sampler_settings = {k: manifest[k] for k in
                                 ("sampler", "steps", "hypotheses", "eta", "aggregation")}
        self.backend_name = backend.name
        self.fixed_noise = noise_is_fixed(fixed_noise, manifest.get("aggregation"))
        self.mirror = bool(mirror)
        self._has_spread = manifest["sampler"] is not None  # a deterministic model's stays 0
        self._guess_logged = False
        self._rng = np.random.default_rng(seed)
        if backend.max_persons is not None:   # an engine's profile bounds the batch
            max_persons = backend.max_persons // 2 if self.mirror else backend.max_persons
            if max_persons < 1:
                raise BackendError(f"mirror: the {backend.name} engine takes "
                                   f"{backend.max_persons} window(s), a mirrored person needs 2")
        self._noise = np.empty((max_persons, self.hypotheses, self.window, NUM_JOINTS, 3),
                               dtype=np.float32)
        self._rng.standard_normal(out=self._noise, dtype=np.float32)

    @property
    def max_persons(self) -> int:
        return self._noise.shape[0]

    def _check(self, keypoints_px, mask, image_wh):
        keypoints_px = np.ascontiguousarray(keypoints_px, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=np.float32)
        image_wh = np.asarray(image_wh, dtype=np.float32)
        if keypoints_px.ndim != 4 or keypoints_px.shape[1:] != (self.window, NUM_JOINTS, 2):
            raise ValueError(f"keypoints_px: expected shape (P, {self.window}, {NUM_JOINTS}, 2), "
                             f"got {keypoints_px.shape}")
        persons = keypoints_px.shape[0]
        if mask.shape != (persons, self.window, NUM_JOINTS):
            raise ValueError(f"mask: expected shape ({persons}, {self.window}, {NUM_JOINTS}), "
                             f"got {mask.shape}")
        if image_wh.shape == (2,):
            image_wh = np.broadcast_to(image_wh, (persons, 2))
        if image_wh.shape != (persons, 2):
            raise ValueError(f"image_wh: expected shape ({persons}, 2) or (2,), got {image_wh.shape}")
        if not (image_wh > 0).all():
            raise ValueError(f"image_wh: image sizes must be positive, got {image_wh.tolist()}")
        if not np.isfinite(keypoints_px).all():
            raise ValueError("keypoints_px: contains NaN or infinity (missing joints must be 0 "
                             "with mask 0)")
        return keypoints_px, mask, np.ascontiguousarray(image_wh)

    def _intrinsics(self, intrinsics, persons: int) -> np.ndarray:
        k = np.asarray(intrinsics, dtype=np.float32)
        if k.shape == (4,):
            k = np.broadcast_to(k, (persons, 4))
        if k.shape != (persons, 4):
            raise ValueError(f"intrinsics: expected shape ({persons}, 4) or (4,) = fx, fy, cx, cy "
                             f"pixels, got {k.shape}")
        if not np.isfinite(k).all() or not (k[:, :2] > 0).all():
            raise ValueError(f"intrinsics: fx, fy must be positive and all values finite, got "
                             f"{k[:4].tolist()}")
        return np.ascontiguousarray(k)

    def calibration(self, image_wh: np.ndarray, intrinsics=None) -> np.ndarray:
        """The calibration input of this model's graph for checked `image_wh` (P, 2): the image
        size ("screen"), or the intrinsics (P, 4) ("rays"): the given ones, else the guess from
        the image size with the manifest's field of view (camera.guess_intrinsics)."""
        persons = image_wh.shape[0]
        k = None if intrinsics is None else self._intrinsics(intrinsics, persons)
        if self.input_normalisation == "screen":
            return image_wh  # a screen model normalises by the image size: K is not used
        if k is not None:
            return k
        if not self._guess_logged:
            log.info("no camera intrinsics given: guessing them from the image size with a %g "
                     "degree horizontal field of view (the model's manifest)", self.guess_hfov_deg)
            self._guess_logged = True
        return guess_intrinsics(image_wh, self.guess_hfov_deg).astype(np.float32)

    def lift(self, keypoints_px, mask, image_wh, noise_slots=None,
             intrinsics=None) -> tuple[np.ndarray, np.ndarray]:
        """Lift P persons' windows: (P, L, 17, 2) px, (P, L, 17), (P, 2) px -> (P, L, 17, 3) m,
        (P, L, 17) m. P may be 0.

        noise_slots: optional (P,) ints in [0, max_persons): which row of the fixed noise each
        person uses. A tracker passes a per-track slot so that, with `fixed_noise`, a person's
        noise (and so its output for the same input) does not change when others come or go.
        intrinsics: optional (P, 4) or (4,) fx, fy, cx, cy pixels of the camera (e.g. from
        camera_info). A "rays" model uses them, or without them the documented guess from
        `image_wh`; a "screen" model checks and ignores them."""
        keypoints_px, mask, image_wh = self._check(keypoints_px, mask, image_wh)
        calibration = self.calibration(image_wh, intrinsics)
        if noise_slots is not None:
            noise_slots = np.asarray(noise_slots)
            if (noise_slots.shape != (keypoints_px.shape[0],) or noise_slots.dtype.kind not in "iu"
                    or (noise_slots < 0).any() or (noise_slots >= self.max_persons).any()):
                raise ValueError(f"noise_slots: expected {keypoints_px.shape[0]} ints in "
                                 f"[0, {self.max_persons}), got {noise_slots!r}")
        persons = keypoints_px.shape[0]
        if persons == 0:
            return (np.zeros((0, self.window, NUM_JOINTS, 3), np.float32),
                    np.zeros((0, self.window, NUM_JOINTS), np.float32))
        if persons > self.max_persons:
            if self.backend.max_persons is not None:
                mirrored = " (mirror: 2 windows per person)" if self.mirror else ""
                raise ValueError(f"{persons} persons: the {self.backend_name} engine takes at "
                                 f"most {self.max_persons}{mirrored}")
            log.warning("growing the noise buffer from %d to %d persons", self.max_persons, persons)
            grown = np.empty((persons, *self._noise.shape[1:]), np.float32)
            self._rng.standard_normal(out=grown, dtype=np.float32)
            grown[: self.max_persons] = self._noise
            self._noise = grown
        noise = self._noise[:persons]
        if not self.fixed_noise:
            self._rng.standard_normal(out=noise, dtype=np.float32)
        elif noise_slots is not None:
            noise = self._noise[noise_slots]
        if self.mirror:
            return lift_mirrored(self.backend.run, keypoints_px, mask, calibration, noise,
                                 self.input_normalisation, has_spread=self._has_spread)
        return self.backend.run(keypoints_px, mask, calibration, noise)


# --- loading ------------------------------------------------------------------------------


def _checkpoint_manifest(path: Path, settings: dict[str, Any]) -> tuple[Any, dict]:
    """Build the pipeline of a checkpoint with sampler overrides, and its manifest-like fields
    (what it runs, as an export would record it)."""
    from .checkpoint import checkpoint_fps, load_checkpoint
    from .lifter import LiftingPipeline

    try:
        model, config, extra = load_checkpoint(path)
        pipeline = LiftingPipeline(model, config, **settings)
    except Exception as e:  # CheckpointError, ConfigError (bad steps/hypotheses), ...
        raise BackendError(f"{path}: cannot build the lifter: {e}") from e
    return pipeline, contract.describe_pipeline(pipeline, checkpoint_fps(extra))


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _load_engine(path: Path, expected, device: str, rebuild: bool, trt) -> TensorRTBackend:
    """Check an engine's manifest against this machine; rebuild from the ONNX beside it if asked."""
    manifest = contract.read_manifest(path)
    if manifest.get("format") != contract.ENGINE_MANIFEST_FORMAT:
        raise ManifestError(f"{path}: manifest is not a TensorRT engine manifest")
    contract.check_expected(manifest, expected, str(path))
    trt = trt or contract.import_tensorrt()
    if trt is None:
        raise BackendError("tensorrt backend: TensorRT is not installed (`import tensorrt` failed)")
    # On a stand-in device (tests) the device string plays the GPU name.
    gpu = contract.gpu_name() if device.startswith("cuda") else device
    here = {"tensorrt_version": str(trt.__version__), "gpu": gpu}
    stale = [f"{k}: engine built for {manifest.get(k)!r}, this machine has {v!r}"
             for k, v in here.items() if manifest.get(k) != v]
    if stale:
        onnx_path = path.with_name(manifest.get("onnx", {}).get("file", ""))
        if not rebuild or not onnx_path.is_file():
            raise ManifestError(f"{path}: engine does not fit this machine (engines are per GPU "
                                "and TensorRT version):\n  " + "\n  ".join(stale)
                                + f"\nRebuild it: {manifest.get('trtexec_equivalent', '')}")
        log.warning("%s: %s; rebuilding from %s", path, "; ".join(stale), onnx_path)
        from . import export  # the engine builder (onnx, TensorRT) only when rebuilding

        lo, opt, hi = manifest.get("persons_profile", [contract.MIN_PERSONS, contract.OPT_PERSONS,
                                                       contract.MAX_PERSONS])
        manifest = export.build_tensorrt_engine(
            onnx_path, fp16=manifest.get("precision") == "fp16", engine_path=path, min_persons=lo,
            opt_persons=opt, max_persons=hi, trt=trt, device_name=here["gpu"]).manifest
    return TensorRTBackend(path, manifest, device=device, trt=trt), manifest


def load_lifter(path: str | os.PathLike, backend: str = "auto",
                expected: dict[str, Any] | None = None, device: str = "cpu",
                steps: int | None = None, hypotheses: int | None = None,
                aggregation: str | None = None, sampler: str | None = None,
                eta: float | None = None, seed: int = 0, max_persons: int = 16,
                intra_op_threads: int | None = None, cuda_graphs: bool = False,
                fixed_noise: bool = False, rebuild_engine: bool = False, trt=None,
                mirror: bool = False) -> Lifter:
    """Load a lifter from a `.pt` checkpoint (torch backend), an exported `.onnx` graph, or a
    TensorRT `.engine`; the latter two need their manifest `F.json` beside them.

    backend: 'auto' picks, and logs why: an engine file -> tensorrt; an .onnx file -> tensorrt if
    a matching engine lies beside it and TensorRT and a GPU are here, else onnxruntime (with its
    CUDA/TensorRT providers when `device` is cuda and they exist); a .pt -> torch.
    expected: manifest fields the file must have (e.g. {'window': 27, 'window_mode': 'causal'});
    a mismatch raises ManifestError, and so does a manifest that disagrees with its graph.
    steps/hypotheses/aggregation/sampler/eta apply to checkpoints only
    (sampler.SamplerSettings.from_config); an exported graph has them fixed (give them in
    `expected` to check them).
    Raises BackendError / ManifestError / FileNotFoundError at load time, never later.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".onnx", ".engine"):
        raise ValueError(f"{path}: expected a .pt checkpoint, an .onnx graph or a TensorRT .engine")
    lifter_options = {"seed": seed, "max_persons": max_persons, "fixed_noise": fixed_noise,
                      "mirror": mirror}

    if suffix == ".pt":
        if backend not in ("auto", "torch"):
            raise BackendError(f"{path}: a checkpoint runs on the torch backend only; export it "
                               f"(training/export.py) to use {backend}")
        overrides = {k: v for k, v in dict(steps=steps, hypotheses=hypotheses,
                                           aggregation=aggregation, sampler=sampler,
                                           eta=eta).items() if v is not None}
        pipeline, manifest = _checkpoint_manifest(path, overrides)
        contract.check_expected(manifest, expected, str(path))
        if backend == "auto":
            log.info("lifter backend: torch (a .pt checkpoint runs on torch only)")
        runner = TorchBackend(pipeline, device=device, cuda_graphs=cuda_graphs,
                              threads=intra_op_threads)
        return Lifter(runner, manifest, **lifter_options)

    if backend == "torch":
        raise BackendError(f"{path}: the torch backend needs the .pt checkpoint, not {suffix}")
    if suffix == ".engine":
        if backend == "onnxruntime":
            raise BackendError(f"{path}: onnxruntime needs the .onnx graph, not an engine")
        runner, manifest = _load_engine(path, expected, device, rebuild_engine, trt)
        if backend == "auto":
            log.info("lifter backend: tensorrt (an engine file was given)")
        return Lifter(runner, manifest, **lifter_options)

    if any(v is not None for v in (steps, hypotheses, aggregation, sampler, eta)):
        raise BackendError(f"{path}: sampler settings are fixed in an exported graph; re-export "
                           "the checkpoint with them (training/export.py), or check them with "
                           "`expected`")
    manifest = contract.read_manifest(path)
    if manifest.get("format") != contract.MANIFEST_FORMAT:
        raise ManifestError(f"{path}: manifest is not an ONNX export manifest")
    contract.check_expected(manifest, expected, str(path))
    if backend in ("auto", "tensorrt"):
        reason = _tensorrt_unusable(path, device, trt)
        if reason is None:
            engine = _engine_beside(path)
            log.info("lifter backend: tensorrt (engine %s beside the graph, GPU present)", engine.name)
            runner, manifest = _load_engine(engine, expected, device, rebuild_engine, trt)
            return Lifter(runner, manifest, **lifter_options)
        if backend == "tensorrt":
            raise BackendError(f"{path}: tensorrt backend unusable: {reason}")
        log.info("lifter backend: onnxruntime (tensorrt unusable: %s)", reason)
    providers = onnxruntime_providers(device)
    runner = OnnxRuntimeBackend(path, manifest, providers, intra_op_threads)
    return Lifter(runner, manifest, **lifter_options)


def _engine_beside(onnx_path: Path) -> Path | None:
    """The engine built from this graph, FP16 preferred, if one lies beside it."""
    for fp16 in (True, False):
        engine = contract.engine_path_for(onnx_path, fp16)
        if engine.is_file() and contract.manifest_path(engine).is_file():
            return engine
    return None


def _tensorrt_unusable(onnx_path: Path, device: str, trt) -> str | None:
    """Why TensorRT cannot run this graph here, or None if it can."""
    if not device.startswith("cuda"):
        return f"device is {device!r}"
    if (trt or contract.import_tensorrt()) is None:
        return "TensorRT is not installed"
    if not _cuda_available():
        return "no CUDA GPU"
    if _engine_beside(onnx_path) is None:
        return (f"no engine beside {onnx_path.name} (build one: training/export.py --engine, or "
                "trtexec)")
    return None


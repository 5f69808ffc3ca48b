"""The run-time contract of an exported lifter: the graph's inputs and outputs, the manifest that
lies beside every model file (read, checked against itself and against the graph), and the
engine file names. The runtime and the node import this module; the exporter (export.py) writes
what it reads. No torch, onnx or TensorRT import here.

The graph (one per model file; only axis 0, `persons`, is dynamic):
    inputs   keypoints_px (P, L, 17, 2) pixels, mask (P, L, 17) (1 = observed),
             the calibration the model's 2D normalisation needs:
               "screen" model: image_wh (P, 2) pixels       (camera.normalize_screen)
               "rays" model:   intrinsics (P, 4) fx, fy, cx, cy pixels   (camera.normalize_rays)
             noise (P, H, L, 17, 3) (the sampler's initial x_T)
    outputs  pose3d_m (P, L, 17, 3) root-relative camera-frame metres, spread_m (P, L, 17) metres
The manifest `F.json` of file `F` records what the graph computes (CONTRACT_FIELDS, also stored
in the ONNX graph's metadata so that a manifest that disagrees with its graph is caught), its
input/output names and shapes, the normalisation, the field-of-view guess a "rays" model uses
when no intrinsics are given, and the sha256 of `F`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from .camera import GUESS_HFOV_DEG, NORMALISATION, RAY_NORMALISATION
from .config import AGGREGATIONS, INPUT_NORMALISATIONS, SAMPLERS, WINDOW_MODES
from .skeleton import JOINT_NAMES, NUM_JOINTS

PERSONS = "persons"  # name of the one dynamic axis (axis 0 of every input and output)
CALIBRATION_INPUTS = {"screen": "image_wh", "rays": "intrinsics"}
CALIBRATION_UNITS = {"screen": "width, height pixels", "rays": "fx, fy, cx, cy pixels"}
NORMALISATION_FORMULAS = {"screen": NORMALISATION, "rays": RAY_NORMALISATION}
OUTPUT_NAMES = ("pose3d_m", "spread_m")
MANIFEST_FORMAT = "diffhpe-export-v2"
ENGINE_MANIFEST_FORMAT = "diffhpe-engine-v2"
# What the graph computes: in the manifest and, as JSON under GRAPH_METADATA_KEY, in the graph.
CONTRACT_FIELDS = ("variant", "sampler", "steps", "hypotheses", "eta", "aggregation", "window",
                   "window_mode", "fps", "input_normalisation")
GRAPH_METADATA_KEY = "diffhpe_contract"
# Default TensorRT optimisation profile over the persons axis.
MIN_PERSONS, OPT_PERSONS, MAX_PERSONS = 1, 4, 16


class ManifestError(RuntimeError):
    """A model file's manifest is missing, unreadable, inconsistent, or does not match the file,
    its graph or the configuration."""


# --- inputs and outputs --------------------------------------------------------------------


def input_names(normalisation: str) -> tuple[str, str, str, str]:
    """The graph inputs of a model with this input normalisation, in call order."""
    if normalisation not in CALIBRATION_INPUTS:
        raise ValueError(f"input normalisation must be one of {INPUT_NORMALISATIONS}, "
                         f"got {normalisation!r}")
    return ("keypoints_px", "mask", CALIBRATION_INPUTS[normalisation], "noise")


def io_shapes(window: int, hypotheses: int, normalisation: str,
              persons: int | str = PERSONS) -> dict[str, tuple]:
    """Shapes of the graph's inputs and outputs, persons axis first (an int or the axis name)."""
    calibration = input_names(normalisation)[2]  # raises for an unknown normalisation
    return {
        "keypoints_px": (persons, window, NUM_JOINTS, 2),
        "mask": (persons, window, NUM_JOINTS),
        calibration: (persons, 2 if normalisation == "screen" else 4),
        "noise": (persons, hypotheses, window, NUM_JOINTS, 3),
        "pose3d_m": (persons, window, NUM_JOINTS, 3),
        "spread_m": (persons, window, NUM_JOINTS),
    }


# --- what a pipeline computes --------------------------------------------------------------


def describe_pipeline(pipeline, fps: float) -> dict[str, Any]:
    """The manifest fields that say what a LiftingPipeline computes, from the objects that run
    (its sampler's settings, its config), never from defaults. A deterministic model (MixSTE)
    runs no sampler: sampler and aggregation None, 0 steps, 1 hypothesis."""
    settings = pipeline.settings
    sampler = settings.as_dict() if settings is not None else {
        "sampler": None, "steps": 0, "hypotheses": 1, "eta": 0.0, "aggregation": None}
    normalisation = pipeline.input_normalisation
    return {
        "variant": pipeline.variant,
        **sampler,
        "window": int(pipeline.window),
        "window_mode": pipeline.window_mode,
        "causal_model": bool(pipeline.causal),
        "fps": float(fps),
        "joints": list(JOINT_NAMES),
        "input_normalisation": normalisation,
        "normalisation": NORMALISATION_FORMULAS[normalisation],  # inside the graph
        # Used by the runtime when a "rays" model gets no intrinsics (camera.guess_intrinsics).
        "intrinsics_guess_hfov_deg": GUESS_HFOV_DEG if normalisation == "rays" else None,
        # spread_m = the hypotheses' spread x these (observed / missing joints, and per joint:
        # [] = 1.0 each), fitted on validation.
        "spread_scale": ({"visible": pipeline.spread_scale[0], "hidden": pipeline.spread_scale[1],
                          "joint": list(pipeline.spread_scale_joint)}
                         if settings is not None else None),
        "units": {"keypoints_px": "pixels",
                  CALIBRATION_INPUTS[normalisation]: CALIBRATION_UNITS[normalisation],
                  "pose3d_m": "metres, camera frame, root-relative", "spread_m": "metres"},
    }


def graph_metadata(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The ONNX metadata_props the exporter stores in the graph: the contract fields as JSON."""
    return {GRAPH_METADATA_KEY: json.dumps({k: manifest[k] for k in CONTRACT_FIELDS},
                                           sort_keys=True)}


# --- manifests -----------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(model_path: str | os.PathLike) -> Path:
    """The manifest of file `F` is `F.json` (e.g. `lifter.onnx.json`)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Everything in a manifest that contradicts itself or the contract ([] when nothing):
    field types and ranges, sampler settings, and inputs/outputs against the window, hypotheses
    and input normalisation it states."""
    m = manifest
    problems = []
    checks = {
        "variant": isinstance(m.get("variant"), str),
        "window": _is_int(m.get("window")) and m.get("window") >= 1,
        "hypotheses": _is_int(m.get("hypotheses")) and m.get("hypotheses") >= 1,
        "steps": _is_int(m.get("steps")) and m.get("steps") >= 0,
        "fps": _is_number(m.get("fps")) and m.get("fps") > 0,
        "eta": _is_number(m.get("eta")) and 0 <= m.get("eta") <= 1,
        "window_mode": m.get("window_mode") in WINDOW_MODES,
        "input_normalisation": m.get("input_normalisation") in INPUT_NORMALISATIONS,
        "sampler": m.get("sampler") is None or m.get("sampler") in SAMPLERS,
        "aggregation": m.get("aggregation") is None or m.get("aggregation") in AGGREGATIONS,
    }
    for name, ok in checks.items():
        if name not in m:
            problems.append(f"{name}: missing")
        elif not ok:
            problems.append(f"{name}: invalid value {m.get(name)!r}")
    if problems:
        return problems
    if m["sampler"] is None:
        if (m["steps"], m["hypotheses"], m["aggregation"]) != (0, 1, None):
            problems.append(f"no sampler (deterministic model) but steps {m['steps']}, "
                            f"hypotheses {m['hypotheses']}, aggregation {m['aggregation']!r}")
    elif m["steps"] < 1 or m["aggregation"] is None:
        problems.append(f"sampler {m['sampler']!r} needs steps >= 1 and an aggregation, got "
                        f"steps {m['steps']}, aggregation {m['aggregation']!r}")
    normalisation = m["input_normalisation"]
    if m.get("normalisation") != NORMALISATION_FORMULAS[normalisation]:
        problems.append(f"normalisation: {m.get('normalisation')!r} is not the formula of "
                        f"input_normalisation {normalisation!r} "
                        f"({NORMALISATION_FORMULAS[normalisation]!r})")
    if normalisation == "rays":
        hfov = m.get("intrinsics_guess_hfov_deg")
        if not (_is_number(hfov) and 1 <= hfov <= 179):
            problems.append(f"intrinsics_guess_hfov_deg: a 'rays' model needs the field of view "
                            f"(degrees, 1..179) guessed without intrinsics, got {hfov!r}")
    shapes = io_shapes(m["window"], m["hypotheses"], normalisation)
    for kind, names in (("inputs", input_names(normalisation)), ("outputs", OUTPUT_NAMES)):
        got = m.get(kind)
        want = {n: list(shapes[n]) for n in names}
        if not isinstance(got, dict) or list(got) != list(names):
            problems.append(f"{kind}: {list(got) if isinstance(got, dict) else got!r}, expected "
                            f"{list(names)} (window {m['window']}, hypotheses "
                            f"{m['hypotheses']}, input_normalisation {normalisation!r})")
            continue
        for n in names:
            if list(got[n]) != want[n]:
                problems.append(f"{kind}.{n}: shape {got[n]}, but window {m['window']}, "
                                f"hypotheses {m['hypotheses']} make it {want[n]}")
    return problems


def read_manifest(model_path: str | os.PathLike, verify_checksum: bool = True) -> dict[str, Any]:
    """Load `F.json` and check that it describes `F` (format, file name, sha256) and is
    consistent in itself (`manifest_problems`).

    Raises ManifestError naming the file and every problem.
    """
    model_path = Path(model_path)
    mpath = manifest_path(model_path)
    if not model_path.is_file():
        raise ManifestError(f"{model_path}: model file not found")
    if not mpath.is_file():
        raise ManifestError(f"{mpath}: manifest not found (every exported file needs one; "
                            "re-export with training/export.py)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ManifestError(f"{mpath}: unreadable manifest: {e}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{mpath}: manifest must be a JSON object")
    fmt = manifest.get("format")
    if fmt not in (MANIFEST_FORMAT, ENGINE_MANIFEST_FORMAT):
        raise ManifestError(f"{mpath}: format {fmt!r}, expected {MANIFEST_FORMAT!r} or "
                            f"{ENGINE_MANIFEST_FORMAT!r} (re-export with training/export.py)")
    if manifest.get("file") != model_path.name:
        raise ManifestError(f"{mpath}: describes {manifest.get('file')!r}, not {model_path.name!r}")
    if verify_checksum:
        actual = sha256_file(model_path)
        if manifest.get("sha256") != actual:
            raise ManifestError(f"{model_path}: sha256 {actual} does not match its manifest "
                                f"({manifest.get('sha256')}): the file was changed or corrupted")
    problems = manifest_problems(manifest)
    if problems:
        raise ManifestError(f"{mpath}: inconsistent manifest:\n  " + "\n  ".join(problems))
    return manifest


def check_expected(manifest: Mapping[str, Any], expected: Mapping[str, Any] | None,
                   where: str = "model") -> None:
    """Raise ManifestError listing every field of `expected` that the manifest contradicts."""
    if not expected:
        return
    wrong = [f"{k}: file has {manifest.get(k)!r}, configuration wants {v!r}"
             for k, v in expected.items() if manifest.get(k) != v]
    if wrong:
        raise ManifestError(f"{where}: manifest does not match the configuration:\n  "
                            + "\n  ".join(wrong))


def _dynamic(d) -> bool:
    """A persons axis as backends report it: a name (ONNX Runtime), None, or -1 (TensorRT)."""
    return d is None or isinstance(d, str) or d == -1


def graph_problems(manifest: Mapping[str, Any], inputs: Mapping[str, Any],
                   outputs: Mapping[str, Any], metadata: Mapping[str, str] | None) -> list[str]:
    """Differences between a manifest and the graph it describes, as a backend reports it:
    `inputs` / `outputs` name -> dims (axis 0 dynamic), `metadata` the graph's metadata_props
    (None where the format has none, e.g. a TensorRT engine)."""
    shapes = io_shapes(manifest["window"], manifest["hypotheses"],
                       manifest["input_normalisation"])
    problems = []
    for kind, names, got in (("input", input_names(manifest["input_normalisation"]), inputs),
                             ("output", OUTPUT_NAMES, outputs)):
        if set(got) != set(names):
            problems.append(f"{kind}s: graph has {sorted(got)}, manifest says {list(names)} "
                            f"(input_normalisation {manifest['input_normalisation']!r})")
            continue
        for n in names:
            dims = list(got[n])
            want = list(shapes[n])
            if len(dims) != len(want) or not _dynamic(dims[0]) or dims[1:] != want[1:]:
                problems.append(f"{kind} {n}: graph shape {dims}, manifest says {want} (window "
                                f"{manifest['window']}, hypotheses {manifest['hypotheses']})")
    if metadata is not None:
        text = metadata.get(GRAPH_METADATA_KEY)
        try:
            recorded = json.loads(text) if text is not None else None
        except ValueError:
            recorded = None
        if not isinstance(recorded, dict):
            problems.append(f"the graph carries no readable {GRAPH_METADATA_KEY!r} metadata "
                            "(re-export it with training/export.py)")
        else:
            problems += [f"{k}: graph says {recorded.get(k)!r}, manifest says {manifest.get(k)!r}"
                         for k in CONTRACT_FIELDS if recorded.get(k) != manifest.get(k)]
    return problems


def check_graph(manifest: Mapping[str, Any], inputs: Mapping[str, Any],
                outputs: Mapping[str, Any], metadata: Mapping[str, str] | None,
                where: str = "model") -> None:
    """Raise ManifestError listing every way the manifest disagrees with its graph."""
    problems = graph_problems(manifest, inputs, outputs, metadata)
    if problems:
        raise ManifestError(f"{where}: manifest disagrees with its graph (refused: it would fail "
                            "or mislead on every frame):\n  " + "\n  ".join(problems))


# --- engines -------------------------------------------------------------------------------


def engine_path_for(onnx_path: str | os.PathLike, fp16: bool) -> Path:
    """`lifter.onnx` -> `lifter.fp16.engine` / `lifter.fp32.engine`."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{'fp16' if fp16 else 'fp32'}.engine")


def import_tensorrt():
    """`import tensorrt`, or None where it is not installed."""
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt


def gpu_name() -> str | None:
    """Name of CUDA device 0 as torch reports it, or None without a usable GPU. Without torch,
    a Jetson's board name (device tree) stands in, so engines can be built there without torch."""
    try:
        import torch
    except ImportError:
        model = Path("/proc/device-tree/model")
        text = model.read_bytes().decode(errors="replace").strip("\x00 \n") if model.exists() else ""
        return text if "NVIDIA" in text or "Jetson" in text else None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None

"""The lifter node's parameters: one source of truth for the node, config/lifter.yaml, the launch
file and the demo.

Each parameter has a type, a default, a description, a range or a set of choices, and says whether
it can change while the node runs. `validate` gives the reason a value is refused; the node uses
it in its on-set-parameters callback, `load_params_file` applies it to a ROS parameters file.
ROS imports are local to `descriptor`, so the launch file and tools can import this without rclpy.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from diffhpe_models.runtime import BACKENDS  # light: no torch import
from diffhpe_models.skeleton import KEYPOINT_FORMATS
from diffhpe_models.uncertainty import PUBLISHED_FIXED_NOISE, PUBLISHED_SPREAD_SMOOTHING

NODE_NAME = "lifter_node"
PACKAGE = "diffhpe_ros"
MIRROR_CHOICES = ("auto", "always", "never")  # not on/off/true: YAML reads those as bools


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: `kind` is bool, int, float or str; `low`/`high` inclusive bounds."""

    name: str
    kind: type
    default: object
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False  # fixed once the node runs (the loaded model depends on it)
    unit: str = ""

    def constraints(self) -> str:
        parts = []
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.low is not None or self.high is not None:
            parts.append(f"in [{self.low if self.low is not None else '-inf'}, "
                         f"{self.high if self.high is not None else 'inf'}]")
        if self.read_only:
            parts.append("read-only while running")
        return "; ".join(parts)


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model_path", str, "models/mixste_lifter.onnx",
              "Lifter to load: checkpoint (.pt), ONNX graph with manifest, or TensorRT engine. "
              "A relative path is looked up in the working directory, the package source and "
              "the installed package share directory.", read_only=True),
    ParamSpec("backend", str, "auto", "Inference backend; auto picks the fastest available.",
              choices=BACKENDS, read_only=True),
    ParamSpec("device", str, "cpu", "Device of the torch/onnxruntime backends: cpu, cuda or "
              "cuda:N (TensorRT engines always run on the GPU).", read_only=True),
    ParamSpec("intra_op_threads", int, 1,
              "CPU threads of the torch/onnxruntime backends (0: the backend's default, one per "
              "core; keep low when a detector shares the CPU).", low=0, high=256, read_only=True),
    ParamSpec("fixed_noise", bool, PUBLISHED_FIXED_NOISE,
              "Give each tracked person the same initial diffusion noise every frame (its output "
              "is then a function of its input); false: fresh noise every frame, for models whose "
              "pose does not depend on it (aggregation conditioner: only the spread moves; the "
              "others always keep one noise per person).", read_only=True),
    ParamSpec("spread_smoothing", float, PUBLISHED_SPREAD_SMOOTHING,
              "Weight of the newest frame in the published spread's running average of its "
              "square, per person and joint (1: no smoothing; with fresh noise, 0.3 pools about "
              "5 frames of hypotheses).", low=0.01, high=1.0),
    ParamSpec("mirror", str, "auto",
              "Lift every window together with its left/right mirror image and publish the mean "
              "pose (test-time mirroring): more accurate and smoother, the two answers' "
              "disagreement joins the spread; twice the lifting work per person. auto: on where "
              "the model runs on a GPU (device cuda, or a TensorRT engine), where it costs "
              "little; off on the CPU.", choices=MIRROR_CHOICES, read_only=True),
    ParamSpec("seed", int, 0, "Seed of the diffusion noise.", low=0, high=2**31 - 1,
              read_only=True),
    ParamSpec("expected_steps", int, 0,
              "Denoising steps the engine must have been built with (0: accept any).",
              low=0, high=1000, read_only=True),
    ParamSpec("expected_hypotheses", int, 0,
              "Hypotheses H the engine must have been built with (0: accept any).",
              low=0, high=1000, read_only=True),
    ParamSpec("expected_window", int, 0,
              "Window length L in frames the engine must have (0: accept any).",
              low=0, high=1000, read_only=True),
    ParamSpec("expected_fps", float, 0.0,
              "Frame rate the model was trained at (0: accept any); the window grid uses the "
              "engine's rate.", low=0.0, high=1000.0, read_only=True, unit="Hz"),
    ParamSpec("keypoint_format", str, "mediapipe33",
              "Layout of the incoming 2D keypoints (poses per person in keypoints2d).",
              choices=tuple(KEYPOINT_FORMATS)),
    ParamSpec("confidence_threshold", float, 0.5,
              "Keypoints with a lower confidence are treated as missing.", low=0.0, high=1.0),
    ParamSpec("min_visible_joints", int, 6,
              "Persons with fewer visible H36M joints in a frame are not lifted.", low=1, high=17),
    ParamSpec("image_width", int, 640,
              "Image width used to normalise keypoints until a camera_info arrives.",
              low=1, high=100000, unit="px"),
    ParamSpec("image_height", int, 480,
              "Image height used until a camera_info arrives.", low=1, high=100000, unit="px"),
    ParamSpec("use_camera_info", bool, True,
              "Subscribe to camera_info: image size, and intrinsics to place each person's root "
              "at its estimated absolute position (otherwise poses are root-relative).",
              read_only=True),
    ParamSpec("camera_frame_id", str, "",
              "Frame id of the published 3D poses (camera optical frame). Empty: the frame id "
              "of the keypoints, or 'camera_optical_frame' if that is empty too."),
    ParamSpec("max_gap_s", float, 0.5,
              "Longest gap filled by interpolation; a longer one restarts a person's window, and "
              "stamps going back by more are taken as a clock reset.",
              low=0.001, high=60.0, unit="s"),
    ParamSpec("track_timeout_s", float, 1.0,
              "A person not seen for longer is forgotten.", low=0.001, high=600.0, unit="s"),
    ParamSpec("max_persons", int, 8, "Most persons tracked and lifted at once.", low=1, high=64,
              read_only=True),
    ParamSpec("association_gate", float, 0.5,
              "Largest 2D distance (in person sizes) between a track and a detection paired "
              "with it.", low=0.001, high=100.0),
    ParamSpec("max_output_rate_hz", float, 60.0,
              "Most lifted frames per second; faster input still feeds the windows (0: no "
              "limit).", low=0.0, high=10000.0, unit="Hz"),
    ParamSpec("marker_lifetime_s", float, 0.25,
              "Lifetime of the RViz markers, so vanished persons disappear.",
              low=0.001, high=60.0, unit="s"),
    ParamSpec("diagnostics_period_s", float, 1.0,
              "Period of the /diagnostics status.", low=0.05, high=3600.0, read_only=True,
              unit="s"),
    ParamSpec("warning_throttle_s", float, 5.0,
              "Each kind of bad input is logged at most once per this period.",
              low=0.0, high=3600.0, unit="s"),
    ParamSpec("publish_tf", bool, True,
              "Publish each tracked person's joints as tf frames on /tf (REP 155: body_<id>, "
              "body_<id>/<joint>; needs tf2_msgs)."),
)
SPECS = {p.name: p for p in PARAMETERS}
_KIND_NAMES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
DEFAULTS = {p.name: p.default for p in PARAMETERS}


def validate(name: str, value: object) -> str | None:
    """Why `value` is refused for parameter `name`, or None when it is acceptable."""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}; known: {', '.join(SPECS)}"
    ok_type = (isinstance(value, spec.kind) and not (spec.kind is int and isinstance(value, bool))
               or spec.kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok_type:
        return f"{name} must be {_KIND_NAMES[spec.kind]}, got {type(value).__name__} {value!r}"
    if spec.kind is float and not math.isfinite(value):
        return f"{name} must be finite, got {value}"
    if spec.choices is not None and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}; got {value!r}"
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        unit = f" {spec.unit}" if spec.unit else ""
        return f"{name} must be in [{spec.low}, {spec.high}]{unit}, got {value}"
    if name == "model_path" and not value.strip():
        return "model_path is empty: give the path of a checkpoint, ONNX graph or engine"
    if name == "device" and not (value == "cpu" or value == "cuda"
                                 or value.startswith("cuda:") and value[5:].isdigit()):
        return f"device must be cpu, cuda or cuda:N, got {value!r}"
    return None


# The smallest association_gate that keeps a walking person's id: at 30 Hz a walker moves about
# 0.03 person sizes between two frames (1.5 m/s over a ~1.9 m bounding-box diagonal).
MIN_SENSIBLE_GATE = 0.05


def degenerate(settings, model_fps: float) -> list[str]:
    """Valid values of `settings` (attributes named as the parameters) that silently degrade the
    output for a model of `model_fps` Hz, each with what goes wrong; the node warns about them
    at start and when a change introduces one."""
    frame_s = 1.0 / model_fps
    found = []
    if settings.max_gap_s < 1.5 * frame_s:
        found.append(f"max_gap_s={settings.max_gap_s:g} s is under 1.5 model frames "
                     f"({1.5 * frame_s:.3g} s): unless keypoints come faster than the model's "
                     "rate, every frame restarts each person's window, which then repeats one "
                     "pose")
    if settings.track_timeout_s < 1.5 * frame_s:
        found.append(f"track_timeout_s={settings.track_timeout_s:g} s is under 1.5 model frames "
                     f"({1.5 * frame_s:.3g} s): tracks expire between frames, so a person gets "
                     "a new id and an empty window every frame")
    if settings.association_gate < MIN_SENSIBLE_GATE:
        found.append(f"association_gate={settings.association_gate:g} is under "
                     f"{MIN_SENSIBLE_GATE:g} person sizes, about what a walking person moves "
                     "between two frames: moving persons get new ids")
    if settings.marker_lifetime_s < frame_s:
        found.append(f"marker_lifetime_s={settings.marker_lifetime_s:g} s is under one model "
                     f"frame ({frame_s:.3g} s): markers vanish before the next frame (flicker)")
    return found


def mirror_enabled(mirror: str, device: str, model_path: str | os.PathLike) -> bool:
    """The `mirror` parameter resolved: "always", "never", or "auto" = on where the lifter runs on a GPU
    (device cuda or cuda:N, or a TensorRT .engine file), where a batch of 2 costs about as much
    as 1; off on the CPU, where it doubles the lifting time."""
    if mirror not in MIRROR_CHOICES:
        raise ValueError(f"mirror must be one of {MIRROR_CHOICES}, got {mirror!r}")
    if mirror != "auto":
        return mirror == "always"
    return str(device).startswith("cuda") or Path(model_path).suffix.lower() == ".engine"


def load_params_file(path: str | os.PathLike, node_name: str = NODE_NAME) -> dict[str, object]:
    """Read the node's section of a ROS 2 parameters file; defaults for absent parameters.

    Raises ValueError naming the file and the parameter for unknown names or refused values.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    # The node's section as ROS 2 matches it: by name, by absolute name, or by wildcard (the
    # form that also applies under a namespace).
    keys = (node_name, f"/{node_name}", f"/**/{node_name}", "/**")
    section = next((doc[k] for k in keys if isinstance(doc, dict) and k in doc), None)
    try:
        given = section["ros__parameters"]
    except (TypeError, KeyError) as e:
        raise ValueError(f"{path}: no '{node_name}: ros__parameters:' section "
                         f"(looked for {', '.join(keys)})") from e
    values = dict(DEFAULTS)
    for name, value in (given or {}).items():
        reason = validate(name, value)
        if reason is not None:
            raise ValueError(f"{path}: {reason}")
        values[name] = float(value) if SPECS[name].kind is float else value
    return values


def source_root() -> Path:
    """The package's source (or install) root: the directory above diffhpe_ros/."""
    return Path(__file__).resolve().parents[1]


def resolve_path(path: str) -> Path:
    """A model or config path: absolute as given, else the first existing of the working
    directory, the package source root and the installed share directory."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    tried = [Path.cwd() / p, source_root() / p]
    try:
        from ament_index_python.packages import get_package_share_directory
        tried.append(Path(get_package_share_directory(PACKAGE)) / p)
    except (ImportError, LookupError, OSError):  # not installed with colcon: source tree only
        pass
    for candidate in tried:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{path!r} not found; looked in: {', '.join(map(str, tried))}")


def descriptor(spec: ParamSpec):
    """rcl_interfaces ParameterDescriptor of a spec (description, type, range, read-only).

    Read-only parameters are enforced by the node's callback instead of the descriptor's
    read_only flag, so that a refused change says why.
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    text = spec.description
    if spec.constraints():
        text += f" ({spec.constraints()})"
    d = ParameterDescriptor(name=spec.name, type=types[spec.kind], description=text,
                            additional_constraints=spec.constraints())
    if spec.kind is int and spec.low is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    if spec.kind is float and spec.low is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                     to_value=float(spec.high), step=0.0)]
    return d


def markdown_table() -> str:
    """The README's parameter table."""
    rows = ["| parameter | type | default | description |", "|---|---|---|---|"]
    for p in PARAMETERS:
        default = f"`{p.default!r}`" if p.kind is str else f"`{p.default}`"
        unit = f" [{p.unit}]" if p.unit else ""
        extra = f" ({p.constraints()})" if p.constraints() else ""
        rows.append(f"| `{p.name}`{unit} | {p.kind.__name__} | {default} | {p.description}{extra} |")
    return "\n".join(rows)

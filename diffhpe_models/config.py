"""Experiment configuration: dataclasses, YAML loading with strict validation.

One `ExperimentConfig` per variant (training/configs/*.yaml). Loading refuses unknown fields and
wrong types with a message naming the field path (`model.denoiser.blocks: expected int, got str`),
so a typo in a YAML file fails at start-up instead of silently training the default. The same
dict form (`to_dict`) travels inside checkpoints, so a checkpoint alone rebuilds its model.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from .skeleton import NUM_JOINTS

VARIANTS = ("mixste", "diffhpe_2d", "diffhpe_wrapper")
WINDOW_MODES = ("causal", "centred")
SAMPLERS = ("ddim", "ddpm")
PREDICTIONS = ("epsilon", "x0")
# "conditioner": a residual Wrapper publishes its MixSTE's pose and the hypotheses only give the
# spread around it (the most accurate point estimate, the sampler's uncertainty).
AGGREGATIONS = ("mean", "median", "reproj", "conditioner")
OBJECTIVES = ("denoising", "energy")
# How the model sees 2D: "screen" = the reference's image-size normalisation (graph input
# image_wh); "rays" = normalised by the camera intrinsics (graph input intrinsics: fx, fy, cx, cy).
INPUT_NORMALISATIONS = ("screen", "rays")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


@dataclass
class CameraConfig:
    """Virtual cameras of the training/validation windows (camera.CameraSampler). The defaults are
    the first models' H36M-like cameras; training/configs widen them to what robots and phones see."""

    distance_min_m: float = 3.0      # horizontal distance to the subject's pelvis
    distance_max_m: float = 6.0
    height_min_m: float = 0.8        # camera centre above the floor
    height_max_m: float = 2.0
    focal_min: float = 0.7           # fx / image width: 0.5 = 90 deg horizontal FOV, 1.87 = 30 deg
    focal_max: float = 1.6
    aim_jitter_deg: float = 5.0      # pan/tilt off the pelvis: people off centre, partly outside
    roll_deg: float = 5.0
    pitch_min_deg: float = -90.0     # elevation of the optical axis (negative = looking down)
    pitch_max_deg: float = 90.0
    portrait_prob: float = 0.0       # images taller than wide
    principal_jitter_frac: float = 0.02
    mask_outside_image: bool = False  # keypoints outside the image are missing, as a detector has them


@dataclass
class BodyConfig:
    """Other bodies than the mocap actors' (augmentation.BodyScaler); training windows only."""

    stature_min: float = 1.0
    stature_max: float = 1.0
    segment_jitter: float = 0.0
    width_min: float = 1.0           # extra factor on hip and shoulder widths
    width_max: float = 1.0


@dataclass
class DataConfig:
    """What the model sees: the dataset, the windows, the 2D corruption at training time."""

    dataset: str = "data/mocap_h36m17.npz"
    window: int = 27                 # L frames per window
    window_mode: str = "causal"      # causal: target = last frame (live); centred: middle frame
    occlusion: str = "mixed"         # occlusion pattern (occlusion.PATTERNS) or "mixed" (one per sample)
    fps: float = 30.0                # frame rate the sequences are resampled to (the model's rate)
    speed_min: float = 0.5           # training playback speed, log-uniform in [speed_min, speed_max]
    speed_max: float = 2.0
    flip_prob: float = 0.5           # training left/right mirror probability
    # Training: half the windows get the occlusion pattern's mirror image (the reference's
    # patterns always hide the right leg / the left arm, and the flip happens before them, so a
    # model never sees the mirrored gaps). False = the reference's patterns as they are.
    mirror_occlusion: bool = False
    noise_sigma_frac: float = 0.01   # detector-like 2D noise, std as a fraction of the person size
    # Training: > noise_sigma_frac draws each window's noise std log-uniformly in
    # [noise_sigma_frac, noise_sigma_frac_max] (real detectors are noisier on small, blurred or
    # unusual people), so the spread can learn to widen when the 2D is noisy. 0 = always
    # noise_sigma_frac. Validation and test windows keep noise_sigma_frac.
    noise_sigma_frac_max: float = 0.0
    # Training: each keypoint of a window gets one constant 2D offset, std this fraction of the
    # person's size (a detector's systematic error: its keypoints are not the mocap's joint
    # centres, and its misses last several frames). 0 = off. Evaluation windows keep none.
    keypoint_bias_frac: float = 0.0
    outlier_prob: float = 0.005      # probability of a keypoint being a gross outlier
    stride: int = 1                  # frame step between the targets of validation windows
    # "screen" (default: checkpoints made before it existed) or "rays" (camera-aware, see
    # camera.normalize_rays); the configs in training/configs use "rays".
    input_normalisation: str = "screen"
    camera: CameraConfig = field(default_factory=CameraConfig)
    body: BodyConfig = field(default_factory=BodyConfig)

@dataclass
class MixSTEConfig:
    """MixSTE seq2seq transformer: alternating spatial (over joints) and temporal blocks."""

    embed_dim: int = 32
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    drop_path: float = 0.1           # stochastic depth, linearly increasing over the blocks


@dataclass
class DenoiserConfig:
    """GCN noise predictor (CSDI/DePOSit-style gated residual blocks)."""

    channels: int = 32               # C
    blocks: int = 3
    dropout: float = 0.0
    nonlocal_channels: int = 0       # inner width of the grouped graph non-local block (0 = off)
    time_embedding_dim: int = 64     # sinusoid width (half sines, half cosines) and MLP width
    pose_embedding_dim: int = 32     # Wrapper only: E3D = Linear(3 -> this) of the noisy pose


@dataclass
class ModelConfig:
    variant: str = "diffhpe_wrapper"
    causal: bool = True              # temporal mixing never looks at later frames of the window
    mixste: MixSTEConfig = field(default_factory=MixSTEConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    # Wrapper only: the pre-trained MixSTE checkpoint whose features condition the denoiser. Read
    # once at training start (its weights then live in the Wrapper's own checkpoint).
    conditioner_checkpoint: str = ""
    # Wrapper only: the denoiser predicts a correction to the frozen MixSTE's own pose (x0 =
    # MixSTE pose + output; needs prediction "x0"). Its head starts at zero, so an untrained
    # denoiser already is MixSTE: the diffusion can only add to the conditioner, not start below it.
    residual: bool = False


@dataclass
class DiffusionConfig:
    timesteps: int = 50              # T of the training schedule
    max_beta: float = 0.5            # betas of the cosine schedule are clipped here
    cosine_offset: float = 0.008     # s in alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2)
    prediction: str = "x0"           # the denoiser outputs x0 (few-step friendly) or epsilon (reference)
    sampler: str = "ddim"            # ddim: respaced `steps`; ddpm: ancestral, all T steps
    steps: int = 2                   # DDIM steps (1..timesteps)
    hypotheses: int = 5              # H samples per window, batched
    aggregation: str = "reproj"      # mean | median | reproj
    eta: float = 0.0                 # DDIM stochasticity; 0 = deterministic given the noise
    # The diffusion runs on pose / pose_scale_m: root-relative poses in metres have a std of ~0.25 m
    # per coordinate, so against unit noise the signal-to-noise ratio of every step is ~16x lower
    # than the schedule intends and the denoiser learns to ignore x_t (a regressor, no spread).
    # 1.0 = the first models (metres as is).
    pose_scale_m: float = 1.0
    # The published spread is the hypotheses' spread x these factors, for joints observed /
    # missing in the published frame: a calibration fitted on the validation split's published
    # streams (training/calibrate_spread.py) so that the spread is the joint's RMS error in
    # expectation; 1.0 = the raw spread of the hypotheses.
    spread_scale_visible: float = 1.0
    spread_scale_hidden: float = 1.0
    # ... and x this factor per joint (17 values in JOINT_NAMES order; empty = 1.0 each): how
    # much wider or narrower a joint's spread must be than its group's factor makes it (the
    # hypotheses of wrists come out too narrow for their error, of hips too wide).
    spread_scale_joint: tuple[float, ...] = ()


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    lr_factor: float = 0.5           # ReduceLROnPlateau on the validation MPJPE
    lr_patience: int = 5
    grad_clip: float = 1.0           # max gradient norm; 0 = off
    samples_per_epoch: int = 0       # training windows drawn per epoch; 0 = one per window start
    val_samples: int = 2048          # validation windows evaluated each epoch (fixed subset)
    workers: int = 2                 # DataLoader worker processes
    seed: int = 0
    # "denoising": the diffusion loss at a random step (DDPM training). "energy": the run-time
    # few-step sampler unrolled from `energy_samples` noises per window and trained with the
    # per-joint energy score (a strictly proper scoring rule), so that its hypotheses are samples
    # of p(pose | 2D) rather than copies of the posterior mean (objectives.energy_score).
    objective: str = "denoising"
    energy_samples: int = 4


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        validate(self)


# --- dict <-> dataclass -------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a field annotation; ints are accepted where floats are expected."""
    if dataclasses.is_dataclass(annotation):
        return _from_dict(annotation, value, where)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected bool, got {_type_name(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {_type_name(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {_type_name(value)}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected str, got {_type_name(value)}")
        return value
    if annotation == tuple[float, ...]:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of floats, got {_type_name(value)}")
        return tuple(_convert(v, float, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where}: unsupported annotation {annotation!r}")  # a bug here, not in YAML


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        path = f"{where}." if where else ""
        raise ConfigError(f"unknown field {path}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{where}.{name}" if where else name)
    return cls(**kwargs)


def from_dict(data: dict) -> ExperimentConfig:
    """Build and validate an `ExperimentConfig` from a (possibly partial) nested dict.

    Missing fields take their defaults; unknown fields, wrong types and out-of-range values raise
    `ConfigError` naming the field path.
    """
    return _from_dict(ExperimentConfig, data, "")


def to_dict(config: ExperimentConfig) -> dict:
    """The nested plain-dict form (YAML/JSON/checkpoint safe)."""
    return dataclasses.asdict(config)


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read a YAML experiment file; errors name the file and the field path."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def save_config(config: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write the config as YAML atomically (the copy kept next to a training run)."""
    from .atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


# --- value checks -------------------------------------------------------------------------


def aggregations_for(model: ModelConfig) -> tuple[str, ...]:
    """The aggregations a model can run ('conditioner' only with a conditioner pose)."""
    return tuple(a for a in AGGREGATIONS if a != "conditioner" or model.residual)


def _require(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {message}")


def validate(config: ExperimentConfig) -> None:
    """Range and consistency checks that types alone do not express."""
    d, m, df, t = config.data, config.model, config.diffusion, config.train
    _require(d.window >= 1, "data.window", f"must be >= 1, got {d.window}")
    _require(d.window_mode in WINDOW_MODES, "data.window_mode",
             f"expected one of {WINDOW_MODES}, got {d.window_mode!r}")
    from .occlusion import PATTERNS  # data module, earlier in the chain
    _require(d.occlusion == "mixed" or d.occlusion in PATTERNS, "data.occlusion",
             f"expected 'mixed' or one of {PATTERNS}, got {d.occlusion!r}")
    _require(d.fps > 0, "data.fps", f"must be > 0, got {d.fps}")
    _require(0 < d.speed_min <= d.speed_max, "data.speed_min",
             f"need 0 < speed_min <= speed_max, got {d.speed_min}, {d.speed_max}")
    _require(0 <= d.flip_prob <= 1, "data.flip_prob", f"must be in [0, 1], got {d.flip_prob}")
    _require(d.noise_sigma_frac >= 0, "data.noise_sigma_frac", "must be >= 0")
    _require(d.noise_sigma_frac_max == 0 or d.noise_sigma_frac_max >= d.noise_sigma_frac > 0,
             "data.noise_sigma_frac_max", f"must be 0 (off) or >= noise_sigma_frac > 0, got "
             f"{d.noise_sigma_frac_max} with noise_sigma_frac {d.noise_sigma_frac}")
    _require(0 <= d.outlier_prob <= 1, "data.outlier_prob", "must be in [0, 1]")
    _require(0 <= d.keypoint_bias_frac <= 0.2, "data.keypoint_bias_frac", "must be in [0, 0.2]")
    _require(d.stride >= 1, "data.stride", f"must be >= 1, got {d.stride}")
    c, b = d.camera, d.body
    for name in ("distance", "height"):
        lo, hi = getattr(c, f"{name}_min_m"), getattr(c, f"{name}_max_m")
        _require(0 < lo <= hi, f"data.camera.{name}_min_m", f"need 0 < min <= max, got {lo}, {hi}")
    _require(0 < c.focal_min <= c.focal_max, "data.camera.focal_min", "need 0 < min <= max")
    _require(-90 <= c.pitch_min_deg <= c.pitch_max_deg <= 90, "data.camera.pitch_min_deg",
             "need -90 <= min <= max <= 90")
    _require(c.aim_jitter_deg >= 0 and c.roll_deg >= 0 and c.principal_jitter_frac >= 0,
             "data.camera", "jitters must be >= 0")
    _require(0 <= c.portrait_prob <= 1, "data.camera.portrait_prob", "must be in [0, 1]")
    _require(0 < b.stature_min <= b.stature_max, "data.body.stature_min", "need 0 < min <= max")
    _require(0 < b.width_min <= b.width_max, "data.body.width_min", "need 0 < min <= max")
    _require(0 <= b.segment_jitter < 1, "data.body.segment_jitter", "must be in [0, 1)")
    for name in ("spread_scale_visible", "spread_scale_hidden"):
        v = getattr(config.diffusion, name)
        _require(math.isfinite(v) and v > 0, f"diffusion.{name}", f"must be > 0, got {v}")
    joint_scale = config.diffusion.spread_scale_joint
    _require(len(joint_scale) in (0, NUM_JOINTS), "diffusion.spread_scale_joint",
             f"must be empty or hold {NUM_JOINTS} values (one per joint), got {len(joint_scale)}")
    _require(all(math.isfinite(v) and v > 0 for v in joint_scale),
             "diffusion.spread_scale_joint", f"every value must be > 0, got {list(joint_scale)}")
    _require(config.diffusion.pose_scale_m > 0, "diffusion.pose_scale_m",
             f"must be > 0, got {config.diffusion.pose_scale_m}")
    _require(d.input_normalisation in INPUT_NORMALISATIONS, "data.input_normalisation",
             f"must be one of {INPUT_NORMALISATIONS}, got {d.input_normalisation!r}")
    _require(m.variant in VARIANTS, "model.variant", f"expected one of {VARIANTS}, got {m.variant!r}")
    mx = m.mixste
    for name in ("embed_dim", "depth", "heads"):
        _require(getattr(mx, name) >= 1, f"model.mixste.{name}", "must be >= 1")
    _require(mx.embed_dim % mx.heads == 0, "model.mixste.heads",
             f"must divide embed_dim {mx.embed_dim}, got {mx.heads}")
    _require(mx.mlp_ratio > 0, "model.mixste.mlp_ratio", "must be > 0")
    for name in ("dropout", "drop_path"):
        v = getattr(mx, name)
        _require(0 <= v < 1, f"model.mixste.{name}", f"must be in [0, 1), got {v}")
    dn = m.denoiser
    for name in ("channels", "blocks", "pose_embedding_dim"):
        _require(getattr(dn, name) >= 1, f"model.denoiser.{name}", "must be >= 1")
    _require(dn.nonlocal_channels >= 0, "model.denoiser.nonlocal_channels", "must be >= 0")
    _require(dn.time_embedding_dim >= 2 and dn.time_embedding_dim % 2 == 0,
             "model.denoiser.time_embedding_dim", f"must be even and >= 2, got {dn.time_embedding_dim}")
    _require(0 <= dn.dropout < 1, "model.denoiser.dropout", f"must be in [0, 1), got {dn.dropout}")
    _require(df.timesteps >= 1, "diffusion.timesteps", "must be >= 1")
    _require(0 < df.max_beta < 1, "diffusion.max_beta", f"must be in (0, 1), got {df.max_beta}")
    _require(df.cosine_offset > 0, "diffusion.cosine_offset", "must be > 0")
    _require(df.prediction in PREDICTIONS, "diffusion.prediction",
             f"expected one of {PREDICTIONS}, got {df.prediction!r}")
    _require(df.sampler in SAMPLERS, "diffusion.sampler", f"expected one of {SAMPLERS}, got {df.sampler!r}")
    _require(1 <= df.steps <= df.timesteps, "diffusion.steps",
             f"must be in 1..{df.timesteps} (timesteps), got {df.steps}")
    _require(df.hypotheses >= 1, "diffusion.hypotheses", "must be >= 1")
    _require(df.aggregation in AGGREGATIONS, "diffusion.aggregation",
             f"expected one of {AGGREGATIONS}, got {df.aggregation!r}")
    _require(0 <= df.eta <= 1, "diffusion.eta", f"must be in [0, 1], got {df.eta}")
    for name in ("epochs", "batch_size"):
        _require(getattr(t, name) >= 1, f"train.{name}", "must be >= 1")
    _require(t.lr > 0, "train.lr", "must be > 0")
    _require(t.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    _require(0 < t.lr_factor < 1, "train.lr_factor", "must be in (0, 1)")
    for name in ("lr_patience", "samples_per_epoch", "val_samples", "workers", "seed"):
        _require(getattr(t, name) >= 0, f"train.{name}", "must be >= 0")
    _require(t.grad_clip >= 0, "train.grad_clip", "must be >= 0")
    _require(t.objective in OBJECTIVES, "train.objective",
             f"expected one of {OBJECTIVES}, got {t.objective!r}")
    _require(t.objective == "denoising" or m.variant != "mixste", "train.objective",
             f"{t.objective!r} trains a diffusion sampler; a 'mixste' model has none")
    _require(t.objective != "energy" or df.hypotheses >= 2, "diffusion.hypotheses",
             f"train.objective 'energy' selects on the hypotheses' energy score, which needs >= 2, "
             f"got {df.hypotheses}")
    _require(t.energy_samples >= 2, "train.energy_samples",
             f"must be >= 2 (the energy score compares samples), got {t.energy_samples}")
    _require(not m.residual or m.variant == "diffhpe_wrapper", "model.residual",
             f"only the Wrapper has a conditioner pose to correct, got variant {m.variant!r}")
    _require(df.aggregation != "conditioner" or m.residual, "diffusion.aggregation",
             "'conditioner' needs a residual Wrapper (model.residual: true)")
    _require(not m.residual or df.prediction == "x0", "diffusion.prediction",
             f"model.residual needs prediction 'x0', got {df.prediction!r}")

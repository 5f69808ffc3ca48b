"""Safe, self-describing checkpoints.

A checkpoint is a plain dict that `torch.load(..., weights_only=True)` accepts (no pickled
classes): the format version, the variant, the full config dict, the skeleton's joint names, the
model state_dict, free-form `extra` (normalisation, fps, training state) and `metrics`. The file
alone rebuilds the model: `load_checkpoint(path)` -> (model, config, extra).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_open
from .config import ConfigError, ExperimentConfig, from_dict, to_dict
from .contract import NORMALISATION_FORMULAS  # recorded, so a consumer can check it
from .lifter import build_model
from .skeleton import JOINT_NAMES

CHECKPOINT_FORMAT = "diffhpe-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, of another format/skeleton, or of another variant."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: ExperimentConfig,
                    extra: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None) -> Path:
    """Write `model`'s weights with everything needed to rebuild it, atomically.

    extra: plain data (str/int/float/bool/list/dict/tensors), e.g. {"fps": 30.0, "epoch": 3,
    "optimizer": opt.state_dict()}; `normalisation` (the formula of the config's
    data.input_normalisation) is added. metrics: e.g. {"val_mpjpe_mm": 52.1}.
    """
    model = getattr(model, "module", model)          # unwrap DistributedDataParallel
    payload = {
        "format": CHECKPOINT_FORMAT,
        "variant": config.model.variant,
        "config": to_dict(config),
        "joints": list(JOINT_NAMES),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": {"normalisation": NORMALISATION_FORMULAS[config.data.input_normalisation],
                  **(extra or {})},
        "metrics": dict(metrics or {}),
    }
    with atomic_open(path) as f:
        torch.save(payload, f)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict, validated (format, joints, config); weights_only loading."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt/unsafe files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: format {got!r}, expected {CHECKPOINT_FORMAT!r}")
    if list(payload.get("joints", [])) != list(JOINT_NAMES):
        raise CheckpointError(f"{path}: skeleton joints {payload.get('joints')} differ from "
                              f"this package's H36M-17 {list(JOINT_NAMES)}")
    try:
        payload["config"] = from_dict(payload["config"])
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{path}: invalid config: {e}") from None
    return payload


def load_checkpoint(path: str | os.PathLike, expected_variant: str | None = None,
                    map_location: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, ExperimentConfig, dict[str, Any]]:
    """Rebuild the model of a checkpoint (eval mode) -> (model, config, extra).

    expected_variant: if given and the checkpoint holds another variant, CheckpointError.
    """
    payload = read_checkpoint(path)
    config = payload["config"]
    if expected_variant is not None and config.model.variant != expected_variant:
        raise CheckpointError(f"{path}: a {config.model.variant!r} checkpoint, expected "
                              f"{expected_variant!r}")
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the config's model: {e}") from None
    extra = dict(payload.get("extra", {}))
    extra["metrics"] = payload.get("metrics", {})
    return model.to(map_location).eval(), config, extra


def checkpoint_fps(extra: dict[str, Any]) -> float:
    """Frame rate the model was trained at (the dataset's), from a checkpoint's extra fields."""
    return float(extra.get("fps", 30.0))

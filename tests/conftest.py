"""Shared test fixtures: a small untrained DiffHPE-Wrapper checkpoint and its ONNX export.

Tests run on 2 shared CPU cores: torch gets one thread, and ROS logs go to a temporary directory
(never into the user's ~/.ros or the repo).
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

_ros_log_dir = tempfile.mkdtemp(prefix="diffhpe_test_ros_log_")
os.environ["ROS_LOG_DIR"] = _ros_log_dir
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "OFF"  # tests talk within their own process
atexit.register(shutil.rmtree, _ros_log_dir, ignore_errors=True)
torch.set_num_threads(1)

# A DiffHPE-Wrapper with its MixSTE, small enough to build, export and run in about a second.
TINY_CONFIG = {
    "name": "tiny_wrapper",
    "data": {"window": 27, "window_mode": "causal"},
    "model": {
        "variant": "diffhpe_wrapper",
        "mixste": {"embed_dim": 16, "depth": 2, "heads": 2},
        "denoiser": {"channels": 16, "blocks": 2, "nonlocal_channels": 8,
                     "time_embedding_dim": 16, "pose_embedding_dim": 8},
    },
    "diffusion": {"steps": 2, "hypotheses": 3, "aggregation": "mean"},
}
TINY_FPS = 30.0


def load_training_script(name: str):
    """training/<name>.py imported as a fresh module (the scripts are not a package). Registered
    in sys.modules under `training_<name>`, so dataclasses in it can look their module up."""
    module_name = f"training_{name}"
    path = Path(__file__).resolve().parents[1] / "training" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def context():
    """A fresh rclpy context per test (nodes of different tests never meet)."""
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


def make_untrained_checkpoint(path: Path, config_dict: dict = TINY_CONFIG, seed: int = 0) -> Path:
    """Build the model of `config_dict`, give every weight a random value, save a checkpoint.

    Untrained, but not degenerate: the denoiser's head and the non-local output norm start at
    zero (so that training starts from the identity), which would make the predicted noise 0 and
    the output independent of the 2D input; a parity test on such a model would prove nothing.
    """
    from diffhpe_models.checkpoint import save_checkpoint
    from diffhpe_models.config import from_dict
    from diffhpe_models.lifter import build_model

    config = from_dict(config_dict)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # initial weights from the seed too: the same model every run
        torch.manual_seed(seed)
        model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    return save_checkpoint(path, model, config, extra={"fps": TINY_FPS})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Path of a small untrained DiffHPE-Wrapper checkpoint (L=27, causal, H=3, 2 DDIM steps)."""
    return make_untrained_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    """Path of the ONNX export of `tiny_checkpoint` (manifest `tiny.onnx.json` beside it)."""
    from diffhpe_models.export import export_checkpoint

    out = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    return export_checkpoint(tiny_checkpoint, out).path


@pytest.fixture(scope="session")
def tiny_rays_checkpoint(tmp_path_factory) -> Path:
    """`tiny_checkpoint`'s model with camera-aware input (data.input_normalisation "rays")."""
    config = {**TINY_CONFIG, "data": {**TINY_CONFIG["data"], "input_normalisation": "rays"}}
    return make_untrained_checkpoint(tmp_path_factory.mktemp("tiny_rays") / "rays.pt", config)


@pytest.fixture(scope="session")
def tiny_rays_onnx(tiny_rays_checkpoint, tmp_path_factory) -> Path:
    """The ONNX export of `tiny_rays_checkpoint` (its graph takes `intrinsics`)."""
    from diffhpe_models.export import export_checkpoint

    out = tmp_path_factory.mktemp("tiny_rays_onnx") / "rays.onnx"
    return export_checkpoint(tiny_rays_checkpoint, out).path

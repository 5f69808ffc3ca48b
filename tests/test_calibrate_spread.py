"""The published spread's calibration: fitted on validation streams, stored in the checkpoint,
applied by the pipeline (observed / missing joints), recorded in the export's manifest."""
import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, load_training_script, make_untrained_checkpoint

from diffhpe_models.checkpoint import load_checkpoint
from diffhpe_models.config import ConfigError, from_dict
from diffhpe_models.lifter import LiftingPipeline, build_model

REPO = Path(__file__).resolve().parents[1]
fit_scales = load_training_script("calibrate_spread").fit_scales


def test_fit_scales_matches_the_mean_square_error_per_group():
    rng = np.random.default_rng(0)
    n = 20000
    visible = rng.random((n, 17)) > 0.3
    rms = np.where(visible, 0.05, 0.15)                      # the true RMS error of each joint
    error = np.linalg.norm(rng.normal(size=(n, 17, 3)), axis=-1) * rms / np.sqrt(3)
    spread = np.where(visible, rms, rms / 2)                 # hidden: half as wide as it should
    scales = fit_scales(spread, error, visible)
    assert scales["visible"] == pytest.approx(1.0, abs=0.02)
    assert scales["hidden"] == pytest.approx(2.0, abs=0.04)
    assert scales["visible_joints"] + scales["hidden_joints"] == n * 16   # the root left out


def test_pipeline_scales_the_spread_of_observed_and_missing_joints():
    base = copy.deepcopy(TINY_CONFIG)
    scaled = copy.deepcopy(base)
    scaled["diffusion"].update(spread_scale_visible=2.0, spread_scale_hidden=3.0)
    torch.manual_seed(0)
    model = build_model(from_dict(base))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    raw, calibrated = LiftingPipeline(model, from_dict(base)), LiftingPipeline(model, from_dict(scaled))
    g = torch.Generator().manual_seed(1)
    kp = torch.rand(2, 27, 17, 2, generator=g) * 500
    mask = (torch.rand(2, 27, 17, generator=g) > 0.3).float()
    wh = torch.tensor([[640.0, 480.0]] * 2)
    noise = torch.randn(2, 3, 27, 17, 3, generator=g)
    pose_a, spread_a = raw(kp, mask, wh, noise)
    pose_b, spread_b = calibrated(kp, mask, wh, noise)
    assert torch.equal(pose_a, pose_b)
    torch.testing.assert_close(spread_b, spread_a * torch.where(mask > 0, 2.0, 3.0))
    assert spread_a.max() > 1e-4
    with pytest.raises(ConfigError, match="diffusion.spread_scale_hidden: must be > 0"):
        from_dict({"diffusion": {"spread_scale_hidden": 0.0}})


def test_calibrate_cli_stores_the_factors_and_the_export_records_them(tmp_path):
    from test_train import write_real_mocap_dataset

    from diffhpe_models.contract import read_manifest
    from diffhpe_models.export import export_checkpoint

    dataset = write_real_mocap_dataset(tmp_path / "tiny.npz")
    config = copy.deepcopy(TINY_CONFIG)
    config["data"]["dataset"] = str(dataset)
    checkpoint = make_untrained_checkpoint(tmp_path / "w.pt", config)
    out = tmp_path / "calibrated.pt"
    done = subprocess.run([sys.executable, str(REPO / "training" / "calibrate_spread.py"),
                           str(checkpoint), "--out", str(out), "--stream-frames", "40",
                           "--stream-stride", "1"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    _, calibrated, extra = load_checkpoint(out)
    fit = extra["spread_calibration"]
    assert fit["split"] == "validation" and fit["streams"] >= 1
    assert (calibrated.diffusion.spread_scale_visible, calibrated.diffusion.spread_scale_hidden) \
        == (fit["visible"], fit["hidden"])
    assert fit["visible"] > 0 and fit["visible"] != 1.0
    manifest = read_manifest(export_checkpoint(out, tmp_path / "c.onnx").path)
    assert manifest["spread_scale"] == {"visible": fit["visible"], "hidden": fit["hidden"]}
    # A deterministic model has no spread to calibrate: refused, nothing written.
    mixste = copy.deepcopy(config)
    mixste["model"]["variant"] = "mixste"
    path = make_untrained_checkpoint(tmp_path / "m.pt", mixste)
    done = subprocess.run([sys.executable, str(REPO / "training" / "calibrate_spread.py"),
                           str(path), "--out", str(tmp_path / "no.pt")], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 2 and "no spread to calibrate" in done.stderr
    assert not (tmp_path / "no.pt").exists()

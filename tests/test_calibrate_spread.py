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
    assert scales["joint"] == pytest.approx([1.0] * 17, abs=0.03)
    assert scales["visible_joints"] + scales["hidden_joints"] == n * 16   # the root left out


def test_fit_scales_finds_the_joints_whose_spread_is_too_narrow_or_too_wide():
    rng = np.random.default_rng(1)
    n = 20000
    visible = rng.random((n, 17)) > 0.3
    rms = np.where(visible, 0.05, 0.15)
    error = np.linalg.norm(rng.normal(size=(n, 17, 3)), axis=-1) * rms / np.sqrt(3)
    off = np.ones(17)
    off[[13, 16]] = 0.5          # the wrists' hypotheses half as wide as their error
    off[[1, 4]] = 1.6            # the hips' too wide
    spread = np.where(visible, rms, rms / 2) * off
    scales = fit_scales(spread, error, visible)
    effective_visible = scales["visible"] * np.asarray(scales["joint"])
    effective_hidden = scales["hidden"] * np.asarray(scales["joint"])
    # Each joint's calibrated spread matches its own RMS error, in both groups.
    np.testing.assert_allclose(effective_visible[1:], 1.0 / off[1:], rtol=0.04)
    np.testing.assert_allclose(effective_hidden[1:], 2.0 / off[1:], rtol=0.04)
    assert scales["joint"][0] == 1.0                        # the root: no spread, no factor
    assert np.exp(np.mean(np.log(scales["joint"][1:]))) == pytest.approx(1.0)
    calibrated = spread * np.where(visible, scales["visible"], scales["hidden"]) * scales["joint"]
    for group in (visible, ~visible):
        ratio = np.mean(error[:, 1:][group[:, 1:]] ** 2) / np.mean(calibrated[:, 1:][group[:, 1:]] ** 2)
        assert ratio == pytest.approx(1.0, abs=1e-9)            # exact per group


def test_holdout_check_fits_on_every_other_stream_and_checks_the_rest():
    rng = np.random.default_rng(2)
    spreads, errors, visible = [], [], []
    off = np.ones(17)
    off[[13, 16]] = 0.5                         # the wrists' spread half what it should be
    for _ in range(6):
        seen = rng.random((500, 17)) > 0.3
        rms = np.where(seen, 0.05, 0.15) * rng.uniform(0.5, 2.0)
        errors.append(np.linalg.norm(rng.normal(size=(500, 17, 3)), axis=-1) * rms / np.sqrt(3))
        spreads.append(np.where(seen, rms, rms / 2) * off)
        visible.append(seen)
    check = load_training_script("calibrate_spread").holdout_check(spreads, errors, visible)
    assert (check["fitted_streams"], check["checked_streams"]) == (3, 3)
    # Gaussian errors with the calibrated spread as their RMS: 61 % within 1 x spread. The
    # per-joint factors get there; the group factors alone cannot fix the wrists.
    assert check["group_joint"]["coverage_k1"] == pytest.approx(0.61, abs=0.03)
    assert abs(check["group"]["coverage_k1"] - 0.61) > abs(check["group_joint"]["coverage_k1"] - 0.61)
    assert load_training_script("calibrate_spread").holdout_check(spreads[:1], errors[:1],
                                                                  visible[:1]) is None


def test_pipeline_scales_the_spread_of_observed_and_missing_joints():
    base = copy.deepcopy(TINY_CONFIG)
    scaled = copy.deepcopy(base)
    joint = [1.0 + 0.1 * j for j in range(17)]
    scaled["diffusion"].update(spread_scale_visible=2.0, spread_scale_hidden=3.0,
                               spread_scale_joint=joint)
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
    torch.testing.assert_close(spread_b, spread_a * torch.where(mask > 0, 2.0, 3.0)
                               * torch.tensor(joint))
    assert spread_a.max() > 1e-4
    with pytest.raises(ConfigError, match="diffusion.spread_scale_hidden: must be > 0"):
        from_dict({"diffusion": {"spread_scale_hidden": 0.0}})
    with pytest.raises(ConfigError, match="spread_scale_joint: must be empty or hold 17 values"):
        from_dict({"diffusion": {"spread_scale_joint": [1.0] * 16}})
    with pytest.raises(ConfigError, match="spread_scale_joint: every value must be > 0"):
        from_dict({"diffusion": {"spread_scale_joint": [1.0] * 16 + [0.0]}})
    with pytest.raises(ConfigError, match=r"spread_scale_joint\[2\]: expected float"):
        from_dict({"diffusion": {"spread_scale_joint": [1.0, 1.0, "wide"] + [1.0] * 14}})


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
    d = calibrated.diffusion
    assert (d.spread_scale_visible, d.spread_scale_hidden, list(d.spread_scale_joint)) \
        == (fit["visible"], fit["hidden"], fit["joint"])
    assert fit["visible"] > 0 and fit["visible"] != 1.0 and len(fit["joint"]) == 17
    assert fit["streams"] == 1 and fit["holdout"] is None   # no stream left to check on
    manifest = read_manifest(export_checkpoint(out, tmp_path / "c.onnx").path)
    assert manifest["spread_scale"] == {"visible": fit["visible"], "hidden": fit["hidden"],
                                        "joint": fit["joint"]}
    # Calibrating the calibrated checkpoint again undoes the stored factors first: the same fit
    # (up to the frames where the spread's running average mixes a joint's two groups).
    again = subprocess.run([sys.executable, str(REPO / "training" / "calibrate_spread.py"),
                            str(out), "--out", str(tmp_path / "again.pt"), "--stream-frames",
                            "40", "--stream-stride", "1"], capture_output=True, text=True,
                           cwd=REPO)
    assert again.returncode == 0, again.stderr
    refit = load_checkpoint(tmp_path / "again.pt")[2]["spread_calibration"]
    assert refit["visible"] == pytest.approx(fit["visible"], rel=2e-3)
    assert refit["joint"] == pytest.approx(fit["joint"], rel=2e-3)
    # A deterministic model has no spread to calibrate: refused, nothing written.
    mixste = copy.deepcopy(config)
    mixste["model"]["variant"] = "mixste"
    path = make_untrained_checkpoint(tmp_path / "m.pt", mixste)
    done = subprocess.run([sys.executable, str(REPO / "training" / "calibrate_spread.py"),
                           str(path), "--out", str(tmp_path / "no.pt")], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 2 and "no spread to calibrate" in done.stderr
    assert not (tmp_path / "no.pt").exists()

"""Checkpoints: round trip of every variant, build_pipeline, refusals, atomic writes."""
from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

from diffhpe_models.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from diffhpe_models.config import from_dict, to_dict
from diffhpe_models.lifter import LiftingPipeline, build_model, build_pipeline

SMALL = {"data": {"window": 9},
         "model": {"mixste": {"embed_dim": 16, "depth": 1, "heads": 2},
                   "denoiser": {"channels": 16, "blocks": 2, "nonlocal_channels": 8,
                                "time_embedding_dim": 16, "pose_embedding_dim": 8}},
         "diffusion": {"steps": 2, "hypotheses": 3}}


def _config(variant):
    return from_dict({**SMALL, "model": {**SMALL["model"], "variant": variant}})


def _random_model(config, seed=0):
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for m in model.modules():        # non-trivial BatchNorm statistics too
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _inputs(h):
    g = torch.Generator().manual_seed(3)
    return (torch.rand(2, 9, 17, 2, generator=g) * 400, torch.ones(2, 9, 17),
            torch.tensor([[640.0, 480.0], [800.0, 600.0]]), torch.randn(2, h, 9, 17, 3, generator=g))


@pytest.mark.parametrize("variant", ["mixste", "diffhpe_2d", "diffhpe_wrapper"])
def test_round_trip_rebuilds_the_same_model(tmp_path, variant):
    config = _config(variant)
    model = _random_model(config)
    path = save_checkpoint(tmp_path / "m.pt", model, config, {"fps": 24.0}, {"val_mpjpe_mm": 50.0})
    loaded, loaded_config, extra = load_checkpoint(path, expected_variant=variant)
    assert to_dict(loaded_config) == to_dict(config)
    assert extra["fps"] == 24.0 and extra["metrics"] == {"val_mpjpe_mm": 50.0}
    assert "u / w" in extra["normalisation"]
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    h = 1 if variant == "mixste" else 3
    want = LiftingPipeline(model, config)(*_inputs(h))
    got = build_pipeline(path)(*_inputs(h))
    assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
    raw = read_checkpoint(path)
    assert raw["format"] == CHECKPOINT_FORMAT and raw["variant"] == variant
    assert len(raw["joints"]) == 17


def test_build_pipeline_overrides(tmp_path):
    config = _config("diffhpe_2d")
    path = save_checkpoint(tmp_path / "m.pt", _random_model(config), config)
    pipe = build_pipeline(path, steps=5, hypotheses=2, aggregation="median")
    assert pipe.sampler.steps == 5 and pipe.hypotheses == 2
    assert pipe.settings.aggregation == "median" and pipe.settings.sampler == "ddim"
    pose, spread = pipe(*_inputs(2))
    assert pose.shape == (2, 9, 17, 3)
    with pytest.raises(ValueError, match="noise must be"):
        pipe(*_inputs(3))


def test_checkpoint_records_the_normalisation_of_its_config(tmp_path):
    data = {**SMALL, "data": {**SMALL["data"], "input_normalisation": "rays"}}
    config = from_dict({**data, "model": {**SMALL["model"], "variant": "diffhpe_2d"}})
    path = save_checkpoint(tmp_path / "rays.pt", _random_model(config), config)
    _, loaded, extra = load_checkpoint(path)
    assert loaded.data.input_normalisation == "rays"
    assert extra["normalisation"] == "u_n = (u - cx) / fx, v_n = (v - cy) / fy"
    assert build_pipeline(path).input_names[2] == "intrinsics"


def test_refusals(tmp_path):
    config = _config("diffhpe_2d")
    model = _random_model(config)
    path = save_checkpoint(tmp_path / "m.pt", model, config)
    with pytest.raises(CheckpointError, match="'diffhpe_2d' checkpoint, expected 'mixste'"):
        load_checkpoint(path, expected_variant="mixste")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    # A pickled module (not plain data) is refused by weights_only loading.
    torch.save(model, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "pickled.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")
    payload = torch.load(path, weights_only=True)
    for change, message in (({"format": "other-v0"}, "format 'other-v0'"),
                            ({"joints": ["a"] * 17}, "skeleton joints"),
                            ({"config": {"model": {"blocks": 2}}}, "invalid config"),
                            ({"config": {**payload["config"], "model": {
                                **payload["config"]["model"],
                                "denoiser": {**payload["config"]["model"]["denoiser"], "channels": 8}}}},
                             "weights do not fit")):
        torch.save({**payload, **change}, tmp_path / "edited.pt")
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / "edited.pt")


def test_save_is_atomic(tmp_path):
    config = _config("mixste")
    path = save_checkpoint(tmp_path / "m.pt", _random_model(config), config)
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError)):   # a lambda cannot be pickled
        save_checkpoint(path, _random_model(config, 1), config, extra={"bad": lambda: 0})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_wrapper_checkpoint_carries_its_frozen_mixste(tmp_path):
    config = _config("diffhpe_wrapper")
    model = _random_model(config)
    path = save_checkpoint(tmp_path / "w.pt", model, config)
    loaded, _, _ = load_checkpoint(path)
    assert torch.equal(loaded.mixste.head_norm.weight, model.mixste.head_norm.weight)
    assert not any(p.requires_grad for p in loaded.mixste.parameters())
    # A config edit that changes the MixSTE architecture no longer fits the stored weights.
    edited = dataclasses.replace(config, model=dataclasses.replace(
        config.model, mixste=dataclasses.replace(config.model.mixste, depth=2)))
    with pytest.raises(RuntimeError):
        build_model(edited).load_state_dict(torch.load(path, weights_only=True)["state_dict"])

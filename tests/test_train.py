"""Training: a real 1-epoch run of each variant on real mocap, exact resume, refusals.

The dataset is a few short chunks of a real BVH take (bvhtools' test3.bvh from the pip cache),
written with dataset.save_dataset; models are tiny so that an epoch takes well under a second.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffhpe_models import mocap
from diffhpe_models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from diffhpe_models.config import from_dict
from diffhpe_models.dataset import save_dataset
from diffhpe_models.lifter import build_model
from diffhpe_models.skeleton import JOINT_NAMES
from diffhpe_models.training import EpochSampler, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import train as train_cli  # noqa: E402

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "packages"
TINY = {
    "data": {"window": 9, "occlusion": "mixed"},
    "model": {"mixste": {"embed_dim": 16, "depth": 1, "heads": 2},
              "denoiser": {"channels": 16, "blocks": 2, "nonlocal_channels": 8, "dropout": 0.1,
                           "time_embedding_dim": 16, "pose_embedding_dim": 8}},
    "diffusion": {"steps": 2, "hypotheses": 2},
    "train": {"epochs": 1, "batch_size": 16, "samples_per_epoch": 48, "val_samples": 24,
              "workers": 0, "lr": 3e-3},
}


def write_real_mocap_dataset(path: Path) -> Path:
    """Chunks of a real BVH take (24 fps) as train / validation / test sequences."""
    archives = mocap.fetch_sources(CACHE)
    src = next(s for s in mocap.BVH_SOURCES if s.file == "test3.bvh")
    pose, fps, member, _ = mocap.load_bvh_source(archives[mocap.BVHTOOLS[0]], src)
    chunks = {"rigify/a": (0, 150, "train"), "rigify/b": (900, 1050, "train"),
              "rigify/val": (400, 480, "validation"), "rigify/test": (2500, 2548, "test")}
    sequences = {k: pose[a:b] for k, (a, b, _) in chunks.items()}
    meta = {k: {"fps": fps, "source": f"bvhtools==1.6.0:{member}", "split": split}
            for k, (_, _, split) in chunks.items()}
    return save_dataset(path, sequences, meta)


def tiny_config(variant: str, dataset: Path, **train) -> dict:
    c = copy.deepcopy(TINY)
    c["name"] = f"tiny_{variant}"
    c["model"]["variant"] = variant
    c["data"]["dataset"] = str(dataset)
    c["train"].update(train)
    return c


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_real_mocap_dataset(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.fixture(scope="module")
def mixste_run(tmp_path_factory, dataset) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mixste"
    train(from_dict(tiny_config("mixste", dataset)), out, device="cpu", progress=False)
    return out


def _write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_one_epoch_mixste_writes_everything(mixste_run):
    assert {p.name for p in mixste_run.iterdir()} >= {"config.yaml", "log.csv", "last.pt", "best.pt"}
    lines = (mixste_run / "log.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_mpjpe_mm,val_p_mpjpe_mm,val_energy_mm,lr,seconds"
    assert len(lines) == 2
    row = dict(zip(lines[0].split(","), lines[1].split(",")))
    assert 0 < float(row["val_p_mpjpe_mm"]) <= float(row["val_mpjpe_mm"]) < 5000
    model, config, extra = load_checkpoint(mixste_run / "best.pt", expected_variant="mixste")
    assert extra["fps"] == 30.0 and extra["metrics"]["epoch"] == 0
    assert not [p for p in mixste_run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("variant", ["diffhpe_2d", "diffhpe_wrapper"])
def test_one_epoch_diffusion_variants(tmp_path, dataset, mixste_run, variant):
    cfg = tiny_config(variant, dataset)
    cfg["model"]["conditioner_checkpoint"] = str(mixste_run / "best.pt")
    cfg["model"]["mixste"] = {"embed_dim": 32, "depth": 2, "heads": 4}   # replaced by the checkpoint's
    result = train(from_dict(cfg), tmp_path / variant, device="cpu", progress=False)
    assert len(result["history"]) == 1 and np.isfinite(result["history"][0]["train_loss"])
    model, config, _ = load_checkpoint(tmp_path / variant / "last.pt", expected_variant=variant)
    if variant == "diffhpe_wrapper":
        frozen, _, _ = load_checkpoint(mixste_run / "best.pt")
        assert config.model.mixste.embed_dim == 16           # the conditioner's architecture
        for k, v in frozen.state_dict().items():             # frozen: unchanged by training
            assert torch.equal(model.mixste.state_dict()[k], v)


def test_energy_objective_selects_on_the_energy_score(tmp_path, dataset, mixste_run):
    """A residual Wrapper trained with the energy objective: the log holds the validation energy
    score, best.pt is the epoch with the lowest one (not the lowest MPJPE), and the frozen
    MixSTE stays as it was."""
    cfg = tiny_config("diffhpe_wrapper", dataset, epochs=2, objective="energy", energy_samples=2)
    cfg["model"].update(conditioner_checkpoint=str(mixste_run / "best.pt"), residual=True)
    cfg["diffusion"].update(pose_scale_m=0.25, aggregation="conditioner")
    history = train(from_dict(cfg), tmp_path / "energy", device="cpu", progress=False)["history"]
    energies = [r["val_energy_mm"] for r in history]
    assert all(e is not None and 0 < e < 5000 for e in energies)
    # 'conditioner' publishes the frozen MixSTE's pose: the same MPJPE every epoch.
    assert history[0]["val_mpjpe_mm"] == pytest.approx(history[1]["val_mpjpe_mm"], abs=1e-6)
    _, _, extra = load_checkpoint(tmp_path / "energy" / "best.pt")
    assert extra["metrics"]["epoch"] == int(np.argmin(energies))
    rows = (tmp_path / "energy" / "log.csv").read_text().splitlines()
    assert all(row.split(",")[4] for row in rows[1:])        # val_energy_mm written


def test_training_reduces_the_loss(tmp_path, dataset):
    cfg = tiny_config("mixste", dataset, epochs=6, samples_per_epoch=96)
    history = train(from_dict(cfg), tmp_path / "m", device="cpu", progress=False)["history"]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_continues_exactly(tmp_path, dataset, workers):
    cfg = from_dict(tiny_config("diffhpe_2d", dataset, epochs=2, workers=workers))
    straight = train(cfg, tmp_path / "straight", device="cpu", progress=False)
    train(cfg, tmp_path / "split", device="cpu", epochs=1, progress=False)
    resumed = train(cfg, tmp_path / "split", resume=tmp_path / "split" / "last.pt", device="cpu",
                    progress=False)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(straight["history"])
    a = read_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "split" / "last.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len((tmp_path / "split" / "log.csv").read_text().splitlines()) == 3


def test_epoch_sampler_shards_and_sizes():
    data = list(range(10))
    shards = [EpochSampler(data, 25, num_replicas=2, rank=r, seed=1) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    a, b = list(shards[0]), list(shards[1])
    assert len(a) == len(b) == 13 and set(a) | set(b) == set(range(10))
    shards[0].set_epoch(4)
    assert list(shards[0]) != a
    assert len(list(EpochSampler(data, 0, 1, 0, 0))) == 10


def test_cli_refusals_write_nothing(tmp_path, dataset, mixste_run, capsys):
    def run(config_path, *args):
        out = tmp_path / "out"
        code = train_cli.main(["--config", str(config_path), "--out", str(out), "--device", "cpu",
                               "--no-progress", *args])
        assert code == 2 and not out.exists()
        return capsys.readouterr().err

    bad = tiny_config("mixste", dataset)
    bad["model"]["denoiser"]["blocks"] = "two"
    assert "model.denoiser.blocks: expected int, got str" in run(_write_yaml(tmp_path / "a.yaml", bad))
    bad = tiny_config("mixste", dataset)
    bad["train"]["epoch"] = 3
    assert "unknown field train.epoch" in run(_write_yaml(tmp_path / "b.yaml", bad))

    # Resuming a MixSTE checkpoint into a DiffHPE-2D config.
    cfg_2d = _write_yaml(tmp_path / "c.yaml", tiny_config("diffhpe_2d", dataset))
    err = run(cfg_2d, "--resume", str(mixste_run / "last.pt"))
    assert "'mixste' checkpoint, the config trains 'diffhpe_2d'" in err
    cfg_mixste = _write_yaml(tmp_path / "c2.yaml", tiny_config("mixste", dataset))
    assert "no training state" in run(cfg_mixste, "--resume", str(mixste_run / "best.pt"))

    # The Wrapper's conditioner must be a MixSTE of the same window.
    wrapper = tiny_config("diffhpe_wrapper", dataset)
    config_2d = from_dict(tiny_config("diffhpe_2d", dataset))
    not_mixste = save_checkpoint(tmp_path / "2d.pt", build_model(config_2d), config_2d)
    wrapper["model"]["conditioner_checkpoint"] = str(not_mixste)
    assert "expected 'mixste'" in run(_write_yaml(tmp_path / "d.yaml", wrapper))
    wrapper["model"]["conditioner_checkpoint"] = str(mixste_run / "best.pt")
    wrapper["data"]["window"] = 27
    assert "data.window=9" in run(_write_yaml(tmp_path / "e.yaml", wrapper))
    wrapper["data"]["window"] = 9
    wrapper["data"]["input_normalisation"] = "rays"   # features of another input normalisation
    assert "data.input_normalisation='screen'" in run(_write_yaml(tmp_path / "e2.yaml", wrapper))

    # A dataset file whose sequences have 15 joints.
    meta = {"format": "diffhpe-mocap-v1", "joints": list(JOINT_NAMES),
            "sequences": {"s/a": {"fps": 30.0, "source": "x", "split": "train"}}}
    np.savez(tmp_path / "j15.npz", metadata=np.array(json.dumps(meta)),
             **{"positions_3d/s/a": np.zeros((40, 15, 3), np.float32)})
    err = run(_write_yaml(tmp_path / "f.yaml", tiny_config("mixste", tmp_path / "j15.npz")))
    assert "j15.npz" in err and "(40, 15, 3)" in err and "17" in err

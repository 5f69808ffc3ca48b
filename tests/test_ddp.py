"""Distributed training: 2 processes on CPU (gloo) under torchrun, one tiny epoch."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from diffhpe_models.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import tiny_config, write_real_mocap_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_processes_gloo_one_epoch(tmp_path):
    dataset = write_real_mocap_dataset(tmp_path / "tiny.npz")
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(tiny_config("diffhpe_2d", dataset, samples_per_epoch=64)))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
         "--nproc_per_node=2", str(ROOT / "training" / "train.py"), "--config", str(config),
         "--out", str(out), "--device", "cpu", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Rank 0 alone reports and writes: one summary line, one log row per epoch.
    assert proc.stdout.count("best epoch 1") == 1, proc.stdout
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["val_mpjpe_mm"]) > 0
    model, cfg, extra = load_checkpoint(out / "last.pt", expected_variant="diffhpe_2d")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # 64 windows over 2 ranks at batch 16: 2 optimiser steps per rank.
    state = extra["training"]["optimizer"]["state"]
    assert all(int(s["step"]) == 2 for s in state.values())

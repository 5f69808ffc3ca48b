"""training/release.py: a shipped checkpoint with validated run-time sampler defaults."""
import copy
import subprocess
import sys
from pathlib import Path

from conftest import TINY_CONFIG, make_untrained_checkpoint

from diffhpe_models.checkpoint import load_checkpoint, read_checkpoint
from diffhpe_models.lifter import build_pipeline

REPO = Path(__file__).resolve().parents[1]


def _release(*args):
    return subprocess.run([sys.executable, str(REPO / "training" / "release.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_release_sets_the_run_time_defaults(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["model"]["residual"] = True
    config["data"]["dataset"] = str(REPO / "data" / "elsewhere.npz")       # a run's absolute path
    source = make_untrained_checkpoint(tmp_path / "best.pt", config)
    out = tmp_path / "shipped.pt"
    done = _release(source, out, "--aggregation", "conditioner", "--hypotheses", "4")
    assert done.returncode == 0, done.stderr
    model, shipped, extra = load_checkpoint(out)
    assert (shipped.diffusion.aggregation, shipped.diffusion.hypotheses) == ("conditioner", 4)
    assert shipped.diffusion.steps == 2                          # not given: the checkpoint's
    assert shipped.data.dataset == "data/elsewhere.npz"          # relative to the repository
    assert extra["released_from"]["checkpoint"] == str(source)
    pipeline = build_pipeline(out)
    assert pipeline.settings.aggregation == "conditioner" and pipeline.hypotheses == 4
    original = read_checkpoint(source)["state_dict"]
    assert all((read_checkpoint(out)["state_dict"][k] == v).all() for k, v in original.items())


def test_release_refuses_settings_the_model_cannot_run(tmp_path):
    source = make_untrained_checkpoint(tmp_path / "plain.pt")              # not residual
    out = tmp_path / "shipped.pt"
    done = _release(source, out, "--aggregation", "conditioner")
    assert done.returncode == 2 and "'conditioner' needs a residual Wrapper" in done.stderr
    done = _release(source, out, "--steps", "500")
    assert done.returncode == 2 and "steps must be in 1..50" in done.stderr
    assert not out.exists()


def test_release_and_calibrate_refuse_a_missing_checkpoint(tmp_path):
    out = tmp_path / "shipped.pt"
    done = _release(tmp_path / "nope.pt", out)
    assert done.returncode == 2 and "no such checkpoint file" in done.stderr
    done = subprocess.run([sys.executable, str(REPO / "training" / "calibrate_spread.py"),
                           str(tmp_path / "nope.pt"), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "no such checkpoint file" in done.stderr
    assert not out.exists()


def test_release_records_another_dataset_path(tmp_path):
    """A run trained on another machine's copy of the splits ships naming this machine's file;
    a --dataset that does not exist is refused before anything is written."""
    config = copy.deepcopy(TINY_CONFIG)
    config["data"]["dataset"] = "/tmp/gpu_machine/ds.npz"
    source = make_untrained_checkpoint(tmp_path / "best.pt", config)
    out = tmp_path / "shipped.pt"
    done = _release(source, out, "--dataset", tmp_path / "missing.npz")
    assert done.returncode == 2 and "missing.npz: no such file" in done.stderr and not out.exists()
    here = tmp_path / "ds.npz"
    here.write_bytes(b"")
    done = _release(source, out, "--dataset", here)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out)[1].data.dataset == str(here)

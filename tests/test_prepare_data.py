"""training/prepare_data.py end to end on the real packages (cache shared with the other tests)."""
from pathlib import Path

from conftest import load_training_script

from diffhpe_models import mocap
from diffhpe_models.dataset import load_dataset

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "packages"


def _script():
    return load_training_script("prepare_data")


def test_writes_the_dataset_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "data" / "mocap.npz"
    assert _script().main(["--cache", str(CACHE), "--out", str(out), "--registry-only"]) == 0
    table = capsys.readouterr().out
    assert "holosoma-retargeting==0.1.0:climb/mocap_climb_seq_*  train" in table
    assert "30 (assumed)" in table
    assert table.rstrip().splitlines()[-1].split()[:4] == ["total", "all", "11", "27156"]
    first = out.read_bytes()
    ds = load_dataset(out)
    assert ds.num_frames() == 27156
    # Idempotent: a second run reuses the cache and writes the same arrays.
    assert _script().main(["--cache", str(CACHE), "--out", str(out), "--registry-only"]) == 0
    again = load_dataset(out)
    assert all((again.sequences[k] == ds.sequences[k]).all() for k in ds.sequences)
    assert len(out.read_bytes()) == len(first)


def test_missing_package_gives_a_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(mocap.PACKAGES, "holosoma-retargeting", ("0.0.0", False))
    assert _script().main(["--cache", str(tmp_path), "--out", str(tmp_path / "x.npz"), "--registry-only"]) == 1
    err = capsys.readouterr().err
    assert "cannot get a source package" in err and "holosoma-retargeting==0.0.0" in err
    assert not (tmp_path / "x.npz").exists()


def test_bandai_namco_folder_problems_are_clear_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "full.npz"
    # A folder without the archives: named, nothing written.
    assert _script().main(["--cache", str(CACHE), "--out", str(out),
                           "--bandai-namco", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "bandai-namco-motion-1.tar.xz" in err and "missing" in err and not out.exists()
    # An archive that is not the pinned one.
    (tmp_path / "bn").mkdir()
    for name in ("bandai-namco-motion-1.tar.xz", "bandai-namco-motion-2.tar.xz"):
        (tmp_path / "bn" / name).write_bytes(b"not the archive")
    assert _script().main(["--cache", str(CACHE), "--out", str(out),
                           "--bandai-namco", str(tmp_path / "bn")]) == 1
    assert "does not match the pinned" in capsys.readouterr().err and not out.exists()


def test_registry_only_and_a_bandai_namco_folder_exclude_each_other(tmp_path):
    import pytest

    with pytest.raises(SystemExit) as e:
        _script().main(["--registry-only", "--bandai-namco", str(tmp_path), "--out", str(tmp_path / "x.npz")])
    assert e.value.code == 2

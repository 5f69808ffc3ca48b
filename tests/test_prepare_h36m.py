"""training/prepare_h36m.py on small arrays in Human3.6M's (pickle-free) layout."""

import numpy as np
from conftest import load_training_script

from diffhpe_models.dataset import load_dataset
from diffhpe_models.h36m import save_h36m_npz


def _script():
    return load_training_script("prepare_h36m")


def test_h36m_becomes_a_dataset_with_a_validation_subject(tmp_path):
    rng = np.random.default_rng(0)
    subjects = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
    src = save_h36m_npz(tmp_path / "h36m.npz", {s: {"Walking": rng.normal(size=(6, 32, 3))} for s in subjects})
    out = tmp_path / "h36m17.npz"
    assert _script().main(["--h36m", str(src), "--out", str(out)]) == 0
    ds = load_dataset(out)
    assert sorted(ds.subset("validation").sequences) == ["S8/Walking"]
    assert sorted(ds.subset("test").sequences) == ["S11/Walking", "S9/Walking"]
    assert len(ds.subset("train")) == 4 and all(f == 50.0 for f in ds.fps.values())
    assert next(iter(ds.sequences.values())).shape == (6, 17, 3)


def test_unknown_subject_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    src = save_h36m_npz(tmp_path / "h36m.npz", {"S2": {"Walking": np.zeros((3, 32, 3))}})
    out = tmp_path / "h36m17.npz"
    assert _script().main(["--h36m", str(src), "--out", str(out)]) == 1
    assert "subject 'S2' has no split" in capsys.readouterr().err and not out.exists()

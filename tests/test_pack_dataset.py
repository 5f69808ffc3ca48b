"""training/pack_dataset.py: carry chosen splits as int16 millimetres and rebuild the dataset file."""
import numpy as np
from conftest import load_training_script

from diffhpe_models.dataset import load_dataset, save_dataset


def _walk(t, seed, metres=3.0):
    rng = np.random.default_rng(seed)
    drift = np.linspace(0.0, metres, t)[:, None, None] * np.array([1.0, 0.5, 0.0])
    return (rng.normal(scale=0.3, size=(t, 17, 3)) + drift + [2.0, -1.0, 0.9]).astype(np.float32)


def test_pack_then_unpack_keeps_the_splits_within_half_a_millimetre(tmp_path):
    script = load_training_script("pack_dataset")
    seqs = {"a/walk": _walk(40, 0), "a/run": _walk(25, 1, 20.0), "b/test": _walk(10, 2)}
    meta = {"a/walk": {"fps": 30.0, "source": "p==1:x", "split": "train", "style": "tired"},
            "a/run": {"fps": 60.0, "source": "p==1:y", "split": "validation"},
            "b/test": {"fps": 30.0, "source": "p==1:z", "split": "test"}}
    source = save_dataset(tmp_path / "d.npz", seqs, meta)
    assert script.main(["pack", str(source), str(tmp_path / "p.npz")]) == 0
    assert script.main(["unpack", str(tmp_path / "p.npz"), str(tmp_path / "back.npz")]) == 0
    back = load_dataset(tmp_path / "back.npz")
    assert sorted(back.sequences) == ["a/run", "a/walk"]                  # the test split stays
    for key in back.sequences:
        assert back.sequences[key].dtype == np.float32
        assert np.abs(back.sequences[key] - seqs[key]).max() <= 0.5e-3 + 1e-6
        assert (back.fps[key], back.split[key], back.source[key]) == \
            (meta[key]["fps"], meta[key]["split"], meta[key]["source"])
    assert back.info["a/walk"] == {"style": "tired"}


def test_pack_refuses_what_int16_millimetres_cannot_hold_and_unpack_a_foreign_file(tmp_path, capsys):
    script = load_training_script("pack_dataset")
    source = save_dataset(tmp_path / "d.npz", {"a/far": _walk(30, 0, 80.0)},
                          {"a/far": {"fps": 30.0, "source": "p==1:x", "split": "train"}})
    assert script.main(["pack", str(source), str(tmp_path / "p.npz")]) == 2
    assert "does not fit int16 millimetres" in capsys.readouterr().err
    assert not (tmp_path / "p.npz").exists()
    assert script.main(["unpack", str(source), str(tmp_path / "back.npz")]) == 2
    assert "expected 'diffhpe-mocap-packed-v1'" in capsys.readouterr().err
    assert not (tmp_path / "back.npz").exists()


def test_unpack_refuses_a_packed_file_missing_a_sequence(tmp_path, capsys):
    import json

    script = load_training_script("pack_dataset")
    doc = {"format": "diffhpe-mocap-packed-v1", "sequences": {"0": {"key": "a/walk", "fps": 30.0,
                                                                    "split": "train", "source": "x"}}}
    np.savez(tmp_path / "p.npz", metadata=np.array(json.dumps(doc)))
    assert script.main(["unpack", str(tmp_path / "p.npz"), str(tmp_path / "back.npz")]) == 2
    assert "'a/walk' has no readable arrays" in capsys.readouterr().err
    assert not (tmp_path / "back.npz").exists()

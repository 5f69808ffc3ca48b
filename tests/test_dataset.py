"""The dataset file: round trip, the real converted sources, and clear errors on bad files."""
import json
from pathlib import Path

import numpy as np
import pytest

from diffhpe_models import mocap
from diffhpe_models.dataset import FORMAT, DatasetError, load_dataset, read_metadata, save_dataset
from diffhpe_models.skeleton import JOINT_NAMES

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "packages"


def _seq(t=5, seed=0):
    return np.random.default_rng(seed).normal(size=(t, 17, 3)).astype(np.float32)


def _meta(split="train", fps=30.0):
    return {"fps": fps, "source": "pkg==1.0:a/b.npy", "split": split}


def test_round_trip_and_subsets(tmp_path):
    seqs = {"s1/walk": _seq(5), "s1/run": _seq(7, 1), "s2/jump": _seq(3, 2)}
    meta = {"s1/walk": _meta(), "s1/run": {**_meta("validation", 24.0), "note": "x"},
            "s2/jump": _meta("test")}
    path = save_dataset(tmp_path / "d.npz", seqs, meta, extra={"packages": {"pkg": "1.0"}})
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["metadata", "positions_3d/s1/run", "positions_3d/s1/walk",
                                   "positions_3d/s2/jump"]
        doc = json.loads(str(z["metadata"]))
    assert doc["format"] == FORMAT and doc["joints"] == list(JOINT_NAMES)
    assert doc["packages"] == {"pkg": "1.0"}
    ds = load_dataset(path)
    for k in seqs:
        np.testing.assert_array_equal(ds.sequences[k], seqs[k])
        assert ds.sequences[k].dtype == np.float32
    assert ds.fps["s1/run"] == 24.0 and ds.info["s1/run"] == {"note": "x"}
    val = ds.subset("validation")
    assert list(val.sequences) == ["s1/run"] and val.fps == {"s1/run": 24.0}
    assert ds.subset("train").num_frames() == 5 and len(ds.subset("test")) == 1
    with pytest.raises(ValueError, match="unknown split 'val'"):
        ds.subset("val")
    assert read_metadata(path)["sequences"]["s2/jump"]["split"] == "test"


@pytest.mark.parametrize("seqs, meta, message", [
    ({"s1/a": np.zeros((4, 16, 3))}, {"s1/a": _meta()}, r"shape \(4, 16, 3\); expected \(T, 17, 3\)"),
    ({"s1/a": np.full((4, 17, 3), np.nan)}, {"s1/a": _meta()}, "non-finite value at frame 0, joint 0 \\(pelvis\\)"),
    ({"a": _seq()}, {"a": _meta()}, "must be '<subject>/<sequence>'"),
    ({"s/a": _seq()}, {"s/a": {"fps": 30.0, "split": "train"}}, "lacks 'source'"),
    ({"s/a": _seq()}, {"s/a": _meta(split="dev")}, "split is 'dev'"),
    ({"s/a": _seq()}, {"s/a": _meta(fps=0)}, "fps must be a number > 0"),
    ({"s/a": _seq()}, {"s/b": _meta()}, "keys differ"),
    ({"s/a": np.zeros((4, 17, 3), dtype=np.int32)}, {"s/a": _meta()}, "expected floating point"),
])
def test_save_rejects_bad_content(tmp_path, seqs, meta, message):
    with pytest.raises(DatasetError, match=message):
        save_dataset(tmp_path / "bad.npz", seqs, meta)
    assert not list(tmp_path.iterdir())  # nothing written, not even a temp file


def _write_raw(path, **arrays):
    np.savez(path, **arrays)
    return path


def _doc(**over):
    doc = {"format": FORMAT, "joints": list(JOINT_NAMES), "sequences": {"s/a": _meta()}}
    doc.update(over)
    return np.array(json.dumps(doc))


@pytest.mark.parametrize("arrays, message", [
    ({"positions_3d/s/a": _seq()}, "missing 'metadata'"),
    ({"metadata": _doc(format="videopose3d"), "positions_3d/s/a": _seq()}, "unknown format 'videopose3d'"),
    ({"metadata": _doc(joints=list(JOINT_NAMES)[::-1]), "positions_3d/s/a": _seq()}, "not the H36M-17 order"),
    ({"metadata": np.array("{not json"), "positions_3d/s/a": _seq()}, "not valid JSON"),
    ({"metadata": _doc()}, r"no array for \['s/a'\]"),
    ({"metadata": _doc(), "positions_3d/s/a": _seq(), "positions_3d/s/b": _seq()}, r"no metadata for \['s/b'\]"),
    ({"metadata": _doc(), "positions_3d/s/a": np.zeros((3, 32, 3))}, r"shape \(3, 32, 3\)"),
    ({"metadata": _doc(), "positions_3d/s/a": np.array([{"x": 1}], dtype=object)}, "pickled object"),
    ({"metadata": np.array([1, 2]), "positions_3d/s/a": _seq()}, "0-d string array"),
])
def test_load_rejects_bad_files(tmp_path, arrays, message):
    path = _write_raw(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_load_rejects_missing_and_non_npz(tmp_path):
    with pytest.raises(DatasetError, match="dataset file not found"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match="x.npz: not a readable .npz file"):
        load_dataset(tmp_path / "x.npz")


def test_real_sources_round_trip(tmp_path):
    seqs = mocap.load_sources(mocap.fetch_sources(CACHE))
    arrays, meta = mocap.dataset_inputs(seqs)
    ds = load_dataset(save_dataset(tmp_path / "mocap.npz", arrays, meta))
    assert ds.num_frames() == 12939 + 7184 + 3945 + 3088
    frames = {s: ds.subset(s).num_frames() for s in ("train", "validation", "test")}
    assert sum(frames.values()) == ds.num_frames() and min(frames.values()) > 3000
    assert ds.source["holosoma/climb_seq_4"].startswith("holosoma-retargeting==0.1.0:holosoma_retargeting/")
    assert ds.info["holosoma/climb_seq_0"]["fps_assumed"] is True
    assert ds.fps["rigify/test3_f0-1852"] == 24.0

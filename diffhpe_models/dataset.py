"""The dataset file (`data/mocap_h36m17.npz`): VideoPose3D-like layout, no pickles.

- `positions_3d/<subject>/<sequence>`: float32 (T, 17, 3), world metres, Z up, H36M-17 order.
- `metadata`: 0-d string array holding JSON
  `{"format": "diffhpe-mocap-v1", "joints": [17 names], "sequences": {"<subject>/<sequence>":
  {"fps": 30.0, "source": "<package>==<version>:<path in archive>", "split": "train", ...}}}`.
Sequences are split whole (train / validation / test), never by frame.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_save_npz
from .skeleton import JOINT_NAMES, NUM_JOINTS

FORMAT = "diffhpe-mocap-v1"
PREFIX = "positions_3d/"
SPLITS = ("train", "validation", "test")


class DatasetError(ValueError):
    """A dataset file or its content is malformed; the message names the file and the field."""


@dataclass
class Dataset:
    """Sequences of H36M-17 world positions with their frame rate, split and provenance.

    sequences: key '<subject>/<sequence>' -> float32 (T, 17, 3) metres, Z up.
    fps, split, source: per key. info: per key, the remaining metadata fields (e.g. notes).
    """
    sequences: dict[str, np.ndarray]
    fps: dict[str, float]
    split: dict[str, str]
    source: dict[str, str]
    info: dict[str, dict] = field(default_factory=dict)
    path: str = ""

    def subset(self, split: str) -> "Dataset":
        """The sequences of one split ('train', 'validation' or 'test'), as a Dataset."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        keys = [k for k in self.sequences if self.split[k] == split]
        return Dataset(sequences={k: self.sequences[k] for k in keys},
                       fps={k: self.fps[k] for k in keys}, split={k: split for k in keys},
                       source={k: self.source[k] for k in keys},
                       info={k: self.info.get(k, {}) for k in keys}, path=self.path)

    def num_frames(self) -> int:
        return int(sum(len(v) for v in self.sequences.values()))

    def __len__(self) -> int:
        return len(self.sequences)

    def summary(self) -> list[dict]:
        """One row per sequence: key, frames, fps, split, source (for printing a table)."""
        return [{"key": k, "frames": len(v), "fps": self.fps[k], "split": self.split[k],
                 "source": self.source[k]} for k, v in self.sequences.items()]


def _check_key(key: str, where: str) -> None:
    parts = key.split("/")
    if len(parts) != 2 or not all(parts) or any(p.strip() != p for p in parts):
        raise DatasetError(f"{where}: sequence key {key!r} must be '<subject>/<sequence>'")


def check_positions(array, key: str, where: str) -> np.ndarray:
    """Validate one sequence: (T >= 1, 17, 3), real, finite. Returns it as float32."""
    a = np.asarray(array)
    if a.ndim != 3 or a.shape[1:] != (NUM_JOINTS, 3) or a.shape[0] < 1:
        raise DatasetError(f"{where}: {PREFIX}{key} has shape {a.shape}; expected (T, {NUM_JOINTS}, 3) "
                           f"H36M-17 joints with T >= 1")
    if not np.issubdtype(a.dtype, np.floating):
        raise DatasetError(f"{where}: {PREFIX}{key} has dtype {a.dtype}; expected floating point")
    if not np.isfinite(a).all():
        t, j, _ = np.argwhere(~np.isfinite(a))[0]
        raise DatasetError(f"{where}: {PREFIX}{key} has a non-finite value at frame {t}, "
                           f"joint {j} ({JOINT_NAMES[j]})")
    return a.astype(np.float32, copy=False)


def _check_meta(key: str, m, where: str) -> dict:
    if not isinstance(m, dict):
        raise DatasetError(f"{where}: metadata.sequences[{key!r}] must be an object, got {type(m).__name__}")
    for name in ("fps", "source", "split"):
        if name not in m:
            raise DatasetError(f"{where}: metadata.sequences[{key!r}] lacks {name!r}")
    fps = m["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (np.isfinite(fps) and fps > 0):
        raise DatasetError(f"{where}: metadata.sequences[{key!r}].fps must be a number > 0, got {fps!r}")
    if m["split"] not in SPLITS:
        raise DatasetError(f"{where}: metadata.sequences[{key!r}].split is {m['split']!r}; "
                           f"expected one of {SPLITS}")
    if not isinstance(m["source"], str) or not m["source"]:
        raise DatasetError(f"{where}: metadata.sequences[{key!r}].source must be a non-empty string")
    return m


def save_dataset(path: str | os.PathLike, sequences: dict[str, np.ndarray], meta: dict[str, dict],
                 extra: dict | None = None) -> Path:
    """Validate and write the dataset file atomically.

    sequences: '<subject>/<sequence>' -> (T, 17, 3) metres, Z up.
    meta: the same keys -> {"fps": float, "source": str, "split": 'train'|'validation'|'test', ...}.
    extra: optional further top-level metadata fields (JSON-serialisable).
    """
    where = str(path)
    if not sequences:
        raise DatasetError(f"{where}: no sequences to save")
    if set(sequences) != set(meta):
        raise DatasetError(f"{where}: sequences and metadata keys differ: only in sequences "
                           f"{sorted(set(sequences) - set(meta))}, "
                           f"only in metadata {sorted(set(meta) - set(sequences))}")
    arrays = {}
    for key, seq in sequences.items():
        _check_key(key, where)
        arrays[PREFIX + key] = check_positions(seq, key, where)
        _check_meta(key, meta[key], where)
    doc = {"format": FORMAT, "joints": list(JOINT_NAMES),
           "sequences": {k: dict(meta[k]) for k in sequences}}
    for k, v in (extra or {}).items():
        if k in doc:
            raise DatasetError(f"{where}: extra metadata may not override {k!r}")
        doc[k] = v
    text = json.dumps(doc, allow_nan=False)
    return atomic_save_npz(path, metadata=np.array(text), **arrays)


def read_metadata(path: str | os.PathLike) -> dict:
    """The parsed, validated top-level metadata of a dataset file (without loading the arrays)."""
    with _open(path) as z:
        return _metadata(z, str(path))


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found (run `make data` or "
                           "training/prepare_data.py)")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DatasetError(f"{path}: not a readable .npz file ({e})") from e


def _metadata(z, where: str) -> dict:
    if "metadata" not in z.files:
        raise DatasetError(f"{where}: missing 'metadata' entry (not a {FORMAT} file; for Human3.6M "
                           "files use diffhpe_models.h36m)")
    try:
        raw = z["metadata"]
    except ValueError as e:
        raise DatasetError(f"{where}: 'metadata' is a pickled object; refusing to load it") from e
    if raw.shape != () or raw.dtype.kind != "U":
        raise DatasetError(f"{where}: 'metadata' must be a 0-d string array, got {raw.dtype} {raw.shape}")
    try:
        doc = json.loads(str(raw))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{where}: 'metadata' is not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise DatasetError(f"{where}: 'metadata' must be a JSON object")
    if doc.get("format") != FORMAT:
        raise DatasetError(f"{where}: unknown format {doc.get('format')!r}; expected {FORMAT!r}")
    if doc.get("joints") != list(JOINT_NAMES):
        raise DatasetError(f"{where}: metadata.joints {doc.get('joints')} is not the H36M-17 order "
                           f"{list(JOINT_NAMES)}")
    if not isinstance(doc.get("sequences"), dict) or not doc["sequences"]:
        raise DatasetError(f"{where}: metadata.sequences must be a non-empty object")
    return doc


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Read and validate a dataset file (np.load with allow_pickle=False)."""
    where = str(path)
    with _open(path) as z:
        doc = _metadata(z, where)
        keys_in_file = [f[len(PREFIX):] for f in z.files if f.startswith(PREFIX)]
        unknown = [f for f in z.files if f != "metadata" and not f.startswith(PREFIX)]
        if unknown:
            raise DatasetError(f"{where}: unexpected entries {unknown}")
        missing = sorted(set(doc["sequences"]) - set(keys_in_file))
        extra = sorted(set(keys_in_file) - set(doc["sequences"]))
        if missing or extra:
            raise DatasetError(f"{where}: metadata and arrays disagree: no array for {missing}, "
                               f"no metadata for {extra}")
        ds = Dataset(sequences={}, fps={}, split={}, source={}, info={}, path=where)
        for key in doc["sequences"]:
            _check_key(key, where)
            m = _check_meta(key, doc["sequences"][key], where)
            try:
                arr = z[PREFIX + key]
            except ValueError as e:
                raise DatasetError(f"{where}: {PREFIX}{key} is a pickled object; refusing to load it") from e
            ds.sequences[key] = check_positions(arr, key, where)
            ds.fps[key] = float(m["fps"])
            ds.split[key] = m["split"]
            ds.source[key] = m["source"]
            ds.info[key] = {k: v for k, v in m.items() if k not in ("fps", "split", "source")}
    return ds

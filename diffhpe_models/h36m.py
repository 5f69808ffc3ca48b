"""Human3.6M in VideoPose3D's format -> the in-memory `Dataset` of `dataset.py`.

Human3.6M is licensed and not on our machines; this loader follows the layout the field uses so
that a user who has the files can train and evaluate on them:
- `data_3d_h36m.npz['positions_3d'][subject][action]`: (N, 32, 3) world metres, Z up, 50 fps;
- `data_2d_h36m_<detector>.npz['positions_2d'][subject][action]`: list of 4 cameras x (N, 17, 2)
  pixels (and `metadata`).
In those files the dicts are PICKLED; np.load needs allow_pickle=True, which can execute code from
an untrusted file. That path is only taken with an explicit `trust_pickle=True` (with a warning).
The pickle-free layout, which `save_h36m_npz` writes, needs no trust:
- `positions_3d/<subject>/<action>`: (N, 32 or 17, 3);
- `positions_2d/<subject>/<action>/<camera 0-3>`: (N, 17, 2).
"""
from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_save_npz
from .dataset import Dataset, DatasetError, check_positions

H36M_FPS = 50.0
SPLITS = {"S1": "train", "S5": "train", "S6": "train", "S7": "train", "S8": "train",
          "S9": "test", "S11": "test"}
# VideoPose3D's 32 -> 17 reduction (h36m_dataset.py: remove_joints), and what remains.
REMOVED_JOINTS = (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)
KEPT_JOINTS = tuple(j for j in range(32) if j not in REMOVED_JOINTS)
# (width, height) of the 4 cameras in VideoPose3D's camera order, for 2D normalisation.
CAMERA_RESOLUTIONS = ((1000, 1002), (1000, 1000), (1000, 1000), (1000, 1002))
NUM_CAMERAS = 4


def reduce_32_to_17(positions: np.ndarray) -> np.ndarray:
    """(..., 32, D) -> (..., 17, D) in H36M-17 order. Removing the joints re-parents the
    shoulders (11, 14) onto the thorax (8), as in `skeleton.PARENTS`."""
    positions = np.asarray(positions)
    if positions.shape[-2] != 32:
        raise ValueError(f"expected 32 Human3.6M joints, got shape {positions.shape}")
    return positions[..., KEPT_JOINTS, :]


def _load(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: Human3.6M file not found")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DatasetError(f"{path}: not a readable .npz file ({e})") from e


def _pickled_dict(path, name: str, trust_pickle: bool) -> dict:
    """The VideoPose3D dict stored as a pickled 0-d object array under `name`."""
    if not trust_pickle:
        raise DatasetError(
            f"{path}: '{name}' is a pickled dict (VideoPose3D layout). Loading it needs "
            "allow_pickle=True, which can run code from the file: pass trust_pickle=True only for "
            "a file you trust, then save_h36m_npz() it to the pickle-free layout")
    warnings.warn(f"{path}: loading '{name}' with allow_pickle=True; a pickled file can run "
                  "arbitrary code: only do this for files you trust", stacklevel=3)
    with np.load(path, allow_pickle=True) as z:
        obj = z[name]
    if obj.shape != () or not isinstance(obj.item(), dict):
        raise DatasetError(f"{path}: '{name}' should hold a dict subject -> action -> data")
    return obj.item()


def _flat_3d(path, trust_pickle: bool) -> dict[tuple[str, str], np.ndarray]:
    with _load(path) as z:
        pickled = "positions_3d" in z.files
    if pickled:
        nested = _pickled_dict(path, "positions_3d", trust_pickle)
        return {(s, a): np.asarray(arr) for s, acts in nested.items() for a, arr in acts.items()}
    with _load(path) as z:
        out = {}
        for f in z.files:
            parts = f.split("/")
            if parts[0] != "positions_3d":
                continue
            if len(parts) != 3:
                raise DatasetError(f"{path}: entry {f!r} is not positions_3d/<subject>/<action>")
            try:
                out[(parts[1], parts[2])] = z[f]
            except ValueError as e:
                raise DatasetError(f"{path}: {f} is a pickled object; refusing to load it") from e
        if not out:
            raise DatasetError(f"{path}: no 'positions_3d' dict and no positions_3d/<subject>/<action> "
                               f"entries (found {z.files[:5]})")
        return out


def load_h36m_3d(path: str | os.PathLike, trust_pickle: bool = False,
                 splits: dict[str, str] | None = None) -> Dataset:
    """Human3.6M 3D poses -> Dataset ('<subject>/<action>' -> float32 (N, 17, 3) world metres, Z up).

    Accepts VideoPose3D's pickled `data_3d_h36m.npz` (only with trust_pickle=True) or the
    pickle-free layout. splits: subject -> split (default S1, S5-S8 train; S9, S11 test); a
    subject not in it is an error.
    """
    splits = SPLITS if splits is None else splits
    ds = Dataset(sequences={}, fps={}, split={}, source={}, info={}, path=str(path))
    for (subject, action), arr in sorted(_flat_3d(path, trust_pickle).items()):
        key = f"{subject}/{action}"
        if subject not in splits:
            raise DatasetError(f"{path}: subject {subject!r} has no split; known {sorted(splits)}")
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[1] == 32:
            arr = reduce_32_to_17(arr)
        ds.sequences[key] = check_positions(arr, key, str(path))
        ds.fps[key] = H36M_FPS
        ds.split[key] = splits[subject]
        ds.source[key] = f"human3.6m:{Path(path).name}:{key}"
        ds.info[key] = {}
    return ds


def load_h36m_2d(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, list[np.ndarray]]:
    """Human3.6M 2D keypoints: '<subject>/<action>' -> 4 cameras x float32 (N, 17, 2) pixels."""
    out: dict[str, list] = {}
    with _load(path) as z:
        pickled = "positions_2d" in z.files
    if pickled:
        nested = _pickled_dict(path, "positions_2d", trust_pickle)
        flat = {f"{s}/{a}": list(cams) for s, acts in nested.items() for a, cams in acts.items()}
    else:
        with _load(path) as z:
            grouped: dict[str, dict[int, np.ndarray]] = {}
            for f in z.files:
                parts = f.split("/")
                if parts[0] != "positions_2d":
                    continue
                if len(parts) != 4 or not parts[3].isdigit():
                    raise DatasetError(f"{path}: entry {f!r} is not positions_2d/<subject>/<action>/<camera>")
                try:
                    grouped.setdefault(f"{parts[1]}/{parts[2]}", {})[int(parts[3])] = z[f]
                except ValueError as e:
                    raise DatasetError(f"{path}: {f} is a pickled object; refusing to load it") from e
            if not grouped:
                raise DatasetError(f"{path}: no 'positions_2d' dict and no positions_2d/... entries")
            flat = {}
            for key, cams in grouped.items():
                if sorted(cams) != list(range(len(cams))):
                    raise DatasetError(f"{path}: {key}: camera indices {sorted(cams)} are not 0..n-1")
                flat[key] = [cams[i] for i in range(len(cams))]
    for key, cams in sorted(flat.items()):
        if len(cams) != NUM_CAMERAS:
            raise DatasetError(f"{path}: {key}: {len(cams)} cameras, expected {NUM_CAMERAS}")
        checked = []
        for c, kp in enumerate(cams):
            kp = np.asarray(kp)
            if kp.ndim != 3 or kp.shape[1:] != (17, 2):
                raise DatasetError(f"{path}: {key} camera {c}: shape {kp.shape}, expected (N, 17, 2)")
            if not np.isfinite(kp).all():
                raise DatasetError(f"{path}: {key} camera {c}: non-finite keypoints")
            checked.append(kp.astype(np.float32))
        out[key] = checked
    return out


def align_2d_to_3d(keypoints: dict[str, list[np.ndarray]], dataset: Dataset) -> dict[str, list[np.ndarray]]:
    """Trim each camera's 2D to the 3D length (VideoPose3D does the same: some 2D tracks run a
    few frames longer). 2D shorter than 3D, or a 3D sequence without 2D, is an error."""
    out = {}
    for key, seq in dataset.sequences.items():
        if key not in keypoints:
            raise DatasetError(f"no 2D keypoints for {key}")
        cams = []
        for c, kp in enumerate(keypoints[key]):
            if len(kp) < len(seq):
                raise DatasetError(f"{key} camera {c}: {len(kp)} 2D frames < {len(seq)} 3D frames")
            cams.append(kp[: len(seq)])
        out[key] = cams
    return out


def save_h36m_npz(path: str | os.PathLike, positions_3d: dict[str, dict[str, np.ndarray]] | None = None,
                  positions_2d: dict[str, dict[str, list[np.ndarray]]] | None = None) -> Path:
    """Write VideoPose3D-style nested dicts in the pickle-free layout, atomically."""
    def name(*parts: str) -> str:
        for part in parts:
            if not part or "/" in part:
                raise DatasetError(f"{path}: subject/action name {part!r} is empty or contains '/'")
        return "/".join(parts)

    arrays = {}
    for subject, actions in (positions_3d or {}).items():
        for action, arr in actions.items():
            arrays["positions_3d/" + name(subject, action)] = np.asarray(arr, dtype=np.float32)
    for subject, actions in (positions_2d or {}).items():
        for action, cams in actions.items():
            for c, kp in enumerate(cams):
                arrays[f"positions_2d/{name(subject, action)}/{c}"] = np.asarray(kp, dtype=np.float32)
    if not arrays:
        raise DatasetError(f"{path}: nothing to save")
    return atomic_save_npz(path, **arrays)

"""The Bandai Namco Research Motion Dataset 1 and 2 (real optical mocap, BVH, CC BY-NC 4.0).

Read straight from the two tar.xz archives (sha256-pinned), mapped onto H36M-17 with the same
rules as the other BVH sources (mocap.map_to_h36m), split by clip content and style, never by
frame. 417k frames at 30 fps of professional actors: locomotion, gestures, fighting, dances, in
15 + 7 styles. Users get the files from the public repository
`BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset` (`dataset/*/data`).
"""
from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .bvh import parse_bvh
from .fetch import sha256_file
from .mocap import DERIVED, MocapSequence, bvh_to_h36m, check_positions, frozen_frames, trim_frozen_ends

LICENCE = "CC BY-NC 4.0 (c) 2022 Bandai Namco Research Inc."
DEFAULT_DIR = Path("../shared/datasets/bandai-namco")
ARCHIVES = {  # file name -> sha256 (the SHA256SUMS shipped with the archives)
    "bandai-namco-motion-1.tar.xz": "3b42214a1644b85d8b144e3ac3432961bd771fbde63bf91da4ad1def82290bb3",
    "bandai-namco-motion-2.tar.xz": "1960838e039e2b3637b64275118f35301f94d175488fd820ef0b1afcf6ff90b0",
}
FPS = 30.0

# Joint centres of the 22-joint rig. Shoulder_* is the clavicle; UpperArm_* the shoulder joint.
# spine/thorax are redefined by map_to_h36m from the shoulders and pelvis (as detectors see them);
# neck_nose and head (no head-top joint: Head's end site has a zero offset) are derived from the
# Head joint's rotation and the leg length.
BANDAI_TO_H36M = {
    "pelvis": "Hips", "right_hip": "UpperLeg_R", "right_knee": "LowerLeg_R", "right_foot": "Foot_R",
    "left_hip": "UpperLeg_L", "left_knee": "LowerLeg_L", "left_foot": "Foot_L",
    "spine": "Chest", "thorax": "Neck", "neck_nose": DERIVED, "head": DERIVED,
    "left_shoulder": "UpperArm_L", "left_elbow": "LowerArm_L", "left_wrist": "Hand_L",
    "right_shoulder": "UpperArm_R", "right_elbow": "LowerArm_R", "right_wrist": "Hand_R",
}

_CLIP = re.compile(r"^dataset-(?P<set>[12])_(?P<content>[a-z-]+)_(?P<style>[a-z-]+)_(?P<take>\d+)\.bvh$")

# --- the split: whole styles and whole contents held out (never frames, never takes) ----------
# Validation selects models; test is read once for the final report. Each holds unseen styles
# (other body language) and, in dataset 1, an unseen kind of motion.
HELD_OUT = {
    "validation": {"1": {"styles": {"happy", "giant"}, "contents": {"punch"}},
                   "2": {"styles": {"youthful"}, "contents": set()}},
    "test": {"1": {"styles": {"tired", "musical"}, "contents": {"slash"}},
             "2": {"styles": {"elderly"}, "contents": set()}},
}


@dataclass(frozen=True)
class Clip:
    dataset: str      # "1" or "2"
    content: str
    style: str
    take: str
    member: str       # path inside the archive

    @property
    def name(self) -> str:
        return f"{self.content}_{self.style}_{self.take}"


def parse_clip_name(member: str) -> Clip | None:
    """'.../data/dataset-1_walk_happy_001.bvh' -> Clip; None for other members."""
    m = _CLIP.match(member.rsplit("/", 1)[-1])
    if m is None or "/data/" not in member:
        return None
    return Clip(m["set"], m["content"], m["style"], m["take"], member)


def split_of(clip: Clip) -> str:
    """'test' if the clip's style or content is held out for test, else 'validation' likewise,
    else 'train'. Test wins where both would claim a clip."""
    for split in ("test", "validation"):
        rule = HELD_OUT[split][clip.dataset]
        if clip.style in rule["styles"] or clip.content in rule["contents"]:
            return split
    return "train"


def check_archive(path: Path) -> Path:
    """The archive, verified against its pinned sha256; ValueError naming the file otherwise."""
    expected = ARCHIVES.get(path.name)
    if expected is None:
        raise ValueError(f"{path}: not a Bandai Namco archive (expected one of {sorted(ARCHIVES)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (get the BVH files from the public repository "
                                "BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset)")
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(f"{path}: sha256 {actual} does not match the pinned {expected}")
    return path


def find_archives(directory: str | Path) -> list[Path]:
    """Both archives of `directory`, each sha256-checked."""
    directory = Path(directory)
    return [check_archive(directory / name) for name in sorted(ARCHIVES)]


def clip_to_h36m(text: str, source: str) -> tuple[np.ndarray, dict]:
    """One BVH text -> (pose (T, 17, 3) float64 metres, Z up, grounded, notes)."""
    from .mocap import BVHSource  # the generic BVH path: cm -> m, Y up -> Z up, grounding, head

    bvh = parse_bvh(text, source=source)
    if abs(bvh.fps - FPS) > 0.01:
        raise ValueError(f"{source}: {bvh.fps:g} fps, expected {FPS:g}")
    pose, floor_shift_m = bvh_to_h36m(bvh, BVHSource(source, "bandai", "bandai", 0.01, BANDAI_TO_H36M))
    check_positions(pose, source)
    pose, cut_start, cut_end = trim_frozen_ends(pose)
    return pose, {"unit_m": 0.01, "floor_shift_m": round(floor_shift_m, 4),
                  "trimmed_frozen_start_frames": cut_start, "trimmed_frozen_end_frames": cut_end,
                  "frozen_frames": frozen_frames(pose)}


def iter_clips(archive: Path, labels: dict[str, dict]) -> Iterator[tuple[Clip, str]]:
    """(clip, BVH text) for every clip of one archive, streamed in archive order; the label files
    (`{"content": i, "style": j}`) met on the way are collected into `labels` by clip member."""
    with tarfile.open(archive, "r:xz") as tar:
        for info in tar:
            if not info.isfile() or "/data/" not in info.name:
                continue
            if info.name.endswith(".json"):
                labels[info.name[:-5] + ".bvh"] = json.loads(tar.extractfile(info).read())
                continue
            clip = parse_clip_name(info.name)
            if clip is not None:
                yield clip, tar.extractfile(info).read().decode("utf-8")


def source_tasks(directory: str | Path) -> list[tuple[str, Callable[[], list[MocapSequence]]]]:
    """(label, function returning MocapSequences) per archive, for prepare_data's progress bar."""
    tasks = []
    for archive in find_archives(directory):
        def convert(archive=archive):
            out, labels = [], {}
            for clip, text in iter_clips(archive, labels):
                where = f"{archive.name}:{clip.member}"
                pose, notes = clip_to_h36m(text, where)
                if len(pose) < 2:
                    continue  # a clip that never moves holds no motion
                out.append(MocapSequence(
                    subject=f"bandai-namco-{clip.dataset}", name=clip.name,
                    positions_m=pose.astype(np.float32), fps=FPS, split=split_of(clip),
                    first_frame=notes.pop("trimmed_frozen_start_frames"),
                    source=f"{archive.name}:{clip.member}",
                    notes={**notes, "content": clip.content, "style": clip.style,
                           "licence": LICENCE}))
            if not out:
                raise ValueError(f"{archive}: no BVH clip found under data/")
            for seq in out:  # the label files may follow their clip in the archive
                label = labels.get(seq.source.split(":", 1)[1])
                if label is not None:
                    seq.notes["label"] = label
            return out
        tasks.append((archive.name, convert))
    return tasks

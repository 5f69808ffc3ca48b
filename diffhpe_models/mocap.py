"""The real motion-capture sources, read from pinned registry packages and mapped onto H36M-17.

Sources (see docs/data.md):
- holosoma-retargeting 0.1.0 (wheel): 5 climbing sequences, `.npy` (T, 53, 3) world metres, Z up;
  joint names from `MOCAP_DEMO_JOINTS` in the archive's `config_types/data_type.py`. The frame
  rate is not stated; the package's own conversion code assumes 30 fps input, which we adopt as an
  explicit assumption (recorded per sequence as `fps_assumed`).
- bvhtools 1.6.0 (sdist): `test.bvh`, `test2.bvh` (LAFAN1-style skeleton, centimetres, 30 fps, Y up)
  and `test3.bvh` (Blender rigify names, metres despite the package notes, 24 fps, Y up, position
  channels on every joint).

All outputs are float32 (T, 17, 3), metres, world frame Z up, H36M-17 joint order
(`skeleton.JOINT_NAMES`).
"""
from __future__ import annotations

import ast
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .bvh import BVH, parse_bvh
from .fetch import fetch_package, find_archive_members, read_archive_member, read_archive_text
from .skeleton import JOINT_NAMES, NUM_JOINTS

HOLOSOMA = ("holosoma-retargeting", "0.1.0")
BVHTOOLS = ("bvhtools", "1.6.0")
PACKAGES = {HOLOSOMA[0]: (HOLOSOMA[1], False), BVHTOOLS[0]: (BVHTOOLS[1], True)}  # name: (version, sdist)

HOLOSOMA_NAMES_FILE = "holosoma_retargeting/config_types/data_type.py"
HOLOSOMA_CLIMB_GLOB = "holosoma_retargeting/demo_data/climb/mocap_climb_seq_*/*_joint_positions_f*.npy"
# The package's conversion code (config_values/data_conversion.py, input_fps=30) assumes 30 fps.
HOLOSOMA_ASSUMED_FPS = 30.0
BVH_DIR = "bvhtools-1.6.0/testBvhFiles"

# Y-up (BVH) -> Z-up world: a +90 deg rotation about X, (x, y, z) -> (x, -z, y). A rotation, not
# a reflection, so left stays left.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

# --- Name mappings onto H36M-17 --------------------------------------------------------------
# Every H36M joint is either a named source joint or DERIVED (neck_nose and head: no source has a
# nose or a head-top point; see derive_head_points). Wrists and ankles are joint centres.
DERIVED = None

HOLOSOMA_TO_H36M = {
    "pelvis": "Hips", "right_hip": "RightUpLeg", "right_knee": "RightLeg", "right_foot": "RightFoot",
    "left_hip": "LeftUpLeg", "left_knee": "LeftLeg", "left_foot": "LeftFoot",
    "spine": "Spine1",  # Spine1 sits mid-way between Hips and Neck (Spine is 8 cm above Hips)
    "thorax": "Neck", "neck_nose": DERIVED, "head": DERIVED,
    "left_shoulder": "LeftArm", "left_elbow": "LeftForeArm", "left_wrist": "LeftHand",
    "right_shoulder": "RightArm", "right_elbow": "RightForeArm", "right_wrist": "RightHand",
}
# The LAFAN1-style rig names its joints as holosoma does; only its spine has three segments.
LAFAN_TO_H36M = {**HOLOSOMA_TO_H36M,
                 "spine": "Spine2"}  # of Spine/Spine1/Spine2 the one nearest the Hips-Neck midpoint
RIGIFY_TO_H36M = {
    "pelvis": "pelvis", "right_hip": "thigh.R", "right_knee": "shin.R", "right_foot": "foot.R",
    "left_hip": "thigh.L", "left_knee": "shin.L", "left_foot": "foot.L",
    "spine": "spine.001", "thorax": "neck", "neck_nose": DERIVED, "head": DERIVED,
    "left_shoulder": "upper_arm.L", "left_elbow": "forearm.L", "left_wrist": "forearm.L_End",
    "right_shoulder": "upper_arm.R", "right_elbow": "forearm.R", "right_wrist": "forearm.R_End",
}
# The source joint each skeleton's head points are derived from (the skull's lowest joint).
HEAD_JOINT = {"holosoma": "Head", "lafan": "Head", "rigify": "face", "bandai": "Head"}

# Head points from anthropometric proportions (Drillis & Contini segment ratios of stature H):
# base of neck ~0.818 H, nose tip ~0.905 H and ~0.06 H in front of the neck axis, vertex 1.0 H;
# thigh + shank = 0.491 H. Expressed per unit of the sequence's leg length (thigh + shank),
# which every source measures between well-defined joint centres.
NOSE_UP_PER_LEG = 0.18        # (0.905 - 0.818) / 0.491
NOSE_FORWARD_PER_LEG = 0.13   # 0.063 / 0.491
HEAD_TOP_UP_PER_LEG = 0.37    # (1.0 - 0.818) / 0.491


@dataclass
class MocapSequence:
    """One converted sequence.

    positions_m: float32 (T, 17, 3) world metres, Z up, H36M-17 order.
    fps: frames per second; fps_assumed: True when the source does not state it.
    source: '<package>==<version>:<path in archive>'; first_frame: index of frame 0 in that file.
    """
    subject: str
    name: str
    positions_m: np.ndarray
    fps: float
    source: str
    split: str = ""
    first_frame: int = 0
    fps_assumed: bool = False
    notes: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.name}"


# --- geometry helpers -------------------------------------------------------------------------

def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n < 1e-9):
        raise ValueError(f"degenerate {what}: zero-length vector in {int((n < 1e-9).sum())} frames")
    return v / n


def leg_length_m(pose: np.ndarray) -> float:
    """Median over frames and sides of thigh + shank length of an H36M-17 pose array (T, 17, 3)."""
    j = {n: i for i, n in enumerate(JOINT_NAMES)}
    legs = []
    for side in ("left", "right"):
        hip, knee, foot = (pose[:, j[f"{side}_{k}"]] for k in ("hip", "knee", "foot"))
        legs.append(np.linalg.norm(knee - hip, axis=-1) + np.linalg.norm(foot - knee, axis=-1))
    return float(np.median(np.concatenate(legs)))


def frame_from_axes(up: np.ndarray, left: np.ndarray, what: str) -> np.ndarray:
    """(T, 3, 3) right-handed frames with columns (forward, left, up): up kept, left made
    orthogonal to it, forward = left x up (X forward, Y left, Z up)."""
    up = _unit(up, f"{what} up axis")
    left = _unit(left - np.sum(left * up, axis=-1, keepdims=True) * up, f"{what} left axis")
    return np.stack([np.cross(left, up), left, up], axis=-1)


def upright_frames(pelvis: np.ndarray, thorax: np.ndarray, max_tilt_deg: float = 25.0) -> np.ndarray:
    """(T,) bool: the trunk (pelvis -> thorax) is within `max_tilt_deg` of the world vertical."""
    trunk = _unit(thorax - pelvis, "pelvis->thorax vector")
    return trunk[:, 2] >= np.cos(np.radians(max_tilt_deg))


def head_axes(head_frame: np.ndarray, torso_frame: np.ndarray, upright: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame head 'up' and 'forward' unit vectors (T, 3) for placing the nose and head top.

    head_frame: (T, 3, 3) a frame that moves with the head (a BVH head joint's global rotation, or
    the neck frame built from joint positions); torso_frame: (T, 3, 3) columns (forward, left, up).
    Rigs do not say which head axis is 'up' or 'forward', and the neck leans forward, so both axes
    are calibrated in the head frame as the mean, over upright frames (all frames if fewer than
    10), of the world vertical and of the torso's facing: in an upright posture the head is taken
    to look where the torso faces, level. The calibrated axes then follow every head movement.
    """
    use = upright if upright.sum() >= 10 else np.ones_like(upright)
    ez = np.array([0.0, 0.0, 1.0])
    up_local = _unit(np.einsum("tba,b->ta", head_frame[use], ez).mean(0), "calibrated head up")
    fwd_local = _unit(np.einsum("tba,tb->ta", head_frame[use], torso_frame[use, :, 0]).mean(0),
                      "calibrated head forward")
    up = np.einsum("tab,b->ta", head_frame, up_local)
    fwd = np.einsum("tab,b->ta", head_frame, fwd_local)
    fwd = fwd - np.sum(fwd * up, axis=-1, keepdims=True) * up
    return _unit(up, "head up"), _unit(fwd, "head forward")


def derive_head_points(thorax: np.ndarray, up: np.ndarray, forward: np.ndarray,
                       leg_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(neck_nose, head_top), each (T, 3), from the base of the neck, head up/forward unit vectors
    and the leg length (metres), with the anthropometric ratios above."""
    nose = thorax + leg_m * (NOSE_UP_PER_LEG * up + NOSE_FORWARD_PER_LEG * forward)
    top = thorax + leg_m * HEAD_TOP_UP_PER_LEG * up
    return nose, top


def map_to_h36m(points: np.ndarray, names: list[str] | tuple[str, ...], mapping: dict,
                head_joint: str, head_rot: np.ndarray | None = None, source: str = "") -> np.ndarray:
    """Source joints (T, K, 3) metres Z up -> H36M-17 (T, 17, 3) float64.

    `mapping` gives the source name of every H36M joint (DERIVED for neck_nose and head).
    head_rot: optional (T, 3, 3) global rotation of `head_joint` (BVH), to follow head turns;
    without it the head moves with the neck frame (thorax -> head joint, shoulder line).
    """
    idx = {n: i for i, n in enumerate(names)}
    if set(mapping) != set(JOINT_NAMES):
        raise ValueError(f"{source}: mapping must name exactly the 17 H36M joints, "
                         f"missing {sorted(set(JOINT_NAMES) - set(mapping))}")
    wanted = [v for v in mapping.values() if v is not DERIVED] + [head_joint]
    missing = [n for n in wanted if n not in idx]
    if missing:
        raise ValueError(f"{source}: source skeleton lacks joints {missing}; it has {list(names)}")
    out = np.zeros(points.shape[:1] + (NUM_JOINTS, 3), dtype=np.float64)
    for j, h36m_name in enumerate(JOINT_NAMES):
        if mapping[h36m_name] is not DERIVED:
            out[:, j] = points[:, idx[mapping[h36m_name]]]
    jn = {n: i for i, n in enumerate(JOINT_NAMES)}
    pelvis, thorax = out[:, jn["pelvis"]], out[:, jn["thorax"]]
    left = out[:, jn["left_shoulder"]] - out[:, jn["right_shoulder"]]
    torso = frame_from_axes(thorax - pelvis, left, f"{source}: torso")
    if head_rot is None:  # positions only: the neck (thorax -> head joint) and shoulder line
        head_rot = frame_from_axes(points[:, idx[head_joint]] - thorax, left, f"{source}: neck")
    up, fwd = head_axes(head_rot, torso, upright_frames(pelvis, thorax))
    nose, top = derive_head_points(thorax, up, fwd, leg_length_m(out))
    out[:, jn["neck_nose"]] = nose
    out[:, jn["head"]] = top
    # At run time the detectors have no thorax or spine: skeleton.to_h36m17 derives them as the
    # shoulder midpoint and the pelvis-thorax midpoint. Train on the same definitions, so the 2D
    # the model sees in the field matches the 2D it was trained on (the base of the neck sits
    # 35-76 mm away from the shoulder midpoint in these rigs).
    out[:, jn["thorax"]] = 0.5 * (out[:, jn["left_shoulder"]] + out[:, jn["right_shoulder"]])
    out[:, jn["spine"]] = 0.5 * (out[:, jn["pelvis"]] + out[:, jn["thorax"]])
    return out


def frozen_frames(positions: np.ndarray, tol_m: float = 1e-6) -> int:
    """Number of frames identical (every joint within tol_m) to the previous frame."""
    step = np.abs(np.diff(positions, axis=0)).max(axis=(1, 2))
    return int((step <= tol_m).sum())


def check_positions(positions: np.ndarray, what: str) -> None:
    """Raise ValueError naming `what` and the frame/joint on a NaN or infinite value."""
    if not np.all(np.isfinite(positions)):
        bad = np.argwhere(~np.isfinite(positions))[0]
        raise ValueError(f"{what}: non-finite value at frame {bad[0]}, joint {bad[1]}")


def trim_frozen_ends(positions: np.ndarray, tol_m: float = 1e-6) -> tuple[np.ndarray, int, int]:
    """Drop repeated frames at the start and end (exporters often repeat the last frame; a
    repeated frame is a false zero velocity). Returns (positions, dropped at start, dropped at end)."""
    step = np.abs(np.diff(positions, axis=0)).max(axis=(1, 2)) <= tol_m
    head = int(np.argmin(step)) if not step.all() else len(step)
    tail = int(np.argmin(step[::-1])) if not step.all() else 0
    return positions[head: len(positions) - tail], head, tail


# --- holosoma-retargeting ---------------------------------------------------------------------

def holosoma_joint_names(archive: str | Path) -> list[str]:
    """MOCAP_DEMO_JOINTS read from the archive's source text (an AST literal, not imported)."""
    text = read_archive_text(archive, HOLOSOMA_NAMES_FILE)
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MOCAP_DEMO_JOINTS"
                                                for t in node.targets):
            names = ast.literal_eval(node.value)
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise ValueError(f"{archive}:{HOLOSOMA_NAMES_FILE}: MOCAP_DEMO_JOINTS is not a list of names")
            return names
    raise ValueError(f"{archive}:{HOLOSOMA_NAMES_FILE}: no MOCAP_DEMO_JOINTS assignment")


def holosoma_climb_members(archive: str | Path) -> list[str]:
    """The 5 climb joint-position files in the wheel, in sequence order."""
    members = find_archive_members(archive, HOLOSOMA_CLIMB_GLOB)
    return sorted(members, key=lambda m: int(re.search(r"mocap_climb_seq_(\d+)/", m).group(1)))


def load_holosoma_climb(archive: str | Path, member: str, names: list[str]) -> MocapSequence:
    """One climb sequence -> MocapSequence (already metres, Z up; 30 fps assumed)."""
    raw = np.load(io.BytesIO(read_archive_member(archive, member)), allow_pickle=False)
    where = f"{archive}:{member}"
    if raw.ndim != 3 or raw.shape[1:] != (len(names), 3):
        raise ValueError(f"{where}: expected (T, {len(names)}, 3), got {raw.shape}")
    check_positions(raw, where)
    raw, cut_start, cut_end = trim_frozen_ends(raw)
    m = re.search(r"mocap_climb_seq_(\d+)/[^/]*_f(\d+)-(\d+)\.npy$", member)
    if m is None:
        raise ValueError(f"{where}: unexpected file name (want mocap_climb_seq_N/..._fA-B.npy)")
    pose = map_to_h36m(raw.astype(np.float64), names, HOLOSOMA_TO_H36M, HEAD_JOINT["holosoma"],
                       source=where)
    return MocapSequence(
        subject="holosoma", name=f"climb_seq_{m.group(1)}", positions_m=pose.astype(np.float32),
        fps=HOLOSOMA_ASSUMED_FPS, fps_assumed=True, first_frame=cut_start,
        source=f"{HOLOSOMA[0]}=={HOLOSOMA[1]}:{member}",
        notes={"fps_note": "not stated by the source; 30 fps as in the package's conversion code",
               "capture_frames": f"{m.group(2)}-{m.group(3)}",
               "frozen_frames": frozen_frames(raw), "trimmed_frozen_end_frames": cut_end})


# --- bvhtools BVH files -----------------------------------------------------------------------

@dataclass(frozen=True)
class BVHSource:
    """How to read one BVH file of the bvhtools sdist."""
    file: str
    subject: str
    skeleton: str          # key of HEAD_JOINT / mapping
    unit_m: float          # metres per file unit (from the rest offsets: thigh 43.5 -> cm, 0.33 -> m)
    mapping: dict


BVH_SOURCES = (
    BVHSource("test.bvh", "lafan", "lafan", 0.01, LAFAN_TO_H36M),
    BVHSource("test2.bvh", "lafan", "lafan", 0.01, LAFAN_TO_H36M),
    BVHSource("test3.bvh", "rigify", "rigify", 1.0, RIGIFY_TO_H36M),
)


def bvh_world_points(bvh: BVH, src: BVHSource) -> tuple[np.ndarray, np.ndarray, float]:
    """Forward kinematics of every BVH joint in metres, Z up, grounded.

    Returns (positions (T, K, 3) in `bvh.names` order, head joint global rotations (T, 3, 3) in the
    Z-up world, floor shift in metres). Grounding: the files put the root at arbitrary heights
    (test3's root is at ~0 with the feet 0.72 m below), so z is shifted to put the 1st percentile
    over frames of the body's lowest point (toe tips included) at 0.
    """
    pos, rot = bvh.forward_kinematics()
    pos = pos * src.unit_m @ Y_UP_TO_Z_UP.T
    head_rot = Y_UP_TO_Z_UP @ rot[:, bvh.index(HEAD_JOINT[src.skeleton])] @ Y_UP_TO_Z_UP.T
    floor = float(np.percentile(pos[..., 2].min(axis=1), 1))
    pos[..., 2] -= floor
    return pos, head_rot, -floor


def bvh_to_h36m(bvh: BVH, src: BVHSource) -> tuple[np.ndarray, float]:
    """BVH -> H36M-17 (T, 17, 3) float64 metres, Z up, grounded; returns (pose, floor shift m)."""
    pos, head_rot, shift = bvh_world_points(bvh, src)
    pose = map_to_h36m(pos, bvh.names, src.mapping, HEAD_JOINT[src.skeleton], head_rot=head_rot,
                       source=bvh.source)
    return pose, shift


def load_bvh_source(archive: str | Path, src: BVHSource) -> tuple[np.ndarray, float, str, dict]:
    """Parse one bvhtools BVH file.

    Returns (pose (T, 17, 3) float64 metres Z up, fps, member path, notes). Repeated frames at the
    ends are dropped (test3.bvh repeats its last frame); the frame indices of the split refer to
    the file's frames, which stay aligned because only the end is ever cut here.
    """
    member = f"{BVH_DIR}/{src.file}"
    text = read_archive_text(archive, member)
    bvh = parse_bvh(text, source=f"{archive}:{member}")
    pose, floor_shift_m = bvh_to_h36m(bvh, src)
    check_positions(pose, f"{archive}:{member}")
    pose, cut_start, cut_end = trim_frozen_ends(pose)
    if cut_start:
        raise ValueError(f"{archive}:{member}: {cut_start} repeated frames at the start; the split "
                         "table's frame indices would shift")
    notes = {"unit_m": src.unit_m, "floor_shift_m": round(floor_shift_m, 4),
             "frozen_frames": frozen_frames(pose), "trimmed_frozen_end_frames": cut_end}
    # Frame Time is written with 6 decimals (0.033333); 2 decimals of fps keep 30.0 and 24.0 exact.
    return pose, round(bvh.fps, 2), member, notes


# --- the fixed split --------------------------------------------------------------------------
# By sequence, never by frame. Long BVH takes are cut into contiguous, non-overlapping chunks and
# whole chunks are assigned. Validation and test each hold held-out material of every style that
# allows it: climbing (holosoma), LAFAN1-style locomotion and the rigify take.
HOLOSOMA_SPLIT = {0: "train", 1: "train", 2: "train", 3: "validation", 4: "test"}
# file -> list of (first frame, stop frame or None for the end, split)
BVH_SPLIT = {
    "test.bvh": [(0, 5400, "train"), (5400, None, "test")],
    "test2.bvh": [(0, None, "validation")],  # jittery (4x the acceleration of test.bvh): not a test target
    "test3.bvh": [(0, 1853, "train"), (1853, 2471, "validation"), (2471, None, "test")],
}
SPLITS = ("train", "validation", "test")


def _chunk_name(stem: str, start: int, stop: int, total: int) -> str:
    return stem if (start, stop) == (0, total) else f"{stem}_f{start}-{stop - 1}"


def fetch_sources(cache_dir: str | Path) -> dict[str, Path]:
    """Download (once) the source packages into `cache_dir`; returns {package name: archive}."""
    return {name: fetch_package(name, version, cache_dir, sdist=sdist)
            for name, (version, sdist) in PACKAGES.items()}


def source_tasks(archives: dict[str, Path]) -> list[tuple[str, Callable[[], list[MocapSequence]]]]:
    """(label, function returning MocapSequences) per source file, for a progress bar."""
    holo = archives[HOLOSOMA[0]]
    bvht = archives[BVHTOOLS[0]]
    names = holosoma_joint_names(holo)
    tasks = []
    for member in holosoma_climb_members(holo):
        def climb(member=member):
            seq = load_holosoma_climb(holo, member, names)
            seq.split = HOLOSOMA_SPLIT[int(seq.name.rsplit("_", 1)[1])]
            return [seq]
        tasks.append((Path(member).name, climb))
    for src in BVH_SOURCES:
        def bvh_file(src=src):
            pose, fps, member, notes = load_bvh_source(bvht, src)
            out, total = [], len(pose)
            for start, stop, split in BVH_SPLIT[src.file]:
                stop = total if stop is None else stop
                if not 0 <= start < stop <= total:
                    raise ValueError(f"{member}: split chunk [{start}, {stop}) outside {total} frames")
                out.append(MocapSequence(
                    subject=src.subject, name=_chunk_name(Path(src.file).stem, start, stop, total),
                    positions_m=pose[start:stop].astype(np.float32), fps=fps, split=split,
                    first_frame=start, source=f"{BVHTOOLS[0]}=={BVHTOOLS[1]}:{member}",
                    notes={**notes, "frozen_frames": frozen_frames(pose[start:stop])}))
            return out
        tasks.append((src.file, bvh_file))
    return tasks


def load_sources(archives: dict[str, Path]) -> list[MocapSequence]:
    """All sequences of all sources, split assigned, in a fixed order."""
    out = []
    for _label, task in source_tasks(archives):
        out.extend(task())
    return out


def dataset_inputs(sequences: list[MocapSequence]) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """(arrays, per-sequence metadata) for `dataset.save_dataset`."""
    arrays, meta = {}, {}
    for s in sequences:
        if s.key in arrays:
            raise ValueError(f"duplicate sequence key {s.key!r}")
        arrays[s.key] = s.positions_m
        meta[s.key] = {"fps": s.fps, "source": s.source, "split": s.split,
                       "first_frame": s.first_frame, "fps_assumed": s.fps_assumed, **s.notes}
    return arrays, meta

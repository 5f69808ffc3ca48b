"""The Human3.6M 17-joint skeleton (the field's lifting skeleton) and mappings onto it.

Joint order, parents and left/right sets are those of VideoPose3D / DiffHPE after the 32 -> 17
reduction. Mappings from detector formats (MediaPipe Pose 33, COCO 17) derive the joints the
detectors lack (pelvis, spine, thorax, head top) from the ones they have; confidences of derived
joints are the minimum of their sources, so a derived joint is only as trusted as its weakest
input.
"""
from __future__ import annotations

import numpy as np

JOINT_NAMES = (
    "pelvis", "right_hip", "right_knee", "right_foot", "left_hip", "left_knee", "left_foot",
    "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist",
)
NUM_JOINTS = 17
ROOT = 0
PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15])
LEFT_JOINTS = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS = (1, 2, 3, 14, 15, 16)
# Mirror permutation: index i of a left/right-flipped pose comes from FLIP_PERMUTATION[i].
FLIP_PERMUTATION = np.arange(NUM_JOINTS)
FLIP_PERMUTATION[list(LEFT_JOINTS)] = RIGHT_JOINTS
FLIP_PERMUTATION[list(RIGHT_JOINTS)] = LEFT_JOINTS

# 16 bones as (child, parent).
BONES = tuple((j, int(PARENTS[j])) for j in range(1, NUM_JOINTS))
# The 6 left/right bone pairs of the sagittal symmetry metric, each bone as (child, parent).
SYMMETRIC_BONE_PAIRS = (
    ((4, 0), (1, 0)), ((5, 4), (2, 1)), ((6, 5), (3, 2)),
    ((11, 8), (14, 8)), ((12, 11), (15, 14)), ((13, 12), (16, 15)),
)
# Body parts (for the denoiser's grouped non-local block and for colouring).
BODY_PARTS = {
    "torso": (0, 7, 8),
    "head": (9, 10),
    "left_arm": (11, 12, 13),
    "right_arm": (14, 15, 16),
    "left_leg": (4, 5, 6),
    "right_leg": (1, 2, 3),
}


def side_of(joint: int) -> str:
    """'left', 'right' or 'centre' (for left/right colouring of joints and bones)."""
    if joint in LEFT_JOINTS:
        return "left"
    if joint in RIGHT_JOINTS:
        return "right"
    return "centre"


def adjacency(self_loops: bool = True) -> np.ndarray:
    """Symmetric (J, J) adjacency of the kinematic tree, optionally with the identity added."""
    a = np.zeros((NUM_JOINTS, NUM_JOINTS), dtype=np.float32)
    for child, parent in BONES:
        a[child, parent] = a[parent, child] = 1.0
    if self_loops:
        a += np.eye(NUM_JOINTS, dtype=np.float32)
    return a


def bone_lengths(pose: np.ndarray) -> np.ndarray:
    """(..., 17, 3) -> (..., 16) bone lengths in the input's unit, in BONES order."""
    child = [c for c, _ in BONES]
    parent = [p for _, p in BONES]
    return np.linalg.norm(pose[..., child, :] - pose[..., parent, :], axis=-1)


# --- Detector formats -> H36M-17 -----------------------------------------------------------

MEDIAPIPE33_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# Head top is extrapolated from the thorax through the ear midpoint: the ears sit roughly at the
# centre of the skull, and the crown is about half the thorax-to-ears distance beyond them.
HEAD_TOP_EXTRAPOLATION = 0.5

KEYPOINT_FORMATS = {"mediapipe33": 33, "coco17": 17, "h36m17": 17}


def _named(names: tuple[str, ...]) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}


def _from_named(points: np.ndarray, conf: np.ndarray, idx: dict[str, int]):
    """Build H36M-17 from a detector layout that names hips, knees, ankles, shoulders, elbows,
    wrists, nose and ears."""
    def p(name):
        return points[..., idx[name], :]

    def c(name):
        return conf[..., idx[name]]

    pelvis = 0.5 * (p("left_hip") + p("right_hip"))
    thorax = 0.5 * (p("left_shoulder") + p("right_shoulder"))
    spine = 0.5 * (pelvis + thorax)
    ears = 0.5 * (p("left_ear") + p("right_ear"))
    head = ears + HEAD_TOP_EXTRAPOLATION * (ears - thorax)
    joints = [
        pelvis, p("right_hip"), p("right_knee"), p("right_ankle"),
        p("left_hip"), p("left_knee"), p("left_ankle"),
        spine, thorax, p("nose"), head,
        p("left_shoulder"), p("left_elbow"), p("left_wrist"),
        p("right_shoulder"), p("right_elbow"), p("right_wrist"),
    ]
    c_pelvis = np.minimum(c("left_hip"), c("right_hip"))
    c_thorax = np.minimum(c("left_shoulder"), c("right_shoulder"))
    c_ears = np.minimum(c("left_ear"), c("right_ear"))
    confs = [
        c_pelvis, c("right_hip"), c("right_knee"), c("right_ankle"),
        c("left_hip"), c("left_knee"), c("left_ankle"),
        np.minimum(c_pelvis, c_thorax), c_thorax, c("nose"), np.minimum(c_ears, c_thorax),
        c("left_shoulder"), c("left_elbow"), c("left_wrist"),
        c("right_shoulder"), c("right_elbow"), c("right_wrist"),
    ]
    return np.stack(joints, axis=-2), np.stack(confs, axis=-1)


def to_h36m17(points: np.ndarray, conf: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Map detector keypoints onto H36M-17.

    points: (..., K, D) coordinates (any D, e.g. 2 pixels or 3 metres); conf: (..., K) in [0, 1].
    fmt: 'mediapipe33', 'coco17' or 'h36m17'. Returns ((..., 17, D), (..., 17)).
    """
    if fmt not in KEYPOINT_FORMATS:
        raise ValueError(f"unknown keypoint format {fmt!r}; expected one of {sorted(KEYPOINT_FORMATS)}")
    points = np.asarray(points)
    conf = np.asarray(conf)
    k = KEYPOINT_FORMATS[fmt]
    if points.shape[-2] != k or conf.shape[-1] != k:
        raise ValueError(
            f"{fmt} needs {k} keypoints, got points {points.shape} and confidences {conf.shape}")
    if fmt == "h36m17":
        return points.copy(), conf.copy()
    names = MEDIAPIPE33_NAMES if fmt == "mediapipe33" else COCO17_NAMES
    return _from_named(points, conf, _named(names))

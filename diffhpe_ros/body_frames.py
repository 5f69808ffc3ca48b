"""Tracked persons as tf frames and as the REP 155 (ROS4HRI) list of tracked bodies.

Per body (id = the lifter's track id, as a string: stable while the person is tracked):
- `body_<id>` at the pelvis and `body_<id>/<joint>` at each other H36M joint (`body_3/left_wrist`),
  each a child of the camera optical frame of the poses (the message header's frame), with the
  joint's position as translation and the identity rotation (the lifter estimates positions,
  not joint orientations): a `tf2_msgs/TFMessage` for `/tf`;
- the ids of the bodies of a frame: an `hri_msgs/IdsList` for `/humans/bodies/tracked`.

Only bodies placed in front of the camera get frames: without camera intrinsics the poses are
root-relative (pelvis at the origin), and a body frame at the camera's own origin would be false.

tf2_msgs and hri_msgs are not among the PyPI wheels: they come from the workspace that
.ci/ros2_workspace.sh builds, or from a ROS 2 install. `unavailable()` says why they cannot be
used; the builders raise RuntimeError then. Pure functions: numpy in, messages out.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import TransformStamped
from std_msgs.msg import Header

from diffhpe_models.skeleton import JOINT_NAMES, NUM_JOINTS, ROOT

TF_TOPIC = "/tf"
TRACKED_BODIES_TOPIC = "/humans/bodies/tracked"
# A pelvis closer than this in front of the camera is not a placed body (root-relative output
# has it at exactly 0).
MIN_BODY_DEPTH_M = 0.1

try:
    from tf2_msgs.msg import TFMessage
except ImportError as e:  # no ROS 2 workspace sourced
    TFMessage = None
    _TF_ERROR = f"tf2_msgs: {e}"
else:
    _TF_ERROR = None
try:
    from hri_msgs.msg import IdsList
except ImportError as e:
    IdsList = None
    _IDS_ERROR = f"hri_msgs: {e}"
else:
    _IDS_ERROR = None


def unavailable() -> dict[str, str]:
    """{output: why it cannot be built} for the outputs whose message package is missing
    ('tf' needs tf2_msgs, 'tracked_bodies' hri_msgs); empty when both are there."""
    return {name: error for name, error in (("tf", _TF_ERROR), ("tracked_bodies", _IDS_ERROR))
            if error is not None}


def unavailable_note(publish_tf: bool) -> str | None:
    """One line saying which outputs cannot be published and why (None: all can)."""
    missing = {k: v for k, v in unavailable().items() if publish_tf or k != "tf"}
    if not missing:
        return None
    topics = {"tf": TF_TOPIC, "tracked_bodies": TRACKED_BODIES_TOPIC}
    return ("not published: " + "; ".join(f"{topics[k]} ({v})" for k, v in missing.items())
            + ". Source a ROS 2 environment that has tf2_msgs and hri_msgs (without a ROS "
            "install: bash .ci/ros2_workspace.sh builds them)")


def body_id(track_id: int) -> str:
    return str(int(track_id))


def frame_ids(body: str) -> tuple[str, ...]:
    """The 17 frame ids of a body, in H36M joint order (REP 155 naming)."""
    return tuple(f"body_{body}" if j == ROOT else f"body_{body}/{JOINT_NAMES[j]}"
                 for j in range(NUM_JOINTS))


def placed(pose_m: np.ndarray) -> np.ndarray:
    """(P,) bool: bodies whose pelvis is in front of the camera (absolute, not root-relative)."""
    pose_m = np.asarray(pose_m, dtype=np.float64)
    return np.isfinite(pose_m).all(axis=(1, 2)) & (pose_m[:, ROOT, 2] > MIN_BODY_DEPTH_M)


def _check(pose_m: np.ndarray, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pose_m = np.asarray(pose_m, dtype=np.float64)
    track_ids = np.asarray(track_ids)
    if pose_m.ndim != 3 or pose_m.shape[1:] != (NUM_JOINTS, 3) or track_ids.shape != pose_m.shape[:1]:
        raise ValueError(f"need poses (P, {NUM_JOINTS}, 3) and ids (P,), got {pose_m.shape}, "
                         f"{track_ids.shape}")
    return pose_m, track_ids


def body_transforms(pose_m: np.ndarray, track_ids: np.ndarray, header: Header):
    """(P, 17, 3) metres in header.frame_id and (P,) track ids -> TFMessage: 17 transforms per
    placed body, stamped with header.stamp (bodies not placed get none)."""
    if TFMessage is None:
        raise RuntimeError(f"tf frames need {_TF_ERROR}")
    pose_m, track_ids = _check(pose_m, track_ids)
    transforms = []
    for pose, track in zip(pose_m[placed(pose_m)], track_ids[placed(pose_m)]):
        for frame, (x, y, z) in zip(frame_ids(body_id(track)), pose):
            t = TransformStamped(header=header, child_frame_id=frame)
            t.transform.translation.x, t.transform.translation.y = float(x), float(y)
            t.transform.translation.z = float(z)
            t.transform.rotation.w = 1.0
            transforms.append(t)
    return TFMessage(transforms=transforms)


def tracked_bodies(track_ids: np.ndarray, header: Header):
    """(P,) track ids -> IdsList of their body ids (the header's stamp and frame)."""
    if IdsList is None:
        raise RuntimeError(f"the tracked bodies list needs {_IDS_ERROR}")
    return IdsList(header=header, ids=[body_id(t) for t in np.asarray(track_ids).reshape(-1)])

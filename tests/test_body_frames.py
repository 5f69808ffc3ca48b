"""diffhpe_ros.body_frames: poses -> tf frames (REP 155 names) and the tracked bodies' ids.

The message builders need tf2_msgs / hri_msgs, which exist once the workspace of
.ci/ros2_workspace.sh is sourced (as .ci/run does for `make test`): without them those tests
skip, and the module says why it cannot build the messages.
"""
import importlib.util

import numpy as np
import pytest
from std_msgs.msg import Header

from diffhpe_models.skeleton import JOINT_NAMES
from diffhpe_ros import body_frames
from diffhpe_ros.conversions import s_to_stamp

HAVE_TF = importlib.util.find_spec("tf2_msgs") is not None
HAVE_HRI = importlib.util.find_spec("hri_msgs") is not None
NO_WORKSPACE = "tf2_msgs/hri_msgs not importable: source .cache/ros2_ws/underlay/install/setup.bash"


def poses(depths_m):
    """(P, 17, 3): a body per depth, joints spread around its pelvis."""
    offsets = np.linspace(-0.5, 0.5, 17 * 3).reshape(17, 3)
    offsets[0] = 0.0
    return np.stack([offsets + [0.1 * i, -0.2, d] for i, d in enumerate(depths_m)])


def test_frame_names_follow_rep_155():
    names = body_frames.frame_ids(body_frames.body_id(np.int64(7)))
    assert names[0] == "body_7"  # the pelvis is the body frame
    assert names[13] == "body_7/left_wrist" and names[16] == "body_7/right_wrist"
    assert names[1:] == tuple(f"body_7/{n}" for n in JOINT_NAMES[1:])
    assert len(set(names)) == 17


def test_only_bodies_in_front_of_the_camera_are_placed():
    p = poses([2.0, 0.0, -1.0, 3.0])  # 0: root-relative output (pelvis at the origin)
    assert body_frames.placed(p).tolist() == [True, False, False, True]
    p[3, 5, 0] = np.nan
    assert body_frames.placed(p).tolist() == [True, False, False, False]


def test_unavailable_says_which_package_is_missing():
    missing = body_frames.unavailable()
    assert ("tf" in missing) == (not HAVE_TF) and ("tracked_bodies" in missing) == (not HAVE_HRI)
    if not HAVE_TF:
        assert "tf2_msgs" in missing["tf"]
        with pytest.raises(RuntimeError, match="tf2_msgs"):
            body_frames.body_transforms(poses([2.0]), np.array([1]), Header())
    if not HAVE_HRI:
        assert "hri_msgs" in missing["tracked_bodies"]
        with pytest.raises(RuntimeError, match="hri_msgs"):
            body_frames.tracked_bodies(np.array([1]), Header())


def test_the_note_names_the_missing_outputs_and_what_to_do():
    note = body_frames.unavailable_note(publish_tf=True)
    if HAVE_TF and HAVE_HRI:
        assert note is None
        return
    assert note.startswith("not published: ") and ".ci/ros2_workspace.sh" in note
    assert ("/tf (tf2_msgs" in note) == (not HAVE_TF)
    assert ("/humans/bodies/tracked (hri_msgs" in note) == (not HAVE_HRI)
    off = body_frames.unavailable_note(publish_tf=False)  # tf off: its package is not needed
    assert off is None if HAVE_HRI else "/tf" not in off


@pytest.mark.skipif(not HAVE_TF, reason=NO_WORKSPACE)
def test_body_transforms_are_the_joints_in_the_camera_frame():
    header = Header(frame_id="camera_optical_frame", stamp=s_to_stamp(12.5))
    p = poses([2.0, 0.0, 4.0])
    msg = body_frames.body_transforms(p, np.array([3, 5, 11]), header)
    assert type(msg).__name__ == "TFMessage"
    assert len(msg.transforms) == 2 * 17  # body 5 is root-relative: no frames
    children = [t.child_frame_id for t in msg.transforms]
    assert children == list(body_frames.frame_ids("3") + body_frames.frame_ids("11"))
    assert {t.header.frame_id for t in msg.transforms} == {"camera_optical_frame"}
    assert {(t.header.stamp.sec, t.header.stamp.nanosec) for t in msg.transforms} == {(12, 5 * 10**8)}
    xyz = np.array([[t.transform.translation.x, t.transform.translation.y,
                     t.transform.translation.z] for t in msg.transforms]).reshape(2, 17, 3)
    np.testing.assert_allclose(xyz, p[[0, 2]])
    assert {(t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
             t.transform.rotation.w) for t in msg.transforms} == {(0.0, 0.0, 0.0, 1.0)}
    assert body_frames.body_transforms(np.zeros((0, 17, 3)), np.zeros(0, int), header).transforms == []
    with pytest.raises(ValueError, match="17, 3"):
        body_frames.body_transforms(p[:, :16], np.array([3, 5, 11]), header)
    with pytest.raises(ValueError, match="ids"):
        body_frames.body_transforms(p, np.array([3, 5]), header)


@pytest.mark.skipif(not HAVE_HRI, reason=NO_WORKSPACE)
def test_tracked_bodies_lists_the_ids():
    header = Header(frame_id="camera_optical_frame", stamp=s_to_stamp(3.0))
    msg = body_frames.tracked_bodies(np.array([4, 9]), header)
    assert type(msg).__name__ == "IdsList"
    assert list(msg.ids) == ["4", "9"] and msg.header.frame_id == "camera_optical_frame"
    assert list(body_frames.tracked_bodies(np.zeros(0, int), header).ids) == []

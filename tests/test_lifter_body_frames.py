"""The lifter's REP 155 outputs, read by a subscriber: the tracked persons' tf frames on /tf and
their ids on /humans/bodies/tracked (real LifterNode, real messages, the shipped model: the tiny
untrained one often cannot be placed in front of the camera, and only placed bodies get frames).

They need tf2_msgs and hri_msgs, importable once the workspace of .ci/ros2_workspace.sh is
sourced (.ci/run does, for the whole suite); without them these tests skip and the node says
once why it does not publish them (tested too).
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from keypoint_stream import keypoints_h36m  # noqa: E402
from lifter_harness import T0_S, Harness  # sets the ROS env first
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402

from diffhpe_ros import body_frames  # noqa: E402
from diffhpe_ros import conversions as cv  # noqa: E402

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "diffhpe_lifter.onnx"
HAVE_MSGS = all(importlib.util.find_spec(m) is not None for m in ("tf2_msgs", "hri_msgs"))
needs_msgs = pytest.mark.skipif(not HAVE_MSGS, reason="tf2_msgs/hri_msgs not importable: source "
                                "the workspace (bash .ci/ros2_workspace.sh; .cache/ros2_ws/"
                                "underlay/install/setup.bash)")


class BodyHarness(Harness):
    """The lifter harness with subscribers on /tf and /humans/bodies/tracked."""

    def __init__(self, context, model_path, **overrides):
        super().__init__(context, model_path, **overrides)
        self.tf, self.tracked = [], []
        if HAVE_MSGS:
            from hri_msgs.msg import IdsList
            from tf2_msgs.msg import TFMessage
            qos = QoSProfile(depth=1000)
            self.probe.create_subscription(TFMessage, body_frames.TF_TOPIC, self.tf.append, qos)
            self.probe.create_subscription(IdsList, body_frames.TRACKED_BODIES_TOPIC,
                                           self.tracked.append, qos)

    def stream_walk(self, n, t0_s=T0_S, persons=1):
        """n frames of `persons` walkers side by side, each handled before the next."""
        uv = np.stack([keypoints_h36m(n, x0_m=1.2 * p - 0.6 * (persons - 1))[0]
                       for p in range(persons)], axis=1)
        for i in range(n):
            done = self.node.core.counters()["lifted_frames"]
            self.send(t0_s + i / 30, uv[i])
            assert self.spin_until(lambda: self.node.core.counters()["lifted_frames"] > done, 10)
        self.spin_for(0.3)  # the last publications in flight


@pytest.fixture
def harness(context, request):
    h = BodyHarness(context, SHIPPED_MODEL, **getattr(request, "param", {}))
    yield h
    h.close()


@needs_msgs
def test_tracked_persons_are_tf_frames_with_stable_ids(harness):
    harness.send_camera_info()
    assert harness.spin_until(lambda: harness.node.core.intrinsics is not None, 10.0)
    harness.stream_walk(40, persons=2)
    assert harness.poses, "nothing lifted"
    ids = [tuple(m.ids) for m in harness.tracked]
    assert len(set(ids)) == 1 and len(ids[0]) == 2, set(ids)  # two bodies, the same ids all along
    bodies = ids[0]
    # Each pose3d message has its tf message: the placed persons' 17 frames, same stamp and
    # frame, translations = the published joint positions.
    by_stamp = {(m.transforms[0].header.stamp.sec, m.transforms[0].header.stamp.nanosec): m
                for m in harness.tf}
    clouds = {(c.header.stamp.sec, c.header.stamp.nanosec): c for c in harness.points}
    checked = 0
    for pose_msg in harness.poses:
        key = (pose_msg.header.stamp.sec, pose_msg.header.stamp.nanosec)
        pose = cv.pose_array_to_pose3d(pose_msg).astype(np.float64)
        person = cv.point_cloud2_to_array(clouds[key])["person"].reshape(-1, 17)[:, 0]
        placed = pose[:, 0, 2] > body_frames.MIN_BODY_DEPTH_M
        if not placed.any():
            assert key not in by_stamp
            continue
        tf = by_stamp[key]
        assert [t.child_frame_id for t in tf.transforms] == [
            name for p in person[placed] for name in body_frames.frame_ids(str(p))]
        assert {t.header.frame_id for t in tf.transforms} == {pose_msg.header.frame_id}
        xyz = np.array([[t.transform.translation.x, t.transform.translation.y,
                         t.transform.translation.z] for t in tf.transforms])
        np.testing.assert_allclose(xyz, pose[placed].reshape(-1, 3), atol=1e-5)
        assert set(map(str, person)) <= set(bodies)
        checked += 1
    assert checked >= 10, checked


@needs_msgs
def test_no_tf_for_root_relative_poses_but_the_ids_still(harness):
    harness.stream_walk(10)  # no camera_info: poses are root-relative, pelvis at the origin
    assert harness.poses and all(
        np.allclose(cv.pose_array_to_pose3d(m)[:, 0], 0.0) for m in harness.poses)
    assert harness.tf == []
    assert len(harness.tracked) == len(harness.poses)
    ids = {tuple(m.ids) for m in harness.tracked}
    assert len(ids) == 1 and len(min(ids)) == 1, ids


@needs_msgs
def test_an_empty_frame_empties_the_tracked_list(harness):
    harness.stream_walk(5)
    n = len(harness.tracked)
    harness.send(T0_S + 1.0, np.zeros((0, 17, 2)))  # the detector: nobody in view
    assert harness.spin_until(lambda: len(harness.tracked) > n, 5.0)
    assert list(harness.tracked[-1].ids) == []
    assert cv.stamp_to_s(harness.tracked[-1].header.stamp) == pytest.approx(T0_S + 1.0)


@needs_msgs
@pytest.mark.parametrize("harness", [{"publish_tf": False}], indirect=True)
def test_publish_tf_turns_the_frames_off_at_start_and_at_run_time(harness):
    harness.send_camera_info()
    assert harness.spin_until(lambda: harness.node.core.intrinsics is not None, 10.0)
    harness.stream_walk(10)
    assert harness.tf == [] and harness.tracked  # the ids are still published
    result = harness.node.set_parameters([Parameter("publish_tf", value=True)])[0]
    assert result.successful, result.reason
    harness.stream_walk(10, t0_s=T0_S + 10 / 30)
    placed = sum((cv.pose_array_to_pose3d(m)[:, 0, 2] > body_frames.MIN_BODY_DEPTH_M).any()
                 for m in harness.poses[-10:])
    assert len(harness.tf) == placed


def test_without_the_message_packages_the_node_says_once_why(context, capfd):
    missing = body_frames.unavailable()
    h = BodyHarness(context, SHIPPED_MODEL)
    try:
        h.stream_walk(3)
        err = capfd.readouterr().err
        note = "not published: /"  # body_frames.unavailable_note's start
        if missing:
            assert err.count(note) == 1, err
            for reason in missing.values():
                assert reason in err
        else:
            assert note not in err
    finally:
        h.close()

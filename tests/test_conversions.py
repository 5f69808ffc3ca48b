"""Message <-> numpy conversions, on real messages serialized and deserialized by rclpy."""
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from diffhpe_models.occlusion import confidence_mask
from diffhpe_models.skeleton import BONES, LEFT_JOINTS, RIGHT_JOINTS
from diffhpe_ros import conversions as cv


def roundtrip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def header(t=12.5, frame="cam"):
    return Header(stamp=cv.s_to_stamp(t), frame_id=frame)


def test_stamps_roundtrip_and_refuse_bad_times():
    for t in (0.0, 1.5, 1234567.000000001, 1.999999999):
        assert abs(cv.stamp_to_s(cv.s_to_stamp(t)) - t) < 2e-9
    stamp = cv.s_to_stamp(3.25)
    assert (stamp.sec, stamp.nanosec) == (3, 250_000_000)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            cv.s_to_stamp(bad)
    d = cv.s_to_duration(0.2)
    assert (d.sec, d.nanosec) == (0, 200_000_000)


def test_keypoints_roundtrip_through_serialization():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 640, (3, 33, 2)).astype(np.float32)
    conf = rng.uniform(0, 1, (3, 33)).astype(np.float32)
    msg = roundtrip(cv.keypoints_to_pose_array(pts, conf, header()))
    assert len(msg.poses) == 99 and msg.header.frame_id == "cam"
    kp = cv.keypoints_from_pose_array(msg, 33)
    assert kp.points_px.shape == (3, 33, 2) and kp.points_px.dtype == np.float32
    np.testing.assert_allclose(kp.points_px, pts, atol=1e-4)
    np.testing.assert_allclose(kp.conf, conf, atol=1e-6)
    assert kp.problems == {}


def test_wrong_pose_count_is_refused_with_reason():
    msg = cv.keypoints_to_pose_array(np.zeros((1, 17, 2)), np.ones((1, 17)), header())
    with pytest.raises(cv.BadMessage) as e:
        cv.keypoints_from_pose_array(msg, 33)
    assert e.value.reason == "wrong_pose_count" and "17 poses" in str(e.value)


def test_empty_pose_array_is_zero_persons():
    kp = cv.keypoints_from_pose_array(PoseArray(), 33)
    assert kp.points_px.shape == (0, 33, 2) and kp.conf.shape == (0, 33)


def test_nonfinite_and_out_of_range_keypoints_become_missing():
    pts = np.full((2, 17, 2), 100.0)
    conf = np.full((2, 17), 0.9)
    pts[0, 3, 0] = np.nan
    pts[1, 5, 1] = np.inf
    conf[1, 7] = -np.inf
    conf[0, 9] = 1.5
    conf[1, 2] = -0.1
    kp = cv.keypoints_from_pose_array(roundtrip(cv.keypoints_to_pose_array(pts, conf, header())), 17)
    assert kp.problems == {"nonfinite_keypoints": 3, "confidence_out_of_range": 2}
    bad = [(0, 3), (1, 5), (1, 7), (0, 9), (1, 2)]
    for p, k in bad:
        assert np.isnan(kp.conf[p, k]) and (kp.points_px[p, k] == 0).all()
    # Missing whatever the threshold, even 0 (a conf of 0 would pass c >= 0).
    assert (confidence_mask(kp.conf, 0.0) == ~np.isnan(kp.conf)).all()
    assert confidence_mask(kp.conf, 0.0)[tuple(np.array(bad).T)].sum() == 0
    good = np.ones((2, 17), bool)
    good[tuple(np.array(bad).T)] = False
    assert np.isfinite(kp.points_px).all()
    np.testing.assert_allclose(kp.conf[good], 0.9, atol=1e-6)
    np.testing.assert_allclose(kp.points_px[good], 100.0)


def test_huge_coordinates_are_missing_keypoints_not_float32_infinities():
    # 1e39 is finite in float64 but inf in float32: it must be caught before the cast.
    pts = np.full((1, 17, 2), 100.0)
    conf = np.full((1, 17), 0.9)
    pts[0, 2, 0] = 1e39
    pts[0, 4, 1] = -3e6
    pts[0, 6] = cv.MAX_ABS_COORDINATE_PX  # the largest allowed value is kept
    kp = cv.keypoints_from_pose_array(roundtrip(cv.keypoints_to_pose_array(pts, conf, header())), 17)
    assert kp.problems == {"coordinate_out_of_range": 2}
    assert np.isfinite(kp.points_px).all()
    for k in (2, 4):
        assert np.isnan(kp.conf[0, k]) and (kp.points_px[0, k] == 0).all()
    assert kp.conf[0, 6] == pytest.approx(0.9) and (kp.points_px[0, 6] == 1e6).all()


def test_pose3d_pose_array_roundtrip_and_nan_refused():
    pose = np.random.default_rng(1).normal(size=(2, 17, 3)).astype(np.float32)
    msg = roundtrip(cv.pose3d_to_pose_array(pose, header()))
    assert len(msg.poses) == 34 and msg.poses[0].orientation.w == 1.0
    np.testing.assert_allclose(cv.pose_array_to_pose3d(msg), pose, atol=1e-6)
    pose[1, 4, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        cv.pose3d_to_pose_array(pose, header())
    with pytest.raises(ValueError, match=r"\(P, 17, 3\)"):
        cv.pose3d_to_pose_array(np.zeros((2, 16, 3)), header())


def test_point_cloud2_layout_and_roundtrip():
    rng = np.random.default_rng(2)
    pose = rng.normal(size=(3, 17, 3))
    spread = rng.uniform(0, 0.1, (3, 17))
    ids = np.array([4, 9, 70000])
    msg = roundtrip(cv.pose3d_to_point_cloud2(pose, spread, ids, header(frame="opt")))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "spread", "person", "joint"]
    assert [f.datatype for f in msg.fields] == [PointField.FLOAT32] * 4 + [PointField.UINT32,
                                                                          PointField.UINT16]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 51, 24, 51 * 24)
    assert msg.is_dense and not msg.is_bigendian and msg.header.frame_id == "opt"
    pts = cv.point_cloud2_to_array(msg)
    np.testing.assert_allclose(np.stack([pts["x"], pts["y"], pts["z"]], -1), pose.reshape(-1, 3),
                               atol=1e-6)
    np.testing.assert_allclose(pts["spread"], spread.reshape(-1), atol=1e-7)
    assert pts["person"].tolist() == [4] * 17 + [9] * 17 + [70000] * 17
    assert pts["joint"].tolist() == list(range(17)) * 3
    with pytest.raises(ValueError, match="non-finite"):
        cv.pose3d_to_point_cloud2(pose, np.full((3, 17), np.nan), ids, header())


def test_point_cloud2_reader_honours_big_endian_and_checks_size():
    data = np.array([(1.5, 7)], dtype=[("a", ">f4"), ("b", ">u2")])
    msg = PointCloud2(height=1, width=1, point_step=6, row_step=6, is_bigendian=True,
                      fields=[PointField(name="a", offset=0, datatype=PointField.FLOAT32, count=1),
                              PointField(name="b", offset=4, datatype=PointField.UINT16, count=1)])
    msg.data = data.tobytes()
    out = cv.point_cloud2_to_array(roundtrip(msg))
    assert out["a"][0] == 1.5 and out["b"][0] == 7
    msg.width = 2
    with pytest.raises(cv.BadMessage, match="point_cloud_size"):
        cv.point_cloud2_to_array(msg)


def test_markers_structure_colours_and_ids():
    pose = np.random.default_rng(3).normal(size=(2, 17, 3))
    arr = roundtrip(cv.skeleton_markers(pose, np.array([3, 11]), header(frame="opt"), 0.3))
    assert isinstance(arr, MarkerArray) and len(arr.markers) == 4
    joints, bones = arr.markers[0], arr.markers[1]
    assert joints.type == Marker.SPHERE_LIST and bones.type == Marker.LINE_LIST
    assert [m.id for m in arr.markers] == [3, 3, 11, 11]
    assert {m.ns for m in arr.markers} == {"diffhpe/joints", "diffhpe/bones"}
    assert all(m.header.frame_id == "opt" and m.lifetime.nanosec == 300_000_000 for m in arr.markers)
    assert len(joints.points) == len(joints.colors) == 17
    assert len(bones.points) == len(bones.colors) == 2 * len(BONES)
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in arr.markers[2].points], pose[1], atol=1e-9)
    left, right = joints.colors[LEFT_JOINTS[0]], joints.colors[RIGHT_JOINTS[0]]
    assert (left.b, left.r) > (0.9, 0.0) and right.r > 0.9 and right.b < 0.5
    # the bone of a left child joint is drawn in the left colour, at both ends
    k = 2 * [c for c, _ in BONES].index(LEFT_JOINTS[1])
    assert bones.colors[k] == bones.colors[k + 1] == left
    pose[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        cv.skeleton_markers(pose, np.array([3, 11]), header(), 0.3)


def test_spread_markers_are_balls_of_radius_spread():
    pose = np.random.default_rng(4).normal(size=(2, 17, 3))
    spread = np.abs(np.random.default_rng(5).normal(size=(2, 17))) * 0.1
    spread[:, 0] = 0.0                       # the root: no spread, no ball
    spread[1, 13] = 0.0
    arr = roundtrip(cv.skeleton_markers(pose, np.array([3, 11]), header(frame="opt"), 0.3,
                                        spread_m=spread))
    balls = [m for m in arr.markers if m.ns == "diffhpe/spread"]
    assert len(arr.markers) == 4 + len(balls) and len(balls) == 16 + 15
    for m in balls:
        person, joint = divmod(m.id, 17)
        k = [3, 11].index(person)
        assert m.type == Marker.SPHERE and m.header.frame_id == "opt" and m.color.a < 0.5
        assert m.scale.x == m.scale.y == m.scale.z == pytest.approx(2 * spread[k, joint])
        np.testing.assert_allclose([m.pose.position.x, m.pose.position.y, m.pose.position.z],
                                   pose[k, joint], atol=1e-9)
    assert len({m.id for m in balls}) == len(balls)       # stable, unique ids per person and joint
    no_spread = cv.skeleton_markers(pose, np.array([3, 11]), header(), 0.3, spread_m=0 * spread)
    assert len(no_spread.markers) == 4                    # a deterministic model draws no ball
    with pytest.raises(ValueError, match="spread_m must be finite"):
        cv.skeleton_markers(pose, np.array([3, 11]), header(), 0.3, spread_m=spread[:, :5])
    with pytest.raises(ValueError, match="spread_m must be finite"):
        cv.skeleton_markers(pose, np.array([3, 11]), header(), 0.3, spread_m=-spread)


def camera_info(w=640, h=480, fx=500.0, fy=510.0, cx=320.0, cy=240.0):
    msg = CameraInfo(width=w, height=h)
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    return msg


def test_intrinsics_from_camera_info():
    k = cv.intrinsics_from_camera_info(roundtrip(camera_info()))
    assert k == cv.Intrinsics(640, 480, 500.0, 510.0, 320.0, 240.0)
    for bad, text in ((camera_info(fx=0.0), "focal"), (camera_info(w=0), "image size"),
                      (camera_info(cy=float("nan")), "finite")):
        with pytest.raises(cv.BadMessage, match=text) as e:
            cv.intrinsics_from_camera_info(bad)
        assert e.value.reason == "bad_camera_info"


def test_diagnostic_array():
    msg = roundtrip(cv.diagnostic_array(cv.s_to_stamp(5.0), "lifter", "hw", "warn", "hello",
                                        {"rate_hz": 29.97123, "n": 3, "backend": "onnxruntime"}))
    assert isinstance(msg, DiagnosticArray) and msg.header.stamp.sec == 5
    status = msg.status[0]
    assert status.level == DiagnosticStatus.WARN and status.message == "hello"
    assert cv.diagnostic_values(msg, "lifter") == {"rate_hz": "29.97", "n": "3",
                                                   "backend": "onnxruntime"}
    with pytest.raises(KeyError):
        cv.diagnostic_values(msg, "other")
    with pytest.raises(ValueError, match="level"):
        cv.diagnostic_array(cv.s_to_stamp(0.0), "x", "", "fine", "", {})


def test_values_beyond_float32_are_never_published():
    # Issue 10, item 2: 1e39 is finite in float64 but +inf in PointCloud2's float32 fields.
    pose = np.zeros((1, 17, 3))
    pose[0, 0, 2] = 1e39
    with pytest.raises(ValueError, match="float32"):
        cv.pose3d_to_point_cloud2(pose, np.zeros((1, 17)), np.array([0]), header())
    with pytest.raises(ValueError, match="float32"):
        cv.pose3d_to_pose_array(pose, header())
    with pytest.raises(ValueError, match="spread .* float32"):
        cv.pose3d_to_point_cloud2(np.zeros((1, 17, 3)), np.full((1, 17), 1e39), np.array([0]),
                                  header())

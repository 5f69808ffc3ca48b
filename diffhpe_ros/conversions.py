"""All conversions between ROS messages and numpy arrays used by the lifter node.

The lifting logic never sees a ROS message: the node converts here, calls the library, converts
back. Conventions: 2D keypoints travel as a `geometry_msgs/PoseArray` holding K poses per person
in consecutive blocks, `position.x/y` = pixels, `position.z` = confidence in [0, 1]; 3D poses as a
PoseArray of 17 H36M joints per person in metres (camera optical frame, REP 103).
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from diffhpe_models.skeleton import BONES, NUM_JOINTS, side_of

# The checks are ROS-free (checks.py); re-exported: the node and tools import them from here.
from diffhpe_ros.checks import (  # noqa: F401
    MAX_ABS_COORDINATE_PX,
    BadMessage,
    Intrinsics,
    Keypoints2D,
    checked_intrinsics,
    keypoints_from_xyz,
)

# --- stamps ----------------------------------------------------------------------------------

def stamp_to_s(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds (float)."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (exact, for keys and comparisons)."""
    return stamp.sec * 10**9 + stamp.nanosec


def s_to_stamp(t_s: float) -> Time:
    """Seconds -> builtin_interfaces/Time (nanosecond resolution, t_s >= 0)."""
    if not np.isfinite(t_s) or t_s < 0:
        raise ValueError(f"stamp must be a finite time >= 0 s, got {t_s}")
    ns = int(round(t_s * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def s_to_duration(t_s: float) -> Duration:
    """Seconds -> builtin_interfaces/Duration (t_s >= 0)."""
    stamp = s_to_stamp(t_s)
    return Duration(sec=stamp.sec, nanosec=stamp.nanosec)


# --- 2D keypoints ----------------------------------------------------------------------------

def keypoints_from_pose_array(msg: PoseArray, keypoints_per_person: int) -> Keypoints2D:
    """PoseArray of K poses per person (x, y = px, z = confidence) -> Keypoints2D.

    Raises BadMessage('wrong_pose_count') when the number of poses is not a multiple of K.
    An empty PoseArray is valid (no person): P = 0. Problems counted per keypoint:
    'nonfinite_keypoints' (x, y or z NaN/inf), 'coordinate_out_of_range' (|x| or |y| above
    MAX_ABS_COORDINATE_PX), 'confidence_out_of_range' (z outside [0, 1]).
    """
    xyz = np.array([(p.position.x, p.position.y, p.position.z) for p in msg.poses],
                   dtype=np.float64).reshape(-1, 3)
    return keypoints_from_xyz(xyz, keypoints_per_person)


def keypoints_to_pose_array(points_px: np.ndarray, conf: np.ndarray, header: Header) -> PoseArray:
    """(P, K, 2) px + (P, K) confidence -> PoseArray (the detector's output format)."""
    points_px = np.asarray(points_px, dtype=np.float64)
    conf = np.asarray(conf, dtype=np.float64)
    if points_px.ndim != 3 or points_px.shape[-1] != 2 or conf.shape != points_px.shape[:2]:
        raise ValueError(f"need points (P, K, 2) and conf (P, K), got {points_px.shape}, {conf.shape}")
    msg = PoseArray(header=header)
    msg.poses = [_pose(x, y, c) for (x, y), c in zip(points_px.reshape(-1, 2), conf.reshape(-1))]
    return msg


def _pose(x: float, y: float, z: float) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = float(x), float(y), float(z)
    pose.orientation.w = 1.0
    return pose


# --- 3D poses --------------------------------------------------------------------------------

FLOAT32_MAX = float(np.finfo(np.float32).max)  # PointCloud2 fields are float32

def pose3d_to_pose_array(pose_m: np.ndarray, header: Header) -> PoseArray:
    """(P, 17, 3) metres -> PoseArray of 17 poses per person (identity orientations)."""
    pose_m = _check_pose3d(pose_m)
    msg = PoseArray(header=header)
    msg.poses = [_pose(*xyz) for xyz in pose_m.reshape(-1, 3)]
    return msg


def pose_array_to_pose3d(msg: PoseArray) -> np.ndarray:
    """PoseArray of 17 poses per person -> (P, 17, 3) float32 metres."""
    n = len(msg.poses)
    if n % NUM_JOINTS != 0:
        raise BadMessage("wrong_pose_count", f"{n} poses is not a multiple of {NUM_JOINTS} joints")
    xyz = np.array([(p.position.x, p.position.y, p.position.z) for p in msg.poses], dtype=np.float32)
    return xyz.reshape(n // NUM_JOINTS, NUM_JOINTS, 3)


def _check_pose3d(pose_m: np.ndarray) -> np.ndarray:
    pose_m = np.asarray(pose_m, dtype=np.float64)
    if pose_m.ndim != 3 or pose_m.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"pose must be (P, {NUM_JOINTS}, 3), got {pose_m.shape}")
    if not np.isfinite(pose_m).all():
        raise ValueError("pose holds non-finite values; refusing to publish them")
    if np.abs(pose_m).max(initial=0.0) > FLOAT32_MAX:  # would be inf in the float32 fields
        raise ValueError("pose holds values beyond float32's range; refusing to publish them")
    return pose_m


# --- PointCloud2 -----------------------------------------------------------------------------

# x, y, z, spread (float32), person (uint32), joint (uint16); 2 bytes of padding to 24.
POINT_DTYPE = np.dtype({
    "names": ["x", "y", "z", "spread", "person", "joint"],
    "formats": ["<f4", "<f4", "<f4", "<f4", "<u4", "<u2"],
    "offsets": [0, 4, 8, 12, 16, 20],
    "itemsize": 24,
})
_NUMPY_OF_POINTFIELD = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2",
    PointField.UINT16: "u2", PointField.INT32: "i4", PointField.UINT32: "u4",
    PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}
_POINTFIELD_OF_NUMPY = {np.dtype(v).str[1:]: k for k, v in _NUMPY_OF_POINTFIELD.items()}


def pose3d_to_point_cloud2(pose_m: np.ndarray, spread_m: np.ndarray, person_ids: np.ndarray,
                           header: Header) -> PointCloud2:
    """(P, 17, 3) metres, (P, 17) spread metres, (P,) track ids -> PointCloud2 of P*17 points."""
    pose_m = _check_pose3d(pose_m)
    spread_m = np.asarray(spread_m, dtype=np.float64)
    person_ids = np.asarray(person_ids)
    p = pose_m.shape[0]
    if spread_m.shape != (p, NUM_JOINTS) or person_ids.shape != (p,):
        raise ValueError(f"need spread (P, 17) and ids (P,) for P={p}, got {spread_m.shape}, "
                         f"{person_ids.shape}")
    if not np.isfinite(spread_m).all() or np.abs(spread_m).max(initial=0.0) > FLOAT32_MAX:
        raise ValueError("spread holds non-finite values or values beyond float32's range; "
                         "refusing to publish them")
    points = np.zeros(p * NUM_JOINTS, dtype=POINT_DTYPE)
    points["x"], points["y"], points["z"] = (pose_m[..., i].reshape(-1) for i in range(3))
    points["spread"] = spread_m.reshape(-1)
    points["person"] = np.repeat(person_ids.astype(np.uint32), NUM_JOINTS)
    points["joint"] = np.tile(np.arange(NUM_JOINTS, dtype=np.uint16), p)
    return array_to_point_cloud2(points, header)


def array_to_point_cloud2(points: np.ndarray, header: Header) -> PointCloud2:
    """1-D structured array (little-endian fields) -> unorganised PointCloud2 (height 1)."""
    fields = []
    for name in points.dtype.names:
        dtype, offset = points.dtype.fields[name][:2]
        fields.append(PointField(name=name, offset=offset,
                                 datatype=_POINTFIELD_OF_NUMPY[dtype.str[1:]], count=1))
    msg = PointCloud2(header=header, height=1, width=len(points), fields=fields,
                      is_bigendian=False, point_step=points.dtype.itemsize,
                      row_step=points.dtype.itemsize * len(points), is_dense=True)
    msg.data = points.tobytes()
    return msg


def point_cloud2_to_array(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 -> 1-D structured array with one named field per PointField (count 1)."""
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.datatype not in _NUMPY_OF_POINTFIELD or f.count != 1:
            raise BadMessage("unsupported_point_field",
                             f"field {f.name!r}: datatype {f.datatype}, count {f.count}")
        names.append(f.name)
        formats.append(order + _NUMPY_OF_POINTFIELD[f.datatype])
        offsets.append(f.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": msg.point_step})
    n = msg.width * msg.height
    if len(msg.data) != n * msg.point_step:
        raise BadMessage("point_cloud_size", f"{len(msg.data)} bytes for {n} points of "
                         f"{msg.point_step} bytes")
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=n)


# --- markers ---------------------------------------------------------------------------------

SIDE_COLOURS = {  # RGBA; left/right as in most skeleton viewers (left blue, right red)
    "left": (0.15, 0.45, 1.0, 1.0),
    "right": (1.0, 0.3, 0.15, 1.0),
    "centre": (0.85, 0.85, 0.85, 1.0),
}
JOINT_DIAMETER_M = 0.05
BONE_WIDTH_M = 0.02
SPREAD_ALPHA = 0.25  # the spread balls are see-through: the skeleton stays visible inside


def skeleton_markers(pose_m: np.ndarray, person_ids: np.ndarray, header: Header,
                     lifetime_s: float, namespace: str = "diffhpe",
                     spread_m: np.ndarray | None = None) -> MarkerArray:
    """(P, 17, 3) metres + (P,) track ids -> MarkerArray.

    Per person a SPHERE_LIST of joints (ns '<namespace>/joints') and a LINE_LIST of bones
    (ns '<namespace>/bones'), both with id = track id so RViz updates a person in place;
    left/right coloured; they expire after `lifetime_s` so vanished persons disappear.
    With `spread_m` (P, 17) metres, each joint whose spread is > 0 also gets a see-through
    SPHERE of radius = spread (ns '<namespace>/spread', id = track id x 17 + joint): the
    diffusion model's uncertainty made visible (a hidden arm's balls swell). A SPHERE_LIST has
    one size for all its points, hence one marker per joint.
    """
    pose_m = _check_pose3d(pose_m)
    person_ids = np.asarray(person_ids)
    if person_ids.shape != (pose_m.shape[0],):
        raise ValueError(f"need {pose_m.shape[0]} person ids, got shape {person_ids.shape}")
    if spread_m is not None:
        spread_m = np.asarray(spread_m, dtype=np.float64)
        if spread_m.shape != pose_m.shape[:2] or not np.isfinite(spread_m).all() \
                or (spread_m < 0).any():
            raise ValueError(f"spread_m must be finite, >= 0 and {pose_m.shape[:2]}, got shape "
                             f"{spread_m.shape}")
    lifetime = s_to_duration(lifetime_s)
    joint_colours = [_colour(side_of(j)) for j in range(NUM_JOINTS)]
    # A bone takes the side of its child joint (the spine and neck stay neutral).
    bone_colours = [_colour(side_of(c)) for c, _ in BONES for _ in range(2)]
    markers = MarkerArray()
    for pose, pid in zip(pose_m, person_ids):
        joints = _marker(header, f"{namespace}/joints", int(pid), Marker.SPHERE_LIST, lifetime)
        joints.scale.x = joints.scale.y = joints.scale.z = JOINT_DIAMETER_M
        joints.points = [Point(x=x, y=y, z=z) for x, y, z in pose.tolist()]
        joints.colors = joint_colours
        bones = _marker(header, f"{namespace}/bones", int(pid), Marker.LINE_LIST, lifetime)
        bones.scale.x = BONE_WIDTH_M
        bones.points = [Point(x=x, y=y, z=z) for c, p in BONES for x, y, z in (pose[c], pose[p])]
        bones.colors = bone_colours
        markers.markers.extend([joints, bones])
    if spread_m is not None:
        for pose, spread, pid in zip(pose_m, spread_m, person_ids):
            for j in np.flatnonzero(spread > 0):
                ball = _marker(header, f"{namespace}/spread", int(pid) * NUM_JOINTS + int(j),
                               Marker.SPHERE, lifetime)
                ball.pose.position = Point(x=float(pose[j, 0]), y=float(pose[j, 1]),
                                           z=float(pose[j, 2]))
                ball.scale.x = ball.scale.y = ball.scale.z = 2.0 * float(spread[j])
                ball.color = _colour(side_of(int(j)), alpha=SPREAD_ALPHA)
                markers.markers.append(ball)
    return markers


def _colour(side: str, alpha: float | None = None) -> ColorRGBA:
    r, g, b, a = SIDE_COLOURS[side]
    return ColorRGBA(r=r, g=g, b=b, a=a if alpha is None else alpha)


def _marker(header: Header, ns: str, marker_id: int, kind: int, lifetime: Duration) -> Marker:
    m = Marker(header=header, ns=ns, id=marker_id, type=kind, action=Marker.ADD, lifetime=lifetime)
    m.pose.orientation.w = 1.0
    return m


# --- camera info -----------------------------------------------------------------------------

def intrinsics_from_camera_info(msg: CameraInfo) -> Intrinsics:
    """sensor_msgs/CameraInfo -> Intrinsics (from K). Raises BadMessage('bad_camera_info') unless
    the image size and K are physically sensible (checks.checked_intrinsics)."""
    return checked_intrinsics(msg.width, msg.height, msg.k)


# --- diagnostics -----------------------------------------------------------------------------

DIAGNOSTIC_LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN,
                     "error": DiagnosticStatus.ERROR, "stale": DiagnosticStatus.STALE}


def diagnostic_array(stamp: Time, name: str, hardware_id: str, level: str, message: str,
                     values: dict[str, object]) -> DiagnosticArray:
    """One DiagnosticStatus in a DiagnosticArray; values are stringified (floats to 4 digits)."""
    if level not in DIAGNOSTIC_LEVELS:
        raise ValueError(f"level must be one of {sorted(DIAGNOSTIC_LEVELS)}, got {level!r}")
    status = DiagnosticStatus(level=DIAGNOSTIC_LEVELS[level], name=name, message=message,
                              hardware_id=hardware_id)
    status.values = [KeyValue(key=k, value=_diag_value(v)) for k, v in values.items()]
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [status]
    return msg


def diagnostic_values(msg: DiagnosticArray, name: str) -> dict[str, str]:
    """The key/value pairs of the status called `name` (for tests and tools)."""
    for status in msg.status:
        if status.name == name:
            return {kv.key: kv.value for kv in status.values}
    raise KeyError(f"no diagnostic status named {name!r}")


def _diag_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)

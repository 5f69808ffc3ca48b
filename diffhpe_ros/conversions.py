"""All conversions between ROS messages and numpy arrays used by the lifter node.

The lifting logic never sees a ROS message: the node converts here, calls the library, converts
back. Conventions: 2D keypoints travel as a `geometry_msgs/PoseArray` holding K poses per person
in consecutive blocks, `position.x/y` = pixels, `position.z` = confidence in [0, 1]; 3D poses as a
PoseArray of 17 H36M joints per person in metres (camera optical frame, REP 103).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from diffhpe_models.skeleton import BONES, NUM_JOINTS, side_of


class BadMessage(ValueError):
    """A message that cannot be used at all; `reason` is a short key counted in diagnostics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


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

# Larger than any image: such a coordinate is garbage (and 1e39 would overflow float32 to inf).
MAX_ABS_COORDINATE_PX = 1e6


@dataclass
class Keypoints2D:
    """Keypoints of one message. points_px (P, K, 2) float32, conf (P, K) float32 in [0, 1] or NaN.

    Keypoints that were unusable (non-finite, |x| or |y| > MAX_ABS_COORDINATE_PX, confidence
    outside [0, 1]) have conf NaN and coordinates 0: NaN is below every threshold (see
    `confidence_mask`), so they are missing even with confidence_threshold 0, where a conf of 0
    would pass. `problems` counts them by reason.
    """

    points_px: np.ndarray
    conf: np.ndarray
    problems: dict[str, int] = field(default_factory=dict)


def keypoints_from_pose_array(msg: PoseArray, keypoints_per_person: int) -> Keypoints2D:
    """PoseArray of K poses per person (x, y = px, z = confidence) -> Keypoints2D.

    Raises BadMessage('wrong_pose_count') when the number of poses is not a multiple of K.
    An empty PoseArray is valid (no person): P = 0. Problems counted per keypoint:
    'nonfinite_keypoints' (x, y or z NaN/inf), 'coordinate_out_of_range' (|x| or |y| above
    MAX_ABS_COORDINATE_PX), 'confidence_out_of_range' (z outside [0, 1]).
    """
    k = int(keypoints_per_person)
    if k <= 0:
        raise ValueError(f"keypoints_per_person must be > 0, got {k}")
    n = len(msg.poses)
    if n % k != 0:
        raise BadMessage("wrong_pose_count",
                         f"{n} poses is not a multiple of {k} keypoints per person")
    flat = np.array([(p.position.x, p.position.y, p.position.z) for p in msg.poses],
                    dtype=np.float64).reshape(n // k, k, 3)
    points = flat[..., :2]
    conf = flat[..., 2]
    problems: dict[str, int] = {}
    nonfinite = ~np.isfinite(flat).all(axis=-1)
    if nonfinite.any():
        problems["nonfinite_keypoints"] = int(nonfinite.sum())
    # Checked in float64, before the cast to float32 could turn a huge value into inf.
    with np.errstate(invalid="ignore"):
        too_far = ~nonfinite & (np.abs(points) > MAX_ABS_COORDINATE_PX).any(axis=-1)
    if too_far.any():
        problems["coordinate_out_of_range"] = int(too_far.sum())
    out_of_range = ~nonfinite & ~too_far & ((conf < 0.0) | (conf > 1.0))
    if out_of_range.any():
        problems["confidence_out_of_range"] = int(out_of_range.sum())
    unusable = nonfinite | too_far | out_of_range
    points = np.where(unusable[..., None], 0.0, points)
    conf = np.where(unusable, np.nan, conf)
    return Keypoints2D(points.astype(np.float32), conf.astype(np.float32), problems)


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
    if not np.isfinite(spread_m).all():
        raise ValueError("spread holds non-finite values; refusing to publish them")
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


def skeleton_markers(pose_m: np.ndarray, person_ids: np.ndarray, header: Header,
                     lifetime_s: float, namespace: str = "diffhpe") -> MarkerArray:
    """(P, 17, 3) metres + (P,) track ids -> MarkerArray.

    Per person a SPHERE_LIST of joints (ns '<namespace>/joints') and a LINE_LIST of bones
    (ns '<namespace>/bones'), both with id = track id so RViz updates a person in place;
    left/right coloured; they expire after `lifetime_s` so vanished persons disappear.
    """
    pose_m = _check_pose3d(pose_m)
    person_ids = np.asarray(person_ids)
    if person_ids.shape != (pose_m.shape[0],):
        raise ValueError(f"need {pose_m.shape[0]} person ids, got shape {person_ids.shape}")
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
    return markers


def _colour(side: str) -> ColorRGBA:
    r, g, b, a = SIDE_COLOURS[side]
    return ColorRGBA(r=r, g=g, b=b, a=a)


def _marker(header: Header, ns: str, marker_id: int, kind: int, lifetime: Duration) -> Marker:
    m = Marker(header=header, ns=ns, id=marker_id, type=kind, action=Marker.ADD, lifetime=lifetime)
    m.pose.orientation.w = 1.0
    return m


# --- camera info -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the image the keypoints come from (pixels)."""

    width_px: int
    height_px: int
    fx: float
    fy: float
    cx: float
    cy: float


def intrinsics_from_camera_info(msg: CameraInfo) -> Intrinsics:
    """sensor_msgs/CameraInfo -> Intrinsics (from K). Raises BadMessage('bad_camera_info')."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.shape != (9,) or not np.isfinite(k).all():
        raise BadMessage("bad_camera_info", f"K must be 9 finite numbers, got {k.tolist()}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if msg.width <= 0 or msg.height <= 0:
        raise BadMessage("bad_camera_info", f"image size {msg.width}x{msg.height} px")
    if fx <= 0 or fy <= 0:
        raise BadMessage("bad_camera_info", f"focal lengths fx={fx}, fy={fy} must be > 0")
    return Intrinsics(int(msg.width), int(msg.height), float(fx), float(fy), float(cx), float(cy))


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

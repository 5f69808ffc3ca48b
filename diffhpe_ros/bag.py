"""ROS 2 bags without a ROS install: record live topics to MCAP, read MCAP or sqlite3 bags.

rosbags (pure Python) writes and reads the bag; rclpy gives and takes the same CDR bytes
(`raw=True` subscriptions, `publish(bytes)`), so nothing is deserialised on the way in.
A bag is a directory; it is written under a temporary name beside the target and renamed when
complete, so a crash never leaves a half-written bag under the real name.

A bag to replay is untrusted input: its message type strings are looked up in REPLAYABLE_TYPES,
never imported, and whatever a corrupt, truncated or foreign file makes the reader raise becomes
one BagError naming the bag and the problem.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

# Message definitions written into the MCAP schema records (std/geometry/sensor msgs are the
# same in Kilted as in the distro whose definitions rosbags ships).
TYPESTORE = get_typestore(Stores.ROS2_KILTED)


def msgtype_name(msg_class: type) -> str:
    """rclpy message class -> 'pkg/msg/Name' (e.g. geometry_msgs.msg.PoseArray)."""
    pkg = msg_class.__module__.split(".")[0]
    return f"{pkg}/msg/{msg_class.__name__}"


class BagError(ValueError):
    """A bag that cannot be replayed: not readable (corrupt, truncated, not a ROS 2 bag), empty,
    or holding a message type or a message that replay refuses."""


# What this package records and replays: 2D keypoints and 3D poses (PoseArray), camera_info,
# images, the lifter's point cloud, markers and diagnostics.
REPLAYABLE_TYPES: dict[str, type] = {
    msgtype_name(c): c
    for c in (PoseArray, CameraInfo, Image, PointCloud2, MarkerArray, DiagnosticArray)}


def msg_class_from_name(msgtype: str) -> type:
    """'pkg/msg/Name' -> the rclpy message class, for the types of REPLAYABLE_TYPES only.

    The name comes from the bag: importing it would import any module the bag names."""
    try:
        return REPLAYABLE_TYPES[msgtype]
    except (KeyError, TypeError):
        raise BagError(f"message type {msgtype!r} is not one that replay publishes "
                       f"(known: {', '.join(sorted(REPLAYABLE_TYPES))})") from None


class BagRecorder(Node):
    """Records `topics` ({topic: rclpy message class}) to the MCAP bag directory `path`.

    Subscribes best-effort (it receives from reliable and best-effort publishers alike) with a
    deep queue so that bursts are not dropped. Bag timestamps are receive times (ns, this node's
    clock), like `ros2 bag record`. Call `close()` to finish: only then does `path` appear.
    An existing bag at `path` is replaced.
    """

    def __init__(self, path: str | os.PathLike, topics: dict[str, type],
                 node_name: str = "bag_recorder", queue_depth: int = 100, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        if not topics:
            raise ValueError("BagRecorder needs at least one topic")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_parent = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._writer = Writer(self._tmp_parent / self.path.name, version=9,
                              storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self._closed = False
        self.counts: dict[str, int] = {}
        qos = QoSProfile(depth=queue_depth, reliability=qos_profile_sensor_data.reliability,
                         history=qos_profile_sensor_data.history)
        for topic, msg_class in topics.items():
            connection = self._writer.add_connection(topic, msgtype_name(msg_class), typestore=TYPESTORE)
            self.counts[topic] = 0
            self.create_subscription(
                msg_class, topic, lambda raw, c=connection, t=topic: self._write(c, t, raw), qos,
                raw=True)

    def _write(self, connection, topic: str, raw: bytes) -> None:
        stamp_ns = self.get_clock().now().nanoseconds
        with self._lock:
            if self._closed:
                return
            self._writer.write(connection, stamp_ns, raw)
            self.counts[topic] += 1

    def close(self) -> Path:
        """Finish the bag and move it to `path` (replacing an older bag there); returns `path`."""
        with self._lock:
            if self._closed:
                return self.path
            self._closed = True
            self._writer.close()
        if not any(self.counts.values()):
            self.get_logger().warning(f"bag {self.path}: no message was recorded")
        staged = self._tmp_parent / self.path.name
        old = None
        if self.path.exists():
            # A directory cannot be os.replace'd over a non-empty one: move the old bag aside first.
            old = self._tmp_parent / (self.path.name + ".old")
            os.replace(self.path, old)
        os.replace(staged, self.path)
        shutil.rmtree(self._tmp_parent, ignore_errors=True)
        return self.path

    def destroy_node(self) -> None:
        if hasattr(self, "_closed"):  # absent when __init__ failed
            self.close()
        super().destroy_node()


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str  # 'pkg/msg/Name'
    log_time_ns: int  # the bag's timestamp (receive time when recorded)
    raw: bytes  # CDR, as rclpy serialises it


def read_bag(path: str | os.PathLike, topics: list[str] | None = None) -> Iterator[BagMessage]:
    """Messages of a ROS 2 bag directory (MCAP or sqlite3), in timestamp order.

    topics: keep only these topics (all when None). Raises FileNotFoundError for a missing bag,
    BagError when a requested topic is not in it or the bag cannot be read (as it is iterated:
    a truncated file may fail after its first messages).
    """
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise FileNotFoundError(f"{path} is not a ROS 2 bag directory (no metadata.yaml)")
    try:
        with Reader(path) as reader:
            available = {c.topic for c in reader.connections}
            if topics is not None:
                missing = sorted(set(topics) - available)
                if missing:
                    raise BagError(f"bag {path} has no topic(s) {missing}; it has {sorted(available)}")
            connections = [c for c in reader.connections if topics is None or c.topic in topics]
            for connection, t_ns, raw in reader.messages(connections=connections):
                yield BagMessage(connection.topic, connection.msgtype, int(t_ns), bytes(raw))
    except BagError:
        raise
    except Exception as e:  # noqa: BLE001 - rosbags, sqlite3, struct... each raise their own
        raise BagError(f"bag {path} cannot be read: {type(e).__name__}: {e} (corrupt, truncated "
                       "or not a ROS 2 bag)") from e

"""Replay recorded topics (default `/keypoints2d`, `/camera_info`) from a bag into live nodes.

Messages go out at their recorded spacing divided by `rate` (bag timestamps = receive times, as
`ros2 bag play` does). With `restamp` (default), every header stamp is shifted by one constant so
that the first message carries "now": relative timing is kept exactly, and a live lifter sees
fresh stamps (latency = now - stamp stays meaningful). Without it the recorded bytes are
published untouched.

Parameters: bag_path (str, required), topics (string array), rate (float, 1.0),
restamp (bool, true), loop (bool, false), start_delay_s (float, 0.5: lets subscribers connect).
"""
from __future__ import annotations

import sys

import threading
import time

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message

from diffhpe_ros.entry import run_node
from diffhpe_ros.bag import msg_class_from_name, read_bag

DEFAULT_TOPICS = ["/keypoints2d", "/camera_info"]


def _stamp_ns(stamp: Time) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def _time_msg(ns: int) -> Time:
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


class BagReplay(Node):
    """Publishes a bag's messages from a background thread; `finished` is set at the end.

    The whole selection is read into memory at start (keypoint streams are small: ~1 kB a frame).
    `sent` counts published messages per topic.
    """

    def __init__(self, node_name: str = "replay", **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("bag_path", ""), ("topics", DEFAULT_TOPICS), ("rate", 1.0), ("restamp", True),
            ("loop", False), ("start_delay_s", 0.5))}
        if not p["bag_path"]:
            raise ValueError("replay: parameter bag_path is required")
        if not p["rate"] > 0:
            raise ValueError(f"replay: rate must be > 0, got {p['rate']}")
        self._messages = list(read_bag(p["bag_path"], list(p["topics"])))
        if not self._messages:
            raise ValueError(f"replay: bag {p['bag_path']} holds no messages on {list(p['topics'])}")
        self._rate, self._restamp, self._loop = p["rate"], p["restamp"], p["loop"]
        self._start_delay_s = p["start_delay_s"]
        self._classes = {m.topic: msg_class_from_name(m.msgtype) for m in self._messages}
        self._topic_pubs = {t: self.create_publisher(c, t, QoSProfile(depth=100))
                            for t, c in self._classes.items()}
        self._has_header = {t: "header" in c.get_fields_and_field_types() for t, c in self._classes.items()}
        self.sent = {t: 0 for t in self._classes}
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bag_replay", daemon=True)
        span_s = (self._messages[-1].log_time_ns - self._messages[0].log_time_ns) / 1e9
        self.get_logger().info(
            f"{len(self._messages)} messages over {span_s:.2f} s on {sorted(self._classes)}, rate {self._rate}")
        self._thread.start()

    def _run(self) -> None:
        time.sleep(self._start_delay_s)
        while not self._stop.is_set():
            self._play_once()
            if not self._loop:
                break
        self.finished.set()

    def _play_once(self) -> None:
        t0_bag = self._messages[0].log_time_ns
        t0_wall = time.monotonic()
        stamp_shift_ns = None
        for m in self._messages:
            due = t0_wall + (m.log_time_ns - t0_bag) / 1e9 / self._rate
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._restamp and self._has_header[m.topic]:
                msg = deserialize_message(m.raw, self._classes[m.topic])
                if stamp_shift_ns is None:
                    stamp_shift_ns = self.get_clock().now().nanoseconds - _stamp_ns(msg.header.stamp)
                msg.header.stamp = _time_msg(_stamp_ns(msg.header.stamp) + stamp_shift_ns)
                self._topic_pubs[m.topic].publish(msg)
            else:
                self._topic_pubs[m.topic].publish(m.raw)
            self.sent[m.topic] += 1

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):  # absent when __init__ failed
            self._stop.set()
            self._thread.join(timeout=2.0)
        super().destroy_node()


def main(args=None) -> int:
    """`replay` entry point: publish the bag, then exit (or Ctrl-C)."""
    return run_node(BagReplay, "replay", args, until=lambda node: node.finished)

if __name__ == "__main__":
    sys.exit(main())

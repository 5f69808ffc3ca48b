"""Replay recorded topics (default `/keypoints2d`, `/camera_info`) from a bag into live nodes.

Messages go out at their recorded spacing divided by `rate` (bag timestamps = receive times, as
`ros2 bag play` does). With `restamp` (default), every header stamp is shifted by one constant so
that the reference message carries the time it is published: relative timing is kept exactly,
and a live lifter sees fresh stamps (latency = now - stamp stays meaningful). The reference is
the first message with a non-zero stamp on the first listed topic that has one (by default
/keypoints2d): a camera_info stamped 0 ("unset") must not set the shift, or real stamps would be
pushed past the int32 seconds of builtin_interfaces/Time. Zero stamps stay zero; a message whose
shifted stamp would not fit [0, 2^31) s is not published (counted in `refused`, warned once).
Without `restamp` the recorded bytes are published untouched.

Parameters: bag_path (str, required), topics (string array), rate (float, 1.0),
restamp (bool, true), loop (bool, false), start_delay_s (float, 0.5: lets subscribers connect).

The bag is checked before anything is published: a missing, corrupt, truncated or empty bag, a
message type outside bag.REPLAYABLE_TYPES or a message that does not deserialize as its type
stops `replay` with one line naming the problem and exit code 2.
"""
from __future__ import annotations

import sys
import threading
import time

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message

from diffhpe_ros.bag import BagError, BagMessage, msg_class_from_name, msgtype_name, read_bag
from diffhpe_ros.conversions import stamp_to_ns
from diffhpe_ros.entry import run_node

DEFAULT_TOPICS = ["/keypoints2d", "/camera_info"]


def _time_msg(ns: int) -> Time:
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


MAX_STAMP_NS = 2**31 * 10**9  # builtin_interfaces/Time.sec is an int32


def check_messages(bag_path: str, messages: list[BagMessage], classes: dict[str, type]) -> None:
    """Raise BagError for the first message that is not a valid message of its topic's type
    (once published, a garbage message would reach every subscriber)."""
    for i, m in enumerate(messages):
        if m.msgtype != msgtype_name(classes[m.topic]):
            raise BagError(f"replay: bag {bag_path}: topic {m.topic} holds both "
                           f"{msgtype_name(classes[m.topic])} and {m.msgtype} messages")
        try:
            deserialize_message(m.raw, classes[m.topic])
        except Exception as e:  # noqa: BLE001 - rclpy raises RMWError and others
            raise BagError(f"replay: bag {bag_path}: message {i} ({m.topic}, bag time "
                           f"{m.log_time_ns} ns) is not a valid {m.msgtype}: {e}") from None


class BagReplay(Node):
    """Publishes a bag's messages from a background thread; `finished` is set at the end.

    The whole selection is read into memory at start (keypoint streams are small: ~1 kB a frame).
    `sent` counts published messages per topic, `refused` those whose restamped header would not
    fit a Time. A failure in the playing thread is logged, and `finished` is set all the same.
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
            raise BagError(f"replay: bag {p['bag_path']} holds no messages on {list(p['topics'])}")
        self._rate, self._restamp, self._loop = p["rate"], p["restamp"], p["loop"]
        self._start_delay_s = p["start_delay_s"]
        self._classes = {m.topic: msg_class_from_name(m.msgtype) for m in self._messages}
        check_messages(p["bag_path"], self._messages, self._classes)
        self._topic_pubs = {t: self.create_publisher(c, t, QoSProfile(depth=100))
                            for t, c in self._classes.items()}
        self._has_header = {t: "header" in c.get_fields_and_field_types() for t, c in self._classes.items()}
        self.sent = {t: 0 for t in self._classes}
        self.refused = {t: 0 for t in self._classes}
        self.error: BaseException | None = None
        self._topics = list(p["topics"])
        self._reference = self._reference_message() if self._restamp else None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bag_replay", daemon=True)
        span_s = (self._messages[-1].log_time_ns - self._messages[0].log_time_ns) / 1e9
        self.get_logger().info(
            f"{len(self._messages)} messages over {span_s:.2f} s on {sorted(self._classes)}, rate {self._rate}")
        self._thread.start()

    def _reference_message(self) -> tuple[int, int] | None:
        """(log time ns, header stamp ns) of the message that sets the restamp shift; None when
        no message has a non-zero stamp (then there is nothing to shift)."""
        order = {t: i for i, t in enumerate(self._topics)}
        firsts: dict[str, tuple[int, int]] = {}
        for m in self._messages:
            if m.topic in firsts or not self._has_header[m.topic]:
                continue
            stamp = stamp_to_ns(deserialize_message(m.raw, self._classes[m.topic]).header.stamp)
            if stamp > 0:
                firsts[m.topic] = (m.log_time_ns, stamp)
        if not firsts:
            return None
        return firsts[min(firsts, key=lambda t: order.get(t, len(order)))]

    def _run(self) -> None:
        try:
            if not self._stop.wait(self._start_delay_s):
                while not self._stop.is_set():
                    self._play_once()
                    if not self._loop:
                        break
        except BaseException as e:  # whatever happens, the waiters are released
            self.error = e
            self.get_logger().error(f"replay stopped: {type(e).__name__}: {e}")
        finally:
            self.finished.set()

    def _play_once(self) -> None:
        t0_bag = self._messages[0].log_time_ns
        t0_wall = time.monotonic()
        shift_ns = 0
        if self._reference is not None:
            # The reference message is stamped with the clock's time at its due moment.
            ref_log_ns, ref_stamp_ns = self._reference
            due_ns = (ref_log_ns - t0_bag) / self._rate
            shift_ns = self.get_clock().now().nanoseconds + round(due_ns) - ref_stamp_ns
        for m in self._messages:
            due = t0_wall + (m.log_time_ns - t0_bag) / 1e9 / self._rate
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._restamp and self._has_header[m.topic]:
                msg = deserialize_message(m.raw, self._classes[m.topic])
                stamp = stamp_to_ns(msg.header.stamp)
                if stamp != 0:  # an unset stamp stays unset
                    stamp += shift_ns
                    if not 0 <= stamp < MAX_STAMP_NS:
                        self._refuse(m.topic, stamp_to_ns(msg.header.stamp), shift_ns)
                        continue
                    msg.header.stamp = _time_msg(stamp)
                self._topic_pubs[m.topic].publish(msg)
            else:
                self._topic_pubs[m.topic].publish(m.raw)
            self.sent[m.topic] += 1

    def _refuse(self, topic: str, stamp_ns: int, shift_ns: int) -> None:
        self.refused[topic] += 1
        if self.refused[topic] == 1:
            self.get_logger().warning(
                f"{topic}: recorded stamp {stamp_ns / 1e9:.3f} s shifted by {shift_ns / 1e9:.3f} s "
                "does not fit a ROS Time (0 to 2^31 s): message not published (the stamps of this "
                "topic do not share the time base of the reference topic; further ones are only "
                "counted)")

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):  # absent when __init__ failed
            self._stop.set()
            self._thread.join(timeout=2.0)
        super().destroy_node()


def main(args=None) -> int:
    """`replay` entry point: publish the bag, then exit (or Ctrl-C). Exit code 2 when the bag
    cannot be replayed (one line says why), 1 when playing failed after the start."""
    started: list[BagReplay] = []

    def make() -> BagReplay:
        started.append(BagReplay())
        return started[-1]

    code = run_node(make, "replay", args, until=lambda node: node.finished)
    return 1 if code == 0 and started and started[0].error is not None else code

if __name__ == "__main__":
    sys.exit(main())

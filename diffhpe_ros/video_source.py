"""Video file -> `image` (sensor_msgs/Image, bgr8) + `camera_info`, as a camera would, or paced.

Two ways to play the file:
- real time (default): a timer publishes at fps * rate_factor, each frame stamped with the time it
  is published, like a camera driver. A consumer slower than that skips frames (the detector keeps
  only the newest image), as it would with a camera; when decoding itself falls a frame or more
  behind the file's clock, the frames already due are passed over without being converted.
- paced (`pace_topic` set, e.g. 'keypoints2d'): the next frame is published as soon as a
  geometry_msgs/PoseArray with the stamp of the previous one arrives on `pace_topic` (the
  detector's answer), so a slow detector processes every frame instead of skipping. Stamps then
  follow the video's own time base (start time + the frame's presentation time), not the clock.
  If no answer comes within pace_timeout_s the frame is sent again (a best-effort image was lost).
Either way nothing is published before `image` has a subscriber (wait_for_subscriber): the
detector subscribes only once its model is loaded, so no frame is sent into the void. While the
detector works on a frame the source already decodes the next one.

`camera_info` carries the same header. Intrinsics come from parameters, or, when none are given,
from a field-of-view guess (see `guess_intrinsics`): a lifter only needs a plausible focal length
to place the root, and most phone/webcam lenses have a 55-70 degree horizontal field of view.

Parameters (all read once at start):
  video_path (str, required), loop (bool, false), rate_factor (float, 1.0: play speed, real time),
  scale (float, 1.0: resize factor for published frames; intrinsics are scaled with it),
  max_frames (int, 0 = all), frame_id (str, 'camera_optical_frame'),
  fov_deg (float, 60.0: horizontal field of view for the guess),
  fx, fy, cx, cy (float, 0 = guess; in pixels of the video file, before `scale`),
  wait_for_subscriber (bool, true), drop_late_frames (bool, true: real time passes over frames
  already due), pace_topic (str, '': real time), pace_timeout_s (float, 5.0).
"""
from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from diffhpe_ros.conversions import stamp_to_ns
from diffhpe_ros.entry import run_node
from diffhpe_ros.images import image_msg_from_bgr
from diffhpe_ros.video_frames import Frame, VideoFrames


def guess_intrinsics(width_px: int, height_px: int, fov_deg: float) -> tuple[float, float, float, float]:
    """Pinhole guess (fx, fy, cx, cy) in pixels: f = width / (2 tan(fov / 2)), square pixels,
    principal point at the image centre."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    f = width_px / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return f, f, width_px / 2.0, height_px / 2.0


def published_intrinsics(width_px: int, height_px: int, scale: float, fov_deg: float = 60.0,
                         fx: float = 0.0, fy: float = 0.0, cx: float = 0.0,
                         cy: float = 0.0) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the frames published at `scale` from a width x height video: the
    given ones (pixels of the file; fy defaults to fx, the principal point to the centre) or,
    when fx is 0, the field-of-view guess."""
    if fx > 0:
        intr = (fx, fy if fy > 0 else fx, cx if cx > 0 else width_px / 2.0,
                cy if cy > 0 else height_px / 2.0)
    else:
        intr = guess_intrinsics(width_px, height_px, fov_deg)
    return tuple(v * scale for v in intr)


def camera_info_msg(header: Header, width_px: int, height_px: int,
                    fx: float, fy: float, cx: float, cy: float) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera (plumb_bob with zero distortion)."""
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = int(width_px), int(height_px)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


class VideoSource(Node):
    """Publishes a video file frame by frame, in real time or paced (see the module docstring).

    `finished` is set when the last frame has been published (never with loop=True);
    `published` lists (stamp_ns, frame_index) of every frame sent, so that an in-process consumer
    (the demo's renderer) can find the frame behind a stamp; `decode_ms` the decode (+ resize)
    time of each frame; `resent` counts frames sent again after a pace timeout, `skipped` the
    frames passed over in real time because decoding fell behind the file's clock.
    """

    def __init__(self, node_name: str = "video_source", **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("video_path", ""), ("loop", False), ("rate_factor", 1.0), ("scale", 1.0),
            ("max_frames", 0), ("frame_id", "camera_optical_frame"), ("fov_deg", 60.0),
            ("fx", 0.0), ("fy", 0.0), ("cx", 0.0), ("cy", 0.0), ("wait_for_subscriber", True),
            ("drop_late_frames", True), ("pace_topic", ""), ("pace_timeout_s", 5.0))}
        path = Path(p["video_path"])
        if not p["video_path"] or not path.is_file():
            raise FileNotFoundError(f"video_source: parameter video_path={p['video_path']!r} is not a file")
        if p["rate_factor"] <= 0 or p["max_frames"] < 0 or p["pace_timeout_s"] <= 0:
            raise ValueError("video_source: rate_factor and pace_timeout_s must be > 0 and "
                             f"max_frames >= 0, got {p['rate_factor']}, {p['pace_timeout_s']}, "
                             f"{p['max_frames']}")
        try:
            self._video = VideoFrames(path, p["scale"])
        except ValueError as e:
            raise ValueError(f"video_source: {e}") from None
        v = self._video
        self.fps, self.scale = v.fps, v.scale
        self.width_px, self.height_px = v.width_px, v.height_px
        src_w, src_h = v.source_width_px, v.source_height_px
        # (fx, fy, cx, cy) in published pixels
        self.intrinsics = published_intrinsics(src_w, src_h, self.scale, p["fov_deg"],
                                               p["fx"], p["fy"], p["cx"], p["cy"])
        self._loop, self._max_frames, self._frame_id = p["loop"], p["max_frames"], p["frame_id"]
        self._wait_for_subscriber = p["wait_for_subscriber"]
        self._pace_timeout_s = float(p["pace_timeout_s"])
        self.paced = bool(p["pace_topic"])
        self._sent = 0
        self.resent = 0
        self.skipped = 0
        self._drop_late = bool(p["drop_late_frames"])
        self._rate = self.fps * p["rate_factor"]  # frames of the file per second (real time)
        self._play_start: float | None = None
        self._played = 0  # frames of the file published or skipped, real time
        self.published: list[tuple[int, int]] = []
        self.decode_ms: list[float] = []
        self.finished = threading.Event()
        self._next = None  # the decoded frame to publish next
        self._in_flight: tuple[int, float, Image, CameraInfo] | None = None  # stamp, sent at, msgs
        self._video_start_ns: int | None = None
        self._loop_offset_s = 0.0
        self._said_waiting = False
        self._image_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", QoSProfile(depth=10))
        if self.paced:
            self.create_subscription(PoseArray, p["pace_topic"], self._on_pace, QoSProfile(depth=10))
            period_s = 0.02  # only starts the first frame and watches the pace timeout
            how = f"paced by {p['pace_topic']}, stamps in the video's time base"
        else:
            period_s = 1.0 / (self.fps * p["rate_factor"])
            how = f"every {period_s * 1e3:.1f} ms"
        self._timer = self.create_timer(period_s, self._on_timer)
        self.get_logger().info(
            f"{path.name}: {src_w}x{src_h} @ {self.fps:.2f} fps -> {self.width_px}x{self.height_px} "
            f"{how}, fx={self.intrinsics[0]:.1f} px")

    def read_frame(self) -> np.ndarray | None:
        """Next (H, W, 3) uint8 BGR frame at the published size, or None at the end of the file."""
        frame = self._read()
        return None if frame is None else frame.bgr

    def _read(self) -> Frame | None:
        """Next frame (rewinding once when looping), or None at the end."""
        frame = self._video.read()
        if frame is None and self._loop and self._video.next_index > 0:
            self._loop_offset_s += self._video.last_time_s + 1.0 / self.fps
            self._video.rewind()
            frame = self._video.read()
        if frame is not None:
            self.decode_ms.append(frame.decode_ms)
        return frame

    def _subscribed(self) -> bool:
        if not self._wait_for_subscriber or self._image_pub.get_subscription_count() > 0:
            return True
        if not self._said_waiting:
            self._said_waiting = True
            self.get_logger().info("waiting for a subscriber on image before the first frame")
        return False

    def _on_timer(self) -> None:
        if self.finished.is_set() or not self._subscribed():
            return
        if not self.paced:
            if self._drop_late:
                self._catch_up()
            self._publish_next()
        elif self._in_flight is None:
            self._publish_next()  # the first frame
        elif time.monotonic() - self._in_flight[1] > self._pace_timeout_s:
            stamp_ns, _, image, info = self._in_flight
            self.resent += 1
            self.get_logger().warning(f"no answer on the pace topic within {self._pace_timeout_s:g} s: "
                                      "sending the frame again", throttle_duration_sec=5.0)
            self._in_flight = (stamp_ns, time.monotonic(), image, info)
            self._info_pub.publish(info)
            self._image_pub.publish(image)

    def _catch_up(self) -> None:
        """Real time: when decoding fell behind the file's clock by a frame or more, pass over
        the frames that are already due (not decoded into images nobody will see), as a camera
        drops frames instead of slowing time down."""
        now = time.monotonic()
        if self._play_start is None:
            self._play_start = now
            return
        behind = int((now - self._play_start) * self._rate) - self._played
        if behind > 0:
            n = self._video.skip(behind)
            self.skipped += n
            self._played += n

    def _on_pace(self, msg: PoseArray) -> None:
        if self._in_flight is not None and stamp_to_ns(msg.header.stamp) == self._in_flight[0]:
            self._in_flight = None
            self._publish_next()

    def _stamp(self, frame: Frame):
        if not self.paced:
            return self.get_clock().now().to_msg()
        if self._video_start_ns is None:
            self._video_start_ns = self.get_clock().now().nanoseconds
        ns = self._video_start_ns + round((self._loop_offset_s + frame.time_s) * 1e9)
        return Time(nanoseconds=ns).to_msg()

    def _publish_next(self) -> None:
        frame = self._next if self._next is not None else self._read()
        self._next = None
        self._played += 1
        if frame is None:
            self._finish()
            return
        header = Header(frame_id=self._frame_id, stamp=self._stamp(frame))
        image = image_msg_from_bgr(frame.bgr, header)
        info = camera_info_msg(header, self.width_px, self.height_px, *self.intrinsics)
        stamp_ns = stamp_to_ns(header.stamp)
        if self.paced:
            self._in_flight = (stamp_ns, time.monotonic(), image, info)
        # camera_info first: a consumer of the image then already knows the camera
        self._info_pub.publish(info)
        self._image_pub.publish(image)
        self.published.append((stamp_ns, frame.index))
        self._sent += 1
        if self._max_frames and self._sent >= self._max_frames:
            self._finish()
        elif self.paced:
            self._next = self._read()  # decoded while the detector works on this one

    def _finish(self) -> None:
        self._timer.cancel()
        self._in_flight = None
        self.finished.set()
        skipped = f" ({self.skipped} passed over: decoding fell behind)" if self.skipped else ""
        self.get_logger().info(f"published {self._sent} frames{skipped}; done")

    def destroy_node(self) -> None:
        if getattr(self, "_video", None) is not None:  # absent when __init__ failed
            self._video.close()
        super().destroy_node()


def main(args=None) -> int:
    """`video_source` entry point: spin until the video ends (or Ctrl-C)."""
    return run_node(VideoSource, "video_source", args, until=lambda node: node.finished)

if __name__ == "__main__":
    sys.exit(main())

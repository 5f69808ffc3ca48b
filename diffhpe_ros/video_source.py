"""Video file -> `image` (sensor_msgs/Image, bgr8) + `camera_info`, at the file's own frame rate.

A stand-in for a camera driver: each frame is stamped with the time it is published, and
`camera_info` carries the same header. Intrinsics come from parameters, or, when none are given,
from a field-of-view guess (see `guess_intrinsics`): a lifter only needs a plausible focal length
to place the root, and most phone/webcam lenses have a 55-70 degree horizontal field of view.

Parameters (all read once at start):
  video_path (str, required), loop (bool, false), rate_factor (float, 1.0: play speed),
  scale (float, 1.0: resize factor for published frames; intrinsics are scaled with it),
  max_frames (int, 0 = all), frame_id (str, 'camera_optical_frame'),
  fov_deg (float, 60.0: horizontal field of view for the guess),
  fx, fy, cx, cy (float, 0 = guess; in pixels of the video file, before `scale`).
"""
from __future__ import annotations

import sys

import math
import threading
from pathlib import Path

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from diffhpe_ros.entry import run_node
from diffhpe_ros.images import image_msg_from_bgr


def guess_intrinsics(width_px: int, height_px: int, fov_deg: float) -> tuple[float, float, float, float]:
    """Pinhole guess (fx, fy, cx, cy) in pixels: f = width / (2 tan(fov / 2)), square pixels,
    principal point at the image centre."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    f = width_px / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return f, f, width_px / 2.0, height_px / 2.0


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
    """Publishes a video file frame by frame on a timer at fps * rate_factor.

    `finished` is set when the last frame has been published (never with loop=True);
    `published` lists (stamp_ns, frame_index) of every frame sent, so that an in-process consumer
    (the demo's renderer) can find the frame behind a stamp.
    """

    def __init__(self, node_name: str = "video_source", **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("video_path", ""), ("loop", False), ("rate_factor", 1.0), ("scale", 1.0),
            ("max_frames", 0), ("frame_id", "camera_optical_frame"), ("fov_deg", 60.0),
            ("fx", 0.0), ("fy", 0.0), ("cx", 0.0), ("cy", 0.0))}
        path = Path(p["video_path"])
        if not p["video_path"] or not path.is_file():
            raise FileNotFoundError(f"video_source: parameter video_path={p['video_path']!r} is not a file")
        if p["rate_factor"] <= 0 or p["scale"] <= 0 or p["max_frames"] < 0:
            raise ValueError("video_source: rate_factor and scale must be > 0 and max_frames >= 0, got "
                             f"{p['rate_factor']}, {p['scale']}, {p['max_frames']}")
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise ValueError(f"video_source: OpenCV cannot open {path}")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"video_source: {path} has no usable frame rate ({self.fps})")
        src_w = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        src_h = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.scale = float(p["scale"])
        self.width_px, self.height_px = round(src_w * self.scale), round(src_h * self.scale)
        if p["fx"] > 0:
            fy = p["fy"] if p["fy"] > 0 else p["fx"]
            cx = p["cx"] if p["cx"] > 0 else src_w / 2.0
            cy = p["cy"] if p["cy"] > 0 else src_h / 2.0
            intr = (p["fx"], fy, cx, cy)
        else:
            intr = guess_intrinsics(src_w, src_h, p["fov_deg"])
        self.intrinsics = tuple(v * self.scale for v in intr)  # (fx, fy, cx, cy) published pixels
        self._loop, self._max_frames, self._frame_id = p["loop"], p["max_frames"], p["frame_id"]
        self._frame_index = 0
        self._sent = 0
        self.published: list[tuple[int, int]] = []
        self.finished = threading.Event()
        self._image_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", QoSProfile(depth=10))
        period_s = 1.0 / (self.fps * p["rate_factor"])
        self._timer = self.create_timer(period_s, self._on_timer)
        self.get_logger().info(
            f"{path.name}: {src_w}x{src_h} @ {self.fps:.2f} fps -> {self.width_px}x{self.height_px} "
            f"every {period_s * 1e3:.1f} ms, fx={self.intrinsics[0]:.1f} px")

    def read_frame(self) -> np.ndarray | None:
        """Next (H, W, 3) uint8 BGR frame at the published size, or None at the end of the file."""
        ok, frame = self._capture.read()
        if not ok:
            return None
        if self.scale != 1.0:
            frame = cv2.resize(frame, (self.width_px, self.height_px), interpolation=cv2.INTER_AREA)
        return frame

    def _on_timer(self) -> None:
        if self.finished.is_set():
            return
        frame = self.read_frame()
        if frame is None and self._loop and self._frame_index > 0:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._frame_index = 0
            frame = self.read_frame()
        if frame is None:
            self._finish()
            return
        header = Header(frame_id=self._frame_id, stamp=self.get_clock().now().to_msg())
        self._image_pub.publish(image_msg_from_bgr(frame, header))
        self._info_pub.publish(camera_info_msg(header, self.width_px, self.height_px, *self.intrinsics))
        self.published.append((header.stamp.sec * 10**9 + header.stamp.nanosec, self._frame_index))
        self._frame_index += 1
        self._sent += 1
        if self._max_frames and self._sent >= self._max_frames:
            self._finish()

    def _finish(self) -> None:
        self._timer.cancel()
        self.finished.set()
        self.get_logger().info(f"published {self._sent} frames; done")

    def destroy_node(self) -> None:
        if getattr(self, "_capture", None) is not None:  # absent when __init__ failed
            self._capture.release()
        super().destroy_node()


def main(args=None) -> int:
    """`video_source` entry point: spin until the video ends (or Ctrl-C)."""
    return run_node(VideoSource, "video_source", args, until=lambda node: node.finished)

if __name__ == "__main__":
    sys.exit(main())

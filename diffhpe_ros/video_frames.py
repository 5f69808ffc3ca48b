"""Frames of a video file with their own time stamps, resized on the way out. No ROS here.

The one reader of the video source, the offline demo, its renderer and the benchmarks: every
frame comes with its index and its presentation time in the file's own time base (OpenCV's
CAP_PROP_POS_MSEC after the read; index / fps when the backend does not report it), and a frame
that nobody will process is skipped with `grab()` (demuxed and decoded, never converted or resized).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Frame:
    index: int  # 0-based position in the file
    time_s: float  # presentation time in the file's time base (first frame: 0)
    bgr: np.ndarray  # (H, W, 3) uint8 at the reader's output size
    decode_ms: float  # read + resize


def scaled_size(width_px: int, height_px: int, scale: float, what: str) -> tuple[int, int]:
    """(w, h) of a width x height frame resized by `scale`; ValueError naming `what` when the
    scale is not a positive number or leaves less than 1 pixel on a side."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"{what}: scale must be a positive number, got {scale!r}")
    w, h = round(width_px * scale), round(height_px * scale)
    if w < 1 or h < 1:
        smallest = 1.0 / min(width_px, height_px)
        raise ValueError(f"{what}: scale={scale:g} makes the {width_px}x{height_px} video {w}x{h} "
                         f"pixels; use a scale of at least {smallest:.2g}")
    return w, h


class VideoFrames:
    """Sequential reader of one video file: `next_index` is the index of the next frame,
    `last_time_s` the time of the last one read or skipped. Raises FileNotFoundError / ValueError
    (naming the file) when it is missing, unreadable or has no usable frame rate or size."""

    def __init__(self, path: str | Path, scale: float = 1.0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: video file not found")
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise ValueError(f"OpenCV cannot open {self.path}")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        if not (self.fps > 0 and math.isfinite(self.fps)):
            self.close()
            raise ValueError(f"{self.path} has no usable frame rate ({self.fps})")
        self.source_width_px = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.source_height_px = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.source_width_px < 1 or self.source_height_px < 1:
            self.close()
            raise ValueError(f"{self.path}: OpenCV reports a {self.source_width_px}x"
                             f"{self.source_height_px} frame size")
        # frame count from the container: a hint (progress bars), not a promise
        self.frame_count = max(int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.scale = float(scale)
        self.width_px, self.height_px = scaled_size(self.source_width_px, self.source_height_px,
                                                    scale, str(self.path.name))
        self.next_index = 0
        self.last_time_s = -math.inf

    def _time_s(self, index: int) -> float:
        pos_ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)
        t = pos_ms / 1e3 if math.isfinite(pos_ms) else math.nan
        if not t > self.last_time_s:
            t = index / self.fps  # the backend does not report times: the nominal grid
        self.last_time_s = t
        return t

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the file."""
        t0 = time.perf_counter()
        ok, frame = self._capture.read()
        if not ok:
            return None
        index = self.next_index
        self.next_index += 1
        time_s = self._time_s(index)
        if (self.width_px, self.height_px) != (self.source_width_px, self.source_height_px):
            frame = cv2.resize(frame, (self.width_px, self.height_px), interpolation=cv2.INTER_AREA)
        return Frame(index, time_s, frame, (time.perf_counter() - t0) * 1e3)

    def skip(self, n: int = 1) -> int:
        """Pass over the next n frames without converting them; returns how many there were."""
        skipped = 0
        for _ in range(n):
            if not self._capture.grab():
                break
            self._time_s(self.next_index)
            self.next_index += 1
            skipped += 1
        return skipped

    def rewind(self) -> None:
        """Back to the first frame (times restart at 0)."""
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.next_index = 0
        self.last_time_s = -math.inf

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> "VideoFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

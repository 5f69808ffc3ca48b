"""sensor_msgs/Image <-> numpy for the 8-bit encodings a video or webcam gives (no cv_bridge).

cv_bridge is not installable from pip; these few lines cover bgr8, rgb8 and mono8, honour the
row stride (`step`, which may include padding) and check every size field before touching data.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

CHANNELS = {"bgr8": 3, "rgb8": 3, "mono8": 1}


def image_msg_from_bgr(frame_bgr: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 BGR frame (OpenCV's layout) -> bgr8 Image with the given header."""
    if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {frame_bgr.shape} {frame_bgr.dtype}")
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(frame_bgr.shape[0]), int(frame_bgr.shape[1])
    msg.encoding = "bgr8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(frame_bgr).tobytes()
    return msg


def rgb_from_image_msg(msg: Image) -> np.ndarray:
    """bgr8 / rgb8 / mono8 Image -> (H, W, 3) uint8 RGB array (a copy).

    Raises ValueError naming the field at fault: unsupported encoding, zero size, a `step` shorter
    than a row, or `data` shorter than height * step.
    """
    enc = msg.encoding
    if enc not in CHANNELS:
        raise ValueError(f"Image.encoding {enc!r} is not supported; expected one of {sorted(CHANNELS)}")
    h, w, c = int(msg.height), int(msg.width), CHANNELS[enc]
    if h <= 0 or w <= 0:
        raise ValueError(f"Image.height/width must be positive, got {h}x{w}")
    if msg.step < w * c:
        raise ValueError(f"Image.step {msg.step} is shorter than a {enc} row of width {w} ({w * c} bytes)")
    if len(msg.data) < h * msg.step:
        raise ValueError(
            f"Image.data has {len(msg.data)} bytes, expected height*step = {h}*{msg.step} = {h * msg.step}")
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=h * msg.step).reshape(h, msg.step)
    pixels = rows[:, : w * c].reshape(h, w, c)
    if enc == "rgb8":
        return pixels.copy()
    if enc == "bgr8":
        return pixels[..., ::-1].copy()
    return np.repeat(pixels, 3, axis=2)

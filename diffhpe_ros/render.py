"""Pictures of a lifting run: the video frame with its 2D skeleton next to the lifted 3D skeleton.

Both skeletons are H36M-17, coloured by side (the person's left blue, right red, as the RViz
markers). 3D poses are in the camera optical frame (x right, y down, z forward); the 3D panel
shows "up" as -y and depth as z, seen from slightly to the side of the camera, so the view
matches the image while the depth the lifter recovered stays visible.
Outputs: an MP4 (one 2-panel picture per frame, OpenCV's mp4v) and a PNG strip (a few frames in
columns, 2D above 3D). Both are written under a temporary name and renamed.
"""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from diffhpe_models.atomic import atomic_write_bytes  # noqa: E402
from diffhpe_models.skeleton import BONES, NUM_JOINTS, ROOT, side_of  # noqa: E402

SIDE_COLOURS = {"left": "#2673ff", "right": "#ff4d26", "centre": "#d9d9d9"}
VIEW_ELEVATION_DEG = 12.0
VIEW_AZIMUTH_DEG = -65.0  # -90 looks straight along the camera's z axis
HALF_EXTENT_M = 1.0  # the 3D box spans the pelvis +- this


@dataclass
class FrameSample:
    """What one picture shows. keypoints_px (P, 17, 2) H36M-17 pixels, conf (P, 17) in [0, 1],
    pose3d_m (Q, 17, 3) camera-frame metres (Q may differ from P, e.g. 0 before the first lift)."""

    image_rgb: np.ndarray
    keypoints_px: np.ndarray
    conf: np.ndarray
    pose3d_m: np.ndarray
    title: str = ""


def _bone_colour(child: int) -> str:
    # a bone takes the side of its child joint, so the spine and neck stay neutral
    return SIDE_COLOURS[side_of(child)]


def draw_2d(ax, image_rgb: np.ndarray, keypoints_px: np.ndarray, conf: np.ndarray,
            conf_threshold: float = 0.5) -> None:
    """Image with (P, 17, 2) skeletons; joints below `conf_threshold` (and their bones) left out."""
    ax.imshow(image_rgb)
    for points, c in zip(np.asarray(keypoints_px), np.asarray(conf)):
        seen = c >= conf_threshold
        for child, parent in BONES:
            if seen[child] and seen[parent]:
                ax.plot(*points[[child, parent]].T, color=_bone_colour(child), lw=2.5,
                        solid_capstyle="round")
        for j in np.flatnonzero(seen):
            ax.scatter(*points[j], s=14, color=SIDE_COLOURS[side_of(int(j))], edgecolors="black",
                       linewidths=0.5, zorder=3)
    ax.set_xlim(0, image_rgb.shape[1])
    ax.set_ylim(image_rgb.shape[0], 0)
    ax.set_axis_off()


def draw_3d(ax, pose3d_m: np.ndarray) -> None:
    """(P, 17, 3) camera-frame skeletons in a 3D axes: up = -y, depth = z, centred on the mean
    pelvis, a box of +- HALF_EXTENT_M (wider when several persons are apart)."""
    pose3d_m = np.asarray(pose3d_m, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    ax.cla()
    for pose in pose3d_m:
        x, y, z = pose[:, 0], pose[:, 2], -pose[:, 1]
        for child, parent in BONES:
            ax.plot(x[[child, parent]], y[[child, parent]], z[[child, parent]],
                    color=_bone_colour(child), lw=2.5)
        ax.scatter(x, y, z, s=10, c=[SIDE_COLOURS[side_of(j)] for j in range(NUM_JOINTS)],
                   depthshade=False)
    if len(pose3d_m):
        roots = pose3d_m[:, ROOT]
        centre = roots.mean(axis=0)
        half = max(HALF_EXTENT_M, float(np.abs(roots - centre).max()) + HALF_EXTENT_M)
    else:
        centre, half = np.zeros(3), HALF_EXTENT_M
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[2] - half, centre[2] + half)
    ax.set_zlim(-centre[1] - half, -centre[1] + half)
    ax.set_box_aspect((1, 1, 1))
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))
    ax.set_xlabel("x (m)", labelpad=-10, fontsize=7)
    ax.set_ylabel("z depth (m)", labelpad=-10, fontsize=7)
    ax.set_zlabel("up (m)", labelpad=-10, fontsize=7)
    ax.tick_params(labelsize=5, pad=-3)
    ax.view_init(elev=VIEW_ELEVATION_DEG, azim=VIEW_AZIMUTH_DEG)


def _figure_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class FrameRenderer:
    """Draws FrameSamples as 2-panel pictures of a fixed size (one figure, reused per frame)."""

    def __init__(self, image_wh: tuple[int, int], height_px: int = 540, dpi: int = 100,
                 conf_threshold: float = 0.5):
        w, h = image_wh
        height_px += height_px % 2  # even sizes: video codecs want them
        image_w_px = round(height_px * w / h)
        total_w_px = image_w_px + height_px + (image_w_px + height_px) % 2
        self._fig = plt.figure(figsize=(total_w_px / dpi, height_px / dpi), dpi=dpi)
        split = image_w_px / total_w_px
        self._ax2d = self._fig.add_axes((0.0, 0.0, split, 0.94))
        self._ax3d = self._fig.add_axes((split, 0.0, 1.0 - split, 0.94), projection="3d")
        self._title = self._fig.suptitle("", fontsize=9, y=0.99)
        self._conf_threshold = conf_threshold

    def render(self, sample: FrameSample) -> np.ndarray:
        """One picture: (height_px, width, 3) uint8 RGB."""
        self._ax2d.cla()
        draw_2d(self._ax2d, sample.image_rgb, sample.keypoints_px, sample.conf, self._conf_threshold)
        draw_3d(self._ax3d, sample.pose3d_m)
        self._title.set_text(sample.title)
        return _figure_rgb(self._fig)

    def close(self) -> None:
        plt.close(self._fig)


def write_mp4(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float) -> Path:
    """(H, W, 3) uint8 RGB pictures, all the same size -> MP4 (mp4v) at `fps`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    writer, size, count = None, None, 0
    try:
        for frame in frames:
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write an mp4v video to {tmp}")
            if (frame.shape[1], frame.shape[0]) != size:
                raise ValueError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, expected {size}")
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
            count += 1
        if writer is None:
            raise ValueError(f"no frames to write to {path}")
        writer.release()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.release()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def crop_to_persons(sample: FrameSample, conf_threshold: float = 0.5, aspect_wh: float = 0.75,
                    margin: float = 0.35) -> FrameSample:
    """The sample cut to a box of width/height `aspect_wh` around its visible keypoints (plus
    `margin` of their extent on each side), keypoints shifted to match; unchanged when no
    keypoint is visible. Makes small people in wide frames readable in the strip."""
    seen = np.asarray(sample.conf) >= conf_threshold
    if not seen.any():
        return sample
    pts = np.asarray(sample.keypoints_px)[seen]
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    h_img, w_img = sample.image_rgb.shape[:2]
    box_h = max(y1 - y0, (x1 - x0) / aspect_wh) * (1 + 2 * margin)
    box_h = min(box_h, h_img, w_img / aspect_wh)
    box_w = box_h * aspect_wh
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(np.clip(round(cx - box_w / 2), 0, w_img - box_w))
    top = int(np.clip(round(cy - box_h / 2), 0, h_img - box_h))
    crop = sample.image_rgb[top:top + int(box_h), left:left + int(box_w)]
    shifted = np.asarray(sample.keypoints_px) - np.array([left, top], dtype=np.float32)
    return FrameSample(crop, shifted, sample.conf, sample.pose3d_m, sample.title)


def write_strip(samples: list[FrameSample], path: str | os.PathLike, conf_threshold: float = 0.5,
                column_width_in: float = 2.6, dpi: int = 110, crop: bool = True) -> Path:
    """PNG of len(samples) columns: the frame (cut around the persons when `crop`) with its 2D
    skeleton above the 3D skeleton."""
    if not samples:
        raise ValueError(f"no samples to draw into {path}")
    if crop:
        samples = [crop_to_persons(s, conf_threshold) for s in samples]
    aspect_hw = max(s.image_rgb.shape[0] / s.image_rgb.shape[1] for s in samples)
    n = len(samples)
    image_h_in = column_width_in * aspect_hw
    fig = plt.figure(figsize=(n * column_width_in, image_h_in + column_width_in + 0.35), dpi=dpi)
    grid = fig.add_gridspec(2, n, height_ratios=(image_h_in, column_width_in), left=0.005,
                            right=0.995, bottom=0.01, top=1 - 0.3 / fig.get_figheight(),
                            wspace=0.03, hspace=0.02)
    for i, s in enumerate(samples):
        ax2d = fig.add_subplot(grid[0, i])
        draw_2d(ax2d, s.image_rgb, s.keypoints_px, s.conf, conf_threshold)
        ax2d.set_title(s.title, fontsize=8)
        draw_3d(fig.add_subplot(grid[1, i], projection="3d"), s.pose3d_m)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())

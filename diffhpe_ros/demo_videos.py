"""The real demo videos: fetched with pip from pinned packages, extracted once into the cache.

Each video comes with its camera calibration from the same package, so the demo publishes the
true focal length instead of a field-of-view guess:
- pose2sim 0.10.49 (BSD-3), `Demo_SinglePerson/videos/cam01.mp4`: 1080x1920 portrait, 60 fps,
  100 frames, one person walking on a beam (a second person stands in the background).
  Calibration: Qualisys `Calib.qca.txt`, intrinsics stored in 1/64 pixel units.
- sports2d 0.8.34, `Sports2D/Demo/demo.mp4`: 1768x994, 30 fps, 230 frames, one person.
  Calibration: `Calib_demo.toml` (OpenCV K matrix).

Multi-view demos (`multiview_demo`, for the real-video check training/evaluate_video.py): pose2sim's
`Demo_MultiPerson`, 4 synchronised views of 100 frames with the same Qualisys calibration.
`Demo_SinglePerson` is the README's showcase and stays out. pose2sim's `Demo_Batch` adds nothing:
its Trial_1 videos are byte for byte the single-person ones, its Trial_2 the multi-person ones.
"""
from __future__ import annotations

import hashlib
import os
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffhpe_models.camera import Camera
from diffhpe_models.fetch import (
    extract_archive_member,
    fetch_package,
    find_archive_members,
    read_archive_member,
    read_archive_text,
)


@dataclass(frozen=True)
class DemoVideo:
    package: str
    version: str
    video_member: str
    calibration_member: str
    camera: str  # camera name inside the calibration file


DEMO_VIDEOS = {
    "pose2sim": DemoVideo("pose2sim", "0.10.49", "Pose2Sim/Demo_SinglePerson/videos/cam01.mp4",
                          "Pose2Sim/Demo_SinglePerson/calibration/Calib.qca.txt", "cam01"),
    "sports2d": DemoVideo("sports2d", "0.8.34", "Sports2D/Demo/demo.mp4",
                          "Sports2D/Demo/Calib_demo.toml", "demo"),
}


def intrinsics_from_qca(text: str, camera: str) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) pixels of `camera` in a Qualisys .qca.txt calibration.

    QTM stores focal length and principal point in 1/64 pixel, the principal point relative to the
    sensor origin; the video crop (`fov_video` left/top) is subtracted, as Pose2Sim's converter does.
    """
    root = ET.fromstring(text)
    for cam in root.iter("camera"):
        if cam.get("serial") != camera:
            continue
        intr, fov = cam.find("intrinsic"), cam.find("fov_video")
        if intr is None or fov is None:
            raise ValueError(f"qca calibration: camera {camera!r} lacks <intrinsic> or <fov_video>")
        return (float(intr.get("focalLengthU")) / 64, float(intr.get("focalLengthV")) / 64,
                float(intr.get("centerPointU")) / 64 - float(fov.get("left")),
                float(intr.get("centerPointV")) / 64 - float(fov.get("top")))
    raise ValueError(f"qca calibration has no camera with serial {camera!r}")


def intrinsics_from_toml(text: str, camera: str) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) pixels of section `camera` of a Pose2Sim/Sports2D TOML calibration."""
    data = tomllib.loads(text)
    if camera not in data or "matrix" not in data[camera]:
        raise ValueError(f"toml calibration has no [{camera}] section with a 'matrix'")
    k = data[camera]["matrix"]
    return float(k[0][0]), float(k[1][1]), float(k[0][2]), float(k[1][2])


def demo_video(name: str, cache_dir: str | os.PathLike = ".cache") -> tuple[Path, tuple[float, float, float, float]]:
    """Fetch demo video `name` ('pose2sim' or 'sports2d'); returns (video path, (fx, fy, cx, cy) px).

    The package archive goes to `<cache_dir>/packages`, the video to `<cache_dir>/videos/<name>.mp4`
    (both reused on later calls).
    """
    if name not in DEMO_VIDEOS:
        raise ValueError(f"unknown demo video {name!r}; expected one of {sorted(DEMO_VIDEOS)}")
    v = DEMO_VIDEOS[name]
    cache_dir = Path(cache_dir)
    archive = fetch_package(v.package, v.version, cache_dir / "packages")
    video = extract_archive_member(archive, v.video_member, cache_dir / "videos" / f"{name}.mp4")
    calib = read_archive_text(archive, v.calibration_member)
    reader = intrinsics_from_qca if v.calibration_member.endswith(".qca.txt") else intrinsics_from_toml
    return video, reader(calib, v.camera)


@dataclass(frozen=True)
class MultiViewDemo:
    package: str
    version: str
    video_member: str  # '{camera}' stands for the camera name
    calibration_member: str
    cameras: tuple[str, ...]


MULTIVIEW_DEMOS = {
    "pose2sim_multiperson": MultiViewDemo(
        "pose2sim", "0.10.49", "Pose2Sim/Demo_MultiPerson/videos/{camera}.mp4",
        "Pose2Sim/Demo_MultiPerson/calibration/Calib.qca.txt", ("cam01", "cam02", "cam03", "cam04")),
}
# Videos that never enter an evaluation: the README's showcase. Compared by content, so that a
# copy under another name (Demo_Batch/Trial_1) is refused too.
SHOWCASE_VIDEOS_GLOB = "Pose2Sim/Demo_SinglePerson/videos/*.mp4"


def cameras_from_qca(text: str) -> dict[str, Camera]:
    """Every camera of a Qualisys .qca.txt calibration as a `Camera` (optical frame: x right,
    y down, z forward; world metres), keyed by serial.

    QTM stores each camera's pose in the world: `transform` x, y, z is its centre (mm) and the
    matrix M = [[r11 r12 r13], ...] rotates world vectors into QTM's camera axes (looking down -z,
    y up). As Pose2Sim's converter (read_qca, world_to_camera_persp, rotate_cam by pi about x):
    R = diag(1, -1, -1) @ M, t = -R @ centre. Lens distortion is left out, as Pose2Sim's
    triangulation does (`undistort_points = false`; its converter scales the coefficients to ~1e-3).
    """
    root = ET.fromstring(text)
    flip = np.diag([1.0, -1.0, -1.0])
    cameras = {}
    for cam in root.iter("camera"):
        name, tr, fov = cam.get("serial"), cam.find("transform"), cam.find("fov_video")
        if tr is None or fov is None:
            raise ValueError(f"qca calibration: camera {name!r} lacks <transform> or <fov_video>")
        m = np.array([[float(tr.get(f"r{i}{j}")) for j in (1, 2, 3)] for i in (1, 2, 3)])
        centre_m = np.array([float(tr.get(k)) for k in "xyz"]) / 1000.0
        rot = flip @ m
        fx, fy, cx, cy = intrinsics_from_qca(text, name)
        cameras[name] = Camera(R=rot, t=-rot @ centre_m, fx=fx, fy=fy, cx=cx, cy=cy,
                               width=int(fov.get("right")) - int(fov.get("left")) + 1,
                               height=int(fov.get("bottom")) - int(fov.get("top")) + 1)
    if not cameras:
        raise ValueError("qca calibration holds no <camera>")
    return cameras


def multiview_demo(name: str, cache_dir: str | os.PathLike = ".cache"
                   ) -> tuple[dict[str, Path], dict[str, Camera]]:
    """Fetch multi-view demo `name` (see MULTIVIEW_DEMOS): ({camera: video path}, {camera:
    Camera}). Videos go to `<cache_dir>/videos/<name>_<camera>.mp4`. Raises ValueError if a video
    has the content of one of the showcase's (SHOWCASE_VIDEOS_GLOB)."""
    if name not in MULTIVIEW_DEMOS:
        raise ValueError(f"unknown multi-view demo {name!r}; expected one of {sorted(MULTIVIEW_DEMOS)}")
    v = MULTIVIEW_DEMOS[name]
    cache_dir = Path(cache_dir)
    archive = fetch_package(v.package, v.version, cache_dir / "packages")
    showcase = {hashlib.sha256(read_archive_member(archive, m)).hexdigest()
                for m in find_archive_members(archive, SHOWCASE_VIDEOS_GLOB)}
    videos = {}
    for cam in v.cameras:
        path = extract_archive_member(archive, v.video_member.format(camera=cam),
                                      cache_dir / "videos" / f"{name}_{cam}.mp4")
        if hashlib.sha256(path.read_bytes()).hexdigest() in showcase:
            raise ValueError(f"{name}/{cam}: this video is one of the showcase's "
                             f"({SHOWCASE_VIDEOS_GLOB}), which stays out of evaluations")
        videos[cam] = path
    calibration = cameras_from_qca(read_archive_text(archive, v.calibration_member))
    missing = sorted(set(v.cameras) - set(calibration))
    if missing:
        raise ValueError(f"{name}: the calibration lacks cameras {missing}")
    return videos, {cam: calibration[cam] for cam in v.cameras}

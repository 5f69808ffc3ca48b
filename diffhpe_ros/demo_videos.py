"""The real demo videos: fetched with pip from pinned packages, extracted once into the cache.

Each video comes with its camera calibration from the same package, so the demo publishes the
true focal length instead of a field-of-view guess:
- pose2sim 0.10.49 (BSD-3), `Demo_SinglePerson/videos/cam01.mp4`: 1080x1920 portrait, 60 fps,
  100 frames, one person walking on a beam (a second person stands in the background).
  Calibration: Qualisys `Calib.qca.txt`, intrinsics stored in 1/64 pixel units.
- sports2d 0.8.34, `Sports2D/Demo/demo.mp4`: 1768x994, 30 fps, 230 frames, one person.
  Calibration: `Calib_demo.toml` (OpenCV K matrix).
"""
from __future__ import annotations

import os
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from diffhpe_models.fetch import extract_archive_member, fetch_package, read_archive_text


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

"""Offline lifting of a video file: every frame, stamped in the video's own time base.

    decode -> MediaPipe -> keypoints2d -> LifterCore (stamps, tracking, windows) -> lift -> pose3d

Nothing is skipped, whatever the machine's speed: each frame is decoded once, detected, and its
lift job goes through a FIFO to a worker thread (bounded: the detector waits when the lifter
falls behind). The worker lifts while the next frame is decoded and detected (ONNX Runtime and
MediaPipe release the GIL), so on a machine with a free core the lift costs almost no
throughput. The lifting logic is the node's own (lifter_core.LifterCore), fed the keypoints2d
and camera_info messages the detector and video source would publish, with the same stamps the
paced video source gives (start time + the frame's presentation time).

The messages go to an MCAP bag (/keypoints2d, /camera_info, /pose3d; bag times are the moments
they were produced, as a recorder would have received them). Per-stage times are kept: decode
(read + resize), detect (MediaPipe), lift (the core's input step + the model call + output checks).
"""
from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message
from rclpy.time import Time
from rosbags.rosbag2 import StoragePlugin, Writer
from std_msgs.msg import Header

from diffhpe_models.runtime import load_lifter
from diffhpe_ros import params as lifter_params
from diffhpe_ros.bag import TYPESTORE, msgtype_name
from diffhpe_ros.conversions import (
    intrinsics_from_camera_info,
    keypoints_from_pose_array,
    keypoints_to_pose_array,
    pose3d_to_pose_array,
    stamp_to_ns,
    stamp_to_s,
)
from diffhpe_ros.lifter_core import LifterCore, Settings
from diffhpe_ros.pose_detector import NUM_LANDMARKS, PoseDetector
from diffhpe_ros.video_frames import VideoFrames
from diffhpe_ros.video_source import camera_info_msg, published_intrinsics

JOB_QUEUE_DEPTH = 4  # frames detected ahead of the lifter at most (memory stays bounded)
FRAME_ID = "camera_optical_frame"


@dataclass
class OfflineRun:
    """What one offline pass produced: `published` (stamp_ns, frame index) of every frame,
    the per-stage times (ms per frame), the core's counters and the loop's wall and CPU time."""

    published: list[tuple[int, int]] = field(default_factory=list)
    keypoint_messages: int = 0
    pose3d_messages: int = 0
    stage_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"decode": [], "detect": [], "lift": []})
    counters: dict[str, int] = field(default_factory=dict)
    wall_s: float = float("nan")
    cpu_s: float = float("nan")  # the process's CPU time over the same loop (all threads)
    fps: float = float("nan")
    width_px: int = 0
    height_px: int = 0


def lifter_settings(values: dict) -> Settings:
    """The core's settings from lifter parameter values (params.DEFAULTS + file + overrides),
    each checked by params.validate; offline every frame is lifted (no output rate limit)."""
    values = {**lifter_params.DEFAULTS, **values, "max_output_rate_hz": 0.0}
    for name, value in values.items():
        reason = lifter_params.validate(name, value)
        if reason is not None:
            raise ValueError(f"lifter parameter {reason}")
    names = [f.name for f in dataclasses.fields(Settings)]
    return Settings(**{n: float(values[n]) if lifter_params.SPECS[n].kind is float else values[n]
                       for n in names})


def load_settings_lifter(s: Settings):
    """The Lifter of these settings, with the node's expectations (a causal model, and the
    expected_* fields that are set)."""
    expected = {"window_mode": "causal"}
    for name, key in (("expected_steps", "steps"), ("expected_hypotheses", "hypotheses"),
                      ("expected_window", "window"), ("expected_fps", "fps")):
        if getattr(s, name):
            expected[key] = getattr(s, name)
    return load_lifter(str(lifter_params.resolve_path(s.model_path)), backend=s.backend,
                       expected=expected, device=s.device, seed=s.seed,
                       max_persons=s.max_persons, intra_op_threads=s.intra_op_threads,
                       fixed_noise=s.fixed_noise,
                       mirror=lifter_params.mirror_enabled(s.mirror, s.device, s.model_path))


class BagRecords:
    """Serialized messages with their bag times, written at the end as one MCAP bag directory
    (under a temporary name, renamed when complete, like BagRecorder)."""

    def __init__(self, topics: dict[str, type]):
        self.topics = topics
        self._records: list[tuple[int, str, bytes]] = []
        self._lock = threading.Lock()

    def add(self, topic: str, msg) -> None:
        raw = serialize_message(msg)
        with self._lock:
            self._records.append((time.time_ns(), topic, raw))

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            writer = Writer(staging / path.name, version=9, storage_plugin=StoragePlugin.MCAP)
            writer.open()
            connections = {t: writer.add_connection(t, msgtype_name(c), typestore=TYPESTORE)
                           for t, c in self.topics.items()}
            for t_ns, topic, raw in sorted(self._records, key=lambda r: r[0]):
                writer.write(connections[topic], t_ns, raw)
            writer.close()
            if path.exists():
                os.replace(path, staging / (path.name + ".old"))
            os.replace(staging / path.name, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path


def run_offline(video_path: str | os.PathLike, lifter_values: dict, bag_path: str | os.PathLike,
                topics: dict[str, type], scale: float = 0.5, max_frames: int = 0,
                camera: dict | None = None, progress: bool = True, log=print) -> OfflineRun:
    """Decode, detect and lift every frame of `video_path` (the first `max_frames`, 0: all).

    lifter_values: lifter parameters (see lifter_settings); camera: fx, fy, cx, cy in pixels of
    the file (absent: the 60 degree guess, as video_source). Writes the bag to `bag_path`.
    """
    from tqdm import tqdm

    settings = lifter_settings(lifter_values)
    run = OfflineRun()
    records = BagRecords(topics)
    with VideoFrames(video_path, scale) as video:
        run.fps, run.width_px, run.height_px = video.fps, video.width_px, video.height_px
        intrinsics = published_intrinsics(video.source_width_px, video.source_height_px,
                                           video.scale, **(camera or {}))
        core = LifterCore(settings, load_settings_lifter(settings), warn=log, info=log)
        total = min(max_frames or video.frame_count, video.frame_count) or None
        with PoseDetector() as detector:
            # MediaPipe builds its graph on the first frame: not a cost of the video's first
            # frame (as the detector node does at start).
            detector.detect(np.zeros((64, 64, 3), np.uint8))
            jobs: queue.Queue = queue.Queue(maxsize=JOB_QUEUE_DEPTH)
            errors: list[BaseException] = []
            worker = threading.Thread(target=_lift_worker, args=(core, jobs, records, run, errors),
                                      name="offline_lift", daemon=True)
            start_ns = time.time_ns()
            t_start, cpu_start = time.perf_counter(), time.process_time()
            worker.start()
            bar = tqdm(total=total, unit="frame", desc="offline", disable=not progress)
            try:
                while not max_frames or len(run.published) < max_frames:
                    frame = video.read()
                    if frame is None:
                        break
                    run.stage_ms["decode"].append(frame.decode_ms)
                    t0 = time.perf_counter()
                    points, conf = detector.detect(np.ascontiguousarray(frame.bgr[..., ::-1]))
                    run.stage_ms["detect"].append((time.perf_counter() - t0) * 1e3)
                    header = Header(frame_id=FRAME_ID, stamp=Time(
                        nanoseconds=start_ns + round(frame.time_s * 1e9)).to_msg())
                    info = camera_info_msg(header, video.width_px, video.height_px, *intrinsics)
                    records.add("/camera_info", info)
                    keypoints = keypoints_to_pose_array(points, conf, header)
                    records.add("/keypoints2d", keypoints)
                    run.keypoint_messages += 1
                    run.published.append((stamp_to_ns(header.stamp), frame.index))
                    t0 = time.perf_counter()
                    job = _admit(core, settings, info, keypoints, header)
                    admit_ms = (time.perf_counter() - t0) * 1e3
                    _put(jobs, (job, admit_ms), worker, errors)
                    bar.update(1)
            finally:
                bar.close()
                _put(jobs, None, worker, [])  # the worker drains the FIFO, then stops
                worker.join()
            if errors:
                raise errors[0]
            run.wall_s = time.perf_counter() - t_start
            run.cpu_s = time.process_time() - cpu_start
    run.counters = core.counters()
    records.write(bag_path)
    return run


def _admit(core: LifterCore, s: Settings, info, keypoints, header):
    """The node's input step for one frame: its lift job, or None (nobody to lift)."""
    if s.use_camera_info:
        core.on_camera_info(intrinsics_from_camera_info(info))
    core.count_received()
    kp = keypoints_from_pose_array(keypoints, NUM_LANDMARKS)
    if not core.on_keypoints(stamp_to_s(header.stamp), kp, header, time.perf_counter()):
        return None
    # Taken at once, so the core's one-frame slot never drops: the FIFO holds it instead.
    return core.slot.take(timeout_s=0.0)


def _put(jobs: queue.Queue, item, worker: threading.Thread, errors: list) -> None:
    """Hand `item` to the worker, waiting while the FIFO is full; when the worker has died,
    raises the first of `errors` (returns when there is none)."""
    while worker.is_alive():
        try:
            jobs.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
    if errors:
        raise errors[0]


def _lift_worker(core: LifterCore, jobs: queue.Queue, records: BagRecords, run: OfflineRun,
                 errors: list) -> None:
    try:
        while (item := jobs.get()) is not None:
            job, admit_ms = item
            if job is None:
                run.stage_ms["lift"].append(admit_ms)
                continue
            t0 = time.perf_counter()
            result = core.lift(job)
            if len(result.track_ids):
                records.add("/pose3d", pose3d_to_pose_array(result.pose_m, result.tag))
                run.pose3d_messages += 1
            core.finish(result)
            run.stage_ms["lift"].append(admit_ms + (time.perf_counter() - t0) * 1e3)
    except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
        errors.append(e)

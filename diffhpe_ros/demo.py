"""`diffhpe_demo`: video -> MediaPipe -> DiffHPE lifter, all in ONE process and one executor.

    video_source --image/camera_info--> detector_node --keypoints2d--> lifter_node --pose3d-->
                        (bag_recorder records keypoints2d, camera_info, pose3d to MCAP)

Runs in real time (frames are published at the video's rate; a stage that cannot keep up skips
frames, as it would with a camera), then writes into --out: the MCAP bag (`bag/`), an MP4 and a
PNG strip of the lifted frames (frame + 2D skeleton | 3D skeleton) and `summary.json`, and prints
the achieved rate and latencies. Default input: the pose2sim single-person video with its
calibration, fetched with pip into .cache/ (`--video sports2d` for the Sports2D demo, or a path).

Latencies are measured from the bag's receive times, matched by header stamp (the image's time,
kept by the detector and the lifter): lift latency = pose3d received - keypoints2d received;
end-to-end = pose3d received - image stamp (decode + transport + MediaPipe + lifting).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import rclpy
import yaml
from geometry_msgs.msg import PoseArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo

from diffhpe_models.atomic import atomic_write_json
from diffhpe_models.skeleton import to_h36m17
from diffhpe_ros import params as lifter_params
from diffhpe_ros.bag import BagRecorder, read_bag
from diffhpe_ros.conversions import keypoints_from_pose_array, pose_array_to_pose3d, stamp_to_ns
from diffhpe_ros.demo_videos import DEMO_VIDEOS, demo_video
from diffhpe_ros.detector_node import DetectorNode
from diffhpe_ros.render import FrameRenderer, FrameSample, write_mp4, write_strip
from diffhpe_ros.video_source import VideoSource

RECORDED_TOPICS = {"/keypoints2d": PoseArray, "/camera_info": CameraInfo, "/pose3d": PoseArray}
DEFAULT_PARAMS_FILE = "config/lifter.yaml"


def make_lifter(context, model_path: str | None, params_file: str | None, backend: str | None,
                overrides: dict | None = None):
    """The lifter node with the parameters of `params_file` (when it exists), then these."""
    from diffhpe_ros.lifter_node import LifterNode

    values = {}
    if params_file and Path(params_file).is_file():
        values = lifter_params.load_params_file(params_file)
    values["keypoint_format"] = "mediapipe33"  # what the detector publishes
    if model_path:
        values["model_path"] = str(model_path)
    if backend:
        values["backend"] = backend
    values.update(overrides or {})
    return LifterNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


@dataclass
class DemoSummary:
    video: str
    frames_published: int
    keypoint_messages: int
    lifted_frames: int
    video_fps: float
    achieved_rate_hz: float  # lifted frames per second, first to last /pose3d
    lift_latency_p50_ms: float
    lift_latency_p99_ms: float
    end_to_end_p50_ms: float
    end_to_end_p99_ms: float
    mediapipe_ms_last: float


def _pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def load_run(bag_path: Path) -> dict[str, dict[int, tuple[int, PoseArray]]]:
    """{topic: {header stamp ns: (receive ns, message)}} for the demo's keypoints2d and pose3d."""
    out: dict[str, dict[int, tuple[int, PoseArray]]] = {"/keypoints2d": {}, "/pose3d": {}}
    for m in read_bag(bag_path, list(out)):
        msg = deserialize_message(m.raw, PoseArray)
        out[m.topic][stamp_to_ns(msg.header.stamp)] = (m.log_time_ns, msg)
    return out


def summarise(video: str, run: dict, frames_published: int, video_fps: float,
              mediapipe_ms: float) -> DemoSummary:
    """Counts and latencies of a run (see the module docstring for the definitions)."""
    keypoints, pose3d = run["/keypoints2d"], run["/pose3d"]
    received_s = np.sort([t for t, _ in pose3d.values()]) / 1e9
    span_s = received_s[-1] - received_s[0] if len(received_s) > 1 else 0.0
    lift_ms = [(t - keypoints[s][0]) / 1e6 for s, (t, _) in pose3d.items() if s in keypoints]
    e2e_ms = [(t - s) / 1e6 for s, (t, _) in pose3d.items()]
    return DemoSummary(
        video=video, frames_published=frames_published, keypoint_messages=len(keypoints),
        lifted_frames=len(pose3d), video_fps=video_fps,
        achieved_rate_hz=(len(pose3d) - 1) / span_s if span_s > 0 else float("nan"),
        lift_latency_p50_ms=_pct(lift_ms, 50), lift_latency_p99_ms=_pct(lift_ms, 99),
        end_to_end_p50_ms=_pct(e2e_ms, 50), end_to_end_p99_ms=_pct(e2e_ms, 99),
        mediapipe_ms_last=mediapipe_ms)


def render_run(video_path: Path, scale_size: tuple[int, int], published: list[tuple[int, int]],
               run: dict, out_dir: Path, fps: float, strip_frames: int = 6,
               conf_threshold: float = 0.5) -> tuple[Path, Path]:
    """MP4 + PNG strip of the lifted frames (each frame with its own 2D and 3D); returns paths."""
    frame_of = dict(published)
    lifted = sorted((frame_of[s], s) for s in run["/pose3d"] if s in frame_of and s in run["/keypoints2d"])
    if not lifted:
        raise RuntimeError("no lifted frames to render: nothing reached /pose3d")
    wanted = {i for i, _ in lifted}
    cap = cv2.VideoCapture(str(video_path))
    images, index = {}, 0
    while index <= max(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            frame = cv2.resize(frame, scale_size, interpolation=cv2.INTER_AREA)
            images[index] = np.ascontiguousarray(frame[..., ::-1])
        index += 1
    cap.release()
    renderer = FrameRenderer(scale_size, conf_threshold=conf_threshold)
    samples, pictures = [], []
    t0 = lifted[0][1]
    for i, stamp in lifted:
        kp = keypoints_from_pose_array(run["/keypoints2d"][stamp][1], 33)
        points, conf = to_h36m17(kp.points_px, kp.conf, "mediapipe33")
        recv_ns = run["/pose3d"][stamp][0]
        title = (f"frame {i}   t = {(stamp - t0) / 1e9:.2f} s   "
                 f"lift {(recv_ns - run['/keypoints2d'][stamp][0]) / 1e6:.1f} ms")
        sample = FrameSample(images[i], points, conf, pose_array_to_pose3d(run["/pose3d"][stamp][1]), title)
        samples.append(sample)
        pictures.append(renderer.render(sample))
    renderer.close()
    mp4 = write_mp4(pictures, out_dir / "demo.mp4", fps)
    picks = np.linspace(0, len(samples) - 1, min(strip_frames, len(samples))).round().astype(int)
    strip = write_strip([samples[k] for k in picks], out_dir / "demo_strip.png", conf_threshold)
    return mp4, strip


def run_demo(video: str = "pose2sim", model_path: str | None = None, out_dir: str = "docs/demo",
             max_frames: int = 0, scale: float = 0.5, rate_factor: float = 1.0,
             params_file: str | None = DEFAULT_PARAMS_FILE, backend: str | None = None,
             cache_dir: str = ".cache", render: bool = True, lifter_overrides: dict | None = None,
             context=None) -> DemoSummary:
    """Run the pipeline on `video` (a name of DEMO_VIDEOS or a file path); returns the summary.

    lifter_overrides: lifter parameters applied after `params_file` (e.g. {"use_camera_info": False}).
    context: an rclpy Context already initialised (tests); None: one is made and shut down here.
    """
    out = Path(out_dir)
    if video in DEMO_VIDEOS:
        video_path, (fx, fy, cx, cy) = demo_video(video, cache_dir)
        camera = {"fx": fx, "fy": fy, "cx": cx, "cy": cy}
    else:
        video_path, camera = Path(video), {}
    own_context = context is None
    if own_context:
        context = rclpy.Context()
        rclpy.init(args=[], context=context)  # our command line is not for rcl
    nodes, executors, spinners = [], [], []
    try:
        source = VideoSource(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in {
            "video_path": str(video_path), "scale": float(scale), "rate_factor": float(rate_factor),
            "max_frames": int(max_frames), **camera}.items()])
        nodes.append(source)
        nodes.append(DetectorNode(context=context))
        nodes.append(make_lifter(context, model_path, params_file, backend, lifter_overrides))
        recorder = BagRecorder(out / "bag", RECORDED_TOPICS, context=context)
        nodes.append(recorder)
        # One single-threaded executor per node, each in its own thread (the lifter also has its
        # worker): with one rclpy MultiThreadedExecutor over all four nodes the Python-side
        # scheduling cost starved the pipeline (pose2sim demo on 2 cores: 2.7 lifted frames/s,
        # lift p50 340 ms; this way: 26-28 frames/s, lift p50 21-25 ms).
        executors = [SingleThreadedExecutor(context=context) for _ in nodes]
        spin_errors: list[BaseException] = []
        spinners = []
        for node, ex in zip(nodes, executors):
            ex.add_node(node)
            spinners.append(threading.Thread(target=spin_recording_errors, args=(ex, spin_errors),
                                             daemon=True))
            spinners[-1].start()
        wait_while_spinning(source.finished, spinners, spin_errors)
        _wait_for_quiet(recorder, quiet_s=1.0, timeout_s=10.0)
        mediapipe_ms = nodes[1].last_detect_ms
    finally:
        for ex in executors:
            ex.shutdown()
        for spinner in spinners:
            spinner.join(timeout=5.0)
        for node in reversed(nodes):
            node.destroy_node()  # the recorder finishes and renames the bag here
        if own_context:
            context.try_shutdown()
    run = load_run(out / "bag")
    summary = summarise(str(video), run, len(source.published), source.fps, mediapipe_ms)
    if render and run["/pose3d"]:
        lifted_share = len(run["/pose3d"]) / max(len(source.published), 1)
        render_run(video_path, (source.width_px, source.height_px), source.published, run, out,
                   fps=source.fps * rate_factor * lifted_share)
    atomic_write_json(out / "summary.json", _json_safe(asdict(summary)))
    return summary


def spin_recording_errors(executor, errors: list) -> None:
    """executor.spin(); an exception that ends it (a node callback raised) is kept in `errors`."""
    try:
        executor.spin()
    except BaseException as e:
        errors.append(e)
        raise


def wait_while_spinning(done: threading.Event, spinners: list[threading.Thread], errors: list,
                        poll_s: float = 0.5) -> None:
    """Wait until `done` is set; RuntimeError as soon as a spinner thread has ended first
    (then nothing might ever set it: without this the demo would hang)."""
    while not done.wait(poll_s):
        if not all(t.is_alive() for t in spinners):
            cause = f": {type(errors[0]).__name__}: {errors[0]}" if errors else ""
            raise RuntimeError("the executor stopped before the video was fully published (a node "
                               f"callback raised{cause}); see the traceback above")


def _json_safe(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


def _wait_for_quiet(recorder: BagRecorder, quiet_s: float, timeout_s: float) -> None:
    """Wait until the recorder saw no new message for `quiet_s` (the pipeline has drained)."""
    end = time.monotonic() + timeout_s
    last, last_change = None, time.monotonic()
    while time.monotonic() < end:
        counts = dict(recorder.counts)
        if counts != last:
            last, last_change = counts, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            return
        time.sleep(0.05)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default="pose2sim",
                        help=f"one of {sorted(DEMO_VIDEOS)} (fetched with pip) or a video file path")
    parser.add_argument("--model", default=None,
                        help="lifter model (.pt/.onnx/engine); default: the lifter's model_path "
                             f"({lifter_params.DEFAULTS['model_path']})")
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="lifter parameters file")
    parser.add_argument("--backend", default=None, choices=lifter_params.BACKENDS)
    parser.add_argument("--out", default="docs/demo", help="output directory")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    parser.add_argument("--scale", type=float, default=0.5, help="resize factor of the frames")
    parser.add_argument("--rate-factor", type=float, default=1.0, help="video play speed")
    parser.add_argument("--lifter-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="lifter parameter, after --params (repeatable; YAML value)")
    parser.add_argument("--no-render", action="store_true", help="skip the MP4 and PNG strip")
    parser.add_argument("--cache", default=".cache", help="download/extraction cache")
    a = parser.parse_args(argv)
    overrides = {}
    for item in a.lifter_param:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            parser.error(f"--lifter-param {item!r}: expected NAME:=VALUE")
        overrides[name] = yaml.safe_load(value)
    try:
        s = run_demo(a.video, a.model, a.out, a.max_frames, a.scale, a.rate_factor, a.params,
                     a.backend, a.cache, render=not a.no_render, lifter_overrides=overrides)
    except (OSError, ValueError, RuntimeError) as e:  # missing model/video, bad parameter
        print(f"diffhpe_demo: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if s.lifted_frames == 0:
        print("diffhpe_demo: no frame was lifted (see the lifter's warnings above); "
              "nothing rendered", file=sys.stderr)
    print(f"{s.video}: {s.frames_published} frames at {s.video_fps:g} fps -> "
          f"{s.keypoint_messages} keypoint messages -> {s.lifted_frames} lifted frames\n"
          f"achieved rate {s.achieved_rate_hz:.1f} Hz; lift latency p50 {s.lift_latency_p50_ms:.1f} ms, "
          f"p99 {s.lift_latency_p99_ms:.1f} ms; end-to-end (image stamp -> pose3d) "
          f"p50 {s.end_to_end_p50_ms:.1f} ms, p99 {s.end_to_end_p99_ms:.1f} ms\n"
          f"outputs in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

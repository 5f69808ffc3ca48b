"""`diffhpe_demo`: video -> MediaPipe -> DiffHPE lifter in ONE process; two modes.

--offline (the default for files; `make demo`): every frame of the file is decoded once, detected
and lifted, stamped in the video's own time base (offline.py: the lifter node's own logic,
lifter_core.LifterCore, without transport); nothing is dropped however slow the machine is.

--realtime (a camera stand-in): the ROS nodes, each on its own executor thread,

    video_source --image/camera_info--> detector_node --keypoints2d--> lifter_node --pose3d-->
                        (bag_recorder records keypoints2d, camera_info, pose3d to MCAP)

with frames published at the video's rate and stamped with the clock. A stage that cannot keep
up skips frames, as it would with a camera: on a slow machine most frames are dropped (the
summary says how many: `frames_dropped`). To lose none under ROS, pace the source by the
detector instead (video_source `pace_topic:=keypoints2d`).

Both write into --out: the MCAP bag (`bag/`), an MP4 and a PNG strip of the lifted frames (frame +
2D skeleton | 3D skeleton) and `summary.json` with per-stage times (decode, detect, lift, render),
and print them. Default input: the pose2sim single-person video with its calibration, fetched
with pip into .cache/ (`--video sports2d` for the Sports2D demo, or a path).

Latencies are measured from the bag's times, matched by header stamp (the image's time, kept by
the detector and the lifter): lift latency = pose3d recorded - keypoints2d recorded; real time
only, end-to-end = pose3d received - image stamp (decode + transport + MediaPipe + lifting).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rclpy
import yaml
from geometry_msgs.msg import PoseArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo

from diffhpe_models import threads  # noqa: F401  (the thread policy, set before torch loads)
from diffhpe_models.atomic import atomic_write_json
from diffhpe_models.skeleton import to_h36m17
from diffhpe_ros import params as lifter_params
from diffhpe_ros.bag import BagRecorder, read_bag
from diffhpe_ros.conversions import keypoints_from_pose_array, pose_array_to_pose3d, stamp_to_ns
from diffhpe_ros.demo_videos import DEMO_VIDEOS, demo_video
from diffhpe_ros.detector_node import DetectorNode
from diffhpe_ros.render import FrameRenderer, FrameSample, write_mp4, write_strip
from diffhpe_ros.video_frames import VideoFrames
from diffhpe_ros.video_source import VideoSource

RECORDED_TOPICS = {"/keypoints2d": PoseArray, "/camera_info": CameraInfo, "/pose3d": PoseArray}
DEFAULT_PARAMS_FILE = "config/lifter.yaml"
STAGES = ("decode", "detect", "lift", "render")


def make_lifter(context, values: dict):
    """The lifter node with these parameter values (see lifter_values)."""
    from diffhpe_ros.lifter_node import LifterNode

    return LifterNode(context=context, parameter_overrides=[Parameter(k, value=v)
                                                            for k, v in values.items()])


@dataclass
class DemoSummary:
    video: str
    mode: str  # "offline" (every frame) or "realtime" (frames dropped when too slow)
    frames_published: int  # frames decoded and sent to the detector
    keypoint_messages: int  # frames the detector processed
    lifted_frames: int  # frames with a /pose3d
    frames_dropped: int  # frames never lifted though a person was in view, or never published
    video_fps: float
    throughput_fps: float  # frames through decode -> detect -> lift per second of wall time
    achieved_rate_hz: float  # lifted frames per second, first to last /pose3d
    lift_latency_p50_ms: float
    lift_latency_p99_ms: float
    end_to_end_p50_ms: float  # real time only (offline stamps are video time, not the clock)
    end_to_end_p99_ms: float
    stage_ms: dict = field(default_factory=dict)  # {stage: {"p50", "mean", "frames"}}


def _pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def load_run(bag_path: Path) -> dict[str, dict[int, tuple[int, PoseArray]]]:
    """{topic: {header stamp ns: (receive ns, message)}} for the demo's keypoints2d and pose3d."""
    out: dict[str, dict[int, tuple[int, PoseArray]]] = {"/keypoints2d": {}, "/pose3d": {}}
    for m in read_bag(bag_path, list(out)):
        msg = deserialize_message(m.raw, PoseArray)
        out[m.topic][stamp_to_ns(msg.header.stamp)] = (m.log_time_ns, msg)
    return out


def summarise(video: str, mode: str, run: dict, frames_published: int, video_fps: float,
              wall_s: float, stage_ms: dict[str, list[float]], skipped: int = 0) -> DemoSummary:
    """Counts, latencies and stage times of a run (see the module docstring for definitions);
    skipped: frames the source passed over (real time, decoding behind the file's clock)."""
    keypoints, pose3d = run["/keypoints2d"], run["/pose3d"]
    received_s = np.sort([t for t, _ in pose3d.values()]) / 1e9
    span_s = received_s[-1] - received_s[0] if len(received_s) > 1 else 0.0
    lift_ms = [(t - keypoints[s][0]) / 1e6 for s, (t, _) in pose3d.items() if s in keypoints]
    e2e_ms = [(t - s) / 1e6 for s, (t, _) in pose3d.items()] if mode == "realtime" else []
    empty = sum(1 for _, msg in keypoints.values() if not msg.poses)
    return DemoSummary(
        video=video, mode=mode, frames_published=frames_published,
        keypoint_messages=len(keypoints), lifted_frames=len(pose3d),
        frames_dropped=max(frames_published - empty - len(pose3d), 0) + skipped,
        video_fps=video_fps,
        throughput_fps=len(keypoints) / wall_s if wall_s > 0 else float("nan"),
        achieved_rate_hz=(len(pose3d) - 1) / span_s if span_s > 0 else float("nan"),
        lift_latency_p50_ms=_pct(lift_ms, 50), lift_latency_p99_ms=_pct(lift_ms, 99),
        end_to_end_p50_ms=_pct(e2e_ms, 50), end_to_end_p99_ms=_pct(e2e_ms, 99),
        stage_ms={name: stage_stats(ms) for name, ms in sorted(
            {"lift": lift_ms, **stage_ms}.items(), key=lambda kv: STAGES.index(kv[0]))})


def stage_stats(ms: list[float]) -> dict:
    """{"p50", "mean", "frames"} of one stage's per-frame times (ms)."""
    return {"p50": _pct(ms, 50), "mean": float(np.mean(ms)) if len(ms) else float("nan"),
            "frames": len(ms)}


def render_run(video_path: Path, scale: float, published: list[tuple[int, int]],
               run: dict, out_dir: Path, fps: float, strip_frames: int = 6,
               conf_threshold: float = 0.5) -> tuple[Path, Path, list[float]]:
    """MP4 + PNG strip of the lifted frames (each frame with its own 2D and 3D); returns their
    paths and the time (ms) each picture took (frame decode not included)."""
    frame_of = dict(published)
    lifted = sorted((frame_of[s], s) for s in run["/pose3d"]
                    if s in frame_of and s in run["/keypoints2d"])
    if not lifted:
        raise RuntimeError("no lifted frames to render: nothing reached /pose3d")
    images = {}
    with VideoFrames(video_path, scale) as video:
        for i, _ in lifted:  # in frame order; frames between are skipped, not converted
            video.skip(i - video.next_index)
            frame = video.read()
            if frame is None:
                break
            images[i] = np.ascontiguousarray(frame.bgr[..., ::-1])
    scale_size = (video.width_px, video.height_px)
    renderer = FrameRenderer(scale_size, conf_threshold=conf_threshold)
    samples, pictures = [], []
    t0 = lifted[0][1]
    render_ms = []
    for i, stamp in lifted:
        tic = time.perf_counter()
        kp = keypoints_from_pose_array(run["/keypoints2d"][stamp][1], 33)
        points, conf = to_h36m17(kp.points_px, kp.conf, "mediapipe33")
        recv_ns = run["/pose3d"][stamp][0]
        title = (f"frame {i}   t = {(stamp - t0) / 1e9:.2f} s   "
                 f"lift {(recv_ns - run['/keypoints2d'][stamp][0]) / 1e6:.1f} ms")
        sample = FrameSample(images[i], points, conf, pose_array_to_pose3d(run["/pose3d"][stamp][1]), title)
        samples.append(sample)
        pictures.append(renderer.render(sample))
        render_ms.append((time.perf_counter() - tic) * 1e3)
    renderer.close()
    mp4 = write_mp4(pictures, out_dir / "demo.mp4", fps)
    picks = np.linspace(0, len(samples) - 1, min(strip_frames, len(samples))).round().astype(int)
    strip = write_strip([samples[k] for k in picks], out_dir / "demo_strip.png", conf_threshold)
    return mp4, strip, render_ms


def run_demo(video: str = "pose2sim", model_path: str | None = None, out_dir: str = "docs/demo",
             max_frames: int = 0, scale: float = 0.5, rate_factor: float = 1.0,
             params_file: str | None = DEFAULT_PARAMS_FILE, backend: str | None = None,
             cache_dir: str = ".cache", render: bool = True, lifter_overrides: dict | None = None,
             context=None, offline: bool = True, progress: bool = False) -> DemoSummary:
    """Run the pipeline on `video` (a name of DEMO_VIDEOS or a file path); returns the summary.

    offline: every frame, video-time stamps (offline.py); else real time through the ROS nodes.
    lifter_overrides: lifter parameters applied after `params_file` (e.g. {"use_camera_info": False}).
    context: an rclpy Context already initialised (tests, real time); None: one is made here.
    progress: a progress bar (offline).
    """
    out = Path(out_dir)
    if video in DEMO_VIDEOS:
        video_path, (fx, fy, cx, cy) = demo_video(video, cache_dir)
        camera = {"fx": fx, "fy": fy, "cx": cx, "cy": cy}
    else:
        video_path, camera = Path(video), {}
        if not video_path.is_file():
            raise FileNotFoundError(f"video_path={video!r}: no such file (and not one of "
                                    f"{sorted(DEMO_VIDEOS)})")
    values = lifter_values(model_path, params_file, backend, lifter_overrides)
    if offline:
        from diffhpe_ros.offline import run_offline

        done = run_offline(video_path, values, out / "bag", RECORDED_TOPICS, scale=scale,
                           max_frames=max_frames, camera=camera, progress=progress)
        published, fps, wall_s, stage_ms = done.published, done.fps, done.wall_s, done.stage_ms
        skipped = 0
    else:
        published, fps, wall_s, stage_ms, skipped = _run_realtime(
            video_path, camera, values, out, max_frames, scale, rate_factor, context)
    run = load_run(out / "bag")
    stage_ms = dict(stage_ms)
    if render and run["/pose3d"]:
        lifted_share = len(run["/pose3d"]) / max(len(published), 1)
        *_, stage_ms["render"] = render_run(video_path, scale, published, run, out,
                                            fps=fps * (1.0 if offline else rate_factor * lifted_share))
    summary = summarise(str(video), "offline" if offline else "realtime", run, len(published),
                        fps, wall_s, stage_ms, skipped)
    atomic_write_json(out / "summary.json", _json_safe(asdict(summary)))
    return summary


def lifter_values(model_path: str | None, params_file: str | None, backend: str | None,
                  overrides: dict | None) -> dict:
    """Lifter parameters: those of `params_file` (when it exists), then these."""
    values = {}
    if params_file and Path(params_file).is_file():
        values = lifter_params.load_params_file(params_file)
    values["keypoint_format"] = "mediapipe33"  # what the detector publishes
    if model_path:
        values["model_path"] = str(model_path)
    if backend:
        values["backend"] = backend
    values.update(overrides or {})
    return values


def _run_realtime(video_path: Path, camera: dict, values: dict, out: Path, max_frames: int,
                  scale: float, rate_factor: float, context):
    """The ROS nodes in real time; returns (published, fps, wall s, {stage: ms per frame},
    frames the source passed over)."""
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
        detector = DetectorNode(context=context)
        nodes.append(detector)
        nodes.append(make_lifter(context, values))
        recorder = BagRecorder(out / "bag", RECORDED_TOPICS, context=context)
        nodes.append(recorder)
        # One single-threaded executor per node, each in its own thread (the lifter also has its
        # worker): with one rclpy MultiThreadedExecutor over all four nodes the Python-side
        # scheduling cost starved the pipeline (pose2sim demo on 2 cores: 2.7 lifted frames/s,
        # lift p50 340 ms; this way: 26-28 frames/s, lift p50 21-25 ms).
        executors = [SingleThreadedExecutor(context=context) for _ in nodes]
        spin_errors: list[BaseException] = []
        spinners = []
        t0 = time.perf_counter()
        for node, ex in zip(nodes, executors):
            ex.add_node(node)
            spinners.append(threading.Thread(target=spin_recording_errors, args=(ex, spin_errors),
                                             daemon=True))
            spinners[-1].start()
        wait_while_spinning(source.finished, spinners, spin_errors)
        wall_s = time.perf_counter() - t0
        _wait_for_quiet(recorder, quiet_s=1.0, timeout_s=10.0)
        stage_ms = {"decode": list(source.decode_ms), "detect": list(detector.detect_ms)}
    finally:
        for ex in executors:
            ex.shutdown()
        for spinner in spinners:
            spinner.join(timeout=5.0)
        for node in reversed(nodes):
            node.destroy_node()  # the recorder finishes and renames the bag here
        if own_context:
            context.try_shutdown()
    return source.published, source.fps, wall_s, stage_ms, source.skipped


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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", dest="offline", action="store_true", default=True,
                      help="every frame, stamped in the video's time base (default)")
    mode.add_argument("--realtime", dest="offline", action="store_false",
                      help="the ROS nodes at the video's rate, like a camera: frames are dropped "
                           "when the machine is too slow (the summary counts them)")
    parser.add_argument("--model", default=None,
                        help="lifter model (.pt/.onnx/engine); default: the lifter's model_path "
                             f"({lifter_params.DEFAULTS['model_path']})")
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="lifter parameters file")
    parser.add_argument("--backend", default=None, choices=lifter_params.BACKENDS)
    parser.add_argument("--out", default="docs/demo", help="output directory")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    parser.add_argument("--scale", type=float, default=0.5, help="resize factor of the frames")
    parser.add_argument("--rate-factor", type=float, default=1.0,
                        help="video play speed (--realtime)")
    parser.add_argument("--lifter-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="lifter parameter, after --params (repeatable; YAML value)")
    parser.add_argument("--no-render", action="store_true", help="skip the MP4 and PNG strip")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (--offline)")
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
                     a.backend, a.cache, render=not a.no_render, lifter_overrides=overrides,
                     offline=a.offline, progress=not a.no_progress)
    except (OSError, ValueError, RuntimeError) as e:  # missing model/video, bad parameter
        print(f"diffhpe_demo: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if s.lifted_frames == 0:
        print("diffhpe_demo: no frame was lifted (see the lifter's warnings above); "
              "nothing rendered", file=sys.stderr)
    print(report(s) + f"\noutputs in {a.out}")
    return 0


def report(s: DemoSummary) -> str:
    """The summary in a few lines: counts, rates, per-stage times, latencies."""
    dropped = (f"; {s.frames_dropped} frames dropped (the machine is slower than the video: "
               "use --offline to lift every frame)" if s.mode == "realtime" and s.frames_dropped
               else f"; {s.frames_dropped} dropped")
    stages = ", ".join(f"{name} {v['p50']:.1f}" for name, v in s.stage_ms.items()
                       if v["frames"])
    lines = [f"{s.video} ({s.mode}): {s.frames_published} frames at {s.video_fps:g} fps -> "
             f"{s.keypoint_messages} keypoint messages -> {s.lifted_frames} lifted frames{dropped}",
             f"throughput {s.throughput_fps:.1f} frames/s; per-stage p50 ms per frame: {stages}",
             f"lift latency p50 {s.lift_latency_p50_ms:.1f} ms, p99 {s.lift_latency_p99_ms:.1f} ms"]
    if s.mode == "realtime":
        lines[-1] += (f"; achieved rate {s.achieved_rate_hz:.1f} Hz; end-to-end (image stamp -> "
                      f"pose3d) p50 {s.end_to_end_p50_ms:.1f} ms, p99 {s.end_to_end_p99_ms:.1f} ms")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

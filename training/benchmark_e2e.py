"""End-to-end benchmark: keypoints published -> /pose3d received, across two processes.

    this process: publishes keypoints2d + camera_info at --rate Hz, subscribes pose3d
    child process: `python -m diffhpe_ros.lifter_node` (exactly as deployed)

The keypoints are real: MediaPipe Pose on the pose2sim demo video (cached in .cache/bench/), or
the keypoints2d of a recorded bag (--bag, e.g. the demo's docs/demo/bag). For P > 1 persons the
track is copied into P tiles of the image (half size, different phases of the motion) so the
lifter tracks P distinct people. Latency = receive time of the pose3d message - header stamp of
the keypoints it was lifted from (the stamp is set at publish time, both processes read the same
system clock). A keypoints message with no pose3d within 1 s of the end is a drop.
Each person count gets a fresh lifter process; a warm-up (not measured) fills the windows.

    .venv/bin/python training/benchmark_e2e.py --model models/diffhpe_lifter.onnx --persons 1 4

Prints a markdown table (for docs/benchmarks.md); --json also writes the numbers.
Goal on the 2-core CPU: p99 <= 20 ms and no drops at 30 Hz for 1 person.

Noisy machines: the rows are measured interleaved (--repeats segments per row, the person
counts taking turns, each segment with a fresh lifter process), and the table says the load
average before and after, with the CPU count.

Also (--offline-runs N, 0 to skip): the offline demo (`diffhpe_demo --offline`: decode, detect
and lift every frame) against a bare decode + MediaPipe loop over the same video, N runs of each,
alternating; goal: the offline demo keeps >= 0.9x the bare loop's frames/s (lifting is nearly
free next to the detector).
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from diffhpe_models import threads  # noqa: F401  (the thread policy, set before torch loads)

KEYPOINTS_PER_PERSON = 33
GOAL_P99_MS = 20.0
GOAL_OFFLINE_VS_BARE = 0.9


# --- the keypoint track --------------------------------------------------------------------

def detect_video_keypoints(cache_dir: Path, video: str = "pose2sim", scale: float = 0.5):
    """MediaPipe keypoints of a demo video, cached. Returns (points_px (T, 33, 2), conf (T, 33),
    image_wh, (fx, fy, cx, cy), fps)."""
    import cv2

    from diffhpe_models.atomic import atomic_save_npz
    from diffhpe_ros.demo_videos import demo_video
    from diffhpe_ros.pose_detector import PoseDetector

    cache = cache_dir / "bench" / f"keypoints_{video}_x{scale:g}.npz"
    if cache.is_file():
        d = np.load(cache)
        return d["points_px"], d["conf"], tuple(d["image_wh"]), tuple(d["intrinsics"]), float(d["fps"])
    path, intrinsics = demo_video(video, cache_dir)
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    w, h = round(cap.get(cv2.CAP_PROP_FRAME_WIDTH) * scale), round(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) * scale)
    points, conf = [], []
    with PoseDetector() as detector:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            rgb = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1].copy()
            p, c = detector.detect(rgb)
            if len(p) == 0:  # keep the track continuous: repeat the last detection, unseen
                p, c = (points[-1][None], np.zeros((1, KEYPOINTS_PER_PERSON), np.float32)) if points else (
                    np.zeros((1, KEYPOINTS_PER_PERSON, 2), np.float32), np.zeros((1, KEYPOINTS_PER_PERSON), np.float32))
            points.append(p[0])
            conf.append(c[0])
    if not points:
        raise RuntimeError(f"{path}: no frames decoded")
    intrinsics = tuple(v * scale for v in intrinsics)
    atomic_save_npz(cache, points_px=np.stack(points), conf=np.stack(conf), image_wh=np.array([w, h]),
                    intrinsics=np.array(intrinsics), fps=np.array(fps))
    return np.stack(points), np.stack(conf), (w, h), intrinsics, float(fps)


def bag_keypoints(bag: Path):
    """The first person's keypoints2d (and the camera_info) of a recorded bag, same returns."""
    from geometry_msgs.msg import PoseArray
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo

    from diffhpe_ros.bag import read_bag
    from diffhpe_ros.conversions import keypoints_from_pose_array

    points, conf, stamps, info = [], [], [], None
    for m in read_bag(bag, ["/keypoints2d", "/camera_info"]):
        if m.topic == "/camera_info":
            info = info or deserialize_message(m.raw, CameraInfo)
            continue
        kp = keypoints_from_pose_array(deserialize_message(m.raw, PoseArray), KEYPOINTS_PER_PERSON)
        if len(kp.points_px):
            points.append(kp.points_px[0])
            conf.append(kp.conf[0])
            stamps.append(m.log_time_ns)
    if info is None or len(points) < 2:
        raise ValueError(f"bag {bag}: needs /camera_info and at least 2 keypoints2d messages with a person")
    fps = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)
    return (np.stack(points), np.stack(conf), (info.width, info.height),
            (info.k[0], info.k[4], info.k[2], info.k[5]), fps)


def resample_ping_pong(points, conf, src_fps: float, rate_hz: float):
    """Resample a track to `rate_hz` (nearest frame) and append it reversed, so that looping it
    never jumps: (T', 33, 2), (T', 33)."""
    n = len(points)
    idx = np.round(np.arange(0, n - 1, src_fps / rate_hz)).astype(int)
    idx = np.concatenate([idx, idx[-2:0:-1]])
    return points[idx], conf[idx]


def tile_persons(points, conf, image_wh, persons: int):
    """P copies in a grid of half-size tiles, each at a different phase: (T, P, 33, 2), (T, P, 33)."""
    if persons == 1:
        return points[:, None], conf[:, None]
    cols = int(np.ceil(np.sqrt(persons)))
    rows = int(np.ceil(persons / cols))
    w, h = image_wh
    tile = np.array([w / cols, h / rows])
    out_p, out_c = [], []
    for k in range(persons):
        shift = (k * len(points)) // persons
        offset = np.array([(k % cols) * tile[0], (k // cols) * tile[1]])
        out_p.append(np.roll(points, shift, axis=0) * (1.0 / max(cols, rows)) + offset)
        out_c.append(np.roll(conf, shift, axis=0))
    return np.stack(out_p, axis=1), np.stack(out_c, axis=1)


# --- one measurement -----------------------------------------------------------------------

def start_lifter(model: str, backend: str, params_file: Path | None, env: dict,
                 extra: list[str]) -> subprocess.Popen:
    """`python -m diffhpe_ros.lifter_node` with the deployed parameters file, then ours."""
    cmd = [sys.executable, "-m", "diffhpe_ros.lifter_node", "--ros-args"]
    if params_file is not None and params_file.is_file():
        cmd += ["--params-file", str(params_file)]
    cmd += ["-p", f"model_path:={model}", "-p", f"backend:={backend}",
           "-p", "keypoint_format:=mediapipe33", "-p", "max_output_rate_hz:=0.0"]
    for e in extra:
        cmd += ["-p", e]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_lifter(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


def measure(track_p, track_c, image_wh, intrinsics, rate_hz: float, warmup_s: float,
            duration_s: float, proc: subprocess.Popen) -> dict:
    """Publish the track at rate_hz, collect pose3d; returns the numbers of one table row."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from diffhpe_ros.conversions import keypoints_to_pose_array
    from diffhpe_ros.video_source import camera_info_msg

    context = rclpy.Context()
    rclpy.init(args=[], context=context)  # our command line is not for rcl
    node = Node("bench_publisher", context=context)
    pub = node.create_publisher(PoseArray, "keypoints2d", QoSProfile(depth=10))
    info_pub = node.create_publisher(CameraInfo, "camera_info", QoSProfile(depth=10))
    received: dict[int, int] = {}
    persons_out: list[int] = []
    diag: dict[str, str] = {}

    def on_pose(msg):
        now = node.get_clock().now().nanoseconds
        received[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = now
        persons_out.append(len(msg.poses) // 17)

    def on_diag(msg):
        for status in msg.status:
            if status.name.startswith("diffhpe_ros"):
                diag.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(PoseArray, "pose3d", on_pose, qos_profile_sensor_data)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, QoSProfile(depth=10))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        end = time.monotonic() + 120
        while pub.get_subscription_count() == 0 or node.count_publishers("pose3d") == 0:
            if proc.poll() is not None:
                raise RuntimeError("the lifter process exited:\n" + stop_lifter(proc)[-3000:])
            if time.monotonic() > end:
                raise RuntimeError("the lifter did not subscribe within 120 s")
            time.sleep(0.05)
        w, h = image_wh
        n_warm, n_measure = int(warmup_s * rate_hz), int(duration_s * rate_hz)
        sent: list[int] = []
        t0 = time.monotonic()
        for k in range(n_warm + n_measure):
            due = t0 + k / rate_hz
            while (delay := due - time.monotonic()) > 0:
                time.sleep(min(delay, 0.002) if delay < 0.004 else delay - 0.002)
            stamp_ns = node.get_clock().now().nanoseconds
            header = Header(frame_id="camera_optical_frame")
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)
            i = k % len(track_p)
            info_pub.publish(camera_info_msg(header, w, h, *intrinsics))
            pub.publish(keypoints_to_pose_array(track_p[i], track_c[i], header))
            if k >= n_warm:
                sent.append(stamp_ns)
        time.sleep(1.0)  # stragglers
        if proc.poll() is not None:
            raise RuntimeError("the lifter process died during the run:\n" + stop_lifter(proc)[-3000:])
        achieved_hz = (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9)
    finally:
        executor.shutdown()
        spinner.join(timeout=5)
        node.destroy_node()
        context.try_shutdown()
    latency_ms = [(received[s] - s) / 1e6 for s in sent if s in received]
    return row_of(int(track_p.shape[1]), rate_hz, [achieved_hz], len(sent), latency_ms,
                  persons_out, [diag.get("lift_latency_p99_ms", "n/a")],
                  diag.get("backend", "n/a"))


def row_of(persons: int, rate_hz: float, achieved_hz: list[float], sent: int,
           latency_ms: list[float], persons_out: list[int], node_lift_p99_ms: list,
           backend: str) -> dict:
    """One table row from the raw numbers of one or more segments."""
    lat = np.asarray(latency_ms, dtype=float)
    pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
    return {
        "persons": persons, "rate_hz": rate_hz, "achieved_send_hz": float(np.mean(achieved_hz)),
        "sent": sent, "lifted": int(len(lat)), "dropped": sent - int(len(lat)),
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "persons_per_output": float(np.mean(persons_out)) if persons_out else 0.0,
        "node_lift_p99_ms": " / ".join(str(v) for v in node_lift_p99_ms),
        "backend": backend, "latency_ms": [float(v) for v in lat],
        "persons_out": list(persons_out), "achieved_hz": list(achieved_hz),
    }


def merge_rows(rows: list[dict]) -> dict:
    """The segments of one person count as one row (latencies pooled, counts summed)."""
    return row_of(rows[0]["persons"], rows[0]["rate_hz"], [h for r in rows for h in r["achieved_hz"]],
                  sum(r["sent"] for r in rows), [v for r in rows for v in r["latency_ms"]],
                  [v for r in rows for v in r["persons_out"]],
                  [r["node_lift_p99_ms"] for r in rows], rows[0]["backend"])


def markdown(rows: list[dict]) -> str:
    lines = ["| persons | rate (Hz) | sent | lifted | dropped | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) "
             "| lift only p99 (ms, node) | backend |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['persons']} | {r['rate_hz']:g} | {r['sent']} | {r['lifted']} | {r['dropped']} "
                     f"| {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} "
                     f"| {r['node_lift_p99_ms']} | {r['backend']} |")
    return "\n".join(lines)


def load_line(before: float) -> str:
    return (f"Machine load: 1-min load average {before:.2f} -> {os.getloadavg()[0]:.2f} on "
            f"{os.cpu_count()} CPUs; rows measured interleaved.")


def bare_decode_detect(video_path: Path, scale: float, max_frames: int) -> tuple[int, float, float]:
    """The reference loop: decode (+ resize) and MediaPipe on every frame, nothing else.
    Returns (frames, wall s, process CPU s); MediaPipe's graph is built before the clock starts."""
    from diffhpe_ros.pose_detector import PoseDetector
    from diffhpe_ros.video_frames import VideoFrames

    with VideoFrames(video_path, scale) as video, PoseDetector() as detector:
        detector.detect(np.zeros((64, 64, 3), np.uint8))
        frames, t0, c0 = 0, time.perf_counter(), time.process_time()
        while (not max_frames or frames < max_frames) and (frame := video.read()) is not None:
            detector.detect(np.ascontiguousarray(frame.bgr[..., ::-1]))
            frames += 1
        return frames, time.perf_counter() - t0, time.process_time() - c0


def offline_vs_bare(a) -> str:
    """The offline demo's loop against the bare decode + detect loop on the demo video,
    alternating runs; markdown with the verdict."""
    import tempfile

    from diffhpe_ros.demo import RECORDED_TOPICS, lifter_values
    from diffhpe_ros.demo_videos import demo_video
    from diffhpe_ros.offline import run_offline

    video_path, (fx, fy, cx, cy) = demo_video("pose2sim", a.cache)
    values = lifter_values(a.model, str(a.params) if a.params.is_file() else None,
                           None if a.backend == "auto" else a.backend, None)
    fps = {"bare": [], "offline": []}
    cpu_ms = {"bare": [], "offline": []}  # process CPU per frame
    lifted = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="diffhpe_offline_bench_") as tmp:
        for k in range(a.offline_runs):
            n, s, c = bare_decode_detect(video_path, 0.5, a.offline_frames)
            fps["bare"].append(n / s)
            cpu_ms["bare"].append(c / n * 1e3)
            run = run_offline(video_path, values, Path(tmp) / f"bag{k}", RECORDED_TOPICS,
                              scale=0.5, max_frames=a.offline_frames,
                              camera={"fx": fx, "fy": fy, "cx": cx, "cy": cy}, progress=False)
            fps["offline"].append(len(run.published) / run.wall_s)
            cpu_ms["offline"].append(run.cpu_s / len(run.published) * 1e3)
            lifted.append(f"{run.counters.get('lifted_frames', 0)}/{len(run.published)}")
            print(f"bare {fps['bare'][-1]:.1f} frames/s, offline {fps['offline'][-1]:.1f} "
                  "frames/s", file=sys.stderr, flush=True)
    bare, offline = float(np.median(fps["bare"])), float(np.median(fps["offline"]))
    ratio = offline / bare
    cpu_bare, cpu_offline = float(np.median(cpu_ms["bare"])), float(np.median(cpu_ms["offline"]))
    verdict = "met" if ratio >= GOAL_OFFLINE_VS_BARE else "missed"
    lines = ["Offline demo vs a bare decode + MediaPipe loop (pose2sim demo video at half size, "
             f"{a.offline_runs} alternating runs each; frames/s of the loop, model and "
             "MediaPipe loaded before the clock starts)", "",
             "| loop | frames/s (median) | runs (frames/s) | CPU ms per frame (median) | lifted / frames |",
             "|---|---|---|---|---|",
             f"| bare: decode + detect | {bare:.1f} | {', '.join(f'{v:.1f}' for v in fps['bare'])} "
             f"| {cpu_bare:.1f} | - |",
             f"| offline demo: decode + detect + lift | {offline:.1f} | "
             f"{', '.join(f'{v:.1f}' for v in fps['offline'])} | {cpu_offline:.1f} | {', '.join(lifted)} |",
             "", load_line(load_before), "",
             f"Goal (offline >= {GOAL_OFFLINE_VS_BARE:g}x the bare loop's frames/s): {ratio:.2f}x, "
             f"{verdict}. Without a free core (load above the CPU count) the lift cannot overlap "
             f"the detector and the ratio tends to the CPU ratio, {cpu_bare / cpu_offline:.2f}x "
             "(CPU ms per frame: the process's CPU time, all threads)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="lifter model (.pt/.onnx/engine)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--persons", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rate", type=float, default=30.0, help="keypoint rate (Hz)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds not measured")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per row")
    ap.add_argument("--repeats", type=int, default=2,
                    help="interleaved segments per row (each duration/repeats long)")
    ap.add_argument("--offline-runs", type=int, default=2,
                    help="runs each of the offline demo and the bare decode+detect loop (0: skip)")
    ap.add_argument("--offline-frames", type=int, default=0,
                    help="frames of the demo video per offline / bare run (0: all)")
    ap.add_argument("--bag", type=Path, default=None, help="take the keypoints from this bag")
    ap.add_argument("--cache", type=Path, default=Path(".cache"))
    ap.add_argument("--params", type=Path, default=Path("config/lifter.yaml"),
                    help="lifter parameters file (used when it exists)")
    ap.add_argument("--lifter-param", action="append", default=[], metavar="NAME:=VALUE",
                    help="extra lifter parameter (repeatable)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the table into this markdown file (its end-to-end section)")
    a = ap.parse_args(argv)
    if a.repeats < 1 or a.offline_runs < 0:
        ap.error("--repeats must be >= 1 and --offline-runs >= 0")

    if a.bag is not None:
        points, conf, image_wh, intrinsics, src_fps = bag_keypoints(a.bag)
        source = f"bag {a.bag}"
    else:
        points, conf, image_wh, intrinsics, src_fps = detect_video_keypoints(a.cache)
        source = "MediaPipe on pose2sim Demo_SinglePerson cam01 (half size)"
    points, conf = resample_ping_pong(points, conf, src_fps, a.rate)

    env = dict(os.environ)
    env.setdefault("ROS_LOG_DIR", str((a.cache / "ros_log").resolve()))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    # a domain of our own: other ROS processes on this host must not see (or feed) ours
    env["ROS_DOMAIN_ID"] = env.get("BENCH_ROS_DOMAIN_ID", str(random.randint(120, 200)))
    os.environ.update({k: env[k] for k in ("ROS_LOG_DIR", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})

    segments: dict[int, list[dict]] = {p: [] for p in a.persons}
    load_before = os.getloadavg()[0]
    for _ in range(a.repeats):  # the rows take turns: a passing load hits them alike
        for persons in a.persons:
            track_p, track_c = tile_persons(points, conf, image_wh, persons)
            proc = start_lifter(a.model, a.backend, a.params, env, a.lifter_param)
            try:
                segments[persons].append(measure(track_p, track_c, image_wh, intrinsics, a.rate,
                                                 a.warmup, a.duration / a.repeats, proc))
            finally:
                log = stop_lifter(proc)
            if proc.returncode not in (0, -signal.SIGINT):
                print(f"warning: lifter exited with {proc.returncode}:\n{log[-2000:]}", file=sys.stderr)
            r = segments[persons][-1]
            print(f"{persons} person(s): p99 {r['p99_ms']:.1f} ms, dropped {r['dropped']}",
                  file=sys.stderr, flush=True)
    rows = [merge_rows(segments[p]) for p in a.persons]

    header = (f"End-to-end, two processes ({platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
              f"model {a.model}; keypoints: {source}; {a.duration:g} s per row in {a.repeats} "
              f"interleaved segments, each after {a.warmup:g} s warm-up)")
    lines = [header, "", markdown(rows), "", load_line(load_before)]
    one = [r for r in rows if r["persons"] == 1]
    if one:
        r = one[0]
        met = r["p99_ms"] <= GOAL_P99_MS and r["dropped"] == 0
        lines += ["", f"Goal (1 person, {a.rate:g} Hz: p99 <= {GOAL_P99_MS:g} ms, no drops): "
                      f"{'met' if met else 'NOT met'}"]
    if a.offline_runs > 0:
        lines += ["", offline_vs_bare(a)]
    report = "\n".join(lines)
    print(report)
    if a.out is not None:
        from diffhpe_models.atomic import atomic_replace_section
        command = "python training/benchmark_e2e.py " + " ".join(argv if argv is not None else sys.argv[1:])
        # One section per model file (a run of another model keeps this one's).
        atomic_replace_section(a.out, f"e2e-benchmark-{Path(a.model).stem}",
                               f"## End-to-end (ROS 2 node, `training/benchmark_e2e.py`): {a.model}\n\n"
                               f"Command: `{command}`\n\n{report}", title="# Benchmarks")
    if a.json is not None:
        from diffhpe_models.atomic import atomic_write_json
        atomic_write_json(a.json, {"source": source, "model": a.model, "rows": [
            {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()
             if not isinstance(v, list)} for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ROS 2 node: 2D keypoints (PoseArray) in, DiffHPE 3D poses out (PoseArray, PointCloud2, markers).

Subscription callback (executor thread): parse, check, associate persons, update their causal
windows, hand the newest batch to the worker. Worker thread: one batched `lift` for all persons of
the frame, root placement, publishing. The hand-over slot holds one frame: a frame not yet taken
when a newer one arrives is dropped (counted), so under overload the output stays current and
the executor is never blocked by the model.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import Counter, deque

import numpy as np
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header
from diagnostic_msgs.msg import DiagnosticArray
from visualization_msgs.msg import MarkerArray

from diffhpe_models.camera import solve_root_translation
from diffhpe_models.occlusion import confidence_mask
from diffhpe_models.runtime import load_lifter
from diffhpe_models.skeleton import KEYPOINT_FORMATS, to_h36m17
from diffhpe_ros import params
from diffhpe_ros.conversions import (MAX_ABS_COORDINATE_PX, BadMessage, Intrinsics,
                                     diagnostic_array, intrinsics_from_camera_info,
                                     keypoints_from_pose_array,
                                     pose3d_to_point_cloud2, pose3d_to_pose_array,
                                     skeleton_markers, stamp_to_s)
from diffhpe_ros.entry import run_node
from diffhpe_ros.tracking import PersonTracker
from diffhpe_ros.window_buffer import CausalWindow

DEFAULT_FRAME_ID = "camera_optical_frame"
DIAGNOSTIC_NAME = "diffhpe_ros: lifter"
# Every kind of bad input the node counts; all appear in /diagnostics (0 when never seen).
BAD_INPUT_REASONS = (
    "wrong_pose_count", "nonfinite_keypoints", "coordinate_out_of_range", "confidence_out_of_range",
    "stamp_repeated", "stamp_backwards", "clock_jump_back", "stamp_jump", "too_many_persons",
    "bad_camera_info", "lift_failed", "nonfinite_output", "root_translation_failed",
)
LATENCY_HISTORY = 512


def place_roots(pose_rel_m: np.ndarray, uv_px: np.ndarray, mask: np.ndarray,
                intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Move root-relative poses (P, 17, 3) m to the camera-frame position that best reprojects
    them onto their keypoints uv (P, 17, 2) px with mask (P, 17).

    Returns (pose_m (P, 17, 3), placed (P,) bool); a person that cannot be placed (too few
    visible joints, or solved behind the camera) stays root-relative with placed False.
    """
    k = intrinsics
    root_m = solve_root_translation(pose_rel_m, uv_px, mask, k.fx, k.fy, k.cx, k.cy)
    placed = np.isfinite(root_m).all(axis=-1) & (root_m[:, 2] > 0)
    return pose_rel_m + np.where(placed[:, None, None], root_m[:, None, :], 0.0), placed


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, missing or unusable model)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Snapshot of the parameters (one attribute per entry of params.PARAMETERS)."""

    model_path: str
    backend: str
    device: str
    intra_op_threads: int
    fixed_noise: bool
    seed: int
    expected_steps: int
    expected_hypotheses: int
    expected_window: int
    expected_fps: float
    keypoint_format: str
    confidence_threshold: float
    min_visible_joints: int
    image_width: int
    image_height: int
    use_camera_info: bool
    camera_frame_id: str
    max_gap_s: float
    track_timeout_s: float
    max_persons: int
    association_gate: float
    max_output_rate_hz: float
    marker_lifetime_s: float
    diagnostics_period_s: float
    warning_throttle_s: float


@dataclasses.dataclass
class LiftJob:
    """One frame for the worker: P persons (sorted by track id), windows of L frames."""

    header: Header
    track_ids: np.ndarray  # (P,)
    noise_slots: np.ndarray  # (P,) row of the lifter's fixed noise per person (one per track)
    keypoints_px: np.ndarray  # (P, L, 17, 2)
    mask: np.ndarray  # (P, L, 17)
    image_wh: np.ndarray  # (P, 2) px
    intrinsics: Intrinsics | None
    marker_lifetime_s: float
    received_s: float  # time.perf_counter() when the message arrived


class LatestSlot:
    """A queue of size one that keeps the newest item: put() replaces what was not taken."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False

    def put(self, item) -> bool:
        """Store item; True if it replaced one that was never taken (a dropped frame)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float):
        """The newest item, or None after timeout_s or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class LifterNode(Node):
    """The lifter. Topics (relative, so they remap): sub `keypoints2d`, `camera_info`; pub
    `pose3d`, `pose3d/points`, `pose3d/markers`, and `/diagnostics`."""

    def __init__(self, node_name: str = params.NODE_NAME, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        try:
            self._setup()
        except BaseException:
            super().destroy_node()  # release the half-built node: the caller gets the error
            raise

    def _setup(self) -> None:
        self._started = False
        self._lock = threading.Lock()  # guards the counters shared with the worker
        self._bad = Counter({r: 0 for r in BAD_INPUT_REASONS})
        self._warned_at: dict[str, float] = {}
        self._suppressed = Counter()
        self._period = Counter()  # counts since the last diagnostics message
        self._received = 0
        self._empty_frames = 0
        self._too_few_joints = 0
        self._dropped_stale = 0
        self._rate_limited = 0
        self._lifted_frames = 0
        self._lift_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self._total_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self._diag_wall_s = time.monotonic()

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        declared = self.declare_parameters("", [(p.name, p.default, params.descriptor(p))
                                                for p in params.PARAMETERS])
        self.settings = Settings(**{p.name: p.value for p in declared})
        self.lifter = self._load_lifter(self.settings)
        self.window = int(self.lifter.window)
        self.fps = float(self.lifter.fps)
        self._started = True

        s = self.settings
        self.tracker = PersonTracker(s.max_persons, s.association_gate, s.track_timeout_s)
        self.windows: dict[int, CausalWindow] = {}
        # Track id -> row of the fixed diffusion noise: a person keeps its noise (and so its
        # output for the same input) whoever else comes or goes; live tracks never share one.
        self.noise_slots: dict[int, int] = {}
        self.intrinsics: Intrinsics | None = None
        self._last_stamp_s: float | None = None
        self._last_queued_s: float | None = None

        out_qos = QoSProfile(depth=10)
        self.pub_pose = self.create_publisher(PoseArray, "pose3d", out_qos)
        self.pub_points = self.create_publisher(PointCloud2, "pose3d/points", out_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "pose3d/markers", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        self.create_subscription(PoseArray, "keypoints2d", self._on_keypoints,
                                 qos_profile_sensor_data)
        if s.use_camera_info:
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                     qos_profile_sensor_data)
        self.create_timer(s.diagnostics_period_s, self._publish_diagnostics)

        self._slot = LatestSlot()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="diffhpe_lift", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"lifting {s.keypoint_format} keypoints with {self.lifter.backend_name} "
            f"(window {self.window} at {self.fps:g} Hz, {self.lifter.hypotheses} hypotheses, "
            f"{self.lifter.steps} steps) from {self._model_file}")

    @property
    def received_frames(self) -> int:
        """keypoints2d messages received so far (good or bad)."""
        with self._lock:
            return self._received

    def counters(self) -> dict[str, int]:
        """The running totals of /diagnostics (same keys), read together: frames received,
        empty, lifted, dropped stale, rate limited, persons with too few joints, and
        `bad_input.<reason>` for every reason. A frame handed to the worker ends as lifted,
        dropped stale or bad_input.lift_failed."""
        with self._lock:
            return self._counters_locked()

    def _counters_locked(self) -> dict[str, int]:
        values = {"received_frames": self._received, "empty_frames": self._empty_frames,
                  "lifted_frames": self._lifted_frames, "dropped_stale_frames": self._dropped_stale,
                  "rate_limited_frames": self._rate_limited,
                  "persons_too_few_joints": self._too_few_joints}
        values.update({f"bad_input.{r}": n for r, n in sorted(self._bad.items())})
        return values

    # --- parameters ------------------------------------------------------------------------

    def _on_set_parameters(self, changed) -> SetParametersResult:
        """Refuse a bad or read-only change with the reason (rclpy has checked type and range)."""
        for p in changed:
            spec = params.SPECS.get(p.name)
            if spec is None:
                continue  # e.g. use_sim_time: not ours
            reason = params.validate(p.name, p.value)
            if reason is None and spec.read_only and self._started \
                    and p.value != getattr(self.settings, p.name):
                reason = f"{p.name} is read-only while the node runs: restart the node to change it"
            if reason is not None:
                if self._started:
                    self.get_logger().warning(f"refused parameter change: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, changed) -> None:
        """Apply accepted changes (called once the new values are set)."""
        updates = {p.name: float(p.value) if params.SPECS[p.name].kind is float else p.value
                   for p in changed if p.name in params.SPECS}
        if not self._started or not updates:
            return
        self.settings = dataclasses.replace(self.settings, **updates)
        self.tracker.gate = self.settings.association_gate
        self.tracker.timeout_s = self.settings.track_timeout_s
        for w in self.windows.values():
            w.max_gap_s = self.settings.max_gap_s
        self.get_logger().info("parameters changed: " + ", ".join(
            f"{k}={v!r}" for k, v in updates.items()))

    def _load_lifter(self, s: Settings):
        try:
            self._model_file = params.resolve_path(s.model_path)
        except FileNotFoundError as e:
            raise StartupError(f"model_path: {e}") from e
        # Expectations are checked by the runtime against the file's manifest (0: not checked).
        expected = {"window_mode": "causal"}  # live: the current frame is the window's last
        for field, key in (("expected_steps", "steps"), ("expected_hypotheses", "hypotheses"),
                           ("expected_window", "window"), ("expected_fps", "fps")):
            if getattr(s, field):
                expected[key] = getattr(s, field)
        try:
            lifter = load_lifter(str(self._model_file), backend=s.backend, expected=expected,
                                 device=s.device, seed=s.seed, max_persons=s.max_persons,
                                 intra_op_threads=s.intra_op_threads or None,
                                 fixed_noise=s.fixed_noise)
        except Exception as e:  # the loaders raise many types for corrupt files: report any
            raise StartupError(f"model_path={str(self._model_file)!r} cannot be used with "
                               f"backend {s.backend!r}: {type(e).__name__}: {e}") from e
        if lifter.backend.max_persons is not None and lifter.backend.max_persons < s.max_persons:
            raise StartupError(f"max_persons={s.max_persons} exceeds the {lifter.backend_name} "
                               f"engine's limit of {lifter.backend.max_persons} persons: lower "
                               "max_persons or rebuild the engine")
        return lifter

    # --- bad input ---------------------------------------------------------------------------

    def _count_bad(self, reason: str, text: str, n: int = 1) -> None:
        """Count a bad input and log a warning, at most once per warning_throttle_s per reason."""
        with self._lock:
            self._bad[reason] += n
            self._period["bad"] += n
            self._period[f"bad.{reason}"] += n
        self._log_throttled(reason, text, n, warn=True)

    def _log_throttled(self, reason: str, text: str, n: int = 1, warn: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._warned_at.get(reason)
            if last is not None and now - last < self.settings.warning_throttle_s:
                self._suppressed[reason] += n
                return
            self._warned_at[reason] = now
            suppressed, self._suppressed[reason] = self._suppressed[reason], 0
        more = f" ({suppressed} more since the last message)" if suppressed else ""
        # One call site per severity: rclpy refuses a severity change at one call site.
        if warn:
            self.get_logger().warning(f"[{reason}] {text}{more}")
        else:
            self.get_logger().info(f"[{reason}] {text}{more}")

    # --- input -------------------------------------------------------------------------------

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.intrinsics = intrinsics_from_camera_info(msg)
        except BadMessage as e:
            self._count_bad(e.reason, f"camera_info ignored: {e.detail}")

    def _on_keypoints(self, msg: PoseArray) -> None:
        received_s = time.perf_counter()
        with self._lock:
            self._period["inputs"] += 1
            self._received += 1
        s = self.settings
        stamp_s = stamp_to_s(msg.header.stamp)
        try:
            kp = keypoints_from_pose_array(msg, KEYPOINT_FORMATS[s.keypoint_format])
        except BadMessage as e:
            self._count_bad(e.reason, f"keypoints2d message ignored: {e.detail} "
                                      f"(keypoint_format {s.keypoint_format})")
            return
        for reason, n in kp.problems.items():
            self._count_bad(reason, f"keypoints2d: {n} keypoints with {reason.replace('_', ' ')} "
                                    "treated as missing (x, y must be finite pixels with "
                                    f"|x|, |y| <= {MAX_ABS_COORDINATE_PX:g}, z a confidence in "
                                    "[0, 1])", n)
        if not self._check_stamp(stamp_s, s):
            return
        dropped = self.tracker.drop_stale(stamp_s)
        for tid in dropped:
            self.windows.pop(tid, None)
        if kp.points_px.shape[0] == 0:
            # The detector's "nobody in this frame": normal, but worth a note when it persists.
            with self._lock:
                self._empty_frames += 1
            self._log_throttled("empty", "keypoints2d holds no person: nothing to lift", warn=False)
            return

        points, conf = to_h36m17(kp.points_px, kp.conf, s.keypoint_format)
        mask = confidence_mask(conf, s.confidence_threshold)
        points = np.where(mask[..., None] > 0, points, 0.0).astype(np.float32)
        enough = mask.sum(-1) >= s.min_visible_joints
        if not enough.all():  # occluded or far away: normal, counted but not warned about
            with self._lock:
                self._too_few_joints += int((~enough).sum())
        ids = self.tracker.update(points[enough], mask[enough], stamp_s)
        if (ids < 0).any():
            self._count_bad("too_many_persons", f"{int((ids < 0).sum())} persons not tracked: "
                                                f"max_persons={s.max_persons} already tracked")
        for tid, pts, m in zip(ids, points[enough], mask[enough]):
            if tid >= 0:
                window = self.windows.get(int(tid))
                if window is None:
                    window = self.windows[int(tid)] = CausalWindow(self.window, self.fps, s.max_gap_s)
                window.push(stamp_s, pts, m)
        lift_ids = np.sort(ids[ids >= 0])
        if len(lift_ids) == 0:
            return
        # 10% slack: stamps jitter, and a 30 Hz stream limited to 10 Hz must keep every 3rd frame.
        if s.max_output_rate_hz > 0 and self._last_queued_s is not None \
                and stamp_s - self._last_queued_s < 0.9 / s.max_output_rate_hz:
            with self._lock:
                self._rate_limited += 1
            return
        self._last_queued_s = stamp_s

        windows = [self.windows[int(t)].current() for t in lift_ids]
        slots = self._noise_slots_of(lift_ids)
        intrinsics = self.intrinsics
        wh = ((intrinsics.width_px, intrinsics.height_px) if intrinsics is not None
              else (s.image_width, s.image_height))
        header = Header(stamp=msg.header.stamp,
                        frame_id=s.camera_frame_id or msg.header.frame_id or DEFAULT_FRAME_ID)
        job = LiftJob(header=header, track_ids=lift_ids, noise_slots=slots,
                      keypoints_px=np.stack([w[0] for w in windows]),
                      mask=np.stack([w[1] for w in windows]),
                      image_wh=np.tile(np.asarray(wh, dtype=np.float32), (len(lift_ids), 1)),
                      intrinsics=intrinsics, marker_lifetime_s=s.marker_lifetime_s,
                      received_s=received_s)
        if self._slot.put(job):
            with self._lock:
                self._dropped_stale += 1

    def _check_stamp(self, stamp_s: float, s: Settings) -> bool:
        """Order check on the input stamps; False when the message must be ignored."""
        last = self._last_stamp_s
        if last is not None:
            if stamp_s == last:
                self._count_bad("stamp_repeated", f"keypoints2d stamp {stamp_s:.6f} s repeated: "
                                                  "message ignored")
                return False
            if stamp_s < last and last - stamp_s <= s.max_gap_s:
                self._count_bad("stamp_backwards", f"keypoints2d stamp went back by "
                                                   f"{last - stamp_s:.3f} s: message ignored")
                return False
            if stamp_s < last:
                # Far back: a restarted clock (bag loop, simulation reset), not a late message.
                self._count_bad("clock_jump_back", f"keypoints2d stamp jumped back by "
                                                   f"{last - stamp_s:.3f} s: all tracks reset")
                self._reset_tracks()
            elif stamp_s - last > s.max_gap_s:
                self._count_bad("stamp_jump", f"keypoints2d stamp jumped ahead by "
                                              f"{stamp_s - last:.3f} s (> max_gap_s): windows "
                                              "restart")
        self._last_stamp_s = stamp_s
        return True

    def _noise_slots_of(self, track_ids: np.ndarray) -> np.ndarray:
        """(P,) noise rows for these live tracks: a track keeps its row while it lives, a new one
        takes the lowest free row (at most max_persons tracks live, the lifter has as many rows)."""
        for tid in [t for t in self.noise_slots if t not in self.tracker.tracks]:
            del self.noise_slots[tid]
        free = sorted(set(range(self.lifter.max_persons)) - set(self.noise_slots.values()),
                      reverse=True)
        for tid in track_ids:
            if int(tid) not in self.noise_slots:
                self.noise_slots[int(tid)] = free.pop()
        return np.array([self.noise_slots[int(t)] for t in track_ids], dtype=np.int64)

    def _reset_tracks(self) -> None:
        self.tracker.reset()
        self.windows.clear()
        self.noise_slots.clear()
        self._last_queued_s = None

    # --- lifting (worker thread) -------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            job = self._slot.take(timeout_s=0.1)
            if job is not None:
                try:
                    self._lift_and_publish(job)
                except Exception as e:  # keep lifting later frames whatever one frame did
                    self._count_bad("lift_failed", f"lifting failed: {type(e).__name__}: {e}")

    def _lift_and_publish(self, job: LiftJob) -> None:
        t0 = time.perf_counter()
        pose3d_m, spread_m = self.lifter.lift(job.keypoints_px, job.mask, job.image_wh,
                                              noise_slots=job.noise_slots)
        lift_ms = 1e3 * (time.perf_counter() - t0)
        pose_m = np.asarray(pose3d_m, dtype=np.float64)[:, -1]  # causal: the current frame
        spread_m = np.asarray(spread_m, dtype=np.float64)[:, -1]
        keep = np.isfinite(pose_m).all(axis=(1, 2)) & np.isfinite(spread_m).all(axis=1)
        if not keep.all():
            self._count_bad("nonfinite_output", f"{int((~keep).sum())} lifted poses held "
                                                "non-finite values: not published")
        if job.intrinsics is not None:
            pose_m, placed = place_roots(pose_m, job.keypoints_px[:, -1], job.mask[:, -1],
                                         job.intrinsics)
            if (keep & ~placed).any():
                self._count_bad("root_translation_failed",
                                f"{int((keep & ~placed).sum())} persons could not be placed in "
                                "front of the camera: not published")
            keep &= placed
        if keep.any():
            ids = job.track_ids[keep]
            self.pub_pose.publish(pose3d_to_pose_array(pose_m[keep], job.header))
            self.pub_points.publish(pose3d_to_point_cloud2(pose_m[keep], spread_m[keep], ids,
                                                           job.header))
            self.pub_markers.publish(skeleton_markers(pose_m[keep], ids, job.header,
                                                      job.marker_lifetime_s))
        with self._lock:
            self._lifted_frames += 1
            self._period["outputs"] += 1
            self._lift_ms.append(lift_ms)
            self._total_ms.append(1e3 * (time.perf_counter() - job.received_s))

    # --- diagnostics -------------------------------------------------------------------------

    def diagnostic_snapshot(self) -> tuple[str, str, dict[str, object]]:
        """(level, message, values) of the current diagnostics status."""
        now = time.monotonic()
        with self._lock:
            elapsed = max(now - self._diag_wall_s, 1e-9)
            self._diag_wall_s = now
            period, self._period = self._period, Counter()
            lift_ms = np.asarray(self._lift_ms)
            total_ms = np.asarray(self._total_ms)
            counters = self._counters_locked()

        def pct(a, q):
            return float(np.percentile(a, q)) if len(a) else float("nan")

        values = {
            "backend": self.lifter.backend_name,
            "mode": self.lifter.mode,
            "window": self.window,
            "model_fps": self.fps,
            "hypotheses": self.lifter.hypotheses,
            "steps": self.lifter.steps,
            "output": "absolute" if self.intrinsics is not None else "root_relative",
            "input_rate_hz": period["inputs"] / elapsed,
            "output_rate_hz": period["outputs"] / elapsed,
            "lift_latency_p50_ms": pct(lift_ms, 50),
            "lift_latency_p99_ms": pct(lift_ms, 99),
            "total_latency_p50_ms": pct(total_ms, 50),
            "total_latency_p99_ms": pct(total_ms, 99),
            **{k: v for k, v in counters.items() if not k.startswith("bad_input.")},
            "persons_tracked": len(self.tracker.tracks),
            "tracks_created": self.tracker.created,
            "bad_input_total": sum(v for k, v in counters.items() if k.startswith("bad_input.")),
        }
        values.update({k: v for k, v in counters.items() if k.startswith("bad_input.")})
        budget_ms = 1e3 / self.fps
        if period["bad.lift_failed"]:
            level, message = "error", f"{period['bad.lift_failed']} lifts failed in the last " \
                                      f"{elapsed:.1f} s"
        elif period["bad"]:
            level, message = "warn", f"{period['bad']} bad inputs in the last {elapsed:.1f} s"
        elif len(lift_ms) and pct(lift_ms, 99) > budget_ms:
            level, message = "warn", (f"lift latency p99 {pct(lift_ms, 99):.1f} ms exceeds the "
                                      f"frame budget {budget_ms:.1f} ms")
        else:
            level, message = "ok", "lifting" if period["outputs"] else "waiting for keypoints"
        return level, message, values

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostic_snapshot()
        self.pub_diag.publish(diagnostic_array(self.get_clock().now().to_msg(), DIAGNOSTIC_NAME,
                                               self.get_fully_qualified_name(), level, message,
                                               values))

    def destroy_node(self):
        """Stop the worker before the publishers go away."""
        if hasattr(self, "_worker"):
            self._stop.set()
            self._slot.close()
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point `lifter_node`: exits 2 with a clear error when it cannot start. One executor
    thread is enough: the model runs in the node's worker thread."""
    return run_node(LifterNode, params.NODE_NAME, args, startup_errors=(StartupError,))

if __name__ == "__main__":
    sys.exit(main())

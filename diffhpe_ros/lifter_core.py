"""The lifter's logic without ROS: everything LifterNode does between converting a message and
publishing one, so that plain pytest exercises it in milliseconds.

Executor thread: `count_received` and `admit_size` (before a message is even deserialized), then
`on_keypoints`: stamp policy (stamp_policy.py), keypoint mapping to H36M-17 and the confidence
mask, tracking (tracking.py), per-person causal windows (window_buffer.py), the noise slot of
each track, the output rate limit, and the hand-over of the newest frame (`slot`, one frame: a
frame not yet taken when a newer one arrives is dropped, counted). Worker thread: `lift` (the
model call, output checks of checks.py, root placement) and `finish` (counters). Bad input is
counted per reason and logged through the `warn` / `info` callables at most once per
`warning_throttle_s` per reason.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

import numpy as np

from diffhpe_models.camera import solve_root_translation
from diffhpe_models.occlusion import confidence_mask
from diffhpe_models.skeleton import KEYPOINT_FORMATS, to_h36m17
from diffhpe_models.uncertainty import smooth_spread_step
from diffhpe_ros.checks import (
    MAX_ABS_COORDINATE_PX,
    MAX_BODY_EXTENT_M,
    MAX_ROOT_DISTANCE_M,
    Intrinsics,
    Keypoints2D,
    output_problems,
)
from diffhpe_ros.stamp_policy import CONFIRMATIONS, MIN_JUMP_S, SequenceGaps, StampPolicy
from diffhpe_ros.tracking import PersonTracker
from diffhpe_ros.window_buffer import CausalWindow

# Every kind of bad input the node counts; all appear in /diagnostics (0 when never seen).
BAD_INPUT_REASONS = (
    "message_too_large", "wrong_pose_count", "nonfinite_keypoints", "coordinate_out_of_range",
    "confidence_out_of_range", "stamp_repeated", "stamp_backwards", "stamp_jump",
    "clock_jump_back", "clock_jump_ahead", "too_many_persons", "bad_camera_info", "lift_failed",
    "nonfinite_output", "absurd_output", "root_translation_failed",
)
# Running totals besides bad input (all in /diagnostics).
TOTALS = ("received_frames", "lost_messages", "empty_frames", "input_gaps", "lifted_frames",
          "dropped_stale_frames", "rate_limited_frames", "persons_too_few_joints")
LATENCY_HISTORY = 512
# A message may hold up to this many times max_persons persons (a crowd: the extra ones are
# counted as too_many_persons); a larger one is refused before it is deserialized, so that
# 10,000 persons cannot stall the executor (deserializing them in Python takes seconds).
MESSAGE_PERSONS_FACTOR = 2
MESSAGE_SLACK_POSES = 32  # room for the header and a frame_id (~1.8 kB) in the size bound


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


@dataclasses.dataclass(frozen=True)
class Settings:
    """Snapshot of the parameters (one attribute per entry of params.PARAMETERS)."""

    model_path: str
    backend: str
    device: str
    intra_op_threads: int
    fixed_noise: bool
    spread_smoothing: float
    mirror: str
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
    publish_tf: bool


@dataclasses.dataclass
class LiftJob:
    """One frame for the worker: P persons (sorted by track id), windows of L frames."""

    tag: Any  # the caller's, returned with the result (the node: the output Header)
    track_ids: np.ndarray  # (P,)
    noise_slots: np.ndarray  # (P,) row of the lifter's fixed noise per person (one per track)
    keypoints_px: np.ndarray  # (P, L, 17, 2)
    mask: np.ndarray  # (P, L, 17)
    image_wh: np.ndarray  # (P, 2) px
    intrinsics: Intrinsics | None
    marker_lifetime_s: float
    received_s: float  # time.perf_counter() when the message arrived


@dataclasses.dataclass
class LiftResult:
    """What to publish for a job: the P' persons that passed the output checks."""

    tag: Any
    track_ids: np.ndarray  # (P',)
    pose_m: np.ndarray  # (P', 17, 3) float64, camera frame (placed) or root-relative
    spread_m: np.ndarray  # (P', 17)
    marker_lifetime_s: float
    lift_ms: float
    received_s: float


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


class LifterCore:
    """The lifter without ROS. lifter: a diffhpe_models.runtime.Lifter (or anything with its
    `lift`, `window`, `fps`, `max_persons`); warn / info: one-line loggers."""

    def __init__(self, settings: Settings, lifter, warn: Callable[[str], None],
                 info: Callable[[str], None]):
        self.settings = settings
        self.lifter = lifter
        self.window = int(lifter.window)
        self.fps = float(lifter.fps)
        self._warn, self._info = warn, info
        self._lock = threading.Lock()  # guards the counters shared by the two threads
        self._bad = Counter({r: 0 for r in BAD_INPUT_REASONS})
        self._totals = Counter({k: 0 for k in TOTALS})
        self._period = Counter()  # counts since the last diagnostics snapshot
        self._warned_at: dict[str, float] = {}
        self._suppressed = Counter()
        self._lift_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self._total_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self._diag_wall_s = time.monotonic()

        s = settings
        self.tracker = PersonTracker(s.max_persons, s.association_gate, s.track_timeout_s)
        self.windows: dict[int, CausalWindow] = {}
        # Track id -> row of the fixed diffusion noise: a person keeps its noise (and so its
        # output for the same input) whoever else comes or goes; live tracks never share one.
        self.noise_slots: dict[int, int] = {}
        # Track id -> its published spread's running squared average (uncertainty.smooth_spread_step).
        self.spread_sq: dict[int, np.ndarray] = {}
        self.intrinsics: Intrinsics | None = None
        self.stamps = StampPolicy()
        self.sequences = SequenceGaps()
        self._last_queued_s: float | None = None
        self.slot = LatestSlot()

    # --- settings ----------------------------------------------------------------------------

    def apply(self, updates: dict[str, object]) -> None:
        """Take changed parameter values (already validated) into effect."""
        self.settings = dataclasses.replace(self.settings, **updates)
        self.tracker.gate = self.settings.association_gate
        self.tracker.timeout_s = self.settings.track_timeout_s
        for w in self.windows.values():
            w.max_gap_s = self.settings.max_gap_s

    @property
    def keypoints_per_person(self) -> int:
        return KEYPOINT_FORMATS[self.settings.keypoint_format]

    def max_message_poses(self) -> int:
        """Most poses a keypoints2d message may hold (see MESSAGE_PERSONS_FACTOR)."""
        return (MESSAGE_PERSONS_FACTOR * self.settings.max_persons * self.keypoints_per_person
                + MESSAGE_SLACK_POSES)

    # --- counting and logging ----------------------------------------------------------------

    def count_bad(self, reason: str, text: str, n: int = 1) -> None:
        """Count a bad input and log a warning, at most once per warning_throttle_s per reason."""
        with self._lock:
            self._bad[reason] += n
            self._period["bad"] += n
            self._period[f"bad.{reason}"] += n
        self._log_throttled(reason, text, n, warn=True)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._totals[name] += n
            self._period[name] += n

    def _log_throttled(self, key: str, text: str, n: int = 1, warn: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._warned_at.get(key)
            if last is not None and now - last < self.settings.warning_throttle_s:
                self._suppressed[key] += n
                return
            self._warned_at[key] = now
            suppressed, self._suppressed[key] = self._suppressed[key], 0
        more = f" ({suppressed} more since the last message)" if suppressed else ""
        # One call site per severity: rclpy refuses a severity change at one call site.
        if warn:
            self._warn(f"[{key}] {text}{more}")
        else:
            self._info(f"[{key}] {text}{more}")

    def counters(self) -> dict[str, int]:
        """The running totals of /diagnostics (same keys), read together: TOTALS and
        `bad_input.<reason>` for every reason. A frame handed to the worker ends as lifted,
        dropped stale or bad_input.lift_failed."""
        with self._lock:
            return self._counters_locked()

    def _counters_locked(self) -> dict[str, int]:
        values = dict(self._totals)
        values.update({f"bad_input.{r}": n for r, n in sorted(self._bad.items())})
        return values

    # --- input (executor thread) -------------------------------------------------------------

    def count_received(self, publisher: bytes | None = None, sequence: int | None = None) -> None:
        """A keypoints2d message arrived (good or bad); publisher / sequence: its publisher's id
        and publication sequence number, when the middleware gives them, to count lost ones."""
        lost = self.sequences.lost(publisher, sequence)
        self._count("received_frames")
        with self._lock:
            self._period["inputs"] += 1
        if lost:
            self._count("lost_messages", lost)
            self._log_throttled("lost_messages", f"{lost} keypoints2d messages lost before the "
                                "node received them (queue overflow or transport)", lost)

    def admit_size(self, poses_at_most: int) -> bool:
        """Whether a message of at most this many poses may be deserialized and parsed; a larger
        one is counted as message_too_large."""
        limit = self.max_message_poses()
        if poses_at_most <= limit:
            return True
        self.count_bad("message_too_large", (
            f"keypoints2d message of up to {poses_at_most} poses refused unparsed: at most "
            f"{limit} ({MESSAGE_PERSONS_FACTOR} x max_persons={self.settings.max_persons} "
            f"persons of {self.keypoints_per_person} keypoints)"))
        return False

    def on_camera_info(self, intrinsics: Intrinsics) -> None:
        """A checked camera_info (a refused one is counted with count_bad by the caller)."""
        self.intrinsics = intrinsics

    def on_keypoints(self, stamp_s: float, kp: Keypoints2D, tag: Any, received_s: float) -> bool:
        """One parsed keypoints2d message: True when a frame was handed to the worker."""
        s = self.settings
        for reason, n in kp.problems.items():
            self.count_bad(reason, f"keypoints2d: {n} keypoints with {reason.replace('_', ' ')} "
                                   "treated as missing (x, y must be finite pixels with "
                                   f"|x|, |y| <= {MAX_ABS_COORDINATE_PX:g}, z a confidence in "
                                   "[0, 1])", n)
        if not self._check_stamp(stamp_s):
            return False
        for tid in self.tracker.drop_stale(stamp_s):
            self.windows.pop(tid, None)
        if kp.points_px.shape[0] == 0:
            # The detector's "nobody in this frame": normal, but worth a note when it persists.
            self._count("empty_frames")
            self._log_throttled("empty", "keypoints2d holds no person: nothing to lift", warn=False)
            return False

        points, conf = to_h36m17(kp.points_px, kp.conf, s.keypoint_format)
        mask = confidence_mask(conf, s.confidence_threshold)
        points = np.where(mask[..., None] > 0, points, 0.0).astype(np.float32)
        enough = mask.sum(-1) >= s.min_visible_joints
        if not enough.all():  # occluded or far away: normal, counted but not warned about
            self._count("persons_too_few_joints", int((~enough).sum()))
        ids = self.tracker.update(points[enough], mask[enough], stamp_s)
        if (ids < 0).any():
            self.count_bad("too_many_persons", f"{int((ids < 0).sum())} persons not tracked: "
                                               f"max_persons={s.max_persons} already tracked")
        for tid, pts, m in zip(ids, points[enough], mask[enough]):
            if tid >= 0:
                window = self.windows.get(int(tid))
                if window is None:
                    window = self.windows[int(tid)] = CausalWindow(self.window, self.fps,
                                                                   s.max_gap_s)
                window.push(stamp_s, pts, m)
        lift_ids = np.sort(ids[ids >= 0])
        if len(lift_ids) == 0:
            return False
        # 10% slack: stamps jitter, and a 30 Hz stream limited to 10 Hz must keep every 3rd frame.
        if s.max_output_rate_hz > 0 and self._last_queued_s is not None \
                and stamp_s - self._last_queued_s < 0.9 / s.max_output_rate_hz:
            self._count("rate_limited_frames")
            return False
        self._last_queued_s = stamp_s

        windows = [self.windows[int(t)].current() for t in lift_ids]
        intrinsics = self.intrinsics
        wh = ((intrinsics.width_px, intrinsics.height_px) if intrinsics is not None
              else (s.image_width, s.image_height))
        job = LiftJob(tag=tag, track_ids=lift_ids, noise_slots=self._noise_slots_of(lift_ids),
                      keypoints_px=np.stack([w[0] for w in windows]),
                      mask=np.stack([w[1] for w in windows]),
                      image_wh=np.tile(np.asarray(wh, dtype=np.float32), (len(lift_ids), 1)),
                      intrinsics=intrinsics, marker_lifetime_s=s.marker_lifetime_s,
                      received_s=received_s)
        if self.slot.put(job):
            self._count("dropped_stale_frames")
        return True

    def _check_stamp(self, stamp_s: float) -> bool:
        """The stamp policy (stamp_policy.py); False when the message must be ignored."""
        s = self.settings
        last = self.stamps.last_s
        jump_s = max(s.track_timeout_s, MIN_JUMP_S)
        verdict = self.stamps.check(stamp_s, jump_s)
        if verdict.reason is None:
            if last is not None and stamp_s - last > s.max_gap_s:
                self._count("input_gaps")  # the persons' windows restart (CausalWindow.push)
            return True
        if not verdict.accepted:
            wait = f"a clock jump needs {CONFIRMATIONS} consecutive messages that agree"
            text = {"stamp_repeated": f"keypoints2d stamp {stamp_s:.6f} s repeated",
                    "stamp_backwards": f"keypoints2d stamp {last - stamp_s:.3f} s older than "
                                       f"the last one (late; {wait})",
                    "stamp_jump": f"keypoints2d stamp {stamp_s - last:.3f} s ahead of the last "
                                  f"one, more than {jump_s:g} s ({wait})"}[verdict.reason]
            self.count_bad(verdict.reason, f"{text}: message ignored")
            return False
        if verdict.reason == "clock_jump_back":  # farther back than any track lives
            self._reset_tracks()
            what = "all tracks reset"
        else:  # ahead: drop_stale expires the tracks
            what = "tracks not seen within track_timeout_s expire"
        self.count_bad(verdict.reason, f"keypoints2d clock jumped by {verdict.jump_s:+.3f} s "
                                       f"({CONFIRMATIONS} consecutive messages agree): {what}")
        return True

    def _noise_slots_of(self, track_ids: np.ndarray) -> np.ndarray:
        """(P,) noise rows for these live tracks: a track keeps its row while it lives, a new one
        takes the lowest free row (at most max_persons tracks live, the lifter has as many rows)."""
        for tid in [t for t in self.noise_slots if t not in self.tracker.tracks]:
            del self.noise_slots[tid]
        # The worker thread adds entries while this runs: iterate over a snapshot (list() of a
        # dict is one step under the GIL) and tolerate a key it has not written yet.
        for tid in [t for t in list(self.spread_sq) if t not in self.tracker.tracks]:
            self.spread_sq.pop(tid, None)
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
        self.spread_sq.clear()
        self._last_queued_s = None

    # --- lifting (worker thread) -------------------------------------------------------------

    def lift(self, job: LiftJob) -> LiftResult:
        """The model call for one job, then the output checks: a person whose pose is non-finite
        or absurd (checks.output_problems), or who cannot be placed in front of the camera, is
        counted and left out of the result."""
        t0 = time.perf_counter()
        extra = {}
        if job.intrinsics is not None:  # a camera-aware ("rays") model normalises by them
            k = job.intrinsics
            extra["intrinsics"] = np.tile(np.array([k.fx, k.fy, k.cx, k.cy], dtype=np.float32),
                                          (len(job.track_ids), 1))
        pose3d_m, spread_m = self.lifter.lift(job.keypoints_px, job.mask, job.image_wh,
                                              noise_slots=job.noise_slots, **extra)
        lift_ms = 1e3 * (time.perf_counter() - t0)
        pose_m = np.asarray(pose3d_m, dtype=np.float64)[:, -1]  # causal: the current frame
        spread_m = np.asarray(spread_m, dtype=np.float64)[:, -1]
        nonfinite, absurd = output_problems(pose_m, spread_m)
        if nonfinite.any():
            self.count_bad("nonfinite_output", f"{int(nonfinite.sum())} lifted poses held "
                                               "non-finite values: not published")
        if absurd.any():
            self.count_bad("absurd_output", f"{int(absurd.sum())} lifted poses larger than "
                                            f"{MAX_BODY_EXTENT_M:g} m: not published")
        keep = ~nonfinite & ~absurd
        pose_m = np.where(keep[:, None, None], pose_m, 0.0)
        spread_m = np.where(keep[:, None], spread_m, 0.0)
        if job.intrinsics is not None:
            pose_m, placed = place_roots(pose_m, job.keypoints_px[:, -1], job.mask[:, -1],
                                         job.intrinsics)
            if (keep & ~placed).any():
                self.count_bad("root_translation_failed",
                               f"{int((keep & ~placed).sum())} persons could not be placed in "
                               "front of the camera: not published")
            keep &= placed
            far = keep & output_problems(pose_m, spread_m)[1]
            if far.any():
                self.count_bad("absurd_output", f"{int(far.sum())} persons placed farther than "
                                                f"{MAX_ROOT_DISTANCE_M:g} m: not published")
            keep &= ~far
        spread_m = self._smooth_spread(job.track_ids[keep], spread_m[keep])
        return LiftResult(tag=job.tag, track_ids=job.track_ids[keep], pose_m=pose_m[keep],
                          spread_m=spread_m, marker_lifetime_s=job.marker_lifetime_s,
                          lift_ms=lift_ms, received_s=job.received_s)

    def _smooth_spread(self, track_ids: np.ndarray, spread_m: np.ndarray) -> np.ndarray:
        """The published spread of each person: its running average over frames (the setting
        spread_smoothing; 1 = this frame's)."""
        weight = self.settings.spread_smoothing
        out = np.array(spread_m, dtype=np.float64)
        for i, tid in enumerate(int(t) for t in track_ids):
            sq = smooth_spread_step(self.spread_sq.get(tid), spread_m[i], weight)
            self.spread_sq[tid] = sq      # the main thread may drop it meanwhile: use `sq`
            out[i] = np.sqrt(sq)
        return out

    def finish(self, result: LiftResult) -> None:
        """Count a lifted frame once its result is published."""
        self._count("lifted_frames")
        with self._lock:
            self._period["outputs"] += 1
            self._lift_ms.append(result.lift_ms)
            self._total_ms.append(1e3 * (time.perf_counter() - result.received_s))

    # --- diagnostics -------------------------------------------------------------------------

    def diagnostic_snapshot(self) -> tuple[str, str, dict[str, object]]:
        """(level, message, values) of the current diagnostics status; starts a new period."""
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

        lifter = self.lifter
        values = {
            "backend": lifter.backend_name,
            "mode": lifter.mode,
            "window": self.window,
            "model_fps": self.fps,
            "hypotheses": lifter.hypotheses,
            "steps": lifter.steps,
            "mirror": lifter.mirror,
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
        elif period["lost_messages"]:
            level, message = "warn", (f"{period['lost_messages']} input messages lost in the "
                                      f"last {elapsed:.1f} s")
        elif len(lift_ms) and pct(lift_ms, 99) > budget_ms:
            level, message = "warn", (f"lift latency p99 {pct(lift_ms, 99):.1f} ms exceeds the "
                                      f"frame budget {budget_ms:.1f} ms")
        else:
            level, message = "ok", "lifting" if period["outputs"] else "waiting for keypoints"
        return level, message, values

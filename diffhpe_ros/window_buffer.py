"""Per-person causal window on the model's frame-rate grid, built from stamped observations.

The model was trained on frames spaced 1/fps apart; cameras run at other rates and drop frames.
For the observation at stamp t the window holds the grid times t - (L-1-k)/fps, k = 0..L-1 (the
last one is t itself: causal), each interpolated per joint from the observations where that joint
was visible. A joint hidden for longer than max_gap_s, or not seen since, is missing (mask 0,
coordinate 0), as at training time. Grid times before the first observation repeat it (edge
padding). A gap between observations longer than max_gap_s restarts the window.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from diffhpe_models.skeleton import NUM_JOINTS


class CausalWindow:
    """Observations of one person and the causal window at the newest one.

    window: L frames; fps: the model's frame rate (Hz); max_gap_s: longest gap filled by
    interpolation (may be changed at any time: the buffer is resized). Memory is bounded:
    observations closer than half a grid step are thinned, and only the last
    (L-1)/fps + max_gap_s seconds are kept.
    """

    def __init__(self, window: int, fps: float, max_gap_s: float):
        if window < 1 or not fps > 0:
            raise ValueError(f"need window >= 1, fps > 0; got {window}, {fps}")
        self.window = int(window)
        self.fps = float(fps)
        self._stamps: deque[float] = deque()
        self._points: deque[np.ndarray] = deque()
        self._masks: deque[np.ndarray] = deque()
        self.max_gap_s = max_gap_s  # sizes the buffer
        self.resets = 0

    @property
    def max_gap_s(self) -> float:
        return self._max_gap_s

    @max_gap_s.setter
    def max_gap_s(self, value: float) -> None:
        """Set the longest interpolated gap (s, > 0) and resize the buffer to hold its span (a
        smaller one keeps the newest observations)."""
        if not value > 0:
            raise ValueError(f"need max_gap_s > 0, got {value}")
        self._max_gap_s = float(value)
        # Thinning keeps consecutive kept stamps >= half a step apart, except the newest pair.
        span_s = (self.window - 1) / self.fps + self._max_gap_s
        self.capacity = int(np.ceil(2 * span_s * self.fps)) + 4
        self._stamps = deque(self._stamps, maxlen=self.capacity)
        self._points = deque(self._points, maxlen=self.capacity)
        self._masks = deque(self._masks, maxlen=self.capacity)

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def last_stamp_s(self) -> float | None:
        return self._stamps[-1] if self._stamps else None

    def clear(self) -> None:
        self._stamps.clear()
        self._points.clear()
        self._masks.clear()

    def push(self, stamp_s: float, points_px: np.ndarray, mask: np.ndarray) -> str:
        """Add one observation: points (17, 2) px, mask (17,) (1 = visible).

        Returns 'ok', 'reset' (gap > max_gap_s: the window restarted with this observation) or
        'backwards' (stamp not after the newest one: ignored).
        """
        points_px = np.asarray(points_px, dtype=np.float32)
        mask = np.asarray(mask, dtype=np.float32)
        if points_px.shape != (NUM_JOINTS, 2) or mask.shape != (NUM_JOINTS,):
            raise ValueError(f"need points (17, 2) and mask (17,), got {points_px.shape}, {mask.shape}")
        if not np.isfinite(stamp_s):
            raise ValueError(f"stamp must be finite, got {stamp_s}")
        status = "ok"
        if self._stamps:
            if stamp_s <= self._stamps[-1]:
                return "backwards"
            if stamp_s - self._stamps[-1] > self.max_gap_s:
                self.clear()
                self.resets += 1
                status = "reset"
        # The newest kept observation is superseded when it lies within half a grid step of the
        # one before it: at the grid's resolution it adds nothing once a newer one exists.
        if len(self._stamps) >= 2 and self._stamps[-1] - self._stamps[-2] < 0.5 / self.fps:
            self._stamps.pop()
            self._points.pop()
            self._masks.pop()
        self._stamps.append(float(stamp_s))
        self._points.append(np.where(mask[:, None] > 0, points_px, 0.0).astype(np.float32))
        self._masks.append((mask > 0).astype(np.float32))
        horizon = stamp_s - (self.window - 1) / self.fps - self.max_gap_s
        while len(self._stamps) > 2 and self._stamps[1] < horizon:
            self._stamps.popleft()
            self._points.popleft()
            self._masks.popleft()
        return status

    def grid_s(self) -> np.ndarray:
        """(L,) grid times in seconds ending at the newest observation."""
        if not self._stamps:
            raise ValueError("empty window: push an observation first")
        return self._stamps[-1] - (self.window - 1 - np.arange(self.window)) / self.fps

    def current(self) -> tuple[np.ndarray, np.ndarray]:
        """The window at the newest observation: points (L, 17, 2) float32 px, mask (L, 17)."""
        grid = self.grid_s()
        stamps = np.asarray(self._stamps)
        points = np.stack(self._points)  # (N, 17, 2)
        masks = np.stack(self._masks)  # (N, 17)
        # Edge padding: grid times before the first observation take the first observation.
        grid_c = np.maximum(grid, stamps[0])
        out = np.zeros((self.window, NUM_JOINTS, 2), dtype=np.float32)
        out_mask = np.zeros((self.window, NUM_JOINTS), dtype=np.float32)
        for j in range(NUM_JOINTS):
            seen = masks[:, j] > 0
            if not seen.any():
                continue
            t = stamps[seen]
            # Position of each grid time among this joint's visible stamps: the neighbours must
            # both exist (no extrapolation) and lie at most max_gap_s apart.
            right = np.searchsorted(t, grid_c, side="left")
            exact = (right < len(t)) & (t[np.minimum(right, len(t) - 1)] == grid_c)
            inner = (right > 0) & (right < len(t))
            gap = np.where(inner, t[np.minimum(right, len(t) - 1)] - t[np.maximum(right - 1, 0)],
                           np.inf)
            ok = exact | (inner & (gap <= self.max_gap_s))
            if ok.any():
                for d in range(2):
                    out[ok, j, d] = np.interp(grid_c[ok], t, points[seen, j, d])
                out_mask[ok, j] = 1.0
        return out, out_mask

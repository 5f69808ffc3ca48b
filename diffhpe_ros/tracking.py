"""Frame-to-frame association of 2D persons, so each person keeps one id and one causal window.

Cost of pairing a track with a detection: the mean 2D distance over the joints visible in both,
divided by the person's size (the diagonal of the bounding box of its visible joints), so the gate
means the same for a person near the camera and one far away. Pairs are chosen by the Hungarian
method (scipy's linear_sum_assignment); pairs costing more than the gate stay unpaired.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

# Below this many pixels a person's size is not trusted (one visible joint, far away).
MIN_PERSON_SIZE_PX = 20.0
# Too few shared joints make the mean distance meaningless: fall back to the centroids.
MIN_SHARED_JOINTS = 3


@dataclass
class Track:
    """A tracked person: its id, last observed 2D pose (17, 2) px + mask (17,), last stamp."""

    track_id: int
    points_px: np.ndarray
    mask: np.ndarray
    last_seen_s: float
    hits: int = 1


def person_sizes_px(points_px: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, 17, 2) px, (N, 17) -> (N,) diagonal of the bounding box of the visible joints, at
    least MIN_PERSON_SIZE_PX (also for persons with fewer than 2 visible joints)."""
    visible = (mask > 0)[..., None]
    lo = np.where(visible, points_px, np.inf).min(axis=1)
    hi = np.where(visible, points_px, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):  # inf - inf for persons with no visible joint
        diag = np.linalg.norm(hi - lo, axis=-1)
    diag = np.where((mask > 0).sum(axis=1) >= 2, diag, 0.0)
    return np.maximum(diag, MIN_PERSON_SIZE_PX)


def person_size_px(points_px: np.ndarray, mask: np.ndarray) -> float:
    """Size of one person (17, 2) px with mask (17,): see person_sizes_px."""
    return float(person_sizes_px(points_px[None], mask[None])[0])


def cost_matrix(track_px: np.ndarray, track_mask: np.ndarray, det_px: np.ndarray,
                det_mask: np.ndarray) -> np.ndarray:
    """Size-normalised distances (T, D) between T tracked and D detected 2D poses ((N, 17, 2)
    px, masks (N, 17)): the mean distance over the joints visible in both, or the distance of
    the centroids when fewer than MIN_SHARED_JOINTS are shared; inf if either has no visible
    joint."""
    tm, dm = track_mask > 0, det_mask > 0
    shared = tm[:, None] & dm[None]  # (T, D, 17)
    n_shared = shared.sum(-1)
    dist = np.linalg.norm(track_px[:, None] - det_px[None], axis=-1)
    mean_shared = (dist * shared).sum(-1) / np.maximum(n_shared, 1)

    def centroid(px, m):
        return (px * m[..., None]).sum(1) / np.maximum(m.sum(1), 1)[:, None]

    centroid_dist = np.linalg.norm(centroid(track_px, tm)[:, None] - centroid(det_px, dm)[None],
                                   axis=-1)
    size = np.maximum(person_sizes_px(track_px, track_mask)[:, None],
                      person_sizes_px(det_px, det_mask)[None])
    cost = np.where(n_shared >= MIN_SHARED_JOINTS, mean_shared, centroid_dist) / size
    return np.where(tm.any(1)[:, None] & dm.any(1)[None], cost, np.inf)


def association_cost(track_px: np.ndarray, track_mask: np.ndarray, det_px: np.ndarray,
                     det_mask: np.ndarray) -> float:
    """cost_matrix for one track (17, 2) px / (17,) and one detection."""
    return float(cost_matrix(track_px[None], track_mask[None], det_px[None], det_mask[None])[0, 0])


class PersonTracker:
    """Associates the persons of each frame with tracks; bounded to `max_tracks` tracks.

    gate: largest cost (in person sizes) of a pairing; timeout_s: a track not seen for longer is
    dropped.
    """

    def __init__(self, max_tracks: int, gate: float, timeout_s: float):
        if max_tracks < 1 or not gate > 0 or not timeout_s > 0:
            raise ValueError(f"need max_tracks >= 1, gate > 0, timeout_s > 0; got {max_tracks}, "
                             f"{gate}, {timeout_s}")
        self.max_tracks = int(max_tracks)
        self.gate = float(gate)
        self.timeout_s = float(timeout_s)
        self.tracks: dict[int, Track] = {}
        self.created = 0
        self._next_id = 0

    def reset(self) -> None:
        """Forget all tracks (ids keep increasing, so an old id never names a new person)."""
        self.tracks.clear()

    def drop_stale(self, now_s: float) -> list[int]:
        """Drop tracks not seen for more than timeout_s before now_s; returns their ids."""
        stale = [tid for tid, t in self.tracks.items() if now_s - t.last_seen_s > self.timeout_s]
        for tid in stale:
            del self.tracks[tid]
        return stale

    def update(self, points_px: np.ndarray, mask: np.ndarray, now_s: float) -> np.ndarray:
        """Associate the P detections of one frame: points (P, 17, 2) px, mask (P, 17).

        Returns (P,) int64 track ids; -1 for a detection left without a track because
        max_tracks tracks are already in use. Call drop_stale(now_s) first to expire tracks.
        """
        points_px = np.asarray(points_px, dtype=np.float32)
        mask = np.asarray(mask, dtype=np.float32)
        n_det = points_px.shape[0]
        ids = np.full(n_det, -1, dtype=np.int64)
        track_ids = list(self.tracks)
        if n_det and track_ids:
            cost = cost_matrix(np.stack([self.tracks[t].points_px for t in track_ids]),
                               np.stack([self.tracks[t].mask for t in track_ids]), points_px, mask)
            # Gated pairs get a cost no allowed pair can reach, then are discarded.
            blocked = ~(cost <= self.gate)
            rows, cols = linear_sum_assignment(np.where(blocked, self.gate * 1e6 + 1.0, cost))
            for r, c in zip(rows, cols):
                if not blocked[r, c]:
                    ids[c] = track_ids[r]
        for d in range(n_det):
            if ids[d] < 0 and len(self.tracks) < self.max_tracks:
                ids[d] = self._next_id
                self._next_id = (self._next_id + 1) % 2**31  # fits a Marker id (int32)
                self.created += 1
                self.tracks[int(ids[d])] = Track(int(ids[d]), points_px[d], mask[d], now_s, 0)
            if ids[d] >= 0:
                track = self.tracks[int(ids[d])]
                # Keep the last position of joints that are hidden now: better for the next match.
                track.points_px = np.where(mask[d][:, None] > 0, points_px[d], track.points_px)
                track.mask = np.maximum(mask[d], track.mask)
                track.last_seen_s = now_s
                track.hits += 1
        return ids

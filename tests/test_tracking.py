"""Person association across frames: stable ids, gating by person size, timeouts, bounds."""
import numpy as np
import pytest
from keypoint_stream import keypoints_h36m

from diffhpe_ros.tracking import PersonTracker, association_cost, person_size_px

ALL = np.ones(17, np.float32)


def two_people(n=30):
    a, _ = keypoints_h36m(n, x0_m=-0.8)
    b, _ = keypoints_h36m(n, x0_m=0.9)
    return a, b


def test_ids_follow_people_whatever_the_detection_order():
    a, b = two_people()
    tracker = PersonTracker(max_tracks=4, gate=0.5, timeout_s=1.0)
    first = tracker.update(np.stack([a[0], b[0]]), np.stack([ALL, ALL]), 0.0)
    assert sorted(first.tolist()) == [0, 1]
    for t in range(1, len(a)):
        order = [1, 0] if t % 2 else [0, 1]
        pts = np.stack([a[t], b[t]])[order]
        ids = tracker.update(pts, np.stack([ALL, ALL]), t / 30)
        assert ids[order.index(0)] == first[0] and ids[order.index(1)] == first[1]
    assert tracker.created == 2 and len(tracker.tracks) == 2


def test_partial_visibility_still_associates():
    a, b = two_people()
    tracker = PersonTracker(4, 0.5, 1.0)
    ids0 = tracker.update(np.stack([a[0], b[0]]), np.stack([ALL, ALL]), 0.0)
    legs_only = ALL.copy()
    legs_only[7:] = 0  # upper body hidden
    ids1 = tracker.update(np.stack([b[1], a[1]]), np.stack([legs_only, legs_only]), 1 / 30)
    assert ids1.tolist() == ids0[::-1].tolist()


def test_gate_is_relative_to_person_size():
    a, _ = keypoints_h36m(1)
    size = person_size_px(a[0], ALL)
    assert 150 < size < 400
    shifted = a[0] + [0.3 * size, 0.0]
    assert association_cost(a[0], ALL, shifted, ALL) == pytest.approx(0.3, rel=1e-3)
    # The same pixel shift is small for a person twice as large, large for one half as large.
    centre = a[0].mean(0)
    big = centre + 2 * (a[0] - centre)
    small = centre + 0.5 * (a[0] - centre)
    assert association_cost(big, ALL, big + [0.3 * size, 0], ALL) == pytest.approx(0.15, rel=1e-3)
    assert association_cost(small, ALL, small + [0.3 * size, 0], ALL) == pytest.approx(0.6, rel=1e-3)
    tracker = PersonTracker(4, gate=0.5, timeout_s=1.0)
    first = tracker.update(small[None], ALL[None], 0.0)[0]
    second = tracker.update((small + [0.3 * size, 0])[None], ALL[None], 0.03)[0]
    assert second != first  # gated out: a new person
    assert association_cost(a[0], np.zeros(17), a[0], ALL) == np.inf


def test_tracks_time_out_and_ids_are_never_reused():
    a, _ = keypoints_h36m(1)
    tracker = PersonTracker(4, 0.5, timeout_s=0.5)
    tid = tracker.update(a, ALL[None], 0.0)[0]
    assert tracker.drop_stale(0.4) == []
    assert tracker.update(a, ALL[None], 0.4)[0] == tid
    assert tracker.drop_stale(1.0) == [tid] and tracker.tracks == {}
    new = tracker.update(a, ALL[None], 1.0)[0]
    assert new != tid
    tracker.reset()
    assert tracker.update(a, ALL[None], 1.1)[0] not in (tid, new)


def test_number_of_tracks_is_bounded():
    a, _ = keypoints_h36m(1)
    tracker = PersonTracker(max_tracks=3, gate=0.5, timeout_s=0.2)
    far = np.stack([a[0] + [1000.0 * i, 0.0] for i in range(5)])
    ids = tracker.update(far, np.ones((5, 17)), 0.0)
    assert (ids >= 0).sum() == 3 and (ids == -1).sum() == 2 and len(tracker.tracks) == 3
    # A person popping up at a new place every frame never grows the table past the bound.
    for t in range(1, 50):
        tracker.drop_stale(t / 30)
        tracker.update((a[0] + [37.0 * t, 500.0 * (t % 3)])[None], ALL[None], t / 30)
        assert len(tracker.tracks) <= 3


def test_bad_arguments_are_refused():
    for args in ((0, 0.5, 1.0), (2, 0.0, 1.0), (2, 0.5, float("nan"))):
        with pytest.raises(ValueError):
            PersonTracker(*args)


def test_disjoint_visible_joints_fall_back_to_centroids():
    a, _ = keypoints_h36m(1)
    upper, legs = np.zeros(17), np.zeros(17)
    upper[7:] = 1
    legs[:7] = 1
    cost = association_cost(a[0], upper, a[0], legs)
    centroid_gap = np.linalg.norm(a[0, 7:].mean(0) - a[0, :7].mean(0))
    size = max(person_size_px(a[0], upper), person_size_px(a[0], legs))
    assert cost == pytest.approx(centroid_gap / size, rel=1e-5)
    tracker = PersonTracker(4, gate=1.0, timeout_s=1.0)
    first = tracker.update(a, upper[None], 0.0)
    assert (tracker.update(a, legs[None], 0.03) == first).all()

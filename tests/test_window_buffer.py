"""Causal windows on the model's frame grid from stamped observations."""
import numpy as np
import pytest

from diffhpe_ros.window_buffer import CausalWindow

L, FPS = 9, 30.0
ALL = np.ones(17, np.float32)


def linear_pose(t_s):
    """A pose moving at constant velocity: linear interpolation reproduces it exactly."""
    base = np.stack([np.arange(17) * 10.0, np.arange(17) * 5.0], -1)
    return (base + np.array([100.0, -40.0]) * t_s + 200.0).astype(np.float32)


def feed(window, stamps, mask=ALL):
    return [window.push(t, linear_pose(t), mask) for t in stamps]


def test_model_rate_input_gives_the_last_frames():
    w = CausalWindow(L, FPS, max_gap_s=0.5)
    stamps = 100.0 + np.arange(30) / FPS
    assert set(feed(w, stamps)) == {"ok"}
    pts, mask = w.current()
    assert pts.shape == (L, 17, 2) and mask.shape == (L, 17) and pts.dtype == np.float32
    assert (mask == 1).all()
    expected = np.stack([linear_pose(t) for t in stamps[-L:]])
    np.testing.assert_allclose(pts, expected, atol=1e-3)
    np.testing.assert_allclose(w.grid_s(), stamps[-L:], atol=1e-9)


@pytest.mark.parametrize("camera_fps", [60.0, 25.0, 12.0])
def test_other_camera_rates_are_resampled_onto_the_model_grid(camera_fps):
    w = CausalWindow(L, FPS, max_gap_s=0.5)
    stamps = 5.0 + np.arange(int(2 * camera_fps)) / camera_fps
    feed(w, stamps)
    pts, mask = w.current()
    grid = stamps[-1] - (L - 1 - np.arange(L)) / FPS
    assert (mask == 1).all()
    np.testing.assert_allclose(pts, np.stack([linear_pose(t) for t in grid]), atol=1e-3)


def test_start_is_edge_padded():
    w = CausalWindow(L, FPS, max_gap_s=0.5)
    feed(w, [1.0])
    pts, mask = w.current()
    assert (mask == 1).all()
    np.testing.assert_allclose(pts, np.broadcast_to(linear_pose(1.0), pts.shape))
    feed(w, [1.0 + 1 / FPS, 1.0 + 2 / FPS])
    pts, _ = w.current()
    np.testing.assert_allclose(pts[: L - 2], np.broadcast_to(linear_pose(1.0), (L - 2, 17, 2)))
    np.testing.assert_allclose(pts[-1], linear_pose(1.0 + 2 / FPS), atol=1e-4)


def test_short_gap_is_filled_long_gap_restarts():
    w = CausalWindow(L, FPS, max_gap_s=0.2)
    stamps = list(np.arange(10) / FPS) + [13 / FPS, 14 / FPS]  # 3 frames (0.1 s) missing
    assert feed(w, stamps)[-2] == "ok"
    pts, mask = w.current()
    grid = stamps[-1] - (L - 1 - np.arange(L)) / FPS
    assert (mask == 1).all()
    np.testing.assert_allclose(pts, np.stack([linear_pose(t) for t in grid]), atol=1e-3)
    assert w.push(stamps[-1] + 0.5, linear_pose(stamps[-1] + 0.5), ALL) == "reset"
    assert len(w) == 1 and w.resets == 1
    pts, _ = w.current()
    np.testing.assert_allclose(pts, np.broadcast_to(linear_pose(stamps[-1] + 0.5), pts.shape))


def test_hidden_joints_are_missing_not_invented():
    w = CausalWindow(L, FPS, max_gap_s=0.1)
    hidden_now = ALL.copy()
    hidden_now[3] = 0
    stamps = np.arange(20) / FPS
    feed(w, stamps[:-1])
    w.push(stamps[-1], linear_pose(stamps[-1]), hidden_now)
    pts, mask = w.current()
    assert mask[-1, 3] == 0 and (pts[-1, 3] == 0).all()  # not extrapolated
    assert (mask[:-1, 3] == 1).all() and (mask[:, np.arange(17) != 3] == 1).all()

    # Hidden for 0.3 s (> max_gap_s) inside the window: missing there, visible around it.
    w = CausalWindow(L, FPS, max_gap_s=0.1)
    for i, t in enumerate(stamps):
        m = hidden_now if 8 <= i <= 16 else ALL
        w.push(t, linear_pose(t), m)
    _, mask = w.current()
    assert mask[:, 3].tolist() == [0.0] * (L - 3) + [1.0] * 3

    # Hidden for 2 frames (< max_gap_s): interpolated.
    w = CausalWindow(L, FPS, max_gap_s=0.1)
    for i, t in enumerate(stamps):
        w.push(t, linear_pose(t), hidden_now if i in (15, 16) else ALL)
    pts, mask = w.current()
    assert (mask == 1).all()
    np.testing.assert_allclose(pts[4:6, 3], [linear_pose(t)[3] for t in stamps[15:17]], atol=1e-3)


def test_joint_first_seen_late_is_missing_before():
    w = CausalWindow(L, FPS, max_gap_s=0.5)
    late = ALL.copy()
    late[12] = 0
    stamps = np.arange(L) / FPS
    for i, t in enumerate(stamps):
        w.push(t, linear_pose(t), late if i < 4 else ALL)
    _, mask = w.current()
    assert mask[:, 12].tolist() == [0.0] * 4 + [1.0] * (L - 4)


def test_stamps_going_backwards_are_ignored():
    w = CausalWindow(L, FPS, max_gap_s=0.5)
    feed(w, [1.0, 1.1])
    before = w.current()
    assert w.push(1.05, linear_pose(1.05), ALL) == "backwards"
    assert w.push(1.1, linear_pose(1.1), ALL) == "backwards"
    after = w.current()
    np.testing.assert_array_equal(before[0], after[0])
    assert len(w) == 2


def test_memory_is_bounded_under_a_fast_stream():
    w = CausalWindow(27, FPS, max_gap_s=0.5)
    stamps = np.arange(5000) / 1000.0  # 1 kHz for 5 s
    feed(w, stamps)
    assert len(w) <= w.capacity and len(w) <= 2 * (26 / FPS + 0.5) * FPS + 4
    pts, mask = w.current()
    grid = stamps[-1] - (26 - np.arange(27)) / FPS
    assert (mask == 1).all()
    np.testing.assert_allclose(pts, np.stack([linear_pose(t) for t in grid]), atol=1e-2)


def test_raising_max_gap_at_run_time_grows_the_buffer():
    # The lifter's max_gap_s parameter can be raised while windows exist: a gap up to the new
    # value must be interpolated, so the observation before it must still be held.
    w = CausalWindow(L, FPS, max_gap_s=0.5)
    small = w.capacity
    w.max_gap_s = 4.0
    assert w.capacity > small
    hidden = ALL.copy()
    hidden[3] = 0
    stamps = np.arange(91) / FPS  # joint 3 seen at 0 s and at 3 s only (a 3 s gap)
    for i, t in enumerate(stamps):
        assert w.push(t, linear_pose(t), ALL if i in (0, 90) else hidden) == "ok"
    pts, mask = w.current()
    assert (mask == 1).all()
    np.testing.assert_allclose(pts, np.stack([linear_pose(t) for t in w.grid_s()]), atol=1e-2)
    # Lowered again: the buffer shrinks to the newest observations, the window is still right
    # and the joint is missing where its gap is now too long.
    w.max_gap_s = 0.5
    assert w.capacity == small and len(w) <= small
    pts, mask = w.current()
    assert (mask[:, 3] == [0] * (L - 1) + [1]).all() and (np.delete(mask, 3, axis=1) == 1).all()
    with pytest.raises(ValueError, match="max_gap_s"):
        w.max_gap_s = 0.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        CausalWindow(0, FPS, 0.5)
    with pytest.raises(ValueError):
        CausalWindow(L, 0.0, 0.5)
    with pytest.raises(ValueError, match="max_gap_s"):
        CausalWindow(L, FPS, -1.0)
    w = CausalWindow(L, FPS, 0.5)
    with pytest.raises(ValueError, match="empty"):
        w.current()
    with pytest.raises(ValueError, match=r"\(17, 2\)"):
        w.push(0.0, np.zeros((33, 2)), np.ones(33))
    with pytest.raises(ValueError, match="finite"):
        w.push(float("nan"), linear_pose(0.0), ALL)

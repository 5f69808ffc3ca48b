"""The real-video check's pieces: triangulation, view agreement, MediaPipe world landmarks in a
camera frame, the metrics, the Qualisys calibration reader, lifting a stream as the node does.

The full check (MediaPipe on 4 videos) runs in training/evaluate_video.py, not here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffhpe_models.camera import Camera, look_at_rotation
from diffhpe_models.triangulation import (
    alignment_rotation_deg,
    consistent_views,
    multiview_reference,
    pool_metrics,
    project_points,
    ray_rotation,
    reprojection_errors,
    runs_of,
    stream_metrics,
    triangulate,
    triangulate_dlt,
    world_landmarks_to_camera,
)

RNG = np.random.default_rng(0)


def ring_cameras(n: int = 4, radius: float = 3.5, height: float = 1.8) -> list[Camera]:
    """n cameras around the origin, looking at a point 1 m up (Z up), 1088x1920 portrait."""
    cams = []
    for k in range(n):
        a = 2 * np.pi * k / n + 0.3
        pos = np.array([radius * np.cos(a), radius * np.sin(a), height])
        rot = look_at_rotation(pos, [0.0, 0.0, 1.0])
        cams.append(Camera(R=rot, t=-rot @ pos, fx=1680.0, fy=1680.0, cx=540.0, cy=960.0,
                           width=1088, height=1920))
    return cams


def body_points(n: int = 20) -> np.ndarray:
    return RNG.uniform([-0.4, -0.4, 0.0], [0.4, 0.4, 1.8], size=(n, 3))


def views_of(points: np.ndarray, cams: list[Camera]) -> np.ndarray:
    return np.stack([project_points(points, c) for c in cams])


def test_triangulation_recovers_known_points():
    cams, pts = ring_cameras(), body_points()
    uv = views_of(pts, cams)
    w = np.ones(uv.shape[:2])
    np.testing.assert_allclose(triangulate_dlt(uv, w, cams), pts, atol=1e-8)
    np.testing.assert_allclose(triangulate(uv, w, cams), pts, atol=1e-6)
    # With 1 px noise the refined points sit within a few mm and reproject within ~1 px.
    noisy = uv + RNG.normal(0.0, 1.0, uv.shape)
    got = triangulate(noisy, w, cams)
    assert np.abs(got - pts).max() < 0.01
    assert np.median(reprojection_errors(got, noisy, cams)) < 1.5


def test_refinement_reaches_the_optimum_of_a_finite_difference_fit():
    # The analytic Jacobian: a wrong one would stop the solver where the wrong gradient vanishes.
    from scipy.optimize import least_squares

    cams, pts = ring_cameras(), body_points(3)
    uv = views_of(pts, cams) + RNG.normal(0.0, 3.0, (4, 3, 2))
    uv[1, 0] += 40.0
    w = RNG.uniform(0.5, 1.0, uv.shape[:2])
    got = triangulate(uv, w, cams)

    def residuals(x):
        return ((views_of(x.reshape(3, 3), cams) - uv) * np.sqrt(w)[..., None]).ravel()

    ref = least_squares(residuals, pts.ravel(), jac="2-point", loss="soft_l1", f_scale=5.0,
                        xtol=1e-12, ftol=1e-12, gtol=1e-12).x.reshape(3, 3)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_points_seen_by_fewer_than_two_views_are_nan():
    cams, pts = ring_cameras(), body_points(3)
    uv = views_of(pts, cams)
    w = np.ones(uv.shape[:2])
    w[1:, 0] = 0.0  # point 0 seen by view 0 only
    got = triangulate(uv, w, cams)
    assert np.isnan(got[0]).all()
    np.testing.assert_allclose(got[1:], pts[1:], atol=1e-6)


def test_robust_loss_shrugs_off_one_outlier_view():
    cams, pts = ring_cameras(), body_points()
    uv = views_of(pts, cams) + RNG.normal(0.0, 0.5, (4, len(pts), 2))
    uv[2] += np.array([60.0, -45.0])  # one view 75 px off (a mislabelled or other person)
    w = np.ones(uv.shape[:2])
    robust = np.linalg.norm(triangulate(uv, w, cams) - pts, axis=1)
    plain = np.linalg.norm(triangulate(uv, w, cams, loss="linear") - pts, axis=1)
    assert np.median(robust) < 0.3 * np.median(plain)
    assert np.median(robust) < 0.02  # 2 cm; the plain fit is pulled by several cm


def test_consistent_views_leave_out_the_view_that_follows_another_person():
    cams, pts = ring_cameras(), body_points(17)
    uv = views_of(pts, cams)
    uv[1] = project_points(pts + np.array([0.9, -0.6, 0.0]), cams[1])  # view 1: someone else
    conf = np.ones(uv.shape[:2])
    views, got, err = consistent_views(uv, conf, cams, range(4), max_error_px=20.0)
    assert views == (0, 2, 3)
    np.testing.assert_allclose(got, pts, atol=1e-5)
    assert np.median(err[1]) > 100 and np.median(err[[0, 2, 3]]) < 1e-3
    # Two views cannot vouch for each other (any pair of rays nearly meets): none with min 3.
    assert consistent_views(uv, conf, cams, [0, 1], min_views=3) is None


def test_multiview_reference_over_a_stream():
    cams = ring_cameras()
    t_len = 5
    pts = np.stack([body_points(33) + [0.05 * t, 0.0, 0.0] for t in range(t_len)])  # (T, 33, 3)
    uv = np.stack([np.stack([project_points(p, c) for p in pts]) for c in cams])  # (V, T, 33, 2)
    conf = np.ones(uv.shape[:3])
    conf[3, 2] = 0.0  # view 3 found nobody in frame 2
    uv[0, 4] = np.stack([project_points(pts[4] + [1.0, 0.0, 0.0], cams[0])])  # other person
    ref = multiview_reference(uv, conf, cams)
    expected = np.ones((t_len, 4), bool)
    expected[2, 3] = False
    expected[4, 0] = False
    np.testing.assert_array_equal(ref["consistent"], expected)
    np.testing.assert_allclose(ref["points"], pts, atol=1e-5)
    assert np.isinf(ref["error_px"][3, 2]) and np.isinf(ref["error_px"][0, 4])
    # Leave one out: view v's reference comes from the others only, and is right here too.
    np.testing.assert_allclose(ref["points_loo"][1], pts, atol=1e-5)
    assert (ref["error_loo_px"][ref["consistent"].T] < 1e-3).all()


def test_ray_rotation_turns_the_optical_axis_onto_the_ray():
    k = np.array([1600.0, 1500.0, 500.0, 900.0])
    uv = np.array([[500.0, 900.0], [1000.0, 200.0], [-300.0, 1700.0]])
    rot = ray_rotation(uv, k)
    np.testing.assert_allclose(rot[0], np.eye(3), atol=1e-12)  # principal point: no turn
    for r, (u, v) in zip(rot, uv):
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        ray = np.array([(u - k[2]) / k[0], (v - k[3]) / k[1], 1.0])
        np.testing.assert_allclose(r @ [0.0, 0.0, 1.0], ray / np.linalg.norm(ray), atol=1e-12)


def test_world_landmarks_to_camera_on_a_constructed_example():
    # A pose in the camera frame, its hips' midpoint off the optical axis.
    k = np.array([1680.0, 1680.0, 540.0, 960.0])
    offsets = RNG.normal(0.0, 0.3, (17, 3))
    offsets[0] = 0.0
    root = np.array([0.6, -0.4, 3.0])
    root_px = np.array([k[0] * root[0] / root[2] + k[2], k[1] * root[1] / root[2] + k[3]])
    # 'camera': MediaPipe's axes are the camera's, nothing turns.
    np.testing.assert_allclose(world_landmarks_to_camera(offsets, root_px, k, "camera"), offsets)
    # 'ray': landmarks that a camera looking straight at the person would report (its frame:
    # the optical frame turned onto the ray) come back as the real camera's offsets.
    rot = ray_rotation(root_px, k)
    as_seen_along_ray = offsets @ rot  # rot.T @ x per joint
    np.testing.assert_allclose(world_landmarks_to_camera(as_seen_along_ray, root_px, k, "ray"),
                               offsets, atol=1e-12)
    turned = np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))
    assert turned == pytest.approx(np.degrees(np.arctan(np.hypot(0.6, -0.4) / 3.0)), abs=1e-9)
    with pytest.raises(ValueError, match="frame must be"):
        world_landmarks_to_camera(offsets, root_px, k, "world")


def test_alignment_rotation_angle():
    pose = RNG.normal(0.0, 0.3, (17, 3))
    a = np.radians(25.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    assert alignment_rotation_deg(pose @ rz.T, pose) == pytest.approx(25.0, abs=1e-6)
    assert alignment_rotation_deg(pose * 1.3, pose) == pytest.approx(0.0, abs=1e-5)


def test_stream_metrics_wiring():
    t_len = 12
    ref = np.stack([RNG.normal(0.0, 0.3, (17, 3)) for _ in range(1)] * t_len)  # still pose
    ref = ref - ref[:, :1]
    keep = np.ones(t_len, bool)
    # A copy with one joint off by 34 mm: MPJPE 2 mm over 17 joints (34 / 17), no jitter.
    off = ref.copy()
    off[:, 5] += [0.0, 0.034, 0.0]
    m = stream_metrics(off, ref, keep)
    assert m["frames"] == t_len
    assert m["mpjpe_sum_mm"] / t_len == pytest.approx(2.0)
    assert m["per_joint_sum_mm"][5] / t_len == pytest.approx(34.0)
    assert m["jitter_sum_mm"] == pytest.approx(0.0, abs=1e-9)
    # Turned and scaled: P-MPJPE (all joints and limbs) 0, MPJPE not, rotation found.
    a = np.radians(30.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    turned = 0.9 * ref @ rx.T
    m = stream_metrics(turned + [1.0, 2.0, 3.0], ref, keep)  # made root-relative inside
    assert m["p_mpjpe_sum_mm"] == pytest.approx(0.0, abs=1e-6)
    assert m["p_mpjpe_limbs_sum_mm"] == pytest.approx(0.0, abs=1e-6)
    assert m["mpjpe_sum_mm"] > 10 * t_len
    np.testing.assert_allclose(m["rotation_deg"], 30.0, atol=1e-6)
    # Jitter: every non-root joint alternating +-1 mm in x has second differences of 4 mm
    # (except the root, made root-relative): mean over 17 joints = 4 * 16 / 17.
    shake = ref.copy()
    shake[:, 1:, 0] += 0.001 * (-1.0) ** np.arange(t_len)[:, None]
    m = stream_metrics(shake, ref, keep)
    assert m["jitter_terms"] == t_len - 2
    assert m["jitter_sum_mm"] / m["jitter_terms"] == pytest.approx(4.0 * 16 / 17)
    # A dropped frame breaks the stream: no second difference spans it.
    gap = keep.copy()
    gap[5] = False
    assert runs_of(gap) == [(0, 5), (6, 12)]
    assert stream_metrics(shake, ref, gap)["jitter_terms"] == 3 + 4
    # Pooling two views weighs by frames.
    pooled = pool_metrics([stream_metrics(off, ref, keep),
                           stream_metrics(ref, ref, np.arange(t_len) < 4)])
    assert pooled["frames"] == t_len + 4
    assert pooled["mpjpe_mm"] == pytest.approx(2.0 * t_len / (t_len + 4))
    assert pool_metrics([stream_metrics(off, ref, np.zeros(t_len, bool))])["mpjpe_mm"] is None


def test_qca_cameras_follow_the_pose2sim_conversion():
    from diffhpe_ros.demo_videos import cameras_from_qca

    # A QTM camera 3 m along the world y axis, looking back at the origin. M's rows are the QTM
    # camera axes in world coordinates; a QTM camera looks down its -z with y up: z = +y world,
    # y = up (world z), x = y cross z = -x world.
    m = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    cells = " ".join(f'r{i + 1}{j + 1}="{m[i, j]}"' for i in range(3) for j in range(3))
    text = f"""<calibration><cameras><camera serial="camA">
      <fov_video bottom="1919" left="0" right="1087" top="0"/>
      <transform {cells} x="0" y="3000" z="0"/>
      <intrinsic centerPointU="{544 * 64}" centerPointV="{960 * 64}" focalLengthU="{1600 * 64}"
        focalLengthV="{1600 * 64}"/></camera></cameras></calibration>"""
    cam = cameras_from_qca(text)["camA"]
    np.testing.assert_allclose(cam.position, [0.0, 3.0, 0.0], atol=1e-12)
    assert (cam.width, cam.height) == (1088, 1920)
    # The origin is straight ahead (principal point), 3 m deep; world +z (up) is image-up.
    np.testing.assert_allclose(cam.world_to_camera([0.0, 0.0, 0.0]), [0.0, 0.0, 3.0], atol=1e-12)
    uv = project_points(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5]]), cam)
    np.testing.assert_allclose(uv[0], [544.0, 960.0], atol=1e-9)
    assert uv[1, 1] < uv[0, 1]


# The shipped model: the node publishes only poses it can place in front of the camera, which an
# untrained one cannot.
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "diffhpe_lifter.onnx"


def test_lift_stream_matches_the_lifter_on_the_nodes_window():
    from diffhpe_models.runtime import load_lifter
    from diffhpe_models.skeleton import to_h36m17
    from diffhpe_ros.video_check import lift_stream, takes_intrinsics
    from diffhpe_ros.window_buffer import CausalWindow

    cam = ring_cameras(1)[0]
    t_len = 8
    base = np.array([540.0, 900.0]) + RNG.normal(0.0, 120.0, (33, 2))
    kp = np.stack([base + [3.0 * t, 0.0] for t in range(t_len)]).astype(np.float32)
    conf = np.full((t_len, 33), 0.9, np.float32)
    found = np.ones(t_len, bool)
    found[3] = False  # nobody in frame 3
    conf[5] = 0.1  # everybody below the confidence threshold in frame 5
    lifter = load_lifter(SHIPPED_MODEL, fixed_noise=True)
    pose, lifted = lift_stream(lifter, kp, conf, found, 60.0, cam)
    np.testing.assert_array_equal(lifted, [1, 1, 1, 0, 1, 0, 1, 1])
    assert np.all(pose[~lifted] == 0) and np.all(pose[lifted][:, 0] == 0)
    # Frame 7 by hand: the window the node holds, lifted with the camera's intrinsics, its last
    # frame made root-relative.
    window = CausalWindow(lifter.window, lifter.fps, 0.5)
    kp17, c17 = to_h36m17(kp, conf, "mediapipe33")
    for t in (0, 1, 2, 4, 6, 7):
        m = (c17[t] >= 0.5).astype(np.float32)
        window.push(t / 60.0, kp17[t], m)
    points, mask = window.current()
    again = load_lifter(SHIPPED_MODEL, fixed_noise=True)
    extra = ({"intrinsics": cam.intrinsics[None].astype(np.float32)}
             if takes_intrinsics(again) else {})
    out, _ = again.lift(points[None], mask[None], cam.image_wh.astype(np.float32),
                        noise_slots=np.zeros(1, np.int64), **extra)
    np.testing.assert_allclose(pose[7], out[0, -1] - out[0, -1, :1], atol=1e-5)


def test_showcase_videos_are_refused(monkeypatch):
    from diffhpe_ros import demo_videos

    demo = demo_videos.MultiViewDemo(
        "pose2sim", "0.10.49", "Pose2Sim/Demo_Batch/Trial_1/videos/{camera}.mp4",
        "Pose2Sim/Demo_Batch/calibration/Calib.qca.txt", ("cam01",))
    monkeypatch.setitem(demo_videos.MULTIVIEW_DEMOS, "trial1", demo)
    with pytest.raises(ValueError, match="showcase"):
        demo_videos.multiview_demo("trial1", ".cache")


def test_pair_offset_errors_find_a_known_delay():
    from diffhpe_models.triangulation import pair_offset_errors

    cams = ring_cameras()
    t_len = 40
    start = body_points(17)
    # Every point moves on its own curve, so that the frames of view b can only be matched to
    # view a's at the right delay.
    phase = RNG.uniform(0.0, 2 * np.pi, (17, 1))
    pts = np.stack([start + 0.2 * np.hstack([np.sin(0.3 * t + phase), np.cos(0.2 * t + phase),
                                             np.sin(0.25 * t + 2 * phase)])
                    for t in range(t_len)])
    uv = np.stack([np.stack([project_points(p, c) for p in pts]) for c in cams])
    uv[1] = np.roll(uv[1], 3, axis=0)  # view 1 lags: its frame t + 3 shows time t
    conf = np.ones(uv.shape[:3])
    offsets = list(range(-5, 6))
    err = pair_offset_errors(uv, conf, cams, (0, 1), offsets, np.ones(t_len, bool))
    assert offsets[int(np.argmin(err))] == 3
    assert err[offsets.index(3)] < 1e-6 < err[offsets.index(0)]


def test_the_script_end_to_end_on_a_few_frames(tmp_path):
    """training/evaluate_video.py on the first 8 frames of each view: MediaPipe (cached under
    .cache/video_check by frame count), the reference, the shipped model, the report files."""
    import json

    evaluate_video = _evaluate_video_script()
    out, md = tmp_path / "check.json", tmp_path / "check.md"
    assert evaluate_video.main(["--max-frames", "8", "--model", f"shipped={SHIPPED_MODEL}",
                                "--mirror", "shipped", "--out", str(out), "--md", str(md)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert list(rows) == ["shipped", "shipped+mirror", "mediapipe_world", "mediapipe_world_ray"]
    assert result["settings"]["mirror"] == ["shipped+mirror"]
    assert rows["shipped+mirror"]["mpjpe_mm"] != rows["shipped"]["mpjpe_mm"]
    frames = rows["shipped"]["frames"]
    assert 0 < frames <= 4 * 8 and all(r["frames"] == frames for r in rows.values())
    assert sum(v["frames"] for v in result["per_view"].values()) == frames
    assert rows["mediapipe_world"]["ratio_to_mediapipe"]["mpjpe_mm"] == 1.0
    goals = rows["shipped"]["goals"]
    assert set(goals) == {"mpjpe_mm", "p_mpjpe_mm", "jitter_mm"}
    assert all(g["met"] == (g["ratio"] <= g["goal"]) for g in goals.values())
    assert rows["shipped"]["model_sha256"] and "--max-frames 8" in result["command"]
    cal = rows["shipped"]["spread_calibration"]
    assert cal["frames"] == frames and cal["hidden"] + cal["visible"] == 16 * frames
    assert set(cal["interval_90"]) == {"hidden_visible_ratio", "rank_correlation"}
    assert all(v is None or v[0] <= v[1] for v in cal["interval_90"].values())
    assert "spread_calibration" not in rows["mediapipe_world"]
    text = md.read_text()
    assert "<!-- video_check:begin" in text and "| shipped |" in text
    assert "Calibration of the spread" in text
    assert result["settings"]["noise"] == {"seed": 0, "fixed_noise": False}    # the node's default
    assert "noise_seeds" not in result and "noise seeds" not in text
    with pytest.raises(SystemExit, match="--mirror: \\['other'\\] are not --model names"):
        evaluate_video.main(["--model", f"shipped={SHIPPED_MODEL}", "--mirror", "other"])


def test_the_noise_seed_study_repeats_the_default_run_for_seed_0(tmp_path):
    """--noise-seeds 2: the spread's calibration with the node's seeds 0 and 1, fixed and fresh
    noise; its fresh seed-0 run is the main run (the node's defaults); a model without a spread
    (MixSTE) is left out."""
    import json

    evaluate_video = _evaluate_video_script()
    out, md = tmp_path / "check.json", tmp_path / "check.md"
    assert evaluate_video.main(["--max-frames", "8", "--model", f"shipped={SHIPPED_MODEL}",
                                "--model", f"mixste={SHIPPED_MODEL.parent / 'mixste_lifter.onnx'}",
                                "--noise-seeds", "2", "--out", str(out), "--md", str(md)]) == 0
    result = json.loads(out.read_text())
    study = result["noise_seeds"]
    assert list(study) == ["shipped"]
    assert [r["seed"] for r in study["shipped"]["fixed"]] == [0, 1]
    assert [r["seed"] for r in study["shipped"]["fresh"]] == [0, 1]
    main = result["rows"]["shipped"]["spread_calibration"]
    assert study["shipped"]["fresh"][0]["rank_correlation"] == main["rank_correlation"]
    assert study["shipped"]["fresh"][0]["hidden_visible_ratio"] == main["hidden_visible_ratio"]
    assert study["shipped"]["fixed"][1] != study["shipped"]["fixed"][0]
    assert "| shipped | fresh every frame (node default) | 2 |" in md.read_text()
    with pytest.raises(SystemExit):
        evaluate_video.parse_args(["--noise-seeds", "-1"])


class _Recording:
    """The shipped lifter, recording the calibration each call gets. `old_api` hides the
    intrinsics keyword, as a runtime from before camera-aware models had it."""

    def __init__(self, old_api: bool):
        from diffhpe_models.runtime import load_lifter

        self.inner = load_lifter(SHIPPED_MODEL, fixed_noise=True)
        self.window, self.fps, self.max_persons = (self.inner.window, self.inner.fps,
                                                   self.inner.max_persons)
        self.calls = []
        if old_api:
            self.lift = self._lift_old

    def lift(self, keypoints_px, mask, image_wh, noise_slots=None, intrinsics=None):
        self.calls.append((np.array(image_wh),
                           None if intrinsics is None else np.array(intrinsics)))
        return self.inner.lift(keypoints_px, mask, image_wh, noise_slots=noise_slots,
                               intrinsics=intrinsics)

    def _lift_old(self, keypoints_px, mask, image_wh, noise_slots=None):
        self.calls.append((np.array(image_wh), None))
        return self.inner.lift(keypoints_px, mask, image_wh, noise_slots=noise_slots)


@pytest.mark.parametrize("old_api", [False, True])
def test_lift_stream_passes_the_calibration(old_api):
    from diffhpe_ros.video_check import lift_stream, takes_intrinsics

    cam = ring_cameras(1)[0]
    kp = np.stack([np.array([540.0, 900.0]) + RNG.normal(0.0, 120.0, (33, 2))] * 3)
    lifter = _Recording(old_api)
    assert takes_intrinsics(lifter) is not old_api
    _, lifted = lift_stream(lifter, kp.astype(np.float32), np.full((3, 33), 0.9, np.float32),
                            np.ones(3, bool), 60.0, cam)
    assert lifted.all() and len(lifter.calls) == 3
    for image_wh, intrinsics in lifter.calls:
        np.testing.assert_array_equal(image_wh, [[cam.width, cam.height]])
        if old_api:
            assert intrinsics is None
        else:
            np.testing.assert_allclose(intrinsics, cam.intrinsics[None], rtol=1e-6)


def _evaluate_video_script():
    import sys

    sys.path.insert(0, str(SHIPPED_MODEL.parents[1] / "training"))
    try:
        import evaluate_video
    finally:
        sys.path.pop(0)
    return evaluate_video


def test_spread_calibration_on_synthetic_arrays():
    from diffhpe_ros.video_check import spread_calibration

    n = 200
    error = RNG.uniform(0.02, 0.2, (n, 17))
    observed = RNG.uniform(size=(n, 17)) > 0.3
    error[~observed] *= 3.0  # hidden joints: 3x the error
    error[:, 0] = 0.0  # the root of a root-relative pose
    spread = error / 1.5  # a spread proportional to the error: error = 1.5 x spread
    cal = spread_calibration(spread, error, observed)
    assert cal["applicable"] and cal["joints"] == 16 and cal["frames"] == n
    assert cal["hidden"] == (~observed[:, 1:]).sum() and cal["visible"] == observed[:, 1:].sum()
    assert cal["rank_correlation"] == pytest.approx(1.0)
    assert cal["hidden_visible_ratio"] == pytest.approx(3.0, rel=0.25)
    assert (cal["coverage_k1"], cal["coverage_k2"], cal["coverage_k3"]) == (0.0, 1.0, 1.0)
    goals = cal["goals"]
    assert set(goals) == {"hidden_visible_ratio", "rank_correlation"}
    assert goals["hidden_visible_ratio"]["met"] and goals["rank_correlation"]["met"]
    assert goals["rank_correlation"]["margin"] == pytest.approx(1.0 - 0.3)
    # A spread unrelated to the error and no larger on hidden joints: both goals missed.
    flat = spread_calibration(RNG.uniform(0.01, 0.011, (n, 17)), error, observed)
    assert abs(flat["rank_correlation"]) < 0.2 and flat["hidden_visible_ratio"] < 1.1
    assert not flat["goals"]["hidden_visible_ratio"]["met"]
    assert flat["goals"]["rank_correlation"]["margin"] < 0
    # A deterministic model (spread 0 everywhere): not applicable, no numbers, no goals.
    det = spread_calibration(np.zeros((n, 17)), error, observed)
    assert det["applicable"] is False and det["goals"] == {}
    assert det["hidden_visible_ratio"] is None and det["coverage_k2"] is None
    # No hidden joint: the ratio's goal is neither met nor missed.
    none_hidden = spread_calibration(spread, error, np.ones((n, 17), bool))
    assert none_hidden["hidden_visible_ratio"] is None
    assert none_hidden["goals"]["hidden_visible_ratio"]["met"] is None
    with pytest.raises(ValueError, match="share one shape"):
        spread_calibration(spread[:, 1:], error[:, 1:], observed[:, 1:])
    # The report: numbers for the diffusion model, '-' and "not applicable" for the other.
    script = _evaluate_video_script()
    text = script.calibration_table({"rows": {"diffusion": {"spread_calibration": cal},
                                              "deterministic": {"spread_calibration": det},
                                              "mediapipe_world": {}}})
    assert "| diffusion | " in text and "| 1.00 | 0.00 | 1.00 | 1.00 |" in text
    assert "| deterministic | " in text and "| - | - | - | - | - |" in text
    assert "mediapipe_world" not in text
    assert "deterministic: not applicable" in text and "rank correlation 1.00 (goal >= 0.3): met" in text


def test_lift_view_reports_the_mask_the_lifter_got():
    from diffhpe_models.runtime import load_lifter
    from diffhpe_models.skeleton import to_h36m17
    from diffhpe_ros.video_check import lift_view

    cam = ring_cameras(1)[0]
    t_len = 4
    kp = np.stack([np.array([540.0, 900.0]) + RNG.normal(0.0, 120.0, (33, 2))] * t_len)
    conf = np.full((t_len, 33), 0.9, np.float32)
    conf[2:, 25:] = 0.2  # knees, ankles and feet below the threshold from frame 2
    lifter = load_lifter(SHIPPED_MODEL, fixed_noise=True)
    view = lift_view(lifter, kp.astype(np.float32), conf, np.ones(t_len, bool), 60.0, cam)
    assert view.lifted.all()
    _, c17 = to_h36m17(kp, conf, "mediapipe33")
    np.testing.assert_array_equal(view.observed, c17 >= 0.5)
    assert not view.observed[2:].all() and view.observed[:2].all()
    assert view.spread_m.shape == (t_len, 17) and (view.spread_m >= 0).all()

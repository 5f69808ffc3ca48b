"""Projection, normalisation, virtual cameras and root/weak-perspective recovery."""
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from scipy.spatial.transform import Rotation

from diffhpe_models.camera import (
    Camera,
    CameraSampler,
    backproject,
    denormalize_screen,
    look_at_rotation,
    normalize_screen,
    project,
    solve_root_translation,
    weak_perspective_fit,
)


def random_camera(rng, **kw):
    R = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
    params = dict(R=R, t=rng.normal(0, 1, 3), fx=900.0, fy=905.0, cx=310.0, cy=250.0,
                  width=640, height=480)
    params.update(kw)
    return Camera(**params)


def body_rel_m(rng, shape=()):
    """Root-relative body-sized points (..., 17, 3), root at zero."""
    pose = rng.normal(0, 0.3, shape + (17, 3))
    return pose - pose[..., :1, :]


def test_normalize_screen_hand_values_numpy_and_torch():
    wh = np.array([1000.0, 500.0])
    uv = np.array([[0.0, 0.0], [1000.0, 500.0], [500.0, 250.0], [250.0, 0.0]])
    expected = np.array([[-1.0, -0.5], [1.0, 0.5], [0.0, 0.0], [-0.5, -0.5]])
    assert normalize_screen(uv, wh) == pytest.approx(expected)
    got_t = normalize_screen(torch.tensor(uv), torch.tensor(wh))
    assert isinstance(got_t, torch.Tensor)
    assert got_t.numpy() == pytest.approx(expected)
    assert denormalize_screen(expected, wh) == pytest.approx(uv)


def test_normalize_screen_broadcasts_per_item_image_size():
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 1280, (3, 5, 17, 2))
    wh = np.array([[640.0, 480.0], [1000.0, 1000.0], [1280.0, 720.0]])
    got = normalize_screen(uv, wh)
    for p in range(3):
        assert got[p] == pytest.approx(normalize_screen(uv[p], wh[p]))
        assert got[p, ..., 0] == pytest.approx(uv[p, ..., 0] / wh[p, 0] * 2 - 1)
    assert denormalize_screen(got, wh) == pytest.approx(uv)
    got_t = normalize_screen(torch.tensor(uv, dtype=torch.float32),
                             torch.tensor(wh, dtype=torch.float32))
    assert got_t.numpy() == pytest.approx(got, abs=1e-5)


def test_project_hand_value_and_round_trips():
    cam = Camera(R=np.eye(3), t=np.zeros(3), fx=100.0, fy=200.0, cx=50.0, cy=40.0, width=100,
                 height=80)
    assert project(np.array([1.0, 2.0, 4.0]), cam) == pytest.approx([75.0, 140.0])
    rng = np.random.default_rng(1)
    cam = random_camera(rng)
    world = rng.normal(0, 1, (6, 17, 3))
    points = cam.world_to_camera(world)
    assert cam.camera_to_world(points) == pytest.approx(world)
    points[..., 2] = np.abs(points[..., 2]) + 1.0
    uv = project(points, cam)
    assert uv.shape == (6, 17, 2)
    assert backproject(uv, points[..., 2], cam) == pytest.approx(points)
    assert cam.position == pytest.approx(cam.camera_to_world(np.zeros(3)))


def test_project_rejects_points_behind_camera():
    cam = Camera(R=np.eye(3), t=np.zeros(3), fx=100.0, fy=100.0, cx=0, cy=0, width=10, height=10)
    with pytest.raises(ValueError, match="behind the camera"):
        project(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), cam)
    with pytest.raises(ValueError, match="not a rotation"):
        Camera(R=np.diag([1.0, 1.0, -1.0]), t=np.zeros(3), fx=1, fy=1, cx=0, cy=0, width=1,
               height=1)


def test_look_at_is_optical_convention():
    # Camera on the +x axis at pelvis height, looking back at the origin along -x (Z up world).
    R = look_at_rotation([4.0, 0.0, 1.0], [0.0, 0.0, 1.0])
    cam = Camera(R=R, t=-R @ np.array([4.0, 0.0, 1.0]), fx=500, fy=500, cx=320, cy=240,
                 width=640, height=480)
    assert cam.world_to_camera([0.0, 0.0, 1.0]) == pytest.approx([0, 0, 4.0])
    up = project(cam.world_to_camera([0.0, 0.0, 2.0]), cam)
    assert up[1] < 240 and up[0] == pytest.approx(320)  # higher in the world = smaller v
    # Facing -x with Z up, world +y is on the camera's right (image u grows).
    right = project(cam.world_to_camera([0.0, 1.0, 1.0]), cam)
    assert right[0] > 320 and right[1] == pytest.approx(240)


def test_camera_sampler_ranges():
    sampler = CameraSampler()
    rng = np.random.default_rng(2)
    target = np.array([1.5, -2.0, 1.1])
    sizes, f_over_w = set(), []
    for _ in range(300):
        cam = sampler.sample(rng, target, ground_z_m=0.2)
        pos = cam.position
        dist = np.hypot(*(pos[:2] - target[:2]))
        assert 3.0 - 1e-9 <= dist <= 6.0 + 1e-9
        assert 0.8 + 0.2 - 1e-9 <= pos[2] <= 2.0 + 0.2 + 1e-9
        # The pelvis is in front and within the pan/tilt jitter (5 deg) of the optical axis.
        p = cam.world_to_camera(target)
        assert p[2] > 0
        assert np.degrees(np.arctan2(np.hypot(p[0], p[1]), p[2])) <= 5.0 * np.sqrt(2) + 1e-6
        # The horizon is nearly level: the camera's x axis stays within the roll jitter of
        # horizontal (plus what pan/tilt add).
        assert abs(np.degrees(np.arcsin(cam.R[0, 2]))) <= 10.0
        sizes.add((cam.width, cam.height))
        f_over_w.append(cam.fx / cam.width)
        assert abs(cam.fy / cam.fx - 1) <= 0.01 + 1e-12
        assert abs(cam.cx - cam.width / 2) <= 0.02 * cam.width + 1e-9
        assert abs(cam.cy - cam.height / 2) <= 0.02 * cam.width + 1e-9
    assert sizes == {(640, 480), (1000, 1000), (1280, 720)}
    assert 0.7 <= min(f_over_w) < 0.75 and 1.55 < max(f_over_w) <= 1.6


def test_camera_sampler_validates_ranges():
    with pytest.raises(ValueError, match="distance_m"):
        CameraSampler(distance_m=(6.0, 3.0))
    with pytest.raises(ValueError, match="image_sizes"):
        CameraSampler(image_sizes=())


def test_solve_root_translation_exact_from_noiseless_projection():
    rng = np.random.default_rng(3)
    pose = body_rel_m(rng, (4, 9))
    root = np.stack([rng.uniform(-1, 1, (4, 9)), rng.uniform(-1, 1, (4, 9)),
                     rng.uniform(3, 7, (4, 9))], axis=-1)
    fx, fy, cx, cy = 1145.0, 1143.0, 512.0, 515.0
    points = pose + root[..., None, :]
    uv = np.stack([fx * points[..., 0] / points[..., 2] + cx,
                   fy * points[..., 1] / points[..., 2] + cy], axis=-1)
    mask = (rng.random((4, 9, 17)) > 0.3).astype(np.float32)
    mask[..., :2] = 1.0  # at least two visible joints everywhere
    uv[mask == 0] = 1e6  # missing points carry garbage, which must be ignored
    got = solve_root_translation(pose, uv, mask, fx, fy, cx, cy)
    assert got.shape == (4, 9, 3)
    np.testing.assert_allclose(got, root, atol=1e-9)


def test_solve_root_translation_underdetermined_is_nan():
    rng = np.random.default_rng(4)
    pose = body_rel_m(rng, (3,))
    root = np.array([0.2, -0.1, 4.0])
    points = pose + root
    uv = 1000 * points[..., :2] / points[..., 2:] + 500
    mask = np.ones((3, 17))
    mask[0] = 0.0
    mask[1, 1:] = 0.0  # one visible joint: two equations, three unknowns
    got = solve_root_translation(pose, uv, mask, 1000.0, 1000.0, 500.0, 500.0)
    assert np.isnan(got[0]).all() and np.isnan(got[1]).all()
    np.testing.assert_allclose(got[2], root, atol=1e-9)
    with pytest.raises(ValueError, match="solve_root_translation"):
        solve_root_translation(pose, uv[..., :16, :], mask, 1000.0, 1000.0, 500.0, 500.0)


def test_solve_root_translation_noisy_is_close():
    rng = np.random.default_rng(5)
    pose = body_rel_m(rng, (200,)) * 0.5
    root = np.array([0.3, 0.2, 5.0])
    points = pose + root
    uv = 1000 * points[..., :2] / points[..., 2:] + 500 + rng.normal(0, 2.0, (200, 17, 2))
    got = solve_root_translation(pose, uv, np.ones((200, 17)), 1000.0, 1000.0, 500.0, 500.0)
    err = np.linalg.norm(got - root, axis=-1)
    assert np.median(err) < 0.1  # 2 px of noise at 5 m: centimetres, depth dominating


def test_weak_perspective_fit_recovers_scale_and_offset_numpy_and_torch():
    rng = np.random.default_rng(6)
    pose = body_rel_m(rng, (2, 5))
    scale = rng.uniform(0.2, 0.6, (2, 5))
    offset = rng.uniform(-0.3, 0.3, (2, 5, 2))
    uv_n = scale[..., None, None] * pose[..., :2] + offset[..., None, :]
    mask = (rng.random((2, 5, 17)) > 0.4).astype(np.float64)
    mask[..., :2] = 1.0
    uv_n[mask == 0] = 7.0  # ignored
    s, o = weak_perspective_fit(pose, uv_n, mask)
    np.testing.assert_allclose(s, scale, rtol=1e-6)
    np.testing.assert_allclose(o, offset, atol=1e-6)
    s_t, o_t = weak_perspective_fit(torch.tensor(pose), torch.tensor(uv_n), torch.tensor(mask))
    np.testing.assert_allclose(s_t.numpy(), scale, rtol=1e-6)
    np.testing.assert_allclose(o_t.numpy(), offset, atol=1e-6)
    # No visible joint: scale 0, offset 0, no NaN.
    s0, o0 = weak_perspective_fit(pose, uv_n, np.zeros_like(mask))
    assert np.all(s0 == 0) and np.all(o0 == 0)


class _NormaliseAndFit(torch.nn.Module):
    def forward(self, pose, uv_px, mask, image_wh):
        return weak_perspective_fit(pose, normalize_screen(uv_px, image_wh), mask)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy (TorchScript) exporter
def test_normalise_and_weak_perspective_export_to_onnx():
    rng = np.random.default_rng(7)
    args = (torch.tensor(body_rel_m(rng, (2, 27)), dtype=torch.float32),
            torch.tensor(rng.uniform(0, 640, (2, 27, 17, 2)), dtype=torch.float32),
            torch.tensor(rng.random((2, 27, 17)) > 0.2, dtype=torch.float32),
            torch.tensor([[640.0, 480.0], [1280.0, 720.0]]))
    names = ["pose", "uv_px", "mask", "image_wh"]
    buf = io.BytesIO()
    torch.onnx.export(_NormaliseAndFit(), args, buf, input_names=names,
                      output_names=["scale", "offset"], dynamo=False,
                      dynamic_axes={n: {0: "P"} for n in names})
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load_from_string(buf.getvalue()).graph.node}
    assert not ops & {"Loop", "Scan", "If"}
    # A different batch size than at export time.
    feeds = [body_rel_m(rng, (3, 27)), rng.uniform(0, 640, (3, 27, 17, 2)),
             (rng.random((3, 27, 17)) > 0.2), np.array([[640, 480], [1000, 1000], [1280, 720]])]
    feeds = [np.asarray(f, dtype=np.float32) for f in feeds]
    s, o = session.run(None, dict(zip(names, feeds)))
    s_ref, o_ref = weak_perspective_fit(feeds[0].astype(np.float64),
                                        normalize_screen(feeds[1].astype(np.float64),
                                                         feeds[3].astype(np.float64)),
                                        feeds[2].astype(np.float64))
    np.testing.assert_allclose(s, s_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(o, o_ref, rtol=1e-4, atol=1e-5)


def test_weak_perspective_scale_is_never_negative():
    import torch

    from diffhpe_models.camera import weak_perspective_fit

    rng = np.random.default_rng(0)
    pose = rng.normal(size=(17, 3))
    uv = -0.5 * pose[:, :2] + 0.1  # the 2D of the pose turned 180 degrees about the axis
    mask = np.ones(17)
    s, o = weak_perspective_fit(pose, uv, mask)
    assert s == 0.0  # not -0.5
    st, _ = weak_perspective_fit(torch.tensor(pose), torch.tensor(uv), torch.tensor(mask))
    assert float(st) == 0.0
    s_ok, _ = weak_perspective_fit(pose, 0.5 * pose[:, :2] + 0.1, mask)
    np.testing.assert_allclose(s_ok, 0.5, rtol=1e-6)


def test_ray_normalisation_round_trips_and_matches_the_projection():
    from diffhpe_models.camera import denormalize_rays, normalize_rays

    rng = np.random.default_rng(0)
    points = rng.uniform([-1, -1, 2], [1, 1, 6], size=(3, 5, 17, 3))
    k = np.array([[900.0, 905.0, 320.0, 240.0], [500.0, 500.0, 640.0, 360.0], [1200, 1200, 500, 500]])
    uv = points[..., :2] / points[..., 2:] * k[:, None, None, :2] + k[:, None, None, 2:]
    rays = normalize_rays(uv, k)
    np.testing.assert_allclose(rays, points[..., :2] / points[..., 2:], atol=1e-12)
    np.testing.assert_allclose(denormalize_rays(rays, k), uv, atol=1e-9)
    import torch
    np.testing.assert_allclose(normalize_rays(torch.tensor(uv), torch.tensor(k)).numpy(), rays, atol=1e-12)


def test_guessed_intrinsics():
    from diffhpe_models.camera import guess_intrinsics, normalize_rays, normalize_screen

    k = guess_intrinsics([640, 480], hfov_deg=90.0)
    np.testing.assert_allclose(k, [320, 320, 320, 240])
    # A 90 deg guess is exactly the reference's image-size normalisation.
    uv = np.array([[10.0, 20.0], [600.0, 470.0]])
    np.testing.assert_allclose(normalize_rays(uv, k), normalize_screen(uv, np.array([640.0, 480.0])))
    assert guess_intrinsics(np.array([[640, 480], [1280, 720]])).shape == (2, 4)
    for bad in ([0, 480], [np.nan, 480], [640]):
        with pytest.raises(ValueError, match="image_wh"):
            guess_intrinsics(bad)
    with pytest.raises(ValueError, match="hfov"):
        guess_intrinsics([640, 480], hfov_deg=0.0)


def test_normalize_input_dispatches_by_mode():
    from diffhpe_models.camera import normalize_input, normalize_rays

    uv = np.array([[[100.0, 50.0]]])
    np.testing.assert_allclose(normalize_input(uv, np.array([640.0, 480.0]), "screen"),
                               normalize_screen(uv, np.array([640.0, 480.0])))
    k = np.array([500.0, 500.0, 320.0, 240.0])
    np.testing.assert_allclose(normalize_input(uv, k, "rays"), normalize_rays(uv, k))
    with pytest.raises(ValueError, match="'pixels'"):
        normalize_input(uv, k, "pixels")

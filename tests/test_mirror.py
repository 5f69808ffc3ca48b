"""Test-time mirroring (diffhpe_models.mirror): the mirror image is the projection of the mirrored
scene, the merged answer of a real lifter is exactly mirror-equivariant, and the node's core and
the evaluation run it."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from keypoint_stream import camera, constructed_walk

from diffhpe_models.camera import project
from diffhpe_models.mirror import lift_mirrored, merge, mirror_keypoints, unmirror_pose
from diffhpe_models.runtime import load_lifter
from diffhpe_models.skeleton import FLIP_PERMUTATION


def _scene(cx: float):
    """(points in the camera frame (T, 17, 3), its camera with principal point x = cx,
    the mirrored person: x negated, left and right swapped)."""
    cam = dataclasses.replace(camera(), cx=cx)
    points = constructed_walk(27, 30.0, x0_m=0.4) @ cam.R.T + cam.t
    mirrored = points[:, FLIP_PERMUTATION] * np.array([-1.0, 1.0, 1.0])
    return points, cam, mirrored


@pytest.mark.parametrize("normalisation", ["rays", "screen"])
def test_mirror_image_is_the_projection_of_the_mirrored_person(normalisation):
    # rays: about any principal point (here off-centre); screen: about the image centre.
    points, cam, mirrored = _scene(cx=250.0 if normalisation == "rays" else camera().width / 2)
    keypoints = project(points, cam)[None]
    calibration = (np.array([[cam.fx, cam.fy, cam.cx, cam.cy]]) if normalisation == "rays"
                   else np.array([[cam.width, cam.height]]))
    got = mirror_keypoints(keypoints, calibration, normalisation)
    np.testing.assert_allclose(got[0], project(mirrored, cam), atol=1e-3)
    np.testing.assert_allclose(mirror_keypoints(got, calibration, normalisation), keypoints,
                               atol=1e-3)
    with pytest.raises(ValueError, match="input normalisation must be"):
        mirror_keypoints(keypoints, calibration, "pixels")


def test_unmirror_pose_swaps_sides_and_negates_x():
    points, _, mirrored = _scene(cx=320.0)
    root_relative = points - points[:, :1]
    np.testing.assert_allclose(unmirror_pose(root_relative), mirrored - mirrored[:, :1])
    np.testing.assert_allclose(unmirror_pose(unmirror_pose(root_relative)), root_relative)


def test_merge_is_the_pooled_hypotheses_spread_around_the_mean_pose():
    rng = np.random.default_rng(0)
    hyps_a = rng.normal(size=(2, 3, 27, 17, 3))
    hyps_b = rng.normal(size=(2, 3, 27, 17, 3)) + 0.5
    pose_a, pose_b = hyps_a.mean(axis=1), hyps_b.mean(axis=1)

    def rms(h, p):
        return np.sqrt(np.mean(np.sum((h - p[:, None]) ** 2, axis=-1), axis=1))

    pose, spread = merge(pose_a, rms(hyps_a, pose_a), pose_b, rms(hyps_b, pose_b))
    np.testing.assert_allclose(pose, 0.5 * (pose_a + pose_b), atol=1e-6)
    np.testing.assert_allclose(spread, rms(np.concatenate([hyps_a, hyps_b], axis=1), pose),
                               rtol=1e-5)
    # A deterministic model keeps spread 0 (the disagreement alone is not calibrated).
    pose_d, spread = merge(pose_a, 0 * pose_a[..., 0], pose_b, 0 * pose_b[..., 0], has_spread=False)
    assert spread.shape == pose_d.shape[:-1] and not spread.any()
    np.testing.assert_allclose(pose_d, pose, atol=1e-6)


def _inputs(persons: int = 2):
    points, cam, _ = _scene(cx=300.0)
    keypoints = np.stack([project(points, cam) + 15.0 * i for i in range(persons)])
    mask = np.ones(keypoints.shape[:3], np.float32)
    mask[1:, 10:, 13] = 0.0                                  # a left wrist lost
    intrinsics = np.tile([cam.fx, cam.fy, cam.cx, cam.cy], (persons, 1)).astype(np.float32)
    return keypoints.astype(np.float32), mask, np.array([cam.width, cam.height]), intrinsics


def test_mirrored_lifter_merges_the_two_answers_and_is_mirror_equivariant(tiny_rays_onnx):
    keypoints, mask, wh, intrinsics = _inputs()
    wh = np.tile(wh, (len(keypoints), 1))
    mirrored = load_lifter(tiny_rays_onnx, backend="onnxruntime", seed=4, fixed_noise=True,
                           mirror=True)
    plain = load_lifter(tiny_rays_onnx, backend="onnxruntime", seed=4, fixed_noise=True)
    assert mirrored.mirror and not plain.mirror
    pose, spread = mirrored.lift(keypoints, mask, wh, intrinsics=intrinsics)

    # The same as lifting both images with the plain lifter (the same fixed noise) and merging.
    kp_m = mirror_keypoints(keypoints, intrinsics, "rays")
    mask_m = mask[:, :, FLIP_PERMUTATION]
    pose_a, spread_a = plain.lift(keypoints, mask, wh, intrinsics=intrinsics)
    pose_b, spread_b = plain.lift(kp_m, mask_m, wh, intrinsics=intrinsics)
    want = merge(pose_a, spread_a, unmirror_pose(pose_b), spread_b[..., FLIP_PERMUTATION])
    np.testing.assert_allclose(pose, want[0], atol=1e-5)
    np.testing.assert_allclose(spread, want[1], atol=1e-5)

    # The mirror image's answer is the answer's mirror image (pose and spread), which the
    # plain (untrained, asymmetric) lifter is far from.
    pose_m, spread_m = mirrored.lift(kp_m, mask_m, wh, intrinsics=intrinsics)
    np.testing.assert_allclose(pose_m, unmirror_pose(pose), atol=1e-5)
    np.testing.assert_allclose(spread_m, spread[..., FLIP_PERMUTATION], atol=1e-5)
    assert np.abs(unmirror_pose(pose_b) - pose_a).max() > 1e-2
    assert np.isfinite(spread).all() and (spread[:, :, 1:] > 0).all()


def test_lift_mirrored_runs_one_batch_of_both_images(tiny_rays_onnx):
    keypoints, mask, _, intrinsics = _inputs(persons=3)
    lifter = load_lifter(tiny_rays_onnx, backend="onnxruntime", seed=0)
    noise = np.random.default_rng(0).standard_normal((3, lifter.hypotheses, 27, 17, 3),
                                                     dtype=np.float32)
    batches = []

    def run(kp, m, k, n):
        batches.append(len(kp))
        return lifter.backend.run(kp, m, k, n)

    pose, spread = lift_mirrored(run, keypoints, mask, intrinsics, noise, "rays")
    assert batches == [6] and pose.shape == (3, 27, 17, 3) and spread.shape == (3, 27, 17)
    assert pose.dtype == spread.dtype == np.float32


def test_mirrored_deterministic_lifter_publishes_the_mean_pose_and_no_spread():
    shipped = Path(__file__).resolve().parents[1] / "models" / "mixste_lifter.onnx"
    keypoints, mask, wh, intrinsics = _inputs()
    wh = np.tile(wh, (len(keypoints), 1))
    mirrored = load_lifter(shipped, backend="onnxruntime", mirror=True)
    plain = load_lifter(shipped, backend="onnxruntime")
    pose, spread = mirrored.lift(keypoints, mask, wh, intrinsics=intrinsics)
    pose_a, _ = plain.lift(keypoints, mask, wh, intrinsics=intrinsics)
    pose_b, _ = plain.lift(mirror_keypoints(keypoints, intrinsics, "rays"),
                           mask[:, :, FLIP_PERMUTATION], wh, intrinsics=intrinsics)
    np.testing.assert_allclose(pose, 0.5 * (pose_a + unmirror_pose(pose_b)), atol=1e-5)
    assert not spread.any()
    assert np.abs(unmirror_pose(pose_b) - pose_a).max() > 1e-3   # the two answers differ

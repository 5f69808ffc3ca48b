"""Augmentations for other bodies and other cameras than the mocap's."""
import numpy as np
import pytest
from keypoint_stream import keypoints_h36m  # noqa: F401  (conftest puts tests/ on the path)

from diffhpe_models.augmentation import BodyScaler, scale_bones
from diffhpe_models.camera import CameraSampler
from diffhpe_models.skeleton import PARENTS


def _pose(rng, frames=4):
    base = np.array([[0, 0, 1.0], [-.1, 0, 1], [-.1, 0, .55], [-.1, 0, .1], [.1, 0, 1], [.1, 0, .55],
                     [.1, 0, .1], [0, 0, 1.25], [0, 0, 1.5], [0, .08, 1.6], [0, 0, 1.75], [.18, 0, 1.45],
                     [.2, 0, 1.15], [.2, 0, .9], [-.18, 0, 1.45], [-.2, 0, 1.15], [-.2, 0, .9]])
    return base + rng.normal(0, 0.01, (frames, 17, 3))


def _bones(pose):
    return np.stack([np.linalg.norm(pose[..., j, :] - pose[..., PARENTS[j], :], axis=-1)
                     for j in range(1, 17)], axis=-1)


def test_scale_bones_scales_each_bone_and_keeps_directions():
    rng = np.random.default_rng(0)
    pose = _pose(rng)
    factors = np.concatenate([[1.0], rng.uniform(0.5, 1.5, 16)])
    out = scale_bones(pose, factors)
    np.testing.assert_allclose(out[:, 0], pose[:, 0])
    np.testing.assert_allclose(_bones(out), _bones(pose) * factors[1:], rtol=1e-10)
    for j in range(1, 17):
        a = pose[:, j] - pose[:, PARENTS[j]]
        b = out[:, j] - out[:, PARENTS[j]]
        cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        np.testing.assert_allclose(cos, 1.0, atol=1e-12)


def test_body_scaler_draws_symmetric_bodies_in_range():
    rng = np.random.default_rng(1)
    scaler = BodyScaler(stature=(0.6, 1.2), segment_jitter=0.1, width_range=(0.9, 1.6))
    draws = np.array([scaler.sample(rng) for _ in range(2000)])
    left, right = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]
    np.testing.assert_array_equal(draws[:, left], draws[:, right])       # symmetric bodies
    np.testing.assert_array_equal(draws[:, 7], draws[:, 8])              # spine stays mid-trunk
    assert (draws[:, 0] == 1).all()
    thigh = draws[:, 5]
    assert 0.6 * 0.9 <= thigh.min() and thigh.max() <= 1.2 * 1.1 and thigh.min() < 0.6 and thigh.max() > 1.25
    hip_width = draws[:, 4]
    assert hip_width.max() > 1.5 and hip_width.min() < 0.6  # widths vary further
    assert not BodyScaler().active and scaler.active
    with pytest.raises(ValueError, match="stature"):
        BodyScaler(stature=(1.2, 0.6))
    with pytest.raises(ValueError, match="segment_jitter"):
        BodyScaler(segment_jitter=1.0)


def test_camera_sampler_covers_robot_and_phone_cameras():
    sampler = CameraSampler(distance_m=(1.5, 10.0), height_m=(0.3, 2.5), jitter_deg=15.0, roll_deg=5.0,
                            focal_over_width=(0.5, 1.87), pitch_deg=(-45.0, 30.0), portrait_prob=0.3,
                            principal_jitter_frac=0.05)
    rng = np.random.default_rng(2)
    target = np.array([0.0, 0.0, 1.0])
    elevations, portrait, square, rolls = [], 0, 0, []
    for _ in range(3000):
        cam = sampler.sample(rng, target, 0.0)
        axis = cam.R[2]                                   # optical axis in the world
        elevations.append(np.degrees(np.arcsin(axis[2])))
        portrait += cam.height > cam.width
        square += cam.height == cam.width
        assert 0.5 * cam.width - 1e-9 <= cam.fx <= 1.87 * cam.width + 1e-9
    elevations = np.array(elevations)
    assert elevations.min() >= -45 - 1e-6 and elevations.max() <= 30 + 1e-6
    assert elevations.min() < -35 and elevations.max() > 20     # the range is used
    assert 0.25 < portrait / (3000 - square) < 0.35   # of the non-square images
    # Without pan/tilt jitter the horizon's tilt in the image is the roll alone.
    level = CameraSampler(jitter_deg=0.0, roll_deg=5.0)
    for _ in range(500):
        right = level.sample(rng, target, 0.0).R[0]
        rolls.append(np.degrees(np.arcsin(abs(right[2]))))
    assert max(rolls) <= 5.0 + 1e-6 and max(rolls) > 4.0


def test_default_camera_sampler_is_unchanged_by_the_new_options():
    a = CameraSampler().sample(np.random.default_rng(3), [0, 0, 1.0])
    b = CameraSampler(roll_deg=None, pitch_deg=None, portrait_prob=0.0).sample(np.random.default_rng(3), [0, 0, 1.0])
    np.testing.assert_array_equal(a.R, b.R)
    assert (a.width, a.height, a.fx) == (b.width, b.height, b.fx)

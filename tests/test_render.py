"""render: picture sizes, person crop alignment, MP4/PNG outputs and their failure modes."""
import cv2
import numpy as np
import pytest

from diffhpe_models.skeleton import NUM_JOINTS
from diffhpe_ros.render import FrameRenderer, FrameSample, crop_to_persons, write_mp4, write_strip


def sample(w=320, h=180, seed=0) -> FrameSample:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    # a 'person' in the left third: keypoints in a 30 x 90 px box
    kp = np.stack([rng.uniform(40, 70, NUM_JOINTS), rng.uniform(50, 140, NUM_JOINTS)], -1)[None]
    conf = np.ones((1, NUM_JOINTS), np.float32)
    conf[0, 3] = 0.1  # one unseen keypoint, far away: must not widen the crop
    kp[0, 3] = (300, 10)
    pose = rng.normal(0, 0.3, (1, NUM_JOINTS, 3))
    return FrameSample(image, kp.astype(np.float32), conf, pose, "t")


def test_crop_keeps_keypoints_on_their_pixels():
    s = sample()
    c = crop_to_persons(s)
    assert c.image_rgb.shape[0] < s.image_rgb.shape[0] and c.image_rgb.shape[1] < s.image_rgb.shape[1]
    assert c.image_rgb.shape[1] / c.image_rgb.shape[0] == pytest.approx(0.75, abs=0.02)
    seen = s.conf[0] >= 0.5
    for (u, v), (uc, vc) in zip(s.keypoints_px[0][seen], c.keypoints_px[0][seen]):
        assert 0 <= uc < c.image_rgb.shape[1] and 0 <= vc < c.image_rgb.shape[0]
        assert np.array_equal(c.image_rgb[int(vc), int(uc)], s.image_rgb[int(v), int(u)])
    nobody = FrameSample(s.image_rgb, s.keypoints_px, np.zeros_like(s.conf), s.pose3d_m)
    assert crop_to_persons(nobody) is nobody


def test_frames_are_even_sized_and_video_round_trips(tmp_path):
    renderer = FrameRenderer((320, 180), height_px=241)
    pictures = [renderer.render(sample(seed=i)) for i in range(3)]
    renderer.close()
    h, w, _ = pictures[0].shape
    assert h % 2 == 0 and w % 2 == 0 and h == 242
    assert pictures[0].std() > 10 and not np.array_equal(pictures[0], pictures[1])
    path = write_mp4(pictures, tmp_path / "v.mp4", fps=10)
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (w, h)
    with pytest.raises(ValueError, match="expected"):
        write_mp4([pictures[0], pictures[0][:-2]], tmp_path / "bad.mp4", fps=10)
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], tmp_path / "empty.mp4", fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"], "no partial or temporary files"


def test_strip_png(tmp_path):
    path = write_strip([sample(seed=i) for i in range(4)], tmp_path / "s.png")
    image = cv2.imread(str(path))
    # 4 columns of 2.6 in at 110 dpi; each column a 3:4 crop above a square 3D panel
    assert image is not None and image.shape[1] == round(4 * 2.6 * 110)
    assert image.shape[0] == pytest.approx(2.6 * (4 / 3 + 1) * 110 + 0.35 * 110, abs=3)
    with pytest.raises(ValueError, match="no samples"):
        write_strip([], tmp_path / "none.png")

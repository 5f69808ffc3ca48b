"""The shipped model, end to end: real test-split mocap projected to 2D, through the real lifter
node with the exported ONNX graph, compared with the ground truth. A regression guard for the
trained weights, the export and the node's data path together (not the evaluation protocol:
docs/evaluation.md holds the measured numbers)."""
from pathlib import Path

import numpy as np
import pytest
from keypoint_stream import DATASET, detector_layout, keypoints_h36m  # noqa: E402
from lifter_harness import Harness  # sets the ROS env first

from diffhpe_models import metrics  # noqa: E402
from diffhpe_models.skeleton import bone_lengths  # noqa: E402
from diffhpe_ros import conversions as cv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FRAMES = 60
# The shipped exports and their MPJPE bound through the node on these frames (clean 2D). The
# bounds leave room for retraining above what was measured when they were shipped.
SHIPPED = {"mixste_lifter.onnx": 80.0,    # the default (config/lifter.yaml)
           "diffhpe_lifter.onnx": 80.0}   # the DiffHPE-Wrapper: publishes its MixSTE's pose

pytestmark = pytest.mark.skipif(not DATASET.exists(), reason="needs data/mocap_h36m17.npz (make data)")



@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_lifter_recovers_real_motion_through_the_node(context, name):
    uv, pose_cam = keypoints_h36m(FRAMES)  # real test-split motion, 4 m from a 640x480 camera
    h = Harness(context, REPO / "models" / name, keypoint_format="mediapipe33")
    try:
        h.send_camera_info()
        h.spin_for(0.2)
        h.stream(detector_layout(uv, "mediapipe33")[:, None])
        out = np.stack([cv.pose_array_to_pose3d(m)[0] for m in h.poses])  # (T, 17, 3)
    finally:
        h.close()
    assert out.shape == (FRAMES, 17, 3) and np.isfinite(out).all()
    late = slice(27, None)  # once the causal window holds only real frames
    pred_rel = out[late] - out[late, :1]
    gt_rel = pose_cam[late] - pose_cam[late, :1]
    err_mm = metrics.mpjpe(pred_rel, gt_rel)
    assert err_mm < SHIPPED[name], f"MPJPE {err_mm:.0f} mm through the node"
    # The root is placed from the 2D and the intrinsics: within a few decimetres at 4 m.
    root_err_m = np.linalg.norm(out[late, 0] - pose_cam[late, 0], axis=-1).mean()
    # (Measured 0.55 m: the models are trained on bodies of 0.6-1.2x the actors' size, so the
    # metric size, and with it the depth, of a person seen in 2D alone is uncertain by ~15 %.)
    assert root_err_m < 0.8, f"root placed {root_err_m:.2f} m off"
    # Coherent skeleton: thighs and shins of a human size, left and right alike.
    bones = bone_lengths(out[late]).mean(0)
    thigh_r, shin_r, thigh_l, shin_l = bones[1], bones[2], bones[4], bones[5]
    for b in (thigh_r, shin_r, thigh_l, shin_l):
        assert 0.25 < b < 0.6, bones
    assert abs(thigh_r - thigh_l) < 0.05 and abs(shin_r - shin_l) < 0.05, bones


def test_shipped_wrapper_spreads_more_where_the_detector_misses_a_limb(context):
    """The DiffHPE-Wrapper's calibrated spread through the node (its defaults: fresh noise every
    frame, spread averaged over frames): once the detector has not reported the left arm for a
    whole window (27 frames), its elbow and wrist get a clearly larger spread than the joints it
    still sees (measured 0.44 vs 0.11 m); before that the model extrapolates the arm from the frames
    where it saw it. The root's spread is 0 (root-relative) and no other joint's is."""
    from diffhpe_models.skeleton import JOINT_NAMES, MEDIAPIPE33_NAMES

    uv, _ = keypoints_h36m(FRAMES + 30)
    frames = detector_layout(uv, "mediapipe33")[:, None]                   # (T, 1, 33, 2)
    conf = np.ones(frames.shape[:3])
    hidden_from = 30
    for name in ("left_elbow", "left_wrist"):
        conf[hidden_from:, :, MEDIAPIPE33_NAMES.index(name)] = 0.0
    h = Harness(context, REPO / "models" / "diffhpe_lifter.onnx", keypoint_format="mediapipe33")
    try:
        h.send_camera_info()
        h.spin_for(0.2)
        h.stream(frames, conf=conf)
        spread = np.stack([cv.point_cloud2_to_array(m)["spread"] for m in h.points])  # (T, 17)
    finally:
        h.close()
    late = spread[hidden_from + 30:]                     # the arm hidden for a whole window
    arm = [JOINT_NAMES.index("left_elbow"), JOINT_NAMES.index("left_wrist")]
    seen = [j for j in range(1, 17) if j not in arm]
    assert np.all(late[:, 0] == 0) and np.all(late[:, 1:] > 0)
    assert np.median(late[:, arm]) > 1.5 * np.median(late[:, seen]), (
        np.median(late[:, arm]), np.median(late[:, seen]))

"""MediaPipe Pose (legacy `mp.solutions.pose`, 33 landmarks) on numpy images. No ROS here.

mediapipe 0.10.21 ships only the 'full' landmark model (model_complexity=1) in its wheel; 0 (lite)
and 2 (heavy) make it download a file at first use, which cannot happen offline. Those models come
from the npm package `@mediapipe/pose` and can be copied next to the shipped one; we check for the
file up front so the failure names it instead of a network error deep inside MediaPipe.
The legacy API tracks one person, so a detection has P = 0 or 1 people.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_LANDMARKS = 33
_LANDMARK_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite",
                    2: "pose_landmark_heavy.tflite"}


def landmark_model_path(model_complexity: int) -> Path:
    """Where mediapipe looks for the landmark model of `model_complexity` (0, 1 or 2)."""
    import mediapipe

    if model_complexity not in _LANDMARK_MODELS:
        raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
    return (Path(mediapipe.__file__).parent / "modules" / "pose_landmark"
            / _LANDMARK_MODELS[model_complexity])


class PoseDetector:
    """One MediaPipe Pose graph. `detect` is not thread-safe: give each thread its own detector.

    static_image_mode=False lets MediaPipe track the person from frame to frame (faster and
    steadier than detecting on every frame); True treats frames as unrelated images.
    """

    def __init__(self, model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, static_image_mode: bool = False):
        model = landmark_model_path(model_complexity)
        if not model.is_file():
            raise FileNotFoundError(
                f"model_complexity={model_complexity} needs {model}, which mediapipe would download "
                "at run time; copy it from the npm package @mediapipe/pose or use model_complexity=1")
        for name, value in (("min_detection_confidence", min_detection_confidence),
                            ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        import mediapipe as mp

        self._pose = mp.solutions.pose.Pose(
            static_image_mode=static_image_mode, model_complexity=model_complexity,
            smooth_landmarks=True, enable_segmentation=False,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence)

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB image -> (keypoints_px (P, 33, 2) float32, conf (P, 33) float32).

        keypoints_px are (u, v) pixels (they may fall slightly outside the image for joints that
        MediaPipe extrapolates); conf is MediaPipe's per-landmark visibility in [0, 1].
        """
        return self.detect_with_world(rgb)[:2]

    def detect_with_world(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As `detect`, plus MediaPipe's world landmarks (P, 33, 3) float32: metres, origin at
        the hips' midpoint, axes x right, y down, z away from the camera (as the image's)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        result = self._pose.process(rgb)
        if result.pose_landmarks is None or result.pose_world_landmarks is None:
            return (np.zeros((0, NUM_LANDMARKS, 2), np.float32),
                    np.zeros((0, NUM_LANDMARKS), np.float32),
                    np.zeros((0, NUM_LANDMARKS, 3), np.float32))
        h, w = rgb.shape[:2]
        lm = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark],
                      dtype=np.float32)
        keypoints_px = (lm[:, :2] * np.array([w, h], np.float32))[None]
        conf = np.clip(lm[:, 2], 0.0, 1.0)[None]
        world = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark],
                         dtype=np.float32)[None]
        return keypoints_px, conf, world

    def close(self) -> None:
        self._pose.close()

    def __enter__(self) -> "PoseDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

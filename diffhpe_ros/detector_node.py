"""MediaPipe Pose on `image` (sensor_msgs/Image) -> `keypoints2d` (geometry_msgs/PoseArray).

Output: one block of 33 poses per detected person (MediaPipe's landmark order), position.x/y in
pixels of the image, position.z = visibility in [0, 1]; the image's header is kept so that
downstream stamps refer to the camera frame time. A frame with nobody in it gives an empty
PoseArray (the lifter learns that the person is gone instead of waiting for a timeout).

The image subscription keeps only the newest frame: when MediaPipe is slower than the camera, old
frames are skipped rather than queued, which would add latency without adding information. To
process every frame of a file, pace the source by this node's output instead (video_source's
`pace_topic:=keypoints2d`): it sends the next frame when the keypoints of the previous one arrive.
Bad images (unsupported encoding, sizes that do not match the data) are logged with a throttled
warning and skipped.

Parameters (read at start): model_complexity (int, 1), min_detection_confidence (float, 0.5),
min_tracking_confidence (float, 0.5), static_image_mode (bool, false),
warning_throttle_s (float, 5.0).
"""
from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image

from diffhpe_ros.conversions import keypoints_to_pose_array
from diffhpe_ros.entry import run_node
from diffhpe_ros.images import rgb_from_image_msg
from diffhpe_ros.pose_detector import PoseDetector

DETECT_HISTORY = 10_000
IMAGE_QOS = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability,
                       history=qos_profile_sensor_data.history)


class DetectorNode(Node):
    """Runs one PoseDetector on every image it gets to; counts frames in `frames`, `bad_images`,
    and keeps the detection time of the last frame in `last_detect_ms`, of the last
    DETECT_HISTORY frames in `detect_ms`."""

    def __init__(self, node_name: str = "detector_node", **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("model_complexity", 1), ("min_detection_confidence", 0.5),
            ("min_tracking_confidence", 0.5), ("static_image_mode", False),
            ("warning_throttle_s", 5.0))}
        self._detector = PoseDetector(
            model_complexity=p["model_complexity"],
            min_detection_confidence=p["min_detection_confidence"],
            min_tracking_confidence=p["min_tracking_confidence"],
            static_image_mode=p["static_image_mode"])
        # MediaPipe builds its graph on the first frame (~0.3 s): do it now, not on the camera's
        # first frame, so that the first keypoints are as fresh as the later ones.
        self._detector.detect(np.zeros((64, 64, 3), np.uint8))
        self._throttle_s = float(p["warning_throttle_s"])
        self.frames = 0
        self.bad_images = 0
        self.last_detect_ms = float("nan")
        self.detect_ms: deque[float] = deque(maxlen=DETECT_HISTORY)
        # Reliable: delivered to reliable and best-effort subscribers alike.
        self._publisher = self.create_publisher(PoseArray, "keypoints2d", QoSProfile(depth=10))
        self.create_subscription(Image, "image", self._on_image, IMAGE_QOS)

    def _on_image(self, msg: Image) -> None:
        try:
            rgb = rgb_from_image_msg(msg)
        except ValueError as e:
            self.bad_images += 1
            self.get_logger().warning(f"skipping image: {e}", throttle_duration_sec=self._throttle_s)
            return
        t0 = time.perf_counter()
        keypoints_px, conf = self._detector.detect(rgb)
        self.last_detect_ms = (time.perf_counter() - t0) * 1e3
        self.detect_ms.append(self.last_detect_ms)
        self._publisher.publish(keypoints_to_pose_array(keypoints_px, conf, msg.header))
        self.frames += 1

    def destroy_node(self) -> None:
        if getattr(self, "_detector", None) is not None:  # absent when __init__ failed
            self._detector.close()
            self._detector = None
        super().destroy_node()


def main(args=None) -> int:
    """`detector_node` entry point."""
    return run_node(DetectorNode, "detector_node", args)

if __name__ == "__main__":
    sys.exit(main())

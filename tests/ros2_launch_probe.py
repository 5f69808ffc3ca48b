"""The other end of a launched lifter (tests/test_ros2_launch.py): a separate process started in
the workspace's environment (tf2_msgs and hri_msgs importable), with real rclpy.

It waits for lifter_node's parameter service and reads the parameters named on the command line,
publishes a walking person's 2D keypoints at 30 Hz on `keypoints2d` (and the camera's
`camera_info` with each frame, as a camera driver does) until `pose3d` has arrived `--poses`
times (or `--timeout-s` passes), and records what came back on `pose3d`, `/tf` and
`/humans/bodies/tracked`. Prints one JSON report on stdout; exit code 0 unless it could not run.

    python tests/ros2_launch_probe.py --poses 20 --timeout-s 60 --param max_persons ...
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import rclpy
from geometry_msgs.msg import PoseArray
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keypoint_stream import FX, FY, HEIGHT, WIDTH, detector_layout, keypoints_h36m  # noqa: E402

from diffhpe_ros.conversions import keypoints_to_pose_array, s_to_stamp  # noqa: E402

FPS = 30.0
FRAME_ID = "probe_camera_optical_frame"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", default="/lifter_node")
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--poses", type=int, default=20, help="stop after this many pose3d messages")
    ap.add_argument("--timeout-s", type=float, default=60.0)
    args = ap.parse_args()
    report = {"parameters": {}, "pose3d": [], "tf": [], "tracked": [], "errors": []}
    rclpy.init()
    node = rclpy.create_node("launch_probe")
    try:
        probe(node, args, report)
    except Exception as e:  # noqa: BLE001 - reported to the test, which shows it
        report["errors"].append(f"{type(e).__name__}: {e}")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(report))
    return 0


def probe(node, args, report) -> None:
    deadline = time.monotonic() + args.timeout_s
    node.create_subscription(PoseArray, "pose3d", lambda m: report["pose3d"].append(
        {"frame_id": m.header.frame_id, "poses": len(m.poses)}), qos_profile_sensor_data)
    try:
        from tf2_msgs.msg import TFMessage
        node.create_subscription(TFMessage, "/tf", lambda m: report["tf"].append(
            [{"parent": t.header.frame_id, "child": t.child_frame_id,
              "xyz": [t.transform.translation.x, t.transform.translation.y,
                      t.transform.translation.z]} for t in m.transforms]), 100)
    except ImportError as e:
        report["errors"].append(f"tf2_msgs not importable: {e}")
    try:
        from hri_msgs.msg import IdsList
        node.create_subscription(IdsList, "/humans/bodies/tracked", lambda m: report["tracked"].append(
            {"frame_id": m.header.frame_id, "ids": list(m.ids)}), 100)
    except ImportError as e:
        report["errors"].append(f"hri_msgs not importable: {e}")

    client = node.create_client(GetParameters, f"{args.node}/get_parameters")
    while not client.wait_for_service(timeout_sec=0.5):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{args.node}/get_parameters never appeared")
    future = client.call_async(GetParameters.Request(names=args.param))
    rclpy.spin_until_future_complete(node, future, timeout_sec=max(1.0, deadline - time.monotonic()))
    if not future.done():
        raise TimeoutError("get_parameters did not answer")
    report["parameters"] = {name: parameter_value_to_python(v)
                            for name, v in zip(args.param, future.result().values)}

    # One person walking in front of the camera, as MediaPipe would report it.
    uv, _ = keypoints_h36m(int(FPS * 4))
    points = detector_layout(uv, "mediapipe33")
    pub = node.create_publisher(PoseArray, "keypoints2d", qos_profile_sensor_data)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    info = CameraInfo(width=WIDTH, height=HEIGHT)
    info.k = [FX, 0.0, WIDTH / 2, 0.0, FY, HEIGHT / 2, 0.0, 0.0, 1.0]
    i = 0
    next_t = time.monotonic()
    while len(report["pose3d"]) < args.poses and time.monotonic() < deadline:
        if time.monotonic() >= next_t:
            header = Header(frame_id=FRAME_ID, stamp=s_to_stamp(time.time()))
            info.header = header
            info_pub.publish(info)
            k = i % (2 * len(points) - 2)  # forth and back: a continuous walk
            frame = points[k if k < len(points) else 2 * len(points) - 2 - k][None]
            pub.publish(keypoints_to_pose_array(frame, frame[..., 0] * 0 + 1.0, header))
            i += 1
            next_t += 1.0 / FPS
        rclpy.spin_once(node, timeout_sec=0.005)
    report["keypoints_sent"] = i
    # What was already on its way still arrives.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)


if __name__ == "__main__":
    sys.exit(main())

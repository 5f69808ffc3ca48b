"""Record live topics to an MCAP bag, then replay bags (MCAP and sqlite3) into a live subscriber."""
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="ros_log_"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rclpy  # noqa: E402
from geometry_msgs.msg import Pose, PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from diffhpe_ros.bag import TYPESTORE, BagError, BagRecorder, msg_class_from_name, msgtype_name, read_bag  # noqa: E402
from diffhpe_ros.replay import BagReplay  # noqa: E402

N_MESSAGES = 30
DEEP_BEST_EFFORT = QoSProfile(depth=100, reliability=qos_profile_sensor_data.reliability)
PERIOD_S = 1.0 / 30.0



def spin_until(executor, condition, timeout_s):
    end = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    return condition()


def keypoints_msg(i: int, stamp_ns: int) -> PoseArray:
    """A PoseArray whose first x encodes the index, so order can be checked after the trip."""
    msg = PoseArray(header=Header(frame_id="cam"))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.poses = [Pose() for _ in range(33)]
    msg.poses[0].position.x = float(i)
    return msg


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def test_record_then_replay_mcap(context, tmp_path):
    bag_path = tmp_path / "rec"
    source = Node("source", context=context)
    pub = source.create_publisher(PoseArray, "/keypoints2d", QoSProfile(depth=10))
    info_pub = source.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data)
    recorder = BagRecorder(bag_path, {"/keypoints2d": PoseArray, "/camera_info": CameraInfo}, context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(source)
    ex.add_node(recorder)
    assert spin_until(ex, lambda: pub.get_subscription_count() and info_pub.get_subscription_count(), 5)
    t_start = time.monotonic()
    for i in range(N_MESSAGES):
        while time.monotonic() < t_start + i * PERIOD_S:
            ex.spin_once(timeout_sec=0.002)
        now_ns = source.get_clock().now().nanoseconds
        pub.publish(keypoints_msg(i, now_ns))
        info_pub.publish(CameraInfo(header=keypoints_msg(i, now_ns).header, width=640, height=480))
    assert spin_until(ex, lambda: recorder.counts["/keypoints2d"] == N_MESSAGES
                      and recorder.counts["/camera_info"] == N_MESSAGES, 5), recorder.counts
    assert not bag_path.exists(), "the bag must only appear when complete"
    recorder.close()
    assert (bag_path / "metadata.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary dir left behind"

    recorded = list(read_bag(bag_path))
    assert [m.msgtype for m in recorded if m.topic == "/keypoints2d"] == ["geometry_msgs/msg/PoseArray"] * N_MESSAGES
    times = [m.log_time_ns for m in recorded]
    assert times == sorted(times)
    recorded_stamps = [stamp_ns(rclpy.serialization.deserialize_message(m.raw, PoseArray))
                       for m in recorded if m.topic == "/keypoints2d"]

    # Replay at 2x into a best-effort subscriber (as a lifter subscribes), its queue deep enough
    # that a test thread starved by a loaded CI CPU loses nothing.
    received = []
    sink = Node("sink", context=context)
    sink.create_subscription(PoseArray, "/keypoints2d",
                             lambda m: received.append((time.monotonic(), m)), DEEP_BEST_EFFORT)
    ex.add_node(sink)
    replay = BagReplay(context=context, parameter_overrides=[
        rclpy.parameter.Parameter("bag_path", value=str(bag_path)),
        rclpy.parameter.Parameter("rate", value=2.0),
        rclpy.parameter.Parameter("topics", value=["/keypoints2d"])])
    ex.add_node(replay)
    t_replay = source.get_clock().now().nanoseconds
    assert spin_until(ex, lambda: replay.finished.is_set() and len(received) == N_MESSAGES, 10), len(received)
    assert replay.sent == {"/keypoints2d": N_MESSAGES}

    order = [int(m.poses[0].position.x) for _, m in received]
    assert order == list(range(N_MESSAGES))
    stamps = np.array([stamp_ns(m) for _, m in received])
    # restamped: one constant shift, to "now" at replay time (not the recording time)
    shift = stamps - np.array(recorded_stamps)
    assert np.all(shift == shift[0]) and stamps[0] >= t_replay
    # rate: recorded spacing / 2, measured on arrival
    arrivals = np.array([t for t, _ in received])
    recorded_span_s = (recorded_stamps[-1] - recorded_stamps[0]) / 1e9
    assert 0.95 * (N_MESSAGES - 1) * PERIOD_S < recorded_span_s < 1.5 * (N_MESSAGES - 1) * PERIOD_S
    # never ahead of schedule; late by a bounded amount (a loaded 2-core CI machine can stall
    # the spinning test thread, so the upper bound is loose: it still catches a rate ignored)
    assert 0.95 * recorded_span_s / 2 < arrivals[-1] - arrivals[0] < 1.8 * recorded_span_s / 2
    for node in (replay, sink, recorder, source):
        node.destroy_node()


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_replay_untouched_bytes_from_written_bag(context, tmp_path, storage):
    """A bag written elsewhere (here: by rosbags directly, sqlite3 or MCAP) replays with
    restamp=false as the exact recorded messages, at the recorded times."""
    bag_path = tmp_path / "bag"
    t0 = 1_700_000_000 * 10**9
    with Writer(bag_path, version=9, storage_plugin=storage) as writer:
        conn = writer.add_connection("/keypoints2d", msgtype_name(PoseArray), typestore=TYPESTORE)
        for i in range(10):
            t = t0 + int(i * 0.05e9)
            writer.write(conn, t, serialize_message(keypoints_msg(i, t)))
    received = []
    sink = Node("sink", context=context)
    sink.create_subscription(PoseArray, "/keypoints2d",
                             lambda m: received.append((time.monotonic(), m)), DEEP_BEST_EFFORT)
    replay = BagReplay(context=context, parameter_overrides=[
        rclpy.parameter.Parameter("bag_path", value=str(bag_path)),
        rclpy.parameter.Parameter("topics", value=["/keypoints2d"]),
        rclpy.parameter.Parameter("restamp", value=False)])
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(sink)
    ex.add_node(replay)
    assert spin_until(ex, lambda: replay.finished.is_set() and len(received) == 10, 10), len(received)
    assert [stamp_ns(m) for _, m in received] == [t0 + int(i * 0.05e9) for i in range(10)]
    arrivals = np.array([t for t, _ in received])
    assert 0.95 * 0.45 < arrivals[-1] - arrivals[0] < 3 * 0.45  # loose: shared CI CPU
    replay.destroy_node()
    sink.destroy_node()


def write_bag(path, messages, storage=StoragePlugin.MCAP):
    """messages: (topic, log time ns, message or raw bytes) in time order."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {}
        for topic, t, msg in messages:
            if topic not in conns:
                cls = PoseArray if topic == "/keypoints2d" else CameraInfo
                conns[topic] = writer.add_connection(topic, msgtype_name(cls), typestore=TYPESTORE)
            writer.write(conns[topic], t, msg if isinstance(msg, bytes) else serialize_message(msg))


def test_restamp_shift_ignores_unset_camera_info_stamps(context, tmp_path):
    # A driver that leaves camera_info unstamped (0) comes first in the bag: the shift must come
    # from the keypoints' real stamps, else they would be pushed past the int32 seconds of Time.
    bag_path = tmp_path / "bag"
    t0 = 1_700_000_000 * 10**9
    messages = [("/camera_info", t0 - 10**6, CameraInfo(width=640, height=480))]
    messages += [("/keypoints2d", t0 + i * 50_000_000, keypoints_msg(i, t0 + i * 50_000_000))
                 for i in range(5)]
    write_bag(bag_path, messages)
    received, infos = [], []
    sink = Node("sink", context=context)
    sink.create_subscription(PoseArray, "/keypoints2d", received.append, QoSProfile(depth=100))
    sink.create_subscription(CameraInfo, "/camera_info", infos.append, QoSProfile(depth=100))
    replay = BagReplay(context=context, parameter_overrides=[
        rclpy.parameter.Parameter("bag_path", value=str(bag_path))])
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(sink)
    ex.add_node(replay)
    before_ns = replay.get_clock().now().nanoseconds
    assert spin_until(ex, lambda: replay.finished.is_set() and len(received) == 5 and infos, 10), \
        (replay.finished.is_set(), len(received), replay.error)
    after_ns = replay.get_clock().now().nanoseconds
    assert replay.error is None and replay.sent == {"/camera_info": 1, "/keypoints2d": 5}
    stamps = np.array([stamp_ns(m) for m in received])
    assert before_ns <= stamps[0] <= after_ns  # "now" at replay time, not twice now
    assert (np.diff(stamps) == 50_000_000).all()  # recorded spacing kept exactly
    assert stamp_ns(infos[0]) == 0  # unset stays unset
    replay.destroy_node()
    sink.destroy_node()


def test_stamps_that_would_overflow_are_refused(context, tmp_path, capfd):
    bag_path = tmp_path / "bag"
    t0 = 1_700_000_000 * 10**9
    far = 2**31 * 10**9 - 1  # a valid stamp, but shifted by the reference's shift it overflows
    info = CameraInfo(header=keypoints_msg(0, far).header)
    write_bag(bag_path, [("/keypoints2d", t0, keypoints_msg(0, t0)),
                         ("/camera_info", t0 + 10**7, info),
                         ("/keypoints2d", t0 + 10**8, keypoints_msg(1, t0 + 10**8))])
    received = []
    sink = Node("sink", context=context)
    sink.create_subscription(PoseArray, "/keypoints2d", received.append, QoSProfile(depth=100))
    replay = BagReplay(context=context, parameter_overrides=[
        rclpy.parameter.Parameter("bag_path", value=str(bag_path)),
        rclpy.parameter.Parameter("start_delay_s", value=0.2)])
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(sink)
    ex.add_node(replay)
    assert spin_until(ex, lambda: replay.finished.is_set(), 10), "finished never set"
    assert spin_until(ex, lambda: len(received) == 2, 2)
    assert replay.refused == {"/keypoints2d": 0, "/camera_info": 1}
    assert replay.sent == {"/keypoints2d": 2, "/camera_info": 0}
    assert replay.error is None
    assert "does not fit a ROS Time" in capfd.readouterr().err
    replay.destroy_node()
    sink.destroy_node()


def test_replay_rejects_bad_input(context, tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.yaml"):
        list(read_bag(tmp_path))
    bag_path = tmp_path / "bag"
    with Writer(bag_path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/keypoints2d", msgtype_name(PoseArray), typestore=TYPESTORE)
        writer.write(conn, 1, serialize_message(keypoints_msg(0, 1)))
    with pytest.raises(BagError, match="no topic"):
        BagReplay(context=context, parameter_overrides=[
            rclpy.parameter.Parameter("bag_path", value=str(bag_path)),
            rclpy.parameter.Parameter("topics", value=["/pose3d"])])


# --- a bag is untrusted input ---------------------------------------------------------------

POSE_ARRAY_MSGDEF = TYPESTORE.generate_msgdef("geometry_msgs/msg/PoseArray")


def replay_node(context, bag_path, **params):
    return BagReplay(context=context, parameter_overrides=[
        rclpy.parameter.Parameter("bag_path", value=str(bag_path)),
        *(rclpy.parameter.Parameter(k, value=v) for k, v in params.items())])


def good_bag(path, storage=StoragePlugin.MCAP, n=50):
    t0 = 1_700_000_000 * 10**9
    write_bag(path, [("/keypoints2d", t0 + i * 10**7, keypoints_msg(i, t0 + i * 10**7))
                     for i in range(n)], storage)
    return path


def foreign_type_bag(path):
    """A bag whose connection claims the type `this/msg/PoseArray` (importing `this` prints)."""
    msgdef, digest = POSE_ARRAY_MSGDEF
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/keypoints2d", "this/msg/PoseArray", msgdef=msgdef,
                                     rihs01=digest)
        writer.write(conn, 1, serialize_message(keypoints_msg(0, 1)))
    return path


def test_message_types_come_from_an_allow_list_never_from_an_import(context, tmp_path):
    assert msg_class_from_name("geometry_msgs/msg/PoseArray") is PoseArray
    assert msg_class_from_name("sensor_msgs/msg/CameraInfo") is CameraInfo
    sys.modules.pop("this", None)
    bag_path = foreign_type_bag(tmp_path / "bag")
    with pytest.raises(BagError, match="'this/msg/PoseArray' is not one that replay publishes"):
        replay_node(context, bag_path, topics=["/keypoints2d"])
    assert "this" not in sys.modules
    for name in ("os/msg/path", "geometry_msgs/msg/Nope", "geometry_msgs", "", "a/b/c/d"):
        with pytest.raises(BagError, match="not one that replay publishes"):
            msg_class_from_name(name)


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
@pytest.mark.parametrize("damage", ["truncated", "truncated_to_10_bytes", "empty_file",
                                    "random_file", "metadata_garbage", "metadata_not_a_mapping",
                                    "data_missing"])
def test_corrupt_or_truncated_bags_are_one_clear_error(context, tmp_path, storage, damage):
    # (Garbage inside a message's float fields is still a valid message: not detectable.)
    bag_path = good_bag(tmp_path / "bag", storage)
    data_file = next(p for p in bag_path.iterdir() if p.name != "metadata.yaml")
    data = data_file.read_bytes()
    rng = np.random.default_rng(0)
    if damage == "truncated":
        data_file.write_bytes(data[:len(data) // 2])
    elif damage == "truncated_to_10_bytes":
        data_file.write_bytes(data[:10])
    elif damage == "empty_file":
        data_file.write_bytes(b"")
    elif damage == "random_file":
        data_file.write_bytes(rng.bytes(len(data)))
    elif damage == "metadata_garbage":
        (bag_path / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    elif damage == "metadata_not_a_mapping":
        (bag_path / "metadata.yaml").write_text("hello")
    elif damage == "data_missing":
        data_file.unlink()
    with pytest.raises(BagError, match=f"bag {bag_path}"):
        replay_node(context, bag_path, topics=["/keypoints2d"])


def test_empty_bag_and_garbage_messages_are_refused_before_anything_is_published(context, tmp_path):
    empty = tmp_path / "empty"
    with Writer(empty, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/keypoints2d", msgtype_name(PoseArray), typestore=TYPESTORE)
    with pytest.raises(BagError, match="holds no messages"):
        replay_node(context, empty, topics=["/keypoints2d"])

    t0 = 1_700_000_000 * 10**9
    good = serialize_message(keypoints_msg(1, t0))
    sink = Node("sink", context=context)
    received = []
    sink.create_subscription(PoseArray, "/keypoints2d", received.append, QoSProfile(depth=100))
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(sink)
    for k, bad in enumerate((good[:20], b"\x00\x01\x00\x00" + b"\xff" * 64, b"")):
        bag_path = tmp_path / f"garbage{k}"
        write_bag(bag_path, [("/keypoints2d", t0, keypoints_msg(0, t0)),
                             ("/keypoints2d", t0 + 10**8, good),
                             ("/keypoints2d", t0 + 2 * 10**8, bad)])
        # (an empty message already stops the bag reader)
        reason = "cannot be read" if not bad else (r"message 2 \(/keypoints2d, bag time \d+ ns\) "
                                                  r"is not a valid geometry_msgs/msg/PoseArray")
        with pytest.raises(BagError, match=reason):
            replay_node(context, bag_path, start_delay_s=0.0, topics=["/keypoints2d"])
    spin_until(ex, lambda: received, 0.5)
    assert received == []  # the good messages before the bad one were not published either
    sink.destroy_node()


def test_replay_cli_exits_2_with_one_line_for_a_bag_it_cannot_replay(tmp_path):
    corrupt = good_bag(tmp_path / "bag")
    data_file = next(p for p in corrupt.iterdir() if p.suffix == ".mcap")
    data_file.write_bytes(data_file.read_bytes()[:200])
    foreign = foreign_type_bag(tmp_path / "foreign")
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path / "log"), ROS_AUTOMATIC_DISCOVERY_RANGE="OFF")
    for bag_path, reason in ((corrupt, "cannot be read"), (foreign, "'this/msg/PoseArray'"),
                             (tmp_path / "nowhere", "no metadata.yaml")):
        proc = subprocess.run([sys.executable, "-m", "diffhpe_ros.replay", "--ros-args",
                               "-p", f"bag_path:={bag_path}", "-p", "topics:=['/keypoints2d']"],
                              env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert "Traceback" not in out and "cannot start" in out and reason in out, out
        assert "The Zen of Python" not in out

"""The one way our console scripts run a node: init, spin, clean shutdown, clear start-up errors."""
from __future__ import annotations

import re
import signal
import sys
import threading
import traceback
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

try:  # where rclpy raises its C errors from (rcl_init on bad command-line arguments)
    from rclpy._rclpy_pybind11 import RCLError
except ImportError:  # pragma: no cover - older rclpy
    RCLError = RuntimeError

# What a node's constructor raises for bad parameters or a missing/corrupt file: reported in one
# line and exit code 2, never a traceback.
STARTUP_ERRORS = (ValueError, OSError, ParameterException)
# A running node never dies of one bad callback: it logs the error (throttled) and keeps spinning.
CALLBACK_ERROR_LOG_PERIOD_S = 5.0


def spin_guarded(node: Node, executor, done: threading.Event | None = None) -> int:
    """Spin until shutdown (or `done` is set). An exception escaping a callback is logged with its
    traceback and counted, and spinning goes on. Returns how many callbacks failed."""
    failed = 0
    while rclpy.ok(context=node.context) and (done is None or not done.is_set()):
        try:
            executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as e:  # noqa: BLE001 - any bug in a callback must not stop the robot
            failed += 1
            node.get_logger().error(
                f"a callback failed ({failed} so far), still running: {type(e).__name__}: {e}\n"
                + traceback.format_exc(), throttle_duration_sec=CALLBACK_ERROR_LOG_PERIOD_S)
    return failed


ROS_ARGUMENTS_HELP = ("ROS arguments go after --ros-args: -p name:=value, --params-file FILE, "
                      "-r from:=to, --log-level LEVEL")


def ros_arguments_error(e: BaseException) -> str:
    """rcl's message for unusable command-line arguments, without its C source locations."""
    text = str(e).removeprefix("failed to initialize rcl: ")
    text = re.sub(r",? at /\S+:\d+", "", text).replace(". Error: error not set", "")
    return f"bad command-line arguments: {text.strip()} ({ROS_ARGUMENTS_HELP})"


def run_node(make_node: Callable[[], Node], name: str, args=None,
             until: Callable[[Node], threading.Event] | None = None,
             startup_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Create the node with `make_node`, spin it until Ctrl-C (or until the event returned by
    `until(node)` is set), then shut down cleanly. Returns the process exit code: 2 when the node
    cannot start (unusable command-line arguments, or an error of the constructor), else 0."""
    try:
        rclpy.init(args=args)
    except RCLError as e:  # e.g. `-p name:=` without a value: rcl cannot parse it
        print(f"[FATAL] [{name}]: cannot start: {ros_arguments_error(e)}", file=sys.stderr)
        return 2
    node = None
    try:
        try:
            node = make_node()
        except STARTUP_ERRORS + tuple(startup_errors) as e:
            rclpy.logging.get_logger(name).fatal(f"cannot start: {e}")
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_guarded(node, executor, until(node) if until is not None else None)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C under `ros2 launch` reaches a node twice (from the terminal, then from launch):
        # the second SIGINT must not cut the clean shutdown short (KeyboardInterrupt in
        # destroy_node, exit -2, "process has died"). The process is on its way out: ignore it.
        _ignore_sigint()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        _ignore_sigint()  # try_shutdown reinstalls the handler rclpy.init found
    return 0


def _ignore_sigint() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

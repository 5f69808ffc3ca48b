"""The one way our console scripts run a node: init, spin, clean shutdown, clear start-up errors."""
from __future__ import annotations

import threading
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

# What a node's constructor raises for bad parameters or a missing/corrupt file: reported in one
# line and exit code 2, never a traceback.
STARTUP_ERRORS = (ValueError, OSError, ParameterException)


def run_node(make_node: Callable[[], Node], name: str, args=None,
             until: Callable[[Node], threading.Event] | None = None,
             startup_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Create the node with `make_node`, spin it until Ctrl-C (or until the event returned by
    `until(node)` is set), then shut down cleanly. Returns the process exit code."""
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        done = until(node) if until is not None else None
        while rclpy.ok() and (done is None or not done.is_set()):
            executor.spin_once(timeout_sec=0.1)
    except STARTUP_ERRORS + tuple(startup_errors) as e:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {e}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


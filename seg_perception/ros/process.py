"""The node's process: rclpy up, the node built and spun, a stop on a signal, the exit code.

Exit code 0 after SIGINT / SIGTERM (in any state, within about a second), 1 with one
``cannot start: ...`` line naming the fix when the node cannot start.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

import rclpy
import rclpy.executors

from .startup import StartupError, one_line


def run_node(make_node: Callable[[], Any], args: Optional[list[str]] = None) -> int:
    """Init rclpy with ``args``, build the node with ``make_node()``, ``start()`` and spin it until a
    signal, then leave the process (:func:`finish`) with the exit code (returned only when rclpy
    itself cannot start).

    ``make_node()`` returns a node with ``start()``, ``destroy_node()`` and ``running`` (True once
    it is built and until it is destroyed: a failure after that is ``stopped: ...``, not
    ``cannot start: ...``).
    """
    log = rclpy.logging.get_logger("segment_node")
    try:
        rclpy.init(args=args)
    except Exception as e:  # noqa: BLE001 - e.g. malformed --ros-args
        print(f"[FATAL] [segment_node]: cannot start: {one_line(e)}", file=sys.stderr)
        return 1
    node: Optional[Any] = None
    code = 0
    try:
        node = make_node()
        node.start()
        rclpy.spin(node)
    except StartupError as e:
        log.fatal(f"cannot start: {e}")
        code = 1
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        if rclpy.ok():
            log.fatal(f"cannot start: {type(e).__name__}: {one_line(e)}" if node is None or not node.running
                      else f"stopped: {type(e).__name__}: {one_line(e)}")
            code = 1
        # else: a signal shut the context down while the executor was inside a native call, and rclpy
        # raised whatever that call hit (e.g. a pybind RuntimeError) instead of
        # ExternalShutdownException: that is the requested stop, not a failure.
    finally:
        finish(node, code)
    return code


def finish(node: Optional[Any], code: int) -> None:
    """Destroy the node, shut rclpy down and leave the process with ``code``."""
    try:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    except (KeyboardInterrupt, Exception):  # noqa: BLE001 - a second signal while stopping
        pass
    # Everything is published, closed and rclpy's logging is finalized. Leave now: interpreter
    # teardown with torch/onnxruntime loaded takes seconds on a busy machine, and a worker or model
    # build still inside native code cannot be interrupted; neither may delay
    # the stop beyond the promised second.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

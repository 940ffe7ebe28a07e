"""Helpers for tests that talk to a real segment_node process over real ROS 2 topics."""
from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy

from seg_perception.tools.node_driver import node_command, start_process, stop_process, wait_connected

REPO = Path(__file__).resolve().parents[2]
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


@contextmanager
def node_process(params: dict[str, Any], *, log_path: Path, **kw: Any) -> Iterator[subprocess.Popen]:
    """Run segment_node in another process for the duration of the block, then stop it (SIGINT)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The node's default backend (auto) measures every CPU path on first use; node tests compare
    # against in-process torch Segmenters and must start fast, so they run torch unless they say otherwise.
    params = {"backend": "torch", **params}
    proc = start_process(node_command(params, **kw), log_path, env=env, cwd=REPO)
    try:
        yield proc
    finally:
        stop_process(proc)


class Harness:
    """A test-side node: publishes camera frames and collects whatever the node publishes."""

    def __init__(self, name: str = "seg_test_harness") -> None:
        if not rclpy.ok():
            rclpy.init()
        self.node: Node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}

    def subscribe(self, msg_type: Any, topic: str, qos: Any = RELIABLE) -> list:
        box = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, box.append, qos)
        return box

    def spin_until(self, cond: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"node process exited early with code {proc.returncode}")
            self.executor.spin_once(timeout_sec=0.05)
        return cond()

    def wait_connected(self, pub: Any, answer_topic: str, proc: subprocess.Popen, timeout: float = 90) -> bool:
        """Both ends discovered (``pub`` has a subscriber, ``answer_topic`` a publisher), plus the settle
        pause of :func:`seg_perception.tools.node_driver.wait_connected`."""
        return wait_connected(lambda cond, t: self.spin_until(cond, t, proc), self.node, pub, answer_topic, timeout)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()

"""Run segment_node in a child process (demo, soak, bench, tests): command line, start, clean stop,
and :class:`NodeDriver`, the rclpy side in this process that talks to it.

rclpy and the message packages are imported inside the functions that need them, so the process
helpers work (and this module imports) without a ROS 2 environment.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence


def node_command(params: dict[str, Any], *, namespace: str = "", name: str = "segment_node",
                 remap: Optional[dict[str, str]] = None) -> list[str]:
    """``python -m seg_perception.cli run --ros-args ...`` for the given parameters and remappings."""
    cmd = [sys.executable, "-m", "seg_perception.cli", "run", "--ros-args", "-r", f"__node:={name}"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for src, dst in (remap or {}).items():
        cmd += ["-r", f"{src}:={dst}"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    return cmd


def start_process(cmd: Sequence[str], log_path: Path, env: Optional[Mapping[str, str]] = None,
                  cwd: Optional[os.PathLike | str] = None) -> subprocess.Popen:
    """Start ``cmd`` with its stdout and stderr written to ``log_path`` (truncated first).

    Args:
        cmd: the command line, e.g. from :func:`node_command`.
        log_path: the log file; its folder must exist.
        env: the child's environment; None = this process's ``os.environ``.
        cwd: the child's working directory; None = this process's.
    """
    with open(log_path, "wb") as log:
        return subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ if env is None else env), cwd=cwd)


def log_tail(log_path: Path, chars: int = 2000) -> str:
    """The last ``chars`` characters of a child's log ('' when it cannot be read)."""
    try:
        return Path(log_path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> Optional[int]:
    """SIGINT (the node shuts down cleanly), then SIGKILL after ``timeout`` s. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class LatestDiagnostics:
    """The key/value pairs of the newest /diagnostics status whose name contains ``match``.

    Filled by the executor's callbacks (possibly on a spin thread); read with :meth:`latest`.
    Created by :func:`subscribe_diagnostics`.
    """

    def __init__(self, match: str) -> None:
        self.match = match
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, arr: Any) -> None:
        """The subscription callback: keep the values of the last matching status in ``arr``."""
        for st in arr.status:
            if self.match in st.name:
                values = {kv.key: kv.value for kv in st.values}
                with self._lock:
                    self._values = values

    def latest(self) -> dict[str, str]:
        """A copy of the newest matching status's values ({} until one arrived)."""
        with self._lock:
            return dict(self._values)


def subscribe_diagnostics(node: Any, match: str, qos: Any = 10) -> LatestDiagnostics:
    """Subscribe ``node`` to ``/diagnostics``, keeping the newest status whose name contains ``match``
    (segment_node names its status ``seg_perception: <fully qualified node name>``)."""
    from diagnostic_msgs.msg import DiagnosticArray

    diag = LatestDiagnostics(match)
    node.create_subscription(DiagnosticArray, "/diagnostics", diag, qos)
    return diag


#: Seconds to wait after discovery looks complete before the first publish. Our writer seeing the
#: node's reader does not mean the node's reader has matched our writer yet, and a reliable sample
#: that arrives before it has is lost (seen here: a run's first frame went unanswered about once in
#: four full test runs). Discovery messages of both sides travel together, so a short pause covers it.
MATCH_SETTLE_S = 1.0


def wait_connected(spin_until: Callable[[Callable[[], bool], float], bool], node: Any, pub: Any,
                   answer_topic: str, timeout: float, settle: float = MATCH_SETTLE_S) -> bool:
    """Wait until ``pub`` has a subscriber and ``answer_topic`` a publisher, then ``settle`` s more.

    Args:
        spin_until: ``spin_until(cond, timeout) -> bool`` that keeps ``node``'s executor turning.
        node: the rclpy node that owns ``pub`` and will subscribe to ``answer_topic``.
        pub: the publisher of camera frames.
        answer_topic: a topic the driven node publishes, e.g. ``/ns/segment_node/semantic``.
        timeout: seconds to wait for both ends.
    Returns:
        True when both were seen (after the settle pause); False on timeout (no pause).
    """
    up = spin_until(lambda: pub.get_subscription_count() > 0 and node.count_publishers(answer_topic) > 0, timeout)
    if up:
        spin_until(lambda: False, settle)
    return up


class NodeDriver:
    """A child process (normally segment_node) and an rclpy node in this process to drive it.

    As a context manager: on entry starts ``cmd`` (output to ``log_path``) and creates the driver
    node and a SingleThreadedExecutor; on exit stops a background spin thread, destroys the node,
    shuts down the rclpy context only if it created it, and stops the child (SIGINT, then SIGKILL
    after ``stop_timeout`` s). ``proc`` stays readable after exit (exit code, pid).

    Args:
        cmd: the child's command line, e.g. from :func:`node_command`.
        log_path: the child's log file (stdout and stderr); its tail goes into errors.
        name: the driver node's name.
        env: the child's environment; None = ``os.environ``.
        domain_id: None = use the default rclpy context (initialised here, and shut down on exit,
            only when ``rclpy.ok()`` is False); a number = a private context on that ROS domain.
        error: the exception class :meth:`spin_until` raises when the child has exited.
        stop_timeout: seconds between SIGINT and SIGKILL when stopping the child.

    Attributes (valid inside the block): ``proc``, ``node``, ``executor``, ``context``.
    """

    def __init__(self, cmd: Sequence[str], log_path: Path, *, name: str, env: Optional[Mapping[str, str]] = None,
                 domain_id: Optional[int] = None, error: type[Exception] = RuntimeError,
                 stop_timeout: float = 15.0) -> None:
        self.cmd = list(cmd)
        self.log_path = Path(log_path)
        self.name = name
        self.env = env
        self.domain_id = domain_id
        self.error = error
        self.stop_timeout = stop_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.node: Any = None
        self.executor: Any = None
        self.context: Any = None
        self._own_context = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "NodeDriver":
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.proc = start_process(self.cmd, self.log_path, self.env)
        try:
            if self.domain_id is None:
                self._own_context = not rclpy.ok()
                if self._own_context:
                    rclpy.init()
                self.context = rclpy.get_default_context()
            else:
                self._own_context = True
                self.context = rclpy.Context()
                rclpy.init(context=self.context, domain_id=self.domain_id)
            self.node = rclpy.create_node(self.name, context=self.context)
            self.executor = SingleThreadedExecutor(context=self.context)
            self.executor.add_node(self.node)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close()

    def _close(self) -> None:
        import rclpy

        try:
            if self._thread is not None:
                self._stop.set()
                self._thread.join(timeout=5)
            if self.node is not None:
                if self.executor is not None:
                    self.executor.remove_node(self.node)
                self.node.destroy_node()
            if self._own_context:  # context=None also replaces the shut-down default context singleton
                rclpy.try_shutdown(context=None if self.domain_id is None else self.context)
        finally:
            if self.proc is not None:
                stop_process(self.proc, timeout=self.stop_timeout)

    def spin_in_background(self) -> None:
        """Spin the executor on a daemon thread from now on (until exit); :meth:`spin_until` then
        only waits. Callbacks run on that thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._spin, name=f"{self.name}_spin", daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def check_alive(self) -> None:
        """Raise ``error`` (exit code, log path and the log's tail) if the child has exited."""
        if self.proc.poll() is not None:
            raise self.error(f"segment_node exited with code {self.proc.returncode}; its log ({self.log_path}):\n"
                             + log_tail(self.log_path))

    def spin_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        """Spin (or, with a background spin thread, wait) until ``cond()`` holds or ``timeout`` s pass.

        Returns:
            ``cond()``: True as soon as it holds, else its value at the deadline.
        Raises:
            ``error``: the child exited first (see :meth:`check_alive`).
        """
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            self.check_alive()
            if self._thread is None:
                self.executor.spin_once(timeout_sec=0.02)
            else:
                time.sleep(0.02)
        return cond()

    def wait_connected(self, pub: Any, answer_topic: str, timeout: float) -> bool:
        """:func:`wait_connected` on the driver node."""
        return wait_connected(self.spin_until, self.node, pub, answer_topic, timeout)

    def diagnostics(self, match: str, qos: Any = 10) -> LatestDiagnostics:
        """:func:`subscribe_diagnostics` on the driver node."""
        return subscribe_diagnostics(self.node, match, qos)

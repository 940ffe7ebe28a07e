"""NodeDriver (seg_perception.tools.node_driver): the child process, the rclpy side, spin_until and the
/diagnostics helper, over real rclpy with trivial child processes instead of segment_node."""
from __future__ import annotations

import sys
import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import String

from seg_perception.tools.node_driver import MATCH_SETTLE_S, LatestDiagnostics, NodeDriver

pytestmark = pytest.mark.ros

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
# A child node that answers every /seg_echo/ping with the same text on /seg_echo/pong.
ECHO = [sys.executable, "-c", """
import rclpy
from std_msgs.msg import String
rclpy.init()
n = rclpy.create_node("seg_test_echo")
pub = n.create_publisher(String, "/seg_echo/pong", 10)
n.create_subscription(String, "/seg_echo/ping", pub.publish, 10)
rclpy.spin(n)
"""]


class _DriverError(RuntimeError):
    pass


def _array(*statuses: tuple[str, dict[str, str]]) -> DiagnosticArray:
    arr = DiagnosticArray()
    for name, values in statuses:
        st = DiagnosticStatus(name=name)
        st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr.status.append(st)
    return arr


def test_spin_until_returns_when_condition_holds_and_cleans_up(tmp_path):
    was_ok = rclpy.ok()
    with NodeDriver(SLEEPER, tmp_path / "child.log", name="seg_test_driver") as drv:
        assert drv.proc.poll() is None
        t_end = time.monotonic() + 0.3
        t0 = time.monotonic()
        assert drv.spin_until(lambda: time.monotonic() >= t_end, 10.0) is True
        assert time.monotonic() - t0 < 5.0
        assert drv.spin_until(lambda: False, 0.2) is False  # a timeout is not an error
    assert drv.proc.returncode is not None  # the child was stopped
    assert rclpy.ok() == was_ok  # the default context is shut down only if the driver initialised it


def test_spin_until_raises_given_error_with_log_tail_when_child_exits(tmp_path):
    log = tmp_path / "child.log"
    cmd = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with NodeDriver(cmd, log, name="seg_test_driver_exit", error=_DriverError) as drv:
        with pytest.raises(_DriverError) as info:
            drv.spin_until(lambda: False, 30.0)
    msg = str(info.value)
    assert "exited with code 3" in msg and str(log) in msg and "boom" in msg


def test_wait_connected_then_the_first_message_is_answered(tmp_path):
    """One message, published once right after wait_connected, gets its echo (no re-sending)."""
    with NodeDriver(ECHO, tmp_path / "echo.log", name="seg_test_driver_echo") as drv:
        got: list[str] = []
        drv.node.create_subscription(String, "/seg_echo/pong", lambda m: got.append(m.data), 10)
        pub = drv.node.create_publisher(String, "/seg_echo/ping", 10)
        t0 = time.monotonic()
        assert drv.wait_connected(pub, "/seg_echo/pong", 60.0), (tmp_path / "echo.log").read_text()
        assert time.monotonic() - t0 >= MATCH_SETTLE_S
        pub.publish(String(data="first"))
        assert drv.spin_until(lambda: got == ["first"], 30.0), got


def test_wait_connected_times_out_without_a_subscriber(tmp_path):
    with NodeDriver(SLEEPER, tmp_path / "child.log", name="seg_test_driver_alone") as drv:
        pub = drv.node.create_publisher(String, "/seg_nobody/ping", 10)
        t0 = time.monotonic()
        assert drv.wait_connected(pub, "/seg_nobody/pong", 0.5) is False
        assert time.monotonic() - t0 < 0.5 + MATCH_SETTLE_S  # no settle pause after a timeout


def test_diagnostics_keeps_the_matching_status_in_a_private_context(tmp_path):
    """Background spinning, a private context on its own domain, the right status picked by name."""
    wanted = {"frames_processed": "7", "fps": "12.5"}
    arr = _array(("seg_perception: /other/segment_node", {"frames_processed": "99"}),
                 ("seg_perception: /demo/segment_node", wanted),
                 ("unrelated", {"x": "1"}))
    was_ok = rclpy.ok()
    with NodeDriver(SLEEPER, tmp_path / "child.log", name="seg_test_driver_diag", domain_id=231) as drv:
        diag = drv.diagnostics("/demo/segment_node")
        pub = drv.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        drv.spin_in_background()
        assert diag.latest() == {}

        def published_and_seen() -> bool:
            pub.publish(arr)
            time.sleep(0.05)
            return diag.latest() == wanted

        assert drv.spin_until(published_and_seen, 30.0), diag.latest()
        assert drv._thread is not None and drv._thread.is_alive()
    assert not drv.context.ok() and not drv._thread.is_alive()
    assert rclpy.ok() == was_ok  # the default context was not touched


def test_latest_diagnostics_without_ros():
    diag = LatestDiagnostics("/seg_bench/segment_node")
    diag(_array(("seg_perception: /seg_bench/segment_node", {"a": "1"})))
    diag(_array(("seg_perception: /elsewhere", {"a": "2"})))  # no match: the last values stay
    assert diag.latest() == {"a": "1"}
    copy = diag.latest()
    copy["a"] = "changed"
    assert diag.latest() == {"a": "1"}

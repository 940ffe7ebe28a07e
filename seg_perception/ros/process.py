"""Run segment_node in a child process (demo, soak, tests): command line, start, clean stop."""
from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any, Optional


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

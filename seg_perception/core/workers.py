"""Named single-thread workers, one per process, for the post-processing's second core.

A forked child gets its own: the parent's thread does not exist there, and submitting to the
parent's executor would never run. No ROS imports.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["process_worker"]

_WORKERS: dict[tuple[int, str], ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def process_worker(name: str) -> ThreadPoolExecutor:
    """The one-thread executor called ``name`` of this process (threads named ``seg_<name>``)."""
    pid = os.getpid()
    with _LOCK:
        if any(p != pid for p, _ in _WORKERS):  # inherited through fork: the threads are gone
            _WORKERS.clear()
        key = (pid, name)
        if key not in _WORKERS:
            _WORKERS[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"seg_{name}")
        return _WORKERS[key]

"""ROS-free helpers of the node: the newest-frame slot and the running statistics.

The camera callback decodes each message and drops the valid frame into a :class:`LatestSlot`
(replacing and counting an unprocessed older one); the worker thread takes from it. The queue depth is therefore bounded by 1
whatever the camera rate.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Optional

from ..core.latency import latency_stats


class LatestSlot:
    """A one-element mailbox that keeps only the newest item.

    ``put`` never blocks; it returns True when it overwrote an item nobody took (a dropped frame).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False

    def put(self, item: Any) -> bool:
        with self._cond:
            dropped = self._has
            self._item, self._has = item, True
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Optional[Any]:
        """Newest item, or None after ``timeout`` seconds or when closed."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    @property
    def depth(self) -> int:
        return int(self._has)

    def clear(self) -> bool:
        """Forget a pending item; True when there was one (a dropped frame)."""
        with self._cond:
            had, self._item, self._has = self._has, None, False
            return had

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class NodeStats:
    """Thread-safe counters and a sliding window of per-frame latencies (ms)."""

    def __init__(self, window: int = 200) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self._stages: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=window))
        self._done_times: collections.deque = collections.deque(maxlen=window)
        self.max_queue_depth = 0

    def on_received(self, dropped: bool, depth: int) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(dropped)
            self.max_queue_depth = max(self.max_queue_depth, depth)

    def on_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def on_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def on_error(self, reason: str) -> None:
        with self._lock:
            self.errors[reason] += 1

    def on_processed(self, stages_ms: dict[str, float]) -> None:
        with self._lock:
            self.processed += 1
            self._done_times.append(time.monotonic())
            for k, v in stages_ms.items():
                self._stages[k].append(v)

    def fps(self) -> float:
        with self._lock:
            t = list(self._done_times)
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    def snapshot(self) -> dict[str, Any]:
        """All counters plus median/p90 per stage, as a flat JSON-ready dict."""
        fps = self.fps()
        with self._lock:
            out: dict[str, Any] = {
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_rejected": sum(self.rejected.values()),
                "max_queue_depth": self.max_queue_depth,
                "fps": round(fps, 2),
            }
            for reason, n in sorted(self.rejected.items()):
                out[f"rejected.{reason}"] = n
            for reason, n in sorted(self.errors.items()):
                out[f"error.{reason}"] = n
            for k, d in self._stages.items():
                if d:
                    s = latency_stats(d, digits=2)
                    out[f"{k}.median_ms"], out[f"{k}.p90_ms"] = s["median_ms"], s["p90_ms"]
        return out


_IMPORTED_AT = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; elsewhere: since this module was imported)."""
    import os

    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5); fields[0] is field 3
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED_AT

"""Fair batches of the newest frame of several cameras, for one inference worker. No ROS imports.

Each camera has a one-frame mailbox that keeps only its newest frame (an untaken older frame is
replaced and counted as dropped for that camera), so memory and latency stay bounded whatever
the camera rates. The worker's :meth:`CameraBatcher.take` returns the pending frames of up to
``max_batch`` cameras, chosen round-robin: cameras served least recently first (ties: the one
whose pending frame waited longest). A camera with a pending frame is therefore served within
``ceil(cameras / max_batch)`` batches, however fast the other cameras publish: a 30 Hz camera
cannot starve a 5 Hz one.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence


@dataclass
class CameraCounts:
    """Per-camera counters: frames put, replaced before the worker took them, and taken."""

    received: int = 0
    dropped: int = 0
    taken: int = 0


class CameraBatcher:
    """Newest-frame mailboxes for ``cameras``, drained in fair batches of at most ``max_batch``.

    Thread-safe: producers (subscription callbacks) call :meth:`put`, one worker calls :meth:`take`.
    """

    def __init__(self, cameras: Sequence[str], max_batch: int) -> None:
        names = list(cameras)
        if not names:
            raise ValueError("CameraBatcher needs at least one camera")
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.cameras = tuple(names)
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: dict[str, tuple[int, float, Any]] = {}  # camera -> (arrival seq, arrival time, item)
        # camera -> when it was last served (a counter, unique per served frame: strict round-robin
        # order even within one batch); -1 = never
        self._served: dict[str, int] = {c: -1 for c in names}
        self._counts = {c: CameraCounts() for c in names}
        self._seq = itertools.count()
        self._serve_clock = itertools.count()
        self._closed = False

    def put(self, camera: str, item: Any) -> bool:
        """Make ``item`` the camera's pending frame; True when it replaced an untaken one (a drop).

        Raises:
            KeyError: ``camera`` is not one of :attr:`cameras`.
        """
        if camera not in self._counts:
            raise KeyError(f"unknown camera {camera!r}; cameras: {', '.join(self.cameras)}")
        with self._cond:
            counts = self._counts[camera]
            counts.received += 1
            dropped = camera in self._pending
            counts.dropped += int(dropped)
            self._pending[camera] = (next(self._seq), time.monotonic(), item)
            self._cond.notify()
            return dropped

    def take(self, timeout: Optional[float] = None) -> list[tuple[str, Any]]:
        """The pending frames of up to ``max_batch`` cameras as ``[(camera, item)]`` (fair order, see
        the module docstring); ``[]`` after ``timeout`` seconds without a frame, or when closed."""
        with self._cond:
            if not self._pending and not self._closed:
                self._cond.wait(timeout)
            if not self._pending:
                return []
            order = sorted(self._pending, key=lambda c: (self._served[c], self._pending[c][0]))
            chosen = order[: self.max_batch]
            batch = []
            for camera in chosen:
                batch.append((camera, self._pending.pop(camera)[2]))
                self._served[camera] = next(self._serve_clock)
                self._counts[camera].taken += 1
            return batch

    def clear(self) -> dict[str, int]:
        """Forget every pending frame; returns {camera: 1} for each camera that had one (each a drop)."""
        with self._cond:
            gone = {c: 1 for c in self._pending}
            for c in gone:
                self._counts[c].dropped += 1
            self._pending.clear()
            return gone

    @property
    def depth(self) -> int:
        """Frames waiting now (at most one per camera)."""
        return len(self._pending)

    def oldest_wait_s(self) -> float:
        """Seconds the longest-waiting pending frame has waited (0 when none)."""
        with self._cond:
            if not self._pending:
                return 0.0
            return time.monotonic() - min(t for _s, t, _i in self._pending.values())

    def counts(self) -> dict[str, CameraCounts]:
        """A copy of the per-camera counters."""
        with self._cond:
            return {c: CameraCounts(**vars(n)) for c, n in self._counts.items()}

    def close(self) -> None:
        """Wake a waiting :meth:`take` (it returns ``[]``) and make later waits return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

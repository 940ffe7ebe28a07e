"""Pair messages of several streams by header stamp (approximate time, bounded buffers).

One *pivot* stream (the color image) drives the output; each other stream (depth, camera_info,
...) contributes the message nearest in stamp to the pivot, if that is within ``tolerance_ns``.
Per stream, stamps are assumed to arrive in order (late arrivals older than the newest message on
that stream are still inserted in order, and counted). A pivot message is emitted once every other
stream has its nearest candidate decided: a message at or after the pivot stamp has arrived (later
ones can only be further away), or the candidate is an exact stamp match. A pivot is dropped
(counted per reason) when a stream's nearest message is outside the tolerance, when it is older
than the last emitted pivot, or when the pivot buffer overflows while waiting for a slow stream.
A stamp more than ``jump_ns`` older than what its stream (or the last match) has seen is a time
jump (a bag restarted, a simulator reset): all buffers are cleared and matching starts afresh.

No ROS imports: feed ``(stamp_ns, message)``; use :func:`stamp_ns` on a ``builtin_interfaces/Time``.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence


def stamp_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (sec, nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass
class Match:
    """One matched set: the pivot message and, per other stream, the paired message."""

    stamp_ns: int
    pivot: Any
    others: dict[str, Any]
    offsets_ns: dict[str, int] = field(default_factory=dict)  # other stamp - pivot stamp


class StampMatcher:
    """Approximate-time matcher of a pivot stream against other streams.

    Args:
        streams: names of the non-pivot streams, e.g. ``("depth", "depth_info")``.
        tolerance_ns: largest |stamp difference| accepted for a pair.
        buffer_size: messages kept per stream (oldest dropped and counted beyond it).
        pivot: name of the pivot stream (for counters and errors).
        jump_ns: a stamp this much older than its stream's newest (or the last match) resets.
    """

    def __init__(self, streams: Sequence[str], tolerance_ns: int, buffer_size: int = 10, pivot: str = "color",
                 jump_ns: int = 1_000_000_000) -> None:
        if tolerance_ns < 0:
            raise ValueError(f"StampMatcher tolerance_ns={tolerance_ns!r} must be >= 0 (nanoseconds)")
        if buffer_size < 1:
            raise ValueError(f"StampMatcher buffer_size={buffer_size!r} must be >= 1")
        if pivot in streams or len(set(streams)) != len(streams):
            raise ValueError(f"StampMatcher streams {list(streams)} must be distinct and not include the pivot "
                             f"{pivot!r}")
        self.pivot = pivot
        self.streams = tuple(streams)
        self.tolerance_ns = int(tolerance_ns)
        self.buffer_size = int(buffer_size)
        if jump_ns <= tolerance_ns:
            raise ValueError(f"StampMatcher jump_ns={jump_ns!r} must exceed tolerance_ns={tolerance_ns!r}")
        self.jump_ns = int(jump_ns)
        self._buf: dict[str, list[tuple[int, Any]]] = {s: [] for s in (pivot, *streams)}
        self._last_emitted: Optional[int] = None
        self.matched = 0
        self.time_jumps = 0
        #: drop counters, keyed "<stream>:<reason>" (overflow, late, out_of_order, no_match:<other
        #: stream>, reset: buffered messages discarded by a time jump)
        self.drops: Counter = Counter()

    def reset(self) -> None:
        """Discard every buffered message (counted) and forget the last match."""
        for s, b in self._buf.items():
            if b:
                self.drops[f"{s}:reset"] += len(b)
            b.clear()
        self._last_emitted = None

    def push(self, stream: str, stamp: int, msg: Any) -> list[Match]:
        """Add one message; returns the matches that became decidable (oldest first)."""
        if stream not in self._buf:
            raise ValueError(f"StampMatcher: unknown stream {stream!r}; known: {[self.pivot, *self.streams]}")
        stamp = int(stamp)
        buf = self._buf[stream]
        seen = [buf[-1][0]] if buf else []
        if self._last_emitted is not None:
            seen.append(self._last_emitted)
        if seen and stamp < max(seen) - self.jump_ns:
            self.time_jumps += 1
            self.reset()
        if stream == self.pivot and self._last_emitted is not None and stamp <= self._last_emitted:
            self.drops[f"{stream}:late"] += 1
            return []
        if buf and stamp < buf[-1][0]:
            self.drops[f"{stream}:out_of_order"] += 1  # kept, inserted in order
        keys = [b[0] for b in buf]
        i = bisect.bisect_left(keys, stamp)
        if i < len(buf) and buf[i][0] == stamp:
            buf[i] = (stamp, msg)  # same stamp again: the newer message wins
        else:
            buf.insert(i, (stamp, msg))
        while len(buf) > self.buffer_size:
            buf.pop(0)
            self.drops[f"{stream}:overflow"] += 1
        return self._drain()

    def _nearest(self, stream: str, t: int) -> tuple[Optional[int], bool]:
        """(index of the nearest message to t, whether that choice is final)."""
        buf = self._buf[stream]
        if not buf:
            return None, False
        keys = [b[0] for b in buf]
        i = bisect.bisect_left(keys, t)
        cands = [j for j in (i - 1, i) if 0 <= j < len(buf)]
        best = min(cands, key=lambda j: (abs(keys[j] - t), -keys[j]))
        decided = i < len(buf) or keys[best] == t  # a message at/after t exists
        return best, decided

    def _drain(self) -> list[Match]:
        out: list[Match] = []
        pivots = self._buf[self.pivot]
        while pivots:
            t, pmsg = pivots[0]
            picks: dict[str, int] = {}
            waiting = False
            failed: Optional[str] = None
            for s in self.streams:
                j, decided = self._nearest(s, t)
                if j is not None and abs(self._buf[s][j][0] - t) <= self.tolerance_ns and (
                        decided or self._buf[s][j][0] == t):
                    picks[s] = j
                    continue
                if decided:  # nearest is final and outside the tolerance
                    failed = s
                    break
                waiting = True
            if failed is not None:
                pivots.pop(0)
                self.drops[f"{self.pivot}:no_match:{failed}"] += 1
                continue
            if waiting:
                break
            pivots.pop(0)
            others = {s: self._buf[s][j][1] for s, j in picks.items()}
            offsets = {s: self._buf[s][j][0] - t for s, j in picks.items()}
            # Messages older than the used ones can never match a later pivot better: release them.
            for s, j in picks.items():
                del self._buf[s][:j]
            self._last_emitted = t
            self.matched += 1
            out.append(Match(t, pmsg, others, offsets))
        return out

    def waiting(self, stamp: int) -> bool:
        """Whether a pivot message with this stamp is buffered, its match not yet decided."""
        return any(t == int(stamp) for t, _m in self._buf[self.pivot])

    def stats(self) -> dict:
        """Counters for diagnostics: matched, drops by stream and reason, buffered per stream."""
        return {"matched": self.matched, "time_jumps": self.time_jumps, "drops": dict(self.drops),
                "buffered": {s: len(b) for s, b in self._buf.items()}}

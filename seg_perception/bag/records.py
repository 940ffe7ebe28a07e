"""The records a bag read reports: frames, skipped messages, read stops, damaged byte spans.

Kept apart from the readers so that both the normal reader (:mod:`.read`) and the tolerant
scanners (:mod:`.recover`) can name them without importing each other.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

PathLike = Union[str, Path]


class BagError(ValueError):
    """A bag cannot be used as asked (missing topic, wrong message type, unreadable path)."""


@dataclass(frozen=True)
class BagFrame:
    """One image message read from a bag.

    Attributes:
        stamp_ns: header stamp in ns (the bag's receive time when the header stamp is zero).
        topic: topic name.
        msgtype: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        msg: the deserialized ``rosbags`` message (duck-types as a sensor_msgs message).
        bag_path: the bag (directory or file) as given by the caller.
        index: 0-based position of this message among the topic's messages read from this bag
            (skipped messages keep their index; messages lost in an unreadable region get none).
        log_time_ns: time the recorder received the message.
    """

    stamp_ns: int
    topic: str
    msgtype: str
    msg: Any
    bag_path: str
    index: int
    log_time_ns: int = 0

    def describe(self) -> str:
        """Human-readable frame location for error messages."""
        return f"bag {self.bag_path!r} topic {self.topic} message #{self.index} (stamp {self.stamp_ns} ns)"


@dataclass(frozen=True)
class SkippedMessage:
    """A message that was not used. ``reason`` is a short key, ``detail`` the error text."""

    bag: str
    topic: str
    index: int
    stamp_ns: Optional[int]
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ReadStop:
    """Where reading a bag hit an unreadable region.

    Attributes:
        bag: bag path. storage: the file that failed. index: number of the topic's messages read
        from this bag before the failure (i.e. the index the next message would have had).
        error: exception text. recovered: True when reading continued after the bad region.
    """

    bag: str
    storage: str
    index: int
    error: str
    recovered: bool = False


@dataclass(frozen=True)
class DamagedSpan:
    """A byte range of a storage file that was skipped because it failed a check.

    Attributes:
        bag: bag path. storage: the storage file. start, end: byte offsets ``[start, end)`` of the
        skipped record(s) (``end`` is where reading resumed, or the file size). reason: short key
        (``crc_mismatch``, ``bad_record``, ``decompress_failed``, ``size_mismatch``,
        ``truncated``, ``summary_crc_mismatch``). detail: what failed.
    """

    bag: str
    storage: str
    start: int
    end: int
    reason: str
    detail: str = ""


@dataclass
class ReadStats:
    """What happened while reading: counts, skipped messages with reasons, read stops."""

    read: int = 0
    read_by_topic: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedMessage] = field(default_factory=list)
    stops: list[ReadStop] = field(default_factory=list)
    damaged: list[DamagedSpan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(
        self,
        bag: str,
        topic: str,
        index: int,
        stamp_ns: Optional[int],
        reason: str,
        detail: str = "",
    ) -> None:
        """Record a skipped message (also used by the evaluator for undecodable images)."""
        self.skipped.append(SkippedMessage(str(bag), topic, int(index), stamp_ns, reason, detail))

    def add_damage(self, span: DamagedSpan) -> None:
        """Record a skipped byte span once (every topic read from a bag meets the same spans)."""
        if span not in self.damaged:
            self.damaged.append(span)

    def skip_frame(self, frame: BagFrame, reason: str, detail: str = "") -> None:
        """Record that ``frame`` was read but could not be used."""
        self.skip(frame.bag_path, frame.topic, frame.index, frame.stamp_ns, reason, detail)

    def reason_counts(self) -> dict[str, int]:
        """Number of skipped messages per reason."""
        return dict(Counter(s.reason for s in self.skipped))

    def as_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "read": self.read,
            "read_by_topic": dict(self.read_by_topic),
            "skipped_count": len(self.skipped),
            "skipped_by_reason": self.reason_counts(),
            "skipped": [asdict(s) for s in self.skipped],
            "stops": [asdict(s) for s in self.stops],
            "damaged": [asdict(s) for s in self.damaged],
            "notes": list(self.notes),
        }


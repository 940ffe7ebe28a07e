"""rosbag2 input/output for offline evaluation (mcap and sqlite3 storage, via ``rosbags``).

Reading never crashes on bad data:

* a message that cannot be deserialized, or whose image fields are inconsistent, is skipped and
  recorded in :class:`ReadStats` with a reason;
* a bag that ``rosbags`` cannot open (a recording that was killed: truncated ``.mcap`` without
  footer, truncated ``.db3``, missing ``metadata.yaml``) is read by a tolerant linear scan that
  yields every message it can still parse; where reading stopped (bag, message index, error) is
  recorded in :class:`ReadStats`;
* an error in the middle of an otherwise readable bag (corrupt mcap chunk, malformed sqlite page)
  is recorded and reading resumes with the tolerant scan where possible;
* MCAP chunk CRCs are checked when present (non-zero): a chunk or record that fails a check is
  skipped, the scan resumes at the next valid chunk, and the skipped byte span (offset, reason)
  is recorded in :attr:`ReadStats.damaged`, so no frame is ever altered silently. A bag whose
  summary CRC fails is not read through rosbags' index.

A topic that does not exist is an error (:class:`BagError`, listing the bag's topics), and so is
a bag nothing can be read from (the reader's own reason: not SQLite, empty, not MCAP).

Every MCAP file :class:`BagWriter` writes carries chunk, data-section and summary CRCs
(:func:`write_mcap_crcs`; rosbags itself writes 0).

Writing (:class:`BagWriter`) takes rclpy messages, serializes them with
``rclpy.serialization.serialize_message`` and stores them with ``rosbags``; both produce standard
CDR, so rosbags reads what rclpy wrote (only uninitialised alignment padding bytes may differ).
"""
from __future__ import annotations

import mmap
import sqlite3
import struct
import tempfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from ..core.stamp_match import stamp_ns

PathLike = Union[str, Path]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STORAGES = ("mcap", "sqlite3")
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_SQLITE_MAX_RESUMES = 1000
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # CDR payloads start with 00 01 00 00 / 00 00 00 00 instead

_TYPESTORE = None


def typestore():
    """The ``rosbags`` typestore used for (de)serialization (ROS 2 Humble message definitions)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
    return _TYPESTORE


class BagError(ValueError):
    """A bag cannot be used as asked (missing topic, wrong message type, unreadable path)."""


# ------------------------------------------------------------------------------------- records
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


# ---------------------------------------------------------------------------- storage sources
_Raw = tuple[str, str, int, bytes]  # topic, msgtype, log_time_ns, cdr bytes


class _Source:
    """One readable unit of a bag: yields raw messages; ``failure`` set when it stopped early."""

    label: str

    def topics(self) -> dict[str, tuple[str, int]]:
        raise NotImplementedError

    def messages(self, topic: str) -> Iterator[tuple[int, bytes]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release files (no-op by default)."""


class _RosbagsSource(_Source):
    """A bag directory or storage file opened with ``rosbags.rosbag2.Reader``."""

    def __init__(self, path: Path) -> None:
        from rosbags.rosbag2 import Reader

        self.label = str(path)
        self.path = path
        self.reader = Reader(path)
        self.reader.open()

    def topics(self) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        for c in self.reader.connections:
            t, n = out.get(c.topic, (c.msgtype, 0))
            out[c.topic] = (t, n + int(c.msgcount))
        return out

    def messages(self, topic: str) -> Iterator[tuple[int, bytes]]:
        conns = [c for c in self.reader.connections if c.topic == topic]
        if not conns:
            return
        for _conn, t, data in self.reader.messages(connections=conns):
            yield int(t), bytes(data)

    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001 - closing a broken reader must not mask the real error
            pass


def _zstd_decompress(data: bytes) -> bytes:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:  # pragma: no cover - depends on the interpreter
        from backports import zstd
    return zstd.decompress(data)


def _lz4_decompress(data: bytes) -> bytes:
    import lz4.frame

    return lz4.frame.decompress(data)


_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {"": bytes, "zstd": _zstd_decompress, "lz4": _lz4_decompress}


class _Truncated(Exception):
    pass


class _Buf:
    """Cursor over bytes with little-endian readers that raise :class:`_Truncated`."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Truncated(f"needs {n} bytes at offset {self.pos}, only {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.u32()).decode("utf-8", errors="replace")


_MCAP_OPS = frozenset(range(0x01, 0x11))  # Header .. DataEnd (MCAP spec, "Records")
_CHUNK = 0x06
_CHUNK_FIXED = 8 + 8 + 8 + 4  # message_start_time, message_end_time, uncompressed_size, uncompressed_crc


class _Damage(Exception):
    """A record that cannot be used: ``reason`` key and text."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _McapScan(_Source):
    """Tolerant linear scan of an MCAP file (no footer or index needed).

    Records are walked in file order (MCAP spec: opcode u8, length u64, body). A chunk is used only
    when its compression is known, it decompresses to ``uncompressed_size`` bytes and, when its
    ``uncompressed_crc`` is non-zero, the CRC-32 of those bytes matches. A record that fails any
    check is skipped and recorded in ``damaged`` as ``(start, end, reason, detail)`` byte offsets;
    when its length field cannot be trusted the scan resynchronises at the next offset where a
    structurally valid chunk (or, in unchunked files, a message followed by a valid record)
    begins. A file cut short ends the scan; complete records of an uncompressed chunk before the
    cut are still read (a cut removes bytes, it does not alter them).
    """

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self.path = path
        with path.open("rb") as f:
            try:
                self.data: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # empty file cannot be mapped
                self.data = b""
        if len(self.data) == 0:
            raise BagError(f"{path} is empty (0 bytes); the recording never wrote anything")
        if self.data[:8] != _MCAP_MAGIC:
            raise BagError(f"{path} is not an MCAP file (bad magic {bytes(self.data[:8])!r}, "
                           f"expected {_MCAP_MAGIC!r})")
        self.problems: list[tuple[int, str, bool]] = []  # (message ordinal, error, recovered)
        self.damaged: list[tuple[int, int, str, str]] = []
        self.chunks_without_crc = 0
        self._saw_chunk = False

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()

    # -- record framing ---------------------------------------------------------------------
    def _chunk_layout(self, pos: int) -> Optional[tuple[int, str, int, int, int]]:
        """Fields of a structurally valid chunk record at ``pos``, else None.

        Returns (end offset, compression, payload start, payload size, uncompressed size)."""
        data, n = self.data, len(self.data)
        if pos + 9 + _CHUNK_FIXED + 4 > n or data[pos] != _CHUNK:
            return None
        length = int.from_bytes(data[pos + 1:pos + 9], "little")
        end = pos + 9 + length
        body = pos + 9
        if end > n or length < _CHUNK_FIXED + 4 + 8:
            return None
        usize = int.from_bytes(data[body + 16:body + 24], "little")
        clen = int.from_bytes(data[body + 28:body + 32], "little")
        if clen > 16 or body + 32 + clen + 8 > end:
            return None
        try:
            compression = bytes(data[body + 32:body + 32 + clen]).decode("ascii")
        except UnicodeDecodeError:
            return None
        csize = int.from_bytes(data[body + 32 + clen:body + 40 + clen], "little")
        if compression not in _DECOMPRESS or body + 40 + clen + csize != end:
            return None
        if not compression and csize != usize:
            return None
        return end, compression, body + 40 + clen, csize, usize

    def _plausible(self, pos: int, channels: dict[int, tuple[str, str]]) -> bool:
        """Whether a record worth resuming at starts at ``pos`` (see the class docstring)."""
        if self._chunk_layout(pos) is not None:
            return True
        data, n = self.data, len(self.data)
        # In a chunked file a bare message record can only be one inside a (damaged) chunk.
        if self._saw_chunk or data[pos] != 0x05 or pos + 9 + 22 > n:
            return False
        length = int.from_bytes(data[pos + 1:pos + 9], "little")
        nxt = pos + 9 + length
        cid = int.from_bytes(data[pos + 9:pos + 11], "little")
        if length < 22 or nxt + 9 > n or cid not in channels or data[nxt] not in _MCAP_OPS:
            return False
        return nxt + 9 + int.from_bytes(data[nxt + 1:nxt + 9], "little") <= n

    def _resync(self, start: int, channels: dict[int, tuple[str, str]]) -> Optional[int]:
        """First offset >= ``start`` where a plausible chunk or message record begins, else None."""
        data = self.data
        nxt = {op: data.find(bytes((op,)), start) for op in (_CHUNK, 0x05)}
        while True:
            live = [p for p in nxt.values() if p >= 0]
            if not live:
                return None
            pos = min(live)
            if self._plausible(pos, channels):
                return pos
            op = data[pos]
            nxt[op] = data.find(bytes((op,)), pos + 1)

    def _chunk_records(self, layout: tuple[int, str, int, int, int], pos: int) -> bytes:
        """Decompressed, size- and CRC-checked records of the chunk at ``pos``."""
        end, compression, start, csize, usize = layout
        crc = int.from_bytes(self.data[pos + 9 + 24:pos + 9 + 28], "little")
        try:
            inner = _DECOMPRESS[compression](bytes(self.data[start:start + csize]))
        except Exception as exc:  # noqa: BLE001 - any codec error
            raise _Damage("decompress_failed", f"{compression} chunk does not decompress: {exc}") from None
        if len(inner) != usize:
            raise _Damage("size_mismatch", f"chunk decompresses to {len(inner)} bytes, header says {usize}")
        if crc == 0:
            self.chunks_without_crc += 1
        elif zlib.crc32(inner) != crc:
            raise _Damage("crc_mismatch", f"chunk CRC-32 0x{zlib.crc32(inner):08x} != recorded 0x{crc:08x}")
        return inner

    def _summary_channels(self) -> tuple[dict[int, str], dict[int, tuple[str, str]]]:
        """Schemas and channels from an intact summary section (empty without footer or when its
        CRC fails), so messages after a damaged first chunk - where writers put the channel
        records - can still be assigned to their topics."""
        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, str]] = {}
        if _mcap_summary_damage(self.path) is not None:
            return schemas, channels
        data, n = self.data, len(self.data)
        footer = n - len(_MCAP_MAGIC) - _FOOTER_SIZE
        if footer < len(_MCAP_MAGIC) or data[footer] != 0x02 or data[n - len(_MCAP_MAGIC):] != _MCAP_MAGIC:
            return schemas, channels
        start = int.from_bytes(data[footer + 9:footer + 17], "little")
        if not len(_MCAP_MAGIC) <= start <= footer:
            return schemas, channels
        try:
            for op, rec in self._records(_Buf(bytes(data[start:footer])), footer - start):
                if op == 0x03:
                    sid = rec.u16()
                    schemas[sid] = rec.string()
                elif op == 0x04:
                    cid, sid = rec.u16(), rec.u16()
                    channels[cid] = (rec.string(), schemas.get(sid, ""))
        except _Truncated:
            return {}, {}
        return schemas, channels

    def _scan(self, topic: Optional[str] = None) -> Iterator[_Raw]:
        """Yield raw messages (of ``topic`` when given); ``problems`` count that topic's messages."""
        schemas, channels = self._summary_channels()
        self.problems, self.damaged, self.chunks_without_crc = [], [], 0
        self._saw_chunk = False
        self._n_msgs = 0
        data, n = self.data, len(self.data)

        def handle(op: int, rec: _Buf) -> Optional[_Raw]:
            if op == 0x03:
                sid = rec.u16()
                schemas[sid] = rec.string()
            elif op == 0x04:
                cid, sid = rec.u16(), rec.u16()
                name = rec.string()
                channels[cid] = (name, schemas.get(sid, ""))
            elif op == 0x05:
                cid = rec.u16()
                rec.take(4)
                log_time = rec.u64()
                rec.take(8)
                if cid in channels:
                    name, msgtype = channels[cid]
                    return name, msgtype, log_time, rec.data[rec.pos:]
            return None

        def damaged(start: int, end: int, reason: str, detail: str, resumed: bool) -> None:
            self.damaged.append((start, end, reason, detail))
            where = f"bytes {start}..{end}" if end > start else f"offset {start}"
            self.problems.append((self._n_msgs, f"{reason} at {where}: {detail}", resumed))

        pos = len(_MCAP_MAGIC)
        while pos < n:
            if n - pos == len(_MCAP_MAGIC) and data[pos:] == _MCAP_MAGIC:
                return  # closing magic after the footer
            if pos + 9 > n:
                damaged(pos, n, "truncated", f"record header cut by the end of the file ({n - pos} bytes)", False)
                return
            op = data[pos]
            length = int.from_bytes(data[pos + 1:pos + 9], "little")
            end = pos + 9 + length
            if op not in _MCAP_OPS or end > n:
                self._saw_chunk = self._saw_chunk or op == _CHUNK
                resume = self._resync(pos + 1, channels)
                if op == _CHUNK and end > n and resume is None and pos + 9 + _CHUNK_FIXED + 4 <= n:
                    yield from self._partial_chunk(pos, handle, topic, damaged)
                    return
                why = (f"unknown opcode 0x{op:02x}" if op not in _MCAP_OPS
                       else f"record 0x{op:02x} claims {length} bytes, {n - pos - 9} are left")
                reason = "truncated" if resume is None and op in _MCAP_OPS else "bad_record"
                damaged(pos, n if resume is None else resume, reason, why, resume is not None)
                if resume is None:
                    return
                pos = resume
                continue
            if op == _CHUNK:
                self._saw_chunk = True
                layout = self._chunk_layout(pos)
                try:
                    if layout is None or layout[0] != end:
                        raise _Damage("bad_record", "chunk fields do not fit its record length")
                    inner = self._chunk_records(layout, pos)
                except _Damage as exc:
                    resume = end if layout is not None else self._resync(pos + 1, channels)
                    damaged(pos, n if resume is None else resume, exc.reason, str(exc), resume is not None)
                    if resume is None:
                        return
                    pos = resume
                    continue
                ibuf = _Buf(inner)
                try:
                    for iop, irec in self._records(ibuf, len(inner)):
                        raw = handle(iop, irec)
                        if raw and (topic is None or raw[0] == topic):
                            self._n_msgs += 1
                            yield raw
                except _Truncated as exc:  # only possible in a chunk without CRC
                    damaged(pos, end, "bad_record", f"record inside the chunk unreadable: {exc}", True)
                pos = end
                continue
            if op != 0x02 and not self._leads_to_record(end):
                # A wrong length that still lands inside the file would skip valid chunks unseen.
                resume = self._resync(pos + 1, channels)
                damaged(pos, n if resume is None else resume, "bad_record",
                        f"record 0x{op:02x} claims {length} bytes, which do not end where a record starts",
                        resume is not None)
                if resume is None:
                    return
                pos = resume
                continue
            try:
                raw = handle(op, _Buf(data[pos + 9:end]))
            except _Truncated as exc:
                damaged(pos, end, "bad_record", f"record 0x{op:02x} unreadable: {exc}", True)
                raw = None
            if raw and (topic is None or raw[0] == topic):
                self._n_msgs += 1
                yield raw
            if op == 0x02:  # footer
                return
            pos = end
        damaged(n, n, "truncated", "the file ends at a record boundary without a footer", False)

    def _leads_to_record(self, pos: int) -> bool:
        """Whether a record (or the closing magic, or the end of a cut file) starts at ``pos``."""
        data, n = self.data, len(self.data)
        if pos + 9 > n or (n - pos == len(_MCAP_MAGIC) and data[pos:] == _MCAP_MAGIC):
            return True
        if data[pos] not in _MCAP_OPS:
            return False
        # a chunk may be cut by the end of the file; any other record must fit
        return data[pos] == _CHUNK or pos + 9 + int.from_bytes(data[pos + 1:pos + 9], "little") <= n

    def _partial_chunk(self, pos: int, handle: Callable[[int, _Buf], Optional[_Raw]], topic: Optional[str],
                       damaged: Callable[[int, int, str, str, bool], None]) -> Iterator[_Raw]:
        """The file ends inside an uncompressed chunk: yield its complete records."""
        data, n = self.data, len(self.data)
        body = pos + 9
        clen = int.from_bytes(data[body + 28:body + 32], "little")
        start = body + 40 + clen
        comp = bytes(data[body + 32:body + 32 + clen]) if clen <= 16 else b"?"
        if comp or start > n:
            kind = comp.decode("ascii", "replace") or "chunk"
            damaged(pos, n, "truncated", f"{kind} chunk cut by the end of the file", False)
            return
        buf = _Buf(bytes(data[start:n]))
        try:
            for iop, irec in self._records(buf, len(buf.data)):
                raw = handle(iop, irec)
                if raw and (topic is None or raw[0] == topic):
                    self._n_msgs += 1
                    yield raw
        except _Truncated:
            pass
        damaged(start + buf.pos, n, "truncated", "uncompressed chunk cut by the end of the file (its CRC "
                "cannot be checked; the complete records before the cut were read)", False)

    @staticmethod
    def _records(buf: _Buf, end: int) -> Iterator[tuple[int, _Buf]]:
        while buf.pos < end:
            start = buf.pos
            try:
                op = buf.take(1)[0]
                length = buf.u64()
            except _Truncated:
                raise _Truncated(f"record header cut at offset {start}") from None
            if buf.pos + length > end:
                raise _Truncated(f"record 0x{op:02x} at offset {start} needs {length} bytes, {end - buf.pos} left")
            rec = _Buf(buf.data[buf.pos:buf.pos + length])
            buf.pos += length
            yield op, rec

    def topics(self) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        for topic, msgtype, _t, _d in self._scan():
            t, n = out.get(topic, (msgtype, 0))
            out[topic] = (t, n + 1)
        return out

    def messages(self, topic: str) -> Iterator[tuple[int, bytes]]:
        for _topic, _type, log_time, data in self._scan(topic):
            yield log_time, data


class _SqliteScan(_Source):
    """Tolerant read of a rosbag2 ``.db3`` in row order, stopping at the first unreadable page."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self.path = path
        self.problems: list[tuple[int, str, bool]] = []
        self._topics: dict[str, tuple[int, str]] = {}
        self._db = path
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        try:
            self._read_topics()
        except sqlite3.DatabaseError:
            # A truncated copy still claims its original page count in the header, which makes
            # SQLite reject the whole file; read a copy whose header matches the pages present.
            self._db = self._repaired_copy(path)
        try:
            self._read_topics()
        except sqlite3.DatabaseError as exc:
            raise BagError(f"{path}: sqlite3 topics table unreadable ({exc})") from exc
        if not self._topics:
            raise BagError(f"{path}: sqlite3 bag lists no topics")

    def _repaired_copy(self, path: Path) -> Path:
        data = bytearray(path.read_bytes())
        if len(data) < 100 or not data.startswith(b"SQLite format 3\x00"):
            raise BagError(f"{path} is not an SQLite database (bad header)")
        page_size = int.from_bytes(data[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = len(data) // page_size
        del data[pages * page_size :]
        data[28:32] = pages.to_bytes(4, "big")
        self._tmp = tempfile.TemporaryDirectory(prefix="seg_perception_db3_")
        out = Path(self._tmp.name) / path.name
        out.write_bytes(bytes(data))
        return out

    def _read_topics(self) -> None:
        con = self._connect()
        try:
            for tid, name, mtype in con.execute("SELECT id, name, type FROM topics"):
                self._topics[name] = (int(tid), mtype)
        finally:
            con.close()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self._db}?mode=ro&immutable=1", uri=True)

    def topics(self) -> dict[str, tuple[str, int]]:
        counts: Counter = Counter(tid for tid, _t, _d in self._rows(record=False))
        return {name: (mtype, counts[tid]) for name, (tid, mtype) in self._topics.items()}

    def _rows(self, record: bool = True, count_tid: Optional[int] = None) -> Iterator[tuple[int, int, bytes]]:
        """Rows in rowid order. After a read error, resume points ``last_id + 1, + 2, + 4, ...``
        are probed until rows are readable again or the largest row id is passed; ``problems``
        gets one entry per unreadable region (``recovered`` when rows followed it)."""
        con = self._connect()
        n = 0
        last_id = -1
        skip = 0  # > 0 while inside an unreadable region
        try:
            max_id = con.execute("SELECT max(id) FROM messages").fetchone()[0]
        except sqlite3.DatabaseError:
            max_id = None
        bound = max_id if max_id is not None else 1 << 40
        try:
            for _attempt in range(_SQLITE_MAX_RESUMES):
                got_row = False
                try:
                    cur = con.execute(
                        "SELECT id, topic_id, timestamp, data FROM messages WHERE id > ? ORDER BY id",
                        (last_id,),
                    )
                    for rid, topic_id, ts, data in cur:
                        if not got_row and skip and record and self.problems:
                            self.problems[-1] = (*self.problems[-1][:2], True)
                        got_row, skip = True, 0
                        last_id = rid
                        n += count_tid is None or topic_id == count_tid
                        yield int(topic_id), int(ts), bytes(data)
                    return
                except sqlite3.DatabaseError as exc:
                    if not skip:  # a new unreadable region starts after last_id
                        if record:
                            self.problems.append((n, f"sqlite3 read failed after row id {last_id}: {exc}", False))
                        skip = 1
                    else:
                        skip *= 2
                    last_id += skip
                    if last_id >= bound:
                        return
        finally:
            con.close()

    def messages(self, topic: str) -> Iterator[tuple[int, bytes]]:
        self.problems = []
        if topic in self._topics:
            tid = self._topics[topic][0]
            for topic_id, ts, data in self._rows(count_tid=tid):
                if topic_id == tid:
                    yield ts, data


class _Unreadable(_Source):
    """A storage file nothing could be read from; reading it records a stop at index 0."""

    def __init__(self, path: Path, error: str) -> None:
        self.label = str(path)
        self.error = error

    def topics(self) -> dict[str, tuple[str, int]]:
        return {}

    def messages(self, topic: str) -> Iterator[tuple[int, bytes]]:
        raise BagError(self.error)


def _metadata_topics(path: Path) -> dict[str, tuple[str, int]]:
    """Topics listed in a bag directory's metadata.yaml (empty when absent or unreadable)."""
    import yaml

    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {
            t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], int(t.get("message_count", 0)))
            for t in meta["topics_with_message_count"]
        }
    except Exception:  # noqa: BLE001 - metadata is only a hint here
        return {}


_FOOTER_SIZE = 1 + 8 + 8 + 8 + 4  # opcode, length, summary_start, summary_offset_start, summary_crc


def _mcap_summary_damage(path: Path) -> Optional[tuple[int, int, str]]:
    """``(start, end, detail)`` when the MCAP footer's non-zero ``summary_crc`` does not match the
    summary section (MCAP spec: CRC-32 of the bytes from ``summary_start`` through the footer's
    ``summary_offset_start`` field); None when it matches, is 0, or there is no footer."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            if size < len(_MCAP_MAGIC) * 2 + _FOOTER_SIZE:
                return None
            footer = size - len(_MCAP_MAGIC) - _FOOTER_SIZE
            f.seek(footer)
            rec = f.read(_FOOTER_SIZE + len(_MCAP_MAGIC))
            if rec[0] != 0x02 or rec[_FOOTER_SIZE:] != _MCAP_MAGIC:
                return None
            summary_start, _offsets, crc = struct.unpack_from("<QQI", rec, 9)
            if crc == 0 or not len(_MCAP_MAGIC) <= summary_start <= footer:
                return None
            f.seek(summary_start)
            got = zlib.crc32(f.read(footer + 25 - summary_start))
    except OSError:
        return None
    if got == crc:
        return None
    return summary_start, size, f"summary CRC-32 0x{got:08x} != recorded 0x{crc:08x}; read by linear scan"


def write_mcap_crcs(path: PathLike) -> int:
    """Fill in the CRCs of an MCAP file that were written as 0 (rosbags writes none).

    In place, without changing any length or offset (MCAP spec): every Chunk's
    ``uncompressed_crc`` (CRC-32 of its decompressed records), the DataEnd ``data_section_crc``
    (CRC-32 of every byte before the DataEnd record, magic included) and the Footer's
    ``summary_crc``.

    Returns:
        The number of chunks given a CRC.

    Raises:
        BagError: the file is not a complete MCAP file with valid record framing.
    """
    path = Path(path)
    chunks = 0
    with path.open("r+b") as f, mmap.mmap(f.fileno(), 0) as data:
        n = len(data)
        if data[:8] != _MCAP_MAGIC:
            raise BagError(f"{path} is not an MCAP file")
        pos = len(_MCAP_MAGIC)
        while pos + 9 <= n:
            op = data[pos]
            end = pos + 9 + int.from_bytes(data[pos + 1:pos + 9], "little")
            if end > n:
                raise BagError(f"{path}: record 0x{op:02x} at offset {pos} runs past the end of the file")
            body = pos + 9
            if op == _CHUNK:
                clen = int.from_bytes(data[body + 28:body + 32], "little")
                compression = bytes(data[body + 32:body + 32 + clen]).decode("ascii")
                csize = int.from_bytes(data[body + 32 + clen:body + 40 + clen], "little")
                payload = bytes(data[body + 40 + clen:body + 40 + clen + csize])
                inner = _DECOMPRESS[compression](payload) if compression else payload
                data[body + 24:body + 28] = struct.pack("<I", zlib.crc32(inner))
                chunks += 1
            elif op == 0x0F:  # DataEnd
                data[body:body + 4] = struct.pack("<I", zlib.crc32(data[:pos]))
            elif op == 0x02:  # Footer
                summary_start = int.from_bytes(data[body:body + 8], "little")
                if summary_start:
                    data[body + 16:body + 20] = struct.pack("<I", zlib.crc32(data[summary_start:body + 16]))
                break
            pos = end
        data.flush()
    return chunks


def _storage_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted([*path.glob("*.mcap"), *path.glob("*.db3")])


def _scan_source(path: Path) -> _Source:
    if path.suffix == ".mcap":
        return _McapScan(path)
    if path.suffix == ".db3":
        return _SqliteScan(path)
    raise BagError(f"{path}: unknown storage file type; expected .mcap or .db3")


def _open_sources(path: PathLike, stats: Optional[ReadStats] = None) -> list[tuple[_Source, Optional[_Source]]]:
    """Open a bag as a list of (primary source, tolerant fallback or None).

    The primary is ``rosbags``; when it cannot open the bag, each storage file is opened with
    ``rosbags`` or else scanned tolerantly.
    """
    p = Path(path)
    if not p.exists():
        raise BagError(f"bag {str(path)!r} does not exist; pass a rosbag2 directory or a .mcap/.db3 file")
    files = _storage_files(p)
    if not files:
        raise BagError(f"{str(path)!r} holds no .mcap or .db3 storage file; is it a rosbag2 directory?")
    # rosbags trusts the MCAP summary (channels, chunk index); a damaged one is not used.
    bad_summary = {f: d for f in files if f.suffix == ".mcap" and (d := _mcap_summary_damage(f))}
    first_error = "the MCAP summary section is damaged"
    if not bad_summary:
        try:
            return [(_RosbagsSource(p), _fallback(files))]
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for broken bags
            first_error = f"{type(exc).__name__}: {exc}"
    out: list[tuple[_Source, Optional[_Source]]] = []
    for f in files:
        if f in bad_summary:
            start, end, detail = bad_summary[f]
            err = f"summary_crc_mismatch: {detail}"
            if stats is not None:
                stats.add_damage(DamagedSpan(str(path), str(f), start, end, "summary_crc_mismatch", detail))
        else:
            try:
                out.append((_RosbagsSource(f), _fallback([f])))
                continue
            except Exception as exc:  # noqa: BLE001
                err = f"{type(exc).__name__}: {exc}"
        try:
            src: _Source = _scan_source(f)
            note = f"rosbags could not open it ({err}); read by tolerant scan"
        except Exception as exc:  # noqa: BLE001
            src = _Unreadable(f, f"{exc} (rosbags: {err})")
            note = "unreadable"
        out.append((src, None))
        if stats is not None:
            stats.notes.append(f"{path}: {f.name}: {note}")
    if stats is not None and p.is_dir() and all(isinstance(s, _RosbagsSource) for s, _ in out):
        stats.notes.append(f"{path}: read storage files directly ({first_error})")
    return out


def _fallback(files: Sequence[Path]) -> Optional[_Source]:
    """Tolerant scanner for a single-file bag (used to resume after a mid-bag error)."""
    if len(files) != 1:
        return None
    try:
        return _scan_source(files[0])
    except Exception:  # noqa: BLE001
        return None


def _close(sources: Iterable[tuple[_Source, Optional[_Source]]]) -> None:
    for src, fallback in sources:
        src.close()
        if fallback is not None:
            fallback.close()


def _bag_topics(path: PathLike) -> dict[str, tuple[str, int]]:
    """Topics of one bag. Raises :class:`BagError` with the reader's own error when no storage
    file can be read and no metadata.yaml lists topics (not SQLite, empty, not MCAP, ...)."""
    sources = _open_sources(path)
    try:
        out: dict[str, tuple[str, int]] = {}
        for src, _fb in sources:
            for topic, (mtype, n) in src.topics().items():
                t, m = out.get(topic, (mtype, 0))
                out[topic] = (t, m + n)
        if not all(isinstance(s, _RosbagsSource) for s, _ in sources) and Path(path).is_dir():
            for topic, (mtype, _n) in _metadata_topics(Path(path)).items():
                out.setdefault(topic, (mtype, 0))  # listed by metadata, nothing readable
        unreadable = [s for s, _ in sources if isinstance(s, _Unreadable)]
        if not out and unreadable:
            raise BagError(f"bag {str(path)!r} cannot be read: " + "; ".join(s.error for s in unreadable))
        return out
    finally:
        _close(sources)


def _as_list(paths: Union[PathLike, Sequence[PathLike]]) -> list[PathLike]:
    if isinstance(paths, (str, Path)):
        return [paths]
    return list(paths)


def list_topics(paths: Union[PathLike, Sequence[PathLike]]) -> dict[str, tuple[str, int]]:
    """Topics of one or several bags: ``{topic: (msgtype, message count summed over bags)}``."""
    out: dict[str, tuple[str, int]] = {}
    for path in _as_list(paths):
        for topic, (mtype, n) in _bag_topics(path).items():
            t, m = out.get(topic, (mtype, 0))
            out[topic] = (t, m + n)
    return out


def format_topics(topics: dict[str, tuple[str, int]]) -> str:
    """``"/a (sensor_msgs/msg/Image, 10 msgs), ..."`` for error messages."""
    if not topics:
        return "(no topics)"
    return ", ".join(f"{t} ({m}, {n} msgs)" for t, (m, n) in sorted(topics.items()))


# ------------------------------------------------------------------------------- deserialization
def check_image(msg: Any) -> Optional[str]:
    """Structural check of a deserialized Image / CompressedImage; returns a problem or None."""
    if hasattr(msg, "format"):
        return "CompressedImage with empty data" if len(msg.data) == 0 else None
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        return f"Image with zero size {h}x{w}"
    if step < w:
        return f"Image step {step} smaller than width {w}"
    if len(msg.data) < step * h:
        return f"Image data has {len(msg.data)} bytes, needs step*height = {step}*{h} = {step * h}"
    return None


def deserialize(data: bytes, msgtype: str) -> Any:
    """Deserialize CDR bytes into a ``rosbags`` message of ``msgtype``."""
    return typestore().deserialize_cdr(data, msgtype)


def _topic_type(path: PathLike, topic: str, expected: Sequence[str]) -> str:
    topics = _bag_topics(path)
    if topic not in topics:
        raise BagError(
            f"topic {topic!r} not found in bag {str(path)!r}; the bag has: {format_topics(topics)}"
        )
    msgtype = topics[topic][0]
    if expected and msgtype not in expected:
        raise BagError(
            f"topic {topic!r} in bag {str(path)!r} has type {msgtype}; expected one of {list(expected)}"
        )
    return msgtype


def read_messages(
    paths: Union[PathLike, Sequence[PathLike]],
    topic: str,
    *,
    stats: Optional[ReadStats] = None,
    expected_types: Sequence[str] = (),
    check: Optional[Callable[[Any], Optional[str]]] = None,
) -> Iterator[BagFrame]:
    """Yield deserialized messages of ``topic`` from each bag in turn (file/time order).

    Args:
        paths: bag directories or ``.mcap``/``.db3`` files.
        topic: topic to read.
        stats: receives counts, skipped messages and read stops.
        expected_types: allowed message types (empty: any).
        check: optional validator returning a problem string for a bad message.

    Raises:
        BagError: a bag is missing, has no such topic (the message lists its topics) or the topic
            has an unexpected type. Raised before anything from that bag is yielded.
    """
    stats = stats if stats is not None else ReadStats()
    for path in _as_list(paths):
        msgtype = _topic_type(path, topic, expected_types)
        sources = _open_sources(path, stats)
        bag = str(path)
        index = 0
        try:
            for src, fallback in sources:
                base = index
                seen: set[tuple[int, int]] = set()
                try:
                    for log_time, data in src.messages(topic):
                        seen.add((log_time, len(data)))
                        frame = _decode(bag, topic, msgtype, index, log_time, data, stats, check)
                        index += 1
                        if frame is not None:
                            yield frame
                except Exception as exc:  # noqa: BLE001 - a broken bag must not end the evaluation
                    resumed = fallback is not None
                    stats.stops.append(ReadStop(bag, src.label, index, f"{type(exc).__name__}: {exc}", resumed))
                    if fallback is None:
                        continue
                    src = fallback
                    for log_time, data in fallback.messages(topic):
                        if (log_time, len(data)) in seen:
                            continue
                        frame = _decode(bag, topic, msgtype, index, log_time, data, stats, check)
                        index += 1
                        if frame is not None:
                            yield frame
                for ordinal, err, recovered in getattr(src, "problems", []):
                    stats.stops.append(ReadStop(bag, src.label, base + ordinal, err, recovered))
                for start, end, reason, detail in getattr(src, "damaged", []):
                    stats.add_damage(DamagedSpan(bag, src.label, start, end, reason, detail))
                if getattr(src, "chunks_without_crc", 0):
                    _note_once(stats, f"{src.label}: {src.chunks_without_crc} chunk(s) carry no CRC; damage "
                                       f"inside them cannot be detected")
        finally:
            _close(sources)


def _note_once(stats: ReadStats, note: str) -> None:
    if note not in stats.notes:
        stats.notes.append(note)


def _decode(
    bag: str,
    topic: str,
    msgtype: str,
    index: int,
    log_time: int,
    data: bytes,
    stats: ReadStats,
    check: Optional[Callable[[Any], Optional[str]]],
) -> Optional[BagFrame]:
    try:
        if data[:4] == _ZSTD_MAGIC:  # message-compressed bag read by the tolerant scan
            data = _zstd_decompress(data)
        msg = deserialize(data, msgtype)
    except Exception as exc:  # noqa: BLE001 - rosbags raises SerdeError and others
        stats.skip(bag, topic, index, None, "undeserializable", f"{type(exc).__name__}: {exc}")
        return None
    stamp = log_time
    header = getattr(msg, "header", None)
    if header is not None and stamp_ns(header.stamp) != 0:
        stamp = stamp_ns(header.stamp)
    if check is not None:
        problem = check(msg)
        if problem:
            stats.skip(bag, topic, index, stamp, "malformed", problem)
            return None
    stats.read += 1
    stats.read_by_topic[topic] = stats.read_by_topic.get(topic, 0) + 1
    return BagFrame(stamp, topic, msgtype, msg, bag, index, log_time)


def read_images(
    paths: Union[PathLike, Sequence[PathLike]],
    topic: str,
    *,
    stats: Optional[ReadStats] = None,
) -> Iterator[BagFrame]:
    """Yield ``sensor_msgs/msg/Image`` or ``CompressedImage`` frames of ``topic`` from the bags.

    Messages that do not deserialize or whose size fields do not fit their data are skipped and
    recorded in ``stats``. Pixel decoding (encodings, JPEG/PNG) is left to
    :mod:`seg_perception.core.conversions`.

    Raises:
        BagError: missing bag or topic (lists the bag's topics with types), or a non-image topic.
    """
    yield from read_messages(paths, topic, stats=stats, expected_types=IMAGE_TYPES, check=check_image)


# ------------------------------------------------------------------------------------- writing
def msgtype_of(msg: Any) -> str:
    """ROS type name of an rclpy message instance, e.g. ``sensor_msgs/msg/Image``."""
    module = type(msg).__module__.split(".")
    if len(module) < 2 or module[1] not in ("msg", "srv", "action"):
        raise BagError(f"{type(msg).__name__} from module {type(msg).__module__} is not a ROS 2 message class")
    return f"{module[0]}/{module[1]}/{type(msg).__name__}"


def make_header(stamp_ns: int, frame_id: str = "") -> Any:
    """``std_msgs.msg.Header`` with the given stamp (ns) and frame id."""
    from std_msgs.msg import Header

    header = Header()
    header.stamp.sec = int(stamp_ns) // 1_000_000_000
    header.stamp.nanosec = int(stamp_ns) % 1_000_000_000
    header.frame_id = frame_id
    return header


class BagWriter:
    """Write rclpy messages into a new rosbag2 (``mcap`` or ``sqlite3`` storage).

    Connections are added the first time a topic is written. Use as a context manager::

        with BagWriter("out_bag", storage="mcap") as bag:
            bag.write_image("/camera/image_raw", rgb, "rgb8", stamp_ns, "camera")

    A path ending in ``.mcap`` or ``.db3`` produces that single storage file (no bag directory,
    no metadata.yaml; rosbags and ``ros2 bag`` read such files directly). Any other path becomes
    a rosbag2 directory with ``metadata.yaml``.

    Args:
        path: bag directory or ``.mcap``/``.db3`` file to create (must not exist).
        storage: ``"mcap"`` or ``"sqlite3"``; default from the suffix, else ``"mcap"``.
        compression: None or ``"zstd"`` (mcap: compressed chunks; sqlite3: compressed messages,
            bag directories only).
    """

    _SUFFIX_STORAGE = {".mcap": "mcap", ".db3": "sqlite3"}

    def __init__(self, path: PathLike, storage: Optional[str] = None, compression: Optional[str] = None) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        self.path = Path(path)
        suffix_storage = self._SUFFIX_STORAGE.get(self.path.suffix)
        if storage is None:
            storage = suffix_storage or "mcap"
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; choose one of: {', '.join(STORAGES)}")
        if suffix_storage and suffix_storage != storage:
            raise BagError(f"path {str(self.path)!r} asks for {suffix_storage} storage but storage={storage!r}")
        if compression not in (None, "zstd"):
            raise BagError(f"unknown compression {compression!r}; use None or 'zstd'")
        if compression and suffix_storage == "sqlite3":
            raise BagError("a compressed sqlite3 bag needs its metadata.yaml: give a directory path, not a .db3 file")
        if self.path.exists():
            raise BagError(f"bag path {str(self.path)!r} exists already; choose a new path or delete it")
        # Single-file output: write a bag directory next to it, then move the storage file out.
        self._bag_dir = self.path.with_name(self.path.name + ".partial") if suffix_storage else self.path
        if suffix_storage and self._bag_dir.exists():
            raise BagError(f"{str(self._bag_dir)!r} exists (left by an interrupted write?); delete it first")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        # Version 8 metadata stays readable by rosbag2 in Humble/Iron as well as newer releases.
        self._writer = Writer(self._bag_dir, version=8, storage_plugin=plugin)
        if compression:
            # mcap: zstd-compressed chunks (as `ros2 bag record` does); sqlite3: per message
            mode = CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE
            self._writer.set_compression(mode, CompressionFormat.ZSTD)
        self._connections: dict[str, Any] = {}
        self.storage = storage
        self._single_file = suffix_storage is not None
        self._open = False

    def open(self) -> "BagWriter":
        if not self._open:
            self._writer.open()
            self._open = True
        return self

    def __enter__(self) -> "BagWriter":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish the bag (writes the mcap summary/footer and metadata.yaml)."""
        if self._open:
            self._writer.close()
            self._open = False
            if self.storage == "mcap":
                for storage_file in _storage_files(self._bag_dir):
                    write_mcap_crcs(storage_file)
            if self._single_file:
                import shutil

                (storage_file,) = _storage_files(self._bag_dir)
                storage_file.replace(self.path)
                shutil.rmtree(self._bag_dir)

    @property
    def counts(self) -> dict[str, int]:
        """Messages written per topic."""
        return {t: self._writer.counts[c.id] for t, c in self._connections.items()}

    def _connection(self, topic: str, msgtype: str) -> Any:
        conn = self._connections.get(topic)
        if conn is None:
            ts = typestore()
            if msgtype not in ts.types:
                raise BagError(f"message type {msgtype} is unknown to the rosbags typestore; register it first")
            conn = self._writer.add_connection(topic, msgtype, typestore=ts)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic!r} already carries {conn.msgtype}; cannot write a {msgtype} to it")
        return conn

    def write_raw(self, topic: str, msgtype: str, data: bytes, stamp_ns: int) -> None:
        """Write already serialized CDR bytes (e.g. to build test bags with bad messages)."""
        self.open()
        self._writer.write(self._connection(topic, msgtype), int(stamp_ns), bytes(data))

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialize an rclpy message and write it with receive time ``stamp_ns``."""
        from rclpy.serialization import serialize_message

        self.write_raw(topic, msgtype_of(msg), serialize_message(msg), stamp_ns)

    def write_image(self, topic: str, arr: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "") -> None:
        """Write an ``Image`` made from ``arr`` (see ``conversions.numpy_to_image``), header stamp = ``stamp_ns``."""
        from seg_perception.core.conversions import numpy_to_image

        self.write(topic, numpy_to_image(arr, encoding, make_header(stamp_ns, frame_id)), stamp_ns)

    def write_compressed(
        self, topic: str, rgb: np.ndarray, fmt: str, stamp_ns: int, frame_id: str = ""
    ) -> None:
        """Write a ``CompressedImage`` (``"jpeg"`` or ``"png"``) of ``rgb``, header stamp = ``stamp_ns``."""
        from seg_perception.core.conversions import numpy_to_compressed

        self.write(topic, numpy_to_compressed(rgb, fmt, make_header(stamp_ns, frame_id)), stamp_ns)


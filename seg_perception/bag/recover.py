"""Reading damaged bags: tolerant MCAP record scanner, sqlite3 page repair, MCAP CRCs.

Used by :mod:`.read` when ``rosbags`` cannot open a bag, or stops in the middle of one:

* :class:`McapScan` walks MCAP records in file order without footer or index, checks chunk CRCs
  when present (non-zero), skips a record that fails a check and records the skipped byte span;
* :class:`SqliteScan` reads a ``.db3`` in row order, repairing a truncated file's page count and
  probing past unreadable pages;
* :func:`mcap_summary_damage` tells whether an MCAP summary section may be trusted;
* :func:`write_mcap_crcs` fills in the CRCs ``rosbags`` writes as 0, so damage becomes detectable.
"""
from __future__ import annotations

import mmap
import sqlite3
import struct
import tempfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .records import BagError, PathLike

_MCAP_MAGIC = b"\x89MCAP0\r\n"
_SQLITE_MAX_RESUMES = 1000
_Raw = tuple[str, str, int, bytes]  # topic, msgtype, log_time_ns, cdr bytes
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # CDR payloads start with 00 01 00 00 / 00 00 00 00 instead


class Source:
    """One readable unit of a bag: yields raw messages ``(log_time_ns, cdr bytes)`` of a topic."""

    label: str

    def topics(self) -> dict[str, tuple[str, int]]:
        """``{topic: (msgtype, message count)}``."""
        raise NotImplementedError

    def messages(self, topic: str) -> Iterator[tuple[int, bytes]]:
        """Raw messages of ``topic`` in storage order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files (no-op by default)."""


def zstd_decompress(data: bytes) -> bytes:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:  # pragma: no cover - depends on the interpreter
        from backports import zstd
    return zstd.decompress(data)


def lz4_decompress(data: bytes) -> bytes:
    import lz4.frame

    return lz4.frame.decompress(data)


_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {"": bytes, "zstd": zstd_decompress, "lz4": lz4_decompress}


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


class McapScan(Source):
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
        if mcap_summary_damage(self.path) is not None:
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


class SqliteScan(Source):
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


_FOOTER_SIZE = 1 + 8 + 8 + 8 + 4  # opcode, length, summary_start, summary_offset_start, summary_crc


def mcap_summary_damage(path: Path) -> Optional[tuple[int, int, str]]:
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


def storage_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted([*path.glob("*.mcap"), *path.glob("*.db3")])


def scan_source(path: Path) -> Source:
    if path.suffix == ".mcap":
        return McapScan(path)
    if path.suffix == ".db3":
        return SqliteScan(path)
    raise BagError(f"{path}: unknown storage file type; expected .mcap or .db3")

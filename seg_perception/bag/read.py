"""Reading rosbag2 bags without rosbag2_py (mcap and sqlite3 storage, via ``rosbags``).

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

The tolerant scanners live in :mod:`.recover`; writing in :mod:`.write`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

from ..core.stamp_match import stamp_ns
from .records import BagError, BagFrame, DamagedSpan, PathLike, ReadStats, ReadStop, SkippedMessage
from .recover import ZSTD_MAGIC, Source, mcap_summary_damage, scan_source, storage_files, zstd_decompress

__all__ = [
    "IMAGE_TYPE", "COMPRESSED_TYPE", "IMAGE_TYPES", "BagError", "BagFrame", "DamagedSpan", "PathLike",
    "ReadStats", "ReadStop", "SkippedMessage", "typestore", "list_topics", "format_topics", "check_image",
    "deserialize", "read_messages", "read_images",
]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)

_TYPESTORE = None


def typestore():
    """The ``rosbags`` typestore used for (de)serialization (ROS 2 Humble message definitions)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
    return _TYPESTORE


class _RosbagsSource(Source):
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


class _Unreadable(Source):
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


def _open_sources(path: PathLike, stats: Optional[ReadStats] = None) -> list[tuple[Source, Optional[Source]]]:
    """Open a bag as a list of (primary source, tolerant fallback or None).

    The primary is ``rosbags``; when it cannot open the bag, each storage file is opened with
    ``rosbags`` or else scanned tolerantly.
    """
    p = Path(path)
    if not p.exists():
        raise BagError(f"bag {str(path)!r} does not exist; pass a rosbag2 directory or a .mcap/.db3 file")
    files = storage_files(p)
    if not files:
        raise BagError(f"{str(path)!r} holds no .mcap or .db3 storage file; is it a rosbag2 directory?")
    # rosbags trusts the MCAP summary (channels, chunk index); a damaged one is not used.
    bad_summary = {f: d for f in files if f.suffix == ".mcap" and (d := mcap_summary_damage(f))}
    first_error = "the MCAP summary section is damaged"
    if not bad_summary:
        try:
            return [(_RosbagsSource(p), _fallback(files))]
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for broken bags
            first_error = f"{type(exc).__name__}: {exc}"
    out: list[tuple[Source, Optional[Source]]] = []
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
            src: Source = scan_source(f)
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


def _fallback(files: Sequence[Path]) -> Optional[Source]:
    """Tolerant scanner for a single-file bag (used to resume after a mid-bag error)."""
    if len(files) != 1:
        return None
    try:
        return scan_source(files[0])
    except Exception:  # noqa: BLE001
        return None


def _close(sources: Iterable[tuple[Source, Optional[Source]]]) -> None:
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
        if data[:4] == ZSTD_MAGIC:  # message-compressed bag read by the tolerant scan
            data = zstd_decompress(data)
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


"""Writing rosbag2 bags from rclpy messages (:class:`BagWriter`).

:class:`BagWriter` serializes rclpy messages with ``rclpy.serialization.serialize_message`` and
stores them with ``rosbags``; both produce standard CDR, so rosbags reads what rclpy wrote (only
uninitialised alignment padding bytes may differ). Every MCAP file it writes carries chunk,
data-section and summary CRCs (:func:`.recover.write_mcap_crcs`; rosbags itself writes 0).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from .read import typestore
from .records import BagError, PathLike
from .recover import storage_files, write_mcap_crcs

STORAGES = ("mcap", "sqlite3")


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
                for storage_file in storage_files(self._bag_dir):
                    write_mcap_crcs(storage_file)
            if self._single_file:
                import shutil

                (storage_file,) = storage_files(self._bag_dir)
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


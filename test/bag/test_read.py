"""Tests for seg_perception.bag.read: reading back, topic errors, and tolerance to broken bags."""
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from seg_perception.bag.read import BagError, ReadStats, list_topics, read_images, read_messages
from seg_perception.bag.write import BagWriter
from test.bag.bag_helpers import DT, T0, first_byte, frame_pixels, make_bag, storage_file


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_and_read_back(tmp_path, storage):
    bag = make_bag(tmp_path / "bag", storage)
    assert list_topics(bag) == {"/cam": ("sensor_msgs/msg/Image", 6), "/gt": ("sensor_msgs/msg/Image", 6)}
    stats = ReadStats()
    frames = list(read_images([bag], "/cam", stats=stats))
    assert [f.stamp_ns for f in frames] == [T0 + i * DT for i in range(6)]
    assert [f.index for f in frames] == list(range(6))
    assert [first_byte(f) for f in frames] == [i * 10 for i in range(6)]
    f = frames[2]
    assert (f.msg.height, f.msg.width, f.msg.encoding, f.msg.header.frame_id) == (48, 64, "rgb8", "camera")
    assert f.bag_path == str(bag) and f.msgtype == "sensor_msgs/msg/Image"
    assert stats.read == 6 and not stats.skipped and not stats.stops


def test_storage_file_and_bag_without_metadata(tmp_path):
    bag = make_bag(tmp_path / "bag", "mcap", n=3)
    assert len(list(read_images(storage_file(bag), "/cam"))) == 3  # a bare .mcap file
    (bag / "metadata.yaml").unlink()  # recorder killed before writing metadata
    assert len(list(read_images(bag, "/cam"))) == 3


def test_several_bags_index_per_bag(tmp_path):
    a = make_bag(tmp_path / "a", "mcap", n=2)
    b = make_bag(tmp_path / "b", "sqlite3", n=3)
    frames = list(read_images([a, b], "/cam"))
    assert [(Path(f.bag_path).name, f.index) for f in frames] == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2)]
    assert list_topics([a, b])["/cam"] == ("sensor_msgs/msg/Image", 5)


def test_missing_topic_lists_topics(tmp_path):
    bag = make_bag(tmp_path / "bag", "mcap", n=1)
    with pytest.raises(BagError) as err:
        list(read_images(bag, "/camera/image_raw", stats=ReadStats()))
    text = str(err.value)
    assert "/camera/image_raw" in text and "/cam (sensor_msgs/msg/Image, 1 msgs)" in text and "/gt" in text


def test_non_image_topic_rejected(tmp_path):
    from std_msgs.msg import String

    with BagWriter(tmp_path / "bag") as bag:
        bag.write("/chatter", String(data="hi"), T0)
    with pytest.raises(BagError, match="std_msgs/msg/String"):
        list(read_images(tmp_path / "bag", "/chatter"))
    (frame,) = read_messages(tmp_path / "bag", "/chatter")
    assert frame.msg.data == "hi" and frame.stamp_ns == T0  # no header: receive time


def test_missing_bag_path(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        list(read_images(tmp_path / "nope", "/cam"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_yields_readable_prefix(tmp_path, storage):
    bag = make_bag(tmp_path / "bag", storage, n=8)
    src = storage_file(bag)
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(bag / "metadata.yaml", cut)
    data = src.read_bytes()
    (cut / src.name).write_bytes(data[: int(len(data) * 0.6)])

    stats = ReadStats()
    frames = list(read_images(cut, "/cam", stats=stats))
    assert 0 < len(frames) < 8
    # a prefix of the recording, intact
    assert [first_byte(f) for f in frames] == [i * 10 for i in range(len(frames))]
    assert [f.stamp_ns for f in frames] == [T0 + i * DT for i in range(len(frames))]
    assert len(stats.stops) == 1
    stop = stats.stops[0]
    assert stop.bag == str(cut) and stop.index == len(frames) and not stop.recovered and stop.error


def test_truncated_to_nothing_does_not_crash(tmp_path):
    bag = make_bag(tmp_path / "bag", "sqlite3", n=2)
    src = storage_file(bag)
    src.write_bytes(src.read_bytes()[:50])
    stats = ReadStats()
    assert list(read_images(bag, "/cam", stats=stats)) == []  # topic known from metadata.yaml
    assert len(stats.stops) == 1 and stats.stops[0].index == 0


def test_corrupted_middle_message_sqlite(tmp_path):
    bag = make_bag(tmp_path / "bag", "sqlite3", n=6)
    db = storage_file(bag)
    con = sqlite3.connect(db)
    (tid,) = con.execute("SELECT id FROM topics WHERE name='/cam'").fetchone()
    ids = [r[0] for r in con.execute("SELECT id FROM messages WHERE topic_id=? ORDER BY timestamp", (tid,))]
    # CDR header then a string length far beyond the buffer
    con.execute("UPDATE messages SET data=? WHERE id=?", (b"\x00\x01\x00\x00" + b"\xff" * 40, ids[3]))
    con.commit()
    con.close()

    stats = ReadStats()
    frames = list(read_images(bag, "/cam", stats=stats))
    assert [f.index for f in frames] == [0, 1, 2, 4, 5]
    assert [first_byte(f) for f in frames] == [0, 10, 20, 40, 50]
    assert len(stats.skipped) == 1
    s = stats.skipped[0]
    assert (s.index, s.reason, s.topic) == (3, "undeserializable", "/cam") and s.detail
    assert stats.reason_counts() == {"undeserializable": 1}


def test_corrupted_and_malformed_messages_mcap(tmp_path):
    from sensor_msgs.msg import Image

    from seg_perception.bag.write import make_header

    short = Image(height=10, width=10, encoding="mono8", step=10, data=bytes(20))  # needs 100 bytes
    short.header = make_header(T0 + 2 * DT, "camera")
    with BagWriter(tmp_path / "bag", storage="mcap") as bag:
        bag.write_image("/cam", frame_pixels(0), "rgb8", T0, "camera")
        bag.write_raw("/cam", "sensor_msgs/msg/Image", b"\x00\x01\x00\x00\x07", T0 + DT)
        bag.write("/cam", short, T0 + 2 * DT)
        bag.write_image("/cam", frame_pixels(3), "rgb8", T0 + 3 * DT, "camera")
    stats = ReadStats()
    frames = list(read_images(tmp_path / "bag", "/cam", stats=stats))
    assert [(f.index, first_byte(f)) for f in frames] == [(0, 0), (3, 30)]
    assert [(s.index, s.reason) for s in stats.skipped] == [(1, "undeserializable"), (2, "malformed")]
    assert "100" in stats.skipped[1].detail and stats.skipped[1].stamp_ns == T0 + 2 * DT
    d = stats.as_dict()
    assert d["read"] == 2 and d["skipped_by_reason"] == {"undeserializable": 1, "malformed": 1}


def test_damaged_page_in_middle_of_sqlite_bag(tmp_path):
    bag = make_bag(tmp_path / "bag", "sqlite3", n=10)
    db = storage_file(bag)
    data = bytearray(db.read_bytes())
    mid = (len(data) // 2) // 4096 * 4096  # one whole page in the middle
    data[mid : mid + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))
    stats = ReadStats()
    frames = list(read_images(bag, "/cam", stats=stats))
    values = [first_byte(f) // 10 for f in frames]
    assert values == sorted(set(values)) and len(values) < 10  # in order, no duplicates, some lost
    assert values[0] == 0 and values[-1] == 9  # read on past the damaged page
    assert stats.stops and any(s.recovered for s in stats.stops)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_zstd_compressed_bag_truncated(tmp_path, storage):
    """mcap: zstd chunks (1 MiB of raw data each) - complete chunks before the cut are read."""
    rng = np.random.default_rng(1)
    with BagWriter(tmp_path / "bag", storage=storage, compression="zstd") as bag:
        for i in range(24):
            img = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)  # incompressible
            img[0, 0, 0] = i
            bag.write_image("/cam", img, "rgb8", T0 + i * DT, "camera")
    assert [first_byte(f) for f in read_images(tmp_path / "bag", "/cam")] == list(range(24))
    src = storage_file(tmp_path / "bag")
    data = src.read_bytes()
    src.write_bytes(data[: int(len(data) * 0.75)])
    stats = ReadStats()
    values = [first_byte(f) for f in read_images(tmp_path / "bag", "/cam", stats=stats)]
    assert 0 < len(values) < 24 and values == list(range(len(values)))
    assert len(stats.stops) == 1 and not stats.skipped

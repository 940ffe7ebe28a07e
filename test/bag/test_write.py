"""Tests for seg_perception.bag.write: BagWriter output read back, CDR interoperability with rclpy."""
import pytest

from seg_perception.bag.read import BagError, deserialize, read_images
from seg_perception.bag.write import BagWriter
from test.bag.bag_helpers import DT, T0, first_byte, frame_pixels


def test_rclpy_and_rosbags_cdr_interoperate():
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from seg_perception.bag.read import typestore
    from seg_perception.bag.write import make_header

    msg = Image(height=2, width=3, encoding="mono8", step=3, is_bigendian=0, data=bytes(range(6)))
    msg.header = make_header(T0 + 123, "cam")
    raw = serialize_message(msg)
    ros = deserialize(raw, "sensor_msgs/msg/Image")
    assert (ros.header.stamp.sec, ros.header.stamp.nanosec) == (T0 // 10**9, 123)
    assert (ros.header.frame_id, ros.height, ros.width, ros.encoding, ros.step) == ("cam", 2, 3, "mono8", 3)
    assert bytes(ros.data) == bytes(range(6))
    back = bytes(typestore().serialize_cdr(ros, "sensor_msgs/msg/Image"))
    assert len(back) == len(raw)
    assert deserialize_message(back, Image) == msg  # rclpy reads what rosbags wrote

    cmsg = CompressedImage(format="png", data=b"\x89PNG....")
    cmsg.header = make_header(5, "x")
    cros = deserialize(serialize_message(cmsg), "sensor_msgs/msg/CompressedImage")
    assert cros.format == "png" and bytes(cros.data) == b"\x89PNG...."


def test_writer_refuses_existing_path_and_bad_storage(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="exists"):
        BagWriter(tmp_path / "exists")
    with pytest.raises(BagError, match="mcap, sqlite3"):
        BagWriter(tmp_path / "new", storage="rosbag1")


def test_writer_compressed_and_counts(tmp_path):
    with BagWriter(tmp_path / "bag", storage="sqlite3") as bag:
        bag.write_compressed("/cam/compressed", frame_pixels(1, (16, 16, 3)), "png", T0, "camera")
        bag.write_compressed("/cam/compressed", frame_pixels(2, (16, 16, 3)), "jpeg", T0 + DT, "camera")
        assert bag.counts == {"/cam/compressed": 2}
    frames = list(read_images(tmp_path / "bag", "/cam/compressed"))
    assert [f.msgtype for f in frames] == ["sensor_msgs/msg/CompressedImage"] * 2
    assert "png" in frames[0].msg.format and "jpeg" in frames[1].msg.format


@pytest.mark.parametrize("name", ["single.mcap", "single.db3"])
def test_writer_single_storage_file(tmp_path, name):
    with BagWriter(tmp_path / name) as bag:
        bag.write_image("/cam", frame_pixels(3), "rgb8", T0, "camera")
    assert (tmp_path / name).is_file() and sorted(p.name for p in tmp_path.iterdir()) == [name]
    (frame,) = read_images(tmp_path / name, "/cam")
    assert first_byte(frame) == 30 and frame.stamp_ns == T0
    with pytest.raises(BagError, match="sqlite3"):
        BagWriter(tmp_path / "x.mcap", storage="sqlite3")

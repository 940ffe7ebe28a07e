"""The sample drive bag: topics, formats, camera_info / depth consistency, determinism."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from seg_perception.core.conversions import image_to_numpy, to_rgb
from seg_perception.datasets import sample_bag as sb
from seg_perception.datasets.drive import make_drive
from seg_perception.bag.read import list_topics, read_messages

HW = (128, 256)
FRAMES = 6
SEED = 3


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "drive.mcap"
    sb.write_sample_bag(path, n_frames=FRAMES, hw=HW, seed=SEED)
    return path, make_drive(SEED, HW, FRAMES)


def _messages(path, topic, cls):
    return [deserialize_message(raw, cls) for _t, raw in _raw(path, topic)]


def _raw(path, topic):
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, bytes(raw)) for _c, t, raw in reader.messages(connections=conns)]


def test_topics_and_types(written) -> None:
    path, _drive = written
    topics = list_topics([path])
    assert topics == {
        sb.IMAGE_TOPIC: ("sensor_msgs/msg/CompressedImage", FRAMES),
        sb.CAMERA_INFO_TOPIC: ("sensor_msgs/msg/CameraInfo", FRAMES),
        sb.DEPTH_TOPIC: ("sensor_msgs/msg/Image", FRAMES),
        sb.DEPTH_INFO_TOPIC: ("sensor_msgs/msg/CameraInfo", FRAMES),
        sb.GT_SEMANTIC_TOPIC: ("sensor_msgs/msg/Image", FRAMES),
        sb.GT_PANOPTIC_TOPIC: ("sensor_msgs/msg/Image", FRAMES),
    }


def test_every_topic_shares_stamps_and_frame(written) -> None:
    path, _drive = written
    want = [sb.START_NS + i * 100_000_000 for i in range(FRAMES)]
    for topic, cls in ((sb.IMAGE_TOPIC, CompressedImage), (sb.CAMERA_INFO_TOPIC, CameraInfo),
                       (sb.DEPTH_TOPIC, Image), (sb.GT_PANOPTIC_TOPIC, Image)):
        msgs = _messages(path, topic, cls)
        stamps = [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in msgs]
        assert stamps == want and [t for t, _raw in _raw(path, topic)] == want
        assert {m.header.frame_id for m in msgs} == {sb.FRAME_ID}


def test_images_are_jpeg_at_the_rendered_resolution(written) -> None:
    path, drive = written
    msgs = _messages(path, sb.IMAGE_TOPIC, CompressedImage)
    assert all("jpeg" in m.format for m in msgs)
    for m, f in zip(msgs, drive.frames):
        rgb = to_rgb(m)
        assert rgb.shape == (*HW, 3)
        err = rgb.astype(np.float64) - f.image
        assert 10 * np.log10(255.0 ** 2 / np.mean(err ** 2)) > 28.0  # JPEG q90: close to the render


def test_ground_truth_is_the_drive(written) -> None:
    path, drive = written
    sem = [image_to_numpy(m) for m in _messages(path, sb.GT_SEMANTIC_TOPIC, Image)]
    pan = [image_to_numpy(m) for m in _messages(path, sb.GT_PANOPTIC_TOPIC, Image)]
    for s, p, f in zip(sem, pan, drive.frames):
        np.testing.assert_array_equal(s, f.semantic)
        np.testing.assert_array_equal(p, f.panoptic)
        assert p.dtype == np.int32


def test_depth_and_camera_info_agree(written) -> None:
    """camera_info K / P equal the drive's camera; the 16UC1 depth (mm) back-projects the ground
    to the plane y = camera height (to the millimetre rounding)."""
    path, drive = written
    infos = _messages(path, sb.CAMERA_INFO_TOPIC, CameraInfo)
    dinfos = _messages(path, sb.DEPTH_INFO_TOPIC, CameraInfo)
    depths = _messages(path, sb.DEPTH_TOPIC, Image)
    for info, dinfo, dmsg, f in zip(infos, dinfos, depths, drive.frames):
        assert (info.height, info.width) == HW and info.distortion_model == "plumb_bob"
        np.testing.assert_array_equal(np.reshape(info.k, (3, 3)), drive.K)
        P = np.reshape(info.p, (3, 4))
        np.testing.assert_array_equal(P[:, :3], drive.K)
        assert not P[:, 3].any() and not np.any(info.d)
        assert list(dinfo.k) == list(info.k) and list(dinfo.p) == list(info.p)
        assert dmsg.encoding == "16UC1"
        mm = image_to_numpy(dmsg)
        assert mm.dtype == np.uint16
        z = mm.astype(np.float64) / 1000.0
        K = np.reshape(info.k, (3, 3))
        v, u = np.nonzero((f.semantic == 0) & (mm > 0))
        y = (v - K[1, 2]) * z[v, u] / K[1, 1]
        assert np.abs(y - drive.camera_height).max() < 0.01
        valid = (f.depth > 0) & (f.depth <= 65.535)
        np.testing.assert_allclose(z[valid], f.depth[valid], atol=6e-4)
        assert not mm[~valid].any()  # sky and out-of-range: 0, not a clipped value


def test_depth_to_mm_edges() -> None:
    d = np.array([[0.0, 0.0004, 1.2344, 65.535, 65.6, np.nan, np.inf, -1.0]], np.float32)
    np.testing.assert_array_equal(sb.depth_to_mm(d), [[0, 0, 1234, 65535, 0, 0, 0, 0]])


def test_same_arguments_same_messages(written, tmp_path) -> None:
    """Message contents are identical (compared as messages: CDR padding bytes are not defined)."""
    path, _drive = written
    again = tmp_path / "again.mcap"
    sb.write_sample_bag(again, n_frames=FRAMES, hw=HW, seed=SEED)
    classes = {"sensor_msgs/msg/CompressedImage": CompressedImage, "sensor_msgs/msg/Image": Image,
               "sensor_msgs/msg/CameraInfo": CameraInfo}
    for topic, (msgtype, _n) in list_topics([path]).items():
        a, b = _messages(path, topic, classes[msgtype]), _messages(again, topic, classes[msgtype])
        assert len(a) == FRAMES and a == b, topic


def test_existing_path_is_refused(written) -> None:
    path, _drive = written
    with pytest.raises(ValueError, match="overwrite"):
        sb.write_sample_bag(path, n_frames=1, hw=HW)
    with pytest.raises(ValueError, match="jpeg_quality"):
        sb.write_sample_bag(path.with_name("x.mcap"), n_frames=1, hw=HW, jpeg_quality=0)


def test_shipped_sample_drive_is_the_documented_one() -> None:
    """The shipped bag: the documented topics, 256 x 512 JPEG frames at 10 Hz, depth, track ids,
    under 10 MB."""
    path = sb.SAMPLE_BAG_PATH
    assert path.stat().st_size < 10e6
    topics = list_topics([path])
    assert topics[sb.IMAGE_TOPIC] == ("sensor_msgs/msg/CompressedImage", sb.SAMPLE_FRAMES)
    for t in (sb.CAMERA_INFO_TOPIC, sb.DEPTH_TOPIC, sb.DEPTH_INFO_TOPIC, sb.GT_SEMANTIC_TOPIC, sb.GT_PANOPTIC_TOPIC):
        assert topics[t][1] == sb.SAMPLE_FRAMES
    first = next(iter(read_messages([path], sb.IMAGE_TOPIC)))
    assert to_rgb(first.msg).shape == (256, 512, 3)


def test_shipped_sample_drive_carries_crcs_the_reference_reader_validates() -> None:
    """Every chunk of the shipped bag has a non-zero CRC and foxglove's ``mcap`` reader accepts them
    all (a bag with CRC 0 cannot show damage inside its chunks)."""
    from mcap.reader import make_reader
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    with open(sb.SAMPLE_BAG_PATH, "rb") as f:
        chunks = [r for r in StreamReader(f, skip_magic=False, emit_chunks=True).records if isinstance(r, Chunk)]
    assert chunks and all(c.uncompressed_crc != 0 for c in chunks)
    with open(sb.SAMPLE_BAG_PATH, "rb") as f:
        n = sum(1 for _ in make_reader(f, validate_crcs=True).iter_messages())
    assert n == sum(count for _type, count in list_topics(sb.SAMPLE_BAG_PATH).values())

"""PointCloud2 builder: field layout per sensor_msgs/PointField, read back by an independent reader."""
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from seg_perception.core.conversions import ConversionError
from seg_perception.core.pointcloud import CloudConfig, depth_to_cloud
from seg_perception.ros.depth_input import depth_from_msg, intrinsics_from_camera_info
from seg_perception.ros.pointcloud_msg import to_pointcloud2

# sensor_msgs/PointField datatype -> (numpy kind, size in bytes), written from the .msg definition
# (INT8=1 UINT8=2 INT16=3 UINT16=4 INT32=5 UINT32=6 FLOAT32=7 FLOAT64=8).
_SPEC = {1: ("i", 1), 2: ("u", 1), 3: ("i", 2), 4: ("u", 2), 5: ("i", 4), 6: ("u", 4), 7: ("f", 4), 8: ("f", 8)}


def read_points(msg) -> dict:
    """Decode every field of a PointCloud2 from its fields / offsets / steps alone."""
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    assert raw.size == msg.row_step * msg.height
    order = ">" if msg.is_bigendian else "<"
    out = {}
    for f in msg.fields:
        kind, size = _SPEC[f.datatype]
        dt = np.dtype(f"{order}{kind}{size}")
        arr = np.ndarray((msg.height, msg.width), dtype=dt, buffer=raw,
                         offset=f.offset, strides=(msg.row_step, msg.point_step))
        out[f.name] = arr.astype(dt.newbyteorder("="))
    return out


def _cloud(organized: bool):
    rng = np.random.default_rng(1)
    depth = rng.integers(0, 5000, (6, 8)).astype(np.uint16)
    labels = rng.integers(0, 19, (6, 8)).astype(np.uint8)
    pan = labels.astype(np.int32) * 1000 + (labels >= 11) * rng.integers(1, 5, (6, 8))
    palette = rng.integers(0, 256, (19, 3)).astype(np.uint8)
    k = np.array([[5.0, 0, 3.5], [0, 5.0, 2.5], [0, 0, 1]])
    return depth_to_cloud(depth, k, labels, panoptic=pan, colors=palette,
                          config=CloudConfig(organized=organized, max_range=4.0))


def test_fields_match_pointfield_definitions():
    msg = to_pointcloud2(_cloud(False), Header(frame_id="camera_color_optical_frame"))
    layout = {f.name: (f.offset, f.datatype, f.count) for f in msg.fields}
    assert layout == {"x": (0, PointField.FLOAT32, 1), "y": (4, PointField.FLOAT32, 1),
                      "z": (8, PointField.FLOAT32, 1), "label": (12, PointField.UINT16, 1),
                      "instance": (16, PointField.UINT32, 1), "rgb": (20, PointField.FLOAT32, 1)}
    # every field fits inside point_step and none overlaps the next
    ends = sorted((off, off + _SPEC[dt][1]) for off, dt, _ in layout.values())
    assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:])) and ends[-1][1] <= msg.point_step
    assert msg.header.frame_id == "camera_color_optical_frame"


@pytest.mark.parametrize("organized", [False, True])
def test_round_trip(organized):
    cloud = _cloud(organized)
    msg = to_pointcloud2(cloud, Header(frame_id="cam"))
    assert (msg.height, msg.width) == (cloud.height, cloud.width)
    assert msg.is_dense == cloud.is_dense and msg.row_step == msg.point_step * msg.width
    assert organized == (msg.height > 1)
    # what a subscriber receives: the CDR wire format, decoded again
    msg = deserialize_message(serialize_message(msg), PointCloud2)
    pts = read_points(msg)
    n = len(cloud)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], -1).reshape(n, 3)
    np.testing.assert_array_equal(xyz, cloud.xyz.reshape(n, 3))  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(pts["label"].ravel(), cloud.label.ravel())
    np.testing.assert_array_equal(pts["instance"].ravel(), cloud.instance.ravel())
    np.testing.assert_array_equal(pts["rgb"].ravel().view(np.uint32), cloud.rgb.ravel().view(np.uint32))
    assert cloud.instance.any() and cloud.rgb.view(np.uint32).any()


def test_depth_and_camera_info_messages():
    img = Image(height=2, width=3, encoding="16UC1", is_bigendian=0, step=6)
    img.data = np.array([[0, 1000, 2], [3, 4, 65535]], "<u2").tobytes()
    d = depth_from_msg(img)
    assert d.dtype == np.uint16 and d[0, 1] == 1000 and d[1, 2] == 65535
    f = Image(height=1, width=2, encoding="32FC1", is_bigendian=0, step=8)
    f.data = np.array([[1.5, np.nan]], "<f4").tobytes()
    assert depth_from_msg(f).dtype == np.float32
    bad = Image(height=1, width=1, encoding="rgb8", step=3, data=bytes(3))
    with pytest.raises(ConversionError, match="16UC1"):
        depth_from_msg(bad)
    info = CameraInfo(height=480, width=640)
    info.k = [600.0, 0.0, 319.5, 0.0, 601.0, 239.5, 0.0, 0.0, 1.0]
    k, size = intrinsics_from_camera_info(info)
    assert size == (480, 640) and k[0, 0] == 600.0 and k[1, 2] == 239.5
    info.binning_x = info.binning_y = 2
    k, size = intrinsics_from_camera_info(info)
    assert size == (240, 320) and k[0, 0] == 300.0 and k[0, 2] == pytest.approx(159.5)
    with pytest.raises(ValueError, match="focal lengths"):
        intrinsics_from_camera_info(CameraInfo(height=4, width=4))

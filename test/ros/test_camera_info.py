"""camera_info passthrough: the camera's geometry re-expressed in label-image pixels.

Expected values are worked out by hand below each case (pinhole model: u = fx*x/z + cx), not by
the function under test.
"""
import pytest
from sensor_msgs.msg import CameraInfo

from seg_perception.ros.camera_info import image_topic_sibling, scale_camera_info


def _info(w=640, h=480, fx=500.0, fy=510.0, cx=320.5, cy=240.5, tx=-25.0):
    info = CameraInfo()
    info.header.frame_id = "cam"
    info.width, info.height = w, h
    info.distortion_model = "plumb_bob"
    info.d = [0.1, -0.2, 0.001, 0.002, 0.0]
    info.k = [fx, 0.5, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.5, cx, tx, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def test_same_size_is_unchanged_geometry():
    out = scale_camera_info(_info(), 480, 640)
    assert list(out.k) == [500.0, 0.5, 320.5, 0.0, 510.0, 240.5, 0.0, 0.0, 1.0]
    assert list(out.p) == [500.0, 0.5, 320.5, -25.0, 0.0, 510.0, 240.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert (out.width, out.height) == (640, 480)


def test_half_size_labels():
    # 640x480 -> 320x240: sx = sy = 0.5; fx 250, skew 0.25, cx 160.25, fy 255, cy 120.25, Tx -12.5
    out = scale_camera_info(_info(), 240, 320)
    assert list(out.k) == [250.0, 0.25, 160.25, 0.0, 255.0, 120.25, 0.0, 0.0, 1.0]
    assert list(out.p) == [250.0, 0.25, 160.25, -12.5, 0.0, 255.0, 120.25, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert list(out.d) == [0.1, -0.2, 0.001, 0.002, 0.0] and out.distortion_model == "plumb_bob"


def test_roi_and_binning():
    # full sensor 1280x960, roi x 100 y 50 (640x480 full-res px), binning 2 -> the image is 320x240,
    # the labels too. sx = 320/640 = 0.5: fx 1000*0.5 = 500, cx (660.5-100)*0.5 = 280.25,
    # fy 1020*0.5 = 510, cy (490.5-50)*0.5 = 220.25, Tx -50*0.5 = -25.
    info = _info(w=1280, h=960, fx=1000.0, fy=1020.0, cx=660.5, cy=490.5, tx=-50.0)
    info.binning_x = info.binning_y = 2
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 50, 640, 480
    out = scale_camera_info(info, 240, 320)
    assert list(out.k) == [500.0, 0.25, 280.25, 0.0, 510.0, 220.25, 0.0, 0.0, 1.0]
    assert list(out.p)[:8] == [500.0, 0.25, 280.25, -25.0, 0.0, 510.0, 220.25, 0.0]
    assert (out.binning_x, out.binning_y, out.roi.width, out.roi.height, out.roi.x_offset) == (0, 0, 0, 0, 0)
    # a full-res pixel at the roi's corner lands on label (0, 0); one 2 binned px right: label (1, 0)
    u = lambda u_full: (u_full - 100) * 320 / 640  # noqa: E731 - hand mapping
    assert u(100) == 0 and u(102) == 1


def test_header_is_the_label_images_and_no_size_is_refused():
    info = _info()
    hdr = CameraInfo().header
    hdr.stamp.sec, hdr.frame_id = 42, "cam_optical"
    out = scale_camera_info(info, 480, 640, hdr)
    assert (out.header.stamp.sec, out.header.frame_id) == (42, "cam_optical")
    assert info.header.frame_id == "cam" and list(info.k)[0] == 500.0  # input untouched
    with pytest.raises(ValueError, match="width/height"):
        scale_camera_info(_info(w=0, h=0), 10, 10)


def test_sibling_topic():
    assert image_topic_sibling("/cam/image_raw", "camera_info") == "/cam/camera_info"
    assert image_topic_sibling("/image", "camera_info") == "/camera_info"
    assert image_topic_sibling("/a/b/image/", "camera_info") == "/a/b/camera_info"

"""Tests for seg_perception.core.conversions.

Messages are built byte by byte here (row padding, explicit byte order) from independently chosen
arrays, so decoding is checked against the sensor_msgs wire layout rather than against our own
encoder.
"""
from __future__ import annotations

import array
import struct
import sys
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_perception.core.conversions import (
    MAX_PIXELS,
    SUPPORTED_ENCODINGS,
    ConversionError,
    compressed_to_numpy,
    encoding_info,
    image_to_numpy,
    numpy_to_compressed,
    numpy_to_image,
    to_rgb,
)

sensor_msgs = pytest.importorskip("sensor_msgs.msg")
std_msgs = pytest.importorskip("std_msgs.msg")

# encoding -> (dtype, channels), written out independently of the module's table
SPEC = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "mono16": (np.uint16, 1), "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3), "8UC4": (np.uint8, 4), "16UC1": (np.uint16, 1),
    "16SC1": (np.int16, 1), "32SC1": (np.int32, 1), "32FC1": (np.float32, 1),
}
SIZES = [(1, 1), (3, 5), (7, 13), (480, 640)]


def random_array(rng: np.random.Generator, encoding: str, h: int, w: int) -> np.ndarray:
    dtype, ch = SPEC[encoding]
    shape = (h, w) if ch == 1 else (h, w, ch)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def wire_bytes(arr: np.ndarray, big_endian: bool, pad: int) -> tuple[bytes, int]:
    """Serialize ``arr`` row by row in the requested byte order with ``pad`` junk bytes per row."""
    h = arr.shape[0]
    dt = arr.dtype.newbyteorder(">" if big_endian else "<")
    rows = arr.astype(dt).reshape(h, -1).view(np.uint8)  # (H, row_bytes)
    junk = np.full((h, pad), 0xAB, dtype=np.uint8)
    full = np.concatenate([rows, junk], axis=1)
    return full.tobytes(), full.shape[1]


def make_image(arr: np.ndarray, encoding: str, *, big_endian: bool = False, pad: int = 0,
               data_type=bytes) -> "sensor_msgs.Image":
    data, step = wire_bytes(arr, big_endian, pad)
    msg = sensor_msgs.Image()
    msg.height, msg.width = arr.shape[0], arr.shape[1]
    msg.encoding = encoding
    msg.is_bigendian = big_endian
    msg.step = step
    if data_type is array.array:
        msg.data = array.array("B", data)
    else:
        msg._data = data_type(data)  # bypass rclpy's per-element check, as a bytes publisher would
    return msg


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def smooth_rgb(h: int = 120, w: int = 160) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 100 * np.sin(x / 17.0)
    g = 127 + 100 * np.cos(y / 23.0)
    b = 127 + 60 * np.sin((x + y) / 31.0)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------
# image_to_numpy
# ------------------------------------------------------------------------------------------
def test_supported_encodings_match_spec():
    assert set(SUPPORTED_ENCODINGS) == set(SPEC)
    for enc, (dt, ch) in SPEC.items():
        assert encoding_info(enc) == (np.dtype(dt), ch)


@pytest.mark.parametrize("encoding", sorted(SPEC))
@pytest.mark.parametrize("size", SIZES)
def test_decode_wire_layout(encoding, size):
    rng = np.random.default_rng(zlib.crc32(f"{encoding}{size}".encode()))
    arr = random_array(rng, encoding, *size)
    out = image_to_numpy(make_image(arr, encoding))
    assert out.shape == arr.shape
    assert out.dtype == arr.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding", sorted(SPEC))
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 1, 3, 8])
def test_decode_padding_and_byte_order(encoding, big_endian, pad):
    rng = np.random.default_rng(7)
    arr = random_array(rng, encoding, 5, 7)
    out = image_to_numpy(make_image(arr, encoding, big_endian=big_endian, pad=pad))
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative


def test_big_endian_mono16_known_bytes():
    # 0x0102 big-endian is bytes 01 02; 0x0304 -> 03 04; independent of numpy.
    msg = SimpleNamespace(height=1, width=2, encoding="mono16", is_bigendian=1, step=4,
                          data=bytes([1, 2, 3, 4]))
    np.testing.assert_array_equal(image_to_numpy(msg), [[0x0102, 0x0304]])
    msg.is_bigendian = 0
    np.testing.assert_array_equal(image_to_numpy(msg), [[0x0201, 0x0403]])


def test_big_endian_32fc1_known_bytes():
    vals = [1.5, -2.25, float("nan")]
    msg = SimpleNamespace(height=1, width=3, encoding="32FC1", is_bigendian=True, step=12,
                          data=struct.pack(">3f", *vals))
    out = image_to_numpy(msg)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [vals])


@pytest.mark.parametrize("data_type", [bytes, bytearray, memoryview, array.array])
def test_payload_container_types(data_type):
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = make_image(arr, "rgb8", pad=2, data_type=data_type)
    np.testing.assert_array_equal(image_to_numpy(msg), arr)
    np.testing.assert_array_equal(to_rgb(msg), arr)


def test_rosbags_style_message_with_numpy_data():
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    raw, step = wire_bytes(arr, False, pad=2)
    msg = SimpleNamespace(header=None, height=4, width=6, encoding="bgr8", is_bigendian=0,
                          step=step, data=np.frombuffer(raw, dtype=np.uint8).copy())
    np.testing.assert_array_equal(image_to_numpy(msg), arr)
    np.testing.assert_array_equal(to_rgb(msg), arr[:, :, ::-1])


def test_encoding_name_case_insensitive():
    arr = np.arange(6, dtype=np.uint16).reshape(2, 3)
    np.testing.assert_array_equal(image_to_numpy(make_image(arr, "16uc1")), arr)
    np.testing.assert_array_equal(image_to_numpy(make_image(arr, "MONO16")), arr)


@settings(max_examples=40, deadline=None)
@given(
    encoding=st.sampled_from(sorted(SPEC)),
    h=st.integers(1, 9), w=st.integers(1, 9), pad=st.integers(0, 9),
    big_endian=st.booleans(), seed=st.integers(0, 2**31),
)
def test_decode_property(encoding, h, w, pad, big_endian, seed):
    arr = random_array(np.random.default_rng(seed), encoding, h, w)
    np.testing.assert_array_equal(
        image_to_numpy(make_image(arr, encoding, big_endian=big_endian, pad=pad)), arr)


# ------------------------------------------------------------------------------------------
# to_rgb
# ------------------------------------------------------------------------------------------
def test_to_rgb_color_orders():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(6, 5, 1), dtype=np.uint8)
    cases = {
        "rgb8": rgb, "8UC3": rgb, "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, alpha], -1), "8UC4": np.concatenate([rgb, alpha], -1),
        "bgra8": np.concatenate([rgb[:, :, ::-1], alpha], -1),
    }
    for enc, arr in cases.items():
        out = to_rgb(make_image(np.ascontiguousarray(arr), enc))
        assert out.shape == (6, 5, 3) and out.dtype == np.uint8, enc
        np.testing.assert_array_equal(out, rgb, err_msg=enc)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_to_rgb_mono8_replicated(encoding):
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    out = to_rgb(make_image(gray, encoding))
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_to_rgb_16bit_high_byte(encoding):
    gray = np.array([[0, 255, 256, 65535], [1000, 40000, 511, 512]], dtype=np.uint16)
    out = to_rgb(make_image(gray, encoding, big_endian=True))
    expected = gray // 256
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], expected)


@pytest.mark.parametrize("encoding,dtype", [("32FC1", np.float32), ("32SC1", np.int32),
                                            ("16SC1", np.int16)])
def test_to_rgb_minmax(encoding, dtype):
    vals = np.array([[-5, 0, 5], [10, 15, 20]], dtype=dtype)
    out = to_rgb(make_image(vals, encoding))
    expected = [[round((v + 5) * 255 / 25) for v in row] for row in [[-5, 0, 5], [10, 15, 20]]]
    np.testing.assert_array_equal(out[:, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 1], out[:, :, 0])


def test_to_rgb_float_non_finite_become_zero():
    vals = np.array([[np.nan, 1.0, np.inf], [-np.inf, 3.0, 2.0]], dtype=np.float32)
    out = to_rgb(make_image(vals, "32FC1"))[:, :, 0]
    np.testing.assert_array_equal(out, [[0, 0, 0], [0, 255, 128]])


def test_to_rgb_float_span_beyond_float32_is_not_clipped():
    """Finite 32FC1 values whose span overflows float32 still map linearly onto 0..255."""
    vals = np.array([[-3e38, -1e38, 0.0], [1e38, 2e38, 3e38]], dtype=np.float32)
    out = to_rgb(make_image(vals, "32FC1"))[:, :, 0]
    v = vals.astype(np.float64)
    expected = np.rint((v - v.min()) * 255.0 / (v.max() - v.min()))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("vals", [np.full((2, 2), 4.0), np.full((2, 2), np.nan)])
def test_to_rgb_float_degenerate(vals):
    out = to_rgb(make_image(vals.astype(np.float32), "32FC1"))
    assert out.shape == (2, 2, 3) and not out.any()


# ------------------------------------------------------------------------------------------
# numpy_to_image
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", sorted(SPEC))
@pytest.mark.parametrize("size", SIZES)
def test_numpy_to_image_round_trip(encoding, size):
    arr = random_array(np.random.default_rng(11), encoding, *size)
    header = std_msgs.Header(frame_id="cam")
    header.stamp.sec = 12
    msg = numpy_to_image(arr, encoding, header=header)
    assert isinstance(msg, sensor_msgs.Image)
    dtype, ch = SPEC[encoding]
    assert (msg.height, msg.width, msg.encoding) == (size[0], size[1], encoding)
    assert msg.step == size[1] * ch * np.dtype(dtype).itemsize
    assert bool(msg.is_bigendian) == (sys.byteorder == "big")
    assert bytes(msg.data) == arr.tobytes()
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 12
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


def test_numpy_to_image_accepts_channel_axis_and_foreign_byte_order():
    arr = np.arange(6, dtype=">u2").reshape(2, 3, 1)
    msg = numpy_to_image(arr, "mono16")
    np.testing.assert_array_equal(image_to_numpy(msg), arr[:, :, 0])


def test_numpy_to_image_noncontiguous_input():
    base = np.arange(4 * 10 * 3, dtype=np.uint8).reshape(4, 10, 3)
    view = base[:, ::2]
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(view, "rgb8")), view)


@pytest.mark.parametrize("arr,encoding", [
    (np.zeros((2, 2), np.float64), "mono8"),
    (np.zeros((2, 2, 3), np.uint8), "mono8"),
    (np.zeros((2, 2), np.uint8), "rgb8"),
    (np.zeros((2, 2), np.uint8), "mono16"),
    (np.zeros((2, 2), np.int64), "32SC1"),
    (np.zeros(4, np.uint8), "mono8"),
])
def test_numpy_to_image_bad_dtype(arr, encoding):
    with pytest.raises(ConversionError) as e:
        numpy_to_image(arr, encoding)
    assert e.value.reason == "bad_dtype"
    assert encoding in str(e.value) and str(arr.dtype) in str(e.value)


# ------------------------------------------------------------------------------------------
# compressed
# ------------------------------------------------------------------------------------------
def test_jpeg_round_trip_psnr():
    rgb = smooth_rgb()
    msg = numpy_to_compressed(rgb, "jpeg", quality=90)
    assert isinstance(msg, sensor_msgs.CompressedImage)
    assert "jpeg" in msg.format
    out = compressed_to_numpy(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert psnr(out, rgb) > 30
    assert psnr(to_rgb(msg), rgb) > 30


def test_jpeg_channel_order_is_rgb():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 250  # pure red
    out = compressed_to_numpy(numpy_to_compressed(rgb, "jpeg"))
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (64, 33)])
def test_png_round_trip_exact(size):
    rgb = np.random.default_rng(1).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    msg = numpy_to_compressed(rgb, "png")
    np.testing.assert_array_equal(compressed_to_numpy(msg), rgb)
    np.testing.assert_array_equal(to_rgb(msg), rgb)


def test_png_gray_and_16bit():
    gray = np.random.default_rng(2).integers(0, 256, size=(9, 4), dtype=np.uint8)
    out = compressed_to_numpy(numpy_to_compressed(gray, "png"))
    assert out.shape == (9, 4)
    np.testing.assert_array_equal(out, gray)
    np.testing.assert_array_equal(to_rgb(numpy_to_compressed(gray, "png"))[:, :, 2], gray)
    g16 = np.random.default_rng(3).integers(0, 65536, size=(3, 8), dtype=np.uint16)
    msg16 = numpy_to_compressed(g16, "png")
    np.testing.assert_array_equal(compressed_to_numpy(msg16), g16)
    np.testing.assert_array_equal(to_rgb(msg16)[:, :, 0], g16 // 256)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "rgb8; jpeg compressed bgr8",
                                 "bgr8; png compressed bgr8", "", "whatever"])
def test_ros_format_strings_and_opencv_encoded_payload(fmt):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV order
    ext = ".jpg" if "jpeg" in fmt else ".png"
    ok, buf = cv2.imencode(ext, bgr)
    assert ok
    msg = SimpleNamespace(format=fmt, data=buf.reshape(-1))  # rosbags style: numpy payload
    out = to_rgb(msg)
    assert out[..., 2].min() > 180 and out[..., 0].max() < 30


def test_compressed_depth_16uc1():
    depth = np.random.default_rng(4).integers(0, 5000, size=(6, 9), dtype=np.uint16)
    ok, png = cv2.imencode(".png", depth)
    header = struct.pack("<iff", 0, 0.0, 0.0)
    msg = SimpleNamespace(format="16UC1; compressedDepth png", data=header + png.tobytes())
    np.testing.assert_array_equal(compressed_to_numpy(msg), depth)


def test_compressed_depth_32fc1_inverse_quantization():
    # compressed_depth_image_transport: inv = A / d + B, with A = q (q + 1), B = 1 - A / max.
    q, dmax = 100.0, 10.0
    a, b = q * (q + 1), 1.0 - q * (q + 1) / dmax
    depth = np.array([[1.0, 2.0, 5.0], [0.5, 9.0, np.nan]], dtype=np.float32)
    inv = np.where(np.isfinite(depth), np.rint(a / np.nan_to_num(depth, nan=1.0) + b), 0)
    ok, png = cv2.imencode(".png", inv.astype(np.uint16))
    msg = SimpleNamespace(format="32FC1; compressedDepth png",
                          data=struct.pack("<iff", 0, a, b) + png.tobytes())
    out = compressed_to_numpy(msg)
    assert out.dtype == np.float32
    assert np.isnan(out[1, 2])
    np.testing.assert_allclose(out[np.isfinite(depth)], depth[np.isfinite(depth)], rtol=2e-3)


def test_numpy_to_compressed_bad_arguments():
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ConversionError) as e:
        numpy_to_compressed(rgb, "bmp")
    assert e.value.reason == "unknown_encoding" and "bmp" in str(e.value)
    with pytest.raises(ConversionError) as e:
        numpy_to_compressed(rgb.astype(np.float32), "png")
    assert e.value.reason == "bad_dtype"
    with pytest.raises(ConversionError):
        numpy_to_compressed(np.zeros((4, 4), np.uint16), "jpeg")
    with pytest.raises(ValueError, match="quality"):
        numpy_to_compressed(rgb, "jpeg", quality=0)


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
def raw(**kw):
    base = dict(height=2, width=3, encoding="rgb8", is_bigendian=0, step=9, data=bytes(18))
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("msg,reason,needle", [
    (raw(encoding="yuv422"), "unknown_encoding", "yuv422"),
    (raw(height=0, data=b""), "zero_size", "height=0"),
    (raw(width=0, step=0), "zero_size", "width=0"),
    (raw(data=bytes(17)), "short_data", "17"),
    (raw(step=8, data=bytes(16)), "bad_step", "step=8"),
    (raw(height=8000, width=8000, step=24000, data=b""), "too_large", "8000x8000"),
    (raw(data="not bytes"), "bad_dtype", "str"),
])
def test_image_errors(msg, reason, needle):
    with pytest.raises(ConversionError) as e:
        image_to_numpy(msg)
    assert e.value.reason == reason
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(ConversionError):
        to_rgb(msg)


def test_unknown_encoding_lists_supported():
    with pytest.raises(ConversionError) as e:
        image_to_numpy(raw(encoding="bayer_rggb8"))
    for enc in SPEC:
        assert enc in str(e.value)


def test_max_pixels_keyword_and_default():
    assert MAX_PIXELS == 40_000_000
    msg = raw()
    with pytest.raises(ConversionError) as e:
        to_rgb(msg, max_pixels=5)
    assert e.value.reason == "too_large" and "max_pixels=5" in str(e.value)
    assert to_rgb(msg, max_pixels=6).shape == (2, 3, 3)
    big = raw(height=8000, width=8000, step=24000, data=b"")
    with pytest.raises(ConversionError) as e:  # raising the limit gets past the size check
        image_to_numpy(big, max_pixels=10**8)
    assert e.value.reason == "short_data"


@pytest.mark.parametrize("data,reason", [
    (b"", "undecodable"), (bytes(range(50)), "undecodable"), (b"\xff\xd8\x00garbage", "undecodable"),
    (b"\xff\xd8\xff\xe0garbage", "truncated"),  # APP0 claims 0x6761 bytes
])
def test_compressed_undecodable(data, reason):
    with pytest.raises(ConversionError) as e:
        compressed_to_numpy(SimpleNamespace(format="jpeg", data=data))
    assert e.value.reason == reason and "jpeg" in str(e.value)


def test_compressed_depth_truncated_header():
    with pytest.raises(ConversionError) as e:
        compressed_to_numpy(SimpleNamespace(format="16UC1; compressedDepth png", data=bytes(5)))
    assert e.value.reason == "truncated"


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_too_large_refused_from_header(fmt):
    img = np.zeros((20, 30, 3), np.uint8)
    msg = numpy_to_compressed(img, fmt)
    with pytest.raises(ConversionError) as e:
        compressed_to_numpy(msg, max_pixels=599)
    assert e.value.reason == "too_large" and "30x20" in str(e.value)
    assert compressed_to_numpy(msg, max_pixels=600).shape == (20, 30, 3)


def test_compressed_flood_png_header_refused_before_decoding():
    # A PNG signature + IHDR claiming 100000 x 100000 pixels and nothing else.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + bytes(4)
    with pytest.raises(ConversionError) as e:
        to_rgb(SimpleNamespace(format="png", data=data))
    assert e.value.reason == "too_large"


def test_numpy_to_image_zero_size():
    with pytest.raises(ConversionError) as e:
        numpy_to_image(np.zeros((0, 5), np.uint8), "mono8")
    assert e.value.reason == "zero_size"


def test_numpy_to_image_unknown_encoding():
    with pytest.raises(ConversionError) as e:
        numpy_to_image(np.zeros((2, 2), np.uint8), "mono7")
    assert e.value.reason == "unknown_encoding" and "mono7" in str(e.value)


def test_module_has_no_ros_import_at_top_level():
    import ast
    import inspect

    import seg_perception.core.conversions as conv

    tree = ast.parse(inspect.getsource(conv))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [
        n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
    assert not any(x.split(".")[0] in {"rclpy", "sensor_msgs", "std_msgs"} for x in names)

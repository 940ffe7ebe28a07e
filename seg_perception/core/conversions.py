"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` <-> numpy.

Messages are duck-typed: anything with the ``sensor_msgs`` fields works, so the same functions
serve rclpy messages (``data`` is ``array.array('B')``), rosbags-deserialized messages (``data`` is
a numpy uint8 array) and plain ``bytes``/``bytearray``/``memoryview`` payloads. Nothing here imports
ROS at module level; :func:`numpy_to_image` and :func:`numpy_to_compressed` import ``sensor_msgs``
lazily.

Encoding names and array semantics follow cv_bridge (``sensor_msgs/image_encodings``):

============  ========  ========  ==============================================
encoding      dtype     channels  notes
============  ========  ========  ==============================================
rgb8, bgr8    uint8     3
rgba8, bgra8  uint8     4
mono8, 8UC1   uint8     1         returned as (H, W)
8UC3, 8UC4    uint8     3 / 4     channel order passed through (as cv_bridge)
mono16, 16UC1 uint16    1
16SC1         int16     1
32SC1         int32     1         e.g. panoptic id images
32FC1         float32   1         e.g. depth in metres; NaN/inf allowed
============  ========  ========  ==============================================

Display conversion rules used by :func:`to_rgb` (documented, not errors):

* mono / 1-channel 8-bit images are replicated to three gray channels;
* 16-bit unsigned images (``mono16``, ``16UC1``) are reduced to 8 bit by ``value >> 8``;
* signed integer and float images (``16SC1``, ``32SC1``, ``32FC1``) are min-max normalized over
  their *finite* values to 0..255; NaN and +-inf pixels become 0; a constant image becomes 0;
* alpha channels are dropped; ``8UC3``/``8UC4`` are taken to be RGB(A) already.

Every failure raises :class:`ConversionError` with a short ``reason`` key.
"""
from __future__ import annotations

import array
import re
import struct
import sys
import zlib
from typing import Any, Optional

import cv2
import numpy as np

__all__ = [
    "ConversionError",
    "MAX_PIXELS",
    "SUPPORTED_ENCODINGS",
    "image_to_numpy",
    "compressed_to_numpy",
    "to_rgb",
    "numpy_to_image",
    "numpy_to_compressed",
    "encoding_info",
]

#: Images with more than this many pixels (width * height) are refused before any allocation.
MAX_PIXELS = 40_000_000

#: encoding -> (numpy dtype, channels)
_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "8UC4": (np.dtype(np.uint8), 4),
    "16UC1": (np.dtype(np.uint16), 1),
    "16SC1": (np.dtype(np.int16), 1),
    "32SC1": (np.dtype(np.int32), 1),
    "32FC1": (np.dtype(np.float32), 1),
}

#: Encodings accepted by :func:`image_to_numpy`, :func:`to_rgb` and :func:`numpy_to_image`.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)

_REASONS = ("unknown_encoding", "zero_size", "short_data", "bad_step", "undecodable", "truncated",
            "too_large", "bad_dtype")

# compressed_depth_image_transport prepends a 12-byte ConfigHeader (int32 format enum, then the
# float32 depth quantization parameters A and B) to the PNG payload.
_DEPTH_HEADER = struct.Struct("<iff")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ConversionError(ValueError):
    """An image message could not be converted.

    Attributes:
        reason: short machine-readable key, one of ``"unknown_encoding"``, ``"zero_size"``,
            ``"short_data"``, ``"bad_step"``, ``"undecodable"`` (compressed payload corrupt or not
            JPEG/PNG), ``"truncated"`` (compressed payload ends before the image does),
            ``"too_large"``, ``"bad_dtype"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in _REASONS:  # programming error inside this module
            raise AssertionError(f"unknown ConversionError reason {reason!r}")
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _normalize_encoding(encoding: Any) -> str:
    """Canonical encoding name; accepts case variants such as ``"RGB8"`` or ``"16uc1"``."""
    enc = str(encoding).strip()
    if enc in _ENCODINGS:
        return enc
    for candidate in (enc.lower(), enc.upper()):
        if candidate in _ENCODINGS:
            return candidate
    raise ConversionError(
        "unknown_encoding",
        f"unsupported image encoding {encoding!r}; supported encodings are: "
        f"{', '.join(SUPPORTED_ENCODINGS)}. Republish the topic in one of these (e.g. with "
        f"image_proc or a cv_bridge conversion to 'rgb8').",
    )


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """Return ``(dtype, channels)`` for a supported encoding name.

    Raises:
        ConversionError: ``reason="unknown_encoding"``; the message lists the supported names.
    """
    return _ENCODINGS[_normalize_encoding(encoding)]


def _check_size(height: int, width: int, max_pixels: int, what: str = "image") -> None:
    """Refuse empty images and images larger than ``max_pixels`` (no allocation happens here)."""
    if height <= 0 or width <= 0:
        raise ConversionError(
            "zero_size",
            f"{what} has zero size (height={height}, width={width}); the publisher sent an empty "
            f"frame - check the camera driver, or drop such messages before converting.",
        )
    if height * width > max_pixels:
        raise ConversionError(
            "too_large",
            f"{what} of {width}x{height} = {height * width} pixels exceeds "
            f"max_pixels={max_pixels}; "
            f"pass a larger max_pixels=... if this size is intended, otherwise the message is "
            f"corrupt.",
        )


def _as_uint8_buffer(data: Any) -> np.ndarray:
    """View a message payload as a 1-D uint8 array, without copying where possible.

    Args:
        data: bytes, bytearray, memoryview, array.array, numpy array (any dtype) or a sequence of
            ints in 0..255.

    Returns:
        (N,) uint8 array; read-only when ``data`` is immutable (``bytes``).
    """
    if isinstance(data, np.ndarray):
        arr = data if data.flags.c_contiguous else np.ascontiguousarray(data)
        return arr.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        pass
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConversionError(
            "bad_dtype",
            f"message data of type {type(data).__name__} is not a byte buffer; expected bytes, "
            f"array.array('B'), memoryview or a numpy uint8 array.",
        ) from exc


def _is_compressed(msg: Any) -> bool:
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


# --------------------------------------------------------------------------------------------
# Image -> numpy
# --------------------------------------------------------------------------------------------
def image_to_numpy(msg: Any, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to a numpy array (cv_bridge "passthrough" semantics).

    Row padding (``step`` larger than ``width * channels * itemsize``) is skipped and
    ``is_bigendian`` is honoured for multi-byte types.

    Args:
        msg: object with ``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``.
        max_pixels: refuse images with more than this many pixels before allocating anything.

    Returns:
        (H, W) for 1-channel encodings, else (H, W, C); dtype per the table in the module
        docstring, native byte order. When no byte swap is needed the result is a view of
        ``msg.data`` (read-only for ``bytes`` payloads, possibly non-contiguous when rows are
        padded) - ``.copy()`` it before writing.

    Raises:
        ConversionError: reasons ``unknown_encoding``, ``zero_size``, ``too_large``, ``bad_step``,
            ``short_data``, ``bad_dtype``.
    """
    encoding = _normalize_encoding(msg.encoding)
    dtype, channels = _ENCODINGS[encoding]
    height, width = int(msg.height), int(msg.width)
    _check_size(height, width, max_pixels, what=f"{encoding} image")
    itemsize = dtype.itemsize
    row_bytes = width * channels * itemsize
    step = int(msg.step)
    if step < row_bytes:
        raise ConversionError(
            "bad_step",
            f"step={step} is smaller than width*channels*itemsize = {width}*{channels}*{itemsize} "
            f"= {row_bytes} for a {width}-pixel-wide {encoding} image; the publisher must set "
            f"step to at least {row_bytes} bytes per row.",
        )
    buf = _as_uint8_buffer(msg.data)
    needed = step * height
    if buf.size < needed:
        raise ConversionError(
            "short_data",
            f"{encoding} image data has {buf.size} bytes but step*height = {step}*{height} = "
            f"{needed} are required; the message is truncated or step/height are wrong.",
        )
    big = bool(msg.is_bigendian)
    wire = dtype.newbyteorder(">" if big else "<") if itemsize > 1 else dtype
    arr = np.ndarray(
        shape=(height, width, channels),
        dtype=wire,
        buffer=buf,
        strides=(step, channels * itemsize, itemsize),
    )
    if itemsize > 1 and big != (sys.byteorder == "big"):
        arr = arr.astype(dtype)  # byte swap into native order (copies)
    elif itemsize > 1:
        arr = arr.view(dtype)  # same bytes, native-order dtype object
    if channels == 1:
        arr = arr[:, :, 0]
    return arr


def _minmax_to_uint8(img: np.ndarray) -> np.ndarray:
    """Min-max normalize finite values of (H, W) numeric ``img`` to uint8; non-finite -> 0."""
    f = img.astype(np.float64 if img.dtype.itemsize >= 4 and img.dtype.kind in "iu" else np.float32)
    finite = np.isfinite(f)
    all_finite = bool(finite.all())
    vals = f if all_finite else f[finite]
    if vals.size == 0:
        return np.zeros(img.shape, dtype=np.uint8)
    lo, hi = float(vals.min()), float(vals.max())
    if hi <= lo:
        return np.zeros(img.shape, dtype=np.uint8)
    if not all_finite:
        f = np.where(finite, f, lo)
    if f.dtype == np.float32 and hi - lo > float(np.finfo(np.float32).max):
        f = f.astype(np.float64)  # the span itself overflows float32 (e.g. -3e38 .. 3e38)
    scale = 255.0 / (hi - lo)
    out = np.rint((f - lo) * scale)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2RGB)


def _image_to_rgb(msg: Any, max_pixels: int) -> np.ndarray:
    encoding = _normalize_encoding(msg.encoding)
    arr = image_to_numpy(msg, max_pixels=max_pixels)
    if encoding in ("rgb8", "8UC3"):
        return np.ascontiguousarray(arr)
    if encoding == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_BGR2RGB)
    if encoding in ("rgba8", "8UC4"):
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_BGRA2RGB)
    if encoding in ("mono8", "8UC1"):
        return _gray_to_rgb(arr)
    if encoding in ("mono16", "16UC1"):
        return _gray_to_rgb((arr >> 8).astype(np.uint8))
    # 16SC1, 32SC1, 32FC1
    return _gray_to_rgb(_minmax_to_uint8(arr))


# --------------------------------------------------------------------------------------------
# CompressedImage -> numpy
# --------------------------------------------------------------------------------------------
# The structure of a compressed payload is walked completely before any decoder runs, so the
# size that is checked against ``max_pixels`` is the size the decoder will allocate, and a
# payload that ends early never reaches the decoder (which would pad it with grey, libjpeg's
# "premature end" warning, instead of failing).

# libjpeg's jdmarker.c read_markers(): SOF0/1 (Huffman sequential), SOF2 (progressive) and SOF9/10
# (arithmetic) are decoded; the other frame types are refused by libjpeg (JERR_SOF_UNSUPPORTED).
_JPEG_SOF_DECODED = frozenset((0xC0, 0xC1, 0xC2, 0xC9, 0xCA))
_JPEG_SOF_OTHER = frozenset((0xC3, 0xC5, 0xC6, 0xC7, 0xC8, 0xCB, 0xCD, 0xCE, 0xCF))
# Segments libjpeg reads or skips by their length: DHT, DAC, DQT, DRI, DNL, APP0..15, COM.
_JPEG_SKIPPED = frozenset((0xC4, 0xCC, 0xDB, 0xDD, 0xDC, *range(0xE0, 0xF0), 0xFE))
# Stand-alone markers without a length: RST0..7 and TEM.
_JPEG_STANDALONE = frozenset((*range(0xD0, 0xD8), 0x01))
# Inside entropy-coded data 0xFF is followed by 0x00 (stuffing), RSTn or fill 0xFF; anything else
# is the next marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

_PNG_IHDR = struct.Struct(">IIBBBBB")
# PNG colour type -> (allowed bit depths, samples per pixel) (PNG spec 11.2.2)
_PNG_COLOUR = {0: ((1, 2, 4, 8, 16), 1), 2: ((8, 16), 3), 3: ((1, 2, 4, 8), 1),
               4: ((8, 16), 2), 6: ((8, 16), 4)}
# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def _fail(reason: str, what: str, detail: str) -> ConversionError:
    hint = {
        "truncated": "the data ends before the image does; the message was cut in transport or "
                     "by the recorder - resend it or drop it",
        "undecodable": "the payload is corrupt or not a JPEG/PNG the decoder accepts; check the "
                       "publisher's 'compressed' transport",
    }[reason]
    return ConversionError(reason, f"{what}: {detail}; {hint}.")


def _jpeg_size(data: bytes, what: str, max_pixels: int) -> tuple[int, int]:
    """Walk a whole JPEG (every marker segment and entropy-coded scan up to EOI) as libjpeg does.

    Stricter than libjpeg where libjpeg only warns: junk bytes before a marker and a missing
    EOI (libjpeg: "extraneous bytes", "premature end of JPEG file") are refused.

    Returns:
        (height, width) from the single SOF segment, already checked against ``max_pixels``.

    Raises:
        ConversionError: ``truncated``, ``undecodable``, ``zero_size``, ``too_large``.
    """
    n = len(data)
    i = 2  # after SOI (checked by the caller)
    size: Optional[tuple[int, int]] = None
    scans = 0
    while True:
        if i >= n:
            raise _fail("truncated", what, f"JPEG ends at byte {n} without an EOI marker")
        if data[i] != 0xFF:
            raise _fail("undecodable", what,
                        f"JPEG byte 0x{data[i]:02x} at offset {i} where a marker must start "
                        f"(junk before a marker)")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise _fail("truncated", what, f"JPEG ends inside a marker at byte {n}")
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            if scans == 0:
                raise _fail("undecodable", what, "JPEG has no image data (EOI before any scan)")
            return size  # type: ignore[return-value]  # a scan implies a SOF
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD8 or marker == 0x00:
            raise _fail("undecodable", what, f"unexpected JPEG marker 0xff{marker:02x} at offset {i - 2}")
        if i + 2 > n:
            raise _fail("truncated", what, f"JPEG ends inside the length of marker 0xff{marker:02x}")
        seg_len = (data[i] << 8) | data[i + 1]
        if seg_len < 2:
            raise _fail("undecodable", what, f"JPEG marker 0xff{marker:02x} at offset {i - 2} has length {seg_len}")
        end = i + seg_len
        if end > n:
            raise _fail("truncated", what,
                        f"JPEG segment 0xff{marker:02x} at offset {i - 2} needs {seg_len} bytes, "
                        f"{n - i} are left")
        if marker in _JPEG_SOF_DECODED:
            if size is not None:
                raise _fail("undecodable", what, f"JPEG has a second frame header (SOF) at offset {i - 2}")
            if seg_len < 8:
                raise _fail("undecodable", what, f"JPEG frame header at offset {i - 2} is {seg_len} bytes")
            height = (data[i + 3] << 8) | data[i + 4]
            width = (data[i + 5] << 8) | data[i + 6]
            comps = data[i + 7]
            if seg_len != 8 + 3 * comps or comps == 0:
                raise _fail("undecodable", what,
                            f"JPEG frame header length {seg_len} does not fit its {comps} components")
            _check_size(height, width, max_pixels, what=what)
            size = (height, width)
        elif marker in _JPEG_SOF_OTHER:
            raise _fail("undecodable", what,
                        f"JPEG frame type 0xff{marker:02x} (lossless/hierarchical) is not supported")
        elif marker == 0xDA:  # SOS: then entropy-coded data up to the next marker
            if size is None:
                raise _fail("undecodable", what, f"JPEG scan at offset {i - 2} before any frame header")
            scans += 1
            found = _JPEG_NEXT_MARKER.search(data, end)
            if found is None:
                raise _fail("truncated", what, f"JPEG scan {scans} runs to the end of the data (no EOI)")
            i = found.start()
            continue
        elif marker not in _JPEG_SKIPPED:
            raise _fail("undecodable", what, f"unknown JPEG marker 0xff{marker:02x} at offset {i - 2}")
        i = end


def _png_raw_bytes(height: int, width: int, depth: int, samples: int, interlace: int) -> int:
    """Bytes of filtered scanlines (filter byte + packed samples per row) the IDAT stream holds."""
    def rows(h: int, w: int) -> int:
        return 0 if h == 0 or w == 0 else h * (1 + (w * samples * depth + 7) // 8)
    if not interlace:
        return rows(height, width)
    return sum(rows((height - y0 + dy - 1) // dy if height > y0 else 0,
                    (width - x0 + dx - 1) // dx if width > x0 else 0)
               for x0, y0, dx, dy in _ADAM7)


def _png_size(data: bytes, what: str, max_pixels: int) -> tuple[int, int]:
    """Walk every PNG chunk (lengths, CRCs, IHDR first, IDAT stream complete, IEND) as libpng does.

    The IDAT zlib stream is inflated in bounded pieces and discarded, only to check that it holds
    exactly the bytes the IHDR promises (libpng reports "Not enough image data" otherwise).

    Returns:
        (height, width) from IHDR, already checked against ``max_pixels``.

    Raises:
        ConversionError: ``truncated``, ``undecodable``, ``zero_size``, ``too_large``.
    """
    n = len(data)
    i = 8
    size: Optional[tuple[int, int]] = None
    inflater = zlib.decompressobj()
    inflated = 0
    expected = 0
    idat_done = False
    while True:
        if i + 8 > n:
            raise _fail("truncated", what, f"PNG ends at byte {n} without an IEND chunk")
        length = int.from_bytes(data[i:i + 4], "big")
        ctype = data[i + 4:i + 8]
        if length > 0x7FFFFFFF:
            raise _fail("undecodable", what, f"PNG chunk at offset {i} claims {length} bytes")
        if i + 12 + length > n:
            raise _fail("truncated", what,
                        f"PNG chunk {ctype!r} at offset {i} needs {length + 12} bytes, {n - i} are left")
        body = data[i + 8:i + 8 + length]
        crc = int.from_bytes(data[i + 8 + length:i + 12 + length], "big")
        if size is None:
            if ctype != b"IHDR" or length != _PNG_IHDR.size:
                raise _fail("undecodable", what,
                            f"PNG chunk {ctype!r} at offset {i} comes before the IHDR (must be first)")
            width, height, depth, colour, comp, filt, interlace = _PNG_IHDR.unpack(body)
            allowed = _PNG_COLOUR.get(colour)
            if (allowed is None or depth not in allowed[0] or comp or filt or interlace > 1
                    or width > 0x7FFFFFFF or height > 0x7FFFFFFF):
                raise _fail("undecodable", what,
                            f"PNG IHDR is invalid (bit depth {depth}, colour type {colour}, "
                            f"compression {comp}, filter {filt}, interlace {interlace})")
            _check_size(height, width, max_pixels, what=what)
            size = (height, width)
            expected = _png_raw_bytes(height, width, depth, allowed[1], interlace)
        if zlib.crc32(body, zlib.crc32(ctype)) != crc:  # after the size check: a bomb says too_large
            raise _fail("undecodable", what, f"PNG chunk {ctype!r} at offset {i} fails its CRC")
        if ctype == b"IHDR" and i > 8:
            raise _fail("undecodable", what, f"PNG has a second IHDR at offset {i}")
        elif ctype == b"IDAT":
            if idat_done:
                raise _fail("undecodable", what, f"PNG IDAT at offset {i} after the image data ended")
            try:
                chunk = inflater.decompress(body, 1 << 20)
                while True:
                    inflated += len(chunk)
                    if inflated > expected:
                        raise _fail("undecodable", what,
                                    f"PNG image data inflates to more than the {expected} bytes its IHDR needs")
                    if not inflater.unconsumed_tail:
                        break
                    chunk = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
            except zlib.error as exc:
                raise _fail("undecodable", what, f"PNG image data is corrupt (zlib: {exc})") from None
            idat_done = inflater.eof
        elif ctype == b"IEND":
            if not inflater.eof or inflated != expected:
                raise _fail("truncated", what,
                            f"PNG image data holds {inflated} of the {expected} bytes its IHDR needs")
            return size
        i += 12 + length


def _payload_size(data: bytes, what: str, max_pixels: int) -> tuple[int, int]:
    """(height, width) of a JPEG or PNG payload after a full structural check (see above)."""
    if data[:8] == _PNG_MAGIC:
        return _png_size(data, what, max_pixels)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data, what, max_pixels)
    if len(data) < len(_PNG_MAGIC) and _PNG_MAGIC.startswith(data):
        raise _fail("truncated", what, f"only {len(data)} bytes of a PNG signature")
    raise _fail("undecodable", what,
                f"{len(data)} bytes that are neither JPEG nor PNG (first bytes {data[:8]!r}); only "
                f"JPEG and PNG payloads are supported")


def _depth_format(fmt: str) -> Optional[str]:
    """Encoding of a compressed_depth_image_transport format string, None for other formats.

    compressed_depth_image_transport (codec.cpp, decodeCompressedDepthImage) takes the encoding
    before ';' and the codec from the rest: "compressedDepth png", "compressedDepth rvl", or a bare
    "compressedDepth" (png).
    """
    if "compresseddepth" not in fmt.lower().replace(" ", ""):
        return None
    head, sep, tail = fmt.partition(";")
    if "compresseddepthrvl" in tail.lower().replace(" ", ""):
        raise ConversionError(
            "undecodable",
            f"compressedDepth image with format {fmt!r} uses the RVL codec, which is not supported; "
            f"set the publisher's compressed_depth format parameter to png.")
    return head.strip() if sep else ""


def compressed_to_numpy(msg: Any, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG, as image_transport writes it).

    ``msg.format`` may be a bare ``"jpeg"``/``"png"`` or the image_transport style
    ``"rgb8; jpeg compressed bgr8"``; the payload itself is identified by its magic bytes, so a
    wrong format string does not matter.

    compressed_depth_image_transport payloads (``"16UC1; compressedDepth png"``,
    ``"32FC1; compressedDepth png"``) are decoded too. Their layout, checked against
    ros-perception/image_transport_plugins (compression_common.h ``ConfigHeader``, codec.cpp
    ``encodeCompressedDepthImage`` / ``decodeCompressedDepthImage``, commit 7404d77): a 12-byte
    native-order header ``{int32 format (INV_DEPTH = 0); float32 depthParam[2]}`` followed by a
    16-bit single-channel PNG. 16UC1 is the PNG itself; for 32FC1 the PNG holds quantized inverse
    depth and ``depth = depthParam[0] / (value - depthParam[1])``, value 0 -> NaN. The PNG is
    checked by the same rules as any other (size limit, truncation).

    Before decoding, the whole payload structure is walked (JPEG: every marker and scan up to
    EOI, exactly one frame header; PNG: chunk lengths and CRCs, IHDR first, the IDAT stream
    complete, IEND), so nothing larger than ``max_pixels`` is allocated and a cut-off payload is
    refused instead of decoded with grey padding.

    Args:
        msg: object with ``format`` (str) and ``data`` (bytes-like or numpy uint8).
        max_pixels: refuse images with more pixels, from the header, before the decoder runs.

    Returns:
        (H, W, 3) uint8 RGB for colour images (alpha dropped), (H, W) for gray images
        (uint8, or uint16 for 16-bit PNG and 16UC1 compressedDepth), (H, W) float32 metres for
        32FC1 compressedDepth.

    Raises:
        ConversionError: reasons ``undecodable`` (empty, not JPEG/PNG, corrupt structure, CRC or
            zlib errors, unsupported JPEG type or depth codec), ``truncated`` (the data ends before
            the image does), ``too_large``, ``zero_size``.
    """
    fmt = str(getattr(msg, "format", ""))
    what = f"compressed image (format {fmt!r})"
    buf = _as_uint8_buffer(msg.data)
    depth_encoding = _depth_format(fmt)
    depth_params: Optional[tuple[int, float, float]] = None
    if depth_encoding is not None:
        if buf.size <= _DEPTH_HEADER.size:
            raise ConversionError(
                "truncated" if buf.size else "undecodable",
                f"compressedDepth image with format {fmt!r} has only {buf.size} bytes, not even "
                f"its {_DEPTH_HEADER.size}-byte header and a PNG; the message is empty or truncated.",
            )
        depth_params = _DEPTH_HEADER.unpack(buf[: _DEPTH_HEADER.size].tobytes())
        buf = buf[_DEPTH_HEADER.size:]
    if buf.size == 0:
        raise ConversionError(
            "undecodable",
            f"compressed image (format {fmt!r}) has empty data; the publisher sent no payload.",
        )
    data = buf.tobytes()
    if depth_encoding is not None and not _PNG_MAGIC.startswith(data[:8]):
        raise _fail("undecodable", what, f"the compressedDepth payload after its header is not a PNG "
                                         f"(first bytes {data[:8]!r})")
    height, width = _payload_size(data, what, max_pixels)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.shape[:2] != (height, width):
        got = "nothing" if img is None else f"{img.shape[1]}x{img.shape[0]}"
        raise _fail("undecodable", what, f"the decoder returned {got} for a {width}x{height} image")
    if depth_params is not None and depth_encoding.upper() == "32FC1":
        if img.dtype != np.uint16 or img.ndim != 2:
            raise _fail("undecodable", what, f"32FC1 compressedDepth needs a 16-bit gray PNG, got "
                                             f"{img.dtype} with shape {img.shape}")
        _, quant_a, quant_b = depth_params
        inv = img.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = (np.float32(quant_a) / (inv - np.float32(quant_b))).astype(np.float32)
        depth[img == 0] = np.nan
        return depth
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[:, :, 0]
    if img.dtype != np.uint8:  # 16-bit colour PNG: display depth
        img = (img >> 8).astype(np.uint8)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)


def to_rgb(msg: Any, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Convert an Image or CompressedImage message to a displayable / network-ready RGB array.

    The message type is detected by the presence of a ``format`` attribute (CompressedImage).
    Conversion rules for non-RGB encodings are listed in the module docstring.

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous. For ``rgb8`` input this may be a (read-only) view of
        the message data - copy before writing.

    Raises:
        ConversionError: see :func:`image_to_numpy` and :func:`compressed_to_numpy`.
    """
    if not _is_compressed(msg):
        return _image_to_rgb(msg, max_pixels)
    img = compressed_to_numpy(msg, max_pixels=max_pixels)
    if img.ndim == 3:
        return img
    if img.dtype == np.uint8:
        return _gray_to_rgb(img)
    if img.dtype == np.uint16:
        return _gray_to_rgb((img >> 8).astype(np.uint8))
    return _gray_to_rgb(_minmax_to_uint8(img))


# --------------------------------------------------------------------------------------------
# numpy -> messages
# --------------------------------------------------------------------------------------------
def _bytes_array(arr: np.ndarray) -> array.array:
    """Copy a numpy array's bytes into ``array.array('B')`` (what rclpy stores, fast path)."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return out


def _matching_encodings(arr: np.ndarray) -> list[str]:
    channels = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    return [e for e, (dt, ch) in _ENCODINGS.items() if dt == arr.dtype and ch == channels]


def numpy_to_image(arr: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Build a ``sensor_msgs.msg.Image`` from an array.

    Args:
        arr: (H, W) or (H, W, 1) for 1-channel encodings, (H, W, C) otherwise; dtype must match
            the encoding (e.g. uint8 for mono8/rgb8, uint16 for mono16, int32 for 32SC1,
            float32 for 32FC1). Non-native byte order is converted.
        encoding: one of :data:`SUPPORTED_ENCODINGS`.
        header: ``std_msgs.msg.Header`` to copy stamp/frame_id from (default: empty header).

    Returns:
        ``sensor_msgs.msg.Image`` with ``step = width * channels * itemsize`` and
        ``is_bigendian`` set to this machine's byte order.

    Raises:
        ConversionError: ``unknown_encoding``, ``bad_dtype`` (dtype/channels do not fit the
            encoding; the message suggests matching encodings), ``zero_size``.
    """
    from sensor_msgs.msg import Image  # lazy: keep the module importable without ROS

    enc = _normalize_encoding(encoding)
    dtype, channels = _ENCODINGS[enc]
    arr = np.asarray(arr)
    if arr.dtype.kind == dtype.kind and arr.dtype.itemsize == dtype.itemsize:
        arr = arr.astype(dtype, copy=False)  # only fixes byte order
    shape_ok = (arr.ndim == 2 and channels == 1) or (arr.ndim == 3 and arr.shape[2] == channels)
    if arr.dtype != dtype or not shape_ok:
        want_shape = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        others = _matching_encodings(arr)
        hint = f"; arrays like this fit encodings {others}" if others else ""
        raise ConversionError(
            "bad_dtype",
            f"encoding {enc!r} needs a {want_shape} {dtype.name} array, got shape {arr.shape} "
            f"dtype {arr.dtype}; convert with arr.astype(np.{dtype.name}) or choose another "
            f"encoding{hint}.",
        )
    height, width = int(arr.shape[0]), int(arr.shape[1])
    _check_size(height, width, sys.maxsize, what="array")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height = height
    msg.width = width
    msg.encoding = enc
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = width * channels * dtype.itemsize
    msg.data = _bytes_array(arr)
    return msg


def numpy_to_compressed(
    rgb: np.ndarray, fmt: str = "jpeg", header: Any = None, quality: int = 90
) -> Any:
    """Encode an image into a ``sensor_msgs.msg.CompressedImage``.

    Args:
        rgb: (H, W, 3) uint8 RGB, or (H, W) uint8 gray; (H, W) uint16 is allowed for PNG.
        fmt: ``"jpeg"`` (alias ``"jpg"``) or ``"png"``.
        header: ``std_msgs.msg.Header`` (default: empty header).
        quality: JPEG quality 1..100 (ignored for PNG, which is lossless).

    Returns:
        ``sensor_msgs.msg.CompressedImage`` whose ``format`` follows image_transport, e.g.
        ``"rgb8; jpeg compressed bgr8"`` or ``"mono8; png compressed mono8"``.

    Raises:
        ConversionError: ``unknown_encoding`` (bad ``fmt``), ``bad_dtype``, ``zero_size``.
        ValueError: ``quality`` outside 1..100.
    """
    from sensor_msgs.msg import CompressedImage  # lazy import

    kind = str(fmt).strip().lower()
    kind = {"jpg": "jpeg"}.get(kind, kind)
    if kind not in ("jpeg", "png"):
        raise ConversionError(
            "unknown_encoding",
            f"unsupported compressed format {fmt!r}; use 'jpeg' or 'png'.",
        )
    int_like = isinstance(quality, (int, np.integer)) and not isinstance(quality, bool)
    if not int_like or not 1 <= quality <= 100:
        raise ValueError(f"quality={quality!r} must be an integer in 1..100 (JPEG quality)")
    img = np.asarray(rgb)
    if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        src_enc, dst_enc = "rgb8", "bgr8"
        payload = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    elif img.ndim == 2 and img.dtype == np.uint8:
        src_enc = dst_enc = "mono8"
        payload = np.ascontiguousarray(img)
    elif img.ndim == 2 and img.dtype == np.uint16 and kind == "png":
        src_enc = dst_enc = "mono16"
        payload = np.ascontiguousarray(img)
    else:
        raise ConversionError(
            "bad_dtype",
            f"cannot {kind}-encode an array of shape {img.shape} dtype {img.dtype}; pass (H, W, 3) "
            f"uint8 RGB or (H, W) uint8 gray (uint16 gray only with fmt='png').",
        )
    _check_size(int(img.shape[0]), int(img.shape[1]), sys.maxsize, what="array")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if kind == "jpeg" else ".png", payload, params)
    if not ok:  # pragma: no cover - OpenCV failure on valid input
        raise ConversionError("undecodable", f"OpenCV failed to {kind}-encode a {img.shape} image")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"{src_enc}; {kind} compressed {dst_enc}"
    msg.data = _bytes_array(encoded)
    return msg

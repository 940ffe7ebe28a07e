"""Hostile compressed payloads: decompression bombs in any header layout, truncation, compressedDepth.

The decoder (OpenCV's libjpeg / libpng, ``cv2.imdecode``) is the oracle for what a layout means:
legal layouts must decode exactly as ``cv2.imdecode`` decodes them, and no layout may make the
decoder allocate more than ``max_pixels`` (measured with tracemalloc in-process and with the
peak RSS of a child process).
"""
from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg_perception.core.conversions import ConversionError, compressed_to_numpy, image_to_numpy, to_rgb

LIMIT = 250_000  # pixels allowed in these tests
BIG = (2000, 1500)  # (height, width) claimed by hostile headers: 3 M pixels, 12x the limit


def _smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 2)


def _encode(ext: str, img: np.ndarray, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split an encoder-made JPEG into [(marker, segment body)] before the first SOS, and the rest."""
    segs, i = [], 2
    while data[i + 1] != 0xDA:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        segs.append((marker, data[i + 4:i + 2 + length]))
        i += 2 + length
    return segs, data[i:]


def _join(segs: list[tuple[int, bytes]], rest: bytes, junk: dict[int, bytes] = {}) -> bytes:
    out = bytearray(b"\xff\xd8")
    for k, (marker, body) in enumerate(segs):
        out += junk.get(k, b"") + bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body
    return bytes(out + rest)


def _with_size(sof_body: bytes, hw: tuple[int, int]) -> bytes:
    return sof_body[:1] + struct.pack(">HH", *hw) + sof_body[5:]


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(ctype)))


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 8
    while i < len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        out.append((data[i + 4:i + 8], data[i + 8:i + 8 + n]))
        i += 12 + n
    return out


def _png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(_png_chunk(t, b) for t, b in chunks)


class _DecodeSpy:
    """Wraps cv2.imdecode to record the pixel count of everything it returned."""

    def __init__(self) -> None:
        self.decoded: list[int] = []
        self._real = cv2.imdecode

    def __call__(self, buf, flags):
        img = self._real(buf, flags)
        if img is not None:
            self.decoded.append(int(img.shape[0]) * int(img.shape[1]))
        return img


def _check_bounded(data: bytes, monkeypatch, fmt: str = "jpeg") -> tuple[object, int]:
    """Convert ``data`` under a decode spy and tracemalloc; returns (result or error, peak bytes)."""
    spy = _DecodeSpy()
    monkeypatch.setattr(cv2, "imdecode", spy)
    tracemalloc.start()
    try:
        try:
            result: object = compressed_to_numpy(SimpleNamespace(format=fmt, data=data), max_pixels=LIMIT)
        except ConversionError as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        monkeypatch.setattr(cv2, "imdecode", spy._real)
    assert all(n <= LIMIT for n in spy.decoded), f"decoder allocated {spy.decoded} pixels (limit {LIMIT})"
    # The payload is copied once (bytes) and the image is at most LIMIT RGB pixels (+ a colour copy).
    assert peak < 3 * len(data) + 2 * 4 * LIMIT + (1 << 20), f"peak allocation {peak} bytes"
    return result, peak


# ----------------------------------------------------------------------------------- JPEG layouts
_BASE = _encode(".jpg", _smooth(24, 40))
_PROG = _encode(".jpg", _smooth(24, 40), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))


@st.composite
def hostile_jpeg(draw):
    """A JPEG whose header layout is hostile in one or more ways; claims BIG somewhere."""
    segs, rest = _jpeg_segments(draw(st.sampled_from([_BASE, _PROG])))
    sof_at = next(k for k, (m, _) in enumerate(segs) if m in (0xC0, 0xC2))
    sof_marker, sof_body = segs[sof_at]
    tricks = draw(st.sets(st.sampled_from(
        ["big_sof", "junk_before_sof", "junk_before_other", "app_64k", "second_big_sof", "first_big_sof",
         "fill_bytes", "sof_in_com", "truncate", "sof_marker_swap"]), min_size=1))
    junk: dict[int, bytes] = {}
    if "app_64k" in tricks:  # legal APP segments totalling > 64 KB before the frame header
        apps = [(0xE1 + k % 14, bytes(draw(st.integers(60000, 65000)))) for k in range(draw(st.integers(1, 3)))]
        segs = segs[:sof_at] + apps + segs[sof_at:]
        sof_at += len(apps)
    if "big_sof" in tricks:
        segs[sof_at] = (sof_marker, _with_size(sof_body, BIG))
    if "sof_marker_swap" in tricks:  # baseline <-> progressive / arithmetic frame types
        segs[sof_at] = (draw(st.sampled_from([0xC0, 0xC1, 0xC2, 0xC9, 0xCA])), segs[sof_at][1])
    if "second_big_sof" in tricks:
        segs.insert(sof_at + 1, (sof_marker, _with_size(sof_body, BIG)))
    if "first_big_sof" in tricks:
        segs.insert(sof_at, (sof_marker, _with_size(sof_body, BIG)))
        sof_at += 1
    if "sof_in_com" in tricks:  # a frame header hidden inside a comment is only comment text
        segs.insert(0, (0xFE, b"\xff\xc0" + struct.pack(">H", len(sof_body) + 2) + _with_size(sof_body, BIG)))
        sof_at += 1
    if "junk_before_sof" in tricks:
        junk[sof_at] = bytes(draw(st.lists(st.integers(0, 0xFE), min_size=1, max_size=4)))
    if "junk_before_other" in tricks:
        junk[draw(st.integers(0, len(segs) - 1))] = bytes(draw(st.lists(st.integers(0, 0xFE), min_size=1, max_size=4)))
    data = _join(segs, rest, junk)
    if "fill_bytes" in tricks:  # legal 0xFF fill before a marker
        data = data[:2] + b"\xff" * draw(st.integers(1, 5)) + data[2:]
    if "truncate" in tricks:
        data = data[: draw(st.integers(2, len(data) - 1))]
    return tricks, data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=hostile_jpeg())
def test_hostile_jpeg_layouts_never_allocate_past_the_limit(case, monkeypatch):
    tricks, data = case
    result, _ = _check_bounded(data, monkeypatch)
    if isinstance(result, np.ndarray):
        # Whatever is accepted must be exactly what the decoder makes of it.
        ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert ref is not None
        np.testing.assert_array_equal(result, cv2.cvtColor(ref, cv2.COLOR_BGR2RGB))
        assert tricks <= {"app_64k", "fill_bytes", "sof_in_com", "sof_marker_swap"}, tricks
    else:
        assert result.reason in ("too_large", "truncated", "undecodable"), result


@pytest.mark.parametrize("trick", ["app_64k", "fill_bytes", "sof_in_com", "progressive", "restart_markers"])
def test_legal_jpeg_layouts_decode_as_libjpeg_does(trick):
    img = _smooth(30, 50, 3)
    params = {"progressive": (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "restart_markers": (cv2.IMWRITE_JPEG_RST_INTERVAL, 1)}
    data = _encode(".jpg", img, params.get(trick, ()))
    segs, rest = _jpeg_segments(data)
    if trick == "app_64k":
        segs = [(0xE1, bytes(65000)), (0xE2, bytes(65000))] + segs
    if trick == "sof_in_com":
        segs = [(0xFE, b"\xff\xc0\x00\x11\x08\x7f\xff\x7f\xff\x03")] + segs
    data = _join(segs, rest)
    if trick == "fill_bytes":
        data = data[:2] + b"\xff\xff\xff" + data[2:]
    out = compressed_to_numpy(SimpleNamespace(format="jpeg", data=data), max_pixels=30 * 50)
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(out, cv2.cvtColor(ref, cv2.COLOR_BGR2RGB))


# ------------------------------------------------------------------------------------ PNG layouts
_PNG = _encode(".png", _smooth(20, 30))


@st.composite
def hostile_png(draw):
    chunks = _png_chunks(draw(st.sampled_from([_PNG, _encode(".png", _smooth(20, 30)[:, :, 0])])))
    tricks = draw(st.sets(st.sampled_from(
        ["big_ihdr", "chunk_before_ihdr", "second_big_ihdr", "text_chunks", "truncate", "cut_idat",
         "bad_crc"]), min_size=1))
    ihdr = chunks[0][1]
    big = struct.pack(">II", BIG[1], BIG[0]) + ihdr[8:]
    if "big_ihdr" in tricks:
        chunks[0] = (b"IHDR", big)
    if "second_big_ihdr" in tricks:
        chunks.insert(1, (b"IHDR", big))
    if "text_chunks" in tricks:  # legal ancillary chunks
        chunks.insert(1, (b"tEXt", b"Comment\x00" + bytes(draw(st.integers(0, 70000)))))
    if "chunk_before_ihdr" in tricks:
        chunks.insert(0, (draw(st.sampled_from([b"tEXt", b"gAMA", b"IDAT"])), b"\x00\x00\xb1\x8f"))
    if "cut_idat" in tricks:  # zlib stream cut short, chunk CRCs and IEND intact
        k = next(i for i, (t, _) in enumerate(chunks) if t == b"IDAT")
        chunks[k] = (b"IDAT", chunks[k][1][: draw(st.integers(0, len(chunks[k][1]) - 1))])
    data = _png_join(chunks)
    if "bad_crc" in tricks:
        data = data[:29] + bytes([data[29] ^ 1]) + data[30:]  # last CRC byte of IHDR
    if "truncate" in tricks:
        data = data[: draw(st.integers(1, len(data) - 1))]
    return tricks, data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=hostile_png())
def test_hostile_png_layouts_never_allocate_past_the_limit(case, monkeypatch):
    tricks, data = case
    result, _ = _check_bounded(data, monkeypatch, fmt="png")
    if isinstance(result, np.ndarray):
        ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert ref is not None
        want = ref if ref.ndim == 2 else cv2.cvtColor(ref, cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(result, want)
        assert tricks == {"text_chunks"}, tricks
    else:
        assert result.reason in ("too_large", "truncated", "undecodable"), result


# ------------------------------------------------------------------------------------- truncation
@pytest.mark.parametrize("ext,params", [(".jpg", ()), (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
                                        (".png", ()), (".png", (cv2.IMWRITE_PNG_COMPRESSION, 0))])
def test_every_truncation_of_a_valid_payload_is_refused_as_truncated(ext, params):
    data = _encode(ext, _smooth(12, 20, 5), params)
    assert compressed_to_numpy(SimpleNamespace(format="x", data=data)).shape == (12, 20, 3)
    step = max(1, len(data) // 300)
    for cut in [*range(2, len(data), step), len(data) - 1]:
        with pytest.raises(ConversionError) as e:
            compressed_to_numpy(SimpleNamespace(format="x", data=data[:cut]))
        assert e.value.reason == "truncated", (cut, str(e.value))


def test_png_adam7_stream_length_rule_matches_the_spec():
    """Interlaced PNG (written by hand: OpenCV cannot) decodes identically through libpng."""
    img = _smooth(13, 11, 9)
    rows = []
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = img[y0::dy, x0::dx]
        if sub.size:
            rows += [b"\x00" + r.tobytes() for r in sub]
    ihdr = struct.pack(">IIBBBBB", 11, 13, 8, 2, 0, 0, 1)
    data = _png_join([(b"IHDR", ihdr), (b"IDAT", zlib.compress(b"".join(rows))), (b"IEND", b"")])
    out = compressed_to_numpy(SimpleNamespace(format="png", data=data))
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out, img)
    short = _png_join([(b"IHDR", ihdr), (b"IDAT", zlib.compress(b"".join(rows)[:-5])), (b"IEND", b"")])
    with pytest.raises(ConversionError) as e:
        compressed_to_numpy(SimpleNamespace(format="png", data=short))
    assert e.value.reason == "truncated"


def test_other_formats_the_decoder_knows_are_refused():
    """cv2.imdecode also reads BMP, TIFF, WebP, PPM...; their sizes are not checked, so refuse them."""
    img = _smooth(8, 8)
    for ext in (".bmp", ".tiff", ".ppm"):
        with pytest.raises(ConversionError) as e:
            compressed_to_numpy(SimpleNamespace(format="jpeg", data=_encode(ext, img)))
        assert e.value.reason == "undecodable" and "neither JPEG nor PNG" in str(e.value)


# ------------------------------------------------------------------------- the issue's instances
_RSS_CHILD = textwrap.dedent("""
    import resource, struct, sys
    from types import SimpleNamespace
    import cv2, numpy as np
    from seg_perception.core.conversions import ConversionError, to_rgb
    ok, buf = cv2.imencode('.jpg', np.full((24, 40, 3), 90, np.uint8))
    data = buf.tobytes()
    i = data.index(b'\\xff\\xc0')
    big = data[:i + 5] + struct.pack('>HH', 6000, 8000) + data[i + 9:]
    cases = {
        'junk_byte_before_sof': big[:i] + b'\\x00' + big[i:],
        'sof_after_64k_of_app': big[:2] + (b'\\xff\\xe1' + struct.pack('>H', 65000) + bytes(64998)) + big[2:],
    }
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reasons = []
    for name, payload in cases.items():
        try:
            to_rgb(SimpleNamespace(format='rgb8; jpeg compressed bgr8', data=payload))
            reasons.append(name + ':accepted')
        except ConversionError as exc:
            reasons.append(name + ':' + exc.reason)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(' '.join(reasons), round(grown_mb, 1))
""")


def test_issue_28_jpeg_bombs_refused_without_rss_growth():
    """#28: a junk byte before the SOF, and a SOF after 64 KB of APP segments, claiming 8000x6000
    (48 M pixels > MAX_PIXELS): both refused, peak RSS of the process grows < 20 MB."""
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reasons, grown = out.stdout.split()[:-1], float(out.stdout.split()[-1])
    # libjpeg only warns about junk before a marker; it is refused as corrupt before the size matters
    assert reasons == ["junk_byte_before_sof:undecodable", "sof_after_64k_of_app:too_large"], out.stdout
    assert grown < 20, f"peak RSS grew by {grown} MB"


# -------------------------------------------------------------------------------- compressedDepth
def _depth_msg(enc: str, png: bytes, a: float = 0.0, b: float = 0.0, codec: str = "png") -> SimpleNamespace:
    # compressed_depth_image_transport: ConfigHeader {int32 format = INV_DEPTH (0); float32 depthParam[2]}
    return SimpleNamespace(format=f"{enc}; compressedDepth {codec}", data=struct.pack("<iff", 0, a, b) + png)


def test_compressed_depth_to_rgb_follows_the_mono16_path():
    depth = np.random.default_rng(11).integers(0, 65535, size=(7, 9), dtype=np.uint16)
    msg = _depth_msg("16UC1", _encode(".png", depth))
    raw = SimpleNamespace(height=7, width=9, encoding="mono16", is_bigendian=0, step=18, data=depth.tobytes())
    np.testing.assert_array_equal(compressed_to_numpy(msg), image_to_numpy(raw))
    np.testing.assert_array_equal(to_rgb(msg), to_rgb(raw))


@pytest.mark.parametrize("enc", ["16UC1", "32FC1"])
def test_compressed_depth_by_the_same_rules(enc):
    depth = np.random.default_rng(12).integers(1, 4000, size=(10, 12), dtype=np.uint16)
    png = _encode(".png", depth)
    ok = compressed_to_numpy(_depth_msg(enc, png, 101.0 * 100.0, -1000.0))
    assert ok.shape == (10, 12)
    for cut in range(13, len(png) + 12, 9):  # truncated anywhere after the header
        with pytest.raises(ConversionError) as e:
            compressed_to_numpy(SimpleNamespace(format=f"{enc}; compressedDepth png",
                                                data=_depth_msg(enc, png).data[:cut]))
        assert e.value.reason == "truncated"
    chunks = _png_chunks(png)
    chunks[0] = (b"IHDR", struct.pack(">II", 20000, 20000) + chunks[0][1][8:])
    with pytest.raises(ConversionError) as e:
        compressed_to_numpy(_depth_msg(enc, _png_join(chunks)))
    assert e.value.reason == "too_large"
    with pytest.raises(ConversionError) as e:  # the depth codec only carries PNG
        compressed_to_numpy(_depth_msg(enc, _encode(".jpg", np.zeros((8, 8), np.uint8))))
    assert e.value.reason == "undecodable" and "not a PNG" in str(e.value)
    with pytest.raises(ConversionError) as e:
        compressed_to_numpy(_depth_msg(enc, bytes(40), codec="rvl"))
    assert e.value.reason == "undecodable" and "RVL" in str(e.value)

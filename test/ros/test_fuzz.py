"""Fuzz segment_node over real ROS 2: >= 1,000 malformed messages mixed with valid frames.

A seeded generator builds every message together with the reason the node must give for it
(``None`` = valid). Each malformed message is built so that exactly one defect is hit by the
node's check order (encoding -> size -> step -> data length). The test then checks that

* the node process stays alive,
* every valid frame is answered on ``~/semantic`` (same stamp, same size): malformed messages
  sent right after a valid frame must not displace it from the newest-frame slot,
* ``/diagnostics`` counts each rejection by reason, exactly as the generator produced them.

Valid frames are tiny (<= 48x64) and the network runs at 32x64 so the run stays short; corpus
size and outcome are recorded in docs/RELIABILITY.md.
"""
from __future__ import annotations

import collections
import random
import string
import struct
import zlib
from typing import Optional

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from seg_perception.core.conversions import MAX_PIXELS, SUPPORTED_ENCODINGS, encoding_info, numpy_to_compressed
from seg_perception.datasets.synthetic import make_scene

from .rostest_utils import Harness, node_process

pytestmark = pytest.mark.ros

NS = "/fuzz"
SEED = 20240607
N_MALFORMED = 1000
N_VALID = 80
MAX_BURST = 25  # malformed messages between two valid frames (< the node's qos_depth)
NODE_PARAMS = {"model": "hrnetv2_w18_small_v2", "weights": "none", "resolution": "32x64",
               "qos_reliability": "reliable", "qos_depth": 100, "diagnostics_period": 0.2}
# Keep every message we publish: KEEP_ALL + reliable blocks instead of overwriting unsent samples.
SEND_ALL = QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
OUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
_KNOWN = {e.lower() for e in SUPPORTED_ENCODINGS}
_UNKNOWN_ENCODINGS = ["yuv422", "bayer_rggb8", "nv12", "64FC1", "rgb16", "", " ", "mono 8", "rgb8;",
                      "32FC2", "8SC1", "jpeg", "16UC3", "bgr8\t", "\u00fc8"]


# ----------------------------------------------------------------------------- generator
def _stamp(msg, i: int) -> None:
    msg.header.stamp.sec = 10_000 + i
    msg.header.stamp.nanosec = 7 * i
    msg.header.frame_id = f"fuzz_{i}"


def _image(encoding: str, h: int, w: int, step: int, data: bytes, big: bool = False) -> Image:
    msg = Image()
    msg.encoding, msg.height, msg.width, msg.step = encoding, h, w, step
    msg.is_bigendian = int(big)
    msg.data = data
    return msg


def _rand_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def _random_encoding(rng: random.Random) -> str:
    enc = rng.choice(SUPPORTED_ENCODINGS)
    return rng.choice([enc, enc.upper(), enc.lower()])


def _row_bytes(encoding: str, w: int) -> int:
    dtype, ch = encoding_info(encoding)
    return w * ch * dtype.itemsize


def valid_raw(rng: random.Random, kind: str) -> Image:
    """A well-formed Image: random encoding, 1..48 x 1..64, optional row padding and byte order.

    ``kind``: ``"1x1"``, ``"nonfinite"`` (32FC1 with NaN/+-inf, some all-NaN) or ``"random"``.
    """
    if kind == "nonfinite":
        h, w = rng.randint(1, 48), rng.randint(1, 64)
        big = rng.random() < 0.3
        arr = np.random.default_rng(rng.getrandbits(32)).normal(5.0, 3.0, (h, w)).astype(np.float32)
        mode = rng.choice(["mixed", "all_nan", "all_inf", "nan_and_one"])
        if mode == "mixed":
            mask = np.random.default_rng(rng.getrandbits(32)).random((h, w))
            arr[mask < 0.2] = np.nan
            arr[(mask >= 0.2) & (mask < 0.3)] = np.inf
            arr[(mask >= 0.3) & (mask < 0.4)] = -np.inf
        elif mode == "all_nan":
            arr[:] = np.nan
        elif mode == "all_inf":
            arr[:] = np.inf
        else:
            arr[:] = np.nan
            arr[0, 0] = 1.0
        pad = rng.choice([0, 0, 4, 3])
        rows = arr.astype(">f4" if big else "<f4").tobytes()
        row = w * 4
        data = b"".join(rows[r * row:(r + 1) * row] + _rand_bytes(rng, pad) for r in range(h))
        return _image("32FC1", h, w, row + pad, data, big)
    enc = _random_encoding(rng)
    h, w = (1, 1) if kind == "1x1" else (rng.randint(1, 48), rng.randint(1, 64))
    step = _row_bytes(enc, w) + rng.choice([0, 0, 0, 1, 2, 5, 16])
    data = _rand_bytes(rng, step * h + rng.choice([0, 0, 3]))
    return _image(enc, h, w, step, data, big=rng.random() < 0.3)


def malformed_raw(rng: random.Random) -> tuple[Image, str]:
    """One malformed Image and the ConversionError reason the node must count for it."""
    reason = rng.choice(["unknown_encoding", "zero_size", "too_large", "bad_step", "short_data"])
    if reason == "unknown_encoding":
        enc = rng.choice(_UNKNOWN_ENCODINGS + ["".join(rng.choices(string.ascii_letters + string.digits + "_;",
                                                                   k=rng.randint(1, 12)))])
        if enc.strip().lower() in _KNOWN:
            enc += "x"
        h, w = rng.randint(0, 64), rng.randint(0, 64)
        return _image(enc, h, w, rng.randint(0, 500), _rand_bytes(rng, rng.randint(0, 300))), reason
    enc = _random_encoding(rng)
    if reason == "zero_size":
        h, w = rng.choice([(0, rng.randint(0, 5000)), (rng.randint(0, 5000), 0), (0, 0)])
        return _image(enc, h, w, rng.randint(0, 10_000), _rand_bytes(rng, rng.randint(0, 100))), reason
    if reason == "too_large":
        h, w = rng.choice([(8000, 8000), (2**32 - 1, 2**32 - 1), (1, MAX_PIXELS + 1),
                           (MAX_PIXELS // 4 + 1, 4), (50_000, 50_000)])
        step = rng.choice([0, _row_bytes(enc, min(w, 2**20)), 2**32 - 1])
        return _image(enc, h, w, step, _rand_bytes(rng, rng.randint(0, 64))), reason
    h, w = rng.randint(1, 64), rng.randint(1, 64)
    row = _row_bytes(enc, w)
    if reason == "bad_step":
        step = rng.randint(0, row - 1)
        return _image(enc, h, w, step, _rand_bytes(rng, rng.choice([0, step * h, row * h]))), reason
    step = row + rng.choice([0, 0, 3])
    need = step * h
    short = rng.choice([0, 1, need // 2, need - 1, need - step])  # incl. one missing row / byte
    return _image(enc, h, w, step, _rand_bytes(rng, max(0, min(short, need - 1)))), reason


def raw_corpus(seed: int = SEED) -> list[tuple[Image, Optional[str]]]:
    """Valid frames interleaved with bursts of malformed messages (valid frame first in each burst)."""
    rng = random.Random(seed)
    kinds = ["1x1", "nonfinite"] * 8 + ["random"] * (N_VALID - 16)
    rng.shuffle(kinds)
    bursts = [0] * N_VALID
    for _ in range(N_MALFORMED):
        while True:
            b = rng.randrange(N_VALID)
            if bursts[b] < MAX_BURST:
                bursts[b] += 1
                break
    corpus: list[tuple[Image, Optional[str]]] = []
    for kind, burst in zip(kinds, bursts):
        corpus.append((valid_raw(rng, kind), None))
        corpus.extend(malformed_raw(rng) for _ in range(burst))
    return corpus


def _png_with_size(h: int, w: int) -> bytes:
    """A PNG signature + IHDR chunk claiming (h, w), then nothing (a header bomb)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def compressed_corpus(seed: int = SEED) -> list[tuple[CompressedImage, Optional[str], bool]]:
    """(message, reason or None, rejected only after decoding in the worker)."""
    rng = random.Random(seed + 1)
    img = make_scene(seed=3, hw=(48, 64)).image
    jpeg = bytes(numpy_to_compressed(img, "jpeg").data)
    png = bytes(numpy_to_compressed(img, "png").data)
    out: list[tuple[CompressedImage, Optional[str], bool]] = []
    for i in range(60):
        if i % 6 == 0:
            msg = numpy_to_compressed(img[: rng.randint(1, 48), : rng.randint(1, 64)].copy(),
                                      rng.choice(["jpeg", "png"]))
            out.append((msg, None, False))
            continue
        case = rng.choice(["empty", "garbage", "text", "jpeg_garbage", "png_garbage", "truncated_jpeg",
                           "truncated_png", "png_bomb"])
        deferred = case in ("jpeg_garbage", "png_garbage", "truncated_jpeg", "truncated_png", "png_bomb")
        data = {
            "empty": b"",
            "garbage": b"\x00" + _rand_bytes(rng, rng.randint(1, 3000)),
            "text": b"this is not an image",
            "jpeg_garbage": b"\xff\xd8" + _rand_bytes(rng, rng.randint(2, 500)).replace(b"\xff", b"\x00"),
            "png_garbage": b"\x89PNG" + _rand_bytes(rng, rng.randint(0, 500)),
            "truncated_jpeg": jpeg[: rng.randint(4, len(jpeg) // 2)],
            "truncated_png": png[: rng.randint(8, len(png) // 2)],
            "png_bomb": _png_with_size(60_000, 60_000),
        }[case]
        msg = CompressedImage(format=rng.choice(["jpeg", "png", "rgb8; jpeg compressed bgr8", ""]), data=data)
        reason = {"png_bomb": "too_large", "truncated_jpeg": "truncated", "truncated_png": "truncated"}.get(case)
        out.append((msg, reason or "undecodable", deferred))
    return out


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def harness():
    h = Harness("seg_fuzz_harness")
    yield h
    h.close()


def _diag(h: Harness, node: str) -> dict:
    for arr in reversed(h.received.get("/diagnostics", [])):
        for st in arr.status:
            if st.name.endswith(node):
                return {kv.key: kv.value for kv in st.values}
    return {}


def _counts(d: dict, prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: int(v) for k, v in d.items() if k.startswith(prefix)}


def _answered(box: list, msg) -> bool:
    return any(o.header.stamp.sec == msg.header.stamp.sec and o.header.stamp.nanosec == msg.header.stamp.nanosec
               for o in box[-5:])


def _log(tmp_path) -> str:
    return (tmp_path / "node.log").read_text(errors="replace")[-3000:]


# ----------------------------------------------------------------------------- tests
def test_generator_is_seeded_and_mixed():
    a, b = raw_corpus(), raw_corpus()
    assert [(m.encoding, m.height, m.width, m.step, bytes(m.data), r) for m, r in a] == \
        [(m.encoding, m.height, m.width, m.step, bytes(m.data), r) for m, r in b]
    reasons = collections.Counter(r for _m, r in a if r)
    assert sum(reasons.values()) == N_MALFORMED
    assert set(reasons) == {"unknown_encoding", "zero_size", "too_large", "bad_step", "short_data"}
    valid = [m for m, r in a if r is None]
    assert len(valid) == N_VALID
    assert any((m.height, m.width) == (1, 1) for m in valid)
    assert any(m.encoding == "32FC1" for m in valid)


def test_generator_reasons_agree_with_the_converter():
    """Cheap in-process cross-check of the generator's labels (the node's callback runs to_rgb)."""
    from seg_perception.core.conversions import ConversionError, to_rgb

    for msg, reason in raw_corpus():
        if reason is None:
            assert to_rgb(msg).shape == (msg.height, msg.width, 3)
        else:
            with pytest.raises(ConversionError) as e:
                to_rgb(msg)
            assert e.value.reason == reason, (msg.encoding, msg.height, msg.width, msg.step, len(msg.data))


def test_fuzz_raw_images(harness, tmp_path):
    node = f"{NS}/segment_node"
    sem = harness.subscribe(Image, f"{node}/semantic", OUT_QOS)
    harness.subscribe(DiagnosticArray, "/diagnostics", OUT_QOS)
    pub = harness.node.create_publisher(Image, f"{NS}/image", SEND_ALL)
    corpus = raw_corpus()
    # A real 8000x8000 mono8 frame (64 MB of data): refused as too_large before any pixel buffer is
    # allocated; sent in the middle of the run, right after a valid frame.
    huge = _image("mono8", 8000, 8000, 8000, bytes(8000 * 8000))
    at = next(i for i, (_m, r) in enumerate(corpus) if r is None and i > len(corpus) // 2)
    corpus.insert(at + 1, (huge, "too_large"))
    expected = collections.Counter(r for _m, r in corpus if r)
    n_valid = sum(1 for _m, r in corpus if r is None)

    with node_process(NODE_PARAMS, namespace=NS, log_path=tmp_path / "node.log") as proc:
        assert harness.wait_connected(pub, f"{node}/semantic", proc), _log(tmp_path)
        pending: Optional[Image] = None
        for i, (msg, reason) in enumerate(corpus):
            _stamp(msg, i)
            if reason is None:
                if pending is not None:  # the previous frame, followed by its burst of malformed ones
                    assert harness.spin_until(lambda: _answered(sem, pending), 60, proc), \
                        f"valid frame {pending.encoding} {pending.height}x{pending.width} not answered\n{_log(tmp_path)}"
                pending = msg
            pub.publish(msg)
        assert harness.spin_until(lambda: _answered(sem, pending), 60, proc), _log(tmp_path)
        total = len(corpus)
        assert harness.spin_until(lambda: int(_diag(harness, node).get("frames_received", -1)) == total, 60, proc), \
            f"node saw {_diag(harness, node).get('frames_received')} of {total} messages"
        # one more diagnostics period so counters after the last frame are in
        harness.spin_until(lambda: False, 0.5, proc)
        diag = _diag(harness, node)
        assert proc.poll() is None, "node died"
    print(f"raw fuzz: {len(corpus)} messages ({n_valid} valid), expected {dict(expected)}, diagnostics {diag}")

    assert _counts(diag, "rejected.") == dict(expected)
    assert int(diag["frames_rejected"]) == sum(expected.values())
    assert int(diag["frames_processed"]) == n_valid
    assert int(diag["frames_dropped"]) == 0, "a malformed message displaced a valid frame"
    assert _counts(diag, "error.") == {}, f"frames failed inside the worker: {diag}"
    assert int(diag["max_queue_depth"]) <= 1
    valid = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m, r in corpus if r is None}
    assert len(sem) == n_valid
    for out in sem:
        src = valid[(out.header.stamp.sec, out.header.stamp.nanosec)]
        assert (out.height, out.width, out.encoding) == (src.height, src.width, "mono8")
        assert out.header.frame_id == src.header.frame_id


def test_fuzz_compressed_images(harness, tmp_path):
    node = f"{NS}/segment_node_compressed"
    sem = harness.subscribe(Image, f"{node}/semantic", OUT_QOS)
    harness.subscribe(DiagnosticArray, "/diagnostics", OUT_QOS)
    pub = harness.node.create_publisher(CompressedImage, f"{NS}/image/compressed", SEND_ALL)
    corpus = compressed_corpus()
    expected = collections.Counter(r for _m, r, _d in corpus if r)
    params = dict(NODE_PARAMS, input_transport="compressed")
    with node_process(params, namespace=NS, name="segment_node_compressed", log_path=tmp_path / "node.log") as proc:
        assert harness.wait_connected(pub, f"{node}/semantic", proc), _log(tmp_path)
        worker_rejects = 0
        for i, (msg, reason, deferred) in enumerate(corpus):
            _stamp(msg, i)
            pub.publish(msg)
            if reason is None:
                assert harness.spin_until(lambda: _answered(sem, msg), 60, proc), _log(tmp_path)
            elif deferred:
                # magic bytes are right but the data does not decode: counted once decoded
                worker_rejects += 1
                assert harness.spin_until(
                    lambda: int(_diag(harness, node).get("frames_rejected", 0)) >= _n_rejected_so_far(corpus, i),
                    30, proc), f"message {i} ({reason}) was not counted\n{_log(tmp_path)}"
        total = len(corpus)
        assert harness.spin_until(lambda: int(_diag(harness, node).get("frames_received", -1)) == total
                                  and int(_diag(harness, node).get("frames_rejected", -1)) == sum(expected.values()),
                                  30, proc), _diag(harness, node)
        diag = _diag(harness, node)
        assert proc.poll() is None
    print(f"compressed fuzz: {len(corpus)} messages, expected {dict(expected)}, diagnostics {diag}")
    assert worker_rejects > 5
    assert _counts(diag, "rejected.") == dict(expected)
    assert int(diag["frames_processed"]) == sum(1 for _m, r, _d in corpus if r is None)
    assert int(diag["frames_dropped"]) == 0
    assert _counts(diag, "error.") == {}


def _n_rejected_so_far(corpus, i: int) -> int:
    return sum(1 for _m, r, _d in corpus[: i + 1] if r)

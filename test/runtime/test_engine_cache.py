"""EngineCache: keys, metadata, stale/foreign/corrupted engines are rebuilt with a warning."""
from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from seg_perception.runtime.engine_cache import EngineCache, EngineKey, sha256_bytes

KEY = EngineKey(
    onnx_sha256="a" * 64, precision="fp16", input_shapes={"image": [[1, 3, 64, 96]] * 3},
    gpu_name="Orin", compute_capability="8.7", trt_version="10.3.0",
)


class Recorder:
    """build() returns bytes derived from a counter; deserialize() accepts only bytes it built."""

    def __init__(self):
        self.builds = 0
        self.made: set[bytes] = set()

    def build(self) -> bytes:
        self.builds += 1
        data = f"engine-{self.builds}".encode()
        self.made.add(data)
        return data

    def deserialize(self, data: bytes):
        return ("engine", data) if data in self.made else None


def _load(cache, key, rec, **kw):
    return cache.load_or_build(key, rec.build, rec.deserialize, **kw)


def test_build_then_reuse(tmp_path):
    cache, rec = EngineCache(tmp_path), Recorder()
    engine, built = _load(cache, KEY, rec, onnx_path="/x.onnx")
    assert built and rec.builds == 1 and engine == ("engine", b"engine-1")
    meta = json.loads(cache.meta_path(KEY).read_text())
    assert meta["key"] == KEY.as_dict() and meta["engine_sha256"] == sha256_bytes(b"engine-1")
    assert meta["onnx_path"] == "/x.onnx"
    engine, built = _load(cache, KEY, rec)
    assert not built and rec.builds == 1 and engine == ("engine", b"engine-1")
    assert cache.mismatches(KEY) == []


@pytest.mark.parametrize("field,value", [("onnx_sha256", "b" * 64), ("precision", "fp32"),
                                         ("input_shapes", {"image": [[1, 3, 32, 96]] * 3}), ("dla_core", 0)])
def test_model_side_changes_get_their_own_engine(tmp_path, field, value):
    cache, rec = EngineCache(tmp_path), Recorder()
    _load(cache, KEY, rec)
    other = dataclasses.replace(KEY, **{field: value})
    assert cache.engine_path(other) != cache.engine_path(KEY)
    _, built = _load(cache, other, rec)
    assert built and rec.builds == 2
    _, built = _load(cache, KEY, rec)  # the first is still valid
    assert not built


@pytest.mark.parametrize("field,value", [("gpu_name", "NVIDIA T4"), ("compute_capability", "7.5"),
                                         ("trt_version", "10.4.0")])
def test_foreign_engine_is_rebuilt_with_warning(tmp_path, caplog, field, value):
    cache, rec = EngineCache(tmp_path), Recorder()
    _load(cache, KEY, rec)
    other = dataclasses.replace(KEY, **{field: value})
    assert cache.engine_path(other) == cache.engine_path(KEY)  # same file: detected as foreign
    problems = cache.mismatches(other)
    assert len(problems) == 1 and problems[0].startswith(field) and repr(value) in problems[0]
    with caplog.at_level(logging.WARNING, logger="seg_perception.runtime"):
        _, built = _load(cache, other, rec)
    assert built and rec.builds == 2
    assert any("rebuilding" in r.getMessage() and field in r.getMessage() for r in caplog.records)
    assert json.loads(cache.meta_path(other).read_text())["key"][field] == value


def test_corrupted_engine_is_rebuilt(tmp_path, caplog):
    cache, rec = EngineCache(tmp_path), Recorder()
    _load(cache, KEY, rec)
    cache.engine_path(KEY).write_bytes(b"garbage")
    assert "corrupted" in cache.mismatches(KEY)[0]
    with caplog.at_level(logging.WARNING, logger="seg_perception.runtime"):
        engine, built = _load(cache, KEY, rec)
    assert built and engine == ("engine", b"engine-2")
    assert any("corrupted" in r.getMessage() for r in caplog.records)


def test_deserialization_failure_is_rebuilt(tmp_path, caplog):
    cache, rec = EngineCache(tmp_path), Recorder()
    _load(cache, KEY, rec)
    rec.made.clear()  # same bytes and hash, but the runtime now rejects them (e.g. driver changed)
    with caplog.at_level(logging.WARNING, logger="seg_perception.runtime"):
        _, built = _load(cache, KEY, rec)
    assert built and rec.builds == 2
    assert any("deserializ" in r.getMessage() for r in caplog.records)

    def boom(data):
        raise RuntimeError("bad magic")

    _, built = cache.load_or_build(KEY, rec.build, lambda d: boom(d) if d == b"engine-2" else rec.deserialize(d))
    assert built and rec.builds == 3


def test_missing_metadata_or_forced_rebuild(tmp_path):
    cache, rec = EngineCache(tmp_path), Recorder()
    _load(cache, KEY, rec)
    cache.meta_path(KEY).unlink()
    assert "metadata" in cache.mismatches(KEY)[0]
    _, built = _load(cache, KEY, rec)
    assert built
    _, built = _load(cache, KEY, rec, rebuild=True)
    assert built and rec.builds == 3


def test_file_stem_is_readable():
    stem = KEY.file_stem()
    assert stem.startswith("aaaaaaaaaaaa_fp16_1x3x64x96_")
    assert "_dla1_" in dataclasses.replace(KEY, dla_core=1).file_stem()

"""Backend option ``streams``: several ``infer`` calls at once, each on its own OpenVINO request or
onnxruntime session.

The oracle for every output is the same file run on a one-stream backend, one call at a time
(itself parity-tested against the torch model in test_parity / test_cpu_precisions): a call made
while others run must return exactly its own input's outputs.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from seg_perception.runtime.base import BackendError, check_streams, concurrency
from seg_perception.runtime.export import export_onnx_cached
from seg_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from seg_perception.runtime.openvino_backend import OpenVinoBackend

from .tiny_models import TinyPanoptic, seeded

RES = (32, 48)
KINDS = {"openvino": lambda path, **kw: OpenVinoBackend(path, **kw),
         "onnxruntime": lambda path, **kw: OnnxRuntimeBackend(path, **kw)}


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    return export_onnx_cached(seeded(TinyPanoptic), resolution=RES, cache_dir=tmp_path_factory.mktemp("streams"))


def _inputs(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.standard_normal((1, 3, *RES)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("value, want", [(None, 1), (1, 1), (3, 3), ("2", 2), (2.0, 2)])
def test_check_streams_reads_whole_numbers(value, want):
    assert check_streams(value) == want


@pytest.mark.parametrize("value", [0, -1, 1.5, "two", "0"])
def test_check_streams_refuses_the_rest_naming_the_value(value):
    with pytest.raises(BackendError, match=f"streams={value!r} must be a whole number >= 1"):
        check_streams(value)


def test_concurrency_of_a_backend_without_the_attribute_is_one():
    assert concurrency(object()) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_each_concurrent_call_gets_its_own_outputs(kind, onnx_path):
    """Eight different inputs from three threads on a 2-stream backend (so calls also wait for a
    free stream) give what a one-stream backend gives each input alone, bit for bit."""
    xs = _inputs(8)
    with KINDS[kind](onnx_path) as one:
        want = [one.infer({"image": x}) for x in xs]
        assert concurrency(one) == 1
    with KINDS[kind](onnx_path, streams=2) as two:
        assert concurrency(two) == 2
        start = threading.Barrier(3)

        def run(i: int) -> dict:
            if i < 3:
                start.wait()  # the first three calls start together
            return two.infer({"image": xs[i]})

        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(run, range(len(xs))))
    for g, w in zip(got, want):
        assert list(g) == list(w)
        for name in w:
            assert np.array_equal(g[name], w[name]), name


def test_openvino_streams_compile_for_throughput(onnx_path):
    with OpenVinoBackend(onnx_path, streams=2) as be:
        assert int(be._compiled.get_property("NUM_STREAMS")) == 2
        assert str(be._compiled.get_property("PERFORMANCE_HINT")) in ("THROUGHPUT", "PerformanceMode.THROUGHPUT")
        assert len(be._requests) == 2
    with OpenVinoBackend(onnx_path) as be:  # default: one LATENCY stream, as before
        assert str(be._compiled.get_property("PERFORMANCE_HINT")) in ("LATENCY", "PerformanceMode.LATENCY")
        assert len(be._requests) == 1


def test_openvino_latency_hint_with_streams_is_refused(onnx_path):
    with pytest.raises(BackendError, match="LATENCY runs one stream, but streams=2"):
        OpenVinoBackend(onnx_path, streams=2, performance_hint="LATENCY")


def test_onnxruntime_streams_share_the_cores(onnx_path, monkeypatch):
    from seg_perception.runtime import onnxruntime_backend as mod

    monkeypatch.setattr(mod, "_usable_cores", lambda: 8)
    be = OnnxRuntimeBackend(onnx_path, streams=4)
    assert be._session_options().intra_op_num_threads == 2
    assert OnnxRuntimeBackend(onnx_path, streams=16)._session_options().intra_op_num_threads == 1
    assert OnnxRuntimeBackend(onnx_path, streams=4, intra_op_threads=3)._session_options().intra_op_num_threads == 3
    with be:
        assert len(be._sessions) == 4
        assert len({id(s) for s in be._sessions.items}) == 4  # four sessions, not one shared


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_call_frees_its_stream(kind, onnx_path):
    """A refused input must not keep its request / session: later calls still find a free one."""
    with KINDS[kind](onnx_path, streams=2) as be:
        bad = np.zeros((1, 3, RES[0] + 1, RES[1]), np.float32)
        for _ in range(3):
            with pytest.raises(BackendError, match="inference failed"):
                be.infer({"image": bad})
        with ThreadPoolExecutor(1) as pool:  # a stream never freed would block forever: fail instead
            out = pool.submit(be.infer, {"image": _inputs(1)[0]}).result(timeout=60)
        assert out["semantic"].shape[0] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_first_calls_at_once_open_one_runtime(kind, onnx_path, monkeypatch):
    """Threads whose first infer calls arrive together on a backend not yet opened: one compile /
    one set of sessions, and every call its own outputs."""
    cls = type(KINDS[kind](onnx_path))
    opened = []
    real = cls._activate

    def counting(self):
        closed = (self._compiled if kind == "openvino" else self._session) is None
        if closed:
            opened.append(threading.get_ident())
            time.sleep(0.05)  # hold the door open: without the lock a second thread would get in
        real(self)

    monkeypatch.setattr(cls, "_activate", counting)
    xs = _inputs(3)
    be = KINDS[kind](onnx_path, streams=2)
    start = threading.Barrier(3)

    def run(x):
        start.wait()
        return be.infer({"image": x})

    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(run, xs))
    assert len(opened) == 1
    with KINDS[kind](onnx_path) as one:
        for g, x in zip(got, xs):
            assert np.array_equal(g["semantic"], one.infer({"image": x})["semantic"])
    be.deactivate()

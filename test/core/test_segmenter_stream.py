"""Segmenter.segment_stream: several frames in flight, results in order, each as segment() gives it.

The oracle is :meth:`Segmenter.segment` on a one-stream backend over the same file, frame by
frame (the path every other Segmenter test checks against the torch model and the reference
post-processing). The stream's own properties -- order, calls really overlapping, reading frames
no further ahead than needed, errors naming the frame, stopping early -- are checked with a
backend double that wraps a real one and records its calls.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from seg_perception.core.resolution import PipelineError
from seg_perception.core.segmenter import Segmenter
from seg_perception.datasets.labels import get_label_set
from seg_perception.runtime import create_backend

from ..fakes.fixtures import cache_dir  # noqa: F401  (fixture)
from ..runtime.tiny_models import TinyPanoptic, TinySemantic, seeded

CITY = get_label_set("cityscapes")
RES = (24, 40)
SIZES = [(48, 80), (24, 40), (30, 52), (60, 100), (24, 40), (36, 64), (48, 80)]


def _frames(n: int = len(SIZES), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*SIZES[i % len(SIZES)], 3), dtype=np.uint8) for i in range(n)]


def _segmenter(kind: str, model, task: str, cache_dir, **options) -> Segmenter:
    be = create_backend(kind, model, resolution=RES, cache_dir=str(cache_dir), precision="fp32", options=options)
    return Segmenter(be, task=task, label_set=CITY, resolution=RES)


@pytest.mark.parametrize("kind", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("task, cls", [("semantic", TinySemantic), ("panoptic", TinyPanoptic)])
def test_stream_results_equal_segment_frame_by_frame(kind, task, cls, cache_dir):
    frames = _frames()
    with _segmenter(kind, seeded(cls, num_classes=19), task, cache_dir) as one, \
            _segmenter(kind, seeded(cls, num_classes=19), task, cache_dir, streams=2) as two:
        assert one.streams == 1 and two.streams == 2
        want = [one.segment(f) for f in frames]
        got = list(two.segment_stream(iter(frames)))
    assert len(got) == len(want)
    for frame, g, w in zip(frames, got, want):
        assert g.semantic.shape == frame.shape[:2]
        assert np.array_equal(g.semantic, w.semantic)
        if task == "panoptic":
            assert np.array_equal(g.panoptic, w.panoptic)
            assert g.segments == w.segments
        assert g.timings.inference_ms > 0 and g.timings.postprocess_ms > 0 and g.timings.preprocess_ms > 0


class SlowBackend:
    """A real backend whose calls take at least ``delay`` s; records the most calls in progress at once."""

    def __init__(self, inner, delay: float = 0.05) -> None:
        self.inner, self.delay = inner, delay
        self.name = inner.name
        self.running = self.most = 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer(self, feeds):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.delay)
            return self.inner.infer(feeds)
        finally:
            with self.lock:
                self.running -= 1


def _slow(cache_dir, streams: int) -> tuple[Segmenter, SlowBackend]:
    be = create_backend("onnxruntime", seeded(TinySemantic, num_classes=19), resolution=RES, cache_dir=str(cache_dir),
                        options={"streams": streams})
    slow = SlowBackend(be)
    return Segmenter(slow, task="semantic", label_set=CITY, resolution=RES), slow


@pytest.mark.parametrize("streams", [1, 2, 3])
def test_calls_overlap_up_to_the_streams_and_frames_are_read_lazily(streams, cache_dir):
    seg, slow = _slow(cache_dir, streams)
    frames = _frames(9)
    read: list[int] = []

    def source():
        for i, f in enumerate(frames):
            read.append(i)
            yield f

    ahead = []
    with seg:
        for k, result in enumerate(seg.segment_stream(source())):
            ahead.append(len(read) - (k + 1))  # frames read but not yet returned
            assert result.semantic.shape == frames[k].shape[:2]
    assert slow.most == streams  # never more calls than streams, and all of them used
    assert max(ahead) <= streams  # N in flight + the one being returned: never the whole source read ahead


def test_a_bad_frame_names_its_index_after_the_good_ones(cache_dir):
    seg, _slow_be = _slow(cache_dir, 2)
    frames = _frames(5)
    frames[3] = frames[3][..., :2]  # two channels
    got = []
    with seg, pytest.raises(PipelineError, match="frame 3 of the stream: expected an \\(H, W, 3\\) RGB image"):
        for result in seg.segment_stream(frames):
            got.append(result)
    assert len(got) <= 3  # frames 0-2 may have been returned; nothing after the bad one


def test_one_stream_names_the_bad_frame_too(cache_dir):
    seg, _slow_be = _slow(cache_dir, 1)
    with seg, pytest.raises(PipelineError, match="frame 1 of the stream: expected dtype uint8"):
        list(seg.segment_stream([_frames(1)[0], np.zeros((24, 40, 3), np.float32)]))


def test_stopping_early_waits_for_the_calls_in_flight(cache_dir):
    seg, slow = _slow(cache_dir, 2)
    with seg:
        stream = seg.segment_stream(_frames(20))
        next(stream)
        stream.close()  # the consumer stops: the pool shuts down, no thread left running a call
        assert slow.running == 0
        assert not [t for t in threading.enumerate() if t.name.startswith("seg-infer")]


def test_a_closed_segmenter_refuses_to_stream(cache_dir):
    seg, _slow_be = _slow(cache_dir, 2)
    seg.close()
    with pytest.raises(PipelineError, match="closed"):
        next(seg.segment_stream(_frames(2)))

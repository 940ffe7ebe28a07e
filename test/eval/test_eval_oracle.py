"""panoptic_error_breakdown: each oracle row swaps exactly the heads it names for ground truth."""
from __future__ import annotations

import numpy as np
import pytest

from seg_perception.datasets.labels import get_label_set
from seg_perception.datasets.synthetic import make_scene
from seg_perception.eval.oracle import ORACLES, oracle_heads, panoptic_error_breakdown
from seg_perception.core.segmenter import Segmenter
from seg_perception.runtime.base import TensorSpec
from seg_perception.training.targets import default_center_sigma

CITY = get_label_set("cityscapes")
HW = (64, 128)
SEED = 4_100_000
N = 2


class QueueBackend:
    """Returns the queued head dicts, one per call, in order (each (1, ...) arrays at HW)."""

    name = "queue"
    last_latency_ms = 0.0

    def __init__(self, outputs: list[dict]) -> None:
        self.outputs = list(outputs)

    def input_spec(self):
        return [TensorSpec("image", (1, 3, *HW), np.dtype(np.float32))]

    def output_spec(self):
        return []

    def infer(self, feeds):
        return self.outputs.pop(0)

    def activate(self):
        pass

    def deactivate(self):
        pass


def _segmenter(outputs: list[dict], task: str = "panoptic") -> Segmenter:
    return Segmenter(QueueBackend(outputs), task=task, label_set=CITY, resolution=HW)


def _truth(i: int) -> dict:
    sc = make_scene(SEED + i, HW)
    heads = oracle_heads(sc.semantic, sc.panoptic, CITY.num_classes, CITY.thing_ids, default_center_sigma(HW[0]))
    return {k: v[None].numpy() for k, v in heads.items()}


def _useless() -> dict:
    h, w = HW
    return {"semantic": np.zeros((1, CITY.num_classes, h, w), np.float32),  # argmax: class 0 everywhere
            "center": np.zeros((1, 1, h, w), np.float32), "offset": np.zeros((1, 2, h, w), np.float32)}


def test_scenes_have_things_to_find() -> None:
    for i in range(N):
        pan = make_scene(SEED + i, HW).panoptic
        assert np.isin(pan // 1000, list(CITY.thing_ids)).any()


def test_a_perfect_model_scores_the_same_in_every_row() -> None:
    report = panoptic_error_breakdown(_segmenter([_truth(i) for i in range(N)]), N, HW, first_seed=SEED)
    assert list(report) == list(ORACLES)
    first = report["predicted"]
    assert first["pq"] > 0.9 and first["pq_things"] > 0.8, first
    for row in report.values():
        assert row == first


def test_each_row_swaps_the_heads_it_names() -> None:
    report = panoptic_error_breakdown(_segmenter([_useless() for _ in range(N)]), N, HW, first_seed=SEED)
    perfect = panoptic_error_breakdown(_segmenter([_truth(i) for i in range(N)]), N, HW, first_seed=SEED)
    pred, gt_sem, gt_sem_center = report["predicted"], report["gt_semantic"], report["gt_semantic_center"]
    # Road everywhere: one segment; no thing pixels, so centers and offsets cannot matter.
    assert set(pred["per_class_pq"]) >= {"road"} and pred["pq_things"] == 0.0
    assert report["gt_center"] == pred and report["gt_center_offset"] == pred
    # True semantics: stuff as good as the perfect model's, things need centers to exist at all.
    assert gt_sem["pq_stuff"] == perfect["predicted"]["pq_stuff"] > pred["pq_stuff"]
    assert gt_sem["pq_things"] == 0.0
    # True centers with zero offsets: every thing pixel joins its nearest true center.
    assert gt_sem_center["pq_things"] > 0.2


def test_oracle_heads_void_and_shapes() -> None:
    sem = np.array([[0, 255], [11, 13]], np.uint8)
    pan = np.array([[0, 255000], [11001, 13001]], np.int32)
    heads = oracle_heads(sem, pan, 19, CITY.thing_ids, 2.0)
    assert heads["semantic"].shape == (19, 2, 2) and heads["center"].shape == (1, 2, 2)
    assert heads["offset"].shape == (2, 2, 2)
    assert heads["semantic"].argmax(0).tolist() == [[0, 0], [11, 13]]  # void -> class 0 (PQ ignores it)
    assert float(heads["center"].max()) == pytest.approx(1.0)


def test_refuses_semantic_models_and_empty_runs() -> None:
    with pytest.raises(ValueError, match="panoptic model"):
        panoptic_error_breakdown(_segmenter([], task="semantic"), 1, HW)
    with pytest.raises(ValueError, match="n_scenes"):
        panoptic_error_breakdown(_segmenter([]), 0, HW)

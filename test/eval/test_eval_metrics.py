"""Tests for seg_perception.eval.metrics: hand-computed cases and properties."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from seg_perception.eval.metrics import ConfusionMatrix, PanopticQuality


# ------------------------------------------------------------------------------------------ mIoU
def test_confusion_matrix_hand_computed():
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 1, 0]])
    cm = ConfusionMatrix(3)
    cm.update(gt, pred)
    # pairs (gt, pred) without the ignored pixel: (0,0) (0,1) (1,1) (1,1) (2,1)
    # class 0: TP 1, FN 1, FP 0 -> 1/2 ; class 1: TP 2, FP 2 -> 2/4 ; class 2: TP 0, FN 1 -> 0
    np.testing.assert_allclose(cm.iou(), [0.5, 0.5, 0.0])
    assert cm.miou("cityscapes") == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert cm.miou("detectron2") == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    # recall: 1/2, 2/2, 0/1
    assert cm.mean_class_accuracy() == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # gt frequencies 2/5, 2/5, 1/5
    assert cm.frequency_weighted_iou() == pytest.approx(0.4 * 0.5 + 0.4 * 0.5 + 0.2 * 0.0)


def test_miou_conventions_differ_on_prediction_only_class():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 0]]), np.array([[0, 2]]))
    # class 0: TP 1, FN 1 -> 0.5 ; class 1: absent -> NaN ; class 2: FP 1 only -> 0
    iou = cm.iou()
    assert iou[0] == pytest.approx(0.5) and math.isnan(iou[1]) and iou[2] == 0.0
    assert cm.miou("cityscapes") == pytest.approx((0.5 + 0.0) / 2)
    assert cm.miou("detectron2") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cityscapes"):
        cm.miou("pascal")


def test_out_of_range_prediction_is_a_miss_not_a_false_positive():
    cm = ConfusionMatrix(2)
    cm.update(np.array([[0, 0, 1]]), np.array([[0, 255, 1]]))
    # class 0: TP 1, FN 1 (the 255) -> 0.5 ; class 1: TP 1 -> 1.0
    np.testing.assert_allclose(cm.iou(), [0.5, 1.0])
    assert cm.pixel_accuracy() == pytest.approx(2 / 3)


def test_confusion_matrix_errors_name_values():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(2, 3\)"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[7\]"):
        cm.update(np.array([[7]]), np.array([[0]]))


def test_merge_equals_joint_update():
    a, b, both = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    g1, p1 = np.array([[0, 1, 2]]), np.array([[0, 0, 2]])
    g2, p2 = np.array([[2, 2, 255]]), np.array([[1, 2, 2]])
    a.update(g1, p1)
    b.update(g2, p2)
    both.update(g1, p1)
    both.update(g2, p2)
    np.testing.assert_array_equal(a.merge(b).matrix, both.matrix)


labels = hnp.arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.sampled_from([0, 1, 2, 3, 255]))


@settings(max_examples=40, deadline=None)
@given(gt=labels)
def test_perfect_prediction_scores_one(gt):
    cm = ConfusionMatrix(4)
    cm.update(gt, gt)
    if (gt != 255).any():
        assert cm.miou("cityscapes") == 1.0
        assert cm.miou("detectron2") == 1.0
        assert cm.pixel_accuracy() == 1.0
        assert cm.frequency_weighted_iou() == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_iou_matches_mask_definition(data):
    gt = data.draw(labels)
    pred = data.draw(hnp.arrays(np.int64, gt.shape, elements=st.integers(0, 3)))
    cm = ConfusionMatrix(4)
    cm.update(gt, pred)
    valid = gt != 255
    for c in range(4):
        inter = np.sum((gt == c) & (pred == c) & valid)
        union = np.sum(((gt == c) | (pred == c)) & valid)
        if union == 0:
            assert math.isnan(cm.iou()[c])
        else:
            assert cm.iou()[c] == pytest.approx(inter / union)


# -------------------------------------------------------------------------------------------- PQ
# Two classes: 0 = road (stuff), 1 = car (thing). ids = class * 1000 + instance; 255000 = void.
def _pq(gt, pred):
    pq = PanopticQuality(2, thing_ids=[1])
    pq.update(np.array([gt]), np.array([pred]))
    return pq


def test_pq_void_pixels_removed_from_union():
    gt = [0, 0, 0, 0, 1001, 1001, 1001, 255000, 255000, 1002]
    pred = [0, 0, 0, 1001, 1001, 1001, 1001, 1001, 1003, 1003]
    pq = _pq(gt, pred)
    # road: inter 3, union 4 + 3 - 3 = 4 -> IoU 0.75 (TP)
    # car 1001 vs pred 1001: inter 3 (pos 4-6), pred area 5 with 1 px on void (pos 7)
    #   -> union 3 + 5 - 3 - 1 = 4 -> IoU 0.75 (TP)
    # car 1002 vs pred 1003: inter 1 (pos 9), pred area 2 with 1 px on void (pos 8)
    #   -> union 1 + 2 - 1 - 1 = 1 -> IoU 1.0 (TP; would be 0.5 without void removal)
    per = pq.per_class()
    assert (per[0].tp, per[0].fp, per[0].fn) == (1, 0, 0)
    assert per[0].pq == pytest.approx(0.75) and per[0].sq == pytest.approx(0.75) and per[0].rq == 1.0
    assert (per[1].tp, per[1].fp, per[1].fn) == (2, 0, 0)
    assert per[1].pq == pytest.approx((0.75 + 1.0) / 2)
    s = pq.summary(names=["road", "car"])
    assert s["all"]["pq"] == pytest.approx((0.75 + 0.875) / 2)
    assert s["things"]["pq"] == pytest.approx(0.875)
    assert s["stuff"]["pq"] == pytest.approx(0.75)
    assert s["per_class"][1]["name"] == "car"


def test_pq_crowd_region_and_false_positive_rule():
    gt = [1000, 1000, 1000, 1000, 0, 0, 0, 0, 0, 0]  # car crowd (instance 0) then road
    pred = [1001, 1001, 1001, 1002, 1002, 0, 0, 0, 0, 0]
    pq = _pq(gt, pred)
    # pred 1001: 3/3 px on the car crowd -> ignored (not FP); crowd is never a FN
    # pred 1002: 1/2 px on crowd = 0.5, not > 0.5 -> FP
    # road: inter 5, union 6 + 5 - 5 = 6 -> IoU 5/6 TP
    per = pq.per_class()
    assert (per[1].tp, per[1].fp, per[1].fn) == (0, 1, 0)
    assert per[1].pq == 0.0 and per[1].sq == 0.0 and per[1].rq == 0.0
    assert per[0].pq == pytest.approx(5 / 6)
    assert pq.average("all").pq == pytest.approx((5 / 6 + 0.0) / 2)


def test_pq_iou_exactly_half_does_not_match():
    pq = _pq([1001, 1001, 1001, 1001, 0, 0], [1001, 1001, 0, 0, 0, 0])
    # car: inter 2, union 4 + 2 - 2 = 4 -> 0.5 -> FN 1 and FP 1
    # road: inter 2, union 2 + 4 - 2 = 4 -> 0.5 -> FN 1 and FP 1
    per = pq.per_class()
    assert [(e.tp, e.fp, e.fn) for e in per] == [(0, 1, 1), (0, 1, 1)]
    assert pq.average().pq == 0.0 and pq.average().rq == 0.0


def test_pq_predicted_void_reduces_iou_and_ignore_gt_is_void():
    pq = _pq([0, 0, 0, 0, 255000], [0, 0, 0, 255000, 0])
    # road: gt area 4, pred area 4 of which 1 px on GT void; inter 3
    #   -> union 4 + 4 - 3 - 1 = 4 -> IoU 0.75
    assert pq.per_class()[0].sq == pytest.approx(0.75)
    # classes with no TP/FP/FN are excluded from the averages
    assert math.isnan(pq.per_class()[1].pq)
    assert pq.average("all").n == 1 and pq.average("all").pq == pytest.approx(0.75)
    assert math.isnan(pq.average("things").pq)
    assert pq.summary()["things"]["pq"] is None


def test_pq_accumulates_over_frames_before_averaging():
    pq = PanopticQuality(2, thing_ids=[1])
    pq.update(np.array([[1001, 1001]]), np.array([[1001, 1001]]))  # TP IoU 1
    pq.update(np.array([[1001, 0]]), np.array([[0, 0]]))  # car FN; road inter 1 union 2 -> no match
    # car: TP 1, FN 1 -> PQ = 1 / (1 + 0.5) ; road: FP 1, FN 1 -> 0
    assert pq.per_class()[1].pq == pytest.approx(1 / 1.5)
    assert pq.per_class()[0].pq == 0.0


def test_pq_rejects_unknown_class():
    pq = PanopticQuality(2, thing_ids=[1])
    with pytest.raises(ValueError, match="7001"):
        pq.update(np.array([[0]]), np.array([[7001]]))


# ------------------------------------------------------------------------------ PQ properties
def _panoptic_maps(draw, h, w):
    cls = draw(hnp.arrays(np.int64, (h, w), elements=st.sampled_from([0, 1, 2, 3, 255])))
    inst = draw(hnp.arrays(np.int64, (h, w), elements=st.integers(0, 3)))
    things = np.isin(cls, [2, 3])
    ids = np.where(things, cls * 1000 + inst, cls * 1000)
    return ids


@st.composite
def panoptic_pair(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return _panoptic_maps(draw, h, w), _panoptic_maps(draw, h, w)


def _permute_instances(ids, perm_seed):
    """Relabel thing instances (instance > 0) by a random bijection to new ids."""
    rng = np.random.default_rng(perm_seed)
    out = ids.copy()
    uniq = [u for u in np.unique(ids) if u % 1000 != 0 and u // 1000 != 255]
    new = rng.permutation(np.arange(1, 1 + 3 * len(uniq) + 1))[: len(uniq)] if uniq else []
    for old, n in zip(uniq, new):
        out[ids == old] = (old // 1000) * 1000 + int(n)
    return out


@settings(max_examples=60, deadline=None)
@given(pair=panoptic_pair(), seed=st.integers(0, 2**31))
def test_pq_invariant_to_instance_id_permutation(pair, seed):
    gt, pred = pair
    a = PanopticQuality(4, thing_ids=[2, 3])
    a.update(gt, pred)
    b = PanopticQuality(4, thing_ids=[2, 3])
    b.update(_permute_instances(gt, seed), _permute_instances(pred, seed + 1))
    assert a.summary() == b.summary()


@settings(max_examples=60, deadline=None)
@given(pair=panoptic_pair())
def test_pq_perfect_prediction_is_one(pair):
    gt, _ = pair
    pq = PanopticQuality(4, thing_ids=[2, 3])
    pq.update(gt, gt)
    s = pq.average("all")
    assert s.fp == 0 and s.fn == 0
    if s.n:
        assert s.pq == pytest.approx(1.0) and s.sq == pytest.approx(1.0) and s.rq == 1.0

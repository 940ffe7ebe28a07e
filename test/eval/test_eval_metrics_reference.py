"""seg_perception.eval.metrics against the reference evaluators' own numbers.

The frames (Cityscapes-format GT, our panoptic predictions) and what cityscapesscripts,
detectron2's SemSegEvaluator and panopticapi's pq_compute computed on them are stored in
test/eval/data/metrics_reference.{npz,json}; data/README.md says exactly what was run. Here the
same frames go through our ConfusionMatrix / PanopticQuality (and our Cityscapes GT conversion) and
must give the reference's numbers up to float rounding.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from seg_perception.datasets.labels import get_label_set
from seg_perception.eval.gt import cityscapes_instances_to_panoptic, semantic_from_panoptic
from seg_perception.eval.metrics import ConfusionMatrix, PanopticQuality

DATA = Path(__file__).parent / "data"
LS = get_label_set("cityscapes")
TOL = 1e-12  # same arithmetic, float64 throughout; only summation order differs


@pytest.fixture(scope="module")
def ref():
    return json.loads((DATA / "metrics_reference.json").read_text())


@pytest.fixture(scope="module")
def frames():
    d = np.load(DATA / "metrics_reference.npz")
    return d["gt_instance_ids"], d["pred_panoptic"], d["pred_semantic_d2"]


def _scopes(n):
    return [("all", list(range(n)))] + [(f"frame{i}", [i]) for i in range(n)]


def _confusion(frames, idx, d2=False):
    inst, pred, pred_d2 = frames
    cm = ConfusionMatrix(LS.num_classes)
    for i in idx:
        label_ids = np.where(inst[i] >= 1000, inst[i] // 1000, inst[i])
        cm.update(LS.map_label_ids(label_ids), pred_d2[i] if d2 else semantic_from_panoptic(pred[i], LS))
    return cm


def _pq(frames, idx):
    inst, pred, _ = frames
    pq = PanopticQuality(LS.num_classes, LS.thing_ids)
    for i in idx:
        pq.update(cityscapes_instances_to_panoptic(inst[i], LS), pred[i])
    return pq


def _close(ref_value, ours, tol=TOL):
    """Reference ``None`` (NaN in its output) must be NaN here too."""
    if ref_value is None:
        return math.isnan(ours)
    return abs(ref_value - ours) <= tol


def test_inputs_cover_the_advertised_cases(frames, ref):
    inst, pred, _ = frames
    label_ids = np.where(inst >= 1000, inst // 1000, inst)
    train_gt = LS.map_label_ids(label_ids)
    things = [24, 25, 26, 27, 28, 31, 32, 33]
    assert np.isin(inst[inst < 1000], things).any(), "no crowd (group) region in the GT"
    assert (train_gt == 255).any() and (pred == 255000).any(), "no GT void / predicted void"
    pred_cls = set(np.unique(pred // 1000).tolist()) - {255}
    assert pred_cls - set(np.unique(train_gt).tolist()), "no prediction-only class"
    assert len(inst) >= 4
    # the hand-placed frame holds an IoU-0.5 miss and a 20/39 and 21/40 match (reference counts)
    edge = ref["panoptic_counts_per_frame"][6]
    assert edge["13"][:3] == [0, 2, 1] and edge["11"][3] == pytest.approx(20 / 39) and edge["12"][3] == 0.525


@pytest.mark.parametrize("scope", [s for s, _ in _scopes(8)])
def test_miou_cityscapes_convention_matches_cityscapesscripts(frames, ref, scope):
    """cityscapesscripts evalPixelLevelSemanticLabeling: classScores (NaN where TP+FP+FN == 0)
    and averageScoreClasses (mean over non-NaN classes) == our 'cityscapes' convention."""
    idx = dict(_scopes(len(frames[0])))[scope]
    cs = ref["semantic_cityscapes"][scope]
    cm = _confusion(frames, idx)
    iou = cm.iou()
    for c, name in enumerate(LS.names):
        assert _close(cs["classScores"][name], iou[c]), (scope, name, cs["classScores"][name], iou[c])
    assert _close(cs["averageScoreClasses"], cm.miou("cityscapes"))
    summary = cm.summary("cityscapes", names=LS.names)
    assert summary["evaluated_classes"] == sum(v is not None for n, v in cs["classScores"].items() if n in LS.names)


@pytest.mark.parametrize("scope", [s for s, _ in _scopes(8)])
def test_miou_detectron2_convention_matches_sem_seg_evaluator(frames, ref, scope):
    """detectron2 SemSegEvaluator.evaluate (values x100): mIoU over classes with GT pixels, fwIoU,
    mACC, pACC, per-class IoU / ACC (NaN for classes without GT, even when predicted)."""
    idx = dict(_scopes(len(frames[0])))[scope]
    d2 = ref["semantic_detectron2"][scope]
    cm = _confusion(frames, idx, d2=True)
    assert _close(d2["mIoU"], 100 * cm.miou("detectron2"), 1e-10)
    assert _close(d2["fwIoU"], 100 * cm.frequency_weighted_iou(), 1e-10)
    assert _close(d2["mACC"], 100 * cm.mean_class_accuracy(), 1e-10)
    assert _close(d2["pACC"], 100 * cm.pixel_accuracy(), 1e-10)
    iou, acc, has_gt = cm.iou(), cm.class_accuracy(), cm.gt_pixels > 0
    for c, name in enumerate(LS.names):
        assert _close(d2[f"IoU-{name}"], 100 * iou[c] if has_gt[c] else math.nan, 1e-10), (scope, name)
        assert _close(d2[f"ACC-{name}"], 100 * acc[c], 1e-10), (scope, name)


@pytest.mark.parametrize("which", ["panoptic_coco", "panoptic_cityscapes"])
def test_pq_matches_reference_averages_and_per_class(frames, ref, which):
    """panopticapi pq_compute and cityscapesscripts evaluatePanoptic on the COCO files (GT from
    cityscapesscripts' convert2panoptic, predictions from our CocoPanopticWriter): All / Things /
    Stuff PQ, SQ, RQ and n, and per class (the reference prints 0 for classes with no TP/FP/FN and
    leaves them out of the means; we report NaN)."""
    r = ref[which]
    pq = _pq(frames, range(len(frames[0])))
    for ours, name in [("all", "All"), ("things", "Things"), ("stuff", "Stuff")]:
        e = pq.average(ours)
        assert e.n == r[name]["n"]
        for k in ("pq", "sq", "rq"):
            assert _close(r[name][k], getattr(e, k)), (name, k)
    for c, e in enumerate(pq.per_class()):
        rc = r["per_class"][str(c)]
        if e.n == 0:
            assert rc == {"pq": 0.0, "sq": 0.0, "rq": 0.0} and math.isnan(e.pq)
        else:
            for k in ("pq", "sq", "rq"):
                assert _close(rc[k], getattr(e, k)), (c, k)


@pytest.mark.parametrize("scope", ["all"] + [f"frame{i}" for i in range(8)])
def test_pq_counts_match_reference_pq_stat(frames, ref, scope):
    """The reference's PQStat per category (tp, fp, fn, summed IoU), accumulated and per frame."""
    n = len(frames[0])
    idx = dict(_scopes(n))[scope]
    counts = ref["panoptic_counts"] if scope == "all" else ref["panoptic_counts_per_frame"][idx[0]]
    pq = _pq(frames, idx)
    for c in range(LS.num_classes):
        tp, fp, fn, iou = counts[str(c)]
        assert (int(pq.tp[c]), int(pq.fp[c]), int(pq.fn[c])) == (tp, fp, fn), (scope, c)
        assert abs(pq.iou_sum[c] - iou) <= TOL, (scope, c)


def test_reference_categories_agree_with_label_set(ref):
    """convert2panoptic's categories (trainIds, isthing = hasInstances) are our label set's."""
    cats = {c["id"]: c for c in ref["gt_categories"]}
    assert sorted(cats) == list(range(LS.num_classes))
    for c in range(LS.num_classes):
        assert cats[c]["name"] == LS.names[c]
        assert bool(cats[c]["isthing"]) == LS.is_thing(c)

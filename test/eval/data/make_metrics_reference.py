"""Regenerate metrics_reference.npz / metrics_reference.json (see README.md in this folder).

Not a test and not imported by one: it writes the inputs, runs the *reference* evaluators on them
and stores their numbers. Reference code is read from outside the repository at run time and never
copied here. Three stages, run from the repository root:

1. project stage (the project's venv: torch, cv2, seg_perception)::

       PYTHONPATH=$PWD python test/eval/data/make_metrics_reference.py project WORK \
           --detectron2-src /path/to/detectron2/evaluation/sem_seg_evaluation.py

   builds the frames (numpy default_rng(20261205)), writes them as Cityscapes ``gtFine`` PNGs
   (``*_gtFine_labelIds.png``, ``*_gtFine_instanceIds.png``), writes our predictions with
   ``CocoPanopticWriter`` (the ``eval-bag`` export) and as labelIds PNGs, and runs detectron2's
   ``SemSegEvaluator`` (its file unchanged; only the framework imports it needs - dataset
   catalogs, ``comm``, ``PathManager``, ``pycocotools.mask`` for its JSON dump - are stand-ins).
2. reference stage (a scratch venv with ``cityscapesscripts==2.3.0``, ``numpy<2.4``, ``pillow``)::

       python test/eval/data/make_metrics_reference.py reference WORK --panopticapi-src /path/to/panopticapi/repo

   runs cityscapesscripts' ``evalPixelLevelSemanticLabeling.evaluateImgLists``, its
   ``createPanopticImgs.convert2panoptic`` (GT -> COCO panoptic), its
   ``evalPanopticSemanticLabeling`` functions and panopticapi's ``pq_compute`` on those files.
3. ``pack`` (either venv) writes ``metrics_reference.npz`` and ``metrics_reference.json`` here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path

import numpy as np

H, W = 48, 64
SEED = 20261205
CITY = "refcity"
HERE = Path(__file__).resolve().parent

# Cityscapes labelIds used to draw the scenes.
STUFF_GT = [7, 8, 11, 12, 13, 21, 23]  # road sidewalk building wall fence vegetation sky (never terrain 22)
THINGS_GT = [24, 25, 26, 27, 28, 33]  # person rider car truck bus bicycle (never train 31, motorcycle 32)
VOID_GT = [0, 1, 4, 5, 9, 18]  # unlabeled ego-vehicle static dynamic parking polegroup (ignoreInEval)
IGNORED_THING_GT = [29, 30]  # caravan trailer: instances of classes without a train id -> void


def frame_name(i: int) -> str:
    """Cityscapes-style stem ``<city>_<seq>_<frame>``, as evalPixelLevelSemanticLabeling expects."""
    return f"{CITY}_000000_{i:06d}"


# ----------------------------------------------------------------------------------------- scenes
def _rect(rng, hmax=14, wmax=18):
    h, w = int(rng.integers(1, hmax + 1)), int(rng.integers(1, wmax + 1))
    y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    return y, y + h, x, x + w


def random_scene(rng) -> list[tuple]:
    """Layers ``(y0, y1, x0, x1, label_id, kind)``, drawn in order; kind: stuff/inst/crowd/void."""
    cuts = np.sort(rng.choice(np.arange(4, H - 4), size=4, replace=False))
    bands = [23, 11, int(rng.choice([21, 12, 13])), 8, 7]
    edges = [0, *cuts.tolist(), H]
    layers = [(edges[i], edges[i + 1], 0, W, bands[i], "stuff") for i in range(5)]
    x = int(rng.integers(0, W - 2))
    layers.append((edges[1], edges[4], x, x + int(rng.integers(1, 3)), 17, "stuff"))  # pole
    for _ in range(int(rng.integers(1, 4))):
        layers.append((*_rect(rng, 8, 12), int(rng.choice(VOID_GT)), "void"))
    if rng.random() < 0.6:
        layers.append((*_rect(rng, 10, 20), int(rng.choice([24, 26])), "crowd"))
    for _ in range(int(rng.integers(3, 8))):
        big = rng.random() < 0.7
        layers.append((*_rect(rng, 14 if big else 3, 18 if big else 3), int(rng.choice(THINGS_GT)), "inst"))
    if rng.random() < 0.5:
        layers.append((*_rect(rng, 8, 10), int(rng.choice(IGNORED_THING_GT)), "inst"))
    if rng.random() < 0.5:
        layers.append((H - int(rng.integers(1, 4)), H, 0, W, 1, "void"))  # ego vehicle along the bottom
    return layers


def draw_gt(layers) -> np.ndarray:
    """Cityscapes instanceIds (H, W) uint16: ``labelId*1000+k`` per instance, plain labelId otherwise."""
    img = np.zeros((H, W), dtype=np.uint16)
    count: dict[int, int] = {}
    for y0, y1, x0, x1, lid, kind in layers:
        if kind == "inst":
            k = count.get(lid, 0)
            count[lid] = k + 1
            img[y0:y1, x0:x1] = lid * 1000 + k
        else:
            img[y0:y1, x0:x1] = lid
    return img


def draw_pred(layers, rng, lut) -> np.ndarray:
    """Our panoptic ids (H, W) int32 from perturbed layers: jitter, drops, class swaps, splits,
    merges, void patches, spurious small segments (incl. classes absent from the GT), pixel noise."""
    pred = np.full((H, W), 255000, dtype=np.int32)
    next_inst = iter(rng.permutation(np.arange(1, 999)).tolist())
    merged: dict[int, int] = {}
    for y0, y1, x0, x1, lid, kind in layers:
        j = rng.integers(-2, 3, size=4)
        y0, y1 = int(np.clip(y0 + j[0], 0, H)), int(np.clip(y1 + j[1], 0, H))
        x0, x1 = int(np.clip(x0 + j[2], 0, W)), int(np.clip(x1 + j[3], 0, W))
        if kind == "void":
            pred[y0:y1, x0:x1] = int(rng.choice([0, 8000, 255000, 255000, 9000]))  # road / veg / void / terrain
            continue
        if kind == "stuff":
            train = int(lut[lid])
            if rng.random() < 0.15:
                train = int(rng.choice([0, 1, 2, 8, 9, 10]))
            pred[y0:y1, x0:x1] = train * 1000
            continue
        if rng.random() < 0.1:
            continue  # missed object
        train = int(lut[lid]) if lut[lid] != 255 else int(rng.choice([13, 14]))
        if rng.random() < 0.1:
            train = int(rng.choice([11, 12, 13, 14, 15, 16, 18]))
        if rng.random() < 0.15 and train in merged:
            inst = merged[train]  # merged with an earlier object of the class
        else:
            inst = next(next_inst)
            merged[train] = inst
        pred[y0:y1, x0:x1] = train * 1000 + inst
        if rng.random() < 0.15 and y1 - y0 >= 2:  # split in two
            pred[(y0 + y1) // 2:y1, x0:x1] = train * 1000 + next(next_inst)
    for _ in range(int(rng.integers(0, 3))):
        y0, y1, x0, x1 = _rect(rng, 6, 8)
        pred[y0:y1, x0:x1] = 255000
    for _ in range(int(rng.integers(2, 6))):
        y0, y1, x0, x1 = _rect(rng, 3, 3)
        train = int(rng.choice([5, 6, 7, 11, 13, 16, 18]))
        pred[y0:y1, x0:x1] = train * 1000 + (next(next_inst) if train >= 11 else 0)
    noise = rng.random((H, W)) < 0.02
    ids = np.unique(pred)
    pred[noise] = rng.choice(ids, size=int(noise.sum()))
    return pred


def edge_frames() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two hand-placed frames: IoU exactly 0.5 and just above it (with and without void pixels in
    the union), predictions on crowd regions (own / other class, exactly half), mostly on void,
    tiny unmatched segments, a GT class predicted entirely as void, a prediction-only class."""
    gt = np.full((H, W), 7, dtype=np.uint16)  # road
    pr = np.full((H, W), 0, dtype=np.int32)
    gt[0:4, 0:10] = 26000; pr[0:4, 0:5] = 13001  # car: inter 20, union 40 -> IoU 0.5, no match
    gt[6:8, 0:10] = 24000; gt[8, 0:10] = 1  # person 20 px over an ego-vehicle row
    pr[4:8, 0:10] = 11001; pr[4, 0] = 0; pr[8, 0] = 11001  # 20 on GT + 19 on road + 1 on void: 20/39
    gt[10:14, 0:10] = 25000; pr[10:14, 0:10] = 0; pr[10:12, 0:10] = 12001; pr[12, 0] = 12001  # rider 21/40
    gt[10:14, 12:22] = 33000; gt[14, 12:22] = 0  # bicycle 40 px, unlabeled row below
    pr[10:12, 12:22] = 18001; pr[14, 12] = 18001  # 20 inside + 1 on void: union 40 -> 0.5, no match
    gt[16:22, 0:20] = 26  # car crowd (group)
    pr[16:19, 0:10] = 13002  # all on the car crowd -> not a FP
    pr[19:22, 0:5] = 13003; pr[22:25, 0:5] = 13003  # half on crowd, half road -> FP
    pr[16:19, 10:20] = 11002  # person on the *car* crowd -> FP
    gt[22:24, 16:30] = 4  # static (void) below the crowd
    pr[20:24, 16:22] = 13004  # 8 crowd + 12 void + 4 road of 24: only crowd + void together > half -> not a FP
    gt[30:32, 0:10] = 0; pr[30:33, 0:10] = 14001  # truck 20/30 on void -> not a FP
    gt[30:31, 12:22] = 0; pr[30:32, 12:22] = 15001  # bus exactly half on void -> FP
    gt[30:32, 40:50] = 0; pr[30:32, 40:50] = 9000  # terrain only on void
    gt[40, 40] = 19; gt[40, 42:44] = 20; gt[40, 46:48] = 24001  # tiny GT segments, predicted road
    pr[42, 50] = 16001  # 1-px train (class never in GT) -> FP
    gt[44:48, :] = 8; pr[44:48, :] = 255000  # sidewalk predicted void
    frame_a = (gt, pr)

    gt = np.zeros((H, W), dtype=np.uint16)  # almost all unlabeled
    pr = np.full((H, W), 255000, dtype=np.int32)
    gt[10:20, 10:30] = 11; pr[10:20, 10:25] = 2000; pr[10:20, 25:30] = 10000  # building 150/200
    gt[25:35, 10:20] = 26001; pr[26:36, 10:20] = 13007  # car 90/110
    gt[25:35, 30:40] = 26002; pr[25:35, 30:40] = 13008; pr[25:35, 35:40] = 13009  # split: 50/100 + 50
    pr[0:5, 0:64] = 10000  # sky on void: no FP (all on void)
    gt[38:44, 40:50] = 24; pr[38:44, 40:50] = 11020  # exactly a person crowd: never a match, not a FP
    frame_b = (gt, pr)
    return [frame_a, frame_b]


def build_inputs() -> dict[str, np.ndarray]:
    from seg_perception.datasets.labels import get_label_set

    lut = get_label_set("cityscapes").label_id_to_train_id
    rng = np.random.default_rng(SEED)
    gts, preds = [], []
    for _ in range(6):
        layers = random_scene(rng)
        gts.append(draw_gt(layers))
        preds.append(draw_pred(layers, rng, lut))
    for g, p in edge_frames():
        gts.append(g)
        preds.append(p)
    pred = np.stack(preds)
    sem = pred // 1000
    # detectron2's evaluator argmaxes logits, so it cannot receive a void prediction: there the
    # void pixels are predicted as sky (10).
    d2 = np.where(sem >= 19, 10, sem).astype(np.uint8)
    return {"gt_instance_ids": np.stack(gts), "pred_panoptic": pred, "pred_semantic_d2": d2}


# ---------------------------------------------------------------------------------- stage: project
def _write_png(path: Path, img: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(path)


def stage_project(work: Path, d2_src: Path) -> None:
    from seg_perception.datasets.labels import get_label_set, train_id_to_label_id
    from seg_perception.eval.coco_panoptic import CocoPanopticWriter
    from seg_perception.eval.gt import semantic_from_panoptic

    ls = get_label_set("cityscapes")
    inputs = build_inputs()
    np.savez_compressed(work / "inputs.npz", **inputs)
    t2l = train_id_to_label_id(ls)
    writer = CocoPanopticWriter(work / "export", ls)
    for i, (inst, pred) in enumerate(zip(inputs["gt_instance_ids"], inputs["pred_panoptic"])):
        name = frame_name(i)
        label_ids = np.where(inst >= 1000, inst // 1000, inst).astype(np.uint8)
        _write_png(work / "gtFine" / "val" / CITY / f"{name}_gtFine_labelIds.png", label_ids)
        _write_png(work / "gtFine" / "val" / CITY / f"{name}_gtFine_instanceIds.png", inst.astype(np.uint16))
        sem = semantic_from_panoptic(pred, ls)
        pred_label_ids = np.where(sem == 255, 0, t2l[np.minimum(sem, 18)]).astype(np.uint8)  # void -> unlabeled
        _write_png(work / "pred_labelIds" / f"{name}_pred_labelIds.png", pred_label_ids)
        _write_png(work / "gt_trainIds" / f"{name}.png", ls.map_label_ids(label_ids))
        writer.add(name, sem, pred, image_id=name)
    writer.close()
    res = run_detectron2(d2_src, work, inputs["pred_semantic_d2"], ls.names)
    (work / "detectron2.json").write_text(json.dumps(res, indent=1))


def run_detectron2(src: Path, work: Path, preds: np.ndarray, names) -> dict:
    """detectron2's SemSegEvaluator.process/evaluate, its source file unchanged."""
    import torch

    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        m.__path__ = []
        sys.modules[name] = m
        return m

    records = [{"file_name": frame_name(i), "sem_seg_file_name": str(work / "gt_trainIds" / f"{frame_name(i)}.png")}
               for i in range(len(preds))]
    meta = types.SimpleNamespace(stuff_classes=list(names), ignore_label=255)  # no dataset-id mapping
    mod("detectron2")
    mod("detectron2.data", DatasetCatalog=types.SimpleNamespace(get=lambda _n: records),
        MetadataCatalog=types.SimpleNamespace(get=lambda _n: meta))
    mod("detectron2.utils")
    mod("detectron2.utils.comm", all_gather=lambda x: [x], is_main_process=lambda: True, synchronize=lambda: None)
    mod("detectron2.utils.file_io", PathManager=types.SimpleNamespace(open=open, mkdirs=lambda p: os.makedirs(p, exist_ok=True)))
    mod("detectron2.evaluation")
    mod("detectron2.evaluation.evaluator", DatasetEvaluator=object)
    mod("pycocotools")
    mod("pycocotools.mask", encode=lambda a: [{"counts": b""}])  # only feeds its JSON dump
    code = compile(src.read_text(), str(src), "exec")
    m = types.ModuleType("detectron2.evaluation.sem_seg_evaluation")
    m.__package__ = "detectron2.evaluation"
    exec(code, m.__dict__)
    ev = m.SemSegEvaluator("refset", distributed=False)
    out = {}
    for scope, frames in [("all", range(len(preds))), *[(f"frame{i}", [i]) for i in range(len(preds))]]:
        ev.reset()
        for i in frames:
            logits = torch.nn.functional.one_hot(torch.from_numpy(preds[i].astype(np.int64)), len(names))
            ev.process([{"file_name": frame_name(i)}], [{"sem_seg": logits.permute(2, 0, 1).float()}])
        res = ev.evaluate()["sem_seg"]
        out[scope] = {k: (None if not np.isfinite(v) else float(v)) for k, v in res.items()
                      if not k.startswith(("BoundaryIoU", "min("))}
    return out


# -------------------------------------------------------------------------------- stage: reference
def stage_reference(work: Path, panopticapi_src: Path) -> None:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as pix
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cpan
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
    from PIL import Image

    sys.path.insert(0, str(panopticapi_src))
    from panopticapi import evaluation as coco_eval
    from panopticapi.utils import rgb2id

    n = len(list((work / "pred_labelIds").glob("*.png")))
    gt_files = [str(work / "gtFine" / "val" / CITY / f"{frame_name(i)}_gtFine_labelIds.png") for i in range(n)]
    pred_files = [str(work / "pred_labelIds" / f"{frame_name(i)}_pred_labelIds.png") for i in range(n)]
    args = pix.args
    args.evalInstLevelScore = False  # nIoU (instance-weighted) is not a metric we report
    args.JSONOutput = False
    args.quiet = True
    semantic = {}
    for scope, idx in [("all", range(n)), *[(f"frame{i}", [i]) for i in range(n)]]:
        r = pix.evaluateImgLists([pred_files[i] for i in idx], [gt_files[i] for i in idx], args)
        semantic[scope] = {
            "classScores": {k: (None if v != v else v) for k, v in r["classScores"].items()},
            "averageScoreClasses": r["averageScoreClasses"],
        }

    (work / "coco_gt").mkdir(exist_ok=True)
    convert2panoptic(str(work / "gtFine"), str(work / "coco_gt"), useTrainId=True, setNames=["val"])
    gt_json = work / "coco_gt" / "cityscapes_panoptic_val_trainId.json"
    gt_dir = work / "coco_gt" / "cityscapes_panoptic_val_trainId"
    pred_json = work / "export" / "panoptic" / "predictions.json"
    pred_dir = work / "export" / "panoptic"
    coco = coco_eval.pq_compute(str(gt_json), str(pred_json), str(gt_dir), str(pred_dir))
    cs = cpan.evaluatePanoptic(str(gt_json), str(gt_dir), str(pred_json), str(pred_dir), str(work / "cs_pq.json"))

    # Raw PQStat counts of the reference, accumulated and per frame (same pairing as pq_compute).
    gj, pj = json.loads(gt_json.read_text()), json.loads(pred_json.read_text())
    cats = {c["id"]: c for c in gj["categories"]}
    pred_by_id = {a["image_id"]: a for a in pj["annotations"]}
    pairs = [(a, pred_by_id[a["image_id"]]) for a in sorted(gj["annotations"], key=lambda a: a["image_id"])]

    def counts(stat):
        return {int(c): [stat[c].tp, stat[c].fp, stat[c].fn, float(stat[c].iou)] for c in sorted(cats)}

    total = coco_eval.pq_compute_single_core(0, pairs, str(gt_dir), str(pred_dir), cats)
    per_frame = [counts(coco_eval.pq_compute_single_core(0, [p], str(gt_dir), str(pred_dir), cats)) for p in pairs]
    decoded = np.stack([rgb2id(np.array(Image.open(pred_dir / p["file_name"]), dtype=np.uint32)) for _g, p in pairs])
    np.save(work / "export_ids.npy", decoded.astype(np.int32))
    doc = {
        "semantic_cityscapes": semantic,
        "panoptic_coco": {k: _clean(v) for k, v in coco.items()},
        "panoptic_cityscapes": {k: _clean(v) for k, v in cs.items()},
        "panoptic_counts": counts(total),
        "panoptic_counts_per_frame": per_frame,
        "export_segments_info": [p["segments_info"] for _g, p in pairs],
        "gt_categories": gj["categories"],
    }
    (work / "reference.json").write_text(json.dumps(doc, indent=1, default=_np_default))


def _clean(v):
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    return float(v) if isinstance(v, (float, np.floating)) else v


def _np_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(type(o))


# ------------------------------------------------------------------------------------- stage: pack
def stage_pack(work: Path, provenance: dict) -> None:
    inputs = dict(np.load(work / "inputs.npz"))
    inputs["export_ids"] = np.load(work / "export_ids.npy")
    np.savez_compressed(HERE / "metrics_reference.npz", **inputs)
    ref = json.loads((work / "reference.json").read_text())
    ref["semantic_detectron2"] = json.loads((work / "detectron2.json").read_text())
    ref["provenance"] = provenance
    ref["frames"] = [frame_name(i) for i in range(len(inputs["pred_panoptic"]))]
    (HERE / "metrics_reference.json").write_text(json.dumps(ref, indent=1, sort_keys=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["project", "reference", "pack"])
    ap.add_argument("work", type=Path)
    ap.add_argument("--detectron2-src", type=Path)
    ap.add_argument("--panopticapi-src", type=Path)
    ap.add_argument("--provenance", type=Path, help="JSON file with the reference versions (pack)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.stage == "project":
        stage_project(a.work, a.detectron2_src)
    elif a.stage == "reference":
        stage_reference(a.work, a.panopticapi_src)
    else:
        stage_pack(a.work, json.loads(a.provenance.read_text()) if a.provenance else {})


if __name__ == "__main__":
    main()

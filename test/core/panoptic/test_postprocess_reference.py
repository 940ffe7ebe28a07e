"""Panoptic-DeepLab post-processing reproduces the references' ids exactly.

Oracle: ``../shared/refs/pdl_postprocess`` -- heads built with exact ties, plateaus and more
candidates than top_k, run through Detectron2's ``get_panoptic_segmentation`` (@ 02b5c4e2;
bowenc0221's @ cf8e20bb gives the same maps). With the project's extensions off (class
splitting, class-aware grouping) our maps and centers must be identical, instance numbers
included; the segment list (``~/instances``, COCO-panoptic export) must describe that map.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seg_perception.eval.coco_panoptic import CocoPanopticWriter, rgb_to_id
from seg_perception.datasets.labels import get_label_set
from seg_perception.core.panoptic import PanopticConfig, camera_postprocess, find_centers, panoptic_postprocess
from test import reference_fixtures as rf

FIX = "pdl_postprocess"


@pytest.fixture(scope="module")
def heads():
    with np.load(rf.refs_dir() / FIX / "heads.npz") as z:
        h = {k: z[k] for k in z.files}
    with np.load(rf.refs_dir() / FIX / "expected.npz") as z:
        e = {k: z[k] for k in z.files}
    return h, e


def _cfg(top_k: int, **extra) -> PanopticConfig:
    st = rf.manifest(FIX)["settings"]
    h, w = 128, 256
    return PanopticConfig(center_threshold=st["threshold"], nms_kernel=st["nms_kernel"], top_k=top_k,
                          stuff_area=st["stuff_area"], stuff_area_reference_hw=(h, w),
                          label_divisor=st["label_divisor"], void_label=st["void_label"], **extra)


def _run(h, top_k: int, **extra):
    st = rf.manifest(FIX)["settings"]
    return panoptic_postprocess(torch.from_numpy(h["sem_logits"][0].astype(np.float32)),
                                torch.from_numpy(h["center"][0]), torch.from_numpy(h["offset"][0]),
                                thing_ids=frozenset(st["thing_ids"]), cfg=_cfg(top_k, **extra))


TOP_KS = rf.manifest(FIX)["settings"]["top_k"]


@pytest.mark.parametrize("top_k", TOP_KS)
def test_centers_match_reference(heads, top_k) -> None:
    h, e = heads
    centers, scores = find_centers(torch.from_numpy(h["center"][0]), _cfg(top_k))
    ref = e[f"centers_topk{top_k}"]
    # same set and, since both are in raster order, the same order
    np.testing.assert_array_equal(centers.numpy(), ref.astype(np.int64))
    assert torch.equal(scores, torch.from_numpy(h["center"][0, 0])[centers[:, 0], centers[:, 1]])


@pytest.mark.parametrize("top_k", TOP_KS)
def test_panoptic_ids_match_reference_exactly(heads, top_k) -> None:
    h, e = heads
    out = _run(h, top_k)
    np.testing.assert_array_equal(out.panoptic.numpy(), e[f"panoptic_topk{top_k}"])
    np.testing.assert_array_equal(out.semantic.numpy(), h["semantic_labels"].astype(np.int64))


@pytest.mark.parametrize("top_k", TOP_KS)
def test_camera_path_at_output_resolution_matches_reference_exactly(heads, top_k) -> None:
    """The Segmenter's path (camera_postprocess) with camera = network gives the references' ids too."""
    h, e = heads
    st = rf.manifest(FIX)["settings"]
    logits = torch.from_numpy(h["sem_logits"][0].astype(np.float32))
    out = camera_postprocess(logits, torch.from_numpy(h["center"][0]), torch.from_numpy(h["offset"][0]),
                             tuple(logits.shape[1:]), thing_ids=frozenset(st["thing_ids"]), cfg=_cfg(top_k))
    np.testing.assert_array_equal(out.panoptic.numpy(), e[f"panoptic_topk{top_k}"])
    np.testing.assert_array_equal(out.semantic.numpy().astype(np.int64), h["semantic_labels"].astype(np.int64))


@pytest.mark.parametrize("top_k", TOP_KS)
def test_segments_instances_and_coco_export_follow_the_map(heads, top_k, tmp_path) -> None:
    """``SegResult.segments`` (published as ``~/instances``) and the COCO export describe exactly
    the reference's segments: same ids, areas, and thing scores = the center value."""
    h, e = heads
    out = _run(h, top_k)
    ref_segments = rf.manifest(FIX)["results"][f"top_k={top_k}"]["segments"]
    want = {s["id"]: s["area"] for s in ref_segments if s["id"] != -1}
    assert {s.id: s.area for s in out.segments} == want
    pan = out.panoptic.numpy()
    for s in out.segments:
        ys, xs = np.nonzero(pan == s.id)
        assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert s.is_thing == (s.id // 1000 in range(11, 19))
    centers, scores = find_centers(torch.from_numpy(h["center"][0]), _cfg(top_k))
    center_values = set(scores.tolist())
    assert all(s.score in center_values for s in out.segments if s.is_thing)

    writer = CocoPanopticWriter(tmp_path, get_label_set("cityscapes"), label_divisor=1000, void_id=-1)
    writer.add("f0", out.semantic.numpy(), pan, out.segments)
    writer.close()
    infos = json.loads((tmp_path / "panoptic" / "predictions.json").read_text())["annotations"][0]["segments_info"]
    assert {i["panoptic_id"]: i["area"] for i in infos} == want
    import cv2
    png = rgb_to_id(cv2.imread(str(tmp_path / "panoptic" / "f0.png"))[..., ::-1])
    by_coco = {i["id"]: i["panoptic_id"] for i in infos}
    mapped = np.vectorize(lambda c: by_coco.get(int(c), -1))(png)
    np.testing.assert_array_equal(mapped, e[f"panoptic_topk{top_k}"])


def test_extensions_keep_working_and_change_only_what_they_own(heads) -> None:
    h, e = heads
    ref = e["panoptic_topk200"]
    split = _run(h, 200, class_split_area=1).panoptic.numpy()
    # class splitting only relabels thing pixels; stuff and void are the reference's
    stuff = (ref == -1) | (ref % 1000 == 0)
    np.testing.assert_array_equal(split[stuff], ref[stuff])
    # the mixed rider/bicycle instance is split into its two classes
    assert len(np.unique(split)) > len(np.unique(ref))
    aware = _run(h, 200, class_aware_grouping=True).panoptic.numpy()
    np.testing.assert_array_equal(aware[stuff], ref[stuff])
    # each thing pixel of class-aware grouping still carries its semantic class or a voted one
    assert set(np.unique(aware[~stuff] // 1000)) <= set(range(11, 19))


def test_reference_parameters_are_accepted() -> None:
    assert PanopticConfig(void_label=-1).validate().void_label == -1
    assert PanopticConfig(top_k=1000).validate().top_k == 1000
    with pytest.raises(ValueError, match="top_k=0"):
        PanopticConfig(top_k=0).validate()

"""Tests for seg_perception.core.panoptic.camera: ids at camera resolution without upsampling every head.

The oracle is the exact path -- every head resized to the camera (``resize_heads``) and grouped
there (``panoptic_postprocess``, itself checked against Detectron2's and bowenc0221's code in
test_postprocess_reference.py and against a loop implementation in test_postprocess.py).
"""
from __future__ import annotations

from itertools import islice

import cv2
import numpy as np
import pytest
import torch

from seg_perception.core.panoptic import PanopticConfig, camera_postprocess, panoptic_postprocess, resize_heads
from seg_perception.core.panoptic.timing import _random_heads
from seg_perception.datasets.labels import get_label_set

# every test twice: compiled kernels and the numpy code they replace (conftest.both_implementations)
pytestmark = pytest.mark.usefixtures("both_implementations")

CITYSCAPES = get_label_set("cityscapes")
THINGS = CITYSCAPES.thing_ids


def _exact(logits, center, offset, out_hw, cfg):
    heads = resize_heads(logits, center, offset, out_hw)
    return panoptic_postprocess(*heads, thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES)


def _compare(fast, exact, min_agreement: float, stuff_score_tol: float | None = 0.05) -> None:
    agree = float((fast.panoptic == exact.panoptic).double().mean())
    assert agree >= min_agreement, agree
    assert float((fast.semantic.long() == exact.semantic).double().mean()) >= 0.999
    by_id = {s.id: s for s in exact.segments}
    if agree == 1.0:  # same ids everywhere: same segments, same area, box and centroid
        assert [s.id for s in fast.segments] == [s.id for s in exact.segments]
        for s in fast.segments:
            e = by_id[s.id]
            assert (s.class_id, s.is_thing, s.area, s.bbox) == (e.class_id, e.is_thing, e.area, e.bbox)
            assert s.centroid == pytest.approx(e.centroid, abs=1e-6)
            if s.is_thing:
                assert s.score == pytest.approx(e.score)
            elif stuff_score_tol is not None:  # nearest-source probability instead of the upsampled one
                assert s.score == pytest.approx(e.score, abs=stuff_score_tol)


def _smooth_heads(seed: int, hw=(24, 40), centers: int = 6):
    """Random heads with blob-shaped classes (a real network's logits are smooth, random ones are not)."""
    logits, heat, offset = _random_heads(hw, 19, centers, "cpu", seed=seed)
    sm = torch.from_numpy(np.stack([cv2.GaussianBlur(c, (0, 0), 2.0) for c in logits.numpy()])) * 6
    return sm, heat, offset


@pytest.mark.parametrize("cfg", [
    PanopticConfig(stuff_area=0),
    PanopticConfig(),
    PanopticConfig(nms_kernel=3, class_aware_grouping=True),
    PanopticConfig(class_split_area=20_000, class_aware_grouping=True),
], ids=["plain", "stuff_area", "class_aware", "class_split"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("out_hw", [(51, 85), (48, 80), (75, 97)])
def test_camera_ids_match_the_exact_path(seed, cfg, out_hw):
    logits, heat, offset = _smooth_heads(seed)
    fast = camera_postprocess(logits, heat, offset, out_hw, thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES)
    _compare(fast, _exact(logits, heat, offset, out_hw, cfg), 0.995)
    assert fast.panoptic.shape == out_hw and fast.panoptic.dtype == torch.int32


@pytest.mark.parametrize("cfg", [PanopticConfig(stuff_area=0), PanopticConfig(class_aware_grouping=True, nms_kernel=3),
                                 PanopticConfig(class_split_area=20_000)], ids=["plain", "class_aware", "class_split"])
@pytest.mark.parametrize("seed", range(3))
def test_at_network_resolution_equals_panoptic_postprocess(seed, cfg):
    """Camera == network: the same ids and segment statistics as the reference-checked function."""
    for logits, heat, offset in (_smooth_heads(seed), _random_heads((24, 40), 19, 6, "cpu", seed=seed)):
        st: dict = {}
        fast = camera_postprocess(logits, heat, offset, (24, 40), thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES,
                                  stage_ms=st)
        assert "upsample_labels" in st  # the fast path ran (the exact path leaves stage_ms empty)
        want = panoptic_postprocess(logits, heat, offset, thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES)
        assert torch.equal(fast.panoptic, want.panoptic) and torch.equal(fast.semantic.long(), want.semantic)
        assert len(fast.segments) == len(want.segments)
        for a, b in zip(fast.segments, want.segments):
            assert (a.id, a.class_id, a.is_thing, a.area, a.bbox) == (b.id, b.class_id, b.is_thing, b.area, b.bbox)
            assert a.centroid == pytest.approx(b.centroid) and a.score == pytest.approx(b.score, rel=1e-5)


def test_camera_ids_on_noise_logits_still_match():
    """Every pixel a class boundary: nearly everything takes the exact per-pixel route."""
    logits, heat, offset = _random_heads((20, 30), 19, 5, "cpu", seed=3)
    fast = camera_postprocess(logits, heat, offset, (45, 70), thing_ids=THINGS, cfg=PanopticConfig(stuff_area=0))
    # (stuff scores not compared: on noise the nearest source's probability is far from the blend's)
    _compare(fast, _exact(logits, heat, offset, (45, 70), PanopticConfig(stuff_area=0)), 0.995, None)


def test_camera_ids_of_the_shipped_model_match_the_exact_path():
    from seg_perception.bag.read import read_images
    from seg_perception.core.conversions import to_rgb
    from seg_perception.core.segmenter import build_segmenter
    from seg_perception.datasets.sample_bag import IMAGE_TOPIC, SAMPLE_BAG_PATH

    seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights=None, resolution=(128, 256), backend="torch")
    cam = (270, 480)  # 2.11 x 1.875: no integer factor
    for frame in islice(read_images(SAMPLE_BAG_PATH, IMAGE_TOPIC), 0, 60, 20):
        rgb = to_rgb(frame.msg)
        out = seg.infer(rgb)
        heads = [torch.as_tensor(out[k][0]).float() for k in ("semantic", "center", "offset")]
        fast = camera_postprocess(*heads, cam, thing_ids=THINGS, cfg=seg.panoptic_cfg, label_set=CITYSCAPES)
        exact = camera_postprocess(*heads, cam, thing_ids=THINGS, cfg=seg.panoptic_cfg, label_set=CITYSCAPES,
                                   exact=True)
        _compare(fast, exact, 0.995)
        assert any(s.is_thing for s in fast.segments)
    # the Segmenter takes the fast path unless exact_upsampling is set, with the same ids
    frame = cv2.resize(rgb, cam[::-1])
    a = seg.segment(frame)
    seg.exact_upsampling = True
    b = seg.segment(frame)
    assert float((a.panoptic == b.panoptic).mean()) >= 0.995 and (a.semantic == b.semantic).mean() >= 0.999


@pytest.mark.parametrize("cfg", [PanopticConfig(), PanopticConfig(class_aware_grouping=True)], ids=["plain", "class_aware"])
def test_shipped_model_at_network_resolution_equals_panoptic_postprocess(cfg):
    """Real heads (smooth classes, instance boundaries inside thing regions) at camera == network."""
    from seg_perception.bag.read import read_images
    from seg_perception.core.conversions import to_rgb
    from seg_perception.core.segmenter import build_segmenter
    from seg_perception.datasets.sample_bag import IMAGE_TOPIC, SAMPLE_BAG_PATH

    seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights=None, resolution=(128, 256), backend="torch")
    things_seen = 0
    for frame in islice(read_images(SAMPLE_BAG_PATH, IMAGE_TOPIC), 0, 60, 20):
        out = seg.infer(to_rgb(frame.msg))
        heads = [torch.as_tensor(out[k][0]).float() for k in ("semantic", "center", "offset")]
        st: dict = {}
        fast = camera_postprocess(*heads, (128, 256), thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES, stage_ms=st)
        want = panoptic_postprocess(*heads, thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES)
        assert "group" in st  # the fast path ran and grouped things
        assert torch.equal(fast.panoptic, want.panoptic) and torch.equal(fast.semantic.long(), want.semantic)
        _compare(fast, want, 1.0, stuff_score_tol=1e-4)  # same pixel, same logits: only exp / sum rounding
        things_seen += sum(s.is_thing for s in fast.segments)
    assert things_seen > 0


@pytest.mark.parametrize("kwargs", [dict(exact=True), dict(align_corners=True)])
def test_exact_and_corner_aligned_models_take_the_exact_path(kwargs):
    logits, heat, offset = _smooth_heads(1)
    cfg = PanopticConfig()
    got = camera_postprocess(logits, heat, offset, (51, 85), thing_ids=THINGS, cfg=cfg, **kwargs)
    heads = resize_heads(logits, heat, offset, (51, 85), align_corners=kwargs.get("align_corners", False))
    want = panoptic_postprocess(*heads, thing_ids=THINGS, cfg=cfg)
    assert torch.equal(got.panoptic, want.panoptic)


def test_no_center_or_no_thing_gives_stuff_and_void_only():
    logits, heat, offset = _smooth_heads(2)
    fast = camera_postprocess(logits, torch.zeros_like(heat), offset, (51, 85), thing_ids=THINGS,
                              cfg=PanopticConfig(stuff_area=0))
    exact = _exact(logits, torch.zeros_like(heat), offset, (51, 85), PanopticConfig(stuff_area=0))
    assert torch.equal(fast.panoptic, exact.panoptic)
    assert not any(s.is_thing for s in fast.segments)


def test_bad_heads_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"outputs\['center'\]\[0\]"):
        camera_postprocess(torch.zeros(3, 4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(2, 4, 4), (8, 8),
                           thing_ids=THINGS, cfg=PanopticConfig())
    with pytest.raises(ValueError, match="out_hw"):
        camera_postprocess(torch.zeros(3, 4, 4), torch.zeros(1, 4, 4), torch.zeros(2, 4, 4), (0, 8),
                           thing_ids=THINGS, cfg=PanopticConfig())


def test_native_heads_group_on_the_grid_and_match_the_exact_path_from_it(tmp_path):
    """backend option native_heads: the shipped model's heads on its 1/2 semantic grid (offsets in
    that grid's pixels); grouping there gives the ids of the exact path run from the same grid
    (every head resized from the grid to the camera, then panoptic_postprocess)."""
    from seg_perception.bag.read import read_images
    from seg_perception.core.conversions import to_rgb
    from seg_perception.core.segmenter import build_segmenter
    from seg_perception.datasets.sample_bag import IMAGE_TOPIC, SAMPLE_BAG_PATH

    seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights=None, resolution=(128, 256), backend="onnxruntime",
                          backend_options={"native_heads": True, "cache_dir": str(tmp_path)})
    cam = (270, 480)  # 4.22 x 3.75 from the 64 x 128 grid
    for frame in islice(read_images(SAMPLE_BAG_PATH, IMAGE_TOPIC), 0, 60, 20):
        out = seg.infer(cv2.resize(to_rgb(frame.msg), cam[::-1]))
        heads = [torch.as_tensor(out[k][0]).float() for k in ("semantic", "center", "offset")]
        assert all(tuple(h.shape[-2:]) == (64, 128) for h in heads)
        fast = camera_postprocess(*heads, cam, thing_ids=THINGS, cfg=seg.panoptic_cfg, label_set=CITYSCAPES)
        exact = _exact(*heads, cam, seg.panoptic_cfg)
        _compare(fast, exact, 0.995, stuff_score_tol=None)
        assert any(s.is_thing for s in fast.segments)
        # Stuff scores read each pixel's nearest grid source (the exact path: upsampled logits); from
        # a grid 4x coarser than the camera that moves the scores of thin / small stuff segments
        # (poles, traffic lights: up to ~0.2 measured) but not those of large regions.
        by_id = {s.id: s for s in exact.segments}
        for s in fast.segments:
            if not s.is_thing and s.id in by_id:
                tol = 0.03 if s.area >= 2000 else 0.3
                assert s.score == pytest.approx(by_id[s.id].score, abs=tol), (s.class_name, s.area)


def test_background_thread_gives_the_same_result_and_survives_fork():
    """background=True (centers and probabilities on a worker thread) == background=False, and a
    forked child (whose copy of the parent's executor has no thread) still finishes."""
    import multiprocessing as mp

    logits, heat, offset = _smooth_heads(3)
    cfg = PanopticConfig(class_aware_grouping=True, nms_kernel=3)
    kw = dict(thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES)
    a = camera_postprocess(logits, heat, offset, (75, 97), background=True, **kw)
    b = camera_postprocess(logits, heat, offset, (75, 97), background=False, **kw)
    assert torch.equal(a.panoptic, b.panoptic) and a.segments == b.segments
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_child_ids, ((logits, heat, offset),)).get(timeout=60)
    assert torch.equal(torch.from_numpy(got), a.panoptic)


@pytest.mark.parametrize("out_hw", [(24, 40), (75, 97)], ids=["camera=network", "camera>network"])
def test_large_map_path_splits_then_starts_the_worker_with_the_same_result(monkeypatch, out_hw):
    """Maps above the split thresholds (lowered here to reach them on small heads) run the label
    pass on two threads before starting the worker (above the network size) and, without the
    worker, spread the ids on two threads: the result is the one-thread result, which is checked
    against the exact path."""
    from seg_perception.core.panoptic import camera as camera_mod

    logits, heat, offset = _smooth_heads(5)
    cfg = PanopticConfig(class_aware_grouping=True, nms_kernel=3, stuff_area=0)
    kw = dict(thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES)
    one = camera_postprocess(logits, heat, offset, out_hw, background=False, **kw)
    _compare(one, _exact(logits, heat, offset, out_hw, cfg), min_agreement=0.999)
    monkeypatch.setattr(camera_mod, "SPLIT_MIN_VALUES", 1)
    monkeypatch.setattr(camera_mod, "SPLIT_MIN_PIXELS", 1)
    from seg_perception.core import upsample_jit

    monkeypatch.setattr(upsample_jit, "SPLIT_MIN_VALUES", 1)
    monkeypatch.setattr(upsample_jit, "SPLIT_MIN_CELLS", 1)
    for _ in range(3):
        for background in (True, False):
            big = camera_postprocess(logits, heat, offset, out_hw, background=background, **kw)
            assert torch.equal(big.panoptic, one.panoptic) and torch.equal(big.semantic, one.semantic)
            assert big.segments == one.segments


def _child_ids(heads):
    cfg = PanopticConfig(class_aware_grouping=True, nms_kernel=3)
    return camera_postprocess(*heads, (75, 97), thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES).panoptic.numpy()


def test_stage_times_cover_the_fast_path():
    logits, heat, offset = _smooth_heads(0)
    st: dict = {}
    camera_postprocess(logits, heat, offset, (75, 97), thing_ids=THINGS, cfg=PanopticConfig(), stage_ms=st)
    assert {"upsample_labels", "geometry", "wait", "centers", "probability", "exact_offsets", "stuff_statistics",
            "class_ids", "statistics", "ids", "thing_statistics", "segments"} <= set(st)
    assert all(v >= 0 for v in st.values())
    st_exact: dict = {}
    camera_postprocess(logits, heat, offset, (75, 97), thing_ids=THINGS, cfg=PanopticConfig(), stage_ms=st_exact,
                       exact=True)
    assert st_exact == {}


def test_max_probability_is_the_softmax_maximum(monkeypatch):
    """The stuff scores' per-pixel probability: torch's softmax maximum (the oracle) to float32
    rounding, pixels whose plain exp overflows or underflows included; whole-array and
    channel-by-channel evaluation give the same floats."""
    from seg_perception.core.panoptic import camera as camera_mod

    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((19, 24, 40)) * 4).astype(np.float32)
    logits[:, 0, 0] = 100.0  # exp overflows to inf
    logits[3, 0, 1] = 120.0
    logits[:, 1, 0] = -90.0  # every exp underflows
    logits[5, 1, 1] = -80.0
    want = torch.softmax(torch.from_numpy(logits), 0).max(0).values.numpy()
    whole = camera_mod._max_probability(logits)
    np.testing.assert_allclose(whole, want, rtol=2e-6, atol=1e-7)
    monkeypatch.setattr(camera_mod, "_WHOLE_EXP_MAX_VALUES", 1)
    assert np.array_equal(camera_mod._max_probability(logits), whole)


def _geometry(seed: int, out_hw=(75, 97)):
    from seg_perception.core.panoptic.camera import _Geometry
    from seg_perception.core.upsample import upsample_labels

    logits, _, offset = _smooth_heads(seed)
    up = upsample_labels(logits, out_hw)
    is_thing = np.zeros(257, dtype=bool)
    is_thing[list(THINGS)] = True
    return _Geometry(up, is_thing, offset.numpy())


@pytest.mark.parametrize("seed", range(3))
def test_thing_cells_split_into_interior_and_border(seed):
    """The worker's border cells (visited along the border only) and this thread's interior cells
    partition the pure thing cells, each increasing: against a mask over every cell."""
    geo = _geometry(seed)
    geo.prepare_points()
    h, w = geo.up.small.shape
    pure = (geo.thing_small & ~geo.sem_unsure).reshape(-1)
    on_border = (geo.border_row[:, None] | geo.border_col[None, :]).reshape(-1)
    assert np.array_equal(geo.border_thing_cells(), np.flatnonzero(pure & on_border))
    assert np.array_equal(geo.conv, np.flatnonzero(pure & ~on_border))
    assert geo.border_thing_cells().size > 0 and geo.conv.size > 0  # both cases reached


@pytest.mark.parametrize("seed", range(3))
def test_thing_votes_count_every_grouped_camera_pixel(seed):
    """Votes by instance and class (class-aware grouping and the id tables use them) against a
    count over the camera pixels of the grouped cells and the exact pixels."""
    geo = _geometry(seed)
    geo.prepare_points()
    logits, heat, _ = _smooth_heads(seed)
    from seg_perception.core.panoptic.centers import find_centers_upsampled

    centers, _ = find_centers_upsampled(heat, geo.up.labels.shape, PanopticConfig())
    things = geo.group(centers)
    k, C = centers.shape[0], logits.shape[0]
    got = things.votes(geo, k + 1, C)
    want = np.zeros((k + 1, C), dtype=np.int64)
    cm = geo.up.cells
    for cell, inst in zip(geo.conv, things.cell_inst):
        if inst:
            rows, cols = cm.pixels_of_cells(np.array([cell]))
            want[inst, geo.small_flat[cell]] += rows.size
    np.add.at(want, (things.inst, things.sem), 1)
    assert np.array_equal(got, want)
    assert want[1:].sum() > 0

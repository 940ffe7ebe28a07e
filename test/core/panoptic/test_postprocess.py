"""Tests for seg_perception.core.panoptic.postprocess (Panoptic-DeepLab post-processing).

The main check compares the vectorized torch code against ``reference_postprocess`` below: an
independent, deliberately slow implementation with plain Python loops over pixels and
instances that follows the paper's description step by step.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from seg_perception.datasets.labels import get_label_set
from seg_perception.core.panoptic import (
    PanopticConfig,
    find_centers,
    group_instances,
    instance_classes,
    merge_semantic_and_instance,
    panoptic_postprocess,
    resize_heads,
)

CITYSCAPES = get_label_set("cityscapes")
THINGS = CITYSCAPES.thing_ids  # 11..18
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


# ----------------------------------------------------------------------------------------------
# Slow reference (loops over pixels and instances)
# ----------------------------------------------------------------------------------------------
def reference_postprocess(logits: np.ndarray, center: np.ndarray, offset: np.ndarray, thing_ids, cfg):
    """Returns (panoptic (H, W) int64, list of segment dicts sorted by id)."""
    C, H, W = logits.shape
    hm = center[0].astype(np.float32)
    r = cfg.nms_kernel // 2

    # Semantic: per-pixel argmax (first maximum).
    sem = np.zeros((H, W), dtype=np.int64)
    for y in range(H):
        for x in range(W):
            best = 0
            for c in range(1, C):
                if logits[c, y, x] > logits[best, y, x]:
                    best = c
            sem[y, x] = best

    # Centers: above threshold and equal to the maximum of the window around it (every member of
    # a plateau of equal maxima is one), in raster order ...
    cand = []
    for y in range(H):
        for x in range(W):
            v = hm[y, x]
            if v <= cfg.center_threshold:
                continue
            win = hm[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
            if v >= win.max():
                cand.append((y, x))
    # ... then, with top_k or more of them, only those strictly above the top_k-th largest score.
    kept = list(cand)
    if len(cand) >= cfg.top_k:
        kth = max(sorted((float(hm[p]) for p in cand), reverse=True)[cfg.top_k - 1], 0.0)
        kept = [p for p in cand if float(hm[p]) > kth]

    # Grouping: every thing pixel joins the nearest center to (pixel + offset), float32 maths.
    inst = np.zeros((H, W), dtype=np.int64)
    for y in range(H):
        for x in range(W):
            if sem[y, x] not in thing_ids or not kept:
                continue
            py = np.float32(y) + np.float32(offset[0, y, x])
            px = np.float32(x) + np.float32(offset[1, y, x])
            best_k, best_d = 0, None
            for k, (cy, cx) in enumerate(kept):
                dy = py - np.float32(cy)
                dx = px - np.float32(cx)
                d = np.sqrt(dy * dy + dx * dx)
                if best_d is None or d < best_d:
                    best_k, best_d = k, d
            inst[y, x] = best_k + 1
    if cfg.class_aware_grouping and len(kept) > 1:
        # Class-aware second pass: each center's class is its pixels' majority (ties -> lower
        # class); a pixel whose class some center has only considers those centers.
        center_cls = []
        for k in range(1, len(kept) + 1):
            votes = Counter(int(c) for c in sem[inst == k])
            top = max(votes.values(), default=0)
            center_cls.append(min((c for c, n in votes.items() if n == top), default=-1))
        again = np.zeros_like(inst)
        for y in range(H):
            for x in range(W):
                if sem[y, x] not in thing_ids:
                    continue
                py = np.float32(y) + np.float32(offset[0, y, x])
                px = np.float32(x) + np.float32(offset[1, y, x])
                allowed = [k for k, c in enumerate(center_cls) if c == sem[y, x]] or list(range(len(kept)))
                d = [np.sqrt((py - np.float32(kept[k][0])) ** 2 + (px - np.float32(kept[k][1])) ** 2)
                     for k in allowed]
                again[y, x] = allowed[int(np.argmin(d))] + 1
        inst = again

    # Merge: majority vote per instance (plus large enough fragments of other thing classes when
    # class splitting is on), per-class numbering in (instance, class) order, stuff area filter.
    div, void = cfg.label_divisor, cfg.void_label
    ref_px = cfg.stuff_area_reference_hw[0] * cfg.stuff_area_reference_hw[1]
    min_split = max(1.0, cfg.class_split_area * H * W / ref_px)
    pan = np.full((H, W), void, dtype=np.int64)
    per_class = Counter()
    inst_of_id = {}
    for k in range(1, len(kept) + 1):
        pix = list(zip(*np.nonzero(inst == k)))
        if not pix:
            continue
        votes = Counter(int(sem[p]) for p in pix)
        top = max(votes.values())
        cls = min(c for c, n in votes.items() if n == top)
        own = {c for c, n in votes.items() if cfg.class_split_area > 0 and n >= min_split} | {cls}
        ids = {}
        for c in sorted(own):
            per_class[c] += 1
            ids[c] = c * div + per_class[c]
            inst_of_id[ids[c]] = k
        for p in pix:
            pan[p] = ids.get(int(sem[p]), ids[cls])
    min_area = cfg.stuff_area * H * W / ref_px
    for c in range(C):
        if c in thing_ids:
            continue
        mask = sem == c
        if mask.sum() >= min_area:
            pan[mask] = c * div

    # Segments, one mask at a time.
    lg = logits.astype(np.float64)
    prob = np.exp(lg - lg.max(0)) / np.exp(lg - lg.max(0)).sum(0)
    segs = []
    for pid in sorted(set(pan.flatten().tolist()) - {void}):
        ys, xs = np.nonzero(pan == pid)
        cls = pid // div
        if pid in inst_of_id:
            score = float(hm[kept[inst_of_id[pid] - 1]])
        else:
            score = float(prob[cls][ys, xs].mean())
        segs.append(
            dict(
                id=pid, class_id=cls, class_name=CITYSCAPES.class_name(cls), is_thing=cls in thing_ids,
                score=score, area=len(ys), bbox=(xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1),
                centroid=(xs.mean(), ys.mean()),
            )
        )
    return pan, segs


def random_heads(seed: int, h: int = 40, w: int = 56, num_classes: int = 19, quantize: bool = False):
    """Blocky random semantic logits, Gaussian center blobs plus noise, offsets toward the blobs
    plus noise. Returns numpy (C, H, W), (1, H, W), (2, H, W) float32."""
    rng = np.random.default_rng(seed)
    lo = rng.normal(size=(num_classes, h // 4 + 1, w // 4 + 1)) * 3
    logits = np.repeat(np.repeat(lo, 4, axis=1), 4, axis=2)[:, :h, :w]
    logits = logits + rng.normal(size=logits.shape) * 0.7
    # Boost thing classes so a good share of pixels are things.
    logits[sorted(t for t in THINGS if t < num_classes)] += 1.0
    n = int(rng.integers(3, 7))
    cy = rng.uniform(0, h - 1, n)
    cx = rng.uniform(0, w - 1, n)
    amp = rng.uniform(0.3, 1.0, n)
    sig = rng.uniform(1.5, 4.0, n)
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2
    heat = (amp * np.exp(-d2 / (2 * sig**2))).max(-1) + rng.uniform(0, 0.15, (h, w))
    heat = np.clip(heat, 0, 1)
    if quantize:  # many exact ties and plateaus
        heat = np.round(heat * 10) / 10
    near = d2.argmin(-1)
    offset = np.stack([cy[near] - yy, cx[near] - xx]) + rng.normal(size=(2, h, w)) * 2.0
    return logits.astype(np.float32), heat[None].astype(np.float32), offset.astype(np.float32)


def _segments_match(got, want):
    assert [s.id for s in got] == [s["id"] for s in want]
    for g, r in zip(got, want):
        assert g.class_id == r["class_id"] and g.class_name == r["class_name"] and g.is_thing == r["is_thing"]
        assert g.area == r["area"]
        assert g.bbox == tuple(int(v) for v in r["bbox"])
        assert g.centroid == pytest.approx(r["centroid"], abs=1e-9)
        assert g.score == pytest.approx(r["score"], rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------------------------
# Equivalence with the reference on random heads
# ----------------------------------------------------------------------------------------------
CASES = [
    (0, PanopticConfig()),
    (1, PanopticConfig(nms_kernel=3, stuff_area=80_000)),  # min stuff area ~85 px at 40x56
    (2, PanopticConfig(top_k=8, center_threshold=0.2)),  # quantized: 19 candidates, ties at the 8th
    (3, PanopticConfig(nms_kernel=5, stuff_area=40_000, center_threshold=0.0)),
    (4, PanopticConfig(nms_kernel=1, top_k=50)),
    (5, PanopticConfig(class_split_area=20_000)),  # fragments of >= ~21 px at 40x56 split off
    (6, PanopticConfig(nms_kernel=3, class_split_area=1)),  # every fragment splits off
    (7, PanopticConfig(nms_kernel=3, class_aware_grouping=True)),
    (8, PanopticConfig(class_aware_grouping=True, class_split_area=20_000)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed,cfg", CASES)
@pytest.mark.parametrize("quantize", [False, True])
def test_matches_reference(seed, cfg, quantize, device):
    logits, heat, offset = random_heads(seed, quantize=quantize)
    want_pan, want_segs = reference_postprocess(logits, heat, offset, THINGS, cfg)
    out = panoptic_postprocess(
        torch.from_numpy(logits).to(device),
        torch.from_numpy(heat).to(device),
        torch.from_numpy(offset).to(device),
        thing_ids=THINGS,
        cfg=cfg,
        label_set=CITYSCAPES,
    )
    assert out.panoptic.dtype == torch.int32 and out.panoptic.device.type == device
    assert out.semantic.dtype == torch.int64
    np.testing.assert_array_equal(out.panoptic.cpu().numpy(), want_pan)
    np.testing.assert_array_equal(out.semantic.cpu().numpy(), logits.argmax(0))
    _segments_match(out.segments, want_segs)
    # The scenes are not degenerate: they contain instances, stuff and (for big stuff_area) void.
    assert any(s.is_thing for s in out.segments) and any(not s.is_thing for s in out.segments)


def test_reference_cases_exercise_void_and_top_k():
    """Guard that the random cases above cover the paths they claim to."""
    _, heat, _ = random_heads(2, quantize=True)
    assert len(find_centers(torch.from_numpy(heat), PanopticConfig(center_threshold=0.2))[0]) > 8
    logits, heat, offset = random_heads(1)
    pan, _ = reference_postprocess(logits, heat, offset, THINGS, CASES[1][1])
    assert (pan == 255_000).any()


def test_no_centers_makes_things_void():
    logits, heat, offset = random_heads(5)
    out = panoptic_postprocess(
        torch.from_numpy(logits), torch.zeros_like(torch.from_numpy(heat)), torch.from_numpy(offset),
        thing_ids=THINGS, cfg=PanopticConfig(),
    )
    thing_px = np.isin(logits.argmax(0), list(THINGS))
    assert thing_px.any()
    assert (out.panoptic.numpy()[thing_px] == 255_000).all()
    assert all(not s.is_thing for s in out.segments)
    assert out.segments[0].class_name == str(out.segments[0].class_id)  # no label set -> str(id)


# ----------------------------------------------------------------------------------------------
# Centers / NMS
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_nms_keeps_only_local_maxima_above_threshold(seed):
    _, heat, _ = random_heads(seed + 10)
    cfg = PanopticConfig(top_k=4, nms_kernel=5, center_threshold=0.1)
    hm = heat[0]
    centers, scores = find_centers(torch.from_numpy(heat), cfg)
    assert centers.dtype == torch.int64 and centers.shape[1] == 2
    assert 1 <= len(centers) < cfg.top_k  # strictly above the top_k-th score: at most top_k - 1
    flat = (centers[:, 0] * hm.shape[1] + centers[:, 1]).tolist()
    assert flat == sorted(flat)  # raster order, like torch.nonzero in the references
    for (y, x), s in zip(centers.tolist(), scores.tolist()):
        assert s == hm[y, x] > cfg.center_threshold
        assert hm[y, x] == hm[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].max()
    # Every other local maximum above threshold scores no more than the weakest kept center.
    all_c, all_s = find_centers(torch.from_numpy(heat), PanopticConfig(top_k=999, nms_kernel=5, center_threshold=0.1))
    assert len(all_c) >= cfg.top_k > len(centers)  # top_k truncated here
    dropped = [sc for c, sc in zip(all_c.tolist(), all_s.tolist()) if c not in centers.tolist()]
    assert max(dropped) <= scores.min().item()


def test_nms_suppresses_nearby_weaker_peak_and_plateau():
    hm = torch.zeros(1, 20, 30)
    hm[0, 5, 5] = 0.9
    hm[0, 7, 8] = 0.8  # inside the 7x7 window of the stronger peak -> suppressed
    hm[0, 15, 20] = 0.5  # far -> kept
    hm[0, 15, 28] = 0.05  # below threshold
    hm[0, 2:4, 24:26] = 0.7  # 2x2 plateau of exact ties -> four centers, as in the references
    centers, scores = find_centers(hm, PanopticConfig())
    assert centers.tolist() == [[2, 24], [2, 25], [3, 24], [3, 25], [5, 5], [15, 20]]
    assert scores.tolist() == pytest.approx([0.7] * 4 + [0.9, 0.5])
    c1, _ = find_centers(hm, PanopticConfig(nms_kernel=3))  # smaller window keeps the (7, 8) peak
    assert [7, 8] in c1.tolist()
    c2, _ = find_centers(hm, PanopticConfig(top_k=2))  # 2nd largest is 0.7: only scores above it
    assert c2.tolist() == [[5, 5]]
    c6, _ = find_centers(hm, PanopticConfig(top_k=7))  # fewer candidates than top_k: all kept
    assert c6.tolist() == centers.tolist()


# ----------------------------------------------------------------------------------------------
# Grouping
# ----------------------------------------------------------------------------------------------
def test_group_instances_nearest_center_and_chunking():
    _, heat, offset = random_heads(7, h=33, w=47)
    centers, _ = find_centers(torch.from_numpy(heat), PanopticConfig(center_threshold=0.0, nms_kernel=3))
    assert len(centers) > 5
    mask = torch.rand(33, 47, generator=torch.Generator().manual_seed(0)) > 0.3
    off = torch.from_numpy(offset)
    inst = group_instances(centers, off, mask)
    assert inst.dtype == torch.int32 and inst.shape == (33, 47)
    assert (inst[~mask] == 0).all() and (inst[mask] >= 1).all() and inst.max() <= len(centers)
    tiny = group_instances(centers, off, mask, max_chunk_bytes=1)  # one pixel per chunk
    assert torch.equal(inst, tiny)
    # Spot check one pixel by hand.
    y, x = torch.nonzero(mask)[17].tolist()
    p = torch.tensor([y + offset[0, y, x], x + offset[1, y, x]])
    d = ((centers.float() - p) ** 2).sum(1)
    assert inst[y, x].item() == int(d.argmin()) + 1


def test_class_aware_grouping_prefers_a_center_of_the_pixel_class():
    centers = torch.tensor([[2, 2], [2, 12]])           # center 0: rider (12), center 1: bicycle (18)
    offset = torch.zeros(2, 5, 16)
    mask = torch.zeros(5, 16, dtype=torch.bool)
    mask[2, 9] = mask[2, 3] = mask[4, 11] = True
    pixel_class = torch.zeros(5, 16, dtype=torch.long)
    pixel_class[2, 9] = 12                              # a rider pixel next to the bicycle's center
    pixel_class[2, 3] = 18                              # a bicycle pixel next to the rider's center
    pixel_class[4, 11] = 11                             # a person: no person center -> nearest any
    plain = group_instances(centers, offset, mask)
    assert (plain[2, 9].item(), plain[2, 3].item(), plain[4, 11].item()) == (2, 1, 2)
    aware = group_instances(centers, offset, mask, pixel_class=pixel_class, center_class=torch.tensor([12, 18]))
    assert (aware[2, 9].item(), aware[2, 3].item(), aware[4, 11].item()) == (1, 2, 2)
    # a center with no class (-1) loses the bicycle pixel beside it to the bicycle center; the rider
    # pixel (no rider center now) joins the nearest center as in plain grouping
    aware = group_instances(centers, offset, mask, pixel_class=pixel_class, center_class=torch.tensor([-1, 18]))
    assert (aware[2, 9].item(), aware[2, 3].item(), aware[4, 11].item()) == (2, 2, 2)
    assert group_instances(centers, offset, mask, pixel_class=pixel_class, center_class=torch.tensor([12, 12]),
                           max_chunk_bytes=1)[2, 3].item() == 1  # bicycle: no bicycle center -> nearest
    with pytest.raises(ValueError, match="both pixel_class"):
        group_instances(centers, offset, mask, pixel_class=pixel_class)
    with pytest.raises(ValueError, match="center_class"):
        group_instances(centers, offset, mask, pixel_class=pixel_class, center_class=torch.tensor([1, 2, 3]))


def test_instance_classes_majority_ties_and_empty():
    inst = torch.tensor([[1, 1, 1, 2], [2, 0, 0, 0]])
    sem = torch.tensor([[13, 13, 11, 12], [11, 5, 5, 5]])
    assert instance_classes(inst, sem, 3, 19).tolist() == [13, 11, -1]  # instance 2: tie 12/11 -> 11


def test_class_aware_grouping_changes_some_random_cases():
    """The reference cases with class-aware grouping must differ from class-agnostic grouping."""
    changed = 0
    for seed, cfg in [c for c in CASES if c[1].class_aware_grouping]:
        heads = [torch.from_numpy(a) for a in random_heads(seed)]
        a = panoptic_postprocess(*heads, thing_ids=THINGS, cfg=cfg).panoptic
        b = panoptic_postprocess(*heads, thing_ids=THINGS, cfg=replace(cfg, class_aware_grouping=False)).panoptic
        changed += int(not torch.equal(a, b))
    assert changed >= 1


def test_group_instances_without_centers():
    no_centers = torch.zeros(0, 2, dtype=torch.long)
    inst = group_instances(no_centers, torch.zeros(2, 4, 5), torch.ones(4, 5, dtype=torch.bool))
    assert inst.shape == (4, 5) and (inst == 0).all()


# ----------------------------------------------------------------------------------------------
# Merge: majority vote, numbering, stuff area
# ----------------------------------------------------------------------------------------------
def test_majority_vote_and_per_class_numbering():
    sem = torch.zeros(4, 10, dtype=torch.long)  # road
    inst = torch.zeros(4, 10, dtype=torch.int32)
    # instance 1: 6 car (13) + 4 truck (14) pixels -> car
    sem[0, :6], sem[0, 6:] = 13, 14
    inst[0] = 1
    # instance 2 absent (no pixels); instance 3: person (11) ; instance 4: tie car/truck -> car (lower)
    sem[1, :5] = 11
    inst[1, :5] = 3
    sem[2, :3], sem[2, 3:6] = 13, 14
    inst[2, :6] = 4
    # instance 5 claims a road pixel and a car pixel: only its thing pixel counts
    sem[3, 0] = 13
    inst[3, :2] = 5
    cfg = PanopticConfig(stuff_area=0)
    pan = merge_semantic_and_instance(sem, inst, THINGS, cfg)
    assert pan.dtype == torch.int32
    assert (pan[0] == 13001).all()
    assert (pan[1, :5] == 11001).all()
    assert (pan[2, :6] == 13002).all()
    assert pan[3, 0] == 13003 and pan[3, 1] == 0  # road pixel stays road stuff, id 0
    assert (pan[1, 5:] == 0).all()


def test_class_split_keeps_a_rider_on_its_bicycle():
    # One instance: 30 bicycle (18) pixels, 12 rider (12) pixels, 2 person (11) pixels.
    sem = torch.zeros(4, 16, dtype=torch.long)
    sem[0:2, :15] = 18
    sem[2, :12] = 12
    sem[3, :2] = 11
    inst = torch.where(sem > 0, 1, 0).to(torch.int32)
    paper = merge_semantic_and_instance(sem, inst, THINGS, PanopticConfig(stuff_area=0))
    assert set(paper[sem > 0].tolist()) == {18001}  # the majority vote swallows the rider
    # 10 px at 4x16 is 10 * 1024 * 2048 / 64 at the reference size
    cfg = PanopticConfig(stuff_area=0, class_split_area=10 * 1024 * 2048 // 64)
    pan = merge_semantic_and_instance(sem, inst, THINGS, cfg)
    assert (pan[sem == 18] == 18001).all() and (pan[sem == 12] == 12001).all()
    assert (pan[sem == 11] == 18001).all()  # 2 px < 10 px: keeps the majority class
    assert (pan[sem == 0] == 0).all()


@pytest.mark.parametrize("seed,cfg", [c for c in CASES if c[1].class_split_area > 0])
def test_class_split_cases_split_instances(seed, cfg):
    """The class-split reference cases are not degenerate: splitting adds thing segments."""
    heads = [torch.from_numpy(a) for a in random_heads(seed)]
    n_things = [
        sum(s.is_thing for s in panoptic_postprocess(*heads, thing_ids=THINGS, cfg=c).segments)
        for c in (replace(cfg, class_split_area=0), cfg)
    ]
    assert n_things[1] > n_things[0]


def test_thing_pixels_without_instance_are_void():
    sem = torch.full((3, 3), 13, dtype=torch.long)
    sem[0, 0] = 0
    pan = merge_semantic_and_instance(sem, torch.zeros(3, 3, dtype=torch.int32), THINGS, PanopticConfig(stuff_area=0))
    assert pan[0, 0] == 0  # road is id 0 ...
    assert (pan.flatten()[1:] == 255_000).all()  # ... and void is not 0


def test_stuff_area_filter_scales_with_resolution():
    sem = torch.zeros(32, 64, dtype=torch.long)  # road
    sem[:, :10] = 2  # building, 320 px
    sem[:2, 60:] = 10  # sky, 8 px
    inst = torch.zeros_like(sem, dtype=torch.int32)
    # 2048 px at 1024x2048 -> 2 px at 32x64: everything kept.
    pan = merge_semantic_and_instance(sem, inst, THINGS, PanopticConfig())
    assert set(pan.unique().tolist()) == {0, 2000, 10000}
    # Threshold 10 px at this size: sky (8 px) becomes void, building stays.
    cfg = PanopticConfig(stuff_area=10 * 1024 * 2048 // (32 * 64))
    assert cfg.min_stuff_area((32, 64)) == pytest.approx(10.0)
    pan = merge_semantic_and_instance(sem, inst, THINGS, cfg)
    assert (pan[:2, 60:] == 255_000).all() and (pan[:, :10] == 2000).all() and pan[20, 30] == 0
    # The boundary is inclusive: a segment of exactly the scaled area is kept.
    exact = PanopticConfig(stuff_area=8 * 1024 * 2048 // (32 * 64))
    assert (merge_semantic_and_instance(sem, inst, THINGS, exact)[:2, 60:] == 10000).all()
    # Threshold referenced to this very resolution: 1000 px keeps road (1720 px) only.
    cfg2 = PanopticConfig(stuff_area=1000, stuff_area_reference_hw=(32, 64))
    pan = merge_semantic_and_instance(sem, inst, THINGS, cfg2)
    assert set(pan.unique().tolist()) == {0, 255_000}
    assert (pan[:, :10] == 255_000).all() and pan[20, 30] == 0


def test_void_label_collision_is_rejected():
    sem = torch.zeros(2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="void_label"):
        merge_semantic_and_instance(sem, torch.zeros(2, 2), THINGS, PanopticConfig(void_label=0))


# ----------------------------------------------------------------------------------------------
# Resolution: offsets must be scaled, not only resized
# ----------------------------------------------------------------------------------------------
def _two_object_scene():
    """Half-res (32x64) heads of a wide bus (15) with a person (11) standing on its top right.

    Returns half-res logits, center, offset and the full-res (64x128) masks of both objects.
    """
    h, w = 32, 64
    bus = np.zeros((h, w), bool)
    bus[14:24, 4:60] = True
    person = np.zeros((h, w), bool)
    person[4:14, 40:50] = True
    logits = np.zeros((19, h, w), np.float32)
    logits[0] = 4.0
    logits[0][bus | person] = 0.0
    logits[15][bus] = 4.0
    logits[11][person] = 4.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    heat = np.zeros((h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    for m in (bus, person):
        ys, xs = np.nonzero(m)
        cy, cx = ys.mean(), xs.mean()  # half-res center, in half-res pixels
        # the peak sits a little off the half-pixel grid: an exactly symmetric peak would be a
        # plateau of equal maxima, which (like the references) gives one center per member
        py, px = cy + 0.1, cx + 0.1
        heat = np.maximum(heat, np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * 2.0**2)))
        offset[0][m] = cy - yy[m]
        offset[1][m] = cx - xx[m]
    full = [np.repeat(np.repeat(m, 2, 0), 2, 1) for m in (bus, person)]
    return logits, heat[None], offset, full


@pytest.mark.parametrize("device", DEVICES)
def test_offsets_scaled_when_upsampling_heads(device):
    logits, heat, offset, (bus, person) = _two_object_scene()
    heads = [torch.from_numpy(a).to(device) for a in (logits, heat, offset)]
    cfg = PanopticConfig()

    def run(sem, ctr, off):
        out = panoptic_postprocess(sem, ctr, off, thing_ids=THINGS, cfg=cfg, label_set=CITYSCAPES)
        return out, out.panoptic.cpu().numpy()

    up = resize_heads(*heads, (64, 128))
    assert [tuple(t.shape) for t in up] == [(19, 64, 128), (1, 64, 128), (2, 64, 128)]
    out, pan = run(*up)
    ids = []
    for mask, cls in ((bus, 15), (person, 11)):
        vals, counts = np.unique(pan[mask], return_counts=True)
        best = vals[counts.argmax()]
        assert best // 1000 == cls and best % 1000 >= 1
        assert counts.max() >= 0.99 * mask.sum(), (vals, counts)
        ids.append(int(best))
    assert ids[0] != ids[1]
    things = [s for s in out.segments if s.is_thing]
    assert sorted(s.id for s in things) == sorted(ids)  # exactly one instance per object
    assert {s.class_name for s in things} == {"bus", "person"}

    # Negative control: resizing without scaling the offsets sends part of the bus to the person.
    sem_u, ctr_u, off_u = up
    off_unscaled = off_u.clone()
    off_unscaled[0] /= 64 / 32
    off_unscaled[1] /= 128 / 64
    _, pan_bad = run(sem_u, ctr_u, off_unscaled)
    vals, counts = np.unique(pan_bad[bus], return_counts=True)
    assert counts.max() < 0.95 * bus.sum(), (vals, counts)
    assert (pan_bad[bus] == ids[1]).any()


def test_resize_heads_scales_offsets_by_factor():
    sem = torch.randn(3, 4, 5)
    ctr = torch.rand(1, 4, 5)
    off = torch.stack([torch.full((4, 5), 1.0), torch.full((4, 5), 2.0)])
    s, c, o = resize_heads(sem, ctr, off, (8, 15))
    assert s.shape == (3, 8, 15) and c.shape == (1, 8, 15)
    assert torch.allclose(o[0], torch.full((8, 15), 2.0)) and torch.allclose(o[1], torch.full((8, 15), 6.0))
    same = resize_heads(sem, ctr, off, (4, 5))
    assert all(torch.equal(a, b) for a, b in zip(same, (sem, ctr, off)))
    with pytest.raises(ValueError, match="share H x W"):
        resize_heads(sem, ctr[:, :3], off, (8, 8))


@pytest.mark.parametrize("align_corners", [False, True])
def test_resized_offsets_point_at_the_same_scene_point(align_corners):
    """Offsets that all point at one center keep pointing at it after a resize, in the resize's own
    pixel geometry: pixel-area (x + 0.5 scales by W / w) or corner-aligned (x scales by (W-1)/(w-1),
    bowenc0221's convention). A field linear in x, y is reproduced exactly by bilinear resizing, so
    only a wrong offset scale can make this fail."""
    h, w, H, W = 33, 65, 129, 257
    cy, cx = 11.0, 40.0
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    off = torch.stack([cy - yy, cx - xx])
    _, _, o = resize_heads(torch.zeros(2, h, w), torch.zeros(1, h, w), off, (H, W), align_corners=align_corners)
    if align_corners:
        fy, fx = (H - 1) / (h - 1), (W - 1) / (w - 1)
        ty, tx = cy * fy, cx * fx
    else:
        ty, tx = (cy + 0.5) * H / h - 0.5, (cx + 0.5) * W / w - 0.5
    YY, XX = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    # Interior only: with align_corners=False the outermost half-pixels are clamped, not extrapolated.
    m = (slice(4, -4), slice(4, -4))
    assert torch.allclose((YY + o[0])[m], torch.full_like(YY[m], ty), atol=1e-3)
    assert torch.allclose((XX + o[1])[m], torch.full_like(XX[m], tx), atol=1e-3)


def test_segmenter_resizes_bowenc0221_heads_corner_aligned():
    """A model built with align_corners=True (bowenc0221's layout) gets a Segmenter that resizes its
    heads to the camera size in that convention."""
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("panoptic_deeplab_resnet50", weights="none", resolution=(64, 128), backend="torch",
                          model_kwargs={"align_corners": True, "output_stride": 32})
    assert seg.align_corners is True
    plain = build_segmenter("panoptic_deeplab_mobilenetv2", weights="none", resolution=(64, 128), backend="torch")
    assert plain.align_corners is False


# ----------------------------------------------------------------------------------------------
# Config validation, input checks, timing helper
# ----------------------------------------------------------------------------------------------
def test_postprocess_rejects_batched_heads():
    with pytest.raises(ValueError, match=r"outputs\['center'\]\[0\]"):
        panoptic_postprocess(
            torch.zeros(3, 4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(2, 4, 4), thing_ids=THINGS, cfg=PanopticConfig()
        )
    with pytest.raises(ValueError, match="resize_heads"):
        panoptic_postprocess(
            torch.zeros(3, 4, 4), torch.zeros(1, 4, 5), torch.zeros(2, 4, 4), thing_ids=THINGS, cfg=PanopticConfig()
        )


def test_too_many_instances_for_label_divisor():
    sem = torch.full((1, 6), 13, dtype=torch.long)
    inst = torch.arange(1, 7, dtype=torch.int32).view(1, 6)  # six cars
    with pytest.raises(ValueError, match="label_divisor"):
        merge_semantic_and_instance(sem, inst, THINGS, PanopticConfig(label_divisor=5, top_k=4, void_label=255 * 5))


@pytest.mark.parametrize("kernel", [1, 3, 7, 9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_max_filter_matches_a_window_loop(kernel: int, dtype: torch.dtype) -> None:
    """The CPU max filter (OpenCV dilation) against explicit clipped windows, borders included."""
    from seg_perception.core.panoptic.postprocess import _max_pool

    g = torch.Generator().manual_seed(kernel)
    x = torch.randn(23, 31, generator=g, dtype=dtype)
    x[5, 7] = -1e30  # extreme values survive unchanged
    x[0, 0] = 1e30
    got = _max_pool(x, kernel)
    r = kernel // 2
    want = torch.empty_like(x)
    for y in range(x.shape[0]):
        for xx in range(x.shape[1]):
            want[y, xx] = x[max(0, y - r): y + r + 1, max(0, xx - r): xx + r + 1].max()
    assert got.dtype == dtype and torch.equal(got, want)


def test_grouping_chunk_size_does_not_change_labels() -> None:
    g = torch.Generator().manual_seed(3)
    centers = torch.stack([torch.randint(0, 40, (57,), generator=g), torch.randint(0, 64, (57,), generator=g)], 1)
    offset = torch.randn(2, 40, 64, generator=g) * 10
    mask = torch.rand(40, 64, generator=g) > 0.3
    whole = group_instances(centers, offset, mask, max_chunk_bytes=2**30)
    for budget in (1, 500, 4096, 2**20):
        assert torch.equal(group_instances(centers, offset, mask, max_chunk_bytes=budget), whole)

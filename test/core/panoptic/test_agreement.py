"""Tests for seg_perception.core.panoptic.agreement: auto's guard on what the node publishes.

``segment_agreement`` is checked against a brute-force overlap matrix written here with Python
loops over every (reference, candidate) segment pair; ``PanopticGuard`` on hand-made heads with
two touching cars, against perturbations whose effect on the grouping is known by construction.
"""
from __future__ import annotations

import numpy as np
import pytest

from seg_perception.core.panoptic import PanopticConfig, panoptic_postprocess
from seg_perception.core.panoptic.agreement import PanopticGuard, segment_agreement
from seg_perception.datasets.labels import get_label_set
from seg_perception.runtime.auto import MIN_AGREEMENT, head_agreement

CITYSCAPES = get_label_set("cityscapes")
CFG = PanopticConfig()
DIV, VOID = CFG.label_divisor, CFG.void_label
H, W = 64, 128
SKY, ROAD, CAR, TRUCK = 10, 0, 13, 14


def _brute_force(ref: np.ndarray, got: np.ndarray) -> float:
    """Mutual best-overlap pairs of one class, by an explicit overlap matrix (ties: lower id)."""
    r_ids, g_ids = sorted(set(ref.ravel().tolist())), sorted(set(got.ravel().tolist()))
    overlap = [[int(np.sum((ref == r) & (got == g))) for g in g_ids] for r in r_ids]

    def best(row: list[int]) -> int:
        top = max(row)
        return row.index(top)  # first = lowest id among the tied

    best_g = [best(overlap[i]) for i in range(len(r_ids))]
    best_r = [best([overlap[i][j] for i in range(len(r_ids))]) for j in range(len(g_ids))]

    def cls(v: int):
        return "void" if v == VOID else v // DIV

    agree = 0
    for i, r in enumerate(r_ids):
        for j, g in enumerate(g_ids):
            if best_g[i] == j and best_r[j] == i and cls(r) == cls(g):
                agree += overlap[i][j]
    return agree / ref.size


def test_segment_agreement_matches_a_brute_force_overlap_matrix():
    rng = np.random.default_rng(3)
    ids = np.array([0, 10 * DIV, 13 * DIV + 1, 13 * DIV + 2, 11 * DIV + 1, VOID])
    for trial in range(60):
        shape = (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        ref = rng.choice(ids[: int(rng.integers(1, 7))], size=shape)
        # the candidate: the reference with some blocks relabelled, so overlaps are large and ties occur
        got = ref.copy()
        for _ in range(int(rng.integers(0, 4))):
            y, x = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
            got[y:y + int(rng.integers(1, 4)), x:x + int(rng.integers(1, 4))] = rng.choice(ids)
        if trial % 3 == 0:
            got = rng.choice(ids, size=shape)
        want = _brute_force(ref, got)
        assert segment_agreement(ref, got, label_divisor=DIV, void_label=VOID) == pytest.approx(want, abs=1e-12)


def _cars(*, split_a: bool = False) -> np.ndarray:
    ref = np.full((10, 20), 0, dtype=np.int64)  # road stuff
    ref[2:8, 0:10] = 13 * DIV + 1
    ref[2:8, 10:20] = 13 * DIV + 2
    return ref


def test_split_and_merge_both_cost_the_smaller_part():
    ref = _cars()
    split = ref.copy()
    split[2:8, 0:4] = 13 * DIV + 3  # car 1 split 24 / 36 pixels: the 24 disagree
    assert segment_agreement(ref, split, label_divisor=DIV, void_label=VOID) == pytest.approx(1 - 24 / 200)
    merged = ref.copy()
    merged[2:8, 10:20] = 13 * DIV + 1  # both cars one segment: the 60 pixels of one car disagree
    assert segment_agreement(ref, merged, label_divisor=DIV, void_label=VOID) == pytest.approx(1 - 60 / 200)
    # the reverse roles: a merge seen from the other side is a split, and costs the same
    assert segment_agreement(merged, ref, label_divisor=DIV, void_label=VOID) == pytest.approx(1 - 60 / 200)


def test_instance_numbering_does_not_matter_but_class_and_void_do():
    ref = _cars()
    renumbered = np.where(ref == 13 * DIV + 1, 13 * DIV + 7, ref)
    assert segment_agreement(ref, renumbered, label_divisor=DIV, void_label=VOID) == 1.0
    truck = np.where(ref == 13 * DIV + 1, 14 * DIV + 1, ref)  # same pixels, another class
    assert segment_agreement(ref, truck, label_divisor=DIV, void_label=VOID) == pytest.approx(1 - 60 / 200)
    voided = np.where(ref == 0, VOID, ref)  # road became void: void is its own class
    assert segment_agreement(ref, voided, label_divisor=DIV, void_label=VOID) == pytest.approx(120 / 200)
    with pytest.raises(ValueError, match="differ in shape"):
        segment_agreement(ref, ref[:5], label_divisor=DIV, void_label=VOID)


# --------------------------------------------------------------------------- PanopticGuard
def _heads(centers=((36.0, 36.0), (36.0, 92.0))) -> dict[str, np.ndarray]:
    """(1, C, H, W) heads: sky above, road below, two touching cars (x 8..63 and 64..119, rows 16..55)
    whose offsets point exactly at their centers (row, col) and a Gaussian center peak at each."""
    sem = np.full((CITYSCAPES.num_classes, H, W), -5.0, np.float32)
    sem[SKY, :32] = 5.0
    sem[ROAD, 32:] = 5.0
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    offset = np.zeros((2, H, W), np.float32)
    boxes = ((slice(16, 56), slice(8, 64)), (slice(16, 56), slice(64, 120)))
    for (cy, cx), box in zip(((36.0, 36.0), (36.0, 92.0)), boxes):
        sem[:, box[0], box[1]] = -5.0
        sem[CAR, box[0], box[1]] = 5.0
        offset[0][box] = cy - yy[box]
        offset[1][box] = cx - xx[box]
    center = np.zeros((1, H, W), np.float32)
    for cy, cx in centers:
        center[0] = np.maximum(center[0], np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0 ** 2)))
    return {"semantic": sem[None], "center": center[None], "offset": offset[None]}


GUARD = PanopticGuard(CITYSCAPES, CFG)


def test_the_scene_has_two_car_instances():
    """The fixture is what the other tests assume: two car segments next to each other."""
    h = _heads()
    import torch

    out = panoptic_postprocess(*(torch.from_numpy(h[k][0]) for k in ("semantic", "center", "offset")),
                               thing_ids=CITYSCAPES.thing_ids, cfg=CFG)
    cars = sorted(s.area for s in out.segments if s.class_id == CAR)
    assert cars == [40 * 56, 40 * 56]
    assert GUARD(h, h) == {"semantic": 1.0, "panoptic": 1.0}


def test_offsets_wrong_by_under_one_pixel_with_the_same_grouping_pass():
    """The property the head guard got wrong: |offset error| < 1 px everywhere, same instances."""
    ref = _heads()
    rng = np.random.default_rng(0)
    got = {**ref, "offset": ref["offset"] + rng.uniform(-0.9, 0.9, ref["offset"].shape).astype(np.float32)}
    assert head_agreement(ref, got)["offset"] < MIN_AGREEMENT  # the raw-head test rejects it
    assert GUARD(ref, got) == {"semantic": 1.0, "panoptic": 1.0}
    # a spurious third center no pixel votes for: an instance without pixels, nothing published changes
    extra = {**got, "center": _heads(centers=((36.0, 36.0), (36.0, 92.0), (36.0, 14.0)))["center"]}
    assert head_agreement(ref, extra)["center"] < 1.0
    assert GUARD(ref, extra) == {"semantic": 1.0, "panoptic": 1.0}


@pytest.mark.parametrize("break_it", ["center_shifted", "offsets_biased", "offsets_x3", "class_swapped",
                                      "split"])
def test_a_broken_candidate_is_rejected(break_it):
    ref = _heads()
    if break_it == "center_shifted":  # both peaks 32 px right: car 2's pixels now join car 1's center
        got = {**ref, "center": _heads(centers=((36.0, 68.0), (36.0, 124.0)))["center"]}
    elif break_it == "offsets_biased":  # every dx 30 px too large: the right part of car 1 joins car 2
        off = ref["offset"].copy()
        off[:, 1] += 30.0
        got = {**ref, "offset": off}
    elif break_it == "offsets_x3":
        got = {**ref, "offset": ref["offset"] * 3.0}
    elif break_it == "class_swapped":  # car and truck logits swapped
        sem = ref["semantic"].copy()
        sem[:, [CAR, TRUCK]] = sem[:, [TRUCK, CAR]]
        got = {**ref, "semantic": sem}
    else:  # a third peak inside car 1, and the offsets of its left 16 columns point at it: a split
        off = ref["offset"].copy()
        off[0, 1, 16:56, 8:24] = 14.0 - np.arange(8, 24, dtype=np.float32)
        got = {**ref, "offset": off,
               "center": _heads(centers=((36.0, 36.0), (36.0, 92.0), (36.0, 14.0)))["center"]}
    scores = GUARD(ref, got)
    assert min(scores.values()) < MIN_AGREEMENT, scores
    car = 40 * 56 / (H * W)  # one car's share of the frame
    want = {"center_shifted": (1.0, 1 - car),  # the cars merge: one car's pixels disagree
            "offsets_biased": (1.0, 1 - car),  # car 1 votes nearer car 2's center: merged
            "class_swapped": (1 - 2 * car, 1 - 2 * car),
            "split": (1.0, 1 - 40 * 16 / (H * W))}.get(break_it)
    if want is not None:  # known by construction
        assert (scores["semantic"], scores["panoptic"]) == pytest.approx(want, abs=1e-9)
    else:
        assert scores["semantic"] == 1.0 and scores["panoptic"] < 0.95


def test_native_grid_candidate_is_post_processed_as_the_node_does():
    """Heads on a 4x coarser grid (offsets in its pixels) go through the node's own upsampling."""
    import torch
    import torch.nn.functional as F

    ref = _heads()
    small = {k: F.interpolate(torch.from_numpy(v), scale_factor=0.25, mode="bilinear", align_corners=False).numpy()
             for k, v in ref.items()}
    small["offset"] = small["offset"] * 0.25
    scores = GUARD(ref, small)
    assert scores["panoptic"] > 0.9 and scores["semantic"] > 0.9  # the same scene, blurred edges
    assert scores["panoptic"] < 1.0  # and not a trivially perfect score: the edges did move


def test_guard_id_follows_the_config():
    other = PanopticGuard(CITYSCAPES, PanopticConfig(center_threshold=0.2))
    assert GUARD.guard_id != other.guard_id and GUARD.guard_id == PanopticGuard(CITYSCAPES).guard_id
    assert GUARD.guard_id.startswith("panoptic-mutual-best-v")

"""PanopticTracker: persistent ids across frames on hand-made moving-object sequences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from seg_perception.core.tracking import PanopticTracker, TrackerConfig, track_sequence
from seg_perception.eval.video_metrics import IdSwitches, STQ, VideoLabels

CAR, PERSON, ROAD = 13, 11, 0
CFG = TrackerConfig(thing_ids=frozenset({CAR, PERSON}))


def frame(objects, h=40, w=80, per_frame_ids=None):
    """(H, W) panoptic map: road everywhere, objects as (cls, track_id, y, x, size) squares.

    The *per-frame* instance numbers the segmenter would emit are 1..n in list order unless
    ``per_frame_ids`` gives them; GT is returned alongside with the true track ids.
    """
    pan = np.full((h, w), ROAD * 1000, np.int32)
    gt = pan.copy()
    for k, (cls, tid, y, x, size) in enumerate(objects):
        n = per_frame_ids[k] if per_frame_ids else k + 1
        pan[max(y, 0):max(y + size, 0), max(x, 0):max(x + size, 0)] = cls * 1000 + n
        gt[max(y, 0):max(y + size, 0), max(x, 0):max(x + size, 0)] = cls * 1000 + tid
    return pan, gt


def test_ids_persist_while_per_frame_numbering_changes():
    rng = np.random.default_rng(0)
    tracker = PanopticTracker(CFG)
    seen = []
    for t in range(10):
        objs = [(CAR, 1, 5, 2 + 3 * t, 8), (CAR, 2, 25, 60 - 2 * t, 8), (PERSON, 3, 15, 40, 6)]
        ids = [int(v) for v in rng.permutation(3) + 1]  # the segmenter's numbering is arbitrary
        pan, gt = frame(objs, per_frame_ids=ids)
        out = tracker.update(pan)
        # same pixels grouped as the GT tracks, with one id per track for the whole sequence
        seen.append({int(out.panoptic[gt == g][0]) for g in np.unique(gt) if g // 1000 != ROAD})
        for g in np.unique(gt):
            assert len(np.unique(out.panoptic[gt == g])) == 1
        np.testing.assert_array_equal(out.frame_panoptic, pan)  # the per-frame ids stay available
        assert all(out.panoptic[pan == k].tolist() == [v] * int((pan == k).sum()) for k, v in out.id_map.items())
    assert all(s == seen[0] for s in seen)
    assert {v // 1000 for v in seen[0]} == {CAR, PERSON}
    assert (out.panoptic[gt == ROAD * 1000] == ROAD * 1000).all()  # stuff passes through


def test_constant_velocity_bridges_an_occlusion():
    # A 4 px car moves 4 px / frame, hidden for 2 frames: on return it is 12 px from its last
    # mask (no overlap, centroid 3 sizes away), so only the velocity prediction can re-identify it.
    def run(cfg):
        tracker = PanopticTracker(cfg)
        ids = []
        for t in range(8):
            objs = [] if t in (3, 4) else [(CAR, 1, 10, 4 * t, 4)]
            out = tracker.update(frame(objs)[0])
            ids.append(sorted(out.id_map.values()))
        return ids
    ids = run(CFG)
    assert [i for i in ids if i] == [[CAR * 1000 + 1]] * 6
    # With max_missed below the gap the track ends and the object gets a new id.
    ids = run(TrackerConfig(thing_ids=CFG.thing_ids, max_missed=1))
    assert ids[5] == [CAR * 1000 + 2]


def test_classes_are_tracked_separately_and_births_get_new_ids():
    tracker = PanopticTracker(CFG)
    a = tracker.update(frame([(CAR, 1, 5, 5, 8)])[0])
    # the car is hidden and a person stands exactly where it was: another class, so a new track
    b = tracker.update(frame([(PERSON, 2, 5, 5, 8)])[0])
    assert a.births == [CAR * 1000 + 1]
    assert b.births == [PERSON * 1000 + 1] and b.id_map == {PERSON * 1000 + 1: PERSON * 1000 + 1}
    # the car returns (its track survived one missed frame); a second car far away is a birth
    # with the next free id of its class
    c = tracker.update(frame([(CAR, 1, 5, 6, 8), (CAR, 3, 25, 60, 8)])[0])
    assert c.id_map == {CAR * 1000 + 1: CAR * 1000 + 1, CAR * 1000 + 2: CAR * 1000 + 2}
    assert c.births == [CAR * 1000 + 2]


def test_crossing_objects_keep_ids_with_optimal_assignment():
    # Two cars pass each other on neighbouring rows; greedy IoU would be ambiguous at the crossing.
    seq_pred, seq_gt = [], []
    for t in range(12):
        pan, gt = frame([(CAR, 1, 10, 5 + 5 * t, 8), (CAR, 2, 14, 65 - 5 * t, 8)])
        # the occluded car's pixels are overwritten by the second (front) car where they overlap
        seq_pred.append(pan)
        seq_gt.append(gt)
    labels = VideoLabels(19, frozenset({CAR, PERSON}))
    ids, stq = IdSwitches(labels), STQ(labels)
    for out, gt in zip(track_sequence(seq_pred, CFG), seq_gt):
        ids.update(gt, out.panoptic)
        stq.update(gt, out.panoptic)
    assert ids.result()["id_switches"] == 0
    assert stq.result()["aq"] > 0.99


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_output_is_a_relabelling_of_each_frame(seed):
    # Property: whatever the motion, the tracked map groups exactly the same pixels as the input
    # (one tracked id per input segment, distinct ids for distinct segments, class kept).
    rng = np.random.default_rng(seed)
    tracker = PanopticTracker(TrackerConfig(thing_ids=frozenset({CAR, PERSON}), max_missed=int(rng.integers(0, 3))))
    for _ in range(6):
        n = int(rng.integers(0, 6))
        objs = [(int(rng.choice([CAR, PERSON])), 0, int(rng.integers(-5, 38)), int(rng.integers(-5, 78)),
                 int(rng.integers(1, 10))) for _ in range(n)]
        pan, _ = frame(objs)
        out = tracker.update(pan)
        vals = list(out.id_map.values())
        assert len(set(vals)) == len(vals)
        for k, v in out.id_map.items():
            assert v // 1000 == k // 1000 and 1 <= v % 1000 <= 999
            np.testing.assert_array_equal(out.panoptic == v, pan == k)


def test_bad_config_and_input_are_named():
    with pytest.raises(ValueError, match="max_missed"):
        PanopticTracker(TrackerConfig(thing_ids=frozenset({1}), max_missed=-1))
    with pytest.raises(ValueError, match="min_iou"):
        TrackerConfig(thing_ids=frozenset({1}), min_iou=2.0).validate()
    with pytest.raises(ValueError, match=r"\(H, W\) integer"):
        PanopticTracker(CFG).update(np.zeros((4, 4), np.float32))


def test_ids_wrap_below_label_divisor_skipping_live_tracks():
    cfg = TrackerConfig(thing_ids=frozenset({1}), label_divisor=4, max_missed=100)
    tracker = PanopticTracker(cfg)
    row = np.zeros((1, 20), np.int64)
    row[0, [0, 5, 10]] = [1 * 4 + 1, 1 * 4 + 2, 1 * 4 + 3]
    tracker.update(row)  # track ids 1, 2, 3 alive: all ids below label_divisor 4 taken
    far = np.zeros((1, 20), np.int64)
    far[0, 17] = 1 * 4 + 1
    with pytest.raises(RuntimeError, match="no free id"):
        tracker.update(far)  # a 4th object (no overlap, outside the centroid gate) needs an id
    tracker = PanopticTracker(TrackerConfig(thing_ids=frozenset({1}), label_divisor=4, max_missed=0))
    tracker.update(row)
    out = tracker.update(far)  # the three tracks ended: ids are reused, counting on from the last
    assert out.id_map == {5: 5} and len(out.ended) == 3


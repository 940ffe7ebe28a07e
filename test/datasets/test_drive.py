"""The synthetic drive: a moving camera, traffic with stable track ids, depth and intrinsics."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from seg_perception.datasets.drive import Drive, make_drive
from seg_perception.datasets.synthetic import (
    BICYCLE, BUILDING, CAR, PERSON, RIDER, ROAD, SIDEWALK, SKY, THING_CLASSES, TRUCK,
)
from seg_perception.core.results import LABEL_DIVISOR

HW = (128, 256)
N = 40
SEEDS = (2, 5)


@pytest.fixture(scope="module", params=SEEDS)
def drive(request) -> Drive:
    return make_drive(request.param, HW, N)


def _things(frame, min_area: int = 1) -> dict[int, dict]:
    return {s["id"]: s for s in frame.segments if s["isthing"] and s["area"] >= min_area}


def test_frames_have_the_scene_layout(drive: Drive) -> None:
    assert len(drive.frames) == N and drive.hw == HW and drive.ego.shape == (N, 3)
    for f in drive.frames:
        assert f.image.shape == (*HW, 3) and f.image.dtype == np.uint8
        assert f.depth.shape == HW and f.depth.dtype == np.float32
        cls = f.panoptic // LABEL_DIVISOR
        np.testing.assert_array_equal(cls, f.semantic)
        inst = f.panoptic % LABEL_DIVISOR
        thing = np.isin(f.semantic, list(THING_CLASSES))
        assert (inst[thing] > 0).all() and (inst[~thing] == 0).all()


def test_camera_moves_and_the_scene_changes(drive: Drive) -> None:
    """Ego-motion: the camera advances every frame and the picture changes far more than the old
    static sample drive did (mean |change| from frame 0 at most 1.7 / 255 there)."""
    dz = np.diff(drive.ego[:, 1])
    assert (dz > 0.3).all(), "the camera drives forward every frame"
    imgs = [f.image.astype(np.int16) for f in drive.frames]
    step = [np.abs(b - a).mean() for a, b in zip(imgs, imgs[1:])]
    assert min(step) > 2.0 and np.mean(step) > 5.0, step
    assert np.abs(imgs[-1] - imgs[0]).mean() > 20.0
    # the static world scrolls too, not only the things: stuff labels change between frames
    stuff = [np.where(np.isin(f.semantic, list(THING_CLASSES)), 255, f.semantic) for f in drive.frames]
    assert np.mean([(a != b).mean() for a, b in zip(stuff, stuff[1:])]) > 0.01


def test_the_camera_turns_into_the_next_lane() -> None:
    """Over a longer drive the camera changes lanes, heading where it drives: the street swings."""
    d = make_drive(5, (64, 128), 80)
    yaw = d.ego[:, 2]
    assert np.abs(yaw).max() > 0.1 and yaw[0] == 0 and abs(yaw[-1]) < 1e-6
    lateral = d.ego[-1, 0] - d.ego[0, 0]
    assert abs(lateral) > 2.0 and np.sign(yaw[np.argmax(np.abs(yaw))]) == np.sign(lateral)


def test_several_instances_of_every_thing_class(drive: Drive) -> None:
    """People, riders (with their bicycles), cars, trucks and parked bicycles; they enter and leave."""
    seen = defaultdict(set)
    per_frame = []
    for f in drive.frames:
        ids = _things(f, min_area=20)
        per_frame.append(len(ids))
        for i in ids:
            seen[i // LABEL_DIVISOR].add(i)
    need = {PERSON: 5, RIDER: 2, CAR: 5, TRUCK: 1, BICYCLE: 3}
    for c, n in need.items():
        assert len(seen[c]) >= n, (c, len(seen[c]))
    assert np.mean(per_frame) >= 8
    first, last = set(_things(drive.frames[0])), set(_things(drive.frames[-1]))
    assert first - last and last - first, "objects leave and others enter the view"


def test_objects_occlude_each_other(drive: Drive) -> None:
    """Some object is partly hidden by another: its visible area drops while it stays in view."""
    hidden = 0
    for f in drive.frames:
        for s in _things(f, min_area=20).values():
            x, y, w, h = s["bbox"]
            box = f.panoptic[y:y + h, x:x + w]
            others = (box != s["id"]) & (box % LABEL_DIVISOR > 0)
            hidden += others.mean() > 0.2
    assert hidden >= 10


def _id_jumps(panoptics: list[np.ndarray]) -> tuple[int, int]:
    """(pairs checked, pairs where an id jumped): for every thing id seen in two consecutive
    frames, fully inside the image and with a smoothly changing area (not being occluded or
    revealed), its centroid must move by less than its own extent (a car or person moves at most a
    few metres per 0.1 s)."""
    checked = jumps = 0
    h, w = panoptics[0].shape
    for a, b in zip(panoptics, panoptics[1:]):
        ids = set(np.unique(a[a % LABEL_DIVISOR > 0]).tolist()) & set(np.unique(b[b % LABEL_DIVISOR > 0]).tolist())
        for i in ids:
            (ya, xa), (yb, xb) = np.nonzero(a == i), np.nonzero(b == i)
            if min(len(xa), len(xb)) < 40 or not 0.7 < len(xb) / len(xa) < 1.45:
                continue
            if min(xa.min(), xb.min(), ya.min(), yb.min()) == 0 or max(xa.max(), xb.max()) == w - 1 \
                    or max(ya.max(), yb.max()) == h - 1:
                continue
            size = max(np.ptp(xa), np.ptp(ya), np.ptp(xb), np.ptp(yb)) + 1
            checked += 1
            jumps += np.hypot(xb.mean() - xa.mean(), yb.mean() - ya.mean()) > size + 3
    return checked, jumps


def _renumber_per_frame(pan: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Number each class's instances 1..n far to near, as the single-scene generator does."""
    out = pan.copy()
    for c in THING_CLASSES:
        ids = [i for i in np.unique(pan).tolist() if i // LABEL_DIVISOR == c and i % LABEL_DIVISOR]
        ids.sort(key=lambda i: -np.median(depth[pan == i]))
        for k, i in enumerate(ids, 1):
            out[pan == i] = c * LABEL_DIVISOR + k
    return out


def test_track_ids_are_stable_while_visible(drive: Drive) -> None:
    """The same panoptic id is the same object in every frame; every id is one of the drive's
    tracks with the matching class. The same check catches a per-frame numbering."""
    kinds = {PERSON: "person", RIDER: "rider", CAR: "car", TRUCK: "truck", BICYCLE: "bicycle"}
    for i in {s["id"] for f in drive.frames for s in f.segments if s["isthing"]}:
        assert drive.tracks[i] == kinds[i // LABEL_DIVISOR]
    pans = [f.panoptic for f in drive.frames]
    checked, jumps = _id_jumps(pans)
    assert checked > 100 and jumps == 0, (checked, jumps)
    _, jumps_per_frame = _id_jumps([_renumber_per_frame(f.panoptic, f.depth) for f in drive.frames])
    assert jumps_per_frame > 0


def test_depth_of_the_ground_is_a_plane_through_camera_info(drive: Drive) -> None:
    """Back-projecting the depth of road / sidewalk pixels with K gives the plane y = camera height
    (camera frame, y down), the same plane in every frame."""
    K = drive.K
    assert K[0, 0] == K[1, 1] > 0 and K[2].tolist() == [0, 0, 1]
    for f in drive.frames[:: N // 4]:
        v, u = np.nonzero(np.isin(f.semantic, [ROAD]) & (f.depth > 0))
        z = f.depth[v, u].astype(np.float64)
        x = (u - K[0, 2]) * z / K[0, 0]
        y = (v - K[1, 2]) * z / K[1, 1]
        coef, *_ = np.linalg.lstsq(np.c_[x, z, np.ones_like(x)], y, rcond=None)
        np.testing.assert_allclose(coef, [0.0, 0.0, drive.camera_height], atol=1e-3)
        assert np.abs(y - drive.camera_height).max() < 1e-3 * drive.camera_height
        # the ground rises towards the horizon: depth grows monotonically up the image
        assert (f.depth[v, u] > 0).all() and np.corrcoef(v, 1.0 / z)[0, 1] > 0.999


def test_depth_follows_the_layout(drive: Drive) -> None:
    """Sky has no depth; everything else does; things stand nearer than the ground just above
    their top would be (the ground is farther away higher up the image)."""
    for f in drive.frames[:: N // 4]:
        assert (f.depth[f.semantic == SKY] == 0).all()
        solid = np.isin(f.semantic, [ROAD, SIDEWALK, CAR, PERSON, TRUCK])
        assert (f.depth[solid] > 0).all()
        assert f.depth[f.semantic == BUILDING].max() > 0
        for s in _things(f, 60).values():
            x, y, w, h = s["bbox"]
            d = np.median(f.depth[f.panoptic == s["id"]])
            bottom = y + h - 1
            if bottom > drive.K[1, 2] + 2:  # feet / wheels below the horizon: on the ground there
                ground_at_bottom = drive.K[1, 1] * drive.camera_height / (bottom - drive.K[1, 2])
                assert d < ground_at_bottom * 1.6 + 1.0, (s["id"], d, ground_at_bottom)


def test_same_seed_same_drive_other_seed_differs() -> None:
    a, b, c = make_drive(3, HW, 6), make_drive(3, HW, 6), make_drive(4, HW, 6)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_array_equal(fa.image, fb.image)
        np.testing.assert_array_equal(fa.panoptic, fb.panoptic)
        np.testing.assert_array_equal(fa.depth, fb.depth)
    np.testing.assert_array_equal(a.K, b.K)
    assert np.abs(a.frames[0].image.astype(int) - c.frames[0].image.astype(int)).mean() > 10


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_frames"):
        make_drive(0, HW, 0)
    with pytest.raises(ValueError, match="fps"):
        make_drive(0, HW, 3, fps=0)
    with pytest.raises(ValueError, match="hw"):
        make_drive(0, (8, 8), 3)

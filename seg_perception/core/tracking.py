"""Persistent instance ids for panoptic segments across frames.

Per class, each frame's thing segments are matched to the live tracks of that class by an
optimal assignment (:func:`~seg_perception.core.assignment.linear_sum_assignment`) on

    cost = (1 - IoU(segment, track mask moved by its constant-velocity prediction))
           + motion_weight * |centroid - predicted centroid| / sqrt(track area)

A pair is admissible only when that IoU >= ``min_iou`` or the centroid distance is below
``max_center_distance * sqrt(track area)`` (small fast objects whose masks no longer overlap).
Unmatched tracks survive ``max_missed`` frames; unmatched segments start a new track.

Output ids follow the project's panoptic encoding: ``class * label_divisor + track_id`` with
``track_id`` in [1, label_divisor - 1] per class (ids are reused only after ``label_divisor - 1``
births of that class, skipping ids still alive). Stuff and void pixels pass through unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from seg_perception.core.assignment import linear_sum_assignment

_FORBIDDEN = 1e6
#: ids below this are looked up through a dense table (255 classes * 1000 + instances fit easily)
_DENSE_ID_LIMIT = 1 << 22


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker parameters (validated by :meth:`validate`).

    Attributes:
        thing_ids: class ids that carry instances; other classes pass through.
        label_divisor: panoptic id = class * label_divisor + instance (1000).
        void_label: panoptic id of void pixels in the input (passed through).
        max_missed: frames a track may go unmatched before it is ended (0 = end at once).
        min_iou: smallest predicted-mask IoU for an admissible match (pairs need some overlap
            unless the centroid gate admits them).
        max_center_distance: centroid gate in units of sqrt(track area); 0 disables it.
        motion_weight: weight of the normalised centroid distance in the cost.
    """

    thing_ids: frozenset[int]
    label_divisor: int = 1000
    void_label: int = 255000
    max_missed: int = 5
    min_iou: float = 0.1
    max_center_distance: float = 1.0
    motion_weight: float = 0.5

    def validate(self) -> "TrackerConfig":
        if not isinstance(self.label_divisor, int) or self.label_divisor < 2:
            raise ValueError(f"TrackerConfig.label_divisor={self.label_divisor!r} must be an integer >= 2 (e.g. 1000)")
        if not isinstance(self.max_missed, int) or self.max_missed < 0:
            raise ValueError(f"TrackerConfig.max_missed={self.max_missed!r} must be an integer >= 0 (frames)")
        if not (0.0 <= float(self.min_iou) <= 1.0):
            raise ValueError(f"TrackerConfig.min_iou={self.min_iou!r} must be in [0, 1]")
        if float(self.max_center_distance) < 0:
            raise ValueError(f"TrackerConfig.max_center_distance={self.max_center_distance!r} must be >= 0 "
                             "(units of sqrt(track area); 0 disables the centroid gate)")
        if float(self.motion_weight) < 0:
            raise ValueError(f"TrackerConfig.motion_weight={self.motion_weight!r} must be >= 0")
        return self


@dataclass
class _Track:
    track_id: int
    cls: int
    ys: np.ndarray  # (P,) int32 pixel rows of the last matched mask
    xs: np.ndarray
    centroid: np.ndarray  # (2,) float (y, x)
    velocity: np.ndarray  # (2,) float pixels / frame
    missed: int = 0
    age: int = 1


@dataclass
class TrackedFrame:
    """One frame's tracker output.

    Attributes:
        panoptic: (H, W) int32 ids ``class * label_divisor + track_id`` (stuff/void unchanged).
        frame_panoptic: (H, W) the input per-frame ids (untracked), unchanged.
        id_map: per-frame id -> tracked id for every thing segment of this frame.
        births: tracked ids started this frame. ended: tracked ids that ran out of ``max_missed``.
    """

    panoptic: np.ndarray
    frame_panoptic: np.ndarray
    id_map: dict[int, int] = field(default_factory=dict)
    births: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)


class PanopticTracker:
    """Assigns persistent ids to the thing segments of consecutive panoptic maps."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config.validate()
        self._tracks: list[_Track] = []
        self._next_id: dict[int, int] = {}
        self._shape: Optional[tuple[int, int]] = None

    def reset(self) -> None:
        """Forget all tracks (e.g. after a camera jump or a bag restart)."""
        self._tracks = []
        self._next_id = {}
        self._shape = None

    @property
    def live_tracks(self) -> int:
        return len(self._tracks)

    def _new_id(self, cls: int) -> int:
        alive = {t.track_id for t in self._tracks if t.cls == cls}
        limit = self.config.label_divisor - 1
        nxt = self._next_id.get(cls, 1)
        for _ in range(limit):
            tid = nxt
            nxt = nxt % limit + 1
            if tid not in alive:
                self._next_id[cls] = nxt
                return tid
        raise RuntimeError(f"PanopticTracker: class {cls} has {len(alive)} live tracks, no free id below "
                           f"label_divisor {self.config.label_divisor}; lower max_missed")

    def update(self, panoptic: np.ndarray) -> TrackedFrame:
        """Track one frame.

        Args:
            panoptic: (H, W) integer panoptic ids of this frame (``class * label_divisor + n``).

        Returns:
            :class:`TrackedFrame` with the tracked map and the per-frame -> tracked id map.
        """
        pan = np.asarray(panoptic)
        if pan.ndim != 2 or not np.issubdtype(pan.dtype, np.integer):
            raise ValueError(f"PanopticTracker.update: panoptic must be an (H, W) integer array, got "
                             f"shape {pan.shape} dtype {pan.dtype}")
        cfg = self.config
        h, w = pan.shape
        if self._shape is not None and self._shape != (h, w):
            # Masks from another resolution cannot be compared; start over rather than mis-associate.
            self.reset()
        self._shape = (h, w)

        flat = pan.reshape(-1).astype(np.int64)
        lo, hi = (int(flat.min()), int(flat.max())) if flat.size else (0, 0)
        if lo >= 0 and hi < _DENSE_ID_LIMIT:
            # Panoptic ids are small non-negative ints: a counting pass beats np.unique's sort ~10x.
            ids = np.flatnonzero(np.bincount(flat, minlength=1))
            inverse = None
        else:
            ids, inverse = np.unique(flat, return_inverse=True)
        cls_of = ids // cfg.label_divisor
        thing_lut = np.isin(cls_of, np.fromiter(cfg.thing_ids, np.int64, len(cfg.thing_ids))) & (ids != cfg.void_label)
        seg_ids = ids[thing_lut]
        seg_cls = cls_of[thing_lut]
        n_seg = len(seg_ids)
        # Segment index per pixel (-1 for stuff / void), via an id -> segment lookup table.
        if inverse is None:
            lut = np.full(hi + 1, -1, dtype=np.int64)
            lut[seg_ids] = np.arange(n_seg)
            seg_index = lut[flat]
        else:
            lut = np.full(len(ids), -1, dtype=np.int64)
            lut[np.flatnonzero(thing_lut)] = np.arange(n_seg)
            seg_index = lut[inverse]
        on = seg_index >= 0
        pix = np.flatnonzero(on)
        pix_seg = seg_index[pix]
        area = np.bincount(pix_seg, minlength=n_seg).astype(np.float64)
        ys_all, xs_all = np.divmod(pix, w)
        cy = np.bincount(pix_seg, weights=ys_all, minlength=n_seg) / np.maximum(area, 1)
        cx = np.bincount(pix_seg, weights=xs_all, minlength=n_seg) / np.maximum(area, 1)

        inter, t_area, pred_c = self._overlaps(seg_index, h, w, n_seg)

        assigned: dict[int, int] = {}  # segment index -> track index
        for c in np.unique(seg_cls).tolist():
            s_idx = np.flatnonzero(seg_cls == c)
            t_idx = np.array([k for k, t in enumerate(self._tracks) if t.cls == c], dtype=np.int64)
            if len(t_idx) == 0:
                continue
            it = inter[np.ix_(t_idx, s_idx)]
            union = t_area[t_idx, None] + area[None, s_idx] - it
            iou = np.where(union > 0, it / np.maximum(union, 1), 0.0)
            scale = np.sqrt(np.maximum(np.array([len(self._tracks[k].ys) for k in t_idx], np.float64), 1.0))
            d = np.hypot(pred_c[t_idx, 0, None] - cy[None, s_idx], pred_c[t_idx, 1, None] - cx[None, s_idx])
            dn = d / scale[:, None]
            ok = (iou >= cfg.min_iou) & (it > 0)
            if cfg.max_center_distance > 0:
                ok |= dn <= cfg.max_center_distance
            cost = np.where(ok, (1.0 - iou) + cfg.motion_weight * dn, _FORBIDDEN)
            rows, cols = linear_sum_assignment(cost)
            for r, k in zip(rows.tolist(), cols.tolist()):
                if ok[r, k]:
                    assigned[int(s_idx[k])] = int(t_idx[r])

        births: list[int] = []
        ended: list[int] = []
        matched_tracks = set(assigned.values())
        old = self._tracks
        survivors: list[_Track] = []
        for k, t in enumerate(old):
            if k in matched_tracks:
                survivors.append(t)
                continue
            t.missed += 1
            if t.missed > cfg.max_missed:
                ended.append(t.cls * cfg.label_divisor + t.track_id)
            else:
                survivors.append(t)
        # Pixel coordinates per segment for the new track masks (one sort, then split).
        # uint16 keys let numpy use its O(N) radix sort.
        order = np.argsort(pix_seg.astype(np.uint16) if n_seg < 65536 else pix_seg, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(pix_seg, minlength=n_seg))])
        ys_sorted = ys_all[order].astype(np.int32)
        xs_sorted = xs_all[order].astype(np.int32)

        self._tracks = survivors  # ended tracks' ids are free for births below
        new_value = np.zeros(n_seg, dtype=np.int64)
        for s in range(n_seg):
            c = int(seg_cls[s])
            ys_s = ys_sorted[bounds[s]:bounds[s + 1]]
            xs_s = xs_sorted[bounds[s]:bounds[s + 1]]
            cen = np.array([cy[s], cx[s]])
            if s in assigned:
                t = old[assigned[s]]
                gap = t.missed + 1
                t.velocity = (cen - t.centroid) / gap
                t.centroid, t.ys, t.xs = cen, ys_s, xs_s
                t.missed = 0
                t.age += 1
            else:
                t = _Track(self._new_id(c), c, ys_s, xs_s, cen, np.zeros(2))
                survivors.append(t)
                births.append(c * cfg.label_divisor + t.track_id)
            new_value[s] = c * cfg.label_divisor + t.track_id

        out = flat.copy()
        out[pix] = new_value[pix_seg]
        id_map = {int(seg_ids[s]): int(new_value[s]) for s in range(n_seg)}
        return TrackedFrame(out.reshape(h, w).astype(np.int32), pan, id_map, births, ended)

    def _overlaps(self, seg_index: np.ndarray, h: int, w: int, n_seg: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Intersections of every track's predicted mask with every segment of this frame.

        Returns:
            inter: (T, S) pixel counts; t_area: (T,) in-image area of each predicted mask;
            pred_c: (T, 2) predicted centroids (y, x).
        """
        n_t = len(self._tracks)
        if n_t == 0:
            return np.zeros((0, n_seg)), np.zeros(0), np.zeros((0, 2))
        # Constant-velocity prediction over the frames since the last match.
        shifts = np.array([t.velocity * (t.missed + 1) for t in self._tracks])
        pred_c = np.array([t.centroid for t in self._tracks]) + shifts
        dy = np.rint(shifts[:, 0]).astype(np.int64)
        dx = np.rint(shifts[:, 1]).astype(np.int64)
        lengths = np.array([len(t.ys) for t in self._tracks], dtype=np.int64)
        owner = np.repeat(np.arange(n_t), lengths)
        ys = np.concatenate([t.ys for t in self._tracks]).astype(np.int64) + dy[owner]
        xs = np.concatenate([t.xs for t in self._tracks]).astype(np.int64) + dx[owner]
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        owner, ys, xs = owner[inside], ys[inside], xs[inside]
        t_area = np.bincount(owner, minlength=n_t).astype(np.float64)
        seg = seg_index[ys * w + xs]
        hit = seg >= 0
        inter = np.bincount(owner[hit] * max(n_seg, 1) + seg[hit], minlength=n_t * max(n_seg, 1))
        return inter.reshape(n_t, max(n_seg, 1))[:, :n_seg].astype(np.float64), t_area, pred_c


def track_sequence(frames: Iterable[np.ndarray], config: TrackerConfig) -> list[TrackedFrame]:
    """Run a fresh tracker over a sequence of (H, W) panoptic maps."""
    tracker = PanopticTracker(config)
    return [tracker.update(f) for f in frames]

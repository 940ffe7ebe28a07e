"""Export predictions in COCO panoptic format (PNG + JSON) and as semantic label PNGs.

Layout under ``out_dir``::

    panoptic/<name>.png       RGB PNG, segment id = R + 256 * G + 256**2 * B (0 = void)
    panoptic/predictions.json {"images": [...], "annotations": [...], "categories": [...]}
    semantic/<name>.png       8-bit (16-bit above 255 classes) train-id label PNG

COCO segment ids are numbered 1..n per image (0 is COCO's void), because our own panoptic id of
road (class 0, instance 0) is 0. Each ``segments_info`` entry keeps our id as ``panoptic_id``.
Category ids are the label set's train ids; ``isthing`` follows the label set.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from seg_perception.datasets.labels import LabelSet
from seg_perception.core.results import LABEL_DIVISOR


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) non-negative ids < 2**24 -> (H, W, 3) uint8 with ``id = R + 256 G + 256^2 B``."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 256**3):
        raise ValueError(f"COCO panoptic ids must be in [0, 2**24), got range [{ids.min()}, {ids.max()}]")
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 COCO panoptic PNG colours -> (H, W) int64 ids."""
    c = np.asarray(rgb).astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def segment_stats(ids: np.ndarray) -> list[tuple[int, int, tuple[int, int, int, int]]]:
    """For every id in (H, W) ``ids``: (id, area, (x, y, w, h) bbox), sorted by id."""
    flat = np.asarray(ids).ravel()
    if flat.size == 0:
        return []
    uniq, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
    width = ids.shape[1]
    order = np.argsort(inv, kind="stable")
    ys = order // width
    xs = order % width
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    return [
        (int(u), int(n), (int(a), int(b), int(c - a + 1), int(d - b + 1)))
        for u, n, a, b, c, d in zip(uniq, counts, x0, y0, x1, y1)
    ]


def _write_png(path: Path, img: np.ndarray) -> None:
    import cv2

    arr = img[..., ::-1] if img.ndim == 3 else img  # OpenCV writes BGR
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr)):
        raise OSError(f"could not write {path}")


class CocoPanopticWriter:
    """Collects per-frame predictions and writes PNGs immediately, the JSON on :meth:`close`.

    Args:
        out_dir: output root (``panoptic/`` and ``semantic/`` are created inside).
        label_set: categories (names, thing ids, palette).
        label_divisor: our panoptic id divisor. void_id: our void id (not exported as a segment).
    """

    def __init__(
        self,
        out_dir: Union[str, Path],
        label_set: LabelSet,
        label_divisor: int = LABEL_DIVISOR,
        void_id: Optional[int] = None,
    ) -> None:
        self.root = Path(out_dir)
        self.pan_dir = self.root / "panoptic"
        self.sem_dir = self.root / "semantic"
        self.pan_dir.mkdir(parents=True, exist_ok=True)
        self.sem_dir.mkdir(parents=True, exist_ok=True)
        self.label_set = label_set
        self.label_divisor = int(label_divisor)
        self.void_id = int(void_id if void_id is not None else label_set.ignore_label * label_divisor)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self._image_ids: set[Union[int, str]] = set()

    def has_image(self, image_id: Union[int, str]) -> bool:
        """True when a frame with ``image_id`` was already added."""
        return image_id in self._image_ids

    def add(
        self,
        name: str,
        semantic: np.ndarray,
        panoptic: Optional[np.ndarray] = None,
        segments: Sequence[Any] = (),
        extra: Optional[dict] = None,
        image_id: Optional[Union[int, str]] = None,
    ) -> Optional[dict]:
        """Write one frame; returns its COCO annotation (None for semantic-only results).

        Args:
            name: file stem (unique per frame).
            semantic: (H, W) train ids. panoptic: (H, W) our panoptic ids or None.
            segments: ``results.Segment`` list; used only for ``score`` values.
            extra: extra keys for the ``images`` entry (bag, index, stamp_ns, ...).
            image_id: the ground truth's id for this image (e.g. Cityscapes' ``"frankfurt_000000_000294"``
                from ``createPanopticImgs``). The COCO panoptic API pairs prediction and ground truth
                annotations by ``image_id``, so pass it when the GT JSON is known; default: the
                running frame number 0, 1, 2, ...
        """
        sem = np.asarray(semantic)
        _write_png(self.sem_dir / f"{name}.png", sem.astype(np.uint8 if self.label_set.num_classes <= 256 else np.uint16))
        if panoptic is None:
            return None
        pan = np.asarray(panoptic, dtype=np.int64)
        if image_id is None:
            image_id = len(self.images)
        if image_id in self._image_ids:
            raise ValueError(f"image_id {image_id!r} was already added; every frame needs its own image_id")
        self._image_ids.add(image_id)
        height, width = pan.shape
        self.images.append({"id": image_id, "file_name": f"{name}.png", "height": height, "width": width, **(extra or {})})
        scores = {int(s.id): float(s.score) for s in segments if hasattr(s, "id")}
        uniq, inv = np.unique(pan.ravel(), return_inverse=True)
        lut = np.zeros(len(uniq), dtype=np.int64)  # index into uniq -> COCO segment id (0 = void)
        infos = []
        next_id = 1
        for k, (pid, area, bbox) in enumerate(segment_stats(pan)):  # same order as uniq
            cls = pid // self.label_divisor
            if pid == self.void_id or pid < 0 or not 0 <= cls < self.label_set.num_classes:
                continue  # void stays 0
            lut[k] = next_id
            info = {
                "id": next_id,
                "category_id": int(cls),
                "area": area,
                "bbox": list(bbox),
                "iscrowd": 0,
                "panoptic_id": int(pid),
            }
            if pid in scores:
                info["score"] = scores[pid]
            infos.append(info)
            next_id += 1
        _write_png(self.pan_dir / f"{name}.png", id_to_rgb(lut[inv].reshape(pan.shape)))
        ann = {"image_id": image_id, "file_name": f"{name}.png", "segments_info": infos}
        self.annotations.append(ann)
        return ann

    def categories(self) -> list[dict]:
        ls = self.label_set
        return [
            {"id": c, "name": ls.names[c], "isthing": int(ls.is_thing(c)), "color": [int(v) for v in ls.palette[c]]}
            for c in range(ls.num_classes)
        ]

    def close(self) -> Optional[Path]:
        """Write ``panoptic/predictions.json`` (when any panoptic frame was added); returns its path."""
        if not self.images:
            return None
        path = self.pan_dir / "predictions.json"
        doc = {
            "info": {"description": "seg_perception predictions", "segment_id_encoding": "R + 256*G + 256^2*B"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories(),
        }
        path.write_text(json.dumps(doc, indent=1))
        return path

"""Label sets: class names, palettes, thing/stuff split and id mappings.

The default is ``cityscapes`` (19 train ids, ignore label 255). ``cityscapes-34`` keeps the raw
Cityscapes label ids. Ground truth stored as Cityscapes *labelIds* is mapped to train ids with
:meth:`LabelSet.map_label_ids`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

IGNORE_LABEL = 255


@dataclass(frozen=True)
class LabelSet:
    """A segmentation label space.

    Attributes:
        name: registry name, e.g. ``"cityscapes"``.
        names: class name per train id, ``len(names) == num_classes``.
        palette: (num_classes, 3) uint8 RGB colors.
        thing_ids: train ids of countable classes (instances are grouped for these).
        ignore_label: label value meaning "not evaluated" in ground truth.
        label_id_to_train_id: optional lookup for raw dataset ids (e.g. Cityscapes labelIds), a
            (K,) uint8 array where unmapped ids hold ``ignore_label``.
    """

    name: str
    names: tuple[str, ...]
    palette: np.ndarray
    thing_ids: frozenset[int]
    ignore_label: int = IGNORE_LABEL
    label_id_to_train_id: Optional[np.ndarray] = field(default=None, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def stuff_ids(self) -> frozenset[int]:
        return frozenset(range(self.num_classes)) - self.thing_ids

    def is_thing(self, class_id: int) -> bool:
        return int(class_id) in self.thing_ids

    def class_name(self, class_id: int) -> str:
        if 0 <= int(class_id) < self.num_classes:
            return self.names[int(class_id)]
        return f"class_{int(class_id)}"

    def map_label_ids(self, label_ids: np.ndarray) -> np.ndarray:
        """Map raw dataset label ids (H, W) to train ids (H, W) uint8; unknown -> ignore_label."""
        if self.label_id_to_train_id is None:
            return label_ids.astype(np.uint8, copy=False)
        lut = self.label_id_to_train_id
        ids = label_ids.astype(np.int64)
        out = np.full(ids.shape, self.ignore_label, dtype=np.uint8)
        ok = (ids >= 0) & (ids < len(lut))
        out[ok] = lut[ids[ok]]
        return out


# Cityscapes (labels.py of the official cityscapesScripts): (name, id, trainId, color, hasInstances)
_CITYSCAPES = [
    ("unlabeled", 0, 255, (0, 0, 0), False),
    ("ego vehicle", 1, 255, (0, 0, 0), False),
    ("rectification border", 2, 255, (0, 0, 0), False),
    ("out of roi", 3, 255, (0, 0, 0), False),
    ("static", 4, 255, (0, 0, 0), False),
    ("dynamic", 5, 255, (111, 74, 0), False),
    ("ground", 6, 255, (81, 0, 81), False),
    ("road", 7, 0, (128, 64, 128), False),
    ("sidewalk", 8, 1, (244, 35, 232), False),
    ("parking", 9, 255, (250, 170, 160), False),
    ("rail track", 10, 255, (230, 150, 140), False),
    ("building", 11, 2, (70, 70, 70), False),
    ("wall", 12, 3, (102, 102, 156), False),
    ("fence", 13, 4, (190, 153, 153), False),
    ("guard rail", 14, 255, (180, 165, 180), False),
    ("bridge", 15, 255, (150, 100, 100), False),
    ("tunnel", 16, 255, (150, 120, 90), False),
    ("pole", 17, 5, (153, 153, 153), False),
    ("polegroup", 18, 255, (153, 153, 153), False),
    ("traffic light", 19, 6, (250, 170, 30), False),
    ("traffic sign", 20, 7, (220, 220, 0), False),
    ("vegetation", 21, 8, (107, 142, 35), False),
    ("terrain", 22, 9, (152, 251, 152), False),
    ("sky", 23, 10, (70, 130, 180), False),
    ("person", 24, 11, (220, 20, 60), True),
    ("rider", 25, 12, (255, 0, 0), True),
    ("car", 26, 13, (0, 0, 142), True),
    ("truck", 27, 14, (0, 0, 70), True),
    ("bus", 28, 15, (0, 60, 100), True),
    ("caravan", 29, 255, (0, 0, 90), True),
    ("trailer", 30, 255, (0, 0, 110), True),
    ("train", 31, 16, (0, 80, 100), True),
    ("motorcycle", 32, 17, (0, 0, 230), True),
    ("bicycle", 33, 18, (119, 11, 32), True),
]


def _cityscapes19() -> LabelSet:
    train = sorted((t, n, c, inst) for n, _i, t, c, inst in _CITYSCAPES if t != 255)
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for _n, i, t, _c, _inst in _CITYSCAPES:
        lut[i] = t
    return LabelSet(
        name="cityscapes",
        names=tuple(n for _t, n, _c, _i in train),
        palette=np.array([c for _t, _n, c, _i in train], dtype=np.uint8),
        thing_ids=frozenset(t for t, _n, _c, inst in train if inst),
        label_id_to_train_id=lut,
    )


def _cityscapes34() -> LabelSet:
    return LabelSet(
        name="cityscapes-34",
        names=tuple(n for n, *_ in _CITYSCAPES),
        palette=np.array([c for _n, _i, _t, c, _inst in _CITYSCAPES], dtype=np.uint8),
        thing_ids=frozenset(i for _n, i, t, _c, inst in _CITYSCAPES if inst and t != 255),
        ignore_label=0,
    )


_LABEL_SETS = {"cityscapes": _cityscapes19, "cityscapes-34": _cityscapes34}
_ALIASES = {"cityscapes-19": "cityscapes", "cityscapes19": "cityscapes"}
_CACHE: dict[str, LabelSet] = {}


def list_label_sets() -> list[str]:
    """Names accepted by :func:`get_label_set`."""
    return sorted(_LABEL_SETS)


def get_label_set(name: str) -> LabelSet:
    """Return the label set called ``name`` (e.g. ``"cityscapes"``).

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    key = _ALIASES.get(name, name)
    if key not in _LABEL_SETS:
        raise ValueError(f"unknown label set {name!r}; choose one of: {', '.join(list_label_sets())}")
    if key not in _CACHE:
        _CACHE[key] = _LABEL_SETS[key]()
    return _CACHE[key]

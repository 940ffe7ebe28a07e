"""Label sets: class names, palettes, thing/stuff split and id mappings.

The default is ``cityscapes`` (19 train ids, ignore label 255). ``cityscapes-34`` keeps the raw
Cityscapes label ids. Ground truth stored as Cityscapes *labelIds* is mapped to train ids with
:meth:`LabelSet.map_label_ids`. ``coco-panoptic`` has the 133 COCO panoptic categories (80 things
then 53 stuff, contiguous train ids; raw COCO category ids map through ``map_label_ids``) and
``ade20k`` the 150 SceneParsing classes (raw 0 = "other" is ignored, raw k -> train id k-1).
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


# COCO panoptic (panopticapi panoptic_coco_categories.json): (category id, name, color, isthing).
# Train ids are the list positions: 0..79 things, 80..132 stuff (Detectron2's contiguous ids).
_COCO_PANOPTIC = [
    (1, "person", (220, 20, 60), True),
    (2, "bicycle", (119, 11, 32), True),
    (3, "car", (0, 0, 142), True),
    (4, "motorcycle", (0, 0, 230), True),
    (5, "airplane", (106, 0, 228), True),
    (6, "bus", (0, 60, 100), True),
    (7, "train", (0, 80, 100), True),
    (8, "truck", (0, 0, 70), True),
    (9, "boat", (0, 0, 192), True),
    (10, "traffic light", (250, 170, 30), True),
    (11, "fire hydrant", (100, 170, 30), True),
    (13, "stop sign", (220, 220, 0), True),
    (14, "parking meter", (175, 116, 175), True),
    (15, "bench", (250, 0, 30), True),
    (16, "bird", (165, 42, 42), True),
    (17, "cat", (255, 77, 255), True),
    (18, "dog", (0, 226, 252), True),
    (19, "horse", (182, 182, 255), True),
    (20, "sheep", (0, 82, 0), True),
    (21, "cow", (120, 166, 157), True),
    (22, "elephant", (110, 76, 0), True),
    (23, "bear", (174, 57, 255), True),
    (24, "zebra", (199, 100, 0), True),
    (25, "giraffe", (72, 0, 118), True),
    (27, "backpack", (255, 179, 240), True),
    (28, "umbrella", (0, 125, 92), True),
    (31, "handbag", (209, 0, 151), True),
    (32, "tie", (188, 208, 182), True),
    (33, "suitcase", (0, 220, 176), True),
    (34, "frisbee", (255, 99, 164), True),
    (35, "skis", (92, 0, 73), True),
    (36, "snowboard", (133, 129, 255), True),
    (37, "sports ball", (78, 180, 255), True),
    (38, "kite", (0, 228, 0), True),
    (39, "baseball bat", (174, 255, 243), True),
    (40, "baseball glove", (45, 89, 255), True),
    (41, "skateboard", (134, 134, 103), True),
    (42, "surfboard", (145, 148, 174), True),
    (43, "tennis racket", (255, 208, 186), True),
    (44, "bottle", (197, 226, 255), True),
    (46, "wine glass", (171, 134, 1), True),
    (47, "cup", (109, 63, 54), True),
    (48, "fork", (207, 138, 255), True),
    (49, "knife", (151, 0, 95), True),
    (50, "spoon", (9, 80, 61), True),
    (51, "bowl", (84, 105, 51), True),
    (52, "banana", (74, 65, 105), True),
    (53, "apple", (166, 196, 102), True),
    (54, "sandwich", (208, 195, 210), True),
    (55, "orange", (255, 109, 65), True),
    (56, "broccoli", (0, 143, 149), True),
    (57, "carrot", (179, 0, 194), True),
    (58, "hot dog", (209, 99, 106), True),
    (59, "pizza", (5, 121, 0), True),
    (60, "donut", (227, 255, 205), True),
    (61, "cake", (147, 186, 208), True),
    (62, "chair", (153, 69, 1), True),
    (63, "couch", (3, 95, 161), True),
    (64, "potted plant", (163, 255, 0), True),
    (65, "bed", (119, 0, 170), True),
    (67, "dining table", (0, 182, 199), True),
    (70, "toilet", (0, 165, 120), True),
    (72, "tv", (183, 130, 88), True),
    (73, "laptop", (95, 32, 0), True),
    (74, "mouse", (130, 114, 135), True),
    (75, "remote", (110, 129, 133), True),
    (76, "keyboard", (166, 74, 118), True),
    (77, "cell phone", (219, 142, 185), True),
    (78, "microwave", (79, 210, 114), True),
    (79, "oven", (178, 90, 62), True),
    (80, "toaster", (65, 70, 15), True),
    (81, "sink", (127, 167, 115), True),
    (82, "refrigerator", (59, 105, 106), True),
    (84, "book", (142, 108, 45), True),
    (85, "clock", (196, 172, 0), True),
    (86, "vase", (95, 54, 80), True),
    (87, "scissors", (128, 76, 255), True),
    (88, "teddy bear", (201, 57, 1), True),
    (89, "hair drier", (246, 0, 122), True),
    (90, "toothbrush", (191, 162, 208), True),
    (92, "banner", (255, 255, 128), False),
    (93, "blanket", (147, 211, 203), False),
    (95, "bridge", (150, 100, 100), False),
    (100, "cardboard", (168, 171, 172), False),
    (107, "counter", (146, 112, 198), False),
    (109, "curtain", (210, 170, 100), False),
    (112, "door-stuff", (92, 136, 89), False),
    (118, "floor-wood", (218, 88, 184), False),
    (119, "flower", (241, 129, 0), False),
    (122, "fruit", (217, 17, 255), False),
    (125, "gravel", (124, 74, 181), False),
    (128, "house", (70, 70, 70), False),
    (130, "light", (255, 228, 255), False),
    (133, "mirror-stuff", (154, 208, 0), False),
    (138, "net", (193, 0, 92), False),
    (141, "pillow", (76, 91, 113), False),
    (144, "platform", (255, 180, 195), False),
    (145, "playingfield", (106, 154, 176), False),
    (147, "railroad", (230, 150, 140), False),
    (148, "river", (60, 143, 255), False),
    (149, "road", (128, 64, 128), False),
    (151, "roof", (92, 82, 55), False),
    (154, "sand", (254, 212, 124), False),
    (155, "sea", (73, 77, 174), False),
    (156, "shelf", (255, 160, 98), False),
    (159, "snow", (255, 255, 255), False),
    (161, "stairs", (104, 84, 109), False),
    (166, "tent", (169, 164, 131), False),
    (168, "towel", (225, 199, 255), False),
    (171, "wall-brick", (137, 54, 74), False),
    (175, "wall-stone", (135, 158, 223), False),
    (176, "wall-tile", (7, 246, 231), False),
    (177, "wall-wood", (107, 255, 200), False),
    (178, "water-other", (58, 41, 149), False),
    (180, "window-blind", (183, 121, 142), False),
    (181, "window-other", (255, 73, 97), False),
    (184, "tree-merged", (107, 142, 35), False),
    (185, "fence-merged", (190, 153, 153), False),
    (186, "ceiling-merged", (146, 139, 141), False),
    (187, "sky-other-merged", (70, 130, 180), False),
    (188, "cabinet-merged", (134, 199, 156), False),
    (189, "table-merged", (209, 226, 140), False),
    (190, "floor-other-merged", (96, 36, 108), False),
    (191, "pavement-merged", (96, 96, 96), False),
    (192, "mountain-merged", (64, 170, 64), False),
    (193, "grass-merged", (152, 251, 152), False),
    (194, "dirt-merged", (208, 229, 228), False),
    (195, "paper-merged", (206, 186, 171), False),
    (196, "food-other-merged", (152, 161, 64), False),
    (197, "building-other-merged", (116, 112, 0), False),
    (198, "rock-merged", (0, 114, 143), False),
    (199, "wall-other-merged", (102, 102, 156), False),
    (200, "rug-merged", (250, 141, 255), False),
]

# ADE20K SceneParsing 150 classes: (name, color, isthing). Names are the first names of
# objectInfo150, colors the standard 150-class palette, isthing the ADE20K panoptic split
# (100 things, 50 stuff). Raw label k (1..150) is train id k-1; raw 0 ("other") is ignored.
_ADE20K = [
    ("wall", (120, 120, 120), False),
    ("building", (180, 120, 120), False),
    ("sky", (6, 230, 230), False),
    ("floor", (80, 50, 50), False),
    ("tree", (4, 200, 3), False),
    ("ceiling", (120, 120, 80), False),
    ("road", (140, 140, 140), False),
    ("bed", (204, 5, 255), True),
    ("windowpane", (230, 230, 230), True),
    ("grass", (4, 250, 7), False),
    ("cabinet", (224, 5, 255), True),
    ("sidewalk", (235, 255, 7), False),
    ("person", (150, 5, 61), True),
    ("earth", (120, 120, 70), False),
    ("door", (8, 255, 51), True),
    ("table", (255, 6, 82), True),
    ("mountain", (143, 255, 140), False),
    ("plant", (204, 255, 4), False),
    ("curtain", (255, 51, 7), True),
    ("chair", (204, 70, 3), True),
    ("car", (0, 102, 200), True),
    ("water", (61, 230, 250), False),
    ("painting", (255, 6, 51), True),
    ("sofa", (11, 102, 255), True),
    ("shelf", (255, 7, 71), True),
    ("house", (255, 9, 224), False),
    ("sea", (9, 7, 230), False),
    ("mirror", (220, 220, 220), True),
    ("rug", (255, 9, 92), False),
    ("field", (112, 9, 255), False),
    ("armchair", (8, 255, 214), True),
    ("seat", (7, 255, 224), True),
    ("fence", (255, 184, 6), True),
    ("desk", (10, 255, 71), True),
    ("rock", (255, 41, 10), False),
    ("wardrobe", (7, 255, 255), True),
    ("lamp", (224, 255, 8), True),
    ("bathtub", (102, 8, 255), True),
    ("railing", (255, 61, 6), True),
    ("cushion", (255, 194, 7), True),
    ("base", (255, 122, 8), False),
    ("box", (0, 255, 20), True),
    ("column", (255, 8, 41), True),
    ("signboard", (255, 5, 153), True),
    ("chest of drawers", (6, 51, 255), True),
    ("counter", (235, 12, 255), True),
    ("sand", (160, 150, 20), False),
    ("sink", (0, 163, 255), True),
    ("skyscraper", (140, 140, 140), False),
    ("fireplace", (250, 10, 15), True),
    ("refrigerator", (20, 255, 0), True),
    ("grandstand", (31, 255, 0), False),
    ("path", (255, 31, 0), False),
    ("stairs", (255, 224, 0), True),
    ("runway", (153, 255, 0), False),
    ("case", (0, 0, 255), True),
    ("pool table", (255, 71, 0), True),
    ("pillow", (0, 235, 255), True),
    ("screen door", (0, 173, 255), True),
    ("stairway", (31, 0, 255), False),
    ("river", (11, 200, 200), False),
    ("bridge", (255, 82, 0), False),
    ("bookcase", (0, 255, 245), True),
    ("blind", (0, 61, 255), False),
    ("coffee table", (0, 255, 112), True),
    ("toilet", (0, 255, 133), True),
    ("flower", (255, 0, 0), True),
    ("book", (255, 163, 0), True),
    ("hill", (255, 102, 0), False),
    ("bench", (194, 255, 0), True),
    ("countertop", (0, 143, 255), True),
    ("stove", (51, 255, 0), True),
    ("palm", (0, 82, 255), True),
    ("kitchen island", (0, 255, 41), True),
    ("computer", (0, 255, 173), True),
    ("swivel chair", (10, 0, 255), True),
    ("boat", (173, 255, 0), True),
    ("bar", (0, 255, 153), False),
    ("arcade machine", (255, 92, 0), True),
    ("hovel", (255, 0, 255), False),
    ("bus", (255, 0, 245), True),
    ("towel", (255, 0, 102), True),
    ("light", (255, 173, 0), True),
    ("truck", (255, 0, 20), True),
    ("tower", (255, 184, 184), False),
    ("chandelier", (0, 31, 255), True),
    ("awning", (0, 255, 61), True),
    ("streetlight", (0, 71, 255), True),
    ("booth", (255, 0, 204), True),
    ("television receiver", (0, 255, 194), True),
    ("airplane", (0, 255, 82), True),
    ("dirt track", (0, 10, 255), False),
    ("apparel", (0, 112, 255), True),
    ("pole", (51, 0, 255), True),
    ("land", (0, 194, 255), False),
    ("bannister", (0, 122, 255), True),
    ("escalator", (0, 255, 163), False),
    ("ottoman", (255, 153, 0), True),
    ("bottle", (0, 255, 10), True),
    ("buffet", (255, 112, 0), False),
    ("poster", (143, 255, 0), False),
    ("stage", (82, 0, 255), False),
    ("van", (163, 255, 0), True),
    ("ship", (255, 235, 0), True),
    ("fountain", (8, 184, 170), True),
    ("conveyer belt", (133, 0, 255), False),
    ("canopy", (0, 255, 92), False),
    ("washer", (184, 0, 255), True),
    ("plaything", (255, 0, 31), True),
    ("swimming pool", (0, 184, 255), False),
    ("stool", (0, 214, 255), True),
    ("barrel", (255, 0, 112), True),
    ("basket", (92, 255, 0), True),
    ("waterfall", (0, 224, 255), False),
    ("tent", (112, 224, 255), False),
    ("bag", (70, 184, 160), True),
    ("minibike", (163, 0, 255), True),
    ("cradle", (153, 0, 255), False),
    ("oven", (71, 255, 0), True),
    ("ball", (255, 0, 163), True),
    ("food", (255, 204, 0), True),
    ("step", (255, 0, 143), True),
    ("tank", (0, 255, 235), False),
    ("trade name", (133, 255, 0), True),
    ("microwave", (255, 0, 235), True),
    ("pot", (245, 0, 255), True),
    ("animal", (255, 0, 122), True),
    ("bicycle", (255, 245, 0), True),
    ("lake", (10, 190, 212), False),
    ("dishwasher", (214, 255, 0), True),
    ("screen", (0, 204, 255), True),
    ("blanket", (20, 0, 255), False),
    ("sculpture", (255, 255, 0), True),
    ("hood", (0, 153, 255), True),
    ("sconce", (0, 41, 255), True),
    ("vase", (0, 255, 204), True),
    ("traffic light", (41, 0, 255), True),
    ("tray", (41, 255, 0), True),
    ("ashcan", (173, 0, 255), True),
    ("fan", (0, 245, 255), True),
    ("pier", (71, 0, 255), False),
    ("crt screen", (122, 0, 255), False),
    ("plate", (0, 255, 184), True),
    ("monitor", (0, 92, 255), True),
    ("bulletin board", (184, 255, 0), True),
    ("shower", (0, 133, 255), False),
    ("radiator", (255, 214, 0), True),
    ("glass", (25, 194, 194), True),
    ("clock", (102, 255, 0), True),
    ("flag", (92, 0, 255), True),
]


def _coco_panoptic() -> LabelSet:
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for train_id, (cat_id, _n, _c, _thing) in enumerate(_COCO_PANOPTIC):
        lut[cat_id] = train_id
    return LabelSet(
        name="coco-panoptic",
        names=tuple(n for _i, n, _c, _t in _COCO_PANOPTIC),
        palette=np.array([c for _i, _n, c, _t in _COCO_PANOPTIC], dtype=np.uint8),
        thing_ids=frozenset(t for t, (_i, _n, _c, thing) in enumerate(_COCO_PANOPTIC) if thing),
        label_id_to_train_id=lut,
    )


def _ade20k() -> LabelSet:
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    lut[1 : len(_ADE20K) + 1] = np.arange(len(_ADE20K), dtype=np.uint8)  # reduce_zero_label
    return LabelSet(
        name="ade20k",
        names=tuple(n for n, _c, _t in _ADE20K),
        palette=np.array([c for _n, c, _t in _ADE20K], dtype=np.uint8),
        thing_ids=frozenset(t for t, (_n, _c, thing) in enumerate(_ADE20K) if thing),
        label_id_to_train_id=lut,
    )


def train_id_to_label_id(label_set: LabelSet) -> np.ndarray:
    """Raw dataset id for each train id, the inverse of ``label_set.label_id_to_train_id``.

    E.g. Cityscapes train id 0 (road) -> labelId 7, COCO-panoptic train id 80 (banner) ->
    category id 92, ADE20K train id k -> k + 1. Label sets without a mapping return
    ``arange(num_classes)``. Where several raw ids map to one train id the smallest is used.

    Returns:
        (num_classes,) int64 array.
    """
    lut = label_set.label_id_to_train_id
    if lut is None:
        return np.arange(label_set.num_classes, dtype=np.int64)
    out = np.full(label_set.num_classes, -1, dtype=np.int64)
    for raw_id in range(len(lut) - 1, -1, -1):  # descending so the smallest raw id wins
        t = int(lut[raw_id])
        if t < label_set.num_classes:
            out[t] = raw_id
    return out


_LABEL_SETS = {
    "cityscapes": _cityscapes19,
    "cityscapes-34": _cityscapes34,
    "coco-panoptic": _coco_panoptic,
    "ade20k": _ade20k,
}
_ALIASES = {
    "cityscapes-19": "cityscapes",
    "cityscapes19": "cityscapes",
    "coco": "coco-panoptic",
    "coco_panoptic": "coco-panoptic",
    "ade20k-150": "ade20k",
    "ade": "ade20k",
}
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

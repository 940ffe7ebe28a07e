"""Panoptic-DeepLab post-processing parameters: :class:`PanopticConfig` (validated, torch-free).

Defaults are the paper's Cityscapes setting (Cheng et al., "Panoptic-DeepLab", CVPR 2020); the
algorithm that uses them is in :mod:`.postprocess`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional

from ..results import LABEL_DIVISOR

_INT32_MAX = 2**31 - 1


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class PanopticConfig:
    """Panoptic-DeepLab post-processing parameters (defaults: the paper's Cityscapes setting).

    Attributes:
        center_threshold: center heatmap values must be strictly above this, in [0, 1].
        nms_kernel: odd max-pool window (pixels of the grid grouping runs on), >= 1.
        top_k: at most this many centers (the reference's rule, see :func:`find_centers`), >= 1;
            above ``label_divisor - 1`` only an image with that many instances of one class fails.
        stuff_area: minimum stuff segment area in pixels *at* ``stuff_area_reference_hw``;
            at an H x W output the threshold is ``stuff_area * H * W / (ref_h * ref_w)``.
        class_split_area: 0 (the paper): an instance's pixels all take its majority class. > 0: a
            fragment of an instance labelled with another thing class becomes its own segment
            when it covers at least this many pixels at ``stuff_area_reference_hw`` (scaled
            like ``stuff_area``); smaller fragments take the majority class.
        class_aware_grouping: False (the paper): every thing pixel joins the nearest center. True:
            it joins the nearest center whose instance has the pixel's semantic class, where
            there is one (see the module docstring).
        stuff_area_reference_hw: (height, width) ``stuff_area`` and ``class_split_area`` refer to.
        label_divisor: panoptic id = class * label_divisor + instance.
        void_label: id of void pixels; 255000 by default, not 0 (0 is road stuff); -1 (Detectron2) or
            any other value that is no real panoptic id.
    """

    center_threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int = 200
    stuff_area: int = 2048
    class_split_area: int = 0
    class_aware_grouping: bool = False
    stuff_area_reference_hw: tuple[int, int] = (1024, 2048)
    label_divisor: int = LABEL_DIVISOR
    void_label: int = 255 * LABEL_DIVISOR

    def validate(self) -> "PanopticConfig":
        """Check every field; return ``self`` so calls chain.

        Raises:
            ValueError: naming the bad field, its value and the allowed range.
        """
        t = self.center_threshold
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"PanopticConfig.center_threshold={t!r} must be a number in [0, 1]")
        k = self.nms_kernel
        if not _is_int(k) or k < 1 or k % 2 == 0:
            raise ValueError(
                f"PanopticConfig.nms_kernel={k!r} must be an odd integer >= 1 (e.g. 7), "
                "so the max-pool window is centred on its pixel"
            )
        d = self.label_divisor
        if not _is_int(d) or d < 2:
            raise ValueError(f"PanopticConfig.label_divisor={d!r} must be an integer >= 2 (e.g. 1000)")
        if not _is_int(self.top_k) or self.top_k < 1:
            raise ValueError(f"PanopticConfig.top_k={self.top_k!r} must be an integer >= 1 (e.g. 200)")
        a = self.stuff_area
        if not isinstance(a, (int, float)) or isinstance(a, bool) or a < 0:
            raise ValueError(f"PanopticConfig.stuff_area={a!r} must be a number >= 0 (pixels; 0 keeps all stuff)")
        a = self.class_split_area
        if not isinstance(a, (int, float)) or isinstance(a, bool) or a < 0:
            raise ValueError(
                f"PanopticConfig.class_split_area={a!r} must be a number >= 0 (pixels; 0 = off, the paper's "
                "majority vote)"
            )
        if not isinstance(self.class_aware_grouping, bool):
            raise ValueError(
                f"PanopticConfig.class_aware_grouping={self.class_aware_grouping!r} must be True or False "
                "(False = the paper's class-agnostic grouping)"
            )
        ref = self.stuff_area_reference_hw
        if (
            not isinstance(ref, (tuple, list))
            or len(ref) != 2
            or not all(_is_int(v) and v >= 1 for v in ref)
        ):
            raise ValueError(
                f"PanopticConfig.stuff_area_reference_hw={ref!r} must be (height, width), two integers >= 1, "
                "e.g. (1024, 2048)"
            )
        v = self.void_label
        if not _is_int(v) or not -_INT32_MAX - 1 <= v <= _INT32_MAX:
            raise ValueError(
                f"PanopticConfig.void_label={v!r} must be an int32 integer "
                f"(default 255 * label_divisor = {255 * d}; Detectron2 uses -1)"
            )
        return self

    def with_overrides(self, overrides: Optional[Mapping[str, Any]], *, source: str = "overrides") -> "PanopticConfig":
        """A validated copy with the ``overrides`` fields replaced (``None`` / empty: a validated copy).

        Args:
            overrides: field name -> value, e.g. ``{"center_threshold": 0.2}``.
            source: where the overrides come from, for error messages (e.g. a checkpoint path).

        Raises:
            ValueError: an unknown field (lists the known ones) or a bad value (names the source).
        """
        items = dict(overrides or {})
        known = {f.name for f in fields(self)}
        unknown = sorted(set(items) - known)
        if unknown:
            raise ValueError(f"{source}: unknown panoptic post-processing field(s) {unknown}; known: {sorted(known)}")
        if isinstance(items.get("stuff_area_reference_hw"), list):
            items["stuff_area_reference_hw"] = tuple(items["stuff_area_reference_hw"])
        try:
            return replace(self, **items).validate()
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    def tunables(self) -> dict[str, Any]:
        """The fields a deployment tunes (:data:`TUNABLE_FIELDS`) as a plain dict."""
        return {name: getattr(self, name) for name in TUNABLE_FIELDS}

    def _scaled(self, area: float, hw: tuple[int, int]) -> float:
        ref_h, ref_w = self.stuff_area_reference_hw
        return float(area) * hw[0] * hw[1] / (ref_h * ref_w)

    def min_stuff_area(self, hw: tuple[int, int]) -> float:
        """Stuff area threshold in pixels for an output of size ``hw = (H, W)``."""
        return self._scaled(self.stuff_area, hw)

    def min_class_split_area(self, hw: tuple[int, int]) -> float:
        """Class-split fragment threshold in pixels for an output of size ``hw``; 0 when off."""
        return self._scaled(self.class_split_area, hw)


#: PanopticConfig fields that are tuned per model and exposed as node parameters.
TUNABLE_FIELDS: tuple[str, ...] = ("center_threshold", "nms_kernel", "top_k", "stuff_area", "class_split_area",
                                   "class_aware_grouping")


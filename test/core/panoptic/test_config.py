"""Tests for seg_perception.core.panoptic.config (PanopticConfig validation and overrides)."""
from __future__ import annotations

import pytest

from seg_perception.core.panoptic import PanopticConfig


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(center_threshold=1.5), "center_threshold"),
        (dict(center_threshold=-0.1), "center_threshold"),
        (dict(nms_kernel=4), "nms_kernel"),
        (dict(nms_kernel=0), "nms_kernel"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(stuff_area=-1), "stuff_area"),
        (dict(class_split_area=-1), "class_split_area"),
        (dict(class_aware_grouping=1), "class_aware_grouping"),
        (dict(stuff_area_reference_hw=(0, 2048)), "stuff_area_reference_hw"),
        (dict(label_divisor=1), "label_divisor"),
        (dict(void_label=2**31), "void_label"),
    ],
)
def test_config_validate_names_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PanopticConfig(**kwargs).validate()


def test_default_config():
    cfg = PanopticConfig().validate()
    assert (cfg.center_threshold, cfg.nms_kernel, cfg.top_k, cfg.stuff_area) == (0.1, 7, 200, 2048)
    assert cfg.void_label == 255_000 and cfg.label_divisor == 1000
    assert cfg.min_stuff_area((1024, 2048)) == 2048 and cfg.min_stuff_area((512, 1024)) == 512


def test_with_overrides_replaces_validates_and_names_the_source():
    cfg = PanopticConfig().with_overrides({"center_threshold": 0.3, "stuff_area_reference_hw": [512, 1024]})
    assert cfg.center_threshold == 0.3 and cfg.stuff_area_reference_hw == (512, 1024) and cfg.nms_kernel == 7
    assert cfg.tunables() == {"center_threshold": 0.3, "nms_kernel": 7, "top_k": 200, "stuff_area": 2048,
                             "class_split_area": 0, "class_aware_grouping": False}
    assert PanopticConfig().with_overrides(None) == PanopticConfig()
    with pytest.raises(ValueError, match=r"ckpt\.pt: unknown .*'nms'"):
        PanopticConfig().with_overrides({"nms": 3}, source="ckpt.pt")
    with pytest.raises(ValueError, match=r"ckpt\.pt: PanopticConfig\.nms_kernel=4"):
        PanopticConfig().with_overrides({"nms_kernel": 4}, source="ckpt.pt")

"""Registry: names, tasks, unknown names list the valid ones, output_names match forward."""
from __future__ import annotations

import pytest
import torch

from seg_perception.models import get_model, list_models, model_info

MINE = {
    "deeplabv3plus_mobilenetv2": "semantic",
    "deeplabv3plus_resnet50": "semantic",
    "deeplabv3plus_resnet101": "semantic",
    "panoptic_deeplab_mobilenetv2": "panoptic",
    "panoptic_deeplab_resnet50": "panoptic",
    "panoptic_deeplab_resnet101": "panoptic",
    "panoptic_deeplab_resnet52_dc5": "panoptic",
}


def test_names_and_tasks() -> None:
    names = list_models()
    assert names == sorted(names)
    assert set(MINE) <= set(names)
    for name, task in MINE.items():
        info = model_info(name)
        assert info.task == task and info.name == name and info.description
        other = "semantic" if task == "panoptic" else "panoptic"
        assert name in list_models(task) and name not in list_models(other)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        get_model("deeplabv3plus_resnet18")
    msg = str(info.value)
    assert "'deeplabv3plus_resnet18'" in msg
    for name in MINE:
        assert name in msg


@pytest.mark.parametrize("name", ["deeplabv3plus_mobilenetv2", "panoptic_deeplab_mobilenetv2"])
def test_output_names_match_forward_and_task(name: str) -> None:
    net = get_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 33, 31))
    assert tuple(out) == net.output_names
    expected = ("semantic",) if model_info(name).task == "semantic" else ("semantic", "center", "offset")
    assert net.output_names == expected
    assert out["semantic"].shape == (1, 3, 33, 31)


def test_registry_native_heads_flag_is_what_the_built_model_has():
    """The flag the parameters check without building a model agrees with every registered model's
    class (built on the meta device: no weights allocated)."""
    for name in list_models():
        with torch.device("meta"):
            model = get_model(name)
        assert model_info(name).native_heads == callable(getattr(model, "forward_native", None)), name

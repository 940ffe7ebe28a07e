"""Finding and loading weights: missing or empty paths, random weights, tuned post-processing in a checkpoint."""
from __future__ import annotations

import logging

import pytest
import torch

from seg_perception.core.resolution import PipelineError
from seg_perception.core.weights import load_model
from seg_perception.datasets.labels import get_label_set


def test_missing_weights_names_path(tmp_path):
    from seg_perception.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="nope.pt"):
        load_model("deeplabv3plus_mobilenetv2", weights=str(tmp_path / "nope.pt"))


@pytest.mark.parametrize("weights", ["", "   "])
def test_empty_weights_are_refused_not_read_as_random(weights):
    with pytest.raises(PipelineError, match="empty.*'default'.*'none'"):
        load_model("deeplabv3plus_mobilenetv2", weights=weights)


def test_random_weights_warn_loudly(caplog):
    with caplog.at_level(logging.WARNING, logger="seg_perception.core.weights"):
        lm = load_model("deeplabv3plus_mobilenetv2", weights="none", model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    assert "RANDOM" in caplog.text
    assert lm.weights_path is None and lm.label_set.name == "cityscapes"


@pytest.mark.parametrize("tuned,needle", [
    ({"nms_kernel": 4}, "nms_kernel=4"),
    ({"center": 0.2}, "unknown"),
    ([0.2, 7], "expected a dict"),
])
def test_bad_tuned_postprocess_in_a_checkpoint_is_refused_by_name(tuned, needle):
    from seg_perception.core.weights import LoadedModel, panoptic_config_for

    loaded = LoadedModel(torch.nn.Identity(), "panoptic_deeplab_mobilenetv2", "panoptic", get_label_set("cityscapes"),
                         "w.pt", None, None, {"panoptic_postprocess": tuned})
    with pytest.raises(PipelineError, match=needle) as e:
        panoptic_config_for(loaded)
    assert "w.pt: meta.panoptic_postprocess" in str(e.value) and "tune-panoptic --write" in str(e.value)

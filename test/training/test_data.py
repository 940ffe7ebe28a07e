"""Training batches: seeded crops of the resized scenes, small-instance weights in the batch."""
from __future__ import annotations

import math

import pytest
import torch

from seg_perception.training.config import train_seed
from seg_perception.training.data import SceneBatches, crop_window, make_batch
from seg_perception.training.losses import compute_losses
from test.training.tiny_models import TINY_PAN, TINY_SEM, _cfg


def test_crop_is_a_seeded_window_of_the_resized_scene() -> None:
    seeds = [train_seed(0, i) for i in range(3)]
    full = make_batch(seeds, (64, 128), (48, 96), panoptic=True, sigma=2.0)
    crop = make_batch(seeds, (64, 128), (48, 96), panoptic=True, sigma=2.0, crop=(24, 40))
    assert crop["image"].shape == (3, 3, 24, 40) and crop["offset"].shape == (3, 2, 24, 40)
    windows = {crop_window(s, (48, 96), (24, 40)) for s in seeds}
    assert len(windows) > 1, "crop positions must vary with the scene seed"
    for i, s in enumerate(seeds):
        y, x = crop_window(s, (48, 96), (24, 40))
        assert 0 <= y <= 24 and 0 <= x <= 56
        torch.testing.assert_close(crop["image"][i], full["image"][i, :, y:y + 24, x:x + 40])
        assert torch.equal(crop["semantic"][i], full["semantic"][i, y:y + 24, x:x + 40])
        # offsets point to the centre of each instance's visible part, inside the crop
        mask = crop["offset_mask"][i, 0] > 0
        if mask.any():
            ys, xs = torch.nonzero(mask, as_tuple=True)
            cy = ys.float() + crop["offset"][i, 0][mask]
            cx = xs.float() + crop["offset"][i, 1][mask]
            assert cy.min() >= -0.5 and cy.max() <= 23.5 and cx.min() >= -0.5 and cx.max() <= 39.5


def test_crop_larger_than_resolution_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="crop"):
        _cfg(TINY_SEM, tmp_path, crop=(64, 64)).validate()
    cfg = _cfg(TINY_SEM, tmp_path, crop=(16, 32)).validate()
    assert SceneBatches(cfg, False, frozenset()).batch(0)["image"].shape == (2, 3, 16, 32)


def test_batches_carry_small_instance_weights_scaled_to_the_network(tmp_path) -> None:
    cfg = _cfg(TINY_PAN, tmp_path, resolution=(64, 128), scene_hw=(64, 128), small_instance_weight=3.0)
    area, weight = cfg.small_instance
    assert area == pytest.approx(4096 * 64 * 128 / (1024 * 2048)) and weight == 3.0
    assert _cfg(TINY_PAN, tmp_path).small_instance is None  # weight 1 = off: no extra tensor
    assert "semantic_weight" not in SceneBatches(_cfg(TINY_PAN, tmp_path), True, frozenset(range(11, 19))).batch(0)
    batch = SceneBatches(cfg, True, frozenset(range(11, 19))).batch(0)
    w = batch["semantic_weight"]
    assert w.shape == batch["semantic"].shape and set(w.unique().tolist()) <= {1.0, 3.0}
    assert (w == 3.0).any(), "synthetic scenes always have some small things"
    assert (batch["offset_mask"][:, 0][w == 3.0] == 1).all(), "only thing pixels are weighted"
    loss = compute_losses({"semantic": torch.zeros(2, 19, 64, 128), "center": batch["center"],
                           "offset": batch["offset"]}, batch, cfg)
    assert loss["semantic"].item() > math.log(19) * 1.0001  # uniform logits: weights lift the mean

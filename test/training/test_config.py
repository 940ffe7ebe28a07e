"""TrainConfig validation and the disjoint training / held-out scene seeds."""
from __future__ import annotations

import pytest

from seg_perception.training.config import EVAL_SEED_BASE, train_seed
from test.training.tiny_models import TINY_SEM, _cfg


def test_training_and_eval_seeds_are_disjoint() -> None:
    assert train_seed(0, 0) > EVAL_SEED_BASE + 1_000_000
    assert train_seed(1, 0) > train_seed(0, 9_999_999)
    with pytest.raises(ValueError, match="sample index"):
        train_seed(0, 10_000_000)


@pytest.mark.parametrize("field,value,match", [
    ("steps", 0, "steps"), ("lr", 0.0, "lr"), ("hard_pixel_fraction", 1.5, "hard_pixel_fraction"),
    ("resolution", (8, 8), "resolution"), ("device", "tpu", "device"),
    ("warm_lr_scale", 0.0, "warm_lr_scale must be in"), ("warm_lr_scale", 1.5, "warm_lr_scale must be in"),
    ("warm_lr_scale", 0.5, "needs init_from"), ("small_instance_weight", 0.0, "small_instance_weight"),
    ("small_instance_area", -1.0, "small_instance_area"),
])
def test_config_validation_names_the_field(field, value, match, tmp_path) -> None:
    cfg = _cfg(TINY_SEM, tmp_path, **{field: value})
    with pytest.raises(ValueError, match=match):
        cfg.validate()

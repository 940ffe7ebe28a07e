"""Weight averaging of checkpoints (``seg_perception.training.soup``, ``seg-perception average-weights``)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from seg_perception.training.soup import average_checkpoints, average_state_dicts
from seg_perception.models import registry
from seg_perception.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from seg_perception.hashing import sha256_file


TINY = "_test_avg_tiny"


class _Tiny(nn.Module):
    """Conv + BN + classifier; ``semantic`` logits (N, 19, H, W)."""

    output_names = ("semantic",)

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Conv2d(width, 19, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"semantic": F.interpolate(self.head(self.body(x)), size=x.shape[-2:], mode="bilinear",
                                          align_corners=False)}


if TINY not in registry._REGISTRY:
    registry.register_model(TINY, task="semantic", description="test stand-in")(lambda *, width=8: _Tiny(width))


def _checkpoint(path, seed: int, width: int = 8, **meta):
    torch.manual_seed(seed)
    net = _Tiny(width)
    with torch.no_grad():  # BN statistics that differ between the runs
        net.body[1].running_mean.uniform_(-1, 1)
        net.body[1].running_var.uniform_(0.5, 2)
        net.body[1].num_batches_tracked.fill_(100 * seed)
    save_checkpoint(path, net, model_name=TINY, model_kwargs={"width": width}, label_set="cityscapes",
                    extra={"resolution": "32x64", "seed": seed, "steps": 10 * seed, "train_wall_time_s": 1.0 * seed,
                           **meta}, half=False)
    return net.state_dict()


def test_average_state_dicts_means_floats_and_keeps_the_largest_counter() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    c = {"w": torch.tensor([2.0, 1.0]), "n": torch.tensor(5)}
    out = average_state_dicts([a, b, c])
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 3.0]))
    assert int(out["n"]) == 7 and out["n"].dtype == a["n"].dtype


def test_average_state_dicts_keeps_half_dtype_and_averages_in_float32() -> None:
    a = {"w": torch.tensor([60000.0], dtype=torch.float16)}
    b = {"w": torch.tensor([60000.0], dtype=torch.float16)}
    out = average_state_dicts([a, b])  # a float16 sum would overflow to inf
    assert out["w"].dtype == torch.float16 and float(out["w"]) == 60000.0


@pytest.mark.parametrize("dicts, match", [
    ([{"w": torch.zeros(2)}], "at least 2"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}], "'w'"),
    ([{"w": torch.zeros(2)}, {"v": torch.zeros(2)}], "'w'"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(2), "v": torch.zeros(1)}], "different keys"),
])
def test_average_state_dicts_rejects_mismatches(dicts, match) -> None:
    with pytest.raises(ValueError, match=match):
        average_state_dicts(dicts)


def test_average_checkpoints_writes_the_mean_model_and_records_its_sources(tmp_path) -> None:
    sd_a = _checkpoint(tmp_path / "a.pt", 1, panoptic_postprocess={"nms_kernel": 11})
    sd_b = _checkpoint(tmp_path / "b.pt", 2, held_out={"miou": 0.5, "per_class_iou": {}})
    result = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "soup.pt", command="cmd")
    assert result.model_name == TINY and result.path == tmp_path / "soup.pt"
    soup = load_checkpoint(tmp_path / "soup.pt")
    got = soup.model.state_dict()
    for key, value in sd_a.items():
        if value.is_floating_point():
            torch.testing.assert_close(got[key], (value + sd_b[key]) / 2)
        else:
            assert int(got[key]) == max(int(value), int(sd_b[key]))
    meta = read_checkpoint_meta(tmp_path / "soup.pt")
    assert [s["seed"] for s in meta["averaged_from"]] == [1, 2]
    assert meta["averaged_from"][1]["held_out"] == {"miou": 0.5}
    assert "held_out" not in meta  # the sources' scores do not describe the average
    assert meta["panoptic_postprocess"] == {"nms_kernel": 11} and meta["resolution"] == "32x64"
    assert meta["total_steps"] == 30 and meta["command"] == "cmd"
    assert meta["seed"] == [1, 2] and meta["steps"] == 30 and meta["train_wall_time_s"] == 3.0


def test_average_checkpoints_counts_a_shared_start_once(tmp_path) -> None:
    start = {"sha256": "abc", "total_steps": 1000, "total_train_wall_time_s": 500.0}
    _checkpoint(tmp_path / "a.pt", 1, init_from=start)
    _checkpoint(tmp_path / "b.pt", 2, init_from=start)
    average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "soup.pt")
    meta = read_checkpoint_meta(tmp_path / "soup.pt")
    assert meta["total_steps"] == 1000 + 10 + 20
    assert meta["total_train_wall_time_s"] == 500.0 + 1.0 + 2.0
    assert meta["init_from"]["sha256"] == "abc"


def _continued_from(path, **prior) -> dict:
    """An ``init_from`` record the way training writes it: the earlier file's hash and totals."""
    meta = read_checkpoint_meta(path)
    return {"path": path.name, "sha256": sha256_file(path), "total_steps": meta["total_steps"],
            "total_train_wall_time_s": meta["total_train_wall_time_s"], **prior}


def test_average_checkpoints_across_stages_counts_the_earlier_stage_once(tmp_path) -> None:
    start = {"sha256": "abc", "total_steps": 1000, "total_train_wall_time_s": 500.0}
    _checkpoint(tmp_path / "a.pt", 1, init_from=start, total_steps=1010, total_train_wall_time_s=501.0)
    after_a = _continued_from(tmp_path / "a.pt", init_from=start)
    # b continued from a; c continued from b (a's hash is two links up c's chain)
    _checkpoint(tmp_path / "b.pt", 2, init_from=after_a, total_steps=1030, total_train_wall_time_s=503.0)
    after_b = _continued_from(tmp_path / "b.pt", init_from=after_a)
    _checkpoint(tmp_path / "c.pt", 3, init_from=after_b, total_steps=1060, total_train_wall_time_s=506.0)

    average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt", tmp_path / "b.pt"], tmp_path / "swa.pt")
    meta = read_checkpoint_meta(tmp_path / "swa.pt")
    assert meta["total_steps"] == 1060 and meta["total_train_wall_time_s"] == 506.0  # c's history holds a and b
    assert meta["steps"] == 10 + 30 + 20  # what the averaged stages themselves trained
    assert meta["init_from"]["sha256"] == sha256_file(tmp_path / "b.pt")  # the latest stage's start

    # two later stages from a (different seeds) plus a itself: a's history once, then both stages
    _checkpoint(tmp_path / "d.pt", 4, init_from=after_a, total_steps=1050, total_train_wall_time_s=505.0)
    average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "d.pt"], tmp_path / "mix.pt")
    meta = read_checkpoint_meta(tmp_path / "mix.pt")
    assert meta["total_steps"] == 1010 + 20 + 40
    assert meta["total_train_wall_time_s"] == 501.0 + 2.0 + 4.0


def test_average_checkpoints_rejects_one_checkpoint_given_twice(tmp_path) -> None:
    import shutil

    _checkpoint(tmp_path / "a.pt", 1)
    _checkpoint(tmp_path / "b.pt", 2)
    shutil.copy(tmp_path / "a.pt", tmp_path / "copy_of_a.pt")
    with pytest.raises(ValueError, match="copy_of_a.pt.*same checkpoint"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "copy_of_a.pt"], tmp_path / "s.pt")
    assert not (tmp_path / "s.pt").exists()


def test_average_checkpoints_rejects_other_kwargs_out_among_inputs_and_one_input(tmp_path) -> None:
    _checkpoint(tmp_path / "a.pt", 1)
    _checkpoint(tmp_path / "wide.pt", 2, width=16)
    with pytest.raises(ValueError, match="model kwargs"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "wide.pt"], tmp_path / "soup.pt")
    with pytest.raises(ValueError, match="one of the inputs"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "wide.pt"], tmp_path / "a.pt")
    with pytest.raises(ValueError, match="at least 2"):
        average_checkpoints([tmp_path / "a.pt"], tmp_path / "soup.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "nope.pt"], tmp_path / "soup.pt")
    assert not (tmp_path / "soup.pt").exists()


def test_cli_averages_and_evaluates(tmp_path, capsys) -> None:
    from seg_perception.cli.main import main

    _checkpoint(tmp_path / "a.pt", 1)
    _checkpoint(tmp_path / "b.pt", 2)
    rc = main(["average-weights", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "s.pt"),
               "--eval-scenes", "1", "--scene-resolution", "64x128"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "mean of 2 checkpoints" in out and "held-out (1 scenes): miou" in out
    held = read_checkpoint_meta(tmp_path / "s.pt")["held_out"]
    assert held["scenes"] == 1 and 0.0 <= held["miou"] <= 1.0


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys) -> None:
    from seg_perception.cli.main import main

    _checkpoint(tmp_path / "a.pt", 1)
    rc = main(["average-weights", str(tmp_path / "a.pt"), str(tmp_path / "missing.pt"), "--out", str(tmp_path / "s.pt")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "average-weights: error:" in err and "missing.pt" in err
    assert main(["average-weights", str(tmp_path / "a.pt"), str(tmp_path / "a.pt"), "--out", str(tmp_path / "s.pt"),
                 "--eval-scenes", "-1"]) == 2

"""Training loop on synthetic scenes, exercised with tiny stand-in models (seconds, CPU)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from seg_perception.models import registry
from seg_perception.models.checkpoint import load_checkpoint
from seg_perception.training.config import TrainConfig, train_seed
from seg_perception.training.data import make_batch
from seg_perception.training.loop import lr_at, train, train_step
from test.training.tiny_models import SMALL_DLV3P, SMALL_PDL_MNV2, TINY_PAN, TINY_SEM, _cfg, _TinySeg


@pytest.mark.parametrize("model", [TINY_SEM, TINY_PAN])
def test_steps_reduce_loss_on_a_fixed_batch(model: str, tmp_path) -> None:
    torch.manual_seed(0)
    cfg = _cfg(model, tmp_path, hard_pixel_fraction=1.0)
    net = registry.get_model(model, num_classes=19)
    batch = make_batch([train_seed(0, i) for i in range(2)], cfg.scene_hw, cfg.resolution,
                       panoptic=model == TINY_PAN, sigma=cfg.sigma)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = train_step(net, opt, batch, cfg, torch.device("cpu"))
    for _ in range(25):
        last = train_step(net, opt, batch, cfg, torch.device("cpu"))
    assert last["total"] < 0.7 * first["total"], (first, last)
    if model == TINY_PAN:
        assert {"semantic", "center", "offset", "total"} <= set(last)


@pytest.mark.parametrize("model", [TINY_SEM, TINY_PAN])
def test_train_writes_loadable_checkpoint_with_meta(model: str, tmp_path) -> None:
    cfg = _cfg(model, tmp_path, command="pytest")
    result = train(cfg, progress=False)
    assert result.path.is_file()
    loaded = load_checkpoint(result.path, expect_model=model)
    meta = loaded.meta
    assert meta["resolution"] == "32x64"
    assert meta["steps"] == 3 and meta["seed"] == 0 and meta["command"] == "pytest"
    assert meta["machine"]["cpu_count"] >= 1 and "torch" in meta["machine"]
    assert meta["train_wall_time_s"] >= 0
    held = meta["held_out"]
    assert 0.0 <= held["miou"] <= 1.0 and held["scenes"] == 2
    assert ("pq" in held) == (model == TINY_PAN)
    assert result.scores == held
    assert len(result.history) == 3 and all(math.isfinite(h["total"]) for h in result.history)
    # fp16 storage keeps files small; weights come back as float32
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


def test_second_stage_starts_from_a_checkpoint(tmp_path) -> None:
    first = train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "a.pt"), eval_scenes=0), progress=False)
    second = train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "b.pt"), eval_scenes=0, steps=2,
                        init_from=str(first.path)), progress=False)
    meta = load_checkpoint(second.path).meta
    assert meta["total_steps"] == 5 and meta["steps"] == 2
    assert meta["init_from"]["path"] == "a.pt" and meta["init_from"]["total_steps"] == 3


def test_three_stages_keep_the_chain_and_partial_saves_count_every_step(tmp_path, monkeypatch) -> None:
    """A periodic (partial) checkpoint can seed the next stage: it records the steps of all stages."""
    import seg_perception.training.loop as training

    first = train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "a.pt"), eval_scenes=0), progress=False)
    saved: list[dict] = []
    real_save = training._save
    monkeypatch.setattr(training, "_save", lambda cfg, net, kw, meta: saved.append(dict(meta)) or real_save(
        cfg, net, kw, meta))
    train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "b.pt"), eval_scenes=0, steps=4, save_every=2,
               init_from=str(first.path)), progress=False)
    partial = [m for m in saved if m.get("partial")]
    assert [m["steps_done"] for m in partial] == [2]
    assert partial[0]["total_steps"] == 3 + 2 and partial[0]["total_train_wall_time_s"] >= 0
    third = train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "c.pt"), eval_scenes=0, steps=2,
                       init_from=str(tmp_path / "b.pt")), progress=False)
    meta = load_checkpoint(third.path).meta
    assert meta["total_steps"] == 3 + 4 + 2
    assert meta["init_from"]["path"] == "b.pt" and meta["init_from"]["init_from"]["path"] == "a.pt"
    assert meta["total_train_wall_time_s"] >= meta["init_from"]["total_train_wall_time_s"] >= 0


def test_second_stage_rejects_other_model_kwargs(tmp_path) -> None:
    first = train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "a.pt"), eval_scenes=0), progress=False)
    with pytest.raises(ValueError, match="model kwargs"):
        train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "c.pt"), model_kwargs={"width": 8},
                   init_from=str(first.path)), progress=False)


def test_a_stage_may_grow_the_stride2_stage_but_not_drop_it(tmp_path) -> None:
    """Adding ``semantic_stride2_channels`` warm-starts from a checkpoint without it: every tensor
    the checkpoint has is copied (recorded), the new stage keeps its init; the reverse is refused."""
    base = train(_cfg("panoptic_deeplab_mobilenetv2", tmp_path, out=str(tmp_path / "base.pt"), eval_scenes=0,
                      steps=1, model_kwargs=SMALL_PDL_MNV2), progress=False)
    grown_kw = SMALL_PDL_MNV2 | {"semantic_stride2_channels": 4}
    grown = train(_cfg("panoptic_deeplab_mobilenetv2", tmp_path, out=str(tmp_path / "grown.pt"), eval_scenes=0,
                       steps=1, warm_lr_scale=1e-9, model_kwargs=grown_kw, init_from=str(base.path)),
                  progress=False)
    meta = load_checkpoint(grown.path).meta
    src = load_checkpoint(base.path).model.state_dict()
    dst = load_checkpoint(grown.path).model.state_dict()
    warm = meta["init_from"]["warm_start"]
    assert warm["loaded"] == len(src) and warm["of"] == len(dst) > len(src)
    assert warm["source_kwargs"]["low_level_channels"] == [8, 8]
    assert "semantic_stride2_channels" not in warm["source_kwargs"]
    params = {n for n, _ in load_checkpoint(base.path).model.named_parameters()}
    assert all(torch.equal(dst[k], src[k]) for k in params)  # copied, and frozen by warm_lr_scale
    with pytest.raises(ValueError, match="model kwargs.*semantic_stride2_channels"):
        train(_cfg("panoptic_deeplab_mobilenetv2", tmp_path, out=str(tmp_path / "back.pt"), eval_scenes=0,
                   steps=1, model_kwargs=SMALL_PDL_MNV2, init_from=str(grown.path)), progress=False)


def test_warm_start_copies_backbone_and_aspp_into_both_branches() -> None:
    from seg_perception.models import get_model
    from seg_perception.training.loop import warm_start, WARM_START_RENAMES

    torch.manual_seed(0)
    src = get_model("deeplabv3plus_mobilenetv2", **SMALL_DLV3P)
    for m in src.modules():  # non-default BN statistics, so a copy is told from an init
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    dst = get_model("panoptic_deeplab_mobilenetv2", **SMALL_PDL_MNV2)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = warm_start(dst, src.state_dict(),
                        WARM_START_RENAMES[("deeplabv3plus_mobilenetv2", "panoptic_deeplab_mobilenetv2")])
    s, d = src.state_dict(), dst.state_dict()
    backbone = [k for k in s if k.startswith("backbone.")]
    assert backbone and all(torch.equal(d[k], s[k]) for k in backbone)
    for branch in ("semantic_decoder", "instance_decoder"):
        aspp = [k for k in s if k.startswith("aspp.")]
        assert all(torch.equal(d[f"{branch}.{k}"], s[k]) for k in aspp)
    assert torch.equal(d["semantic_decoder.project.0.0.weight"], s["decoder.project.0.weight"])
    # tensors with no counterpart keep their initialisation
    for key in ("semantic_predictor.weight", "center_predictor.weight", "instance_decoder.project.0.0.weight"):
        assert torch.equal(d[key], before[key])
    n_copied = len(backbone) + 2 * len([k for k in s if k.startswith("aspp.")]) + 6  # project conv + BN (5 tensors)
    assert report["loaded"] == n_copied and report["of"] == len(d)
    assert report["loaded_prefixes"] == ["backbone", "instance_decoder", "semantic_decoder"]


def test_warm_start_skips_misshapen_tensors_and_refuses_a_foreign_source() -> None:
    from seg_perception.models import get_model
    from seg_perception.training.loop import warm_start

    dst = get_model("panoptic_deeplab_mobilenetv2", **SMALL_PDL_MNV2)
    src = get_model("deeplabv3plus_mobilenetv2", **(SMALL_DLV3P | {"aspp_channels": 24}))
    report = warm_start(dst, src.state_dict(), (("semantic_decoder.aspp.", "aspp."),))
    assert report["loaded_prefixes"] == ["backbone"]  # 24-channel ASPP does not fit a 16-channel one
    with pytest.raises(ValueError, match="none of the 2 source tensors fits PanopticDeepLab"):
        warm_start(dst, {"foo.weight": torch.zeros(3), "bar": torch.zeros(1)})


def test_init_from_another_model_warm_starts_and_records_it(tmp_path) -> None:
    """A trained DeepLabV3+ seeds a Panoptic-DeepLab stage; unrelated model pairs are refused by name."""
    from seg_perception.models import get_model
    from seg_perception.models.checkpoint import save_checkpoint

    src = get_model("deeplabv3plus_mobilenetv2", **SMALL_DLV3P)
    path = save_checkpoint(tmp_path / "sem.pt", src, model_name="deeplabv3plus_mobilenetv2",
                           model_kwargs=SMALL_DLV3P | {"num_classes": 19}, label_set="cityscapes",
                           extra={"total_steps": 7, "held_out": {"miou": 0.5}})
    result = train(_cfg("panoptic_deeplab_mobilenetv2", tmp_path, out=str(tmp_path / "pan.pt"), eval_scenes=0,
                        steps=1, model_kwargs=SMALL_PDL_MNV2, init_from=str(path)), progress=False)
    meta = load_checkpoint(result.path).meta
    assert meta["init_from"]["path"] == "sem.pt" and meta["total_steps"] == 8
    assert meta["init_from"]["warm_start"]["source_model"] == "deeplabv3plus_mobilenetv2"
    assert meta["init_from"]["warm_start"]["loaded"] > 0
    with pytest.raises(ValueError, match="holds model 'deeplabv3plus_mobilenetv2'.*warm-start pairs"):
        train(_cfg(TINY_PAN, tmp_path, out=str(tmp_path / "x.pt"), eval_scenes=0, init_from=str(path)),
              progress=False)


def _moved(path, source: dict[str, torch.Tensor], names: list[str]) -> int:
    """How many of the parameters ``names`` differ between checkpoint ``path`` and ``source``."""
    state = load_checkpoint(path).model.state_dict()
    return sum(not torch.equal(state[n].float(), source[n].float()) for n in names)


@pytest.mark.parametrize("scale,copied_move", [(1.0, True), (1e-6, False)])
def test_warm_lr_scale_slows_only_the_copied_tensors(scale: float, copied_move: bool, tmp_path) -> None:
    """Copied tensors train at lr * warm_lr_scale, new ones at lr: with a tiny scale the warm-started
    backbone keeps its (float16) values while the fresh heads still learn; with 1.0 both move."""
    from seg_perception.models import get_model
    from seg_perception.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    src = get_model("deeplabv3plus_mobilenetv2", **SMALL_DLV3P)
    path = save_checkpoint(tmp_path / "sem.pt", src, model_name="deeplabv3plus_mobilenetv2",
                           model_kwargs=SMALL_DLV3P | {"num_classes": 19}, label_set="cityscapes")
    source = load_checkpoint(path).model.state_dict()
    pan = get_model("panoptic_deeplab_mobilenetv2", num_classes=19, **SMALL_PDL_MNV2)
    weights = [n for n, p in pan.named_parameters() if p.ndim > 1]
    copied = [n for n in weights if n.startswith("backbone.")]
    fresh = [n for n in weights if n.startswith(("semantic_head.", "instance_head."))]
    assert copied and fresh
    initial = {n: t.half() for n, t in pan.state_dict().items()}  # the heads' own init, as saved (float16)
    result = train(_cfg("panoptic_deeplab_mobilenetv2", tmp_path, out=str(tmp_path / "pan.pt"), eval_scenes=0,
                        steps=2, lr=2e-3, model_kwargs=SMALL_PDL_MNV2, init_from=str(path), warm_lr_scale=scale),
                   progress=False, model=pan)
    assert (_moved(result.path, source, copied) > len(copied) // 2) is copied_move
    assert _moved(result.path, initial, fresh) == len(fresh)
    meta = load_checkpoint(result.path).meta
    assert meta["train_config"]["warm_lr_scale"] == scale
    assert "keys" not in meta["init_from"]["warm_start"]  # the copied names steer the optimizer only


def test_param_groups_split_decay_and_warm_tensors() -> None:
    from seg_perception.training.loop import _param_groups

    net = _TinySeg(width=4)
    warm = frozenset({"body.0.weight", "body.0.bias"})
    groups = _param_groups(net, 0.05, warm, 0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert len(by_id) == sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    for name, p in net.named_parameters():
        g = by_id[id(p)]
        assert g["lr_scale"] == (0.1 if name in warm else 1.0), name
        assert g["weight_decay"] == (0.05 if p.ndim > 1 else 0.0), name
    assert all(g["lr_scale"] == 1.0 for g in _param_groups(net, 0.05))


def test_warm_lr_scale_needs_a_warm_start(tmp_path) -> None:
    first = train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "a.pt"), eval_scenes=0, steps=1), progress=False)
    with pytest.raises(ValueError, match="warm_lr_scale=0.5 applies to a warm start.*lower lr instead"):
        train(_cfg(TINY_SEM, tmp_path, out=str(tmp_path / "b.pt"), eval_scenes=0, init_from=str(first.path),
                   warm_lr_scale=0.5), progress=False)


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(model=TINY_SEM, out="x.pt", steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.01)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(99, cfg) < 2e-5
    values = [lr_at(s, cfg) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_cli_trains_and_reports(tmp_path, capsys) -> None:
    from seg_perception.cli.main import main

    out = tmp_path / "cli.pt"
    rc = main(["train-synthetic", "--model", TINY_SEM, "--out", str(out), "--resolution", "32x64",
               "--scene-resolution", "64x128", "--steps", "2", "--batch-size", "2", "--eval-scenes", "1",
               "--workers", "0", "--threads", "1", "--no-progress", "--model-kwargs", '{"width": 8}'])
    assert rc == 0
    assert out.is_file()
    text = capsys.readouterr().out
    assert "held-out" in text and "miou" in text
    assert load_checkpoint(out).model_kwargs["width"] == 8


def test_cli_small_instance_weight_reaches_the_recorded_config(tmp_path) -> None:
    from seg_perception.cli.main import main

    out = tmp_path / "w.pt"
    rc = main(["train-synthetic", "--model", TINY_PAN, "--out", str(out), "--resolution", "32x64",
               "--scene-resolution", "64x128", "--steps", "2", "--batch-size", "2", "--eval-scenes", "1",
               "--workers", "0", "--threads", "1", "--no-progress", "--small-instance-weight", "3",
               "--small-instance-area", "8192"])
    assert rc == 0
    tc = torch.load(out, weights_only=False)["meta"]["train_config"]
    assert (tc["small_instance_weight"], tc["small_instance_area"]) == (3.0, 8192.0)


def test_cli_rejects_bad_model_kwargs(tmp_path, capsys) -> None:
    from seg_perception.cli.main import main

    rc = main(["train-synthetic", "--model", TINY_SEM, "--out", str(tmp_path / "x.pt"), "--model-kwargs", "{oops"])
    assert rc == 2
    assert "--model-kwargs" in capsys.readouterr().err


def test_cli_names_a_missing_init_from_file(tmp_path, capsys) -> None:
    from seg_perception.cli.main import main

    missing = tmp_path / "nope.pt"
    rc = main(["train-synthetic", "--model", TINY_SEM, "--out", str(tmp_path / "x.pt"), "--resolution", "32x64",
               "--steps", "1", "--workers", "0", "--no-progress", "--init-from", str(missing)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "train-synthetic: error:" in err and str(missing) in err and "does not exist" in err
    assert not (tmp_path / "x.pt").exists()

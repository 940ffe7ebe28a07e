"""tune_panoptic / write_tuned: the grid search picks what scores best, and what it measures is what
the Segmenter then produces; the choice round-trips through the checkpoint into build_segmenter."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from seg_perception.datasets.labels import get_label_set
from seg_perception.datasets.synthetic import make_scene
from seg_perception.eval.oracle import oracle_heads
from seg_perception.training.tuning import DEFAULT_GRID, DEFAULT_REFINE, TuneResult, TuningError, tune_panoptic, write_tuned
from seg_perception.models import get_model
from seg_perception.models.checkpoint import CheckpointError, save_checkpoint
from seg_perception.core.panoptic import PanopticConfig
from seg_perception.core.weights import POSTPROCESS_META_KEY, load_model
from seg_perception.core.segmenter import Segmenter, build_segmenter
from seg_perception.runtime.base import TensorSpec
from seg_perception.training.targets import default_center_sigma
from seg_perception.training.synthetic_eval import evaluate_segmenter


CITY = get_label_set("cityscapes")
HW = (64, 128)
SEED = 4_200_000
N = 2
BAD = PanopticConfig(center_threshold=1.0, stuff_area=10_000_000)  # no centers pass, all stuff void


class TruthBackend:
    """Answers the i-th call with the ground-truth heads of scene SEED + i % N (perfect network)."""

    name = "truth"
    last_latency_ms = 0.0

    def __init__(self) -> None:
        self.calls = 0

    def input_spec(self):
        return [TensorSpec("image", (1, 3, *HW), np.dtype(np.float32))]

    def output_spec(self):
        return []

    def infer(self, feeds):
        sc = make_scene(SEED + self.calls % N, HW)
        self.calls += 1
        heads = oracle_heads(sc.semantic, sc.panoptic, CITY.num_classes, CITY.thing_ids,
                             default_center_sigma(HW[0]))
        return {k: v[None].numpy() for k, v in heads.items()}

    def activate(self):
        pass

    def deactivate(self):
        pass


def _segmenter(cfg: PanopticConfig = BAD, task: str = "panoptic") -> Segmenter:
    return Segmenter(TruthBackend(), task=task, label_set=CITY, resolution=HW, panoptic=cfg)


def test_tuning_picks_the_best_and_its_scores_are_what_the_segmenter_then_gives():
    seg = _segmenter()
    seen = []
    res = tune_panoptic(seg, N, grid={"center_threshold": (1.0, 0.1), "stuff_area": (10_000_000, 0)}, refine={},
                        first_seed=SEED, scene_hw=HW, progress=lambda d, t: seen.append((d, t)))
    assert seg.backend.calls == N, "the network must run once per scene, not once per combination"
    assert seg.panoptic_cfg is BAD, "the segmenter's own configuration must be restored"
    # the baseline equals one grid cell: 4 distinct combinations, the baseline measured first
    assert len(res.table) == 4 and seen[-1] == (4, 4)
    assert res.baseline == BAD.tunables()
    assert res.best == {"center_threshold": 0.1, "nms_kernel": 7, "top_k": 200, "stuff_area": 0,
                        "class_split_area": 0, "class_aware_grouping": False}
    pqs = [scores["pq"] for _, scores in res.table]
    assert pqs == sorted(pqs, reverse=True) and pqs[0] == res.best_scores["pq"]
    assert res.best_scores["pq"] > res.baseline_scores["pq"] + 0.3
    # the same numbers through the full segment() path, with a fresh network
    for values, scores in (res.best, res.best_scores), (res.baseline, res.baseline_scores):
        seg2 = _segmenter(PanopticConfig().with_overrides(values))
        assert evaluate_segmenter(seg2, N, HW, SEED)["pq"] == pytest.approx(scores["pq"], abs=1e-4)
    rec = res.record()
    assert rec["scenes"] == N and rec["first_seed"] == SEED and rec["combinations"] == 4


def test_ties_go_to_the_baseline_then_grid_order():
    res = tune_panoptic(_segmenter(PanopticConfig()), 1, grid={"top_k": (200, 199)}, refine={},
                        first_seed=SEED, scene_hw=HW)
    assert res.best["top_k"] == 200  # equal PQ: a scene has far fewer than 199 things


def test_line_search_starts_from_the_grid_winner():
    seg = _segmenter()
    seen = []
    res = tune_panoptic(seg, N, grid={"center_threshold": (1.0, 0.1)}, refine={"stuff_area": (10_000_000, 0)},
                        first_seed=SEED, scene_hw=HW, progress=lambda d, t: seen.append((d, t)))
    # grid: the baseline (= 1.0 / 10M) and 0.1 / 10M; line search from 0.1: 10M (measured) and 0
    assert [(v["center_threshold"], v["stuff_area"]) for v, _ in sorted(res.table, key=lambda r: -r[1]["pq"])][0] \
        == (0.1, 0)
    assert len(res.table) == 3 and seen[-1] == (4, 4) and [d for d, _ in seen] == [1, 2, 3, 4]
    assert res.best["center_threshold"] == 0.1 and res.best["stuff_area"] == 0
    # ... which a line search from the baseline would have missed: 1.0 / 0 has no things
    low = tune_panoptic(_segmenter(), N, grid={"center_threshold": (1.0,)}, refine={"stuff_area": (0,)},
                        first_seed=SEED, scene_hw=HW)
    assert res.best_scores["pq"] > low.best_scores["pq"]


def test_default_search_includes_the_line_searches():
    res = tune_panoptic(_segmenter(PanopticConfig()), 1, grid={"top_k": (200,)}, first_seed=SEED, scene_hw=HW)
    assert sorted({v["class_split_area"] for v, _ in res.table}) == sorted(DEFAULT_REFINE["class_split_area"])
    # the line search starts from the grid's best
    start = next(v for v, _ in res.table if v["class_split_area"] == 0)
    assert all({**v, "class_split_area": 0} == start for v, _ in res.table)
    both = tune_panoptic(_segmenter(PanopticConfig()), 1, first_seed=SEED, scene_hw=HW,
                         grid={"class_aware_grouping": (False, True)}, refine={})
    assert {v["class_aware_grouping"] for v, _ in both.table} == {False, True}


@pytest.mark.parametrize("kwargs,needle", [
    ({"n_scenes": 0}, "n_scenes"),
    ({"grid": {"label_divisor": (10,)}}, "not tunable"),
    ({"grid": {"nms_kernel": ()}}, "empty"),
    ({"grid": {"nms_kernel": (4,)}}, "nms_kernel=4"),
    ({"refine": {"class_split_area": (-1,)}}, "class_split_area=-1"),
    ({"grid": {"class_aware_grouping": (1,)}}, "class_aware_grouping=1"),
    ({"refine": {"label_divisor": (10,)}}, "refine keys"),
    ({"grid": {"stuff_area": (0,)}, "refine": {"stuff_area": (0,)}}, "both"),
])
def test_bad_requests_are_refused_by_name(kwargs, needle):
    seg = _segmenter()
    with pytest.raises(TuningError, match=needle):
        tune_panoptic(seg, **{"n_scenes": 1, **kwargs}, first_seed=SEED, scene_hw=HW)
    assert seg.backend.calls == 0, "a bad grid must be refused before any scene runs"


def test_semantic_segmenter_is_refused():
    with pytest.raises(TuningError, match="semantic"):
        tune_panoptic(_segmenter(task="semantic"), 1, first_seed=SEED, scene_hw=HW)


def _tiny_checkpoint(path):
    torch.manual_seed(0)
    kw = {"num_classes": 19, "aspp_channels": 8, "decoder_channels": 8, "low_level_channels": [4, 4],
          "instance_aspp_channels": 8, "instance_decoder_channels": 8, "instance_low_level_channels": [4, 4],
          "head_channels": 8, "instance_head_channels": 8}
    net = get_model("panoptic_deeplab_mobilenetv2", **kw)
    return save_checkpoint(path, net, model_name="panoptic_deeplab_mobilenetv2", model_kwargs=kw,
                           label_set="cityscapes", extra={"resolution": "64x128", "held_out": {"pq": 0.1}})


def test_write_tuned_round_trips_into_build_segmenter(tmp_path):
    path = _tiny_checkpoint(tmp_path / "pan.pt")
    before = load_model("panoptic_deeplab_mobilenetv2", weights=str(path)).model.state_dict()
    assert build_segmenter("panoptic_deeplab_mobilenetv2", weights=str(path)).panoptic_cfg == PanopticConfig()
    best = {"center_threshold": 0.25, "nms_kernel": 5, "top_k": 200, "stuff_area": 512}
    res = TuneResult(best, {"pq": 0.5}, PanopticConfig().tunables(), {"pq": 0.4}, [], 3, SEED)
    write_tuned(path, res, held_out={"pq": 0.55, "panoptic_postprocess": best})

    loaded = load_model("panoptic_deeplab_mobilenetv2", weights=str(path))
    assert loaded.meta[POSTPROCESS_META_KEY] == best and loaded.meta["held_out"]["pq"] == 0.55
    assert loaded.meta[POSTPROCESS_META_KEY + "_tuning"]["best_scores"] == {"pq": 0.5}
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "writing meta must not touch the weights"

    seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights=str(path))
    # a record from before class splitting and class-aware grouping existed: both stay off
    full = {**best, "class_split_area": 0, "class_aware_grouping": False}
    assert seg.panoptic_cfg.tunables() == full
    assert seg.describe()["panoptic_postprocess"] == full
    # explicit values (node parameters not left at auto) win over the tuned ones
    seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights=str(path), panoptic={"top_k": 7})
    assert seg.panoptic_cfg.tunables() == {**full, "top_k": 7}
    # a full PanopticConfig is taken as is
    seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights=str(path), panoptic=PanopticConfig())
    assert seg.panoptic_cfg == PanopticConfig()


def test_write_tuned_refuses_a_foreign_file(tmp_path):
    plain = tmp_path / "state_dict.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    res = TuneResult({"center_threshold": 0.2}, {}, {}, {}, [], 1, SEED)
    with pytest.raises(CheckpointError, match="not a seg_perception checkpoint"):
        write_tuned(plain, res)
    assert set(torch.load(plain)) == {"w"}


def _cli(argv):
    import argparse

    from seg_perception.cli import tune_panoptic as cmd

    p = argparse.ArgumentParser()
    cmd.configure_parser(p)
    return cmd.run(p.parse_args([str(a) for a in argv]))


def test_cli_reports_writes_and_remeasures_held_out(tmp_path, capsys):
    path = _tiny_checkpoint(tmp_path / "pan.pt")
    argv = ["--weights", path, "--resolution", "64x128", "--scenes", 1, "--center-thresholds", "0.1,1.0",
            "--nms-kernels", "7", "--stuff-areas", "0,2048", "--class-split-areas", "0,1024",
            "--class-aware-grouping", "0", "--json", tmp_path / "t.json"]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    # 4 grid cells (class-aware grouping off only), then the class split line search adds 1024 (0 is
    # the cell it starts from)
    assert "5 combinations on 1 validation scenes" in out and "best" in out
    assert POSTPROCESS_META_KEY not in load_model("panoptic_deeplab_mobilenetv2", weights=str(path)).meta

    assert _cli(argv + ["--write", "--held-out-scenes", 1]) == 0
    meta = load_model("panoptic_deeplab_mobilenetv2", weights=str(path)).meta
    import json

    report = json.loads((tmp_path / "t.json").read_text())
    assert meta[POSTPROCESS_META_KEY] == report["best"] == meta["held_out"]["panoptic_postprocess"]
    assert meta["held_out"]["scenes"] == 1 and "pq" in meta["held_out"]
    assert len(report["table"]) == 5 and {row[0]["class_split_area"] for row in report["table"]} == {0, 1024}
    assert build_segmenter("panoptic_deeplab_mobilenetv2", weights=str(path)).panoptic_cfg.tunables() == report["best"]


def test_cli_without_grid_flags_searches_the_whole_default_grid(tmp_path, capsys):
    import math

    path = _tiny_checkpoint(tmp_path / "pan.pt")
    assert _cli(["--weights", path, "--resolution", "64x128", "--scenes", 1, "--json", tmp_path / "t.json"]) == 0
    # the grid, then the class split values other than the one the line search starts from
    n = math.prod(len(v) for v in DEFAULT_GRID.values()) + sum(len(v) - 1 for v in DEFAULT_REFINE.values())
    assert f"{n} combinations on 1 validation scenes" in capsys.readouterr().out
    import json

    table = json.loads((tmp_path / "t.json").read_text())["table"]
    for key, values in {**DEFAULT_GRID, **DEFAULT_REFINE}.items():
        assert sorted({row[0][key] for row in table}) == sorted(values), key
    # the NMS kernel must be odd (a centred max-pool window); the grid reaches past the 9 that won
    # at its old edge for the shipped model
    assert all(k % 2 == 1 for k in DEFAULT_GRID["nms_kernel"]) and max(DEFAULT_GRID["nms_kernel"]) > 9
    assert max(DEFAULT_GRID["center_threshold"]) > 0.35  # past the threshold that won at the old edge, 0.3


@pytest.mark.parametrize("argv,needle", [
    (["--scenes", 0], "--scenes must be >= 1"),
    (["--class-aware-grouping", "0,2"], "--class-aware-grouping takes 0 and/or 1"),
    (["--weights", "{plain}", "--write"], "--write needs a seg_perception checkpoint"),
    (["--weights", "{missing}"], "does not exist"),
    (["--model", "deeplabv3plus_mobilenetv2", "--weights", "none", "--resolution", "64x128", "--scenes", 1],
     "only panoptic models"),
])
def test_cli_errors_are_reported_not_raised(tmp_path, capsys, argv, needle):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    argv = [str(a).format(plain=plain, missing=tmp_path / "nope.pt") for a in argv]
    assert _cli(argv) == 2
    assert needle in capsys.readouterr().out

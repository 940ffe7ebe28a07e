"""The CLI as a new user meets it: every subcommand's defaults are what its help says.

Each subcommand's parser is built as ``seg-perception`` builds it; omitted ``--weights`` must mean
the model's shipped weights (random weights only with an explicit ``--weights none``), omitted
``--model`` the node's default model, and ``bench`` needs no ``--resolution``.
"""
from __future__ import annotations

import argparse
import importlib
import json

import numpy as np
import pytest

from seg_perception.cli import main as cli
from seg_perception.cli import bench, eval_bag, export
from seg_perception.cli.common import DEFAULT_MODEL
from seg_perception.models.checkpoint import read_checkpoint_meta
from seg_perception.core.weights import SHIPPED_WEIGHTS, resolve_weights
from seg_perception.core.resolution import PipelineError

NO_SHIPPED = "hrnetv2_w18_small_v2"


def _parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"seg_perception.cli.{cli.COMMANDS[name][0]}")
    parser = argparse.ArgumentParser(prog=f"seg-perception {name}", description=module.HELP)
    module.configure_parser(parser)
    return parser


def _action(parser: argparse.ArgumentParser, option: str):
    return next((a for a in parser._actions if option in a.option_strings), None)


def _parse(module, argv):
    p = argparse.ArgumentParser()
    module.configure_parser(p)
    return p.parse_args([str(a) for a in argv])


@pytest.mark.parametrize("name", ["demo", "soak", "eval-bag"])
def test_commands_that_run_a_model_default_to_the_nodes_backend(name):
    """The node's backend parameter default (auto) is every command's: one place decides the path."""
    from seg_perception.config import BACKENDS
    from seg_perception.ros.params import SPECS

    node_default = SPECS["backend"].default
    action = _action(_parser(name), "--backend")
    assert action.default == node_default == "auto"
    assert tuple(action.choices) == BACKENDS


def test_bench_compares_backend_auto_with_onnxruntime_fp32_by_default():
    args = _parse(bench, [])
    assert args.backends.split(",") == ["onnxruntime:fp32", "auto"]


def test_default_model_is_the_nodes():
    from seg_perception.ros.params import DEFAULT_MODEL as NODE_DEFAULT

    assert DEFAULT_MODEL == NODE_DEFAULT and SHIPPED_WEIGHTS[DEFAULT_MODEL].is_file()


@pytest.mark.parametrize("name", [n for n in cli.COMMANDS if n != "run"])
def test_every_subcommand_defaults_to_shipped_weights(name):
    """Omitted --weights loads the shipped weights of the default --model, as the help says."""
    parser = _parser(name)
    weights, model = _action(parser, "--weights"), _action(parser, "--model")
    if weights is None:
        return
    assert "shipped" in weights.help
    assert model is not None
    if model.required:  # train-synthetic-like commands name their model; none of those takes --weights
        pytest.fail(f"{name}: --model is required although --weights defaults to the shipped weights")
    assert str(model.default) in SHIPPED_WEIGHTS, f"{name}: default model {model.default} ships no weights"
    assert resolve_weights(model.default, weights.default) == str(SHIPPED_WEIGHTS[model.default])
    assert resolve_weights(model.default, "none") is None


@pytest.mark.parametrize("name", ["eval-bag", "bench", "export", "build-engine"])
def test_model_defaults_to_the_nodes_model(name):
    assert _parser(name).get_default("model") == DEFAULT_MODEL


def test_bench_needs_no_resolution():
    p = _parser("bench")
    assert not _action(p, "--resolution").required and p.get_default("resolution") is None
    path = resolve_weights(DEFAULT_MODEL, None)
    res = read_checkpoint_meta(path)["resolution"]
    assert bench.model_resolution(DEFAULT_MODEL, path) == tuple(int(v) for v in res.split("x"))


def test_no_shipped_weights_and_no_weights_is_a_clear_error():
    with pytest.raises(PipelineError, match=r"hrnetv2_w18_small_v2.*no shipped weights.*--weights FILE.*--weights none"):
        resolve_weights(NO_SHIPPED, None)
    assert resolve_weights(NO_SHIPPED, "none") is None


def _scene_bag(path, n=2):
    from seg_perception.bag.write import BagWriter

    rng = np.random.default_rng(0)
    with BagWriter(path) as bag:
        for i in range(n):
            t = 1_700_000_000_000_000_000 + i * 100_000_000
            bag.write_image("/cam", rng.integers(0, 255, (32, 64, 3), dtype=np.uint8), "rgb8", t, "camera")
            bag.write_image("/gt/semantic", np.zeros((32, 64), np.uint8), "mono8", t, "camera")
    return path


def test_eval_bag_without_weights_runs_the_shipped_model(tmp_path, capsys):
    bag = _scene_bag(tmp_path / "bag")
    args = _parse(eval_bag, [bag, "--image-topic", "/cam", "--gt-semantic-topic", "/gt/semantic",
                             "--out", tmp_path / "out", "--resolution", "32x64", "--no-progress", "--no-figures"])
    assert eval_bag.run(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    shipped = SHIPPED_WEIGHTS[DEFAULT_MODEL]
    assert report["model"]["model"] == DEFAULT_MODEL and report["model"]["weights"] == str(shipped)
    from seg_perception.hashing import sha256_file

    assert report["model"]["weights_sha256"] == sha256_file(shipped)
    # a model without shipped weights: refused, naming both fixes
    args = _parse(eval_bag, [bag, "--model", NO_SHIPPED, "--image-topic", "/cam", "--out", tmp_path / "o2",
                             "--resolution", "32x64", "--no-progress"])
    assert eval_bag.run(args) == 2
    out = capsys.readouterr().out
    assert "--weights FILE" in out and "--weights none" in out and not (tmp_path / "o2").exists()


def test_eval_bag_refuses_a_resolution_the_model_stride_does_not_fit(tmp_path, capsys):
    bag = _scene_bag(tmp_path / "bag", n=1)
    args = _parse(eval_bag, [bag, "--image-topic", "/cam", "--out", tmp_path / "out", "--resolution", "255x511",
                             "--no-progress"])
    assert eval_bag.run(args) == 2
    out = capsys.readouterr().out
    assert "255x511" in out and "256x512" in out


def test_bench_without_weights_or_resolution_runs_the_shipped_model(tmp_path, capsys):
    args = _parse(bench, ["--backends", "torch", "--frames", "1", "--warmup", "0", "--json", tmp_path / "b.json"])
    assert bench.run(args) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    meta = read_checkpoint_meta(SHIPPED_WEIGHTS[DEFAULT_MODEL])
    assert report["config"]["model"] == DEFAULT_MODEL
    assert report["config"]["weights"] == str(SHIPPED_WEIGHTS[DEFAULT_MODEL])
    assert "x".join(str(v) for v in report["config"]["resolution"]) == meta["resolution"]
    assert "error" not in report["results"][0]
    assert bench.run(_parse(bench, ["--model", NO_SHIPPED, "--backends", "torch"])) == 2
    assert "--weights none" in capsys.readouterr().out


def test_export_without_weights_loads_the_shipped_model():
    loaded, resolution = export.load_for_export(_parse(export, ["--out", "x.onnx"]))
    assert loaded.weights_path == str(SHIPPED_WEIGHTS[DEFAULT_MODEL])
    assert resolution == tuple(int(v) for v in loaded.meta["resolution"].split("x"))
    with pytest.raises(PipelineError, match="--weights none"):
        export.load_for_export(_parse(export, ["--model", NO_SHIPPED, "--out", "x.onnx"]))
    with pytest.raises(PipelineError, match="257x513.*256x512"):
        export.load_for_export(_parse(export, ["--resolution", "257x513", "--out", "x.onnx"]))


def test_readme_command_table_matches_the_commands():
    """README's table is generated from COMMANDS; regenerate it with cli.main.markdown_table()."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text[text.index(cli.README_BEGIN): text.index(cli.README_END) + len(cli.README_END)]
    assert block == cli.markdown_table(), "README command table drifted: paste seg_perception.cli.main.markdown_table()"


@pytest.mark.parametrize("name", ["demo", "soak", "eval-bag"])
def test_native_heads_flag_is_shared_and_off_by_default(name):
    """--native-heads: one declaration (cli.common) for every command that builds a Segmenter or a node."""
    from seg_perception.cli.common import add_native_heads_argument

    action = _action(_parser(name), "--native-heads")
    assert action is not None and action.default is False and action.nargs == 0
    shared = argparse.ArgumentParser()
    add_native_heads_argument(shared)
    assert action.help == _action(shared, "--native-heads").help
    assert "native_heads" in action.help and "onnxruntime" in action.help
    args = _parser(name).parse_args((["bag", "--image-topic", "/c", "--out", "o"] if name == "eval-bag" else [])
                                    + ["--native-heads"])
    assert args.native_heads is True


def test_demo_and_soak_pass_native_heads_to_the_node(monkeypatch):
    """The flag becomes the node parameter (the node's command line), not a local option."""
    from seg_perception.cli import demo as demo_cli
    from seg_perception.cli import soak as soak_cli
    from seg_perception.tools import demo as demo_tool
    from seg_perception.tools import soak as soak_tool

    seen = {}

    def fake_demo(cfg):
        seen["demo"] = cfg
        raise RuntimeError("stop here")

    monkeypatch.setattr(demo_cli, "run_demo", fake_demo)
    assert demo_cli.run(_parse(demo_cli, ["--native-heads", "--backend", "onnxruntime"])) == 1
    cmd = demo_tool._node_cmd(seen["demo"], compressed=False, depth=False)
    assert "native_heads:=true" in cmd and "backend:=onnxruntime" in cmd
    assert not any(a.startswith("native_heads") for a in demo_tool._node_cmd(demo_tool.DemoConfig(), False, False))

    def fake_soak(cfg, progress):
        seen["soak"] = cfg
        raise soak_tool.SoakError("stop here")

    monkeypatch.setattr(soak_tool, "run_soak", fake_soak)
    assert soak_cli.run(_parse(soak_cli, ["--native-heads", "--backend", "openvino"])) == 2
    assert soak_tool.node_params(seen["soak"])["native_heads"] is True
    assert "native_heads" not in soak_tool.node_params(soak_tool.SoakConfig())


def test_eval_bag_native_heads_reaches_the_backend_and_a_model_without_the_form_is_refused(tmp_path, capsys,
                                                                                            monkeypatch):
    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(tmp_path / "cache"))
    bag = _scene_bag(tmp_path / "bag", n=1)
    common = [bag, "--image-topic", "/cam", "--gt-semantic-topic", "/gt/semantic", "--resolution", "32x64",
              "--no-progress", "--no-figures", "--native-heads"]
    args = _parse(eval_bag, common + ["--out", tmp_path / "out", "--backend", "onnxruntime"])
    assert eval_bag.run(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"]["native_heads"] is True and report["model"]["backend"] == "onnxruntime"
    assert [p.name for p in (tmp_path / "cache" / "onnx").glob("*.onnx")] == \
        [p.name for p in (tmp_path / "cache" / "onnx").glob("*_native*.onnx")] != []  # only the native graph ran
    # torch runs the model's forward_native itself: native heads on, nothing exported
    onnx_files = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert eval_bag.run(_parse(eval_bag, common + ["--out", tmp_path / "o1", "--backend", "torch"])) == 0
    report = json.loads((tmp_path / "o1" / "report.json").read_text())
    assert report["model"]["native_heads"] is True and report["model"]["backend"] == "torch"
    assert sorted((tmp_path / "cache" / "onnx").glob("*.onnx")) == onnx_files
    capsys.readouterr()
    args = _parse(eval_bag, common + ["--out", tmp_path / "o2", "--backend", "torch", "--model", "hrnetv2_w18_small_v2",
                                      "--weights", "none"])
    assert eval_bag.run(args) == 2
    out = capsys.readouterr().out
    assert "native_heads" in out and "HRNetV2Seg" in out and "forward_native" in out and not (tmp_path / "o2").exists()

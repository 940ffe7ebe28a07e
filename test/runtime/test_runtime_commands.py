"""CLI subcommands export, build-engine (fake TensorRT) and bench, through seg_perception.cli.main.main."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import torch

from ..fakes import fake_tensorrt
from seg_perception.cli.main import main

MODEL = ["--model", "deeplabv3plus_mobilenetv2", "--weights", "none"]


def test_export_command(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", *MODEL, "--resolution", "32x48", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "all operators are supported by TensorRT" in text and "1 x 3 x 32 x 48" in text
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["semantic"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 48]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, 19, 32, 48]


def test_export_command_errors(tmp_path, capsys):
    assert main(["export", *MODEL, "--resolution", "32by48", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "HxW" in capsys.readouterr().out
    assert main(["export", "--model", "nope", "--weights", "none", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "deeplabv3plus_mobilenetv2" in capsys.readouterr().out  # lists the registered models


def test_build_engine_command(fake_trt, tmp_path, capsys):
    args = ["build-engine", *MODEL, "--resolution", "32x48", "--out-dir", str(tmp_path / "c")]
    torch.manual_seed(0)  # --weights none: the same random weights each run -> the same ONNX
    assert main([*args, "--dla-core", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("built engine") and "DLA core 1" in text and "Fake Orin" in text
    engines = list((tmp_path / "c" / "engines").glob("*.engine"))
    assert len(engines) == 1
    head = fake_tensorrt.read_header(engines[0].read_bytes())
    assert head["device_type"] == "DLA" and head["dla_core"] == 1 and set(head["flags"]) == {"FP16", "GPU_FALLBACK"}
    torch.manual_seed(0)
    assert main([*args, "--dla-core", "1"]) == 0
    assert capsys.readouterr().out.startswith("reused cached engine")
    torch.manual_seed(0)
    assert main([*args, "--dla-core", "1", "--force"]) == 0 and fake_trt.BUILD_COUNT == 2


def test_build_engine_int8_from_images(fake_trt, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"{i}.jpg"), np.full((20, 30, 3), 40 * i, np.uint8))
    assert main(["build-engine", *MODEL, "--resolution", "32x48", "--precision", "int8", "--calib-images", str(imgs),
                 "--out-dir", str(tmp_path / "c")]) == 0
    engine = next((tmp_path / "c" / "engines").glob("*.engine"))
    head = fake_tensorrt.read_header(engine.read_bytes())
    assert "INT8" in head["flags"] and head["calibration"]["batches"] == 3
    assert list((tmp_path / "c" / "calibration").glob("*.cache"))


def test_build_engine_argument_errors(fake_trt, tmp_path, capsys):
    base = ["build-engine", *MODEL, "--resolution", "32x48", "--out-dir", str(tmp_path / "c")]
    assert main([*base, "--precision", "int8", "--calib-bag", str(tmp_path / "bag")]) == 2
    assert "--calib-topic" in capsys.readouterr().out
    assert main([*base, "--calib-images", str(tmp_path)]) == 2
    assert "int8" in capsys.readouterr().out
    # int8 without a calibration source calibrates on the shipped sample drive (runtime/calibration.py)
    assert main([*base, "--precision", "int8", "--calib-limit", "2"]) == 0
    assert list((tmp_path / "c" / "calibration").glob("*sample_drive-*.cache"))


def test_bench_command(tmp_path, capsys, cache_dir):
    out = tmp_path / "b.json"
    code = main(["bench", *MODEL, "--resolution", "32x48", "--backends", "torch,onnxruntime", "--frames", "2",
                 "--warmup", "0", "--camera", "40x60", "--json", str(out)])
    assert code == 0
    assert "x vs torch" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [r["backend"] for r in report["results"]] == ["torch", "onnxruntime"]
    assert report["config"]["camera"] == [40, 60]
    assert main(["bench", *MODEL, "--resolution", "32x48", "--backends", "tensorrt", "--frames", "1"]) == 1


def test_bench_command_model_kwargs(tmp_path, capsys, cache_dir):
    out = tmp_path / "b.json"
    kwargs = {"decoder_convs": 1, "aspp_channels": 16}
    assert main(["bench", *MODEL, "--model-kwargs", json.dumps(kwargs), "--resolution", "32x48",
                 "--backends", "torch", "--frames", "1", "--warmup", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["config"]["model_kwargs"] == kwargs
    capsys.readouterr()
    assert main(["bench", *MODEL, "--model-kwargs", "{decoder_convs: 1}", "--resolution", "32x48"]) == 2
    assert "not valid JSON" in capsys.readouterr().out
    assert main(["bench", *MODEL, "--model-kwargs", "[1]", "--resolution", "32x48"]) == 2
    assert "JSON object" in capsys.readouterr().out
    assert main(["bench", *MODEL, "--model-kwargs", '{"decoder_convs": 0}', "--resolution", "32x48",
                 "--backends", "torch", "--frames", "1", "--json", str(out)]) == 1
    assert "decoder_convs" in json.loads(out.read_text())["results"][0]["error"]

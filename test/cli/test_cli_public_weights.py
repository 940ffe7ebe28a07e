"""``--weights FILE`` with a VainF checkpoint in the CLI commands: export (the ONNX graph computes
VainF's logits) and bench (loads and runs it). Oracle: ../shared/refs VainF MobileNetV2 fixture."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from seg_perception.cli.main import main

from .. import reference_fixtures as refs
from ..models.test_reference_parity_semantic import assert_matches_reference, write_vainf_checkpoint

FIXTURE = "vainf_deeplabv3plus_mobilenet"


def test_export_and_bench_take_a_vainf_checkpoint(tmp_path, capsys) -> None:
    path = write_vainf_checkpoint(FIXTURE, tmp_path)
    man = refs.manifest(FIXTURE)
    case = man["cases"][0]
    data = refs.case(FIXTURE, case["name"])
    h, w = case["input_hw"]
    onnx_path = tmp_path / "vainf.onnx"
    assert main(["export", "--model", man["project_model"], "--weights", str(path), "--resolution", f"{h}x{w}",
                 "--out", str(onnx_path)]) == 0
    assert str(path) in capsys.readouterr().out
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (semantic,) = sess.run(["semantic"], {"image": data["input"]})
    assert_matches_reference(semantic, data["logits"], data["semantic_argmax"])

    # a VainF file named without _os8 runs at output stride 8 only when told: the option reaches the model
    assert main(["export", "--model", man["project_model"], "--weights", str(path), "--resolution", f"{h}x{w}",
                 "--model-kwargs", '{"output_stride": 8}', "--out", str(tmp_path / "os8.onnx")]) == 0
    (os8,) = ort.InferenceSession(str(tmp_path / "os8.onnx"), providers=["CPUExecutionProvider"]).run(
        ["semantic"], {"image": data["input"]})
    assert np.abs(os8 - semantic).max() > 1e-2

    capsys.readouterr()
    assert main(["bench", "--model", man["project_model"], "--weights", str(path), "--resolution", f"{h}x{w}",
                 "--backends", "torch", "--frames", "2", "--warmup", "1", "--json", str(tmp_path / "b.json")]) == 0
    assert (tmp_path / "b.json").is_file()

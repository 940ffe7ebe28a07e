"""provenance: the machine block every report and checkpoint records, and JSON writing."""
from __future__ import annotations

import json
import os
import platform

import torch

from seg_perception.provenance import machine_info, write_json


def test_machine_info_describes_this_machine() -> None:
    info = machine_info("cpu")
    assert info["cpu_count"] == os.cpu_count() and info["python"] == platform.python_version()
    assert info["torch"] == torch.__version__ and type(info["torch"]) is str  # plain data for checkpoints
    assert info["device"] == "cpu" and info["cpu"] and isinstance(info["cpu_flags"], list)
    assert info["cuda_available"] == torch.cuda.is_available()
    assert {"onnxruntime", "openvino", "tensorrt"} <= set(info)
    json.dumps(info)


def test_write_json_creates_folders_and_round_trips(tmp_path) -> None:
    report = {"a": [1, 2.5, None], "b": {"c": "d"}}
    path = write_json(report, tmp_path / "x" / "y" / "r.json")
    assert path == tmp_path / "x" / "y" / "r.json"
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == report and text.endswith("\n")


def test_machine_block_names_no_host():
    import platform

    from seg_perception.provenance import machine_info

    info = machine_info()
    assert "hostname" not in info and platform.node() not in str(info.values())

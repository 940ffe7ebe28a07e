"""Where a result came from: the machine a run happened on, and writing reports as JSON.

Training checkpoints, benchmark and soak reports all record the same ``machine`` block, so a number
in one can be compared with a number in another (same CPU, same library versions) or told apart.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU, library versions and the accelerator of this machine.

    No host name: the block goes into benchmark JSON and checkpoints that are shared.

    Returns ``{"platform", "python", "cpu", "cpu_count", "torch", "torch_threads",
    "cuda_available", "device", "cpu_flags", "onnxruntime", "openvino", "tensorrt"}`` (a library
    that is absent: None), plus ``"gpu", "compute_capability", "cuda"`` when CUDA is available.
    """
    import torch

    from .runtime.cpu_features import relevant_flags

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "device": device,
        "cpu_flags": relevant_flags(),
    }
    for module in ("onnxruntime", "openvino", "tensorrt"):
        try:
            info[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - absent or broken optional module
            info[module] = None
    if torch.cuda.is_available():
        dev = torch.device(device if device.startswith("cuda") else "cuda")
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(dev)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_json(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``report`` as indented JSON ending in a newline (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path

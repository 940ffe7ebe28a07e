"""Shared test helper: export a model to ONNX with dynamic N/H/W and run it through onnxruntime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from seg_perception.runtime.export import INPUT_NAME, export_onnx


def export_and_run(net: nn.Module, path: Path, x: torch.Tensor) -> tuple[list[np.ndarray], dict[str, torch.Tensor]]:
    """Export ``net`` (eval mode, outputs named ``net.output_names``) with the package's exporter
    (:func:`seg_perception.runtime.export.export_onnx`, traced at 1x3x64x96, dynamic N / H / W) to
    ``path``, run ``x`` (N, 3, H, W) through onnxruntime on CPU, and return (onnxruntime outputs in
    ``output_names`` order, torch outputs by name).
    """
    import onnxruntime as ort

    export_onnx(net, path, resolution=(64, 96), dynamic=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        ref = net(x)
    return got, ref

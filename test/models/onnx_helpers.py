"""Shared test helper: export a model to ONNX with dynamic N/H/W and run it through onnxruntime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


def export_and_run(net: nn.Module, path: Path, x: torch.Tensor) -> tuple[list[np.ndarray], dict[str, torch.Tensor]]:
    """Export ``net`` (eval mode, outputs named ``net.output_names``) traced at 1x3x64x96 with dynamic
    batch / height / width (opset 17, ``dynamo=False``) to ``path``, run ``x`` (N, 3, H, W) through
    onnxruntime on CPU, and return (onnxruntime outputs in ``output_names`` order, torch outputs by name).
    """
    import onnxruntime as ort

    torch.onnx.export(net, torch.randn(1, 3, 64, 96), str(path), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=list(net.output_names),
                      dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = net(x)
    return got, ref

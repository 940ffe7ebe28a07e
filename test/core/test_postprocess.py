"""Tests for seg_perception.core.postprocess: the kernels a node compiles while it starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = r"""
import json, numpy as np, torch
from numba.core.registry import CPUDispatcher
from seg_perception.core import bilinear, upsample_jit
from seg_perception.core.panoptic import camera, kernels, nearest
from seg_perception.core.panoptic.config import PanopticConfig
from seg_perception.core.postprocess import compile_kernels
from seg_perception.core.upsample import upsample_labels

modules = (bilinear, upsample_jit, kernels, nearest)
dispatchers = {f"{m.__name__}.{k}": v for m in modules for k, v in vars(m).items() if isinstance(v, CPUDispatcher)}
compile_kernels()
after_warm = {k: len(d.signatures) for k, d in dispatchers.items()}
g = torch.Generator().manual_seed(0)
# real-sized frames: semantic at a camera above the network, panoptic with things and centers
upsample_labels(torch.randn(19, 60, 80, generator=g), (333, 444))
logits = torch.nn.functional.avg_pool2d(torch.randn(19, 64, 128, generator=g)[None], 9, 1, 4)[0] * 8
center = torch.zeros(1, 64, 128)
center[0, 20, 30] = center[0, 40, 90] = 0.9
offset = torch.randn(2, 64, 128, generator=g)
cfg = PanopticConfig(center_threshold=0.1, class_aware_grouping=True, stuff_area=0)
camera.camera_postprocess(logits, center, offset, (270, 480), thing_ids=frozenset(range(11, 19)), cfg=cfg)
after_frames = {k: len(d.signatures) for k, d in dispatchers.items()}
print(json.dumps({"warm": after_warm, "frames": after_frames}))
"""


def test_compile_kernels_leaves_nothing_to_compile_for_real_frames(tmp_path):
    """In a fresh process (nothing compiled yet): after compile_kernels every top-level kernel
    has a compiled signature and real-sized semantic and panoptic frames add none (a kernel that
    compiled only on the first camera frame would stall the node for seconds)."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    called_from_python = ["bilinear._sample_points", "bilinear._sample_boxes", "upsample_jit._scan",
                          "upsample_jit._boundary", "upsample_jit._argmax_rows", "kernels.add_blocks",
                          "kernels.add_pixels", "kernels.spread_cells", "nearest._nearest_kernel",
                          "nearest._nearest_of_class_kernel", "kernels.add_boundary_cells", "kernels.thing_cells",
                          "kernels.grouping_points", "kernels.select_boundary", "kernels.scatter_lut",
                          "upsample_jit.pixels_of_cells", "kernels.write_thing_ids",
                          "nearest._safe_table_kernel", "kernels.sum_and_max",
                          "kernels.add_stuff_cells", "kernels.thing_votes", "nearest._revisit_kernel",
                          "kernels.border_thing_cells"]  # the others are compiled inside these
    warm = {k.split(".", 2)[-1].replace("panoptic.", ""): n for k, n in got["warm"].items()}
    assert {k: warm.get(k, 0) for k in called_from_python} == {k: 1 for k in called_from_python}, got["warm"]
    assert got["frames"] == got["warm"]

"""How much of a network's CPU inference time is spent at the input resolution (the head resize).

Every registered model resizes its heads bilinearly from the decoder's stride (1/4, or 1/2) to the
input size inside its graph; the ops after that resize (the Resize itself, onnxruntime's layout
reorder of its output, the int8 graph's Quantize / Dequantize of the full-size tensor, offset
scaling) run on 16x (4x) more pixels than anything before them. This tool measures their share
with onnxruntime's own profiler -- the ceiling of what exporting the heads at their native stride
(backend option ``native_heads``) can save in the network -- and times the native-heads graph next
to the default one.

``python -m seg_perception.tools.profile_heads --model M --resolution HxW [--precisions fp32,int8]
[--runs N] [--json F]``: per precision, the share of summed kernel time in nodes whose output has
the input's H x W (by operator), the share of every Resize / Upsample, and the median wall ms of
the default and the native-heads graph over the same N runs (interleaved).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..provenance import write_json

LOG = logging.getLogger("seg_perception.tools.profile_heads")
RESIZE_OPS = ("Resize", "Upsample")


def full_resolution_share(events: list[dict], hw: tuple[int, int]) -> dict[str, Any]:
    """Kernel-time shares from an onnxruntime profile (the JSON list ``end_profiling`` writes).

    Args:
        events: profile events; node kernels are ``cat == "Node"`` with a name ending in
            ``_kernel_time``, ``dur`` in microseconds and ``args.output_type_shape``.
        hw: the input (H, W): a node whose 4-D output has this H x W counts as full resolution.

    Returns:
        ``{"kernel_us", "full_res_share", "full_res_by_op": {op: share}, "resize_share"}``.
    """
    total = full = resize = 0.0
    by_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        dur = float(e.get("dur", 0))
        args = e.get("args", {})
        op = args.get("op_name", "?")
        total += dur
        shapes = [v for s in args.get("output_type_shape", []) for v in s.values()]
        if any(len(v) == 4 and tuple(v[2:]) == tuple(hw) for v in shapes):
            full += dur
            by_op[op] += dur
        if op in RESIZE_OPS:
            resize += dur
    div = total or 1.0
    return {"kernel_us": total, "full_res_share": full / div, "resize_share": resize / div,
            "full_res_by_op": {k: v / div for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}}


def _session(path: Path, profile_prefix: Optional[str] = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # the QDQ graphs' unused-initializer notices, one line per constant
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def profile_graph(path: Path, hw: tuple[int, int], runs: int) -> dict[str, Any]:
    """Profile ``runs`` inferences of the ONNX file at ``path`` (1, 3, H, W) after 2 warm-ups."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = _session(path, os.path.join(tmp, "p"))
        x = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
        for _ in range(2 + runs):
            sess.run(None, {"image": x})
        with open(sess.end_profiling(), encoding="utf-8") as f:
            return full_resolution_share(json.load(f), hw)


def time_graphs(paths: dict[str, Path], hw: tuple[int, int], runs: int) -> dict[str, float]:
    """Median wall ms per graph, runs interleaved (run i of every graph, order rotating)."""
    sessions = {k: _session(p) for k, p in paths.items()}
    x = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    keys = list(sessions)
    for k in keys:
        sessions[k].run(None, {"image": x})
    for i in range(runs):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            t0 = time.perf_counter()
            sessions[k].run(None, {"image": x})
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def run(model: str, resolution: tuple[int, int], precisions: Sequence[str] = ("fp32", "int8"), runs: int = 10,
        weights: Optional[str] = None, cache_dir: Optional[str] = None) -> dict[str, Any]:
    """Profile the default graph of ``model`` and time it against its native-heads graph, per precision."""
    from ..core.weights import load_model
    from ..provenance import machine_info
    from ..runtime.calibration import CalibrationSource, quantize_onnx_int8
    from ..runtime.export import default_cache_dir, export_onnx_cached

    loaded = load_model(model, weights=weights)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_info("cpu"),
                           "model": model, "resolution": list(resolution), "runs": runs, "precisions": {}}
    for precision in precisions:
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision {precision!r}: profile_heads runs onnxruntime fp32 or int8")
        graphs = {}
        for native in (False, True):
            path = export_onnx_cached(loaded.model, resolution=resolution, cache_dir=root, native_heads=native)
            if precision == "int8":
                path = quantize_onnx_int8(path, CalibrationSource(), resolution=resolution, cache_dir=root)
            graphs["native" if native else "default"] = path
        entry = profile_graph(graphs["default"], resolution, runs)
        ms = time_graphs(graphs, resolution, runs)
        entry.update({"default_ms": ms["default"], "native_ms": ms["native"],
                      "native_speedup": ms["default"] / ms["native"]})
        out["precisions"][precision] = entry
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..core.resolution import parse_resolution

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--resolution", required=True, help="network input HxW")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--weights", default=None, help="default: the shipped weights")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run(args.model, parse_resolution(args.resolution), [s.strip() for s in args.precisions.split(",")],
                 args.runs, args.weights)
    for prec, e in report["precisions"].items():
        ops = ", ".join(f"{k} {100 * v:.1f} %" for k, v in e["full_res_by_op"].items() if v >= 0.001)
        print(f"{report['model']} {args.resolution} {prec}: full-resolution ops {100 * e['full_res_share']:.1f} % of "
              f"kernel time ({ops}); all Resize {100 * e['resize_share']:.1f} %; default {e['default_ms']:.1f} ms, "
              f"native heads {e['native_ms']:.1f} ms ({e['native_speedup']:.2f}x)")
    if args.json:
        write_json(report, args.json)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

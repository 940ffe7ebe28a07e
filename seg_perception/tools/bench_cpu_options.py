"""Which runtime settings run a model fastest on this CPU: one interleaved run, each vs onnxruntime fp32.

``python -m seg_perception.tools.bench_cpu_options --model M --resolution 512x1024 --json out.json``
builds the project's fp32 and int8 (QDQ) ONNX files for the model (cached, as the backends do) and
times, frame by frame in rotating order so load drift hits every candidate alike:

* onnxruntime fp32 / int8, threads sleeping between runs (the backends' default) and spinning;
  int8 as two single-threaded sessions with a frame each in flight (throughput, not latency);
* OpenVINO fp32 / bf16 / int8 with ``PERFORMANCE_HINT`` LATENCY, int8 with bf16 for the layers the
  QDQ graph leaves in float (``INFERENCE_PRECISION_HINT`` bf16), and THROUGHPUT (streams, an
  async queue of the optimal number of requests) for bf16 and int8.

Throughput candidates report milliseconds per frame over a batch of frames in flight. All
candidates live in one process: OpenVINO's worker threads (one pool per compiled model) cost the
others some speed, so compare a few at a time (``--only``) before trusting a small difference. Inference
only (no pre- or post-processing); ``seg-perception bench`` measures whole frames and accuracy.
bf16 candidates are skipped (with the reason) on CPUs without native bf16.
"""
from __future__ import annotations

import argparse
import threading
import time
from typing import Any, Callable, Optional

import numpy as np

Runner = Callable[[np.ndarray], Any]


def _ort_session(path: str, *, spin: bool = False, threads: Optional[int] = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _ort(path: str, **kw) -> Runner:
    s = _ort_session(path, **kw)
    return lambda x: s.run(None, {"image": x})


def _ort_streams(path: str, streams: int = 2, frames: int = 4) -> Runner:
    """``streams`` single-threaded sessions, each running ``frames / streams`` frames; ms per frame."""
    sessions = [_ort_session(path, threads=1) for _ in range(streams)]

    def run(x: np.ndarray) -> float:
        def work(s):
            for _ in range(frames // streams):
                s.run(None, {"image": x})

        t0 = time.perf_counter()
        threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return (time.perf_counter() - t0) * 1e3 / (frames // streams * streams)

    return run


def _ov(path: str, hint: str, perf: str = "LATENCY", frames: int = 4) -> Runner:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU",
                                  {"PERFORMANCE_HINT": perf, "INFERENCE_PRECISION_HINT": hint})
    if perf == "LATENCY":
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x})
    queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def run(x: np.ndarray) -> float:
        t0 = time.perf_counter()
        for _ in range(frames):
            queue.start_async({0: x})
        queue.wait_all()
        return (time.perf_counter() - t0) * 1e3 / frames

    return run


def candidates(fp32_onnx: str, int8_onnx: str) -> dict[str, Callable[[], Runner]]:
    """Name -> builder of every candidate (built lazily, so one failing build skips only itself)."""
    from ..runtime.cpu_features import has_bf16

    c: dict[str, Callable[[], Runner]] = {
        "onnxruntime fp32": lambda: _ort(fp32_onnx),
        "onnxruntime fp32 spinning": lambda: _ort(fp32_onnx, spin=True),
        "onnxruntime int8": lambda: _ort(int8_onnx),
        "onnxruntime int8 spinning": lambda: _ort(int8_onnx, spin=True),
        "onnxruntime int8 2 streams x 1 thread": lambda: _ort_streams(int8_onnx),
        "openvino fp32": lambda: _ov(fp32_onnx, "f32"),
        "openvino int8": lambda: _ov(int8_onnx, "f32"),
        "openvino int8 THROUGHPUT": lambda: _ov(int8_onnx, "f32", "THROUGHPUT"),
    }
    if has_bf16():
        c.update({
            "openvino bf16": lambda: _ov(fp32_onnx, "bf16"),
            "openvino int8 + bf16 rest": lambda: _ov(int8_onnx, "bf16"),
            "openvino bf16 THROUGHPUT": lambda: _ov(fp32_onnx, "bf16", "THROUGHPUT"),
            "openvino int8 + bf16 rest THROUGHPUT": lambda: _ov(int8_onnx, "bf16", "THROUGHPUT"),
        })
    return c


def run_options(model: str, resolution: tuple[int, int], *, weights: Optional[str] = None, frames: int = 8,
                warmup: int = 2, only: Optional[list[str]] = None, model_kwargs: Optional[dict] = None) -> dict:
    """Time every candidate interleaved; returns ``{"date", "machine", "config", "results"}``.

    Each result: ``{"candidate", "median_ms", "min_ms", "x_onnxruntime_fp32"}`` (median vs median),
    or ``{"candidate", "error"}`` when it could not be built or run here.
    """
    from ..core.weights import load_model
    from ..runtime.factory import create_backend
    from .bench import machine_info

    loaded = load_model(model, weights=weights, model_kwargs=model_kwargs)
    fp32 = create_backend("onnxruntime", loaded.model, resolution=resolution)
    int8 = create_backend("onnxruntime", loaded.model, resolution=resolution, precision="int8")
    builders = candidates(str(fp32.onnx_path), str(int8.onnx_path))
    if only:
        builders = {k: v for k, v in builders.items() if k in only or k == "onnxruntime fp32"}
    runners: dict[str, Runner] = {}
    results: dict[str, dict] = {}
    x = np.random.default_rng(0).standard_normal((1, 3, *resolution)).astype(np.float32)
    for name, build in builders.items():
        try:
            runners[name] = build()
            for _ in range(max(1, warmup)):
                runners[name](x)
        except Exception as exc:  # noqa: BLE001 - a candidate this machine cannot run is reported, not fatal
            results[name] = {"candidate": name, "error": f"{type(exc).__name__}: {exc}"}
            runners.pop(name, None)
    times: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    for i in range(frames):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            per_frame = runners[name](x)
            elapsed = (time.perf_counter() - t0) * 1e3
            times[name].append(per_frame if isinstance(per_frame, float) else elapsed)
    base = float(np.median(times["onnxruntime fp32"])) if "onnxruntime fp32" in times else None
    for name in names:
        med = float(np.median(times[name]))
        results[name] = {"candidate": name, "median_ms": round(med, 2), "min_ms": round(float(np.min(times[name])), 2),
                         "x_onnxruntime_fp32": round(base / med, 3) if base else None}
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_info("cpu"),
            "config": {"model": model, "weights": weights, "resolution": list(resolution), "frames": frames,
                       "warmup": warmup},
            "results": [results[k] for k in builders if k in results]}


def main(argv: Optional[list[str]] = None) -> int:
    from ..config import DEFAULT_MODEL, parse_resolution

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--weights", default=None, help="checkpoint, 'default' (shipped; the default) or 'none'")
    p.add_argument("--resolution", default="512x1024", help="network HxW (default 512x1024)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--only", default="",
                   help="comma-separated candidate names to run (besides the onnxruntime fp32 reference); every "
                        "runtime alive in the process shares the 2 cores' caches and threads, so few at a time "
                        "interfere least")
    p.add_argument("--json", help="also write the report here")
    args = p.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()] or None
    report = run_options(args.model, parse_resolution(args.resolution), weights=args.weights, frames=args.frames,
                         only=only)
    for r in report["results"]:
        if "error" in r:
            print(f"{r['candidate']:40s} skipped: {r['error']}")
        else:
            print(f"{r['candidate']:40s} {r['median_ms']:8.1f} ms  {r['x_onnxruntime_fp32']:5.2f}x")
    if args.json:
        from .bench import write_json

        print(f"wrote {write_json(report, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Several cameras: one node with batched inference vs one single-camera node per camera.

For N cameras, both layouts are run over real ROS 2 topics (reliable QoS) with the same frames:

* ``one_node``: one segment_node with ``cameras: [cam0, ..., camN-1]`` (``max_batch`` N): one model,
  one batched inference for the frames that are ready;
* ``separate_nodes``: N segment_node processes, one camera each (N models, N processes competing
  for the same CPU / GPU).

Every camera publishes frames at ``rate`` Hz for ``duration`` seconds (after a warm-up in which
each camera gets answers), more than the node can segment at N >= 2 on a CPU, so the numbers are
the saturated throughput. The cameras' phases are spread over the period by default (``phases``):
publishing all N large frames back to back in a fixed order makes the DDS transport deliver the
last-written one promptly and the earlier ones late or not at all, which shows up as unequal
per-camera fps in both layouts (measured: docs/MULTI_CAMERA.md). Measured here, per camera:
delivered fps (answered frames published in the window / window) and latency (answer received
here - frame published here, matched by header stamp) percentiles; overall: total fps and fairness
(slowest camera's fps / fastest's); and, per camera over the whole run, the node's own /diagnostics
counters beside this process's (``per_camera.<cam>.node``), which say where frames were lost.
"""
from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .node_driver import LatestDiagnostics, node_command, start_process, stop_process, wait_connected

NS = "/seg_bench_cams"


@dataclass
class CamerasBenchConfig:
    """What to run: camera counts, backends, frames."""

    model: str = "deeplabv3plus_mobilenetv2"
    weights: str = "default"
    resolution: tuple[int, int] = (256, 512)
    camera: tuple[int, int] = (480, 640)
    counts: list[int] = field(default_factory=lambda: [1, 2, 3])
    backends: list[str] = field(default_factory=lambda: ["onnxruntime"])
    device: str = "cpu"
    precision: str = "fp32"
    rate: float = 15.0
    duration: float = 6.0
    warmup: int = 2
    #: "spread": camera i publishes i/N of a period after camera 0, like independent cameras;
    #: "together": all N frames back to back each period, always in camera order (the transport
    #: then delivers the last-written frame first and the earlier ones late or not at all: see
    #: docs/MULTI_CAMERA.md, "Scheduling and fairness")
    phases: str = "spread"
    layouts: list[str] = field(default_factory=lambda: ["one_node", "separate_nodes"])

    def validate(self) -> None:
        if not self.counts or any(n < 1 for n in self.counts):
            raise ValueError(f"camera counts must be >= 1, got {self.counts}")
        if self.rate <= 0 or self.duration <= 0:
            raise ValueError(f"rate and duration must be positive, got {self.rate} Hz, {self.duration} s")
        if not self.backends:
            raise ValueError("give at least one backend")
        if not self.layouts or set(self.layouts) - {"one_node", "separate_nodes"}:
            raise ValueError(f"layouts must be one_node and/or separate_nodes, got {self.layouts}")
        if self.phases not in ("spread", "together"):
            raise ValueError(f"phases must be 'spread' or 'together', got {self.phases!r}")


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {"n": int(arr.size), "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p90_ms": round(float(np.percentile(arr, 90)), 1), "p99_ms": round(float(np.percentile(arr, 99)), 1)}


class _Rig:
    """The node process(es) of one layout plus this process's publishers and answer subscriptions."""

    def __init__(self, cfg: CamerasBenchConfig, backend: str, n: int, layout: str, log_dir: Path) -> None:
        self.cfg, self.n, self.layout = cfg, n, layout
        self.cams = [f"cam{i}" for i in range(n)]
        base = {"model": cfg.model, "weights": cfg.weights, "backend": backend, "device": cfg.device,
                "precision": cfg.precision, "resolution": f"{cfg.resolution[0]}x{cfg.resolution[1]}",
                "qos_reliability": "reliable", "diagnostics_period": 1.0}
        self.commands: list[list[str]] = []
        self.answer_topics: dict[str, str] = {}
        self.image_topics: dict[str, str] = {}
        if layout == "one_node":
            cams = "[" + ", ".join(self.cams) + "]"
            self.commands.append(node_command({**base, "cameras": cams, "max_batch": n}, namespace=NS))
            self.node_names = [f"{NS}/segment_node"]
            for c in self.cams:
                self.image_topics[c] = f"{NS}/{c}/image"
                self.answer_topics[c] = f"{NS}/segment_node/{c}/semantic"
        else:
            self.node_names = [f"{NS}/{c}/segment_node" for c in self.cams]
            for c in self.cams:
                self.commands.append(node_command(base, namespace=f"{NS}/{c}"))
                self.image_topics[c] = f"{NS}/{c}/image"
                self.answer_topics[c] = f"{NS}/{c}/segment_node/semantic"
        self.logs = [log_dir / f"{layout}_{backend}_{n}_{i}.log" for i in range(len(self.commands))]
        self.procs: list[subprocess.Popen] = []
        self.sent: dict[str, dict[int, float]] = {c: {} for c in self.cams}
        self.answered: dict[str, dict[int, float]] = {c: {} for c in self.cams}
        self._lock = threading.Lock()

    def _on_answer(self, cam: str, msg: Any) -> None:
        t = time.monotonic()
        with self._lock:
            self.answered[cam].setdefault(int(msg.header.stamp.sec), t)

    def _on_diag(self, i: int, arr: Any) -> None:
        self.diags[i](arr)
        if any(self.diags[i].match in st.name for st in arr.status):
            self._diag_at[i] = time.monotonic()

    def run(self, node: Any, spin_until: Any) -> dict[str, Any]:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from .bench import synthetic_frame
        from ..core.conversions import numpy_to_image

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        subs = [node.create_subscription(Image, self.answer_topics[c], lambda m, c=c: self._on_answer(c, m), qos)
                for c in self.cams]
        pubs = {c: node.create_publisher(Image, self.image_topics[c], qos) for c in self.cams}
        self.diags = [LatestDiagnostics(name) for name in self.node_names]
        self._diag_at = [0.0] * len(self.diags)  # monotonic arrival of each node's newest report
        subs += [node.create_subscription(DiagnosticArray, "/diagnostics", lambda a, i=i: self._on_diag(i, a), 10)
                 for i in range(len(self.diags))]
        frames = {c: numpy_to_image(synthetic_frame(self.cfg.camera, seed=i), "rgb8") for i, c in enumerate(self.cams)}
        try:
            for c in self.cams:
                if not wait_connected(spin_until, node, pubs[c], self.answer_topics[c], 300):
                    raise RuntimeError(f"{self.layout}: {c} not connected in 300 s; see {self.logs}")
            stamp = 1
            for _ in range(self.cfg.warmup):  # every camera answered: models loaded and warm
                for c in self.cams:
                    self._publish(pubs[c], frames[c], c, stamp)
                s = stamp
                if not spin_until(lambda: all(s in self.answered[c] for c in self.cams), 120):
                    raise RuntimeError(f"{self.layout}: no warm-up answer; see {self.logs}")
                stamp += 1
            first = stamp
            period = 1.0 / self.cfg.rate
            t0 = time.monotonic()
            k = 0
            # camera i's frame of tick k is due at t0 + (k + offset_i) * period
            offsets = [i / self.n if self.cfg.phases == "spread" else 0.0 for i in range(self.n)]
            while time.monotonic() - t0 < self.cfg.duration:
                for c, off in zip(self.cams, offsets):
                    spin_until(lambda: False, max(0.0, t0 + (k + off) * period - time.monotonic()))
                    self._publish(pubs[c], frames[c], c, stamp)
                stamp += 1
                k += 1
                spin_until(lambda: False, max(0.0, t0 + k * period - time.monotonic()))
            window = time.monotonic() - t0
            spin_until(lambda: False, 3.0)  # answers still in flight
            # counters from a report made after the last answer was published (the node counts a
            # frame after publishing it; diagnostics_period 1 s)
            last = max((t for c in self.cams for t in self.answered[c].values()), default=0.0) + 0.05
            spin_until(lambda: min(self._diag_at) > last, 3.0)
            counters = self._node_counters()
        finally:
            for s in subs:
                node.destroy_subscription(s)
            for p in pubs.values():
                node.destroy_publisher(p)
        report = self._report(first, stamp, window)
        for c in self.cams:
            report["per_camera"][c]["node"] = counters[c]
        return report

    def _node_counters(self) -> dict[str, dict[str, Any]]:
        """Per camera, from the node's last /diagnostics and this process's own counts, over the whole
        run (warm-up included): frames this process published and got answers for, and what the node
        says it received, dropped (replaced in its newest-frame slot before the worker took them),
        took into a batch and published. Where the frames were lost is the first place the counts
        fall: received < published means the transport or the node's executor lost them (its reader
        queue overflowed), dropped > 0 the node's scheduler, answered < processed the way back."""
        out = {}
        with self._lock:
            for i, c in enumerate(self.cams):
                if self.layout == "one_node":
                    diag, pre = self.diags[0].latest(), f"camera.{c}."
                else:
                    diag, pre = self.diags[i].latest(), ""
                counts: dict[str, Any] = {"published": len(self.sent[c]), "answered": len(self.answered[c])}
                for key in ("frames_received", "frames_dropped", "frames_taken", "frames_processed"):
                    if pre + key in diag:
                        counts[key.replace("frames_", "node_")] = int(float(diag[pre + key]))
                out[c] = counts
        return out

    def _publish(self, pub: Any, msg: Any, cam: str, stamp: int) -> None:
        msg.header.stamp.sec = stamp
        msg.header.frame_id = cam
        self.sent[cam][stamp] = time.monotonic()
        pub.publish(msg)

    def _report(self, first: int, last: int, window: float) -> dict[str, Any]:
        per_cam = {}
        with self._lock:
            for c in self.cams:
                lat = [(self.answered[c][s] - t) * 1e3 for s, t in self.sent[c].items()
                       if first <= s < last and s in self.answered[c]]
                per_cam[c] = {"published": last - first, "answered": len(lat),
                              "fps": round(len(lat) / window, 2), "latency": _percentiles(lat)}
        fps = [v["fps"] for v in per_cam.values()]
        all_lat = [x for c in self.cams for x in
                   [(self.answered[c][s] - t) * 1e3 for s, t in self.sent[c].items() if first <= s < last
                    and s in self.answered[c]]]
        return {"layout": self.layout, "cameras": self.n, "window_s": round(window, 2),
                "total_fps": round(sum(fps), 2), "fairness_min_over_max_fps": round(min(fps) / max(fps), 3)
                if max(fps) > 0 else 0.0, "latency": _percentiles(all_lat), "per_camera": per_cam}


def run_bench_cameras(cfg: CamerasBenchConfig, log_dir: Optional[Path] = None) -> dict[str, Any]:
    """Run every (backend, camera count, layout); returns ``{"date", "machine", "config", "results"}``.

    Layouts of one (backend, count) run back to back, one_node first then separate_nodes, so the
    two are compared under the same machine load; with N = 1 both layouts are the same node and
    only ``one_node`` is run.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from .bench import machine_info

    cfg.validate()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="seg_bench_cams_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    own = not rclpy.ok()
    if own:
        rclpy.init()
    node = rclpy.create_node("seg_bench_cameras_driver")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    results = []
    try:
        for backend in cfg.backends:
            for n in cfg.counts:
                # with one camera both layouts are the same node: run it once
                for layout in ([cfg.layouts[0]] if n == 1 else cfg.layouts):
                    rig = _Rig(cfg, backend, n, layout, log_dir)
                    rig.procs = [start_process(cmd, log) for cmd, log in zip(rig.commands, rig.logs)]

                    def spin_until(cond, timeout, rig=rig):
                        end = time.monotonic() + timeout
                        while time.monotonic() < end:
                            if cond():
                                return True
                            for p, log in zip(rig.procs, rig.logs):
                                if p.poll() is not None:
                                    raise RuntimeError(f"segment_node exited with {p.returncode}; see {log}")
                            executor.spin_once(timeout_sec=min(0.01, max(0.0, end - time.monotonic())))
                        return cond()

                    try:
                        r = rig.run(node, spin_until)
                    finally:
                        for p in rig.procs:
                            stop_process(p)
                    r["backend"] = backend
                    results.append(r)
                    print(format_result(r), flush=True)
    finally:
        executor.remove_node(node)
        node.destroy_node()
        if own:
            rclpy.try_shutdown()
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_info(cfg.device),
            "config": {**asdict(cfg), "resolution": list(cfg.resolution), "camera": list(cfg.camera)},
            "results": results}


def format_result(r: dict[str, Any]) -> str:
    cams = ", ".join(f"{c} {v['fps']:.1f} fps p50 {v['latency'].get('p50_ms', float('nan')):.0f} ms"
                     for c, v in r["per_camera"].items())
    return (f"{r['backend']:12s} {r['cameras']} camera(s) {r['layout']:15s}: total {r['total_fps']:.2f} fps, "
            f"fairness {r['fairness_min_over_max_fps']:.2f}, latency p50 {r['latency'].get('p50_ms', float('nan'))} "
            f"p90 {r['latency'].get('p90_ms', float('nan'))} ms ({cams})")


def format_table(report: dict[str, Any]) -> str:
    """Markdown: per backend and camera count, total fps and p50/p90 latency of both layouts."""
    rows = ["| backend | cameras | layout | total fps | per-camera fps (min..max) | latency p50 / p90 ms |",
            "|---|---|---|---|---|---|"]
    for r in report["results"]:
        fps = [v["fps"] for v in r["per_camera"].values()]
        lat = r["latency"]
        rows.append(f"| {r['backend']} | {r['cameras']} | {r['layout']} | {r['total_fps']:.2f} | "
                    f"{min(fps):.2f}..{max(fps):.2f} | {lat.get('p50_ms', '-')} / {lat.get('p90_ms', '-')} |")
    return "\n".join(rows)


def bench_segment_batch(model: str = "deeplabv3plus_mobilenetv2", weights: str = "default",
                        resolution: tuple[int, int] = (256, 512), camera: tuple[int, int] = (480, 640),
                        backend: str = "onnxruntime", n: int = 3, repeat: int = 10) -> dict[str, Any]:
    """The Segmenter alone (no ROS): ``segment_batch`` of ``n`` frames (one inference) vs ``n``
    ``segment`` calls, interleaved ``repeat`` times on the same Segmenter; medians and their ratio."""
    from .bench import machine_info, synthetic_frame
    from ..core.segmenter import build_segmenter

    seg = build_segmenter(model, weights=weights, resolution=resolution, backend=backend, max_batch=n)
    frames = [synthetic_frame(camera, seed=i) for i in range(n)]
    try:
        seg.segment_batch(frames)  # warm-up of both paths
        seg.segment(frames[0])
        batched, single = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            seg.segment_batch(frames)
            t1 = time.perf_counter()
            for f in frames:
                seg.segment(f)
            t2 = time.perf_counter()
            batched.append((t1 - t0) * 1e3)
            single.append((t2 - t1) * 1e3)
    finally:
        seg.close()
    b, s = float(np.median(batched)), float(np.median(single))
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_info("cpu"),
            "model": model, "backend": backend, "resolution": list(resolution), "camera": list(camera),
            "frames": n, "repeat": repeat, "segment_batch_median_ms": round(b, 1),
            "segment_loop_median_ms": round(s, 1), "loop_over_batch_speedup": round(s / b, 3)}

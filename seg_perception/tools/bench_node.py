"""What the ROS node adds on top of the Segmenter, measured on a real node process.

Frames are published one at a time over real ROS 2 (reliable QoS) and each answer is awaited, so
the node is never saturated and nothing is dropped. The node's own /diagnostics then give, over the
same frames, the median Segmenter time (``total_ms``: preprocess + inference + postprocess) and the
median node time per frame (``node_total_ms``: message conversion + Segmenter + building and
publishing the outputs). ``overhead = node_total / segmenter_total - 1``.

Run with and without subscribers on ``~/colored`` and ``~/overlay``: those are computed only while
someone listens.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .node_driver import NodeDriver, node_command

NS = "/seg_bench"


@dataclass
class NodeOverheadConfig:
    model: str
    weights: str | None
    resolution: tuple[int, int]
    camera: tuple[int, int]
    backend: str = "torch"
    device: str = "cpu"
    frames: int = 40
    warmup: int = 3
    visualize: bool = False  # also subscribe ~/colored and ~/overlay


def run_node_overhead(cfg: NodeOverheadConfig) -> dict[str, Any]:
    """Start the node, send ``cfg.frames`` frames lock-step, return the node's stage medians."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from .bench import synthetic_frame
    from ..core.conversions import numpy_to_image

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    params = {"model": cfg.model, "weights": cfg.weights or "none", "backend": cfg.backend, "device": cfg.device,
              "resolution": f"{cfg.resolution[0]}x{cfg.resolution[1]}", "qos_reliability": "reliable",
              "diagnostics_period": 0.2}
    log = Path(tempfile.mkdtemp(prefix="seg_bench_node_")) / "node.log"
    with NodeDriver(node_command(params, namespace=NS), log, name="seg_bench_node_driver") as drv:
        node, spin_until = drv.node, drv.spin_until
        answers: list = []
        prefix = f"{NS}/segment_node"
        node.create_subscription(Image, f"{prefix}/semantic", answers.append, qos)
        if cfg.visualize:
            node.create_subscription(Image, f"{prefix}/colored", lambda m: None, qos)
            node.create_subscription(Image, f"{prefix}/overlay", lambda m: None, qos)
        latest = drv.diagnostics(prefix).latest
        pub = node.create_publisher(Image, f"{NS}/image", qos)

        if not drv.wait_connected(pub, f"{prefix}/overlay" if cfg.visualize else f"{prefix}/semantic", 90):
            raise RuntimeError(f"node did not subscribe in 90 s; see {log}")
        frame = synthetic_frame(cfg.camera)
        total = cfg.warmup + cfg.frames
        for i in range(total):
            msg = numpy_to_image(frame, "rgb8")
            msg.header.stamp.sec = i + 1
            pub.publish(msg)
            if not spin_until(lambda: len(answers) > i, 60):
                raise RuntimeError(f"no answer for frame {i}; see {log}")
        spin_until(lambda: int(latest().get("frames_processed", 0) or 0) >= total, 5)
        diag = latest()

    def med(key: str) -> float:
        return float(diag.get(f"{key}.median_ms", "nan"))

    seg_ms, node_ms = med("total_ms"), med("node_total_ms")
    return {
        "config": {**cfg.__dict__, "resolution": list(cfg.resolution), "camera": list(cfg.camera)},
        "frames": int(diag.get("frames_processed", 0) or 0),
        "segmenter_total_median_ms": seg_ms,
        "node_total_median_ms": node_ms,
        "convert_median_ms": med("convert_ms"),
        "publish_median_ms": med("publish_ms"),
        "overhead_fraction": node_ms / seg_ms - 1.0,
    }


def format_node_overhead(r: dict[str, Any]) -> str:
    c = r["config"]
    return (f"node overhead ({c['model']} @ {c['resolution'][0]}x{c['resolution'][1]}, camera "
            f"{c['camera'][0]}x{c['camera'][1]}, colored/overlay subscribed: {c['visualize']}): "
            f"Segmenter {r['segmenter_total_median_ms']:.1f} ms, node {r['node_total_median_ms']:.1f} ms per frame "
            f"(convert {r['convert_median_ms']:.2f} ms, publish {r['publish_median_ms']:.2f} ms) -> "
            f"+{100 * r['overhead_fraction']:.1f} %")


def run_startup(preset: Path, camera: tuple[int, int] = (480, 640), timeout: float = 600.0) -> dict[str, Any]:
    """Start segment_node with a preset file and time it to the first answered frame.

    Frames are sent every 0.2 s from the moment the node subscribes, so the first answer comes as
    soon as the node can give one. Returns the wall time measured here (process spawn to first
    answer) and the node's own ``startup.*`` diagnostics (``first_frame_s`` from its process start,
    ``configure_s`` = model load + warm-up inference, ``warmup_s``).
    """
    import time

    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from .bench import synthetic_frame
    from ..core.conversions import numpy_to_image
    from ..core.weights import SHIPPED_WEIGHTS

    model = preset.stem
    cmd = node_command({}, namespace=NS) + ["--params-file", str(preset), "-p", "diagnostics_period:=0.2"]
    if model not in SHIPPED_WEIGHTS:
        cmd += ["-p", "weights:=none"]  # no shipped weights: random init (load time is the same)
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    log = Path(tempfile.mkdtemp(prefix="seg_bench_startup_")) / "node.log"
    t0 = time.monotonic()
    with NodeDriver(cmd, log, name="seg_bench_startup_driver") as drv:
        prefix = f"{NS}/segment_node"
        answers: list = []
        drv.node.create_subscription(Image, f"{prefix}/semantic", answers.append, qos)
        latest = drv.diagnostics(prefix).latest
        pub = drv.node.create_publisher(Image, f"{NS}/image", qos)
        msg = numpy_to_image(synthetic_frame(camera), "rgb8")
        end = t0 + timeout
        while not answers and time.monotonic() < end:
            if pub.get_subscription_count() > 0:
                pub.publish(msg)
            drv.spin_until(lambda: bool(answers), 0.2)
        if not answers:
            raise RuntimeError(f"{model}: no answer within {timeout:.0f} s; see {log}")
        first_answer_s = time.monotonic() - t0
        drv.spin_until(lambda: "startup.first_frame_s" in latest(), 10)
        diag = latest()
    return {"preset": model, "camera": list(camera), "first_answer_wall_s": round(first_answer_s, 3),
            **{k.split(".", 1)[1]: float(v) for k, v in diag.items() if k.startswith("startup.")}}


def main(argv: list[str] | None = None) -> int:
    """``python -m seg_perception.tools.bench_node [--presets a,b] [--json out.json]``: start-up per preset."""
    import argparse

    from ..provenance import write_json
    from ..ros.launch_config import config_dir, list_presets

    ap = argparse.ArgumentParser(prog="python -m seg_perception.tools.bench_node",
                                 description="time from process start to the first answered frame, per preset")
    ap.add_argument("--presets", default="", help="comma-separated preset names (default: all in config/)")
    ap.add_argument("--json", default="", help="write the results here")
    args = ap.parse_args(argv)
    names = [n for n in args.presets.split(",") if n] or list_presets()
    results = []
    for name in names:
        r = run_startup(config_dir() / f"{name}.yaml")
        results.append(r)
        print(f"{name}: first answer {r['first_answer_wall_s']:.2f} s after spawn (node: first frame "
              f"{r.get('first_frame_s', float('nan')):.2f} s after its start, load+warm-up "
              f"{r.get('configure_s', float('nan')):.2f} s)", flush=True)
    if args.json:
        write_json({"startup": results}, args.json)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

"""Benchmarks of the ROS-free video / 3D core: point-cloud and tracker cost, tracking quality.

Run ``python -m seg_perception.tools.bench_core [--json out.json]`` for the cloud (640x480, stride
1 and 2, dense and organized, plus the PointCloud2 packing when sensor_msgs is importable) and the
tracker on a synthetic 512x1024 sequence. The JSON records the date, the machine and the load
average before and after the run. Timings belong here, never in unit tests.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Iterable, Optional, Sequence

import numpy as np

from seg_perception.core.latency import latency_stats
from seg_perception.core.pointcloud import CloudConfig, depth_to_cloud
from seg_perception.core.tracking import PanopticTracker, TrackerConfig
from seg_perception.eval.video_metrics import IdSwitches, STQ, VPQ, VideoLabels
from seg_perception.provenance import machine_info, write_json


def bench_cloud(height: int = 480, width: int = 640, stride: int = 1, repeat: int = 50, organized: bool = False,
                to_msg: bool = False) -> dict:
    """Time :func:`depth_to_cloud` on a synthetic 16UC1 frame with labels, panoptic ids and a palette.

    Args:
        to_msg: also time the PointCloud2 packing (needs sensor_msgs).

    Returns:
        dict with shape, stride, organized, points, the :func:`latency_stats` keys (and msg_median_ms).
    """
    rng = np.random.default_rng(0)
    depth = rng.integers(300, 8000, (height, width)).astype(np.uint16)
    depth[rng.random((height, width)) < 0.05] = 0
    labels = rng.integers(0, 19, (height, width)).astype(np.uint8)
    pan = labels.astype(np.int32) * 1000 + rng.integers(0, 4, (height, width)).astype(np.int32)
    palette = rng.integers(0, 256, (19, 3)).astype(np.uint8)
    K = np.array([[525.0, 0, width / 2 - 0.5], [0, 525.0, height / 2 - 0.5], [0, 0, 1]])
    cfg = CloudConfig(stride=stride, max_range=6.0, organized=organized)
    times, msg_times = [], []
    cloud = None
    if to_msg:
        from std_msgs.msg import Header

        from seg_perception.ros.pointcloud_msg import to_pointcloud2
    for i in range(max(2, repeat) + 2):
        t0 = time.perf_counter()
        cloud = depth_to_cloud(depth, K, labels, panoptic=pan, colors=palette, config=cfg)
        t1 = time.perf_counter()
        if to_msg:
            to_pointcloud2(cloud, Header(frame_id="camera_color_optical_frame"))
        if i >= 2:  # first calls build the ray cache
            times.append((t1 - t0) * 1e3)
            msg_times.append((time.perf_counter() - t1) * 1e3)
    out = {"shape": [height, width], "stride": stride, "organized": organized, "points": len(cloud), **latency_stats(times)}
    if to_msg:
        out["msg_median_ms"] = float(np.median(msg_times))
    return out


def synthetic_sequence(frames: int = 20, height: int = 512, width: int = 1024, objects: int = 20,
                       seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Moving rectangles (classes 11, 13) over road / sky: (per-frame-numbered maps, GT track maps)."""
    rng = np.random.default_rng(seed)
    objs = []
    for _ in range(objects):
        h = int(rng.integers(max(2, height // 25), max(3, height // 6)))
        w = int(rng.integers(max(2, width // 50), max(3, width // 8)))
        objs.append((int(rng.choice([11, 13])), int(rng.integers(0, height - h)), int(rng.integers(0, width - w)),
                     h, w, float(rng.uniform(-1, 1) * width / 128)))
    pred, gt = [], []
    for t in range(frames):
        p = np.zeros((height, width), np.int32)
        p[height // 2:] = 1000
        g = p.copy()
        order = rng.permutation(objects) + 1  # the segmenter's per-frame numbering is arbitrary
        for k, (c, y, x, h, w, v) in enumerate(objs):
            xx = int(x + v * t)
            p[y:y + h, max(xx, 0):max(xx + w, 0)] = c * 1000 + int(order[k])
            g[y:y + h, max(xx, 0):max(xx + w, 0)] = c * 1000 + k + 1
        pred.append(p)
        gt.append(g)
    return pred, gt


def bench_tracker(frames: Iterable[np.ndarray], config: TrackerConfig, repeat: int = 3) -> dict:
    """Per-frame :meth:`PanopticTracker.update` cost over ``repeat`` passes of a sequence."""
    frames = list(frames)
    times: list[float] = []
    for _ in range(max(1, repeat)):
        tracker = PanopticTracker(config)
        for f in frames:
            t0 = time.perf_counter()
            tracker.update(f)
            times.append((time.perf_counter() - t0) * 1e3)
    return {"frames": len(frames), "shape": list(np.shape(frames[0])) if frames else [], **latency_stats(times)}


def tracking_quality(gt: Sequence[np.ndarray], pred: Sequence[np.ndarray], labels: VideoLabels,
                     config: Optional[TrackerConfig] = None, frame_stride: int = 5) -> dict:
    """STQ / VPQ / id switches of per-frame panoptic predictions without and with the tracker.

    Args:
        gt, pred: (H, W) panoptic maps of one sequence (ground truth with track ids).
        config: tracker settings (default: the label set's thing classes, defaults otherwise).
    """
    config = config or TrackerConfig(thing_ids=labels.thing_ids, label_divisor=labels.label_divisor)
    tracker = PanopticTracker(config)
    out = {}
    for name, seq in (("untracked", list(pred)), ("tracked", [tracker.update(p).panoptic for p in pred])):
        stq, vpq, ids = STQ(labels), VPQ(labels, frame_stride=frame_stride), IdSwitches(labels)
        for g, p in zip(gt, seq):
            stq.update(g, p)
            vpq.update(g, p)
            ids.update(g, p)
        r, v = stq.result(), vpq.result()
        out[name] = {"stq": r["stq"], "aq": r["aq"], "sq": r["sq"], "vpq": v["vpq"], **ids.result()}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--repeat", type=int, default=50)
    args = p.parse_args(argv)
    try:
        import sensor_msgs.msg  # noqa: F401
        to_msg = True
    except ImportError:
        to_msg = False
    # Timings are only comparable with the machine, date and load they were taken under.
    results: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_info("cpu"),
                     "load_avg_1_5_15_before": [round(v, 2) for v in os.getloadavg()]}
    results["cloud"] = [bench_cloud(stride=s, organized=o, repeat=args.repeat, to_msg=to_msg)
                        for s in (1, 2) for o in (False, True)]
    pred, gt = synthetic_sequence()
    labels = VideoLabels(19, frozenset({11, 13}))
    results["tracker"] = bench_tracker(pred, TrackerConfig(thing_ids=labels.thing_ids), repeat=2)
    results["tracking_quality"] = tracking_quality(gt, pred, labels)
    results["load_avg_1_5_15_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

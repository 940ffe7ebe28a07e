"""The end-to-end demo: a real segment_node process, a bag played onto its camera topic over real
ROS 2, its outputs recorded and scored against the bag's ground truth.

    seg-perception demo                       # shipped panoptic model + shipped sample bag
    seg-perception demo --bag my_drive.mcap --image-topic /cam/front/image_raw --model ... --weights ...

The shipped sample drive (:mod:`seg_perception.datasets.sample_bag`: 80 JPEG frames at 256 x 512,
a camera driving through traffic) is played on its ``/camera/image_raw/compressed`` topic; the node
subscribes with ``input_transport: compressed``.

Writes to ``--out`` (default ``demo_out/``): ``overlay/NNNN.png``, ``preview.gif`` (input, the node's
panoptic prediction and the ground truth side by side), ``outputs.mcap``
(the node's outputs as recorded, with the bag's GT), the evaluation report (``report.json``,
``report.md``, plots) and prints a summary (frames in/out, drops, fps, mIoU, PQ).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core.conversions import image_to_numpy
from ..core.stamp_match import stamp_ns
from ..datasets.sample_bag import GT_PANOPTIC_TOPIC, GT_SEMANTIC_TOPIC, IMAGE_TOPIC, SAMPLE_BAG_PATH
from .node_driver import NodeDriver, node_command

LOG = logging.getLogger("seg_perception.tools.demo")
SAMPLE_BAG = SAMPLE_BAG_PATH
NODE_NS = "/demo"
NODE_NAME = "segment_node"


@dataclass
class DemoConfig:
    bag: Path = SAMPLE_BAG
    image_topic: str = IMAGE_TOPIC
    gt_semantic_topic: Optional[str] = GT_SEMANTIC_TOPIC
    gt_panoptic_topic: Optional[str] = GT_PANOPTIC_TOPIC
    model: str = "panoptic_deeplab_mobilenetv2"
    weights: str = "default"
    resolution: str = ""
    backend: str = "onnxruntime"  # the exported graph: ~2x the torch speed on CPU (README benchmarks)
    device: str = "cpu"
    out: Path = Path("demo_out")
    rate: float = 1.0  # playback speed factor vs the bag's stamps; 0 = lock-step (wait for each answer)
    max_frames: int = 0
    startup_timeout: float = 90.0
    extra_params: dict = field(default_factory=dict)


@dataclass
class Recorded:
    semantic: dict = field(default_factory=dict)   # stamp_ns -> (H, W) uint8
    panoptic: dict = field(default_factory=dict)   # stamp_ns -> (H, W) int32
    overlay: dict = field(default_factory=dict)    # stamp_ns -> (H, W, 3) uint8
    instances: dict = field(default_factory=dict)  # stamp_ns -> number of detections
    diagnostics: dict = field(default_factory=dict)


def read_bag(cfg: DemoConfig) -> tuple[list[tuple[int, str, bytes]], dict, dict]:
    """Raw camera messages [(stamp_ns, msgtype, cdr bytes)] and GT maps stamp_ns -> array.

    Raises:
        seg_perception.bag.read.BagError: a topic is missing (message lists the bag's topics).
    """
    from ..bag.read import BagError, deserialize, format_topics, list_topics

    topics = list_topics([cfg.bag])
    for t in (cfg.image_topic, cfg.gt_semantic_topic, cfg.gt_panoptic_topic):
        if t and t not in topics:
            raise BagError(f"topic {t!r} is not in {cfg.bag}; its topics are:\n{format_topics(topics)}")
    from rosbags.highlevel import AnyReader

    frames: list[tuple[int, str, bytes]] = []
    gt_sem: dict[int, np.ndarray] = {}
    gt_pan: dict[int, np.ndarray] = {}
    wanted = {t for t in (cfg.image_topic, cfg.gt_semantic_topic, cfg.gt_panoptic_topic) if t}
    with AnyReader([Path(cfg.bag)]) as reader:
        conns = [c for c in reader.connections if c.topic in wanted]
        for conn, _t, raw in reader.messages(connections=conns):
            msg = deserialize(bytes(raw), conn.msgtype)
            stamp = stamp_ns(msg.header.stamp)
            if conn.topic == cfg.image_topic:
                frames.append((stamp, conn.msgtype, bytes(raw)))
            elif conn.topic == cfg.gt_semantic_topic:
                gt_sem[stamp] = image_to_numpy(msg)
            else:
                gt_pan[stamp] = image_to_numpy(msg).astype(np.int32)
    frames.sort(key=lambda f: f[0])
    if cfg.max_frames:
        frames = frames[: cfg.max_frames]
    return frames, gt_sem, gt_pan


def _node_cmd(cfg: DemoConfig, compressed: bool) -> list[str]:
    params = {"model": cfg.model, "weights": cfg.weights, "backend": cfg.backend, "device": cfg.device,
              "qos_reliability": "reliable", "diagnostics_period": 0.5,
              "input_transport": "compressed" if compressed else "raw", **cfg.extra_params}
    if cfg.resolution:
        params["resolution"] = cfg.resolution
    base = cfg.image_topic[: -len("/compressed")] if compressed else cfg.image_topic
    return node_command(params, namespace=NODE_NS, name=NODE_NAME,
                        remap={"image": base, "image/compressed": f"{base}/compressed"})


def play_and_record(cfg: DemoConfig, frames: list[tuple[int, str, bytes]], log_path: Path) -> tuple[Recorded, float]:
    """Start the node, publish ``frames`` onto the camera topic, collect outputs. Returns (outputs, wall s)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    compressed = bool(frames) and frames[0][1].endswith("CompressedImage")
    rec = Recorded()
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with NodeDriver(_node_cmd(cfg, compressed), log_path, name="seg_demo_player", env=env) as drv:
        node = drv.node
        prefix = f"{NODE_NS}/{NODE_NAME}"

        def keep(store: dict, convert):
            return lambda m: store.__setitem__(stamp_ns(m.header.stamp), convert(m))

        node.create_subscription(Image, f"{prefix}/semantic", keep(rec.semantic, image_to_numpy), qos)
        node.create_subscription(Image, f"{prefix}/panoptic", keep(rec.panoptic, image_to_numpy), qos)
        node.create_subscription(Image, f"{prefix}/overlay", keep(rec.overlay, image_to_numpy), qos)
        try:
            import vision_msgs.msg as vm

            node.create_subscription(vm.Detection2DArray, f"{prefix}/instances",
                                     keep(rec.instances, lambda m: len(m.detections)), qos)
        except ImportError:
            pass
        diag = drv.diagnostics(prefix)
        pub = node.create_publisher(CompressedImage if compressed else Image, cfg.image_topic, qos)
        spin_until = drv.spin_until

        print(f"[demo] starting segment_node ({cfg.model}) ...", flush=True)
        if not drv.wait_connected(pub, f"{prefix}/overlay", cfg.startup_timeout):
            raise RuntimeError(f"segment_node did not come up within {cfg.startup_timeout:.0f} s; see {log_path}")
        print(f"[demo] playing {len(frames)} frames from {cfg.bag} onto {cfg.image_topic} "
              f"({'lock-step' if cfg.rate <= 0 else f'{cfg.rate:g}x bag rate'})", flush=True)
        t_start = time.monotonic()
        stamp0 = frames[0][0] if frames else 0
        for i, (stamp, _type, raw) in enumerate(frames):
            if cfg.rate > 0:
                due = t_start + (stamp - stamp0) / 1e9 / cfg.rate
                spin_until(lambda: time.monotonic() >= due, max(0.0, due - time.monotonic()) + 0.01)
            pub.publish(raw)
            if cfg.rate <= 0:
                spin_until(lambda: stamp in rec.semantic, 30.0)
        spin_until(lambda: frames and frames[-1][0] in rec.semantic, 5.0)
        wall = time.monotonic() - t_start
        spin_until(lambda: False, 1.2)  # one more diagnostics period
        rec.diagnostics = diag.latest()
        return rec, wall


def write_visuals(rec: Recorded, out: Path, frames: Optional[list[tuple[int, str, bytes]]] = None,
                  gt_sem: Optional[dict] = None, gt_pan: Optional[dict] = None,
                  max_gif_frames: int = 100, panel_width: int = 320) -> list[Path]:
    """overlay/NNNN.png per output frame and an animated preview.gif.

    Each GIF frame shows, side by side at ``panel_width`` pixels each: the camera input (decoded
    from ``frames``), the node's prediction (panoptic colours with instance outlines, else the
    semantic classes) and the ground truth (``gt_pan``, else ``gt_sem``). Without ``frames`` the
    GIF shows the node's overlay alone.
    """
    import cv2
    from PIL import Image as PILImage

    odir = out / "overlay"
    odir.mkdir(parents=True, exist_ok=True)
    paths, thumbs = [], []
    raw_by_stamp = {stamp: (msgtype, raw) for stamp, msgtype, raw in (frames or [])}
    for i, stamp in enumerate(sorted(rec.overlay)):
        img = rec.overlay[stamp]
        p = odir / f"{i:04d}.png"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(p)
        if len(thumbs) >= max_gif_frames:
            continue
        if stamp in raw_by_stamp:
            panels = [("input", _decode(*raw_by_stamp[stamp])), ("prediction", _colorize(rec.panoptic.get(stamp), rec.semantic.get(stamp)))]
            if (gt_pan and stamp in gt_pan) or (gt_sem and stamp in gt_sem):
                panels.append(("ground truth", _colorize((gt_pan or {}).get(stamp), (gt_sem or {}).get(stamp))))
        else:
            panels = [("overlay", img)]
        thumbs.append(PILImage.fromarray(_side_by_side(panels, panel_width)))
    if thumbs:
        thumbs[0].save(out / "preview.gif", save_all=True, append_images=thumbs[1:], duration=100, loop=0)
    return paths


def _decode(msgtype: str, raw: bytes) -> np.ndarray:
    """CDR bytes of an Image / CompressedImage -> (H, W, 3) uint8 RGB."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from ..core.conversions import to_rgb

    return to_rgb(deserialize_message(raw, CompressedImage if msgtype.endswith("CompressedImage") else Image))


def _colorize(panoptic: Optional[np.ndarray], semantic: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """(H, W, 3) uint8 Cityscapes colours of a panoptic (with outlines) or semantic image."""
    from ..datasets.labels import get_label_set
    from ..core.viz import colorize, colorize_panoptic

    palette = get_label_set("cityscapes").palette
    if panoptic is not None:
        return colorize_panoptic(np.asarray(panoptic, np.int32), palette)
    if semantic is not None:
        return colorize(semantic, palette)
    return None


def _side_by_side(panels: list[tuple[str, Optional[np.ndarray]]], width: int) -> np.ndarray:
    """Resize each (H, W, 3) panel to ``width`` pixels wide, caption it, and concatenate them."""
    import cv2

    tiles = []
    ref = next(img for _name, img in panels if img is not None)
    height = max(1, int(round(ref.shape[0] * width / ref.shape[1])))
    for name, img in panels:
        if img is None:
            tile = np.zeros((height, width, 3), np.uint8)
        else:
            interp = cv2.INTER_AREA if name == "input" else cv2.INTER_NEAREST
            tile = cv2.resize(np.ascontiguousarray(img), (width, height), interpolation=interp)
        cv2.putText(tile, name, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, name, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


def run_demo(cfg: DemoConfig) -> dict:
    """Run the whole demo; returns the summary dict (also written to OUT/summary.json)."""
    from .demo_eval import evaluate_recorded

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    frames, gt_sem, gt_pan = read_bag(cfg)
    if not frames:
        raise RuntimeError(f"no camera messages on {cfg.image_topic} in {cfg.bag}")
    rec, wall = play_and_record(cfg, frames, out / "node.log")
    write_visuals(rec, out, frames, gt_sem, gt_pan)
    report = evaluate_recorded(cfg, frames, rec, gt_sem, gt_pan, out)
    d = rec.diagnostics
    summary = {
        "frames_in": len(frames),
        "frames_out": len(rec.semantic),
        "node_frames_received": int(d.get("frames_received", 0) or 0),
        "node_frames_dropped": int(d.get("frames_dropped", 0) or 0),
        "node_frames_rejected": int(d.get("frames_rejected", 0) or 0),
        "node_fps": float(d.get("fps", 0) or 0),
        "node_total_median_ms": float(d.get("node_total_ms.median_ms", 0) or 0),
        "segmenter_median_ms": float(d.get("total_ms.median_ms", 0) or 0),
        "throughput_fps": len(rec.semantic) / wall if wall > 0 else 0.0,
        "instances_topic": bool(rec.instances),
        **{k: report.get(k) for k in ("miou", "pq", "sq", "rq", "pixel_accuracy", "miou_convention")},
        "out_dir": str(out.resolve()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(s: dict) -> str:
    def f(v: Any, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    return "\n".join([
        "==== seg_perception demo ====",
        f"frames in/out      : {s['frames_in']} / {s['frames_out']}  (node: received {s['node_frames_received']}, "
        f"dropped {s['node_frames_dropped']}, rejected {s['node_frames_rejected']})",
        f"speed              : node {f(s['node_fps'], '.1f')} fps, median per frame {f(s['node_total_median_ms'], '.1f')} ms "
        f"(Segmenter {f(s['segmenter_median_ms'], '.1f')} ms)",
        f"accuracy vs GT     : mIoU {f(s['miou'])} ({s.get('miou_convention') or 'n/a'}), PQ {f(s['pq'])} "
        f"(SQ {f(s['sq'])}, RQ {f(s['rq'])})",
        f"outputs            : {s['out_dir']}/ (overlay/*.png, preview.gif, report.md, report.json)",
    ])

"""The end-to-end demo: a real segment_node process, a bag played onto its camera topic over real
ROS 2, its outputs recorded and scored against the bag's ground truth.

    seg-perception demo                       # shipped panoptic model + shipped sample bag
    seg-perception demo --bag my_drive.mcap --image-topic /cam/front/image_raw --model ... --weights ...

The shipped sample drive (:mod:`seg_perception.datasets.sample_bag`: 80 JPEG frames at 256 x 512,
a camera driving through traffic) is played on its ``/camera/image_raw/compressed`` topic; the node
subscribes with ``input_transport: compressed``.

The bag's registered depth and camera_info (when it has them) are played too, so the node publishes
its labeled point cloud ``~/points``; a panoptic model runs with ``tracking.enabled``, so its
instance ids are track ids that persist across frames.

Writes to ``--out`` (default ``demo_out/``): ``overlay/NNNN.png``, ``preview.gif`` (input, the node's
panoptic prediction with each instance's track id at its centroid, and the ground truth side by
side; the ids drawn per frame in ``preview_tracks.json``), ``outputs.mcap`` (the node's outputs as
recorded, clouds included, with the bag's GT), the evaluation report (``report.json``,
``report.md``, plots; with the cloud's size and per-class point counts) and prints a summary
(frames in/out, drops, fps, mIoU, PQ, cloud points).
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
from ..datasets.sample_bag import (
    CAMERA_INFO_TOPIC,
    DEPTH_INFO_TOPIC,
    DEPTH_TOPIC,
    GT_PANOPTIC_TOPIC,
    GT_SEMANTIC_TOPIC,
    IMAGE_TOPIC,
    SAMPLE_BAG_PATH,
)
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
    # played beside the images when the bag has them ('' = not played): the node then publishes ~/points
    camera_info_topic: str = CAMERA_INFO_TOPIC
    depth_topic: str = DEPTH_TOPIC
    depth_info_topic: str = DEPTH_INFO_TOPIC
    cloud_stride: int = 2  # every 2nd depth pixel: a quarter of the points, clouds well under 1 MB
    tracking: bool = True  # panoptic models only: persistent track ids on ~/panoptic and ~/points
    model: str = "panoptic_deeplab_mobilenetv2"
    weights: str = "default"
    resolution: str = ""
    backend: str = "onnxruntime"  # the exported graph: ~2x the torch speed on CPU (README benchmarks)
    native_heads: bool = False  # node parameter native_heads (heads at their own stride, one upsampling)
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
    points: dict = field(default_factory=dict)     # stamp_ns -> sensor_msgs/PointCloud2 (~/points)
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


def read_side_topics(cfg: DemoConfig, stamps: set[int]) -> list[tuple[int, str, str, bytes]]:
    """Raw camera_info, depth and depth camera_info messages of the bag at the image ``stamps``:
    ``[(stamp_ns, topic, msgtype, cdr bytes)]`` (topics the bag lacks, or set to '', are left out)."""
    from ..bag.read import list_topics, read_messages, typestore

    topics = list_topics([cfg.bag])
    out = []
    for topic in (cfg.camera_info_topic, cfg.depth_topic, cfg.depth_info_topic):
        if not topic or topic not in topics:
            continue
        for f in read_messages([cfg.bag], topic):
            if f.stamp_ns in stamps:
                out.append((f.stamp_ns, topic, f.msgtype, bytes(typestore().serialize_cdr(f.msg, f.msgtype))))
    return out


def _is_panoptic(model: str) -> bool:
    from ..models import model_info

    return model_info(model).task == "panoptic"


def _node_cmd(cfg: DemoConfig, compressed: bool, depth: bool) -> list[str]:
    params = {"model": cfg.model, "weights": cfg.weights, "backend": cfg.backend, "device": cfg.device,
              "qos_reliability": "reliable", "diagnostics_period": 0.5,
              "input_transport": "compressed" if compressed else "raw"}
    if depth:
        params.update({"depth_topic": cfg.depth_topic, "cloud.stride": cfg.cloud_stride})
        if cfg.depth_info_topic:
            params["depth_info_topic"] = cfg.depth_info_topic
    if cfg.tracking and _is_panoptic(cfg.model):
        params["tracking.enabled"] = "true"
    if cfg.native_heads:
        params["native_heads"] = "true"
    params.update(cfg.extra_params)
    if cfg.resolution:
        params["resolution"] = cfg.resolution
    base = cfg.image_topic[: -len("/compressed")] if compressed else cfg.image_topic
    return node_command(params, namespace=NODE_NS, name=NODE_NAME,
                        remap={"image": base, "image/compressed": f"{base}/compressed"})


def play_and_record(cfg: DemoConfig, frames: list[tuple[int, str, bytes]], log_path: Path,
                    side: Optional[list[tuple[int, str, str, bytes]]] = None) -> tuple[Recorded, float]:
    """Start the node, publish ``frames`` onto the camera topic (each frame's ``side`` messages,
    from :func:`read_side_topics`, just before it), collect outputs. Returns (outputs, wall s)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    compressed = bool(frames) and frames[0][1].endswith("CompressedImage")
    rec = Recorded()
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    side_by_stamp: dict[int, list[tuple[str, bytes]]] = {}
    for stamp, topic, _type, raw in side or []:
        side_by_stamp.setdefault(stamp, []).append((topic, raw))
    side_types = {topic: mtype for _s, topic, mtype, _r in side or []}
    depth = cfg.depth_topic in side_types
    with NodeDriver(_node_cmd(cfg, compressed, depth), log_path, name="seg_demo_player", env=env) as drv:
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
        if depth:
            node.create_subscription(PointCloud2, f"{prefix}/points", keep(rec.points, lambda m: m), qos)
        diag = drv.diagnostics(prefix)
        pub = node.create_publisher(CompressedImage if compressed else Image, cfg.image_topic, qos)
        side_pubs = {topic: node.create_publisher(CameraInfo if mtype.endswith("CameraInfo") else Image, topic, qos)
                     for topic, mtype in side_types.items()}
        spin_until = drv.spin_until

        print(f"[demo] starting segment_node ({cfg.model}) ...", flush=True)
        if not drv.wait_connected(pub, f"{prefix}/overlay", cfg.startup_timeout):
            raise RuntimeError(f"segment_node did not come up within {cfg.startup_timeout:.0f} s; see {log_path}")
        if not spin_until(lambda: all(p.get_subscription_count() > 0 for p in side_pubs.values()), 10.0):
            missing = sorted(t for t, p in side_pubs.items() if p.get_subscription_count() == 0)
            LOG.warning("segment_node did not subscribe %s within 10 s; playing without them", missing)
        print(f"[demo] playing {len(frames)} frames from {cfg.bag} onto {cfg.image_topic} "
              f"({'lock-step' if cfg.rate <= 0 else f'{cfg.rate:g}x bag rate'})", flush=True)
        t_start = time.monotonic()
        stamp0 = frames[0][0] if frames else 0
        for i, (stamp, _type, raw) in enumerate(frames):
            if cfg.rate > 0:
                due = t_start + (stamp - stamp0) / 1e9 / cfg.rate
                spin_until(lambda: time.monotonic() >= due, max(0.0, due - time.monotonic()) + 0.01)
            for topic, side_raw in side_by_stamp.get(stamp, ()):
                side_pubs[topic].publish(side_raw)  # depth before color: the node pairs them at once
            pub.publish(raw)
            if cfg.rate <= 0:
                spin_until(lambda: stamp in rec.semantic, 30.0)
        spin_until(lambda: frames and frames[-1][0] in rec.semantic, 5.0)
        if depth:  # a cloud leaves the node after the label images of its frame
            spin_until(lambda: all(s in rec.points for s in rec.semantic if s in side_by_stamp), 5.0)
        wall = time.monotonic() - t_start
        spin_until(lambda: False, 1.2)  # one more diagnostics period
        rec.diagnostics = diag.latest()
        return rec, wall


def write_visuals(rec: Recorded, out: Path, frames: Optional[list[tuple[int, str, bytes]]] = None,
                  gt_sem: Optional[dict] = None, gt_pan: Optional[dict] = None,
                  max_gif_frames: int = 100, panel_width: int = 320) -> list[Path]:
    """overlay/NNNN.png per output frame, an animated preview.gif and preview_tracks.json.

    Each GIF frame shows, side by side at ``panel_width`` pixels each: the camera input (decoded
    from ``frames``), the node's prediction (panoptic colours with instance outlines and each
    instance's id at its centroid, else the semantic classes) and the ground truth (``gt_pan``,
    else ``gt_sem``). Without ``frames`` the GIF shows the node's overlay alone.
    ``preview_tracks.json`` lists, per GIF frame, the stamp and the panoptic ids drawn.
    """
    import cv2
    from PIL import Image as PILImage

    odir = out / "overlay"
    odir.mkdir(parents=True, exist_ok=True)
    paths, thumbs, drawn = [], [], []
    raw_by_stamp = {stamp: (msgtype, raw) for stamp, msgtype, raw in (frames or [])}
    for i, stamp in enumerate(sorted(rec.overlay)):
        img = rec.overlay[stamp]
        p = odir / f"{i:04d}.png"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(p)
        if len(thumbs) >= max_gif_frames:
            continue
        ids: list[int] = []
        if stamp in raw_by_stamp:
            panels = [("input", _decode(*raw_by_stamp[stamp])), ("prediction", _colorize(rec.panoptic.get(stamp), rec.semantic.get(stamp)))]
            if (gt_pan and stamp in gt_pan) or (gt_sem and stamp in gt_sem):
                panels.append(("ground truth", _colorize((gt_pan or {}).get(stamp), (gt_sem or {}).get(stamp))))
            sheet, ids = _side_by_side(panels, panel_width, ids_of=("prediction", rec.panoptic.get(stamp)))
        else:
            sheet, _ = _side_by_side([("overlay", img)], panel_width)
        thumbs.append(PILImage.fromarray(sheet))
        drawn.append({"stamp_ns": int(stamp), "ids": ids})
    if thumbs:
        thumbs[0].save(out / "preview.gif", save_all=True, append_images=thumbs[1:], duration=100, loop=0)
        (out / "preview_tracks.json").write_text(json.dumps({"frames": drawn}, indent=1))
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


def instance_centroids(panoptic: np.ndarray, label_divisor: int = 1000) -> dict[int, tuple[float, float]]:
    """``{panoptic id: (x, y) mean pixel position}`` of every instance (id % label_divisor > 0) of a
    (H, W) panoptic id image; stuff and crowd (instance 0) are left out."""
    pan = np.asarray(panoptic).astype(np.int64, copy=False)
    ids, inverse = np.unique(pan, return_inverse=True)
    inverse = inverse.reshape(pan.shape)
    ys, xs = np.indices(pan.shape)
    count = np.bincount(inverse.ravel(), minlength=len(ids))
    cx = np.bincount(inverse.ravel(), weights=xs.ravel(), minlength=len(ids)) / np.maximum(count, 1)
    cy = np.bincount(inverse.ravel(), weights=ys.ravel(), minlength=len(ids)) / np.maximum(count, 1)
    return {int(i): (float(cx[k]), float(cy[k])) for k, i in enumerate(ids) if i % label_divisor > 0}


def draw_track_ids(tile: np.ndarray, panoptic: np.ndarray, label_divisor: int = 1000) -> list[int]:
    """Write each instance's number (``id % label_divisor``: the track id when the node tracks) at its
    centroid on ``tile`` ((h, w, 3) uint8, any size: centroids are scaled from the panoptic image),
    white on a black outline so it reads on any colour. Returns the panoptic ids drawn, sorted."""
    import cv2

    sy, sx = tile.shape[0] / panoptic.shape[0], tile.shape[1] / panoptic.shape[1]
    centroids = instance_centroids(panoptic, label_divisor)
    for pid, (x, y) in sorted(centroids.items()):
        text = str(pid % label_divisor)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        org = (int(round(x * sx - tw / 2)), int(round(y * sy + th / 2)))
        cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return sorted(centroids)


def _side_by_side(panels: list[tuple[str, Optional[np.ndarray]]], width: int,
                  ids_of: tuple[str, Optional[np.ndarray]] = ("", None)) -> tuple[np.ndarray, list[int]]:
    """Resize each (H, W, 3) panel to ``width`` pixels wide, caption it, and concatenate them.

    ``ids_of`` = (panel name, (H, W) panoptic ids): that panel gets its instance ids drawn
    (:func:`draw_track_ids`). Returns the sheet and the ids drawn.
    """
    import cv2

    drawn: list[int] = []
    tiles = []
    ref = next(img for _name, img in panels if img is not None)
    height = max(1, int(round(ref.shape[0] * width / ref.shape[1])))
    for name, img in panels:
        if img is None:
            tile = np.zeros((height, width, 3), np.uint8)
        else:
            interp = cv2.INTER_AREA if name == "input" else cv2.INTER_NEAREST
            tile = cv2.resize(np.ascontiguousarray(img), (width, height), interpolation=interp)
            if name == ids_of[0] and ids_of[1] is not None:
                drawn = draw_track_ids(tile, ids_of[1])
        cv2.putText(tile, name, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, name, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1), drawn


def run_demo(cfg: DemoConfig) -> dict:
    """Run the whole demo; returns the summary dict (also written to OUT/summary.json)."""
    from .demo_eval import evaluate_recorded

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    frames, gt_sem, gt_pan = read_bag(cfg)
    if not frames:
        raise RuntimeError(f"no camera messages on {cfg.image_topic} in {cfg.bag}")
    side = read_side_topics(cfg, {stamp for stamp, _t, _r in frames})
    rec, wall = play_and_record(cfg, frames, out / "node.log", side)
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
        "tracking": bool(cfg.tracking and rec.panoptic and _is_panoptic(cfg.model)),
        **{k: report.get(k) for k in ("clouds", "cloud_points_total", "cloud_points_median")},
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
        f"labeled cloud      : {s.get('clouds') or 0} clouds, median {f(s.get('cloud_points_median'), '.0f')} points "
        f"per cloud ({f(s.get('cloud_points_total'), '.0f')} in all; per class in report.md)",
        f"outputs            : {s['out_dir']}/ (overlay/*.png, preview.gif, report.md, report.json)",
    ])

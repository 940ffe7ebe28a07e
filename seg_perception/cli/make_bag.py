"""``seg-perception make-bag``: turn an image folder (+ Cityscapes-style GT) into a rosbag2.

Topics written (all stamped ``start + i / rate``, header and bag time equal):

* ``--topic`` (default ``/camera/image_raw``): ``sensor_msgs/Image`` rgb8, or with
  ``--compressed`` a ``sensor_msgs/CompressedImage`` (jpeg or png) on ``<topic>/compressed``;
* ``/gt/semantic``: mono8 train ids (from ``*_gtFine_labelIds.png``), when ``--gt-dir`` is given;
* ``/gt/panoptic``: 32SC1 ``train_id * 1000 + instance`` (from ``*_gtFine_instanceIds.png``);
* ``/image_name``: ``std_msgs/String`` with the image file name (lets ``eval-bag`` match folder
  GT by name).

GT files are matched to images by Cityscapes name (``<key>_leftImg8bit.png`` <->
``<key>_gtFine_labelIds.png``), or by sorted order when no names match and the counts agree.
"""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

HELP = "turn an image folder (+ optional Cityscapes-style GT) into a rosbag2 (mcap or sqlite3)"

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
GT_SEMANTIC_TOPIC = "/gt/semantic"
GT_PANOPTIC_TOPIC = "/gt/panoptic"
NAME_TOPIC = "/image_name"
DEFAULT_START_S = 1_700_000_000.0
LOG = logging.getLogger("seg_perception.make_bag")


def find_images(images_dir: Path) -> list[Path]:
    """Image files under ``images_dir`` (recursive), sorted by relative path; GT files excluded."""
    if not images_dir.is_dir():
        raise ValueError(f"--images {str(images_dir)!r} is not a directory")
    files = [
        p for p in images_dir.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and "_gtFine_" not in p.name
    ]
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_EXTENSIONS)} images under {str(images_dir)!r}")
    return sorted(files, key=lambda p: p.relative_to(images_dir).as_posix())


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def pair_gt(images: list[Path], gt_dir: Path) -> list[Optional[object]]:
    """GT files per image: by Cityscapes name, else by order when the counts agree.

    Images without a GT file (name matching) are logged by name.
    """
    from seg_perception.eval.gt import find_cityscapes_gt, strip_image_suffix

    files = find_cityscapes_gt(gt_dir)
    by_key = {f.key: f for f in files}
    named = [by_key.get(strip_image_suffix(p.stem)) for p in images]
    if any(f is not None for f in named):
        missing = [p.name for p, f in zip(images, named) if f is None]
        if missing:
            LOG.warning("%d of %d images have no GT file in %s (no /gt/* messages for them): %s%s", len(missing),
                        len(images), gt_dir, ", ".join(missing[:20]), " ..." if len(missing) > 20 else "")
        return named
    if len(files) != len(images):
        raise ValueError(
            f"GT file names in {str(gt_dir)!r} match no image name and there are {len(files)} GT files for "
            f"{len(images)} images; name them <key>_gtFine_labelIds.png after <key>_leftImg8bit.png or give one per image"
        )
    return list(files)


def make_bag(
    images_dir: Path,
    out: Path,
    *,
    gt_dir: Optional[Path] = None,
    compressed: Optional[str] = None,
    rate_hz: float = 10.0,
    storage: str = "mcap",
    topic: str = "/camera/image_raw",
    frame_id: str = "camera",
    label_set: str = "cityscapes",
    start_s: float = DEFAULT_START_S,
) -> dict:
    """Write the bag; returns ``{"path", "frames", "gt_frames", "topics", "missing_gt"}``.

    The bag is written under a temporary folder beside ``out`` and moved to ``out`` only when
    complete, so a failure leaves no partial bag (and a rerun does not find ``out`` taken).
    ``missing_gt`` lists the image file names without a GT file (with ``gt_dir``).
    """
    from seg_perception.datasets.labels import get_label_set

    if rate_hz <= 0:
        raise ValueError(f"--rate must be > 0 Hz, got {rate_hz}")
    images = find_images(Path(images_dir))
    gts = pair_gt(images, Path(gt_dir)) if gt_dir is not None else [None] * len(images)
    labels = get_label_set(label_set)
    image_topic = f"{topic.rstrip('/')}/compressed" if compressed else topic
    period_ns = int(round(1e9 / rate_hz))
    t0 = int(round(start_s * 1e9))
    out = Path(out)
    if out.exists():
        raise ValueError(f"--out {str(out)!r} exists already; choose a new path or delete it")
    # Only make-bag writes this folder; one left by a killed run is stale.
    staging = out.parent / f".{out.name}.make-bag-partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        n_gt, topics = _write_frames(staging / out.name, images, gts, labels, storage=storage, compressed=compressed,
                                     image_topic=image_topic, frame_id=frame_id, t0=t0, period_ns=period_ns)
        (staging / out.name).rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    missing = [p.name for p, g in zip(images, gts) if g is None] if gt_dir is not None else []
    return {"path": str(out), "frames": len(images), "gt_frames": n_gt, "topics": topics, "missing_gt": missing}


def _write_frames(path: Path, images: list[Path], gts: list, labels, *, storage: str, compressed: Optional[str],
                  image_topic: str, frame_id: str, t0: int, period_ns: int) -> tuple[int, dict[str, int]]:
    """Write every image (+ name, + GT) into a new bag at ``path``; returns (GT frames, topic counts)."""
    from std_msgs.msg import String

    from seg_perception.bag.write import BagWriter
    from seg_perception.eval.gt import load_cityscapes_gt

    n_gt = 0
    with BagWriter(path, storage=storage) as bag:
        for i, (image, gtf) in enumerate(zip(images, gts)):
            stamp = t0 + i * period_ns
            rgb = _read_rgb(image)
            if compressed:
                bag.write_compressed(image_topic, rgb, compressed, stamp, frame_id)
            else:
                bag.write_image(image_topic, rgb, "rgb8", stamp, frame_id)
            bag.write(NAME_TOPIC, String(data=image.name), stamp)
            if gtf is None:
                continue
            gt = load_cityscapes_gt(gtf, labels)
            if gt.shape != rgb.shape[:2]:
                raise ValueError(
                    f"GT {gtf.label_ids} is {gt.shape[0]}x{gt.shape[1]} but image {image} is "
                    f"{rgb.shape[0]}x{rgb.shape[1]}; GT must have the image's size"
                )
            bag.write_image(GT_SEMANTIC_TOPIC, gt.semantic, "mono8", stamp, frame_id)
            if gt.panoptic is not None:
                bag.write_image(GT_PANOPTIC_TOPIC, gt.panoptic.astype(np.int32), "32SC1", stamp, frame_id)
            n_gt += 1
        topics = bag.counts
    return n_gt, topics


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, type=Path, help="folder of .png/.jpg images (searched recursively, sorted by path)")
    p.add_argument("--gt-dir", type=Path, help="Cityscapes-style GT folder (*_gtFine_labelIds.png, optional *_gtFine_instanceIds.png)")
    p.add_argument("--out", required=True, type=Path, help="bag directory to create (must not exist)")
    p.add_argument("--compressed", nargs="?", const="jpeg", choices=["jpeg", "png"],
                   help="write sensor_msgs/CompressedImage on <topic>/compressed (default format jpeg)")
    p.add_argument("--rate", type=float, default=10.0, help="frame rate in Hz used for the stamps (default 10)")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage (default mcap)")
    p.add_argument("--topic", default="/camera/image_raw", help="image topic (default /camera/image_raw)")
    p.add_argument("--frame-id", default="camera", help="header frame_id (default camera)")
    p.add_argument("--label-set", default="cityscapes", help="label set mapping GT label ids to train ids")
    p.add_argument("--start-time", type=float, default=DEFAULT_START_S, help="stamp of the first frame in seconds since the epoch")


def run(args: argparse.Namespace) -> int:
    try:
        info = make_bag(
            args.images, args.out, gt_dir=args.gt_dir, compressed=args.compressed, rate_hz=args.rate,
            storage=args.storage, topic=args.topic, frame_id=args.frame_id, label_set=args.label_set,
            start_s=args.start_time,
        )
    except (ValueError, OSError) as exc:  # BagError and GroundTruthError are ValueErrors
        print(f"make-bag: error: {exc}")
        return 2
    print(f"wrote {info['path']}: {info['frames']} frames, {info['gt_frames']} with GT")
    if info["missing_gt"]:
        names = info["missing_gt"]
        print(f"  no GT file for {len(names)} image(s): {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
    for topic, n in sorted(info["topics"].items()):
        print(f"  {topic}: {n}")
    return 0

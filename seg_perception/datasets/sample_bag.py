"""The sample drive: a synthetic drive (:func:`seg_perception.datasets.drive.make_drive`) written as
a rosbag2 mcap file with camera intrinsics, depth and ground truth.

Rebuild the shipped copy deterministically with::

    python -m seg_perception.datasets.sample_bag --out seg_perception/data/sample_drive.mcap

Defaults: drive seed :data:`SAMPLE_SEED`, 80 frames at 10 Hz, 256 x 512 (the shipped models'
network resolution, so nothing is rescaled), zstd-compressed chunks, about 5 MB.

Every frame has the same header on every topic: stamp ``START_NS + i / rate_hz`` (bag receive
time = header stamp), frame_id :data:`FRAME_ID` (the camera's optical frame: x right, y down,
z forward). Topics:

* ``/camera/image_raw/compressed`` (:data:`IMAGE_TOPIC`): ``sensor_msgs/CompressedImage``,
  JPEG (quality :data:`JPEG_QUALITY`), format ``"rgb8; jpeg compressed bgr8"``.
* ``/camera/camera_info`` and ``/camera/depth/camera_info``: ``sensor_msgs/CameraInfo``, the same
  for both (the depth is registered to the colour camera): ideal pinhole, ``distortion_model``
  ``plumb_bob`` with all-zero ``d``, ``k = [f, 0, cx, 0, f, cy, 0, 0, 1]``,
  ``p = [f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0]``, ``r`` identity; pixel centres at integer
  coordinates (a pixel (u, v) with depth z is the point ((u - cx) z / f, (v - cy) z / f, z)).
* ``/camera/depth/image_raw``: ``sensor_msgs/Image`` ``16UC1``, depth along the optical axis in
  millimetres (rounded); 0 = no measurement (sky, far skyline, anything beyond 65.535 m).
  Exact for the rendered geometry: the ground is the plane y = camera height, vehicles are boxes,
  people and bicycles are upright boards at one depth each.
* ``/gt/semantic``: ``sensor_msgs/Image`` ``mono8``, Cityscapes train ids (no ignore pixels).
* ``/gt/panoptic``: ``sensor_msgs/Image`` ``32SC1``, ``class * 1000 + track_id`` for things
  (person 11, rider 12, car 13, truck 14, bicycle 18), ``class * 1000`` for stuff. ``track_id``
  is the object's identity for the whole drive: the same id is the same object in every frame it
  is visible in (after it leaves the view its id is never reused). A rider and its bicycle are two
  objects (``12k`` and ``18j``).

The demo (``make demo``) plays the JPEG topic into ``segment_node`` and scores its outputs
against the GT topics.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .drive import Drive, make_drive

SAMPLE_BAG_PATH = Path(__file__).resolve().parent.parent / "data" / "sample_drive.mcap"
IMAGE_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
DEPTH_TOPIC = "/camera/depth/image_raw"
DEPTH_INFO_TOPIC = "/camera/depth/camera_info"
GT_SEMANTIC_TOPIC = "/gt/semantic"
GT_PANOPTIC_TOPIC = "/gt/panoptic"
FRAME_ID = "camera_optical_frame"
#: Drive seed of the shipped sample, chosen for its content: a lane change (turn), every thing class
#: several times and every class the generator makes (a drive without a fence scores a hallucinated
#: fence pixel as a 0-IoU class).
SAMPLE_SEED = 5
SAMPLE_FRAMES = 80
JPEG_QUALITY = 90
#: Header stamp of the first frame (2023-11-14T22:13:20Z), fixed so the bag is reproducible.
START_NS = 1_700_000_000 * 1_000_000_000
_MAX_MM = np.iinfo(np.uint16).max


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """(H, W) float metres -> (H, W) uint16 millimetres; 0 (no measurement) where the depth is 0,
    not finite, or beyond 65.535 m."""
    mm = np.rint(np.nan_to_num(np.asarray(depth, np.float64), nan=0.0, posinf=0.0) * 1000.0)
    return np.where((mm > 0) & (mm <= _MAX_MM), mm, 0).astype(np.uint16)


def camera_info(K: np.ndarray, hw: tuple[int, int], header: Any) -> Any:
    """``sensor_msgs.msg.CameraInfo`` of an ideal pinhole camera with matrix ``K`` (3, 3)."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.header = header
    info.height, info.width = int(hw[0]), int(hw[1])
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [float(v) for v in np.asarray(K, np.float64).ravel()]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = K
    info.p = [float(v) for v in P.ravel()]
    return info


def write_drive_bag(drive: Drive, path: str | os.PathLike, *, rate_hz: float = 10.0,
                    jpeg_quality: int = JPEG_QUALITY, compression: Optional[str] = "zstd") -> Path:
    """Write ``drive`` to the new mcap file ``path`` with the topics of the module docstring."""
    from ..core.conversions import numpy_to_compressed, numpy_to_image
    from ..bag.write import BagWriter, make_header

    period_ns = int(round(1e9 / rate_hz))
    with BagWriter(path, storage="mcap", compression=compression) as bag:
        for i, f in enumerate(drive.frames):
            stamp = START_NS + i * period_ns
            header = make_header(stamp, FRAME_ID)
            bag.write(IMAGE_TOPIC, numpy_to_compressed(f.image, "jpeg", header, quality=jpeg_quality), stamp)
            bag.write(CAMERA_INFO_TOPIC, camera_info(drive.K, drive.hw, header), stamp)
            bag.write(DEPTH_TOPIC, numpy_to_image(depth_to_mm(f.depth), "16UC1", header), stamp)
            bag.write(DEPTH_INFO_TOPIC, camera_info(drive.K, drive.hw, header), stamp)
            bag.write(GT_SEMANTIC_TOPIC, numpy_to_image(f.semantic, "mono8", header), stamp)
            bag.write(GT_PANOPTIC_TOPIC, numpy_to_image(f.panoptic.astype(np.int32), "32SC1", header), stamp)
    return Path(path)


def write_sample_bag(path: str | os.PathLike, *, n_frames: int = SAMPLE_FRAMES, hw: tuple[int, int] = (256, 512),
                     seed: int = SAMPLE_SEED, rate_hz: float = 10.0, jpeg_quality: int = JPEG_QUALITY,
                     compression: Optional[str] = "zstd", overwrite: bool = False) -> Path:
    """Render ``make_drive(seed, hw, n_frames, fps=rate_hz)`` and write it to the mcap file ``path``.

    Args:
        path: output ``.mcap`` file (a path without that suffix becomes a rosbag2 directory).
        n_frames: frames to write (>= 1).
        hw: (height, width) the frames are rendered and stored at.
        seed: drive seed (the same arguments always give the same bag contents).
        rate_hz: frame rate of the motion and the header stamps (> 0).
        jpeg_quality: JPEG quality of the camera images (1..100).
        compression: ``"zstd"`` chunk compression or None.
        overwrite: replace an existing file at ``path``.

    Returns:
        The path written.

    Raises:
        ValueError: bad ``n_frames`` / ``rate_hz`` / ``jpeg_quality``, or ``path`` exists and
            ``overwrite`` is False.
    """
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames!r}")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality!r}")
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise ValueError(f"{str(path)!r} exists; pass overwrite=True or choose another path")
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    drive = make_drive(seed, hw, int(n_frames), fps=rate_hz)
    return write_drive_bag(drive, path, rate_hz=rate_hz, jpeg_quality=int(jpeg_quality), compression=compression)


def main(argv: list[str] | None = None) -> int:
    """``python -m seg_perception.datasets.sample_bag [--out OUT.mcap]``: (re)write the sample drive."""
    p = argparse.ArgumentParser(prog="python -m seg_perception.datasets.sample_bag",
                                description="write the sample drive bag (deterministic)")
    p.add_argument("--out", type=Path, default=SAMPLE_BAG_PATH, help=f"output .mcap (default {SAMPLE_BAG_PATH})")
    p.add_argument("--frames", type=int, default=SAMPLE_FRAMES, help=f"frames (default {SAMPLE_FRAMES})")
    p.add_argument("--seed", type=int, default=SAMPLE_SEED, help=f"drive seed (default {SAMPLE_SEED})")
    args = p.parse_args(argv)
    out = write_sample_bag(args.out, n_frames=args.frames, seed=args.seed, overwrite=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The sample drive: a synthetic street sequence written as a rosbag2 (mcap) with ground truth.

Topics (header stamps ``start + i / rate_hz``, bag time equal to the header stamp, frame_id
``camera``):

* ``/camera/image_raw``: ``sensor_msgs/Image`` rgb8;
* ``/gt/semantic``: ``sensor_msgs/Image`` mono8 Cityscapes train ids;
* ``/gt/panoptic``: ``sensor_msgs/Image`` 32SC1 ``class * 1000 + instance``.

Frames are rendered at ``hw`` (default 256 x 512, the resolution the shipped models are evaluated
at) and, with ``scale`` < 1, downsampled (image: area averaging; labels: nearest neighbour) before
writing. The shipped copy ``seg_perception/data/sample_drive.mcap`` holds 50 frames rendered at
256 x 512 and stored at 128 x 256 (``scale=0.5``) in zstd-compressed mcap chunks: about 3 MB.
At full 256 x 512 the same bag is ~16 MB, because the rendered texture grain and sensor noise do
not compress (rosbags closes an mcap chunk after 1 MiB, so frames are compressed one by one).
The demo plays it into the node and scores the node's output against the GT topics.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .synthetic import make_sequence

SAMPLE_BAG_PATH = Path(__file__).resolve().parent.parent / "data" / "sample_drive.mcap"
#: The shipped bag stores frames at half the rendered resolution (see the module docstring).
SHIPPED_SCALE = 0.5
IMAGE_TOPIC = "/camera/image_raw"
GT_SEMANTIC_TOPIC = "/gt/semantic"
GT_PANOPTIC_TOPIC = "/gt/panoptic"
FRAME_ID = "camera"
#: Header stamp of the first frame (2023-11-14T22:13:20Z), fixed so the bag is reproducible.
START_NS = 1_700_000_000 * 1_000_000_000


def write_sample_bag(path: str | os.PathLike, *, n_frames: int = 50, hw: tuple[int, int] = (256, 512),
                     seed: int = 0, rate_hz: float = 10.0, scale: float = 1.0,
                     compression: str | None = "zstd", overwrite: bool = False) -> Path:
    """Render ``make_sequence(seed, hw, n_frames)`` and write it to the mcap file ``path``.

    Args:
        path: output ``.mcap`` file (a path without that suffix becomes a rosbag2 directory).
        n_frames: frames to write (>= 1).
        hw: (height, width) the frames are rendered at.
        scale: resize factor applied before writing (0 < scale <= 1; 0.5 stores 128 x 256 frames
            for hw 256 x 512).
        seed: sequence seed (the same seed always gives the same frames).
        rate_hz: frame rate of the header stamps (> 0).
        compression: ``"zstd"`` chunk compression or None.
        overwrite: replace an existing file at ``path``.

    Returns:
        The path written.

    Raises:
        ValueError: bad ``n_frames`` / ``rate_hz`` / ``scale``, or ``path`` exists and ``overwrite`` is False.
    """
    from ..eval.bag import BagWriter

    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames!r}")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
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
    frames = make_sequence(seed, hw, int(n_frames), fps=rate_hz)
    period_ns = int(round(1e9 / rate_hz))
    with BagWriter(path, storage="mcap", compression=compression) as bag:
        for i, scene in enumerate(frames):
            stamp = START_NS + i * period_ns
            image, semantic, panoptic = _rescale(scene.image, scene.semantic, scene.panoptic, scale)
            bag.write_image(IMAGE_TOPIC, image, "rgb8", stamp, FRAME_ID)
            bag.write_image(GT_SEMANTIC_TOPIC, semantic, "mono8", stamp, FRAME_ID)
            bag.write_image(GT_PANOPTIC_TOPIC, panoptic, "32SC1", stamp, FRAME_ID)
    return path


def _rescale(image: np.ndarray, semantic: np.ndarray, panoptic: np.ndarray, scale: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize (H, W, 3) image (area), (H, W) semantic and panoptic (nearest) by ``scale``."""
    if scale == 1.0:
        return image, semantic, panoptic
    h, w = semantic.shape
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            cv2.resize(semantic, size, interpolation=cv2.INTER_NEAREST),
            cv2.resize(panoptic, size, interpolation=cv2.INTER_NEAREST))


def main(argv: list[str] | None = None) -> int:
    """``python -m seg_perception.datasets.sample_bag [OUT.mcap]``: (re)write the sample bag."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    out = Path(args[0]) if args else SAMPLE_BAG_PATH
    p = write_sample_bag(out, scale=SHIPPED_SCALE, overwrite=True)
    print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

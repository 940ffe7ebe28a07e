"""Small bags for the bag tests: recognisable frames at 10 Hz."""
from pathlib import Path

import numpy as np

from seg_perception.bag.write import BagWriter

T0 = 1_700_000_000_000_000_000
DT = 100_000_000  # 10 Hz


def frame_pixels(i, shape=(48, 64, 3)):
    """Image i: constant value i*10 so each frame is recognisable after reading back."""
    return np.full(shape, i * 10, dtype=np.uint8)


def make_bag(path, storage, n=6, shape=(48, 64, 3)):
    with BagWriter(path, storage=storage) as bag:
        for i in range(n):
            bag.write_image("/cam", frame_pixels(i, shape), "rgb8", T0 + i * DT, "camera")
            bag.write_image("/gt", np.full(shape[:2], i, np.uint8), "mono8", T0 + i * DT, "camera")
    return path


def storage_file(bag):
    files = [p for p in Path(bag).iterdir() if p.suffix in (".mcap", ".db3")]
    assert len(files) == 1
    return files[0]


def first_byte(frame):
    return int(np.asarray(frame.msg.data)[0])

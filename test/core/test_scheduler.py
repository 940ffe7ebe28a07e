"""CameraBatcher: newest frame per camera, fair batches capped by max_batch."""
from __future__ import annotations

import threading
import time

import pytest

from seg_perception.core.scheduler import CameraBatcher


def test_each_camera_keeps_only_its_newest_frame_and_counts_its_drops():
    b = CameraBatcher(["front", "left"], max_batch=4)
    assert b.put("front", 1) is False
    assert b.put("front", 2) is True  # replaced 1, untaken
    assert b.put("left", 10) is False
    assert b.depth == 2
    assert sorted(b.take(0)) == [("front", 2), ("left", 10)]
    counts = b.counts()
    assert (counts["front"].received, counts["front"].dropped, counts["front"].taken) == (2, 1, 1)
    assert (counts["left"].received, counts["left"].dropped, counts["left"].taken) == (1, 0, 1)
    assert b.take(0.01) == []


def test_a_fast_camera_cannot_starve_a_slow_one_when_the_batch_is_capped():
    """Worker takes one frame per step (max_batch=1); 'fast' publishes every step, 'mid' every other
    step, 'slow' every 6th. Each camera must be served, and a slow frame waits at most 2 takes
    (ceil(3 cameras / 1))."""
    b = CameraBatcher(["fast", "mid", "slow"], max_batch=1)
    served = {"fast": 0, "mid": 0, "slow": 0}
    slow_put_at = None
    worst_wait = 0
    for step in range(600):
        b.put("fast", step)
        if step % 2 == 0:
            b.put("mid", step)
        if step % 6 == 0:
            b.put("slow", step)
            slow_put_at = step
        (cam, item), = b.take(0)
        served[cam] += 1
        if cam == "slow":
            assert item == slow_put_at
            worst_wait = max(worst_wait, step - slow_put_at)
    counts = b.counts()
    assert counts["slow"].dropped == 0 and served["slow"] == 100  # every slow frame processed
    assert worst_wait <= 2
    assert served["fast"] >= 150 and served["mid"] >= 150  # the others keep their share


def test_the_cap_is_rotated_round_robin():
    b = CameraBatcher(["a", "b", "c"], max_batch=2)
    seen = []
    for _ in range(6):
        for cam in "abc":
            b.put(cam, cam)
        seen.append(sorted(c for c, _ in b.take(0)))
    # every camera appears in 4 of the 6 batches of two (3 cameras x 6 rounds, 12 slots)
    for cam in "abc":
        assert sum(cam in s for s in seen) == 4, seen


def test_threads_at_unequal_rates_all_get_served():
    b = CameraBatcher(["fast", "slow"], max_batch=1)
    stop = threading.Event()

    def produce(cam: str, period: float) -> None:
        i = 0
        while not stop.is_set():
            b.put(cam, i)
            i += 1
            time.sleep(period)

    threads = [threading.Thread(target=produce, args=("fast", 0.002)), threading.Thread(target=produce, args=("slow", 0.03))]
    for t in threads:
        t.start()
    taken = {"fast": 0, "slow": 0}
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        for cam, _ in b.take(0.1):
            taken[cam] += 1
            time.sleep(0.01)  # the "inference": slower than the fast camera
    stop.set()
    for t in threads:
        t.join()
    counts = b.counts()
    assert taken["slow"] >= 0.8 * (counts["slow"].received - 1), (taken, counts)
    assert counts["slow"].dropped <= 1
    assert taken["fast"] > taken["slow"]  # the fast camera still gets the remaining capacity
    assert counts["fast"].dropped > 0  # its backlog is dropped, not queued


def test_clear_close_and_bad_arguments():
    b = CameraBatcher(["a"], max_batch=1)
    b.put("a", 1)
    assert b.clear() == {"a": 1} and b.depth == 0 and b.counts()["a"].dropped == 1
    with pytest.raises(KeyError, match="unknown camera 'x'; cameras: a"):
        b.put("x", 1)
    t0 = time.monotonic()
    threading.Timer(0.05, b.close).start()
    assert b.take(5.0) == [] and time.monotonic() - t0 < 2.0
    with pytest.raises(ValueError, match="unique"):
        CameraBatcher(["a", "a"], max_batch=1)
    with pytest.raises(ValueError, match="max_batch must be an integer >= 1, got 0"):
        CameraBatcher(["a"], max_batch=0)
    with pytest.raises(ValueError, match="at least one camera"):
        CameraBatcher([], max_batch=1)

"""Newest-frame slot and node statistics (ROS-free)."""
import threading

from seg_perception.ros.stats import LatestSlot, NodeStats


def test_slot_keeps_newest_and_counts_overwrites():
    s = LatestSlot()
    assert s.put(1) is False
    assert s.put(2) is True  # 1 was never taken: dropped
    assert s.depth == 1
    assert s.take(0.01) == 2
    assert s.take(0.01) is None
    assert s.depth == 0


def test_slot_bounded_under_concurrent_producer():
    s, stats = LatestSlot(), NodeStats()
    taken = []
    stop = threading.Event()

    def consumer():
        while not stop.is_set():
            item = s.take(0.01)
            if item is not None:
                taken.append(item)

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(5000):
        stats.on_received(s.put(i), s.depth)
    stop.set()
    t.join()
    leftover = s.take(0.0)
    n_taken = len(taken) + (leftover is not None)
    assert stats.max_queue_depth <= 1
    assert stats.received == 5000
    assert stats.dropped + n_taken == 5000  # every frame is either processed or counted as dropped
    assert taken == sorted(taken)


def test_snapshot_counts_and_percentiles():
    st = NodeStats()
    for v in range(1, 11):
        st.on_processed({"total_ms": float(v)})
    st.on_rejected("bad_step")
    st.on_rejected("bad_step")
    st.on_error("RuntimeError")
    snap = st.snapshot()
    assert snap["frames_processed"] == 10
    assert snap["rejected.bad_step"] == 2 and snap["frames_rejected"] == 2
    assert snap["error.RuntimeError"] == 1
    assert snap["total_ms.median_ms"] == 5.5
    assert 9.0 <= snap["total_ms.p90_ms"] <= 10.0

"""StampMatcher on interleaved, late, jittered and missing streams (stamps in ms for readability)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from seg_perception.core.stamp_match import StampMatcher, stamp_ns

MS = 1_000_000


def push_all(m, events):
    out = []
    for stream, t in events:
        out += m.push(stream, t * MS, f"{stream}@{t}")
    return out


def pairs(matches):
    return [(x.pivot, x.others.get("depth"), x.others.get("info")) for x in matches]


def test_interleaved_with_jitter_pairs_nearest():
    m = StampMatcher(("depth",), tolerance_ns=10 * MS)
    # 30 Hz color and depth, depth stamped 3 ms later, arriving in either order
    ev = []
    for k in range(5):
        c, d = 33 * k, 33 * k + 3
        ev += [("color", c), ("depth", d)] if k % 2 else [("depth", d), ("color", c)]
    got = pairs(push_all(m, ev))
    assert got == [(f"color@{33 * k}", f"depth@{33 * k + 3}", None) for k in range(5)]
    assert m.stats()["matched"] == 5 and not m.drops


def test_waits_until_nearest_is_decided():
    m = StampMatcher(("depth",), tolerance_ns=20 * MS)
    assert m.push("color", 100 * MS, "c100") == []
    assert m.push("depth", 90 * MS, "d90") == []  # within tolerance, but a nearer one may follow
    out = m.push("depth", 104 * MS, "d104")
    assert pairs(out) == [("c100", "d104", None)] and out[0].offsets_ns == {"depth": 4 * MS}
    # exact stamp: decided at once
    m.push("color", 133 * MS, "c133")
    assert pairs(m.push("depth", 133 * MS, "d133")) == [("c133", "d133", None)]


def test_missing_depth_drops_color_and_counts():
    m = StampMatcher(("depth",), tolerance_ns=5 * MS)
    got = pairs(push_all(m, [("color", 0), ("depth", 1), ("color", 33), ("color", 66), ("depth", 67)]))
    # depth for 33 never came: 67 arriving decides that 33's nearest (1 or 67) is out of tolerance
    assert got == [("color@0", "depth@1", None), ("color@66", "depth@67", None)]
    assert m.drops["color:no_match:depth"] == 1


def test_late_color_and_depth_lagging_beyond_buffer():
    m = StampMatcher(("depth",), tolerance_ns=5 * MS, buffer_size=3)
    push_all(m, [("color", 0), ("depth", 0)])
    assert m.push("color", -10 * MS, "old") == [] and m.drops["color:late"] == 1
    # depth stream stalls: only buffer_size colors wait, older ones are dropped and counted
    assert push_all(m, [("color", t) for t in (33, 66, 99, 132, 165)]) == []
    assert m.drops["color:overflow"] == 2 and m.stats()["buffered"]["color"] == 3
    got = pairs(push_all(m, [("depth", 100), ("depth", 133), ("depth", 166)]))
    # colors 33 and 66 were dropped by the overflow; the three buffered ones pair as depth arrives
    assert got == [("color@99", "depth@100", None), ("color@132", "depth@133", None),
                   ("color@165", "depth@166", None)]
    assert m.drops["color:no_match:depth"] == 0 and m.stats()["buffered"]["color"] == 0


def test_camera_info_stream_and_out_of_order_depth():
    m = StampMatcher(("depth", "info"), tolerance_ns=8 * MS)
    ev = [("info", 0), ("color", 0), ("depth", 2), ("depth", 35), ("color", 33), ("info", 33),
          ("depth", 30), ("color", 66), ("info", 66), ("depth", 70)]
    got = pairs(push_all(m, ev))
    # depth@30 arrived after depth@35 (out of order, inserted in stamp order): 33 pairs with 35,
    # the nearer one (|35 - 33| = 2 < |30 - 33| = 3)
    assert got == [("color@0", "depth@2", "info@0"), ("color@33", "depth@35", "info@33"),
                   ("color@66", "depth@70", "info@66")]
    assert m.drops["depth:out_of_order"] == 1


def test_time_jump_backwards_resets_instead_of_dropping_everything():
    # A bag played in a loop: stamps restart at 0. Without a reset every later color would be
    # "late" (older than the last match) and dropped forever.
    m = StampMatcher(("depth",), tolerance_ns=5 * MS, jump_ns=500 * MS)
    first = push_all(m, [("color", 5000), ("depth", 5001), ("color", 5033)])
    again = push_all(m, [("color", 0), ("depth", 1), ("color", 33), ("depth", 34), ("depth", 70)])
    assert pairs(first) == [("color@5000", "depth@5001", None)]
    assert pairs(again) == [("color@0", "depth@1", None), ("color@33", "depth@34", None)]
    assert m.stats()["time_jumps"] == 1 and m.drops["color:reset"] == 1 and m.drops["depth:reset"] == 1
    # small reorderings within jump_ns are still plain late drops
    assert m.push("color", 20 * MS, "c20") == [] and m.drops["color:late"] == 1


def test_bad_arguments_and_stamp_conversion():
    with pytest.raises(ValueError, match="tolerance_ns"):
        StampMatcher(("depth",), tolerance_ns=-1)
    with pytest.raises(ValueError, match="jump_ns"):
        StampMatcher(("depth",), tolerance_ns=10, jump_ns=5)
    with pytest.raises(ValueError, match="pivot"):
        StampMatcher(("color",), tolerance_ns=1)
    with pytest.raises(ValueError, match="unknown stream 'dpeth'"):
        StampMatcher(("depth",), tolerance_ns=1).push("dpeth", 0, None)

    class T:
        sec, nanosec = 3, 250
    assert stamp_ns(T) == 3_000_000_250


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000))
def test_random_streams_pair_nearest_within_tolerance_and_account_for_every_frame(seed):
    # Property over random rates, jitter, gaps and arrival interleavings (each stream in order):
    # every emitted pair is within tolerance and uses the depth message nearest to the color
    # stamp among all depth messages; every color is either matched or counted as dropped.
    rng = np.random.default_rng(seed)
    tol = int(rng.integers(1, 15))
    colors = sorted(set(int(v) for v in np.cumsum(rng.integers(20, 40, 30))))
    depth = sorted(set(int(c + rng.integers(-20, 21)) for c in colors if rng.random() < 0.8))
    events = [(t + int(rng.integers(0, 30)), "color", t) for t in colors]
    events += [(t + int(rng.integers(0, 30)), "depth", t) for t in depth]
    # per-stream order is kept: sort arrival times within each stream
    by_stream = {}
    for arrival, s, t in sorted(events, key=lambda e: e[0]):
        by_stream.setdefault(s, []).append(arrival)
    ordered = []
    for s, stamps in (("color", colors), ("depth", depth)):
        ordered += list(zip(sorted(by_stream.get(s, [])), [s] * len(stamps), stamps))
    ordered.sort(key=lambda e: e[0])
    m = StampMatcher(("depth",), tolerance_ns=tol * MS, buffer_size=64)
    got = []
    for _arrival, s, t in ordered:
        got += m.push(s, t * MS, t)
    for match in got:
        d = match.others["depth"]
        assert abs(d - match.pivot) <= tol
        best = min(abs(x - match.pivot) for x in depth)
        assert abs(d - match.pivot) == best
    dropped = sum(v for k, v in m.drops.items() if k.startswith("color:"))
    assert len(got) + dropped + m.stats()["buffered"]["color"] == len(colors)
    assert len({x.pivot for x in got}) == len(got)

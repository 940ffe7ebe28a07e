"""Smoke test of the node-overhead benchmark (a real node process; numbers are not asserted)."""
import math

import pytest

from seg_perception.tools.bench_node import NodeOverheadConfig, format_node_overhead, run_node_overhead

pytestmark = pytest.mark.ros


def test_node_overhead_report_is_consistent():
    r = run_node_overhead(NodeOverheadConfig(model="deeplabv3plus_mobilenetv2", weights="none", resolution=(32, 64),
                                             camera=(48, 64), frames=3, warmup=1, visualize=True))
    assert r["frames"] == 4
    seg, node = r["segmenter_total_median_ms"], r["node_total_median_ms"]
    assert math.isfinite(seg) and math.isfinite(node) and seg > 0
    assert node >= seg * 0.9  # the node's time per frame contains the Segmenter's
    assert r["publish_median_ms"] >= 0 and r["convert_median_ms"] >= 0
    assert math.isclose(r["overhead_fraction"], node / seg - 1)
    assert "node overhead" in format_node_overhead(r)


def test_startup_benchmark_reports_the_first_answered_frame():
    """`python -m seg_perception.tools.bench_node`: process start -> first answered frame, for a preset."""
    from seg_perception.tools.bench_node import run_startup
    from seg_perception.ros.launch_config import config_dir

    r = run_startup(config_dir() / "deeplabv3plus_mobilenetv2.yaml", camera=(120, 160))
    assert r["preset"] == "deeplabv3plus_mobilenetv2"
    # the model is loaded and warmed before the first frame; the node's clock starts at its own
    # process start, ours just before spawning it
    assert 0 < r["warmup_s"] <= r["configure_s"] < r["first_frame_s"] <= r["first_answer_wall_s"] + 0.5
    assert r["configured_after_s"] <= r["first_frame_s"]

"""bench_panoptic_post: network and camera-resolution panoptic post-processing times, before / after."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from seg_perception.core.panoptic import camera_postprocess
from seg_perception.tools import bench_panoptic_post as bpp

ROOT = Path(bpp.__file__).resolve().parents[2]


def _in_git_checkout() -> bool:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.fixture(scope="module")
def small():
    from seg_perception.core.segmenter import build_segmenter
    from seg_perception.tools.bench import _drive_frames

    seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights=None, resolution=(128, 256), backend="torch")
    yield seg, _drive_frames((270, 480), 2)
    seg.close()


def test_measure_reports_stages_agreement_and_the_baseline(small):
    seg, frames = small

    def exact(*a, **kw):  # a "baseline" whose ids are the oracle's: agreement 1 by construction
        return camera_postprocess(*a, exact=True, **kw)

    r = bpp.measure(seg, frames, rounds=1, baseline=exact)
    assert r["heads_hw"] == [128, 256]
    assert r["inference_ms"] > 0 and r["post_ms"] > 0 and r["baseline_post_ms"] > 0
    assert {"upsample_labels", "centers", "probability", "statistics", "ids", "segments"} <= set(r["post_stages_ms"])
    assert all(v >= 0 for v in r["post_stages_ms"].values())
    # the stages of the calling thread add up to the wall time (the worker's overlap them)
    worker = ("centers", "probability", "exact_offsets", "stuff_statistics", "class_ids", "thing_statistics",
              "segments")
    own = sum(v for k, v in r["post_stages_ms"].items() if k not in worker)
    assert own <= r["post_ms"] * 1.2
    assert r["post_minus_upsample_ms"] == pytest.approx(r["post_ms"] - r["post_stages_ms"]["upsample_labels"], abs=1e-2)
    assert r["baseline_agreement_min"] == 1.0
    assert r["agreement_min"] >= 0.995
    assert r["post_over_inference"] == pytest.approx(r["post_ms"] / r["inference_ms"], rel=1e-3)


def test_bad_arguments_are_refused(small):
    seg, frames = small
    with pytest.raises(ValueError, match="rounds"):
        bpp.measure(seg, frames, rounds=0)
    with pytest.raises(ValueError, match="fp16"):
        bpp._variant("fp16")
    with pytest.raises(ValueError, match="no-such-rev"):
        bpp.load_baseline("no-such-rev")

    for error in (TypeError("not enough arguments: expected 7, got 6"),  # a kernel's signature changed since
                  ValueError("too many values to unpack (expected 2)")):  # or what it returns

        def stale(*a, **kw):  # an old camera.py beside today's kernels
            raise error

        with pytest.raises(ValueError, match="worktree"):
            bpp.measure(seg, frames, rounds=1, baseline=stale)


@pytest.mark.skipif(not _in_git_checkout(), reason="needs the git history of this checkout")
def test_baseline_of_a_revision_runs_next_to_todays_modules(small):
    seg, frames = small
    f = bpp.load_baseline("HEAD")
    assert f is not camera_postprocess and f.__module__.startswith("seg_perception.core.panoptic._camera_")
    out = seg.infer(frames[0])
    heads = [torch.as_tensor(out[k][0]).float() for k in ("semantic", "center", "offset")]
    kw = dict(thing_ids=seg.label_set.thing_ids, cfg=seg.panoptic_cfg, label_set=seg.label_set)
    got = f(*heads, (270, 480), **kw).panoptic
    want = camera_postprocess(*heads, (270, 480), exact=True, **kw).panoptic
    assert float((got == want).double().mean()) >= 0.995

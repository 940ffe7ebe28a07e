"""Panoptic post-processing at camera resolution: stage by stage, before / after, next to the network.

``python -m seg_perception.tools.bench_panoptic_post [--model M] [--resolution 512x1024]
[--camera 1080x1920] [--variants fp32,fp32+native,int8,int8+native] [--frames 6] [--rounds 3]
[--baseline-rev REV] [--json F]``

Per variant (onnxruntime precision, ``+native``: backend option ``native_heads``): sample-drive
frames resized to the camera go through the network once each (median backend inference ms);
then, for ``rounds`` rounds and interleaved frame by frame, the current
:func:`~seg_perception.core.panoptic.camera.camera_postprocess` (total and per-stage ms via its
``stage_ms``) and, with ``--baseline-rev``, the ``camera_postprocess`` of that git revision
(loaded from ``git show REV:seg_perception/core/panoptic/camera.py`` next to today's modules).
Once per frame both are compared with the exact path (``exact=True``): the fraction of camera
pixels with equal ids. Timings are medians; compare them within one report only.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..config import parse_resolution
from ..provenance import machine_info, write_json

LOG = logging.getLogger("seg_perception.tools.bench_panoptic_post")
_CAMERA_MODULE = "seg_perception/core/panoptic/camera.py"


def load_baseline(rev: str, repo: Optional[str] = None) -> Callable:
    """``camera_postprocess`` of git revision ``rev``, imported beside today's package modules.

    The file is read with ``git show`` and loaded as ``seg_perception.core.panoptic._camera_<rev>``
    (its relative imports resolve against today's package).

    Raises:
        ValueError: ``rev`` is not a revision of the repository holding this package (names it).
    """
    root = repo or str(Path(__file__).resolve().parents[2])
    try:
        src = subprocess.run(["git", "-C", root, "show", f"{rev}:{_CAMERA_MODULE}"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise ValueError(f"--baseline-rev {rev!r}: cannot read {_CAMERA_MODULE} at that revision of {root} "
                         f"({getattr(err, 'stderr', err)!s}); pass a commit of this repository") from err
    safe = "".join(ch if ch.isalnum() else "_" for ch in rev)
    name = f"seg_perception.core.panoptic._camera_{safe}"
    path = Path(tempfile.mkdtemp(prefix="seg_baseline_")) / f"_camera_{safe}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.camera_postprocess


def _median(values: Sequence[float]) -> Optional[float]:
    return round(float(statistics.median(values)), 3) if values else None


def measure(segmenter, frames: Sequence[np.ndarray], rounds: int = 3, baseline: Optional[Callable] = None,
            agreement: bool = True) -> dict[str, Any]:
    """Network and post-processing times of one Segmenter on ``frames`` (all of one camera size).

    Args:
        segmenter: a panoptic :class:`~seg_perception.core.segmenter.Segmenter`.
        frames: (H, W, 3) uint8 RGB frames.
        rounds: timed passes over the frames (current and baseline interleaved per frame).
        baseline: another ``camera_postprocess`` (e.g. :func:`load_baseline`), or None.
        agreement: compare ids with the exact path once per frame.

    Returns:
        ``{"inference_ms", "post_ms", "post_stages_ms": {stage: median}, "post_minus_upsample_ms",
        "post_over_inference", "baseline_post_ms", "baseline_over_inference", "agreement_min",
        "baseline_agreement_min", "heads_hw"}`` (medians in ms; baseline keys None without one).
    """
    from ..core.panoptic import camera_postprocess

    if rounds < 1 or not frames:
        raise ValueError(f"rounds={rounds} and {len(frames)} frames: need rounds >= 1 and at least one frame")
    name = segmenter.backend.input_spec()[0].name
    label_set = segmenter.label_set
    kw = dict(thing_ids=label_set.thing_ids, cfg=segmenter.panoptic_cfg, label_set=label_set,
              align_corners=segmenter.align_corners)
    heads, inference = [], []
    for rgb in frames:
        x = segmenter.preprocess(rgb)
        t0 = time.perf_counter()
        out = segmenter.backend.infer({name: x})
        inference.append((time.perf_counter() - t0) * 1e3)
        heads.append([torch.as_tensor(np.asarray(out[k][0], dtype=np.float32)) for k in ("semantic", "center", "offset")])
    hw = tuple(frames[0].shape[:2])
    camera_postprocess(*heads[0], hw, **kw)  # warm-up: caches (cell maps, the bilinear probe), first-touch pages
    if baseline is not None:
        try:
            baseline(*heads[0], hw, **kw)
        except (TypeError, ValueError, AttributeError, ImportError, NameError) as err:  # ValueError: results changed
            raise ValueError(
                f"the baseline camera_postprocess does not run beside today's modules ({type(err).__name__}: {err}): "
                "a kernel or helper it calls changed since; compare with a worktree of that revision instead"
            ) from err
    post, base, stages = [], [], []
    for _ in range(rounds):
        for h in heads:
            st: dict[str, float] = {}
            t0 = time.perf_counter()
            camera_postprocess(*h, hw, stage_ms=st, **kw)
            post.append((time.perf_counter() - t0) * 1e3)
            stages.append(st)
            if baseline is not None:
                t0 = time.perf_counter()
                baseline(*h, hw, **kw)
                base.append((time.perf_counter() - t0) * 1e3)
    agree, base_agree = [], []
    if agreement:
        for h in heads:
            exact = camera_postprocess(*h, hw, exact=True, **kw).panoptic
            agree.append(float((camera_postprocess(*h, hw, **kw).panoptic == exact).double().mean()))
            if baseline is not None:
                base_agree.append(float((baseline(*h, hw, **kw).panoptic == exact).double().mean()))
    names = sorted({k for st in stages for k in st})
    stage_med = {k: _median([st.get(k, 0.0) for st in stages]) for k in names}
    inf = statistics.median(inference)
    post_med = statistics.median(post)
    return {
        "heads_hw": list(heads[0][0].shape[-2:]),
        "inference_ms": round(inf, 3),
        "post_ms": round(post_med, 3),
        "post_stages_ms": stage_med,
        "post_minus_upsample_ms": round(post_med - (stage_med.get("upsample_labels") or 0.0), 3),
        "post_over_inference": round(post_med / inf, 6),
        "baseline_post_ms": _median(base),
        "baseline_over_inference": round(statistics.median(base) / inf, 6) if base else None,
        "agreement_min": min(agree) if agree else None,
        "baseline_agreement_min": min(base_agree) if base_agree else None,
    }


def _variant(spec: str) -> tuple[str, bool]:
    precision, _, native = spec.partition("+")
    if precision not in ("fp32", "int8") or native not in ("", "native"):
        raise ValueError(f"variant {spec!r}: use fp32, int8, fp32+native or int8+native")
    return precision, native == "native"


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m seg_perception.tools.bench_panoptic_post", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="panoptic_deeplab_mobilenetv2")
    p.add_argument("--resolution", default="512x1024", help="network input HxW")
    p.add_argument("--camera", default="1080x1920", help="camera HxW the drive frames are resized to")
    p.add_argument("--variants", default="fp32,fp32+native,int8,int8+native",
                   help="onnxruntime precisions, +native for the native_heads export")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline-rev", default=None, help="git revision whose camera_postprocess to time alongside")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    from ..core.segmenter import build_segmenter
    from .bench import _drive_frames

    camera = parse_resolution(args.camera)
    variants = [_variant(v) for v in args.variants.split(",") if v]
    baseline = load_baseline(args.baseline_rev) if args.baseline_rev else None
    frames = _drive_frames(camera, args.frames)
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "model": args.model, "resolution": args.resolution, "camera": args.camera,
        "frames": len(frames), "rounds": args.rounds, "baseline_rev": args.baseline_rev,
        "backend": "onnxruntime", "results": {},
    }
    for precision, native in variants:
        key = precision + ("+native" if native else "")
        LOG.info("building %s", key)
        seg = build_segmenter(args.model, weights=None, resolution=args.resolution, backend="onnxruntime",
                              precision=precision, backend_options={"native_heads": True} if native else None)
        try:
            report["results"][key] = measure(seg, frames, args.rounds, baseline)
        finally:
            seg.close()
        print(key, report["results"][key], flush=True)
    if args.json:
        write_json(report, args.json)
    return report


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    main()

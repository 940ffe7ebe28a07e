"""Side-by-side latency benchmark of inference backends through the full Segmenter.

For each backend a :class:`~seg_perception.core.segmenter.Segmenter` is built with
:func:`~seg_perception.core.segmenter.build_segmenter`; all are warmed up, then frames are run
*interleaved* (frame i goes through every backend, the order rotating per frame) so clock/thermal
drift and background load affect all backends alike. The frames are sample-drive street scenes
resized to the camera (``content``): the post-processing's cost depends on how many class and
instance boundaries a frame has, so a noise frame would misstate it. Per stage (preprocess, inference,
postprocess, total) the min / median / p90 milliseconds are reported, throughput is
``1000 / median total`` frames per second (sequential, one frame in flight; in throughput mode,
below, ``1000 / median wall time per frame``), and
``ratio_vs_first`` is the speed-up relative to the first backend (first median total / this
median total; > 1 means faster). For panoptic models ``postprocess_over_inference`` is the ratio
of median post-processing to median inference time (the Panoptic-DeepLab grouping cost) and
``segments`` the median number of segments per frame (grouping time grows with the number of
centers). With ``weights: none`` the random weights are seeded, identical for every backend.

Each entry of ``backends`` is a *variant* ``kind[:precision][+cl][+graphs][+exact][+native]``
(e.g. ``onnxruntime:int8``, ``torch:bf16``, ``torch:fp16+cl+graphs``; ``cl`` = channels_last,
``graphs`` = CUDA graphs, ``exact`` = the reference post-processing that upsamples every head to
the camera resolution, to compare with the default path, ``native`` = the heads exported at their
own stride (backend option ``native_heads``, every backend: e.g. ``torch:bf16+native`` runs the
model's ``forward_native``, ``onnxruntime:int8+native`` its export), upsampled once by the
post-processing, ``streamsN`` = N frames in flight (backend option ``streams``, onnxruntime and
openvino: e.g. ``openvino:int8+native+streams2``); a bare kind uses ``precision``.
``postprocess_over_inference`` (median post-processing / median inference) is reported for every
task: with ``camera`` larger than the network it is the cost of producing labels at camera resolution.

``accuracy`` also scores every variant on held-out synthetic scenes (the recorded evaluation seeds,
:func:`seg_perception.training.synthetic_eval.evaluate_segmenter`) and on the shipped sample drive bag (mIoU, and
PQ for panoptic models), so each speed-up is shown beside what it costs.

Throughput mode: when a variant has ``+streamsN`` (N > 1), every variant is timed in blocks of
frames run through ``Segmenter.segment_stream`` (rounds of one block per variant, the order
rotating), and ``wall_ms_per_frame`` (a block's wall time / its frames), ``throughput_fps`` and
``ratio_vs_first`` come from those blocks: one-stream variants in the same run give the
comparison, their blocks being one frame after another. The stage times are each frame's own
(with several streams they overlap: an inference takes longer than on one stream).

A backend that cannot be created (not installed, precision unsupported, no GPU) gets a result
with an ``error`` and the others still run. :data:`GPU_SUITE` is the one-go GPU run
(``seg-perception bench --suite gpu``); on a machine without a CUDA GPU each of its variants is
recorded as skipped with the reason.
"""
from __future__ import annotations

import logging
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from ..provenance import machine_info

LOG = logging.getLogger("seg_perception.tools.bench")
STAGES = ("preprocess_ms", "inference_ms", "postprocess_ms", "total_ms")
#: Every CPU backend x precision (bf16 variants are refused with a reason on CPUs without bf16).
CPU_SUITE = ("onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32", "openvino:bf16", "openvino:int8",
             "torch:fp32", "torch:bf16")
#: The GPU run in one go: torch fp32 / fp16 / channels_last / CUDA graphs, onnxruntime-gpu, TensorRT fp16 / int8.
GPU_SUITE = ("torch:fp32", "torch:fp16", "torch:fp16+cl", "torch:fp16+cl+graphs", "onnxruntime:fp32",
             "tensorrt:fp16", "tensorrt:int8")
SUITES = {"cpu": CPU_SUITE, "gpu": GPU_SUITE}
#: Variant flags -> the backend option they set: ``+planar`` / ``+nhwc`` pin OpenVINO's output
#: layout (its default, ``auto``, is channels-last at fp32 / int8), for side-by-side timing.
_FLAGS = {"cl": ("channels_last", True), "graphs": ("cuda_graphs", True), "native": ("native_heads", True),
          "planar": ("output_layout", "nchw"), "nhwc": ("output_layout", "nhwc")}
#: ``+streamsN``: N frames in flight (backend option ``streams``; throughput mode, see the module docstring).
_STREAMS_FLAG = re.compile(r"streams([1-9][0-9]*)")
#: Variant flags that configure the Segmenter rather than the backend: ``+exact`` = the reference
#: post-processing (every head upsampled to the camera before argmax / grouping).
_SEGMENTER_FLAGS = ("exact",)


@dataclass(frozen=True)
class Variant:
    """One benchmarked path: label as written, backend kind, precision and backend options."""

    label: str
    kind: str
    precision: str
    options: tuple = ()
    exact_post: bool = False


def parse_variant(text: str, default_precision: str = "fp32") -> Variant:
    """``"kind[:precision][+cl][+graphs][+exact][+native][+planar|+nhwc][+streamsN]"`` -> :class:`Variant`.

    Raises:
        ValueError: empty kind or an unknown ``+flag`` (names the valid ones).
    """
    head, *flags = text.strip().split("+")
    kind, _, precision = head.partition(":")
    if not kind:
        raise ValueError(f"backend variant {text!r} has no backend kind; write e.g. onnxruntime:int8")
    streams = [int(m.group(1)) for m in map(_STREAMS_FLAG.fullmatch, flags) if m]
    bad = [f for f in flags if f not in _FLAGS and f not in _SEGMENTER_FLAGS and not _STREAMS_FLAG.fullmatch(f)]
    if bad:
        valid = ", ".join("+" + f for f in (*_FLAGS, *_SEGMENTER_FLAGS, "streamsN"))
        raise ValueError(f"backend variant {text!r}: unknown flag(s) {bad}; valid: {valid}")
    if len(streams) > 1:
        raise ValueError(f"backend variant {text!r} gives +streamsN {len(streams)} times; give it once")
    options = tuple(_FLAGS[f] for f in flags if f in _FLAGS) + tuple(("streams", n) for n in streams)
    return Variant(text.strip(), kind, precision or default_precision, options, exact_post="exact" in flags)


def variant_streams(variant: Variant) -> int:
    """Frames in flight the variant asks for (its ``+streamsN``; 1 without)."""
    return int(dict(variant.options).get("streams", 1))


@dataclass
class BenchConfig:
    """What to benchmark.

    Attributes:
        model / weights / label_set / model_kwargs: as for ``build_segmenter``.
        resolution: network input (H, W).
        backends: backend kinds in report order; the first is the ratio reference.
        device / precision: passed to every backend.
        channels_last / cuda_graphs: torch backend options.
        frames / warmup: timed and untimed frames per backend.
        camera: (H, W) of the camera frames (default: ``resolution``).
        seed: seed of the synthetic frame.
        content: what the timed frames show: ``"drive"`` (default) cycles through
            :data:`TIMING_DRIVE_FRAMES` sample-drive frames resized to ``camera`` -- street scenes,
            whose class and instance boundaries set the post-processing's cost; ``"synthetic"``
            times one gradient-and-noise frame (:func:`synthetic_frame`).
    """

    model: str
    resolution: tuple[int, int]
    backends: list[str]
    weights: Optional[str] = None
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    cuda_graphs: bool = False
    frames: int = 50
    warmup: int = 5
    camera: Optional[tuple[int, int]] = None
    label_set: Optional[str] = None
    model_kwargs: dict = field(default_factory=dict)
    seed: int = 0
    content: str = "drive"
    accuracy: bool = False
    accuracy_scenes: int = 12
    accuracy_bag_frames: Optional[int] = None
    suite: Optional[str] = None
    post_agreement_frames: int = 0

    def validate(self) -> None:
        if not self.backends:
            raise ValueError("no backends given; pass e.g. --backends torch,onnxruntime")
        if len(set(self.backends)) != len(self.backends):
            raise ValueError(f"backends {self.backends} repeat a name; list each once")
        for b in self.backends:
            parse_variant(b, self.precision)
        if self.accuracy and self.accuracy_scenes < 1:
            raise ValueError(f"accuracy_scenes must be >= 1, got {self.accuracy_scenes}")
        if self.content not in CONTENTS:
            raise ValueError(f"content {self.content!r} is not one of {', '.join(CONTENTS)}")
        if self.frames < 1 or self.warmup < 0:
            raise ValueError(f"frames must be >= 1 and warmup >= 0, got frames={self.frames}, warmup={self.warmup}")


#: Timed-frame contents (BenchConfig.content).
CONTENTS = ("drive", "synthetic")
#: Sample-drive frames the timed frames cycle through (content "drive").
TIMING_DRIVE_FRAMES = 8


def timing_frames(cfg: "BenchConfig", camera: tuple[int, int]) -> list[np.ndarray]:
    """The (H, W, 3) uint8 RGB frames the timed loop cycles through (see ``BenchConfig.content``)."""
    if cfg.content == "drive":
        return _drive_frames(camera, TIMING_DRIVE_FRAMES)
    return [synthetic_frame(camera, cfg.seed)]


def stats(values: list[float]) -> dict[str, float]:
    """min / median / p90 of ``values`` in ms: :func:`~seg_perception.core.latency.latency_stats`
    under this report's keys."""
    from ..core.latency import latency_stats

    s = latency_stats(values)
    return {"min": s["min_ms"], "median": s["median_ms"], "p90": s["p90_ms"]}


def synthetic_frame(hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 test frame: smooth gradients plus noise."""
    h, w = hw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), (xx + yy) / max(h + w - 2, 1)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _backend_options(variant: Variant, cfg: BenchConfig) -> dict:
    opts = dict(variant.options)
    if variant.kind == "torch":
        # channels_last only when asked: left unset, the torch backend picks it (on for bf16 on CPU)
        if cfg.channels_last:
            opts.setdefault("channels_last", True)
        if cfg.cuda_graphs:
            opts.setdefault("cuda_graphs", True)
    if variant.kind == "onnxruntime" and str(cfg.device).startswith("cuda"):
        opts.setdefault("providers", "cuda,cpu")
    return opts


def _gpu_skip_reason(variant: Variant, cfg: BenchConfig) -> Optional[str]:
    """Why a GPU variant cannot run here (None when it can)."""
    if not str(cfg.device).startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return f"skipped: no CUDA GPU (torch {torch.__version__}, torch.cuda.is_available() is False)"
    import importlib.util

    if variant.kind == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return "skipped: tensorrt is not installed (pip install tensorrt)"
    if variant.kind == "onnxruntime":
        try:
            import onnxruntime as ort
        except ImportError:
            return "skipped: onnxruntime is not installed"
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "skipped: onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
    return None


def _build(variant: Variant, cfg: BenchConfig):
    from ..core.segmenter import build_segmenter

    t0 = time.perf_counter()
    # Random weights (weights none) are seeded, so every backend runs the same network and the
    # panoptic post-processing gets the same heads (its time depends on the number of centers).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        seg = build_segmenter(
            cfg.model, weights=cfg.weights, resolution=cfg.resolution, backend=variant.kind, device=cfg.device,
            precision=variant.precision, label_set=cfg.label_set, model_kwargs=cfg.model_kwargs or None,
            backend_options=_backend_options(variant, cfg),
        )
    seg.exact_upsampling = variant.exact_post
    return seg, (time.perf_counter() - t0) * 1e3


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Benchmark ``cfg.backends``; returns the report ``{"machine", "config", "results"}``.

    Backends that fail to build appear in ``results`` with an ``error`` (so does every backend
    when the model or weights are bad).

    Raises:
        ValueError: invalid configuration.
    """
    cfg.validate()
    camera = tuple(cfg.camera or cfg.resolution)
    frames = timing_frames(cfg, camera)
    segmenters: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    for kind in cfg.backends:
        variant = parse_variant(kind, cfg.precision)
        head = {"backend": kind, "kind": variant.kind, "precision": variant.precision}
        if variant.exact_post:
            head["exact_post"] = True
        skip = _gpu_skip_reason(variant, cfg)
        if skip:
            LOG.warning("backend %s %s", kind, skip)
            results[kind] = {**head, "error": skip, "skipped": True}
            continue
        try:
            seg, setup_ms = _build(variant, cfg)
        except (ValueError, RuntimeError, ImportError, OSError) as exc:  # Backend/CheckpointError: RuntimeError
            LOG.warning("backend %s skipped: %s", kind, exc)
            results[kind] = {**head, "error": str(exc)}
            continue
        segmenters[kind] = seg
        results[kind] = {**head, "setup_ms": setup_ms, "task": seg.task}
        selection = seg.describe().get("backend_selection")
        if selection:  # backend auto: what it picked and why, beside the numbers of what it picked
            results[kind]["selection"] = selection
    streamed = any(variant_streams(parse_variant(k, cfg.precision)) > 1 for k in cfg.backends)
    measure = "wall_ms_per_frame" if streamed else "total_ms"  # what fps and ratio_vs_first come from
    walls: dict[str, list[float]] = {k: [] for k in segmenters}
    try:
        for kind, seg in segmenters.items():
            results[kind]["streams"] = seg.streams
            for i in range(cfg.warmup):
                seg.segment(frames[i % len(frames)])
        samples: dict[str, list] = {k: [] for k in segmenters}
        if streamed:
            _time_blocks(segmenters, frames, cfg.frames, samples, walls)
        else:
            kinds = list(segmenters)
            for i in range(cfg.frames):
                shift = i % max(len(kinds), 1)
                for kind in kinds[shift:] + kinds[:shift]:
                    result = segmenters[kind].segment(frames[i % len(frames)])  # frame i through every variant
                    samples[kind].append(_sample(result))
        if cfg.accuracy:
            for kind, seg in segmenters.items():
                results[kind]["accuracy"] = score_accuracy(seg, cfg)
        if cfg.post_agreement_frames > 0 and segmenters:
            kind, seg = next(iter(segmenters.items()))
            results[kind]["post_agreement"] = post_agreement(seg, camera, cfg.post_agreement_frames)
            for other, agree in variant_agreement(segmenters, camera, cfg.post_agreement_frames).items():
                results[other]["agreement_vs_first"] = agree
    finally:
        for seg in segmenters.values():
            seg.close()
    for kind, rows in samples.items():
        entry = results[kind]
        for stage in STAGES:
            entry[stage] = stats([r[stage] for r in rows])
        if streamed:
            entry["wall_ms_per_frame"] = stats(walls[kind])
        entry["throughput_fps"] = 1000.0 / entry[measure]["median"]
        entry["postprocess_over_inference"] = entry["postprocess_ms"]["median"] / entry["inference_ms"]["median"]
        if entry["task"] == "panoptic":
            entry["segments"] = int(statistics.median(r["segments"] for r in rows))
    ordered = [results[k] for k in cfg.backends]
    first = next((r for r in ordered if "error" not in r), None)
    for r in ordered:
        if "error" not in r:
            r["ratio_vs_first"] = first[measure]["median"] / r[measure]["median"]
    config = asdict(cfg)
    config["camera"] = list(camera)
    config["resolution"] = list(cfg.resolution)
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_info(cfg.device),
            "config": config, "results": ordered}


def _sample(result: Any) -> dict[str, float]:
    return {**result.timings.as_dict(), "segments": len(result.segments or ())}


def _time_blocks(segmenters: dict[str, Any], frames: list[np.ndarray], total: int, samples: dict[str, list],
                 walls: dict[str, list[float]]) -> None:
    """Throughput mode: rounds of one block of frames per variant (order rotating), each block run
    through ``segment_stream``; appends each frame's timings to ``samples`` and each block's wall
    ms per frame to ``walls``."""
    most = max(seg.streams for seg in segmenters.values())
    block = max(1, min(total, 8 * most))  # long enough that filling / draining the streams is a small part
    kinds = list(segmenters)
    for r, start in enumerate(range(0, total, block)):
        chunk = [frames[i % len(frames)] for i in range(start, min(total, start + block))]
        shift = r % max(len(kinds), 1)
        for kind in kinds[shift:] + kinds[:shift]:
            t0 = time.perf_counter()
            rows = [_sample(result) for result in segmenters[kind].segment_stream(chunk)]
            walls[kind].append((time.perf_counter() - t0) * 1e3 / len(chunk))
            samples[kind].extend(rows)


def _drive_frames(camera: tuple[int, int], frames: int) -> list[np.ndarray]:
    """``frames`` sample-drive frames spread over the drive, RGB resized to ``camera`` (H, W)."""
    import cv2

    from ..bag.read import read_images
    from ..core.conversions import to_rgb
    from ..datasets.sample_bag import IMAGE_TOPIC, SAMPLE_BAG_PATH

    msgs = list(read_images(SAMPLE_BAG_PATH, IMAGE_TOPIC))
    picks = [msgs[i] for i in np.linspace(0, len(msgs) - 1, min(frames, len(msgs))).astype(int)]
    return [cv2.resize(to_rgb(m.msg), (camera[1], camera[0]), interpolation=cv2.INTER_LINEAR) for m in picks]


def variant_agreement(segmenters: dict[str, Any], camera: tuple[int, int], frames: int) -> dict[str, dict[str, Any]]:
    """Per-pixel agreement of every variant's labels (and panoptic ids) with the first variant's.

    The same ``frames`` sample-drive frames at ``camera`` go through every Segmenter; for each
    variant after the first: the lowest and mean fraction of camera pixels whose semantic label
    (panoptic: also id) equals the first variant's. This is how a path that changes the labels on
    purpose (``+native``: one bilinear resize instead of two) is compared with the reference path.
    """
    kinds = list(segmenters)
    if len(kinds) < 2:
        return {}
    images = _drive_frames(camera, frames)
    ref = [segmenters[kinds[0]].segment(rgb) for rgb in images]
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds[1:]:
        sem, pan = [], []
        for rgb, r in zip(images, ref):
            got = segmenters[kind].segment(rgb)
            sem.append(float((got.semantic == r.semantic).mean()))
            if r.panoptic is not None and got.panoptic is not None:
                pan.append(float((got.panoptic == r.panoptic).mean()))
        entry: dict[str, Any] = {"reference": kinds[0], "frames": len(images), "camera": list(camera),
                                 "semantic_min": min(sem), "semantic_mean": float(np.mean(sem))}
        if pan:
            entry.update({"panoptic_min": min(pan), "panoptic_mean": float(np.mean(pan))})
        out[kind] = entry
    return out


def post_agreement(seg: Any, camera: tuple[int, int], frames: int) -> dict[str, Any]:
    """Default post-processing vs the exact one (every head upsampled to ``camera``) on sample-drive frames.

    Each of ``frames`` frames of the sample drive (spread over the drive) is resized to ``camera``,
    run through the network once, then post-processed both ways (CPU time of each measured with
    ``time.process_time``). Returns the lowest and mean per-pixel agreement of the semantic labels
    and (panoptic models) of the panoptic ids, and the median post-processing CPU ms of each path.
    """
    images = _drive_frames(camera, frames)
    keep = seg.exact_upsampling
    sem, pan, fast_ms, exact_ms = [], [], [], []
    try:
        for rgb in images:
            outputs = seg.infer(rgb)
            got = {}
            for exact, times in ((False, fast_ms), (True, exact_ms)):
                seg.exact_upsampling = exact
                t0 = time.process_time()
                got[exact] = seg.postprocess(outputs, camera)
                times.append((time.process_time() - t0) * 1e3)
            sem.append(float((got[False].semantic == got[True].semantic).mean()))
            if got[True].panoptic is not None:
                pan.append(float((got[False].panoptic == got[True].panoptic).mean()))
    finally:
        seg.exact_upsampling = keep
    out: dict[str, Any] = {"frames": len(images), "camera": list(camera), "semantic_min": min(sem),
                           "semantic_mean": float(np.mean(sem)), "post_cpu_ms": float(np.median(fast_ms)),
                           "exact_post_cpu_ms": float(np.median(exact_ms))}
    if pan:
        out.update({"panoptic_min": min(pan), "panoptic_mean": float(np.mean(pan))})
    return out


def score_accuracy(seg: Any, cfg: BenchConfig) -> dict[str, Any]:
    """mIoU (PQ for panoptic) of ``seg`` on held-out synthetic scenes and on the sample drive bag.

    Held-out: ``cfg.accuracy_scenes`` scenes from the recorded evaluation seeds
    (``EVAL_SEED_BASE ..``, never trained on) at 256 x 512. Sample drive: its frames and GT topics
    (``cfg.accuracy_bag_frames`` of them; all when None). mIoU convention: cityscapes.
    """
    from ..training.config import EVAL_SEED_BASE
    from ..training.synthetic_eval import evaluate_segmenter

    held = evaluate_segmenter(seg, cfg.accuracy_scenes, (256, 512), first_seed=EVAL_SEED_BASE)
    out: dict[str, Any] = {"held_out": {k: held[k] for k in ("miou", "pq", "sq", "rq", "scenes", "first_seed") if k in held}}
    try:
        out["sample_drive"] = _score_sample_drive(seg, cfg.accuracy_bag_frames)
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        out["sample_drive"] = {"error": str(exc)}
    return out


def _score_sample_drive(seg: Any, limit: Optional[int]) -> dict[str, Any]:
    from ..core.conversions import image_to_numpy, to_rgb
    from ..datasets.sample_bag import GT_PANOPTIC_TOPIC, GT_SEMANTIC_TOPIC, IMAGE_TOPIC, SAMPLE_BAG_PATH
    from ..bag.read import read_images
    from ..eval.metrics import ConfusionMatrix, PanopticQuality
    from ..training.synthetic_eval import pq_report

    labels = seg.label_set
    cm = ConfusionMatrix(labels.num_classes)
    pq = PanopticQuality(labels.num_classes, labels.thing_ids) if seg.task == "panoptic" else None
    frames = 0
    streams = zip(read_images(SAMPLE_BAG_PATH, IMAGE_TOPIC), read_images(SAMPLE_BAG_PATH, GT_SEMANTIC_TOPIC),
                  read_images(SAMPLE_BAG_PATH, GT_PANOPTIC_TOPIC))
    for image, gt_sem, gt_pan in streams:
        if limit is not None and frames >= limit:
            break
        res = seg.segment(to_rgb(image.msg))
        cm.update(image_to_numpy(gt_sem.msg).astype(np.uint8), res.semantic)
        if pq is not None:
            pq.update(image_to_numpy(gt_pan.msg).astype(np.int32), res.panoptic)
        frames += 1
    out: dict[str, Any] = {"frames": frames, "miou": round(float(cm.miou("cityscapes")), 4)}
    if pq is not None:
        out.update({k: v for k, v in pq_report(pq.summary(labels.names)).items() if k in ("pq", "sq", "rq")})
    return out


def format_table(report: dict[str, Any]) -> str:
    """Terminal table of a :func:`run_bench` report (median ms per stage, total min/median/p90)."""
    cfg = report["config"]
    panoptic = any(r.get("task") == "panoptic" for r in report["results"])
    accuracy = any("accuracy" in r for r in report["results"])
    streamed = any("wall_ms_per_frame" in r for r in report["results"])
    head = ["backend", "pre", "infer", "post", "total min", "total med", "total p90",
            *(["streams", "wall/frame"] if streamed else []), "fps", f"x vs {cfg['backends'][0]}", "post/infer"]
    if panoptic:
        head += ["segments"]
    if accuracy:
        head += ["mIoU held-out", "mIoU drive"] + (["PQ held-out", "PQ drive"] if panoptic else [])
    rows = []
    for r in report["results"]:
        if "error" in r:
            rows.append([r["backend"], f"error: {r['error']}"])
            continue
        row = [r["backend"], *(f"{r[s]['median']:.2f}" for s in STAGES[:3]),
               *(f"{r['total_ms'][k]:.2f}" for k in ("min", "median", "p90")),
               *([str(r.get("streams", 1)), f"{r['wall_ms_per_frame']['median']:.2f}"] if streamed else []),
               f"{r['throughput_fps']:.1f}", f"{r['ratio_vs_first']:.2f}", f"{r['postprocess_over_inference']:.2f}"]
        if panoptic:
            row += [str(r.get("segments", "-"))]
        if accuracy:
            acc = r.get("accuracy", {})
            keys = ("miou", "pq") if panoptic else ("miou",)
            for key in keys:
                for part in ("held_out", "sample_drive"):
                    value = acc.get(part, {}).get(key)
                    row.append("-" if value is None else f"{100 * value:.2f}")
        rows.append(row)
    widths = [max([len(head[i])] + [len(r[i]) for r in rows if len(r) == len(head)]) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells))  # noqa: E731
    title = (f"{cfg['model']} @ {cfg['resolution'][0]}x{cfg['resolution'][1]} (camera {cfg['camera'][0]}x"
             f"{cfg['camera'][1]}), device {cfg['device']}, {cfg['frames']} frames "
             f"after {cfg['warmup']} warm-up; times in ms{'; scores in %' if accuracy else ''}"
             f"{'; throughput mode: fps and x from the wall time per frame' if streamed else ''}")
    lines = [title, fmt(head), fmt(["-" * w for w in widths])]
    for row in rows:
        lines.append(fmt(row) if len(row) == len(head) else f"{row[0].ljust(widths[0])}  {row[1]}")
    for r in report["results"]:
        agree = r.get("post_agreement")
        if agree:
            pan = (f", panoptic ids min {100 * agree['panoptic_min']:.3f} %" if "panoptic_min" in agree else "")
            lines.append(f"post-processing vs the exact path ({r['backend']}, {agree['frames']} sample-drive frames at "
                         f"{agree['camera'][0]}x{agree['camera'][1]}): labels agree min "
                         f"{100 * agree['semantic_min']:.3f} %{pan}; CPU ms {agree['post_cpu_ms']:.1f} vs "
                         f"{agree['exact_post_cpu_ms']:.1f} exact")
        vs = r.get("agreement_vs_first")
        if vs:
            pan = (f", panoptic ids min {100 * vs['panoptic_min']:.3f} %" if "panoptic_min" in vs else "")
            lines.append(f"{r['backend']} vs {vs['reference']} ({vs['frames']} sample-drive frames at {vs['camera'][0]}x"
                         f"{vs['camera'][1]}): labels agree min {100 * vs['semantic_min']:.3f} % "
                         f"(mean {100 * vs['semantic_mean']:.3f} %){pan}")
    return "\n".join(lines)

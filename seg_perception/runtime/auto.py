"""``backend: auto``: TensorRT on a CUDA GPU where installed, else the fastest measured CPU path.

On a CPU the candidates (:func:`cpu_candidates`: onnxruntime fp32/int8, the same two with the heads
exported at their own stride (``+native``, backend option ``native_heads``) for models that have
that form, OpenVINO int8 and, where the CPU has native bf16, OpenVINO bf16; option
``auto_candidates`` (``kind:precision[+native]``, comma-separated) replaces the list) are each built and timed on a few frames
at the model's resolution, once; the measurement is cached in ``cache_dir/auto/<key>.json`` keyed
by the model (weights included), resolution, batch, the CPU (model name, cores and relevant flags,
:func:`.cpu_features.cpu_signature`), the runtime versions and the candidate list, so a new CPU,
new weights or an upgraded runtime re-measure.

Accuracy guard: a candidate is eligible only if it agrees with the fp32 reference (the torch
model) on the calibration frames (the default source is the sample drive; the first
:data:`GUARD_FRAMES` of them). An agreement function ``agreement(ref_outputs, got_outputs) ->
{name: score}`` scores one frame; the rule is the same for every function: each score, pooled over
the frames (mean of the per-frame shares, the frames being the same size), must be at least
:data:`MIN_AGREEMENT`. Pooling, not the worst frame, because the accuracy it protects (mIoU, PQ)
is accumulated over a data set, and a minimum over frames gets stricter with every frame added.
The caller passes the function that matches what its pipeline publishes (``build_segmenter``
passes :class:`seg_perception.core.panoptic.agreement.PanopticGuard` for panoptic models: labels
and panoptic ids after the model's post-processing, which gets the candidate's heads as the node
would, native grid included). Without one, :func:`head_agreement` (the raw heads: semantic argmax;
panoptic: the center heatmap thresholded at 0.1 and offsets within 0.5 px); a ``+native``
candidate's heads are then first resized to the network resolution the way the model's own
forward does (bilinear, align_corners=False, offsets scaled by the size ratio). 99.5 % of the
pixels bounds the share of pixels whose label or segment may change to half a percent, the budget
of the accuracy goal (<= 0.5 mIoU / PQ points lost); ``seg-perception bench --accuracy`` records the
resulting mIoU/PQ of every path on held-out scenes. A ``+native`` candidate is held to the guard
even in fp32. The function's ``guard_id`` (or its qualified name) and the frame count are part of
the cache key. The fastest eligible candidate wins; fp32 onnxruntime is always eligible. "Fastest"
is inference plus the caller's post-processing of its outputs when the caller passes one
(``build_segmenter`` passes its :class:`~seg_perception.core.postprocess.PostProcessor` at the network
resolution: a ``+native`` path moves the head upsampling out of the network into it).

Option ``native_heads: true`` (node parameter ``native_heads``) keeps only the ``+native``
candidates (:func:`native_only`; still held to the guard, so none may qualify: then auto refuses
and says so) and, on a GPU, builds the TensorRT engine from the native-heads export.
"""
from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from .base import STREAM_BACKENDS, Backend, BackendError

LOG = logging.getLogger("seg_perception.runtime")

#: Minimum per-pixel agreement with fp32 for a reduced precision to be eligible.
MIN_AGREEMENT = 0.995
#: Calibration frames the guard compares on: the whole default calibration set (the frames int8 is
#: calibrated on; fewer when the source has fewer). On the sample drive the share pooled over 8
#: consecutive frames moves by up to 0.004 between frame sets and the first 2 frames score every
#: int8 path 0.002-0.003 above the 32-frame share (docs/BENCHMARKS.md "auto's accuracy guard"),
#: which is the size of the margins the guard decides on. 32 frames add about 1 s per candidate at
#: 256x512 here (the panoptic guard post-processes both outputs), once per machine.
GUARD_FRAMES = 32
#: Timed runs per candidate (option ``auto_frames``), interleaved across candidates.
AUTO_FRAMES = 8
#: Frames whose outputs (reference and one candidate) are held at a time.
GUARD_CHUNK = 4
#: Bump when the selection rule changes so older cached choices are re-measured (3: pooled scores
#: over GUARD_FRAMES frames from an injectable agreement function, instead of the worst of 2 frames;
#: 4: candidates timed with the caller's post-processing; 5: 8 timed runs, interleaved across
#: candidates; 6: post-processing in compiled kernels, a smaller share of every candidate's time;
#: 7: OpenVINO fp32 / int8 candidates compute their outputs channels-last, 5-20 % faster).
AUTO_RECIPE_VERSION = 7
#: A per-frame agreement: (reference outputs, candidate outputs) -> score name -> share in [0, 1].
Agreement = Callable[[dict, dict], dict]
#: The caller's post-processing of one backend output dict, timed with the inference (its
#: ``post_id`` attribute, else its qualified name, is part of the cache key).
PostProcess = Callable[[dict], Any]
AUTO_OPTIONS = {"cache_dir", "auto_frames", "auto_candidates", "calib_images", "calib_bag", "calib_topic",
                "calib_limit", "native_heads", "streams"}


#: A candidate: (kind, precision) or (kind, precision, "native") for the heads at their own stride.
Candidate = tuple


def is_native(candidate: Candidate) -> bool:
    """True for a ``+native`` candidate (backend option ``native_heads``)."""
    return len(candidate) > 2 and candidate[2] == "native"


def candidate_name(candidate: Candidate) -> str:
    """``"kind precision"`` or ``"kind precision+native"`` for reasons and logs."""
    return f"{candidate[0]} {candidate[1]}{'+native' if is_native(candidate) else ''}"


def _has_native_form(model: Optional[nn.Module]) -> bool:
    return (model is not None and callable(getattr(model, "forward_native", None))
            and not getattr(model, "align_corners", False)
            and getattr(model, "offset_scaling", "ratio") == "ratio")


def cpu_candidates(model: Optional[nn.Module] = None) -> list[Candidate]:
    """CPU paths worth measuring here, in tie-break order (``model``: adds its ``+native`` paths)."""
    from .cpu_features import has_bf16

    # OpenVINO fp32 and torch bf16 are left out: on the CPUs measured (bench --suite cpu) they never
    # beat onnxruntime fp32 / OpenVINO bf16, and every candidate costs start-up time once.
    cands: list[Candidate] = [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    if _has_native_form(model):
        cands += [("onnxruntime", "fp32", "native"), ("onnxruntime", "int8", "native")]
    if importlib.util.find_spec("openvino") is not None:
        ov: list[Candidate] = [("openvino", "int8")] + ([("openvino", "bf16")] if has_bf16() else [])
        cands += ov
        if _has_native_form(model):
            # OpenVINO int8 + native heads was the fastest semantic path measured here (3.0x
            # onnxruntime fp32 at 512x1024, docs/BENCHMARKS.md)
            cands += [c + ("native",) for c in ov]
    return cands


def native_only(candidates: list[Candidate], model: nn.Module) -> list[Candidate]:
    """The ``+native`` entries of ``candidates``: what auto measures with option ``native_heads: true``.

    Raises:
        BackendError: the model has no native-stride head form, or no listed candidate is ``+native``
            (the message names the fix).
    """
    if not _has_native_form(model):
        raise BackendError(
            f"backend auto with native_heads=true measures only heads exported at their own stride, but "
            f"{type(model).__name__} has no such form (forward_native with align_corners=False and 'ratio' "
            "offsets): set native_heads false")
    natives = [c for c in candidates if is_native(c)]
    if not natives:
        raise BackendError(
            f"backend auto with native_heads=true: none of the candidates "
            f"{', '.join(candidate_name(c) for c in candidates)} is +native; add +native entries to auto_candidates "
            "(e.g. onnxruntime:int8+native) or set native_heads false")
    return natives


def _parse_candidates(value: Any) -> list[Candidate]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[Candidate] = []
    for item in items:
        head, *flags = str(item).strip().split("+")
        kind, _, prec = head.partition(":")
        if kind not in ("torch", "onnxruntime", "openvino"):
            raise BackendError(f"auto_candidates entry {item!r}: kind must be torch, onnxruntime or openvino "
                               "(write kind:precision[+native], e.g. onnxruntime:int8)")
        if flags not in ([], ["native"]):
            raise BackendError(f"auto_candidates entry {item!r}: the only flag is +native "
                               "(write e.g. onnxruntime:int8+native)")
        out.append((kind, prec or "fp32", "native") if flags else (kind, prec or "fp32"))
    if not out:
        raise BackendError("auto_candidates is empty; list kind:precision entries, e.g. onnxruntime:fp32,onnxruntime:int8")
    return out


def _versions() -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {"torch": torch.__version__}
    for mod in ("onnxruntime", "openvino"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - absent optional runtime
            out[mod] = None
    return out


def _callable_id(fn: Callable, attr: str) -> str:
    """``fn``'s ``attr`` attribute, else its qualified name: what names it in the cache key."""
    name = getattr(fn, attr, None)
    if name is None:
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    return str(name)


def guard_id(agreement_fn: Optional[Agreement]) -> str:
    """What names the accuracy guard in the cache key: the function's ``guard_id`` attribute, else
    its qualified name (``head_agreement`` when None)."""
    return _callable_id(agreement_fn or head_agreement, "guard_id")


def post_id(post: Optional[PostProcess]) -> str:
    """What names the timed post-processing in the cache key ("" for none): its ``post_id``
    attribute, else its qualified name."""
    return "" if post is None else _callable_id(post, "post_id")


def selection_key(model: nn.Module, resolution, batch: int, candidates, calib_id: str,
                  guard: str = "", guard_frames: int = GUARD_FRAMES, post: str = "") -> str:
    """Cache key of one auto selection (see the module docstring for what it covers; ``guard``:
    :func:`guard_id` of the agreement function; ``post``: :func:`post_id` of the timed post-processing)."""
    from .cpu_features import cpu_signature
    from .export import model_fingerprint

    text = json.dumps({"model": model_fingerprint(model), "resolution": list(resolution), "batch": int(batch),
                       "cpu": cpu_signature(), "versions": _versions(), "candidates": [list(c) for c in candidates],
                       "calibration": calib_id, "recipe": AUTO_RECIPE_VERSION,
                       "guard": guard or guard_id(None), "guard_frames": int(guard_frames), "post": post},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _to_numpy(value: Any) -> np.ndarray:
    return value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value, dtype=np.float32)


def to_network_size(outputs: dict, hw: tuple[int, int]) -> dict:
    """Native-stride heads (N, C, h, w) resized to the network's (H, W) as the model's forward does:
    bilinear, align_corners=False, offsets (dy, dx) scaled by H / h and W / w. numpy in, numpy out."""
    import torch.nn.functional as F

    out = {}
    for name, value in outputs.items():
        t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        h, w = t.shape[-2:]
        if (h, w) != tuple(hw):
            t = F.interpolate(t, size=tuple(hw), mode="bilinear", align_corners=False)
            if name == "offset":
                t = torch.cat([t[:, :1] * (hw[0] / h), t[:, 1:2] * (hw[1] / w)], dim=1)
        out[name] = t.numpy()
    return out


def head_agreement(ref: dict, got: dict) -> dict[str, float]:
    """Per-head per-pixel agreement with ``ref``: semantic argmax, center > 0.1, |offset diff| < 0.5 px.

    ``ref`` / ``got``: head name -> (N, C, H, W) arrays or tensors at the same size.
    """
    scores = {"semantic": float((_to_numpy(ref["semantic"]).argmax(1) == _to_numpy(got["semantic"]).argmax(1)).mean())}
    if "center" in ref:
        scores["center"] = float(((_to_numpy(ref["center"]) > 0.1) == (_to_numpy(got["center"]) > 0.1)).mean())
    if "offset" in ref:
        scores["offset"] = float((np.abs(_to_numpy(ref["offset"]) - _to_numpy(got["offset"])) < 0.5).mean())
    return scores


def agreement(ref: dict, got: dict) -> float:
    """Lowest per-pixel agreement over the heads (:func:`head_agreement`)."""
    return min(head_agreement(ref, got).values())


def pooled_scores(per_frame: list[dict]) -> dict[str, float]:
    """Each score's mean over the frames (``per_frame``: one ``{name: share}`` per frame)."""
    return {name: float(np.mean([f[name] for f in per_frame])) for name in per_frame[0]}


def _measure(be: Backend, inputs: list[np.ndarray], frames: int,
             post: Optional[PostProcess] = None) -> tuple[float, list[dict]]:
    """(median ms of ``frames`` timed runs after one warm-up (nan for 0), outputs for ``inputs``).

    A timed run is ``be.infer`` plus, when given, ``post`` of its outputs: a candidate that moves
    work from the network into the post-processing (native heads) is timed with that work.
    """
    outs = [{k: _to_numpy(v) for k, v in be.infer({"image": x}).items()} for x in inputs]
    times = []
    for i in range(frames):
        t0 = time.perf_counter()
        out = be.infer({"image": inputs[i % len(inputs)]})
        if post is not None:
            post(out)
        times.append((time.perf_counter() - t0) * 1e3)
    return (float(np.median(times)) if times else float("nan")), outs


def _time_interleaved(live: list, inputs: list[np.ndarray], frames: int, post: Optional[PostProcess]) -> None:
    """``median_ms`` of every usable candidate in ``live`` ((candidate, entry, backend) triples).

    Round r times one run of every candidate on frame r (after an untimed one), the order rotating
    by round, as ``seg-perception bench`` does: timing each candidate's runs back to back let load
    drifts and the other candidates' idle thread pools decide between paths 10-40 % apart.
    """
    times: dict[int, list[float]] = {id(entry): [] for _c, entry, _b in live}
    for r in range(frames):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for cand, entry, be in order:
            if "error" in entry:
                continue
            try:
                ms, _outs = _measure(be, [inputs[r % len(inputs)]], 1, post)
                times[id(entry)].append(ms)
            except (BackendError, RuntimeError, ValueError, OSError) as exc:
                entry["error"] = str(exc)
                LOG.info("auto: %s not usable: %s", candidate_name(cand), exc)
    for _cand, entry, _be in live:
        if "error" not in entry and times[id(entry)]:
            entry["median_ms"] = round(float(np.median(times[id(entry)])), 2)


def select_cpu_path(
    model: nn.Module, *, resolution: tuple[int, int], batch: int, cache_dir: Path, options: dict,
    create: Callable[..., Backend], candidates: Optional[list[Candidate]] = None,
    agreement: Optional[Agreement] = None, post: Optional[PostProcess] = None,
) -> dict:
    """Measure (or read the cached measurement of) the CPU candidates; returns the selection record.

    ``agreement``: the per-frame guard (see the module docstring); None: :func:`head_agreement`
    on heads brought to the network size. A given function gets the candidate's outputs as the
    backend returns them (native grid included). ``post``: the caller's post-processing of one
    output dict, timed with each inference (``median_ms`` is then inference + post-processing);
    None: inference alone.

    Returns:
        ``{"backend", "precision", "native_heads", "reason", "guard", "guard_frames", "measured":
        [{"backend", "precision", "native_heads", "median_ms", "agreement" (lowest pooled score),
        "scores" (pooled, by name), "worst_frame", "eligible" | "error"}], "cpu_flags", "key", "cached"}``.
    """
    from .calibration import CalibrationSource, calibration_batches
    from .cpu_features import relevant_flags

    create_backend = create
    guard = guard_id(agreement)
    score_frame = agreement or head_agreement

    source = CalibrationSource.from_options(options)
    candidates = candidates or cpu_candidates(model)
    frames = int(options.get("auto_frames", AUTO_FRAMES))
    key = selection_key(model, resolution, batch, candidates, source.id(), guard, GUARD_FRAMES, post_id(post))
    path = cache_dir / "auto" / f"{key}.json"
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            record["cached"] = True
            return record
        except (OSError, ValueError):
            LOG.warning("ignoring unreadable auto-selection cache %s", path)
    batches = zip(range(GUARD_FRAMES), calibration_batches(source.frames(), resolution=resolution, batch=batch))
    chunk = [b for _, b in itertools.islice(batches, GUARD_CHUNK)]
    if not chunk:
        raise BackendError(f"backend auto: calibration source {source.describe()} gave no frame to measure on")
    build_options = {k: options[k] for k in ("calib_images", "calib_bag", "calib_topic", "calib_limit") if k in options}
    measured: list[dict[str, Any]] = []
    live: list[tuple[Candidate, dict, Backend]] = []
    per_frame: dict[int, list[dict]] = {}
    n_frames = 0
    try:
        for cand in candidates:  # all built first: the frames are then read once, a chunk at a time
            kind, precision, native = cand[0], cand[1], is_native(cand)
            entry: dict[str, Any] = {"backend": kind, "precision": precision, "native_heads": native}
            measured.append(entry)
            try:
                opts = dict(build_options) if precision == "int8" else {}
                if native:
                    opts["native_heads"] = True
                be = create_backend(kind, model, resolution=resolution, batch=batch, precision=precision,
                                    cache_dir=str(cache_dir), options=opts)
                be.activate()
            except (BackendError, RuntimeError, ValueError, OSError) as exc:
                entry["error"] = str(exc)
                LOG.info("auto: %s not usable: %s", candidate_name(cand), exc)
                continue
            live.append((cand, entry, be))
            per_frame[id(entry)] = []
        # The reference and each candidate's outputs are held for GUARD_CHUNK frames at a time only
        # (a 512x1024 panoptic frame's heads are ~46 MB); the first chunk also times each candidate.
        while chunk:
            with torch.no_grad():
                ref = [{k: v.float().numpy() for k, v in model.eval()(torch.from_numpy(x)).items()} for x in chunk]
            for cand, entry, be in live:
                if "error" in entry:
                    continue
                try:
                    _ms, outs = _measure(be, chunk, 0, post)
                    if is_native(cand) and agreement is None:
                        outs = [to_network_size(o, resolution) for o in outs]
                    per_frame[id(entry)] += [score_frame(r, o) for r, o in zip(ref, outs)]
                except (BackendError, RuntimeError, ValueError, OSError) as exc:
                    entry["error"] = str(exc)
                    entry.pop("median_ms", None)
                    LOG.info("auto: %s not usable: %s", candidate_name(cand), exc)
            if n_frames == 0:  # every candidate is warm now: time them
                _time_interleaved(live, chunk, frames, post)
            n_frames += len(chunk)
            chunk = [b for _, b in itertools.islice(batches, GUARD_CHUNK)]
    finally:
        for _cand, _entry, be in live:
            be.deactivate()
    for cand, entry, _be in live:
        if "error" in entry:
            continue
        scores = pooled_scores(per_frame[id(entry)])
        entry["agreement"] = round(min(scores.values()), 5)
        entry["scores"] = {k: round(v, 5) for k, v in scores.items()}
        entry["worst_frame"] = round(min(min(f.values()) for f in per_frame[id(entry)]), 5)
        entry["eligible"] = ((cand[1] == "fp32" and not is_native(cand))
                             or min(scores.values()) >= MIN_AGREEMENT)
    ok = [m for m in measured if m.get("eligible")]
    if not ok:
        raise BackendError("backend auto: no CPU candidate could be built; "
                           + "; ".join(f"{m['backend']} {m['precision']}: {m.get('error')}" for m in measured))
    best = min(ok, key=lambda m: m["median_ms"])
    base = next((m for m in ok if (m["backend"], m["precision"], m.get("native_heads")) == ("onnxruntime", "fp32", False)),
                None)
    name = lambda m: candidate_name((m["backend"], m["precision"]) + (("native",) if m.get("native_heads") else ()))  # noqa: E731
    speed = f", {base['median_ms'] / best['median_ms']:.2f}x onnxruntime fp32" if base else ""
    dropped = [f"{name(m)} (agreement {m['agreement']:.4f})" for m in measured
               if "eligible" in m and not m["eligible"]]
    timed = "inference + post-processing" if post is not None else "inference"
    reason = (f"no TensorRT GPU; fastest measured CPU path at {resolution[0]}x{resolution[1]}: {name(best)}, "
              f"{best['median_ms']:.1f} ms ({timed})"
              f"{speed}, agreement with fp32 {best['agreement']:.4f} (>= {MIN_AGREEMENT} required, "
              f"guard {guard} over {n_frames} frames)")
    if dropped:
        reason += "; failed the accuracy guard: " + ", ".join(dropped)
    record = {"backend": best["backend"], "precision": best["precision"],
              "native_heads": bool(best.get("native_heads")), "reason": reason, "guard": guard, "timed": timed, "post": post_id(post),
              "guard_frames": n_frames, "measured": measured,
              "cpu_flags": relevant_flags(), "calibration": source.describe(), "key": key,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cached": False}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return record


def _streams_not_used(options: dict, kind: str) -> None:
    """Log that option ``streams`` does not apply to the backend auto picked (it runs one frame at a time)."""
    if options.get("streams") not in (None, 1, "1"):
        LOG.warning("backend auto picked %s, which runs one frame at a time: option streams=%s not used "
                    "(streams apply to %s)", kind, options["streams"], " and ".join(STREAM_BACKENDS))


def create_auto_backend(
    model: nn.Module, *, resolution: tuple[int, int], batch: int, device: str, precision: str, cache_dir: Path,
    options: dict, create: Callable[..., Backend], available: Callable[[], list[str]], max_batch: int = 1,
    agreement: Optional[Agreement] = None, post: Optional[PostProcess] = None,
) -> Backend:
    """The backend ``auto`` stands for, with its choice on ``backend.selection`` (a dict with ``reason``).

    ``precision`` other than fp32 restricts the CPU candidates to that precision. ``create`` /
    ``available`` are the factory's ``create_backend`` / ``available_backends`` (passed in, so this
    module does not import the factory that dispatches to it). ``agreement``: the accuracy guard's
    per-frame comparison (:func:`select_cpu_path`); None: :func:`head_agreement`. ``post``: the
    caller's post-processing, timed with each candidate's inference (:func:`select_cpu_path`).

    Raises:
        BackendError: unknown option, or no candidate usable.
    """
    create_backend, available_backends = create, available
    unknown = sorted(set(options) - AUTO_OPTIONS)
    if unknown:
        raise BackendError(f"unknown option(s) {unknown} for backend 'auto'; valid options: {', '.join(sorted(AUTO_OPTIONS))}")
    calib = {k: options[k] for k in ("calib_images", "calib_bag", "calib_topic", "calib_limit") if k in options}
    native = options.get("native_heads") is True  # the factory made it a bool
    if "tensorrt" in available_backends():
        trt_precision = precision if precision in ("fp16", "int8") else "fp16"  # fp32 (the default) means "choose"
        be = create_backend("tensorrt", model, resolution=resolution, batch=batch,
                            device=device if device.startswith("cuda") else "cuda", precision=trt_precision,
                            cache_dir=str(cache_dir), options={**calib, **({"native_heads": True} if native else {})},
                            max_batch=max_batch)
        be.selection = {"backend": "tensorrt", "precision": trt_precision, "native_heads": native,
                        "reason": f"TensorRT installed and a CUDA GPU present ({torch.cuda.get_device_name()})"}
        _streams_not_used(options, "tensorrt")
    else:
        candidates = _parse_candidates(options["auto_candidates"]) if "auto_candidates" in options else None
        if native:
            candidates = native_only(candidates or cpu_candidates(model), model)
        if precision != "fp32":
            candidates = [c for c in (candidates or cpu_candidates(model)) if c[1] == precision]
            if not candidates:
                raise BackendError(f"backend auto has no CPU candidate with precision {precision!r} here; use fp32 "
                                   "(auto then picks the precision) or name a backend")
        try:
            record = select_cpu_path(model, resolution=resolution, batch=batch, cache_dir=cache_dir,
                                     options=options, create=create, candidates=candidates, agreement=agreement,
                                     post=post)
        except BackendError as e:
            if not native:
                raise
            raise BackendError(f"{e} (native_heads=true: only the +native paths were measured, and auto keeps "
                               "its accuracy guard; set native_heads false, or name the backend, e.g. "
                               "onnxruntime, to run native heads without the guard)") from None
        opts = dict(calib) if record["precision"] == "int8" else {}
        if record.get("native_heads"):
            opts["native_heads"] = True
        if options.get("streams") is not None:
            if record["backend"] in STREAM_BACKENDS:
                opts["streams"] = options["streams"]
            else:
                _streams_not_used(options, record["backend"])
        be = create_backend(record["backend"], model, resolution=resolution, batch=batch,
                            precision=record["precision"], cache_dir=str(cache_dir), options=opts, max_batch=max_batch)
        be.selection = record
    LOG.info("backend auto -> %s %s: %s%s", be.selection["backend"], be.selection["precision"],
             be.selection["reason"], " (cached measurement)" if be.selection.get("cached") else "")
    return be

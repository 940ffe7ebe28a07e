"""Train segmentation models from scratch on synthetic street scenes (see docs/TRAINING.md).

:func:`train` runs the loop: batches from :mod:`.data` (targets from :mod:`.targets`), losses from
:mod:`.losses`, AdamW with warm-up and cosine decay (:func:`lr_at`), an adaptive thread count on
shared machines, periodic and final checkpoints, then held-out scores from :mod:`.synthetic_eval`.
A run may start from an earlier stage of the same model or warm-start from a related model
(:func:`warm_start`); each checkpoint records the chain of stages.

Usage::

    from seg_perception.training.config import TrainConfig
    from seg_perception.training.loop import train
    result = train(TrainConfig(model="deeplabv3plus_mobilenetv2", out="w.pt", steps=2000))
    result.scores   # held-out mIoU (and PQ for panoptic models)
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..datasets.labels import get_label_set
from ..provenance import machine_info
from .config import TrainConfig, train_seed
from .data import SceneBatches
from .losses import compute_losses
from .synthetic_eval import evaluate_checkpoint


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    path: Path
    scores: dict
    wall_time_s: float
    history: list[dict]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up for ``warmup_steps`` then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """One optimisation step on ``batch``; returns the loss terms as floats."""
    model.train()
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    image = batch["image"]
    if cfg.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        outputs = model(image)
    outputs = {k: v.float() for k, v in outputs.items()}
    losses = compute_losses(outputs, batch, cfg)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


class _ThreadTuner:
    """Adaptive torch thread count for shared machines (``TrainConfig.threads == 0``).

    Starts with one thread (safe when other jobs load the machine). Now and then the other
    candidate runs for a few probe steps; a probe is cut short when its first step is already
    much slower, and the faster median wins. A lost probe doubles the wait before the next one
    (up to ``max_period``), a won probe resets it, so probing costs little on a busy machine.
    """

    def __init__(self, candidates: tuple[int, ...], period: int = 50, probe: int = 4, max_period: int = 800) -> None:
        self.candidates = tuple(sorted(set(candidates)))
        self.current = self.candidates[0]
        self.base_period, self.period, self.max_period, self.probe = period, period, max_period, probe
        self.next_probe = period
        self.probing: list[float] = []
        self.recent: list[float] = []
        torch.set_num_threads(self.current)

    @property
    def other(self) -> int:
        return next((c for c in self.candidates if c != self.current), self.current)

    def threads_for(self, step: int) -> int:
        if len(self.candidates) > 1 and step >= self.next_probe:
            return self.other
        return self.current

    def record(self, step: int, threads: int, seconds: float) -> None:
        if threads == self.current or len(self.candidates) == 1:
            self.recent = (self.recent + [seconds])[-20:]
            return
        self.probing.append(seconds)
        mine = float(np.median(self.recent)) if self.recent else float("inf")
        cut_short = len(self.probing) == 2 and min(self.probing) > 2.0 * mine  # clearly worse: stop
        if len(self.probing) < self.probe and not cut_short:
            return
        theirs = float(np.median(self.probing[1:]))  # the first step after a switch is slow
        if theirs < 0.9 * mine:
            self.current, self.period, self.recent = threads, self.base_period, self.probing[1:]
        else:
            self.period = min(self.max_period, self.period * 2)
        self.probing = []
        self.next_probe = step + 1 + self.period


def _param_groups(model: nn.Module, weight_decay: float, warm: frozenset[str] = frozenset(),
                  warm_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: no weight decay on biases and normalization parameters; parameters named in
    ``warm`` (copied by a warm start) get ``lr_scale = warm_lr_scale``, the rest 1.0. Empty groups
    are left out."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((p.ndim > 1, name in warm), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0,
             "lr_scale": warm_lr_scale if is_warm else 1.0}
            for (decays, is_warm), params in sorted(groups.items())]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without CUDA raises ``ValueError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def build_model(cfg: TrainConfig) -> tuple[nn.Module, dict, str]:
    """Build ``cfg.model`` from the registry; returns (model, builder kwargs, task)."""
    from ..models import get_model, model_info

    info = model_info(cfg.model)
    kwargs = dict(cfg.model_kwargs)
    kwargs.setdefault("num_classes", get_label_set(cfg.label_set).num_classes)
    return get_model(cfg.model, **kwargs), kwargs, info.task


def train(cfg: TrainConfig, *, progress: bool = True, model: nn.Module | None = None) -> TrainResult:
    """Train ``cfg.model`` on synthetic scenes, save the checkpoint, evaluate on held-out scenes.

    The checkpoint is written twice: right after training (so evaluation loads it exactly as users
    will) and again with the held-out scores in ``meta``. ``model`` overrides the built model (its
    registry name must still be ``cfg.model`` so the checkpoint can be rebuilt).
    """
    cfg.validate()
    tuner = None
    if cfg.threads == 0:
        tuner = _ThreadTuner((1, os.cpu_count() or 1))
    elif cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    built, kwargs, task = build_model(cfg)
    net = model if model is not None else built
    prior, warm = _load_init(cfg, net, kwargs) if cfg.init_from else (None, frozenset())
    net = net.to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    labels = get_label_set(cfg.label_set)
    panoptic = task == "panoptic"
    optimizer = torch.optim.AdamW(_param_groups(net, cfg.weight_decay, warm, cfg.warm_lr_scale), lr=cfg.lr)
    data = SceneBatches(cfg, panoptic, labels.thing_ids)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=cfg.workers,
                                         prefetch_factor=2 if cfg.workers else None,
                                         persistent_workers=False)
    history: list[dict] = []
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc=f"train {cfg.model}", unit="step", dynamic_ncols=True,
                   mininterval=5.0, file=sys.stderr)
    running: dict[str, float] = {}
    for step, batch in enumerate(loader):
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr * g["lr_scale"]
        threads = tuner.threads_for(step) if tuner else 0
        if tuner:
            torch.set_num_threads(threads)
        t_step = time.perf_counter()
        losses = train_step(net, optimizer, batch, cfg, device)
        if tuner:
            tuner.record(step, threads, time.perf_counter() - t_step)
        for k, v in losses.items():
            running[k] = 0.9 * running.get(k, v) + 0.1 * v
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "lr": lr, "time_s": round(time.time() - t0, 1),
                            "threads": torch.get_num_threads(),
                            **{k: round(v, 4) for k, v in running.items()}})
            if bar is None and progress:
                print(json.dumps(history[-1]), file=sys.stderr, flush=True)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()}, refresh=False)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            wall = time.time() - t0
            _save(cfg, net, kwargs, {"resolution": f"{cfg.resolution[0]}x{cfg.resolution[1]}",
                                     "partial": True, "steps_done": step + 1, "command": cfg.command or "",
                                     "train_wall_time_s": round(wall, 1), "init_from": prior,
                                     **_totals(prior, step + 1, wall)})
    if bar is not None:
        bar.close()
    train_time = time.time() - t0
    net = net.eval().cpu().to(memory_format=torch.contiguous_format)
    res = f"{cfg.resolution[0]}x{cfg.resolution[1]}"
    meta = {
        "resolution": res,
        "trained_on": "seg_perception.datasets.synthetic scenes "
                      f"{cfg.scene_hw[0]}x{cfg.scene_hw[1]} (train seeds {train_seed(cfg.seed, 0)}..)",
        "command": cfg.command or "",
        "seed": int(cfg.seed),
        "steps": int(cfg.steps),
        "batch_size": int(cfg.batch_size),
        "train_wall_time_s": round(train_time, 1),
        **_totals(prior, int(cfg.steps), train_time),
        "init_from": prior,
        "machine": machine_info(str(device)),
        "train_config": json.loads(json.dumps(asdict(cfg), default=list)),
        "final_losses": {k: round(v, 4) for k, v in running.items()},
        "loss_history": history[:: max(1, len(history) // 20)] + history[-1:],
    }
    path = _save(cfg, net, kwargs, meta)
    scores: dict = {}
    if cfg.eval_scenes > 0:
        scores = evaluate_checkpoint(cfg.model, path, resolution=tuple(cfg.resolution), n_scenes=cfg.eval_scenes,
                                     scene_hw=tuple(cfg.scene_hw))
        meta["held_out"] = scores
        meta["total_wall_time_s"] = round(time.time() - t0, 1)
        path = _save(cfg, net, kwargs, meta)
    return TrainResult(path=Path(path), scores=scores, wall_time_s=time.time() - t0, history=history)


#: Where a tensor of a warm-start source lives in the target (target prefix -> source prefix), per
#: (source model, target model) pair. The ASPP of a DeepLabV3+ seeds both Panoptic-DeepLab branches.
WARM_START_RENAMES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("deeplabv3plus_mobilenetv2", "panoptic_deeplab_mobilenetv2"): (
        ("semantic_decoder.aspp.", "aspp."),
        ("instance_decoder.aspp.", "aspp."),
        ("semantic_decoder.project.0.", "decoder.project."),
    ),
}


#: Builder kwargs that only add modules (the shapes of all others stay): a checkpoint built without
#: them (or with 0) warm-starts the same model with them -- every tensor it has is copied.
GROWTH_KWARGS = frozenset({"semantic_stride2_channels"})


def _grows(old: dict, new: dict) -> bool:
    """True when ``new`` differs from ``old`` only by :data:`GROWTH_KWARGS` that ``old`` leaves off."""
    keys = set(old) | set(new)
    diff = {k for k in keys if old.get(k) != new.get(k)}
    return bool(diff) and diff <= GROWTH_KWARGS and not any(old.get(k) for k in diff)


def warm_start(net: nn.Module, source: dict[str, torch.Tensor], renames: tuple[tuple[str, str], ...] = ()
               ) -> dict:
    """Copy every module of ``source`` (a state dict) that fits ``net`` into it; the rest keeps its init.

    A target key takes the source tensor of the same name, else (first matching ``(target_prefix,
    source_prefix)`` in ``renames``) the source tensor with the prefix swapped, when the shapes agree;
    a module (conv, BN, ...) is copied only when all its tensors are found. Returns ``{"loaded": n,
    "of": total target tensors, "loaded_prefixes": sorted top-level parts that received tensors,
    "keys": sorted names of the copied tensors}``.

    Raises ValueError when nothing fits (the source is another architecture altogether).
    """
    target = net.state_dict()
    modules: dict[str, dict[str, torch.Tensor | None]] = {}
    for key, value in target.items():
        found = None
        for cand in [key] + [src + key[len(dst):] for dst, src in renames if key.startswith(dst)]:
            tensor = source.get(cand)
            if tensor is not None and tuple(tensor.shape) == tuple(value.shape):
                found = tensor.to(value.dtype)
                break
        modules.setdefault(key.rpartition(".")[0], {})[key] = found
    # a module is copied whole or not at all (BN statistics without their conv would be noise)
    loaded = {k: t for group in modules.values() if all(t is not None for t in group.values())
              for k, t in group.items()}
    if not loaded:
        raise ValueError(
            f"warm start: none of the {len(source)} source tensors fits {type(net).__name__} (no shared names "
            "with equal shapes); start from a checkpoint of a related model"
        )
    net.load_state_dict(loaded, strict=False)
    parts = sorted({k.split(".")[0] for k in loaded})
    return {"loaded": len(loaded), "of": len(target), "loaded_prefixes": parts, "keys": sorted(loaded)}


def _totals(prior: dict | None, steps: int, wall_s: float) -> dict:
    """Steps and training wall time of this stage plus those of every earlier stage (``prior``)."""
    return {"total_steps": int(steps) + int(prior["total_steps"] if prior else 0),
            "total_train_wall_time_s": round(float(wall_s) + float(prior["total_train_wall_time_s"] if prior else 0), 1)}


def _load_init(cfg: TrainConfig, net: nn.Module, kwargs: dict) -> tuple[dict, frozenset[str]]:
    """Load ``cfg.init_from`` into ``net``; returns what the checkpoint says about its training and
    the names of the tensors a warm start copied (empty for a further stage of the same model).

    Same model: every tensor, and the model kwargs must match -- or differ only by
    :data:`GROWTH_KWARGS` this run adds (a warm start that copies every tensor of the checkpoint).
    Another model with an entry in
    :data:`WARM_START_RENAMES` (e.g. a trained DeepLabV3+ MobileNetV2 for a Panoptic-DeepLab
    MobileNetV2): :func:`warm_start`, recorded under ``"warm_start"``.
    """
    from ..models.checkpoint import load_checkpoint
    from ..hashing import sha256_file

    ckpt = load_checkpoint(cfg.init_from)
    warm, copied = None, frozenset()
    grows = ckpt.model_name == cfg.model and _grows(_plain(ckpt.model_kwargs), _plain(kwargs))
    if grows:
        warm = warm_start(net, ckpt.model.state_dict()) | {"source_model": ckpt.model_name,
                                                           "source_kwargs": _plain(ckpt.model_kwargs)}
        copied = frozenset(warm.pop("keys"))
    elif ckpt.model_name != cfg.model:
        renames = WARM_START_RENAMES.get((ckpt.model_name, cfg.model))
        if renames is None:
            pairs = ", ".join(f"{a} -> {b}" for a, b in WARM_START_RENAMES)
            raise ValueError(
                f"init_from {cfg.init_from!r} holds model {ckpt.model_name!r}, this run trains {cfg.model!r}; "
                f"use a checkpoint of {cfg.model!r} or one of the warm-start pairs: {pairs}"
            )
        warm = warm_start(net, ckpt.model.state_dict(), renames) | {"source_model": ckpt.model_name}
        copied = frozenset(warm.pop("keys"))  # they steer the optimizer; the checkpoint keeps the counts
    elif cfg.warm_lr_scale != 1:
        raise ValueError(
            f"warm_lr_scale={cfg.warm_lr_scale!r} applies to a warm start from a related model, but init_from "
            f"{cfg.init_from!r} holds {cfg.model!r} itself (a further stage: lower lr instead)"
        )
    elif _plain(ckpt.model_kwargs) != _plain(kwargs):
        raise ValueError(
            f"init_from {cfg.init_from!r} was built with model kwargs {ckpt.model_kwargs}, this run with "
            f"{_plain(kwargs)}; pass the same --model-kwargs (adding only {sorted(GROWTH_KWARGS)} is allowed)"
        )
    else:
        net.load_state_dict(ckpt.model.state_dict())
    meta = ckpt.meta
    # Every checkpoint train() and average_checkpoints() write, partial ones included, records its
    # totals; one saved by other means (a converted public checkpoint) contributes no training to count.
    steps = int(meta.get("total_steps") or 0)
    wall = float(meta.get("total_train_wall_time_s") or 0.0)
    return {"path": Path(cfg.init_from).name, "sha256": sha256_file(cfg.init_from), "total_steps": steps,
            "total_train_wall_time_s": wall, "command": meta.get("command", ""),
            "held_out": {k: v for k, v in (meta.get("held_out") or {}).items() if k in ("miou", "pq")},
            "init_from": meta.get("init_from"),  # the whole chain of stages
            **({"warm_start": warm} if warm else {})}, copied


def _save(cfg: TrainConfig, net: nn.Module, kwargs: dict, meta: dict) -> Path:
    """Write ``net`` (float16 tensors, contiguous layout) to ``cfg.out`` with ``meta``."""
    from ..models.checkpoint import save_checkpoint

    was_training = net.training
    state_net = net.to(memory_format=torch.contiguous_format)
    path = save_checkpoint(cfg.out, state_net, model_name=cfg.model, model_kwargs=_plain(kwargs),
                           label_set=cfg.label_set, extra=_plain(meta), half=True)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    net.train(was_training)
    return Path(path)


def _plain(value):
    """Tuples -> lists recursively so builder kwargs are plain checkpoint data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

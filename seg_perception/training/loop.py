"""Train segmentation models from scratch on synthetic street scenes (see docs/TRAINING.md).

Scenes come from :mod:`seg_perception.datasets.synthetic`, generated on the fly at ``scene_hw``
(default 256 x 512) and resized to the network resolution exactly as the :class:`Segmenter` does
(bilinear image, nearest-neighbour labels), so what the network sees in training is what it sees in
deployment. Training and held-out seeds never overlap (:func:`train_seed`, :data:`EVAL_SEED_BASE`).

Losses (all at the network resolution h x w):

* semantic: cross-entropy (ignore 255), bootstrapped over the hardest ``hard_pixel_fraction`` of
  pixels as in Panoptic-DeepLab (1.0 = plain cross-entropy); optionally, as in the paper, pixels of
  small thing instances weigh ``small_instance_weight`` (3 in the paper; 1 = off) before the
  hardest pixels are picked ("small" = under 64 x 64 px at 1024 x 2048, scaled to the network input);
* panoptic models also: center heatmap MSE against Gaussian targets (``center_sigma`` px), offset
  L1 on thing pixels ((dy, dx) from each pixel to its instance's centre of mass, in network pixels).
  The paper weights them 1 / 200 / 0.01 with sigma 8 px at 1024 x 2048; we keep 200 for the center,
  scale sigma with the image height (floored at 2 px so the peak stays resolvable) and raise the
  offset weight to 0.01 * 1024 / h because our offsets are measured in h-row pixels.

Usage::

    from seg_perception.training.loop import TrainConfig, train
    result = train(TrainConfig(model="deeplabv3plus_mobilenetv2", out="w.pt", steps=2000))
    result.scores   # held-out mIoU (and PQ for panoptic models)
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..datasets.labels import IGNORE_LABEL, get_label_set
from ..datasets.synthetic import make_scene
from ..core.preprocess import normalize_rgb
from ..core.results import LABEL_DIVISOR

#: Held-out evaluation scenes use seeds EVAL_SEED_BASE + i; training seeds are >= 10_000_000.
EVAL_SEED_BASE = 5_000_000
#: Validation scenes (choosing settings such as post-processing) use VALIDATION_SEED_BASE + i,
#: i < 1_000_000: disjoint from held-out and training scenes.
VALIDATION_SEED_BASE = 4_000_000
_TRAIN_SEED_STRIDE = 10_000_000


def train_seed(seed: int, index: int) -> int:
    """Scene seed of training sample ``index`` for run seed ``seed`` (disjoint from eval seeds)."""
    if not 0 <= index < _TRAIN_SEED_STRIDE:
        raise ValueError(f"sample index {index} outside [0, {_TRAIN_SEED_STRIDE}); use fewer steps x batch")
    return _TRAIN_SEED_STRIDE * (int(seed) + 1) + int(index)


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in the checkpoint's ``meta.train_config``).

    Attributes:
        model: registry name, e.g. ``"deeplabv3plus_mobilenetv2"``.
        out: checkpoint path to write.
        resolution: network input (h, w).
        scene_hw: resolution scenes are generated (and evaluated) at.
        steps, batch_size, lr, weight_decay, warmup_steps: optimisation (AdamW, linear warm-up then
            cosine decay to ``lr * min_lr_ratio``).
        seed: run seed (weights init and training scenes).
        model_kwargs: builder keyword arguments (``num_classes`` is added from the label set).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        eval_scenes: held-out scenes evaluated at the end (0 skips evaluation).
        threads: torch intra-op threads (None: torch default; 0: adaptive between 1 and cpu_count,
            see :class:`_ThreadTuner` -- on a machine shared with other jobs, extra threads can make
            steps many times slower).
        amp: ``"bf16"`` autocast (fast on CPUs with AMX/AVX512-BF16 and on GPUs), ``"fp16"`` (CUDA
            only) or ``"none"``; weights and the optimizer stay float32.
        channels_last: NHWC memory format (faster convolutions on CPU with oneDNN).
        workers: scene-generating worker processes (0: generate in the training process).
        hard_pixel_fraction: bootstrapped cross-entropy keeps this fraction of the hardest pixels.
        small_instance_area, small_instance_weight: semantic-loss weight of the pixels of thing
            instances smaller than ``small_instance_area`` pixels at 1024 x 2048 (scaled by the
            network input's area; the paper's 4096 = 64 x 64 is 256 px at 256 x 512). Weight 1
            (the default) turns it off; the paper uses 3.
        center_weight, offset_weight, center_sigma: panoptic losses (sigma None: 8 * h / 1024, >= 2).
        init_from: start from the weights of this seg_perception checkpoint of the same model and
            builder kwargs (a second training stage; the optimizer and LR schedule start afresh).
        warm_lr_scale: with ``init_from`` a checkpoint of a related model (a warm start), the
            copied tensors train at ``lr * warm_lr_scale`` and the new ones at ``lr`` -- so the
            gradients of freshly initialised heads do not wash out what the copied backbone learnt.
        log_every: loss history interval (steps). save_every: also write an unevaluated checkpoint
            (``meta.partial``) every this many steps (0: only at the end).
        crop: train on random (h, w) crops of the scenes resized to ``resolution`` (None: whole
            scenes). Crops keep the pixel scale the network sees at inference while costing
            ``crop / resolution`` of the compute per sample -- the usual way to train a network
            that runs at a large resolution.
    """

    model: str
    out: str
    resolution: tuple[int, int] = (128, 256)
    scene_hw: tuple[int, int] = (256, 512)
    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    seed: int = 0
    model_kwargs: dict = field(default_factory=dict)
    label_set: str = "cityscapes"
    device: str = "auto"
    eval_scenes: int = 32
    threads: Optional[int] = None
    amp: str = "none"
    channels_last: bool = False
    workers: int = 1
    hard_pixel_fraction: float = 0.25
    small_instance_area: float = 4096.0
    small_instance_weight: float = 1.0
    center_weight: float = 200.0
    offset_weight: Optional[float] = None
    center_sigma: Optional[float] = None
    log_every: int = 50
    save_every: int = 0
    init_from: Optional[str] = None
    warm_lr_scale: float = 1.0
    crop: Optional[tuple[int, int]] = None
    command: str = ""

    def validate(self) -> "TrainConfig":
        """Check values; raises ``ValueError`` naming the bad field and the fix."""
        for name in ("steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 < self.hard_pixel_fraction <= 1:
            raise ValueError(f"hard_pixel_fraction must be in (0, 1], got {self.hard_pixel_fraction!r}")
        if not self.small_instance_weight > 0 or not self.small_instance_area >= 0:
            raise ValueError(f"small_instance_weight must be > 0 and small_instance_area >= 0, got "
                             f"{self.small_instance_weight!r} and {self.small_instance_area!r} (weight 1 = off)")
        for name in ("resolution", "scene_hw"):
            hw = getattr(self, name)
            if len(hw) != 2 or min(hw) < 16:
                raise ValueError(f"{name} must be (height, width) with both >= 16, got {hw!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {self.amp!r}")
        if self.crop is not None:
            ch, cw = self.crop
            if ch < 16 or cw < 16 or ch > self.resolution[0] or cw > self.resolution[1]:
                raise ValueError(f"crop must be (height, width) with 16 <= crop <= resolution "
                                 f"{tuple(self.resolution)!r}, got {tuple(self.crop)!r}")
        if not 0 < self.warm_lr_scale <= 1:
            raise ValueError(f"warm_lr_scale must be in (0, 1], got {self.warm_lr_scale!r}")
        if self.warm_lr_scale != 1 and not self.init_from:
            raise ValueError(f"warm_lr_scale={self.warm_lr_scale!r} needs init_from (a checkpoint of a related "
                             "model to warm-start from)")
        if self.eval_scenes < 0 or self.workers < 0:
            raise ValueError("eval_scenes and workers must be >= 0")
        return self

    @property
    def sigma(self) -> float:
        return float(self.center_sigma) if self.center_sigma else default_center_sigma(self.resolution[0])

    @property
    def small_instance(self) -> Optional[tuple[float, float]]:
        """(max area in network pixels, weight) for :func:`make_batch`; None when the weight is 1."""
        if self.small_instance_weight == 1:
            return None
        h, w = self.resolution
        return self.small_instance_area * h * w / (1024 * 2048), float(self.small_instance_weight)

    @property
    def offset_w(self) -> float:
        return float(self.offset_weight) if self.offset_weight is not None else 0.01 * 1024 / self.resolution[0]


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    path: Path
    scores: dict
    wall_time_s: float
    history: list[dict]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def default_center_sigma(height: int) -> float:
    """Center-heatmap Gaussian sigma in pixels for ``height``-row targets: the paper's 8 px at
    1024 rows, scaled, and at least 2 px so small instances keep a peak."""
    return max(2.0, 8.0 * int(height) / 1024)


def thing_pixels(panoptic: np.ndarray, thing_ids: frozenset[int]) -> np.ndarray:
    """(h, w) bool: pixels of thing instances (class in ``thing_ids`` and instance id > 0)."""
    return np.isin(panoptic // LABEL_DIVISOR, list(thing_ids)) & (panoptic % LABEL_DIVISOR > 0)


def panoptic_targets(panoptic: np.ndarray, thing_ids: frozenset[int], sigma: float,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Panoptic-DeepLab regression targets from a panoptic id map.

    Args:
        panoptic: (h, w) int32 ids ``class * 1000 + instance``.
        thing_ids: classes whose instances get centres and offsets.
        sigma: Gaussian standard deviation of the centre heatmap, in pixels.

    Returns:
        center (1, h, w) float32 heatmap in [0, 1] (max over instances of a Gaussian at each
        instance's centre of mass), offset (2, h, w) float32 (dy, dx) from each thing pixel to its
        centre (0 elsewhere), mask (1, h, w) float32 (1 on thing pixels).
    """
    h, w = panoptic.shape
    center = np.zeros((h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    thing = thing_pixels(panoptic, thing_ids)
    if not thing.any():
        return center[None], offset, thing[None].astype(np.float32)
    ids, inv = np.unique(panoptic[thing], return_inverse=True)
    ys, xs = np.nonzero(thing)
    cnt = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    cy = np.bincount(inv, weights=ys, minlength=len(ids)) / cnt
    cx = np.bincount(inv, weights=xs, minlength=len(ids)) / cnt
    offset[0][ys, xs] = (cy[inv] - ys).astype(np.float32)
    offset[1][ys, xs] = (cx[inv] - xs).astype(np.float32)
    r = int(math.ceil(3 * sigma))
    for y0, x0 in zip(cy, cx):
        yc, xc = int(round(y0)), int(round(x0))
        ya, yb, xa, xb = max(0, yc - r), min(h, yc + r + 1), max(0, xc - r), min(w, xc + r + 1)
        if ya >= yb or xa >= xb:
            continue
        gy = np.exp(-((np.arange(ya, yb) - y0) ** 2) / (2 * sigma ** 2))
        gx = np.exp(-((np.arange(xa, xb) - x0) ** 2) / (2 * sigma ** 2))
        np.maximum(center[ya:yb, xa:xb], np.outer(gy, gx).astype(np.float32), out=center[ya:yb, xa:xb])
    return center[None], offset, thing[None].astype(np.float32)


def small_instance_weights(panoptic: np.ndarray, thing_ids: frozenset[int], max_area: float,
                           weight: float) -> np.ndarray:
    """Per-pixel semantic-loss weights: (h, w) float32, ``weight`` on the pixels of thing instances
    (``class in thing_ids``, instance id > 0) covering fewer than ``max_area`` pixels of ``panoptic``
    ((h, w) ids ``class * 1000 + instance``), 1 everywhere else."""
    out = np.ones(panoptic.shape, np.float32)
    thing = thing_pixels(panoptic, thing_ids)
    if thing.any():
        _ids, inv, cnt = np.unique(panoptic[thing], return_inverse=True, return_counts=True)
        ys, xs = np.nonzero(thing)
        small = cnt[inv.reshape(-1)] < max_area
        out[ys[small], xs[small]] = weight
    return out


def crop_window(seed: int, hw: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left (y, x) of the random ``crop`` window in an ``hw`` image, fixed by ``seed``."""
    rng = np.random.default_rng([int(seed), 0xC409])
    return int(rng.integers(0, hw[0] - crop[0] + 1)), int(rng.integers(0, hw[1] - crop[1] + 1))


def make_batch(seeds: list[int], scene_hw: tuple[int, int], net_hw: tuple[int, int], *,
               panoptic: bool = False, sigma: float = 2.0,
               thing_ids: frozenset[int] = frozenset(range(11, 19)),
               crop: Optional[tuple[int, int]] = None,
               small_instance: Optional[tuple[float, float]] = None) -> dict[str, torch.Tensor]:
    """Render scenes ``seeds`` and turn them into network tensors.

    Each scene is resized to ``net_hw`` and, with ``crop`` (ch, cw), cut to a window at a position
    fixed by its seed (panoptic targets are computed on the crop, as for any cropped image).

    Returns a dict: ``image`` (B, 3, h, w) float32 normalized, ``semantic`` (B, h, w) int64 and,
    when ``panoptic``, ``center`` (B, 1, h, w), ``offset`` (B, 2, h, w), ``offset_mask`` (B, 1, h, w);
    with ``small_instance`` (max area in pixels, weight), ``semantic_weight`` (B, h, w) float32 from
    :func:`small_instance_weights` on the (cropped) labels; (h, w) is ``crop`` when given, else ``net_hw``.
    """
    h, w = net_hw
    images, sems, centers, offsets, masks, weights = [], [], [], [], [], []
    for s in seeds:
        sc = make_scene(int(s), scene_hw)
        img, sem, pan = sc.image, sc.semantic, sc.panoptic
        if (img.shape[0], img.shape[1]) != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            sem = cv2.resize(sem, (w, h), interpolation=cv2.INTER_NEAREST)
            pan = cv2.resize(pan, (w, h), interpolation=cv2.INTER_NEAREST)
        if crop is not None:
            y, x = crop_window(int(s), (h, w), crop)
            win = (slice(y, y + crop[0]), slice(x, x + crop[1]))
            img, sem, pan = img[win], sem[win], pan[win]
        images.append(normalize_rgb(img))
        sems.append(sem.astype(np.int64))
        if small_instance is not None:
            weights.append(small_instance_weights(pan, thing_ids, *small_instance))
        if panoptic:
            c, o, m = panoptic_targets(pan, thing_ids, sigma)
            centers.append(c)
            offsets.append(o)
            masks.append(m)
    batch = {"image": torch.from_numpy(np.stack(images)), "semantic": torch.from_numpy(np.stack(sems))}
    if small_instance is not None:
        batch["semantic_weight"] = torch.from_numpy(np.stack(weights))
    if panoptic:
        batch["center"] = torch.from_numpy(np.stack(centers))
        batch["offset"] = torch.from_numpy(np.stack(offsets))
        batch["offset_mask"] = torch.from_numpy(np.stack(masks))
    return batch


class SceneBatches(torch.utils.data.IterableDataset):
    """Deterministic stream of training batches (batch k uses samples k*B .. k*B+B-1).

    With several DataLoader workers, worker i produces batches i, i+n, ...; the DataLoader
    returns them in order, so the stream does not depend on the worker count.
    """

    def __init__(self, cfg: TrainConfig, panoptic: bool, thing_ids: frozenset[int]) -> None:
        super().__init__()
        self.cfg, self.panoptic, self.thing_ids = cfg, panoptic, thing_ids

    def batch(self, k: int) -> dict[str, torch.Tensor]:
        b = self.cfg.batch_size
        seeds = [train_seed(self.cfg.seed, k * b + i) for i in range(b)]
        return make_batch(seeds, tuple(self.cfg.scene_hw), tuple(self.cfg.resolution),
                          panoptic=self.panoptic, sigma=self.cfg.sigma, thing_ids=self.thing_ids,
                          crop=tuple(self.cfg.crop) if self.cfg.crop else None,
                          small_instance=self.cfg.small_instance)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
            cv2.setNumThreads(1)
        for k in range(start, self.cfg.steps, step):
            yield self.batch(k)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
def bootstrapped_ce(logits: torch.Tensor, target: torch.Tensor, fraction: float,
                    weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy over the hardest ``fraction`` of valid pixels (all pixels when 1.0).

    logits (N, C, h, w), target (N, h, w) int64 with ``IGNORE_LABEL`` for ignored pixels, weight
    (N, h, w) per-pixel loss weights (None: all 1), applied before the hardest pixels are picked.
    """
    loss = F.cross_entropy(logits, target, ignore_index=IGNORE_LABEL, reduction="none")
    if weight is not None:
        loss = loss * weight.to(loss.dtype)
    loss = loss.flatten()
    valid = (target.flatten() != IGNORE_LABEL)
    loss = loss[valid]
    if loss.numel() == 0:
        return logits.sum() * 0.0
    if fraction < 1.0:
        k = max(1, int(loss.numel() * fraction))
        loss = torch.topk(loss, k, sorted=False).values
    return loss.mean()


def compute_losses(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: TrainConfig
                   ) -> dict[str, torch.Tensor]:
    """Weighted loss terms and their sum (``total``). Panoptic terms when ``center`` is in batch."""
    losses = {"semantic": bootstrapped_ce(outputs["semantic"], batch["semantic"], cfg.hard_pixel_fraction,
                                          batch.get("semantic_weight"))}
    total = losses["semantic"]
    if "center" in batch:
        center = F.mse_loss(outputs["center"], batch["center"])
        mask = batch["offset_mask"]
        off = (F.l1_loss(outputs["offset"], batch["offset"], reduction="none") * mask).sum() / (2 * mask.sum()).clamp(min=1.0)
        losses["center"] = center * cfg.center_weight
        losses["offset"] = off * cfg.offset_w
        total = total + losses["center"] + losses["offset"]
    losses["total"] = total
    return losses


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


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def evaluate_segmenter(segmenter, n_scenes: int, scene_hw: tuple[int, int] = (256, 512),
                       first_seed: int = EVAL_SEED_BASE) -> dict:
    """Held-out mIoU (and PQ when the segmenter is panoptic) on scenes ``first_seed ..``.

    mIoU uses the Cityscapes convention (classes present in ground truth or predictions).
    Returns ``{"miou", "pixel_accuracy", "per_class_iou", ["pq", "sq", "rq", "pq_things",
    "pq_stuff"], "scenes", "scene_hw", "first_seed", "resolution"}``.
    """
    from ..eval.metrics import ConfusionMatrix, PanopticQuality

    labels = segmenter.label_set
    cm = ConfusionMatrix(labels.num_classes)
    pq = PanopticQuality(labels.num_classes, labels.thing_ids) if segmenter.task == "panoptic" else None
    for i in range(int(n_scenes)):
        sc = make_scene(first_seed + i, scene_hw)
        res = segmenter.segment(sc.image)
        cm.update(sc.semantic, res.semantic)
        if pq is not None:
            pq.update(sc.panoptic, res.panoptic)
    iou = cm.iou()
    scores = {
        "miou": round(float(cm.miou("cityscapes")), 4),
        "miou_convention": "cityscapes",
        "pixel_accuracy": round(float(cm.pixel_accuracy()), 4),
        "per_class_iou": {labels.names[c]: round(float(v), 4) for c, v in enumerate(iou) if not math.isnan(v)},
        "scenes": int(n_scenes), "scene_hw": f"{scene_hw[0]}x{scene_hw[1]}", "first_seed": int(first_seed),
        "resolution": f"{segmenter.resolution[0]}x{segmenter.resolution[1]}",
    }
    if pq is not None:
        scores.update(pq_report(pq.summary(labels.names)))
    return scores


def _through_grid(labels: np.ndarray, logits_hw: tuple[int, int]) -> np.ndarray:
    """``labels`` (H, W) ints as a perfect network with a ``logits_hw`` output grid would give them back.

    Each distinct value becomes a channel holding its exact area fraction per grid cell; the
    channels are upsampled bilinearly to (H, W) (as the Segmenter upsamples logits) and the
    argmax maps back to the values. Returns (H, W), the dtype of ``labels``.
    """
    h, w = int(logits_hw[0]), int(logits_hw[1])
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    low = np.stack([cv2.resize((inverse == k).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                    for k in range(len(values))])
    up = F.interpolate(torch.from_numpy(low)[None], size=labels.shape, mode="bilinear", align_corners=False)[0]
    return values[up.max(0).indices.numpy()].astype(labels.dtype)


def _check_grid(logits_hw: tuple[int, int]) -> None:
    if int(logits_hw[0]) < 1 or int(logits_hw[1]) < 1:
        raise ValueError(f"logits_hw must be two integers >= 1, got {tuple(logits_hw)!r}")


def resolution_ceiling(logits_hw: tuple[int, int], n_scenes: int = 32, scene_hw: tuple[int, int] = (256, 512),
                       first_seed: int = EVAL_SEED_BASE, num_classes: int = 19) -> float:
    """Best mIoU a model can reach when its logits live on a ``logits_hw`` grid.

    A perfect network that outputs, at ``logits_hw``, the exact fraction of each class in every
    cell (one-hot ground truth area-averaged) and is upsampled bilinearly to ``scene_hw`` before
    the argmax, as the :class:`~seg_perception.core.segmenter.Segmenter` does. DeepLabV3+ and
    Panoptic-DeepLab predict at 1/4 of the network input, so a 128x256 network has 32x64 logits.
    Same scenes and mIoU convention as :func:`evaluate_segmenter`.
    """
    from ..eval.metrics import ConfusionMatrix

    _check_grid(logits_hw)
    cm = ConfusionMatrix(num_classes)
    for i in range(int(n_scenes)):
        sem = make_scene(first_seed + i, scene_hw).semantic
        cm.update(sem, _through_grid(sem, logits_hw))
    return float(cm.miou("cityscapes"))


def panoptic_resolution_ceiling(logits_hw: tuple[int, int], n_scenes: int = 32,
                                scene_hw: tuple[int, int] = (256, 512), first_seed: int = EVAL_SEED_BASE,
                                label_set: str = "cityscapes") -> dict:
    """Best PQ a model can reach when its outputs live on a ``logits_hw`` grid.

    As :func:`resolution_ceiling`, per panoptic *segment* (each instance and each stuff class is a
    channel of exact area fractions): perfect semantics, centers and offsets, limited only by the
    output grid. Small instances, a few grid cells wide, come back with IoU <= 0.5 or not at all.
    Returns ``{"pq", "pq_things", "pq_stuff", "sq", "rq"}`` on the scenes of :func:`evaluate_segmenter`.
    """
    from ..eval.metrics import PanopticQuality

    _check_grid(logits_hw)
    labels = get_label_set(label_set)
    pq = PanopticQuality(labels.num_classes, labels.thing_ids)
    for i in range(int(n_scenes)):
        pan = make_scene(first_seed + i, scene_hw).panoptic
        pq.update(pan, _through_grid(pan, logits_hw))
    return pq_scores(pq.summary(labels.names))


def pq_scores(summary: dict) -> dict[str, float]:
    """``PanopticQuality.summary`` -> ``{"pq", "pq_things", "pq_stuff", "sq", "rq"}``."""
    return {"pq": float(summary["all"]["pq"]), "pq_things": float(summary["things"]["pq"]),
            "pq_stuff": float(summary["stuff"]["pq"]), "sq": float(summary["all"]["sq"]),
            "rq": float(summary["all"]["rq"])}


def pq_report(summary: dict) -> dict:
    """``PanopticQuality.summary`` -> :func:`pq_scores` rounded to 4 digits, plus
    ``"per_class_pq": {name: pq}`` for the classes that have a PQ."""
    report: dict = {k: round(v, 4) for k, v in pq_scores(summary).items()}
    report["per_class_pq"] = {d["name"]: round(float(d["pq"]), 4)
                              for d in summary["per_class"] if d["pq"] is not None}
    return report


def evaluate_checkpoint(model: str, weights: str | os.PathLike, *, resolution: tuple[int, int] | None,
                        n_scenes: int, scene_hw: tuple[int, int] = (256, 512),
                        first_seed: int = EVAL_SEED_BASE, device: str = "cpu") -> dict:
    """Load ``weights`` through :func:`seg_perception.core.segmenter.build_segmenter` and evaluate
    (``resolution`` None: the checkpoint's own)."""
    from ..core.segmenter import build_segmenter

    seg = build_segmenter(model, weights=str(weights), resolution=tuple(resolution) if resolution else None,
                          device=device)
    try:
        return evaluate_segmenter(seg, n_scenes, scene_hw, first_seed)
    finally:
        seg.close()


# --------------------------------------------------------------------------------------------
# The training run
# --------------------------------------------------------------------------------------------
def machine_info() -> dict:
    """Where a run happened (stored in checkpoints and docs)."""
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
            "torch": str(torch.__version__), "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


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
        "machine": machine_info() | {"device": str(device)},
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
    from ..models.checkpoints import load_checkpoint
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
    steps = int(meta.get("total_steps", meta.get("steps_done", meta.get("steps", 0))) or 0)
    wall = float(meta.get("total_train_wall_time_s", meta.get("train_wall_time_s", 0.0)) or 0.0)
    return {"path": Path(cfg.init_from).name, "sha256": sha256_file(cfg.init_from), "total_steps": steps,
            "total_train_wall_time_s": wall, "command": meta.get("command", ""),
            "held_out": {k: v for k, v in (meta.get("held_out") or {}).items() if k in ("miou", "pq")},
            "init_from": meta.get("init_from"),  # the whole chain of stages
            **({"warm_start": warm} if warm else {})}, copied


def _save(cfg: TrainConfig, net: nn.Module, kwargs: dict, meta: dict) -> Path:
    """Write ``net`` (float16 tensors, contiguous layout) to ``cfg.out`` with ``meta``."""
    from ..models.checkpoints import save_checkpoint

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

"""What a training run depends on (:class:`TrainConfig`) and which scene seeds it may use.

Training and held-out seeds never overlap (:func:`train_seed`, :data:`EVAL_SEED_BASE`,
:data:`VALIDATION_SEED_BASE`), so a held-out score never comes from a scene the network saw.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .targets import default_center_sigma

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

"""Training batches rendered from synthetic scenes (:func:`make_batch`, :class:`SceneBatches`).

Scenes come from :mod:`seg_perception.datasets.synthetic`, generated on the fly at ``scene_hw``
and resized to the network resolution exactly as the :class:`Segmenter` does (bilinear image,
nearest-neighbour labels), so what the network sees in training is what it sees in deployment.
"""
from __future__ import annotations

from typing import Iterator, Optional

import cv2
import numpy as np
import torch

from ..core.preprocess import normalize_rgb
from ..datasets.synthetic import make_scene
from .config import TrainConfig, train_seed
from .targets import panoptic_targets, small_instance_weights


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

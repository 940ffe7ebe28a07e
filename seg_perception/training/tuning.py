"""Tune panoptic post-processing (center threshold, NMS kernel, stuff area, class-aware grouping, class
split) for given weights.

Panoptic-DeepLab's post-processing defaults are the paper's Cityscapes setting at 1024x2048. A
model trained elsewhere, or run at another resolution, often peaks elsewhere: how confident its
center heatmap is decides the best ``center_threshold``, its object sizes the best ``nms_kernel``
and ``stuff_area``. :func:`tune_panoptic` picks the combination with the highest PQ on
*validation* scenes (seeds :data:`seg_perception.training.config.VALIDATION_SEED_BASE` ..; disjoint from
both training and held-out scenes, so held-out scores stay unbiased). The network runs once per
scene; only the post-processing is repeated per combination (through
:meth:`seg_perception.core.segmenter.Segmenter.postprocess`, the code path the node runs).

The search is a full grid over :data:`DEFAULT_GRID`, then a line search of each
:data:`DEFAULT_REFINE` field in turn, each from the best combination so far:
``class_split_area`` barely interacts with the others, and folding its 5 values into the grid
would make tuning 5x slower. ``class_aware_grouping`` is in the grid rather than line-searched
because it moves the best center threshold: searched one after the other, the pair can stop short
of the best combination.

:func:`write_tuned` stores the choice in the checkpoint (``meta.panoptic_postprocess``), where
:func:`seg_perception.core.weights.panoptic_config_for` picks it up; node parameters left at ``auto``
use it.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

import torch

from ..datasets.synthetic import make_scene
from ..core.panoptic import TUNABLE_FIELDS, PanopticConfig
from ..eval.metrics import PanopticQuality

if TYPE_CHECKING:  # pragma: no cover
    from ..core.segmenter import Segmenter

#: The search space by default: 8 x 4 x 5 x 2 = 320 combinations (``top_k`` stays as configured).
#: NMS kernel 11 and center thresholds 0.35 and 0.4 are in it because the shipped panoptic
#: model's best values sat at the old edges (9, then 0.3; a wider probe found 0.35 best).
DEFAULT_GRID: dict[str, tuple] = {
    "center_threshold": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4),
    "nms_kernel": (5, 7, 9, 11),
    "stuff_area": (0, 256, 512, 1024, 2048),
    "class_aware_grouping": (False, True),
}

#: Fields searched one at a time after the grid, in this order, each from the best combination so far.
DEFAULT_REFINE: dict[str, tuple] = {
    "class_split_area": (0, 1024, 2048, 4096, 8192),
}


class TuningError(ValueError):
    """Tuning cannot run: not a panoptic segmenter, no scenes, or a bad grid (names which)."""


@dataclass
class TuneResult:
    """What :func:`tune_panoptic` measured.

    Attributes:
        best: the winning :data:`~seg_perception.core.panoptic.TUNABLE_FIELDS` values.
        best_scores / baseline_scores: ``{"pq", "pq_things", "pq_stuff", "sq", "rq"}`` of the winner
            and of the segmenter's configuration before tuning, on the same scenes.
        baseline: the tunable values before tuning.
        table: ``(values, scores)`` for every combination tried, best PQ first.
        scenes / first_seed / scene_hw: the validation scenes used.
    """

    best: dict
    best_scores: dict
    baseline: dict
    baseline_scores: dict
    table: list = field(default_factory=list)
    scenes: int = 0
    first_seed: int = 0
    scene_hw: tuple[int, int] = (256, 512)

    def record(self) -> dict:
        """JSON-ready summary for a checkpoint's ``meta.panoptic_postprocess_tuning``."""
        return {
            "selected_by": "highest PQ on synthetic validation scenes",
            "scenes": self.scenes, "first_seed": self.first_seed,
            "scene_hw": f"{self.scene_hw[0]}x{self.scene_hw[1]}",
            "combinations": len(self.table),
            "best": dict(self.best), "best_scores": dict(self.best_scores),
            "baseline": dict(self.baseline), "baseline_scores": dict(self.baseline_scores),
        }


def _check_grid(grid: Mapping[str, Sequence], what: str = "grid") -> dict[str, tuple]:
    unknown = sorted(set(grid) - set(TUNABLE_FIELDS))
    if unknown:
        raise TuningError(f"{what} keys {unknown} are not tunable; choose from {list(TUNABLE_FIELDS)}")
    out = {k: tuple(v) for k, v in grid.items()}
    empty = [k for k, v in out.items() if not v]
    if empty:
        raise TuningError(f"{what} values for {empty} are empty; give at least one value each")
    return out


def _override(base: PanopticConfig, values: Mapping) -> PanopticConfig:
    try:
        return base.with_overrides(dict(values), source="tuning grid")
    except ValueError as exc:
        raise TuningError(str(exc)) from None


def tune_panoptic(
    segmenter: "Segmenter",
    n_scenes: int = 32,
    *,
    grid: Optional[Mapping[str, Sequence]] = None,
    refine: Optional[Mapping[str, Sequence]] = None,
    first_seed: Optional[int] = None,
    scene_hw: tuple[int, int] = (256, 512),
    progress: Optional[Callable[[int, int], None]] = None,
) -> TuneResult:
    """Grid-search the segmenter's panoptic post-processing on synthetic validation scenes.

    Args:
        segmenter: a panoptic Segmenter; its ``panoptic_cfg`` is the baseline and is restored.
        n_scenes: validation scenes (each ``scene_hw`` (H, W)); the network runs once per scene.
        grid: field -> candidate values (:data:`DEFAULT_GRID` when None); fields not in it keep
            the baseline value. Every combination is validated before any scene runs.
        refine: field -> candidate values searched one field at a time, in order, from the best
            combination so far (:data:`DEFAULT_REFINE` when None; ``{}``: grid only). A field
            may not be in both ``grid`` and ``refine``.
        first_seed: first scene seed (default :data:`seg_perception.training.config.VALIDATION_SEED_BASE`).
        progress: called as ``progress(done, total)`` after each combination.

    Returns:
        :class:`TuneResult`; ties in PQ go to the combination measured first (the baseline, the
        grid in order, then the line searches).

    Raises:
        TuningError: a semantic segmenter, ``n_scenes < 1``, or a bad grid (unknown field, empty
            or invalid values, named).
    """
    from .config import VALIDATION_SEED_BASE
    from .synthetic_eval import pq_scores

    if segmenter.task != "panoptic" or segmenter.panoptic_cfg is None:
        raise TuningError(f"{segmenter.model_name or 'this model'} is a {segmenter.task} model; "
                          "only panoptic models have post-processing to tune")
    if int(n_scenes) < 1:
        raise TuningError(f"n_scenes={n_scenes!r} must be >= 1")
    seed0 = VALIDATION_SEED_BASE if first_seed is None else int(first_seed)
    space = _check_grid(DEFAULT_GRID if grid is None else grid)
    lines = _check_grid(DEFAULT_REFINE if refine is None else refine, "refine")
    both = sorted(set(space) & set(lines))
    if both:
        raise TuningError(f"{both} are in both the grid and refine; search each field in one of them")
    base: PanopticConfig = segmenter.panoptic_cfg
    names = list(space)
    configs = [base]
    for values in itertools.product(*(space[k] for k in names)):
        cfg = _override(base, zip(names, values))
        if cfg not in configs:
            configs.append(cfg)
    for name, values in lines.items():  # validate the line searches before any scene runs
        for v in values:
            _override(base, {name: v})

    labels = segmenter.label_set
    cached = []  # (gt panoptic, head outputs, (H, W)) per scene; outputs at the network grid
    for i in range(int(n_scenes)):
        sc = make_scene(seed0 + i, scene_hw)
        outputs = {k: torch.as_tensor(v).clone() for k, v in segmenter.infer(sc.image).items()}
        cached.append((sc.panoptic, outputs, sc.image.shape[:2]))

    total = len(configs) + sum(len(v) for v in lines.values())
    table: list[tuple[dict, dict]] = []
    measured: list[PanopticConfig] = []
    done = 0

    def measure(cfg: PanopticConfig) -> None:
        nonlocal done
        done += 1
        if cfg in measured:  # a line search passes through the combination it starts from
            if progress is not None:
                progress(done, total)
            return
        segmenter.panoptic_cfg = cfg
        pq = PanopticQuality(labels.num_classes, labels.thing_ids)
        for gt, outputs, hw in cached:
            pq.update(gt, segmenter.postprocess(outputs, hw).panoptic)
        measured.append(cfg)
        table.append((cfg.tunables(), {k: round(v, 4) for k, v in pq_scores(pq.summary(labels.names)).items()}))
        if progress is not None:
            progress(done, total)

    def best() -> tuple[PanopticConfig, dict]:
        # first of the highest PQ: ties go to the earlier measured (the baseline, then grid order)
        i = max(range(len(table)), key=lambda j: (table[j][1]["pq"], -j))
        return measured[i], table[i][1]

    try:
        for cfg in configs:
            measure(cfg)
        for name, values in lines.items():
            start = best()[0]
            for v in values:
                measure(_override(start, {name: v}))
    finally:
        segmenter.panoptic_cfg = base
    baseline_values, baseline_scores = table[0]
    # a stable sort keeps equal scores in measured order: the baseline, then grid order
    ranked = sorted(table, key=lambda row: -row[1]["pq"])
    best_values, best_scores = ranked[0]
    return TuneResult(best_values, best_scores, baseline_values, baseline_scores, ranked,
                      int(n_scenes), seed0, (int(scene_hw[0]), int(scene_hw[1])))


def write_tuned(path: str | os.PathLike, result: TuneResult, *, held_out: Optional[dict] = None) -> Path:
    """Store ``result.best`` (and the tuning record) in the seg_perception checkpoint at ``path``.

    Writes ``meta.panoptic_postprocess`` and ``meta.panoptic_postprocess_tuning``; ``held_out``
    (scores measured with the tuned values) replaces ``meta.held_out`` when given. The weights
    are untouched; the file is replaced atomically.

    Raises:
        seg_perception.models.checkpoint.CheckpointError: not a readable seg_perception checkpoint.
    """
    from ..models.checkpoint import update_checkpoint_meta
    from ..core.weights import POSTPROCESS_META_KEY

    updates = {POSTPROCESS_META_KEY: dict(result.best), POSTPROCESS_META_KEY + "_tuning": result.record()}
    if held_out is not None:
        updates["held_out"] = held_out
    return update_checkpoint_meta(path, updates)

"""The training history a checkpoint carries: every stage it grew from, oldest first.

``train-synthetic`` and ``average-weights`` record each parent under ``meta["init_from"]``
(nested, newest first) with its command, cumulative steps and wall time and held-out scores, so
a shipped file documents its own recipe; ``seg-perception models --lineage FILE`` prints it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class Stage:
    """One checkpoint of the chain.

    Attributes:
        command: the command that wrote it (as recorded; its paths are the trainer's own).
        total_steps: training steps from scratch up to this checkpoint.
        total_hours: training wall time from scratch, hours.
        miou: held-out mIoU where it was evaluated, else None. pq: held-out PQ, likewise.
        note: a remark recorded with the stage (e.g. a periodic checkpoint picked up again).
    """

    command: str
    total_steps: Optional[int]
    total_hours: Optional[float]
    miou: Optional[float]
    pq: Optional[float]
    note: str = ""


def lineage(meta: Mapping[str, Any]) -> list[Stage]:
    """The stages of ``meta`` (a checkpoint's ``meta``), oldest first, the checkpoint itself last.

    Raises:
        ValueError: an ``init_from`` entry that is not a mapping (a damaged record).
    """
    chain: list[Stage] = []
    node: Any = meta
    while node is not None:
        if not isinstance(node, Mapping):
            raise ValueError(f"meta.init_from holds a {type(node).__name__}, expected a mapping: damaged record")
        held = node.get("held_out") or {}
        wall = node.get("total_train_wall_time_s")
        chain.append(Stage(str(node.get("command", "")), node.get("total_steps"),
                           None if wall is None else round(float(wall) / 3600.0, 2),
                           held.get("miou"), held.get("pq"), str(node.get("note", ""))))
        node = node.get("init_from")
    return chain[::-1]


def format_lineage(stages: list[Stage]) -> list[str]:
    """One line per stage: index, cumulative steps and hours, held-out scores, command."""
    lines = []
    for i, s in enumerate(stages, 1):
        scores = " ".join(f"{k} {v:.3f}" for k, v in (("mIoU", s.miou), ("PQ", s.pq)) if v is not None) or "-"
        steps = f"{s.total_steps:,}" if s.total_steps is not None else "?"
        hours = f"{s.total_hours:.1f} h" if s.total_hours is not None else "? h"
        lines.append(f"{i:3d}. {steps:>7s} steps {hours:>7s}  {scores:22s} {s.command}")
        if s.note:
            lines.append(f"       note: {s.note}")
    return lines

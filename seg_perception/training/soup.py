"""Weight averaging ("model soup") of checkpoints trained from one starting point.

Two or more training runs that start from the same checkpoint (same model, same builder kwargs)
on different seeds end in nearby minima; the element-wise mean of their weights is usually at least
as accurate as the best of them (Wortsman et al., *Model soups*, ICML 2022). Checkpoints along one
run -- a stage and the stage that continued from it -- average the same way (stochastic weight
averaging, Izmailov et al., UAI 2018). Floating tensors,
BatchNorm running statistics included, are averaged in float32; integer buffers
(``num_batches_tracked``) take the largest value.

The result is a normal checkpoint of our format whose ``meta.averaged_from`` lists every source
(file name, SHA-256, seed, steps, command, held-out scores) so the file documents how it was made;
``seed`` is then the list of the sources' seeds, ``steps`` and ``train_wall_time_s`` their sums.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..models.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class Averaged:
    """What :func:`average_checkpoints` wrote: the file, its model's registry name and its ``meta``."""

    path: Path
    model_name: str
    meta: dict


def _check_compatible(loaded: Sequence[LoadedCheckpoint], paths: Sequence[str]) -> None:
    """Raise ValueError unless every checkpoint has the first one's model, kwargs and label set (then
    the loaded models have the same tensors: loading is strict)."""
    first, p0 = loaded[0], paths[0]
    for ck, path in zip(loaded[1:], paths[1:]):
        for what, a, b in (("model", first.model_name, ck.model_name),
                           ("model kwargs", first.model_kwargs, ck.model_kwargs),
                           ("label set", first.label_set, ck.label_set)):
            if a != b:
                raise ValueError(f"cannot average {path!r} with {p0!r}: {what} {b!r} != {a!r}; average only "
                                 "checkpoints of one model trained from one starting point")


def average_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of state dicts with the same keys and shapes.

    Floating tensors (any shape, e.g. conv weights ``(C_out, C_in, kH, kW)``, BN ``running_var``
    ``(C,)``) are averaged in float32 and returned in their own dtype; integer tensors take the
    element-wise maximum (BN ``num_batches_tracked`` counters).

    Raises ValueError for fewer than two dicts or mismatched keys / shapes.
    """
    if len(state_dicts) < 2:
        raise ValueError(f"averaging needs at least 2 state dicts, got {len(state_dicts)}")
    out: dict[str, torch.Tensor] = {}
    for key, ref in state_dicts[0].items():
        tensors = [sd.get(key) for sd in state_dicts]
        if any(t is None or t.shape != ref.shape for t in tensors):
            raise ValueError(f"tensor {key!r} is missing or has another shape in one of the state dicts")
        if ref.is_floating_point():
            out[key] = torch.stack([t.float() for t in tensors]).mean(0).to(ref.dtype)
        else:
            out[key] = torch.stack(tensors).amax(0)
    if any(set(sd) != set(out) for sd in state_dicts[1:]):
        raise ValueError("state dicts have different keys; average only checkpoints of one model")
    return out


def _source_record(path: str, ck: LoadedCheckpoint) -> dict:
    from ..hashing import sha256_file

    meta = ck.meta
    return {"path": Path(path).name, "sha256": sha256_file(path), "seed": meta.get("seed"),
            "steps": meta.get("steps"), "train_wall_time_s": meta.get("train_wall_time_s"),
            "total_steps": meta.get("total_steps"), "total_train_wall_time_s": meta.get("total_train_wall_time_s"),
            "command": meta.get("command", ""),
            "held_out": {k: v for k, v in (meta.get("held_out") or {}).items() if k in ("miou", "pq")}}


def _ancestry(meta: dict) -> set[str]:
    """SHA-256s of every checkpoint this one continued from (its ``init_from`` chain, nested)."""
    shas, prior = set(), meta.get("init_from")
    while isinstance(prior, dict):
        if prior.get("sha256"):
            shas.add(prior["sha256"])
        prior = prior.get("init_from")
    return shas


def _tips(sources: list[dict], loaded: Sequence[LoadedCheckpoint]) -> list[int]:
    """Indices of the sources no other source continued from (the latest stages)."""
    ancestry = [_ancestry(ck.meta) for ck in loaded]
    return [i for i, s in enumerate(sources) if not any(s["sha256"] in a for j, a in enumerate(ancestry) if j != i)]


def _cost(records: Sequence[dict], *, whole_history: bool) -> tuple[int, float]:
    """(steps, wall seconds) summed over source records: each one's own training, or with
    ``whole_history`` its ``total_*`` (falling back to its own where no total is recorded)."""
    steps = sum(int((whole_history and r["total_steps"]) or r["steps"] or 0) for r in records)
    wall = sum(float((whole_history and r["total_train_wall_time_s"]) or r["train_wall_time_s"] or 0.0)
               for r in records)
    return steps, wall


def _totals(sources: list[dict], loaded: Sequence[LoadedCheckpoint], tips: list[int]) -> dict:
    """Training cost: this stage (``steps``, ``train_wall_time_s``: the sources' sums) and in all
    (``total_*``: every training step behind the sources, each counted once).

    A source that another source continued from (an earlier stage of the same run, found through
    the other's ``init_from`` chain) adds nothing to the total: the later stage's history holds it.
    The remaining sources (``tips``, from :func:`_tips`) count their shared start once, or their
    whole histories without one.
    """
    steps, wall = _cost(sources, whole_history=False)
    stage = {"steps": steps, "train_wall_time_s": round(wall, 1)}
    tip_src = [sources[i] for i in tips]
    prior = [loaded[i].meta.get("init_from") or {} for i in tips]
    if prior[0] and all(p.get("sha256") == prior[0].get("sha256") for p in prior):
        steps, wall = _cost(tip_src, whole_history=False)
        steps += int(prior[0].get("total_steps") or 0)
        wall += float(prior[0].get("total_train_wall_time_s") or 0.0)
    else:  # no shared start recorded: count each source's whole history
        steps, wall = _cost(tip_src, whole_history=True)
    return stage | {"total_steps": steps, "total_train_wall_time_s": round(wall, 1)}


def average_checkpoints(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                        command: str = "") -> Averaged:
    """Average the weights of our checkpoints at ``paths`` and write the result to ``out``.

    The first checkpoint supplies everything but the weights (model, kwargs, label set, resolution,
    tuned panoptic post-processing); ``meta.held_out`` is dropped because it no longer describes the
    weights (evaluate the result). Returns what was written (:class:`Averaged`).

    Raises:
        ValueError: fewer than two paths, ``out`` among them, one file given twice (even under two
            names), or checkpoints of different models / kwargs / label sets.
        CheckpointError: a path is missing or not our format.
    """
    paths = [str(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least 2 checkpoints, got {len(paths)}: {paths}")
    if any(Path(p).resolve() == Path(out).resolve() for p in paths):
        raise ValueError(f"--out {str(out)!r} is one of the inputs; write the average to a new file")
    loaded = [load_checkpoint(p) for p in paths]
    _check_compatible(loaded, paths)
    sources = [_source_record(p, ck) for p, ck in zip(paths, loaded)]
    seen: dict[str, str] = {}
    for src, p in zip(sources, paths):
        if src["sha256"] in seen:
            raise ValueError(f"{p!r} is the same checkpoint as {seen[src['sha256']]!r} (same SHA-256); "
                             "give each checkpoint once")
        seen[src["sha256"]] = p
    model = loaded[0].model
    model.load_state_dict(average_state_dicts([ck.model.state_dict() for ck in loaded]))
    keep = ("resolution", "trained_on", "machine", "panoptic_postprocess", "batch_size")
    meta = {k: loaded[0].meta[k] for k in keep if k in loaded[0].meta}
    tips = _tips(sources, loaded)
    newest = loaded[tips[0]]  # a cross-stage average continues the latest stage's history
    meta.update({"averaged_from": sources, "init_from": newest.meta.get("init_from"), "command": command,
                 "seed": [s["seed"] for s in sources], **_totals(sources, loaded, tips)})
    path = save_checkpoint(out, model, model_name=loaded[0].model_name, model_kwargs=loaded[0].model_kwargs,
                           label_set=loaded[0].label_set, extra=meta, half=bool(loaded[0].meta.get("half", True)))
    return Averaged(Path(path), loaded[0].model_name, meta)


__all__ = ["Averaged", "average_checkpoints", "average_state_dicts", "CheckpointError"]

"""Finding and loading weights: the shipped checkpoints, the project's own format and public
checkpoints (converted on load by :mod:`seg_perception.models.convert`)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from ..datasets.labels import LabelSet, get_label_set, list_label_sets
from ..hashing import sha256_file
from ..models.shipped import SHIPPED
from .resolution import PipelineError, parse_resolution

if TYPE_CHECKING:  # pragma: no cover
    from .panoptic import PanopticConfig

LOG = logging.getLogger("seg_perception.core.weights")

#: Shipped defaults, model -> file (what each is: :mod:`seg_perception.models.shipped`).
SHIPPED_WEIGHTS = {name: info.path for name, info in SHIPPED.items()}
NO_WEIGHTS = ("none", "random")
#: Checkpoint meta key holding post-processing values tuned for the weights (``seg-perception
#: tune-panoptic --write``): a dict of :data:`seg_perception.core.panoptic.TUNABLE_FIELDS`.
POSTPROCESS_META_KEY = "panoptic_postprocess"


def resolve_weights(model: str, weights: str | None) -> str | None:
    """The weights file ``model`` loads: a path, or None for random initialization.

    ``None`` (nothing given) and ``"default"`` mean the shipped weights of ``model``; ``"none"`` /
    ``"random"`` mean random initialization; anything else is returned as the path. An empty string
    is refused: it is what a mistyped substitution (``weights:=$UNSET``) gives, and reading it as
    "no weights" would silently run random weights.

    Raises:
        PipelineError: no weights were given (or ``"default"``) for a model without shipped weights,
            or an empty string; the message names the fix (a checkpoint file, ``default``, or ``none``).
    """
    text = None if weights is None else str(weights).strip()
    if text == "":
        raise PipelineError("weights '' is empty: pass a checkpoint path, 'default' for the shipped weights "
                            "or 'none' for random init")
    if text is not None and text.lower() in NO_WEIGHTS:
        return None
    if text is None or text.lower() == "default":
        shipped = SHIPPED_WEIGHTS.get(model)
        if shipped is None or not shipped.is_file():
            have = ", ".join(n for n, p in sorted(SHIPPED_WEIGHTS.items()) if p.is_file()) or "none"
            raise PipelineError(
                f"model {model!r} has no shipped weights (models with shipped weights: {have}); pass a checkpoint "
                "(--weights FILE, node parameter weights:=FILE) or --weights none for random init (outputs meaningless)"
            )
        return str(shipped)
    return text


@dataclass
class LoadedModel:
    """A model ready for a backend plus what was learned while loading it."""

    model: torch.nn.Module
    model_name: str
    task: str
    label_set: LabelSet
    weights_path: Optional[str]
    weights_sha256: Optional[str]
    resolution: Optional[tuple[int, int]]  # the checkpoint's recommended network resolution
    meta: dict


def load_model(
    model: str,
    *,
    weights: str | None,
    label_set: str | None = None,
    model_kwargs: dict | None = None,
) -> LoadedModel:
    """Build ``model`` and load ``weights`` into it (eval mode, CPU).

    ``weights`` is a path to a seg_perception checkpoint (carries model name, builder kwargs and
    label set), a public checkpoint of a supported format (converted), ``None`` / ``"default"``
    for the shipped weights of ``model`` (see :func:`resolve_weights`), or ``"none"`` for random
    initialization (a loud warning is logged: outputs are meaningless).

    Raises:
        ValueError: unknown model (lists registered ones) or label set; PipelineError: no weights
            given for a model without shipped weights (see :func:`resolve_weights`).
        seg_perception.models.checkpoint.CheckpointError: missing / corrupt / mismatching weights.
    """
    from ..models import get_model, model_info
    from ..models import checkpoint as ckpt
    from ..models.convert import formats

    info = model_info(model)
    kwargs = dict(model_kwargs or {})
    weights = resolve_weights(model, weights)
    if weights is None:
        labels = get_label_set(label_set or "cityscapes")
        kwargs.setdefault("num_classes", labels.num_classes)
        net = get_model(model, **kwargs)
        LOG.warning(
            "model %s runs with RANDOM weights (weights: none): its outputs are meaningless. "
            "Pass weights: <path>, or omit weights for the shipped model.", model,
        )
        return LoadedModel(net.eval(), model, info.task, labels, None, None, None, {})

    path = Path(os.path.expanduser(str(weights)))
    if not path.is_file():
        raise ckpt.CheckpointError(
            f"weights file {str(path)!r} does not exist; pass an existing checkpoint path, "
            "'default' for the shipped model, or 'none' for random init"
        )
    digest = sha256_file(path)
    content = ckpt.try_torch_load(path)
    if ckpt.is_own_checkpoint(content):
        loaded = ckpt.load_checkpoint(path, expect_model=model, obj=content)
        labels = get_label_set(label_set or loaded.label_set)
        meta = dict(loaded.meta)
        res = meta.get("resolution")
        return LoadedModel(
            loaded.model.eval(), model, info.task, labels, str(path), digest,
            parse_resolution(res) if res else None, meta,
        )
    labels = get_label_set(label_set or "cityscapes")
    # Structure the file needs (e.g. VainF's one-conv decoder), under the caller's explicit kwargs.
    kwargs = {**formats.weights_model_kwargs(path, model_name=model), **kwargs}
    if kwargs.get("num_classes", labels.num_classes) != labels.num_classes:
        raise PipelineError(
            f"{str(path)!r} has a {kwargs['num_classes']}-class classifier but label set {labels.name!r} has "
            f"{labels.num_classes} classes; pass the label set it was trained with (label sets: "
            f"{', '.join(list_label_sets())})")
    kwargs.setdefault("num_classes", labels.num_classes)
    net = get_model(model, **kwargs)
    meta = formats.load_weights(net, path, model_name=model) or {}
    return LoadedModel(net.eval(), model, info.task, labels, str(path), digest, None, dict(meta))


def panoptic_config_for(loaded: LoadedModel, panoptic: "PanopticConfig | dict | None" = None) -> "PanopticConfig":
    """The post-processing config a Segmenter of ``loaded`` uses.

    A :class:`~seg_perception.core.panoptic.PanopticConfig` is taken as is. Otherwise the values tuned
    for the weights (``meta["panoptic_postprocess"]``, written by ``seg-perception tune-panoptic
    --write``) replace the paper defaults, and a dict ``panoptic`` of field -> value (e.g. node
    parameters the user set) replaces those.

    Raises:
        PipelineError: the checkpoint's tuned values or the overrides are invalid (names which).
    """
    from .panoptic import PanopticConfig

    if isinstance(panoptic, PanopticConfig):
        return panoptic.validate()
    tuned = loaded.meta.get(POSTPROCESS_META_KEY) or {}
    src = f"{loaded.weights_path or loaded.model_name}: meta.{POSTPROCESS_META_KEY}"
    try:
        if not isinstance(tuned, dict):
            raise ValueError(f"{src} is {type(tuned).__name__}, expected a dict of field -> value")
        cfg = PanopticConfig().with_overrides(tuned, source=src)
        return cfg.with_overrides(panoptic, source="panoptic overrides")
    except ValueError as exc:
        raise PipelineError(f"{exc} (re-run `seg-perception tune-panoptic --write` for a bad checkpoint entry)") from None

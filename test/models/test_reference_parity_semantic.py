"""VainF DeepLabV3+ checkpoints reproduce VainF's own outputs (oracle: ``../shared/refs``).

Each fixture was made by running VainF/DeepLabV3Plus-Pytorch itself (see its manifest). The test
rebuilds the fixture's state dict from the manifest's weight rule, writes it exactly as VainF's
``main.py`` saves a checkpoint, loads it the way a user does (``weights:=FILE``) and compares the
logits with the stored reference logits.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from seg_perception.pipeline import build_segmenter

from .. import reference_fixtures as refs

VAINF_FIXTURES = ("vainf_deeplabv3plus_mobilenet", "vainf_deeplabv3plus_resnet50")


def write_vainf_checkpoint(fixture: str, directory: Path) -> Path:
    """The fixture's checkpoint as VainF's ``save_ckpt`` writes it (manifest ``checkpoint.write``)."""
    man = refs.manifest(fixture)
    sd = OrderedDict((k, torch.from_numpy(v)) for k, v in refs.state_dict(fixture).items())
    path = directory / man["checkpoint"]["suggested_file_name"]
    torch.save({"model_state": sd, "cur_itrs": 0, "best_score": 0.0, "optimizer_state": {},
                "scheduler_state": {}}, path)
    return path


@pytest.fixture(scope="module", params=VAINF_FIXTURES)
def vainf_file(request, tmp_path_factory) -> tuple[str, Path]:
    fixture = request.param
    return fixture, write_vainf_checkpoint(fixture, tmp_path_factory.mktemp(fixture))


def assert_matches_reference(semantic: np.ndarray, ref_logits: np.ndarray, ref_argmax: np.ndarray) -> None:
    """The fixtures' tolerances: argmax agreement >= 99.9 %, max |diff| <= 1e-3 of the range."""
    ref = ref_logits.astype(np.float32)
    assert semantic.shape == ref.shape
    diff = float(np.abs(semantic - ref).max())
    assert diff <= refs.head_tolerance(ref), f"max |diff| {diff:.3g} > {refs.head_tolerance(ref):.3g}"
    agree = float((semantic[0].argmax(0) == ref_argmax).mean())
    assert agree >= 0.999, f"argmax agreement {agree:.4%}"


def test_vainf_checkpoint_reproduces_vainf_logits(vainf_file) -> None:
    fixture, path = vainf_file
    man = refs.manifest(fixture)
    for case in man["cases"]:
        data = refs.case(fixture, case["name"])
        seg = build_segmenter(man["project_model"], weights=str(path), resolution=tuple(case["input_hw"]),
                              backend="torch")
        out = seg.backend.infer({"image": data["input"]})
        assert_matches_reference(np.asarray(out["semantic"]), data["logits"], data["semantic_argmax"])

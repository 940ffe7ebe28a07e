"""Detectron2 and bowenc0221 Panoptic-DeepLab checkpoints reproduce their reference implementations.

Oracles: ``../shared/refs`` fixtures made by running each reference's own model code
(``detectron2_panoptic_deeplab_r52_dc5_dsconv``: facebookresearch/detectron2 @ 02b5c4e2,
``bowenc0221_panoptic_deeplab_r50_os32``: bowenc0221/panoptic-deeplab @ cf8e20bb). Each test
writes the checkpoint exactly as the reference saves it, loads it the way a user does
(``build_segmenter(model, weights=FILE, ...)``) and compares every head with the stored outputs
within the fixtures' tolerances (see ``../shared/refs/README.md``).

Centers are compared raw: converted checkpoints keep the references' unclamped heatmap
(``center_clamp=False``).
"""
from __future__ import annotations

import json
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from seg_perception.core.segmenter import build_segmenter
from seg_perception.core.weights import load_model
from test import reference_fixtures as rf

D2 = "detectron2_panoptic_deeplab_r52_dc5_dsconv"
BOWEN = "bowenc0221_panoptic_deeplab_r50_os32"


def _cases(fixture: str) -> list[str]:
    return [c["name"] for c in rf.manifest(fixture)["cases"]]


@pytest.fixture(scope="module")
def d2_file(tmp_path_factory):
    """The fixture's state dict written as Detectron2's model-zoo .pkl."""
    man = rf.manifest(D2)
    path = tmp_path_factory.mktemp("d2") / man["checkpoint"]["suggested_file_name"]
    with open(path, "wb") as f:
        pickle.dump({"model": dict(rf.state_dict(D2)), "__author__": "Detectron2 Model Zoo"}, f)
    return path


@pytest.fixture(scope="module")
def bowen_files(tmp_path_factory):
    """The fixture's state dict as ``final_state.pth`` (plain) and ``checkpoint.pth.tar`` (wrapped)."""
    d = tmp_path_factory.mktemp("bowen")
    sd = OrderedDict((k, torch.from_numpy(v)) for k, v in rf.state_dict(BOWEN).items())
    plain = d / rf.manifest(BOWEN)["checkpoint"]["suggested_file_name"]
    torch.save(sd, plain)
    wrapped = d / "checkpoint.pth.tar"
    torch.save({"state_dict": sd, "start_iter": 0}, wrapped)
    return {"plain": plain, "wrapped": wrapped}


def _compare(fixture: str, case_name: str, out: dict[str, torch.Tensor]) -> dict[str, float]:
    """Assert the fixture tolerances for one case; returns max |diff| / range per head."""
    man = rf.manifest(fixture)
    spec = next(c for c in man["cases"] if c["name"] == case_name)
    ref = rf.case(fixture, case_name)
    s, t = spec["subsample"]["start"], spec["subsample"]["step"]
    ours = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in out.items()}
    agree = float((ours["semantic"][0].argmax(0) == ref["semantic_argmax"]).mean())
    assert agree >= 0.999, f"{case_name}: semantic argmax agreement {agree:.5f} < 0.999"
    refs = {"semantic": ref["semantic"].astype(np.float32), "center": ref["center"], "offset": ref["offset"]}
    rel = {}
    for head, r in refs.items():
        o = ours[head][..., s::t, s::t]
        assert o.shape == r.shape, (head, o.shape, r.shape)
        diff = float(np.abs(o - r).max())
        tol = rf.head_tolerance(r)
        rel[head] = diff / max(tol * 1e3, 1e-12)
        assert diff <= tol, f"{case_name} {head}: max |diff| {diff:.3g} > {tol:.3g}"
    return rel


@pytest.mark.parametrize("case_name", _cases(D2))
def test_detectron2_r52_dsconv_matches_reference(d2_file, case_name) -> None:
    man = rf.manifest(D2)
    ref = rf.case(D2, case_name)
    h, w = ref["input"].shape[-2:]
    seg = build_segmenter(man["project_model"], weights=str(d2_file), resolution=(h, w), backend="torch")
    _compare(D2, case_name, seg.backend.infer({"image": torch.from_numpy(ref["input"])}))


def test_detectron2_refuses_what_the_reference_refuses(d2_file) -> None:
    man = rf.manifest(D2)
    for bad in man["refused_inputs"]:
        h, w = bad["input_hw"]
        # At build time (so the node refuses to start, not its first frame) ...
        with pytest.raises(ValueError, match=r"window \(32, 64\).*multiple of 512.*multiple of 1024"):
            build_segmenter(man["project_model"], weights=str(d2_file), resolution=(h, w), backend="torch")
        # ... and in the network itself, for callers that run it directly.
        net = load_model(man["project_model"], weights=str(d2_file)).model
        with pytest.raises(ValueError, match=r"window \(32, 64\).*multiple of 512.*multiple of 1024"):
            net(torch.zeros(1, 3, h, w))


@pytest.mark.parametrize("container", ["plain", "wrapped"])
def test_bowenc0221_r50_os32_matches_reference(bowen_files, container) -> None:
    man = rf.manifest(BOWEN)
    (case_name,) = _cases(BOWEN)
    ref = rf.case(BOWEN, case_name)
    h, w = ref["input"].shape[-2:]
    seg = build_segmenter(man["project_model"], weights=str(bowen_files[container]), resolution=(h, w),
                          backend="torch")
    _compare(BOWEN, case_name, seg.backend.infer({"image": torch.from_numpy(ref["input"])}))


def test_bowenc0221_file_for_another_depth_is_refused(bowen_files) -> None:
    from seg_perception.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="R50 checkpoint.*use panoptic_deeplab_resnet50"):
        build_segmenter("panoptic_deeplab_resnet101", weights=str(bowen_files["plain"]), resolution=(257, 513))


DATA = rf.REPO_ROOT / "test" / "models" / "data"


def test_detectron2_r52_plain_config_matches_reference(tmp_path) -> None:
    """The plain (non-DSConv) Cityscapes config (``model_final_bd324a.pkl`` layout: two 3x3 convs
    in the decoder fusions, semantic head and offset head) against Detectron2's own outputs
    (test/models/data/README.md)."""
    man = json.loads((DATA / "detectron2_r52_plain_manifest.json").read_text())
    scale = man["weight_rule"]["scale"]
    sd = {k: rf.rule_value(k, tuple(s), d, scale) for k, s, d in man["state_dict"]}
    path = tmp_path / "model_final_bd324a.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": sd, "__author__": "Detectron2 Model Zoo"}, f)
    h, w = man["input"]["hw"]
    u8 = np.random.default_rng(20261203).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    x = torch.from_numpy(((u8.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None].copy())
    seg = build_segmenter("panoptic_deeplab_resnet52_dc5", weights=str(path), resolution=(h, w), backend="torch")
    out = {k: v.numpy() for k, v in seg.backend.infer({"image": x}).items()}
    with np.load(DATA / "detectron2_r52_plain_512x1024.npz") as z:
        ref = {k: z[k] for k in z.files}
    assert float((out["semantic"][0].argmax(0) == ref["semantic_argmax"]).mean()) >= 0.999
    s, t = man["subsample"]["start"], man["subsample"]["step"]
    for head, r in (("semantic", ref["semantic"].astype(np.float32)), ("center", ref["center"]),
                    ("offset", ref["offset"])):
        o = out[head][..., s::t, s::t]
        assert o.shape == r.shape
        assert float(np.abs(o - r).max()) <= rf.head_tolerance(r), head

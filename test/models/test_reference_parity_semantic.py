"""VainF DeepLabV3+ checkpoints reproduce VainF's own outputs (oracle: ``../shared/refs``).

Each fixture was made by running VainF/DeepLabV3Plus-Pytorch itself (see its manifest). The test
rebuilds the fixture's state dict from the manifest's weight rule, writes it exactly as VainF's
``main.py`` saves a checkpoint, loads it the way a user does (``weights:=FILE``) and compares the
logits with the stored reference logits.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from seg_perception.core.segmenter import build_segmenter

from .. import reference_fixtures as refs

VAINF_FIXTURES = ("vainf_deeplabv3plus_mobilenet", "vainf_deeplabv3plus_resnet50")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


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
        # the whole path a camera frame takes (preprocess -> network -> labels at the camera size)
        rgb = np.rint((data["input"][0].transpose(1, 2, 0) * STD + MEAN) * 255).astype(np.uint8)
        assert np.abs(seg.preprocess(rgb) - data["input"]).max() < 1e-5
        assert (seg.segment(rgb).semantic == data["semantic_argmax"]).mean() >= 0.999


# ------------------------------------------------------------------ other sizes, ResNet-101, HRNet
# Outputs of the reference code run locally (semantic_refs/README.md says exactly how).

REF_DIR = Path(__file__).parent / "semantic_refs"

#: stored reference -> (project model, file name written, container)
LOCAL_REFS = {
    "vainf_mobilenet_os16": ("deeplabv3plus_mobilenetv2", "best_deeplabv3plus_mobilenet_cityscapes_os16.pth", "vainf"),
    "vainf_mobilenet_os16_separable": ("deeplabv3plus_mobilenetv2", "best_deeplabv3plus_mobilenet_cityscapes_os16.pth",
                                       "vainf"),
    "vainf_mobilenet_os8": ("deeplabv3plus_mobilenetv2", "best_deeplabv3plus_mobilenet_cityscapes_os8.pth", "vainf"),
    "vainf_resnet50_os8": ("deeplabv3plus_resnet50", "best_deeplabv3plus_resnet50_cityscapes_os8.pth", "vainf"),
    "vainf_resnet101_os16": ("deeplabv3plus_resnet101", "best_deeplabv3plus_resnet101_cityscapes_os16.pth", "vainf"),
    "hrnet_w18_small_v2": ("hrnetv2_w18_small_v2", "hrnet_w18_small_v2_cityscapes_cls19_1024x2048_trainset.pth", "hrnet"),
    "hrnet_w18": ("hrnetv2_w18", "hrnet_w18_cityscapes_cls19_1024x2048_trainset.pth", "hrnet"),
    "hrnet_w48": ("hrnetv2_w48", "hrnet_w48_cityscapes_cls19_1024x2048_trainset.pth", "hrnet"),
}


def _local_ref(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(REF_DIR / f"{name}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def write_local_ref_checkpoint(name: str, directory: Path) -> Path:
    """The stored reference's weights, saved as the reference saves them: VainF's ``save_ckpt``
    container, or the plain ``FullModel`` state dict of HRNet's ``tools/train.py``."""
    meta, _ = _local_ref(name)
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape, dtype in meta["entries"]:
        value = refs.rule_value(key, tuple(shape), dtype, meta["scale"])
        if key in meta["override"]:
            value = np.array(meta["override"][key], np.float32).reshape(shape)
        sd[key] = torch.from_numpy(value)
    _, file_name, container = LOCAL_REFS[name]
    path = directory / file_name
    if container == "vainf":
        torch.save({"model_state": sd, "cur_itrs": 0, "best_score": 0.0, "optimizer_state": {},
                    "scheduler_state": {}}, path)
    else:
        torch.save(sd, path)
    return path


@pytest.mark.parametrize("name", sorted(LOCAL_REFS))
def test_checkpoint_reproduces_locally_run_reference(name: str, tmp_path) -> None:
    meta, arrays = _local_ref(name)
    path = write_local_ref_checkpoint(name, tmp_path)
    model = LOCAL_REFS[name][0]
    for i, (h, w, _seed) in enumerate(meta["cases"]):
        u8 = arrays[f"image_{i}"]
        x = (((u8.astype(np.float32) / 255) - MEAN) / STD).transpose(2, 0, 1)[None].copy()
        seg = build_segmenter(model, weights=str(path), resolution=(h, w), backend="torch")
        out = np.asarray(seg.backend.infer({"image": x})["semantic"])
        assert out.shape == (1, 19, h, w)
        ref = arrays[f"logits_{i}"].astype(np.float32)
        diff = float(np.abs(out[..., 1::2, 1::2] - ref).max())
        # stored as float16: half an ulp of the largest value on top of the 1e-3-of-range bound
        bound = refs.head_tolerance(ref) + float(np.spacing(np.float16(np.abs(ref).max()))) / 2
        assert diff <= bound, f"{name} {h}x{w}: max |diff| {diff:.3g} > {bound:.3g}"
        agree = float((out[0].argmax(0) == arrays[f"argmax_{i}"]).mean())
        assert agree >= 0.999, f"{name} {h}x{w}: argmax agreement {agree:.4%}"

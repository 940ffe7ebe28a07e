"""Public checkpoint layouts: detection, conversion and refusal through ``load_weights``.

Fake public checkpoints are made from one of our models by renaming its keys into the public
layout with renames written here independently (from reading the public code), then loaded back
through ``load_weights``; the loaded model must compute what the source model computes. The
numbers are checked against the references' own outputs in test_reference_parity_*.py.
"""
from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch

from seg_perception.models import get_model
from seg_perception.models.checkpoint import CheckpointError, save_checkpoint
from seg_perception.models.convert.formats import (
    detect_format,
    load_weights,
    read_weights_file,
    weights_model_kwargs,
)

from ..checkpoint_helpers import SMALL_DLV3P, SMALL_PDL, assert_same_outputs, randomize_bn


# --------------------------------------------------------------------------- VainF

def to_vainf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our deeplabv3plus_* (decoder_convs=1) keys -> VainF DeepLabV3Plus-Pytorch model_state.

    VainF's MobileNetV2 slices keep torchvision's indices (``high_level_features.4..17``) and its
    decoder concatenates [low-level, ASPP] (ours: [ASPP, low-level]). Only the key plumbing and
    error paths are tested here; the numbers are checked against VainF's own outputs in
    test_reference_parity_semantic.py.
    """
    low = int(sd["decoder.project.0.weight"].shape[0])
    out = {}
    for k, v in sd.items():
        m = re.match(r"^backbone\.features\.(\d+)\.(.*)$", k)
        if m:
            i = int(m[1])
            k = (f"backbone.low_level_features.{i}.{m[2]}" if i < 4
                 else f"backbone.high_level_features.{i}.{m[2]}")
        elif k.startswith("aspp."):
            k = "classifier." + k
        elif k.startswith("decoder.project."):
            k = "classifier.project." + k[len("decoder.project."):]
        elif k.startswith("decoder.fuse."):
            if k == "decoder.fuse.0.weight":
                v = torch.cat([v[:, -low:], v[:, :-low]], dim=1)
            k = "classifier.classifier." + k[len("decoder.fuse."):]
        elif k.startswith("classifier."):
            k = "classifier.classifier.3." + k[len("classifier."):]
        out[k] = v
    return out


@pytest.mark.parametrize("name", ["deeplabv3plus_mobilenetv2", "deeplabv3plus_resnet50"])
def test_vainf_checkpoint(name: str, tmp_path) -> None:
    kwargs = dict(SMALL_DLV3P, decoder_convs=1)
    if name.endswith("mobilenetv2"):
        kwargs["block_padding"] = "input"  # what VainF's MobileNetV2 computes
    src = randomize_bn(get_model(name, **kwargs))
    path = tmp_path / f"best_{name}_cityscapes_os16.pth"
    torch.save({"cur_itrs": 30000, "model_state": to_vainf(src.state_dict()),
                "optimizer_state": {"state": {}, "param_groups": []}, "best_score": 0.72}, path)

    need = weights_model_kwargs(path, model_name=name)
    assert need["decoder_convs"] == 1 and need["num_classes"] == 5 and need["aspp_channels"] == 16
    assert need["low_level_channels"] == 8 and need["decoder_channels"] == 16
    dst = get_model(name, **{k: v for k, v in need.items() if k != "block_padding"})
    meta = load_weights(dst, path, model_name=name)
    assert meta["format"] == "vainf"
    assert_same_outputs(src, dst)

    # the paper's two-conv decoder does not fit: refused with the key lists and the needed kwargs
    paper = get_model(name, **SMALL_DLV3P)
    with pytest.raises(CheckpointError) as info:
        load_weights(paper, path, model_name=name)
    msg = str(info.value)
    assert "missing key(s)" in msg and "decoder.fuse.3.weight" in msg and "'decoder_convs': 1" in msg

    with pytest.raises(CheckpointError, match="DeepLabV3\\+ weights"):
        load_weights(get_model("panoptic_deeplab_mobilenetv2"), path,
                     model_name="panoptic_deeplab_mobilenetv2")


# --------------------------------------------------------------------------- Detectron2


def to_detectron2(sd: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Our panoptic_deeplab_resnet52_dc5 keys -> Detectron2 PanopticDeepLab model dict (no BN
    counters, plus the pixel mean/std buffers)."""
    out: dict[str, np.ndarray] = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.startswith("backbone."):
            k = re.sub(r"^backbone\.layer(\d)\.", lambda m: f"backbone.res{int(m[1]) + 1}.", k)
            k = re.sub(r"\.bn(\d)\.", r".conv\1.norm.", k)
            k = k.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
        else:
            head = "sem_seg_head" if k.startswith(("semantic_", )) else "ins_embed_head"
            k = re.sub(r"^(semantic|instance)_decoder\.aspp\.", f"{head}.decoder.res5.project_conv.", k)
            k = re.sub(r"^(semantic|instance)_decoder\.(project|fuse)\.(\d)\.",
                       lambda m: f"{head}.decoder.res{int(m[3]) + 2}.{m[2]}_conv.", k)
            k = k.replace("semantic_head.", "sem_seg_head.head.")
            k = k.replace("semantic_predictor.", "sem_seg_head.predictor.")
            k = re.sub(r"^(center|offset)_(head|predictor)\.", r"ins_embed_head.\1_\2.", k)
            # conv-BN pairs: "<p>.0.weight" -> "<p>.weight", "<p>.1.<x>" -> "<p>.norm.<x>"
            k = k.replace("project_conv.project.0.", "project_conv.project.").replace(
                "project_conv.project.1.", "project_conv.project.norm.")
            k = re.sub(r"(convs\.0|depthwise|pointwise|project_conv|center_head\.\d)\.0\.weight$", r"\1.weight", k)
            k = re.sub(r"(convs\.0|depthwise|pointwise|project_conv|center_head\.\d)\.1\.(\w+)$", r"\1.norm.\2", k)
        out[k] = v.numpy().copy()
    out["pixel_mean"] = np.array([123.675, 116.28, 103.53], dtype=np.float32).reshape(3, 1, 1)
    out["pixel_std"] = np.array([58.395, 57.12, 57.375], dtype=np.float32).reshape(3, 1, 1)
    return out


def test_detectron2_pkl(tmp_path) -> None:
    name = "panoptic_deeplab_resnet52_dc5"
    src = randomize_bn(get_model(name, **SMALL_PDL))
    d2 = to_detectron2(src.state_dict())
    assert "sem_seg_head.decoder.res5.project_conv.convs.1.depthwise.norm.running_var" in d2
    assert "backbone.stem.conv2.norm.weight" in d2 and "backbone.res5.2.conv3.norm.bias" in d2
    path = tmp_path / "model_final_23d03a.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": d2, "__author__": "Detectron2 Model Zoo"}, f, protocol=4)
    assert detect_format(read_weights_file(path)) == "detectron2"

    need = weights_model_kwargs(path, model_name=name)
    for k, v in SMALL_PDL.items():
        assert need[k] == v, k
    # the training crop is not in a .pkl: Detectron2's Cityscapes crop by default; here the small
    # test input needs the global average the source model was built with
    assert need["aspp_pool_crop"] == (512, 1024) and need["decoder_conv"] == "separable"
    assert need["center_clamp"] is False  # Detectron2 post-processes the raw heatmap
    dst = get_model(name, **{**need, "aspp_pool_crop": None, "center_clamp": True})
    meta = load_weights(dst, path, model_name=name)
    assert meta["format"] == "detectron2"
    assert_same_outputs(src, dst)

    with pytest.raises(CheckpointError, match="Detectron2 Panoptic-DeepLab"):
        load_weights(get_model("deeplabv3plus_resnet50"), path, model_name="deeplabv3plus_resnet50")


def test_unsafe_pkl_refused(tmp_path) -> None:
    target = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"backbone.stem.conv1.weight": Payload()}}, protocol=2))
    with pytest.raises(CheckpointError, match="refused.*system"):
        load_weights(get_model("panoptic_deeplab_resnet52_dc5"), path, model_name="panoptic_deeplab_resnet52_dc5")
    assert not target.exists()


# --------------------------------------------------------------------------- bowenc0221

BOWEN = dict(num_classes=5, output_stride=32, aspp_channels=16, decoder_channels=16, head_channels=16,
             instance_aspp_channels=16, instance_decoder_channels=8, instance_head_channels=8,
             low_level_channels=(8, 12, 16), instance_low_level_channels=(4, 6, 8),
             aspp_pooling="none", center_head="separable", align_corners=True, separable_aspp=False,
             offset_scaling="corners_floor", center_clamp=False)


def to_bowenc0221(sd: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Our PanopticDeepLab keys -> bowenc0221 state dict: top-down stage order, their separable
    conv layout, and fuse inputs ordered cat(upsampled, projected)."""
    out = {}
    sep = {"depthwise.0.": "0.0.", "depthwise.1.": "0.1.", "pointwise.0.": "1.", "pointwise.1.": "2."}

    def sep_tail(t: str) -> str:
        for a, b in sep.items():
            if t.startswith(a):
                return b + t[len(a):]
        raise AssertionError(t)

    for k, v in sd.items():
        m = re.match(r"^(semantic|instance)_decoder\.(.*)$", k)
        if m:
            b, rest = m[1], m[2]
            rest = rest.replace("aspp.convs.4.1.", "aspp.convs.4.aspp_pooling.1.")
            mm = re.match(r"^(project|fuse)\.(\d)\.(.*)$", rest)
            if mm:
                i = n - 1 - int(mm[2])
                tail = mm[3]
                if mm[1] == "fuse":
                    p = sd[f"{b}_decoder.project.{mm[2]}.0.weight"].shape[0]
                    if not tail.endswith("num_batches_tracked"):
                        dim = 1 if tail.startswith("pointwise.0.") else 0
                        if tail.startswith("depthwise.") or dim == 1:
                            v = torch.cat([v.narrow(dim, p, v.shape[dim] - p), v.narrow(dim, 0, p)], dim=dim)
                    tail = "0." + sep_tail(tail)
                rest = f"{mm[1]}.{i}.{tail}"
            out[f"decoder.{b}_decoder.{rest}"] = v
            continue
        m = re.match(r"^(semantic|center|offset)_(head|predictor)\.(.*)$", k)
        if m:
            head = "semantic_head" if m[1] == "semantic" else "instance_head"
            tail = "0.0." + sep_tail(m[3]) if m[2] == "head" else "1." + m[3]
            out[f"decoder.{head}.classifier.{m[1]}.{tail}"] = v
            continue
        out[k] = v
    return out


def test_bowenc0221_pth(tmp_path) -> None:
    name = "panoptic_deeplab_resnet50"
    src = randomize_bn(get_model(name, **BOWEN))
    path = tmp_path / "final_state.pth"
    torch.save({f"module.{k}": v for k, v in to_bowenc0221(src.state_dict(), 3).items()}, path)

    need = weights_model_kwargs(path, model_name=name)
    for k, v in BOWEN.items():
        assert need[k] == v, k
    # built without align_corners / offset scaling: load_weights switches them (no parameter changes)
    dst = get_model(name, **{k: v for k, v in need.items() if k not in ("align_corners", "offset_scaling")})
    meta = load_weights(dst, path, model_name=name)
    assert meta["format"] == "bowenc0221" and meta["align_corners"] is True
    assert meta["offset_scaling"] == "corners_floor"
    assert_same_outputs(src, dst)


# --------------------------------------------------------------------------- other layouts

def test_plain_state_dict_and_own_format_via_load_weights(tmp_path) -> None:
    src = randomize_bn(get_model("deeplabv3plus_mobilenetv2", **SMALL_DLV3P))
    plain = tmp_path / "plain.pth"
    torch.save(src.state_dict(), plain)
    dst = get_model("deeplabv3plus_mobilenetv2", **SMALL_DLV3P)
    assert load_weights(dst, plain, model_name="deeplabv3plus_mobilenetv2")["format"] == "state_dict"
    assert_same_outputs(src, dst, atol=0)

    own = save_checkpoint(tmp_path / "own.pt", src, model_name="deeplabv3plus_mobilenetv2",
                          model_kwargs=SMALL_DLV3P, label_set="cityscapes", extra={"resolution": "32x64"})
    meta = load_weights(get_model("deeplabv3plus_mobilenetv2", **SMALL_DLV3P), own,
                        model_name="deeplabv3plus_mobilenetv2")
    assert meta["format"] == "seg_perception" and meta["resolution"] == "32x64"
    assert weights_model_kwargs(own, model_name="deeplabv3plus_mobilenetv2") == SMALL_DLV3P
    with pytest.raises(CheckpointError, match="'deeplabv3plus_mobilenetv2'.*'deeplabv3plus_resnet50'"):
        load_weights(get_model("deeplabv3plus_resnet50"), own, model_name="deeplabv3plus_resnet50")

    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "missing.pth"))):
        load_weights(dst, tmp_path / "missing.pth", model_name="deeplabv3plus_mobilenetv2")


def test_hrnet_official_dispatch(tmp_path) -> None:
    name = "hrnetv2_w18_small_v2"
    src = get_model(name, num_classes=5).eval()
    sd = {f"model.{k}": v for k, v in src.state_dict().items()}
    sd["loss.criterion.weight"] = torch.ones(5)
    path = tmp_path / "hrnet_w18_small_v2_cityscapes.pth"
    torch.save(sd, path)
    dst = get_model(name, num_classes=5)
    assert load_weights(dst, path, model_name=name)["format"] == "hrnet_official"
    for (ka, va), (kb, vb) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_unknown_layout_lists_supported(tmp_path) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"weights": [1, 2]}, path)
    with pytest.raises(CheckpointError, match="supported: seg_perception.*VainF.*Detectron2.*bowenc0221"):
        load_weights(get_model("deeplabv3plus_mobilenetv2"), path, model_name="deeplabv3plus_mobilenetv2")

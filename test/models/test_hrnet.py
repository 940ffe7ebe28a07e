"""HRNetV2 semantic models: shapes, published sizes, official checkpoint layout, loading, ONNX.

Reference numbers used here come from outside this code base:

* parameter counts: HRNet-Semantic-Segmentation README (pytorch-v1.1 branch): HRNetV2-W48 65.8M
  (65.9M in the TPAMI paper), HRNetV2-W18-Small-v2 3.9M; HRNetV2-W18 9.6M.
* state-dict layout digests: SHA-256 of the sorted ``"<key> <shape>"`` lines of the official
  ``lib/models/seg_hrnet.py`` (pytorch-v1.1) ``HighResolutionNet`` built from the official
  Cityscapes YAMLs (W18: the W48 YAML at width 18) with 19 classes. A released checkpoint loads
  strictly only if names and shapes agree, so these digests stand in for the real files.
"""
from __future__ import annotations

import hashlib
import io
import warnings

import numpy as np
import pytest
import torch

from seg_perception.models.hrnet import (
    HRNetCheckpointError,
    HRNetV2Seg,
    convert_hrnet_official,
    hrnetv2_w18,
    hrnetv2_w18_small_v2,
    hrnetv2_w48,
    load_hrnet_state_dict,
)

BUILDERS = {"hrnetv2_w18_small_v2": hrnetv2_w18_small_v2, "hrnetv2_w18": hrnetv2_w18, "hrnetv2_w48": hrnetv2_w48}

# name -> (published params, relative tolerance)
PUBLISHED_PARAMS = {
    "hrnetv2_w18_small_v2": (3.9e6, 0.03),
    "hrnetv2_w18": (9.6e6, 0.03),
    "hrnetv2_w48": (65.8e6, 0.01),
}

# name -> (number of state-dict entries, sha256 of sorted "key shape" lines) of the official model
OFFICIAL_LAYOUT = {
    "hrnetv2_w18_small_v2": (873, "cf355056471def47e9768b7ec74984d70631e1582a45b9871c984b20b7373893"),
    "hrnetv2_w18": (1839, "c0feef513a66eb045b7fd88362bc4ba5a6a37508823d0a819a2f0bc325d092da"),
    "hrnetv2_w48": (1839, "4673ddc089f7a7b5f50520e8586abecc9ee2ea57d3473e5a3dbbe4bb32904297"),
}


@pytest.fixture(scope="module")
def models() -> dict[str, HRNetV2Seg]:
    torch.manual_seed(0)
    return {name: build().eval() for name, build in BUILDERS.items()}


def _randomized_state(model: HRNetV2Seg, seed: int) -> dict[str, torch.Tensor]:
    """Random weights *and* BN statistics, so a load that skipped anything would change outputs."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g) * 0.1
    return out


def _official_format(state: dict[str, torch.Tensor], num_classes: int = 19) -> dict[str, torch.Tensor]:
    """What a released .pth holds: ``model.``-prefixed network keys plus the loss class weights."""
    ckpt = {f"model.{k}": v for k, v in state.items()}
    ckpt["loss.criterion.weight"] = torch.ones(num_classes)
    return ckpt


# --------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("name", list(BUILDERS))
def test_output_contract_odd_size(models, name):
    model = models[name]
    assert model.output_names == ("semantic",)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 97))
    assert list(out) == ["semantic"]
    assert out["semantic"].shape == (1, 19, 65, 97)
    assert torch.isfinite(out["semantic"]).all()


@pytest.mark.parametrize("hw", [(33, 47), (64, 96), (40, 31)])
def test_small_v2_sizes_and_classes(hw):
    model = hrnetv2_w18_small_v2(num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))["semantic"]
    assert out.shape == (2, 7, *hw)


def test_stage_resolutions_are_quarter_and_halvings(models):
    feats = models["hrnetv2_w18_small_v2"].features(torch.randn(1, 3, 65, 97))
    assert [f.shape[1] for f in feats] == [18, 36, 72, 144]
    sizes = [tuple(f.shape[-2:]) for f in feats]
    # stride-2 3x3 convs with padding 1 give ceil(n / 2) at every step
    assert sizes[0] == (17, 25)  # ceil(ceil(65/2)/2), ceil(ceil(97/2)/2)
    assert sizes[1:] == [(9, 13), (5, 7), (3, 4)]


def test_bad_input_shape_names_the_fix(models):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*got shape \(3, 32, 32\)"):
        models["hrnetv2_w18_small_v2"](torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        hrnetv2_w18_small_v2(num_classes=0)


def test_builders_are_keyword_only():
    with pytest.raises(TypeError):
        hrnetv2_w18_small_v2(19)  # type: ignore[misc]


# --------------------------------------------------------------------------- published / official numbers

@pytest.mark.parametrize("name", list(BUILDERS))
def test_parameter_count_matches_published(models, name):
    published, rel = PUBLISHED_PARAMS[name]
    n = sum(p.numel() for p in models[name].parameters())
    assert abs(n - published) / published <= rel, f"{name}: {n} params vs published {published:.3g}"


@pytest.mark.parametrize("name", list(BUILDERS))
def test_state_dict_layout_matches_official(models, name):
    sd = models[name].state_dict()
    count, digest = OFFICIAL_LAYOUT[name]
    text = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sorted(sd.items()))
    assert len(sd) == count
    assert hashlib.sha256(text.encode()).hexdigest() == digest


def test_official_key_names_spot_check(models):
    keys = set(models["hrnetv2_w48"].state_dict())
    for k in ("conv1.weight", "bn2.running_var", "layer1.0.downsample.0.weight", "transition1.0.0.weight",
              "transition1.1.0.0.weight", "transition3.3.0.0.weight", "stage4.2.fuse_layers.3.0.2.0.weight",
              "stage2.0.fuse_layers.0.1.1.running_mean", "last_layer.0.bias", "last_layer.1.weight",
              "last_layer.3.weight"):
        assert k in keys, k
    assert not any(k.startswith("transition2.0.") for k in keys)  # unchanged branch: no parameters
    assert models["hrnetv2_w48"].last_layer[0].in_channels == 48 + 96 + 192 + 384


# --------------------------------------------------------------------------- align_corners

def test_align_corners_default_false_and_propagates():
    assert hrnetv2_w18_small_v2().align_corners is False
    model = hrnetv2_w18_small_v2(align_corners=True)
    fuse_modules = [m for m in model.modules() if hasattr(m, "fuse_layers")]
    assert fuse_modules and all(m.align_corners is True for m in fuse_modules)


@pytest.mark.parametrize("align_corners", [True, False])
def test_final_upsample_sampling_grid(align_corners):
    """64x96 input -> 16x24 logits, scale 4. align_corners=True: output corners sit exactly on the
    low-res corners, output (1, 1) at source 15/63 (a blend). False (half-pixel centres): output
    (1, 1) at source (1 + 0.5) / 4 - 0.5 = -0.125, clamped to low-res (0, 0)."""
    model = hrnetv2_w18_small_v2(align_corners=align_corners).eval()
    model.load_state_dict(_randomized_state(model, seed=3))
    low = {}
    model.last_layer.register_forward_hook(lambda m, i, o: low.__setitem__("x", o))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))["semantic"]
    lo = low["x"]
    assert lo.shape[-2:] == (16, 24)
    torch.testing.assert_close(out[..., 0, 0], lo[..., 0, 0])
    torch.testing.assert_close(out[..., -1, -1], lo[..., -1, -1])
    one_one_is_corner = torch.allclose(out[..., 1, 1], lo[..., 0, 0], atol=1e-6)
    assert one_one_is_corner is (not align_corners)


# --------------------------------------------------------------------------- checkpoints

def test_convert_official_strips_prefix_and_drops_loss_weight(models):
    state = models["hrnetv2_w18_small_v2"].state_dict()
    converted = convert_hrnet_official(_official_format(state))
    assert set(converted) == set(state)
    assert "loss.criterion.weight" not in converted and "criterion.weight" not in converted
    # Already-converted and DataParallel-wrapped dicts are accepted too.
    assert set(convert_hrnet_official(state)) == set(state)
    assert set(convert_hrnet_official({f"module.model.{k}": v for k, v in state.items()})) == set(state)


def test_convert_rejects_non_hrnet_dict():
    with pytest.raises(HRNetCheckpointError, match="not an HRNet"):
        convert_hrnet_official({"model.backbone.conv1.weight": torch.zeros(1)})
    with pytest.raises(HRNetCheckpointError, match="weights_only=True"):
        convert_hrnet_official([1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["hrnetv2_w18_small_v2", pytest.param("hrnetv2_w48", marks=pytest.mark.slow)])
def test_official_checkpoint_roundtrip_reproduces_outputs(tmp_path, name):
    src = BUILDERS[name]().eval()
    src.load_state_dict(_randomized_state(src, seed=1))
    path = tmp_path / f"{name}_cityscapes_cls19.pth"
    torch.save(_official_format(src.state_dict()), path)

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    dst = BUILDERS[name]().eval()
    dst.load_state_dict(convert_hrnet_official(ckpt), strict=True)
    x = torch.randn(1, 3, 45, 71)
    with torch.no_grad():
        a, b = src(x)["semantic"], dst(x)["semantic"]
    assert torch.equal(a, b)

    fresh = BUILDERS[name]().eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x)["semantic"], a)  # the load actually changed something
    load_hrnet_state_dict(fresh, ckpt)
    with torch.no_grad():
        assert torch.equal(fresh(x)["semantic"], a)


def test_wrong_width_checkpoint_lists_shape_mismatches(models):
    ckpt = _official_format(models["hrnetv2_w18"].state_dict())
    target = hrnetv2_w48()
    with pytest.raises(HRNetCheckpointError) as err:
        load_hrnet_state_dict(target, ckpt)
    msg = str(err.value)
    assert "shape mismatch(es)" in msg and "transition1.0.0.weight" in msg
    assert "HRNetV2-W18" in msg and "hrnetv2_w48" in msg
    # plain strict torch loading also refuses it
    with pytest.raises(RuntimeError, match="size mismatch"):
        target.load_state_dict(convert_hrnet_official(ckpt), strict=True)


def test_wrong_depth_checkpoint_lists_missing_keys(models):
    ckpt = _official_format(models["hrnetv2_w18_small_v2"].state_dict())
    with pytest.raises(HRNetCheckpointError, match=r"(?s)\d+ missing key\(s\): layer1\.2\.\*, layer1\.3\.\*") as err:
        load_hrnet_state_dict(hrnetv2_w18(), ckpt)
    # W18-Small-v2 has 2 bottlenecks in layer1 and 3 stage-3 modules; W18 has 4 and 4
    assert "3 stage-3 modules" in str(err.value)


def test_wrong_num_classes_is_named(models):
    ckpt = _official_format(models["hrnetv2_w18_small_v2"].state_dict())
    with pytest.raises(HRNetCheckpointError, match=r"(?s)num_classes=19.*last_layer\.3\.weight"):
        load_hrnet_state_dict(hrnetv2_w18_small_v2(num_classes=7), ckpt)


# --------------------------------------------------------------------------- export

@pytest.mark.slow
def test_onnx_export_matches_torch_at_other_sizes():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = hrnetv2_w18_small_v2(num_classes=5).eval()
    model.load_state_dict(_randomized_state(model, seed=2))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.randn(1, 3, 64, 96),), buf, opset_version=17, dynamo=False,
            input_names=["image"], output_names=list(model.output_names),
            dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "semantic": {0: "n", 2: "h", 3: "w"}},
        )
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["semantic"]
    for shape in [(1, 3, 64, 96), (2, 3, 49, 67)]:
        x = torch.randn(*shape)
        (got,) = sess.run(None, {"image": x.numpy()})
        with torch.no_grad():
            want = model(x)["semantic"].numpy()
        assert got.shape == want.shape == (shape[0], 5, *shape[2:])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- registry

def test_registered_in_model_registry():
    from seg_perception.models import registry

    try:
        names = registry.list_models(task="semantic")
    except ModuleNotFoundError as exc:  # other model modules not written yet
        pytest.skip(f"registry cannot import every model module yet: {exc}")
    for name in BUILDERS:
        assert name in names
        assert registry.model_info(name).task == "semantic"
    model = registry.get_model("hrnetv2_w18_small_v2", num_classes=3)
    assert isinstance(model, HRNetV2Seg) and model.num_classes == 3

"""Segmenter: pre-processing, semantic/panoptic post-processing, building from a model name."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from seg_perception.datasets.labels import get_label_set
from seg_perception.core.resolution import PipelineError
from seg_perception.core.segmenter import Segmenter, build_segmenter
from seg_perception.core.preprocess import IMAGENET_MEAN, IMAGENET_STD
from seg_perception.runtime.base import TensorSpec

CITY = get_label_set("cityscapes")


class PatternBackend:
    """A backend whose logits encode a known label pattern at network resolution: label = column band."""

    name = "pattern"

    def __init__(self, hw, num_classes=19, panoptic=False):
        self.hw, self.c, self.panoptic = hw, num_classes, panoptic
        self.seen = []

    def input_spec(self):
        return [TensorSpec("image", (1, 3, *self.hw), np.dtype(np.float32))]

    def output_spec(self):
        return [TensorSpec("semantic", (1, self.c, *self.hw), np.dtype(np.float32))]

    def labels(self):
        h, w = self.hw
        return (np.arange(w)[None, :].repeat(h, 0) * 4 // w).astype(np.int64)  # 4 vertical bands: classes 0..3

    def infer(self, feeds):
        x = feeds["image"]
        self.seen.append(np.asarray(x).copy())
        lab = torch.from_numpy(self.labels())
        logits = torch.nn.functional.one_hot(lab, self.c).permute(2, 0, 1)[None].float() * 10
        out = {"semantic": logits.numpy()}
        if self.panoptic:
            h, w = self.hw
            out["center"] = np.zeros((1, 1, h, w), np.float32)
            out["offset"] = np.zeros((1, 2, h, w), np.float32)
        return out

    last_latency_ms = 0.0

    def activate(self):
        pass

    def deactivate(self):
        pass


def test_preprocess_matches_independent_normalization():
    be = PatternBackend((32, 48))
    seg = Segmenter(be, task="semantic", label_set=CITY, resolution=(32, 48))
    rgb = np.random.default_rng(0).integers(0, 256, (71, 103, 3), dtype=np.uint8)
    x = seg.preprocess(rgb)
    ref = cv2.resize(rgb, (48, 32), interpolation=cv2.INTER_LINEAR).astype(np.float64) / 255.0
    ref = ((ref - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)[None]
    assert x.shape == (1, 3, 32, 48) and x.dtype == np.float32
    np.testing.assert_allclose(x, ref, atol=1e-5)


@pytest.mark.parametrize("view", ["contiguous", "channels_reversed", "strided", "fortran"])
def test_preprocess_without_resize_any_memory_layout(view):
    """Camera size == network size skips the resize; views from BGR->RGB flips or crops must work."""
    be = PatternBackend((32, 48))
    seg = Segmenter(be, task="semantic", label_set=CITY, resolution=(32, 48))
    base = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    rgb = {"contiguous": np.ascontiguousarray(base[:32, :48]), "channels_reversed": base[:32, :48, ::-1],
           "strided": base[::2, ::2], "fortran": np.asfortranarray(base[:32, :48])}[view]
    x = seg.preprocess(rgb)
    ref = ((rgb.astype(np.float64) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)
    assert x.shape == (1, 3, 32, 48) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0], ref, atol=1e-5)


@pytest.mark.parametrize("cam_hw", [(32, 48), (97, 131), (240, 320)])
def test_semantic_output_at_camera_size(cam_hw):
    be = PatternBackend((32, 48))
    seg = Segmenter(be, task="semantic", label_set=CITY, resolution=(32, 48))
    res = seg.segment(np.zeros((*cam_hw, 3), np.uint8))
    assert res.semantic.shape == cam_hw and res.semantic.dtype == np.uint8
    expected = cv2.resize(be.labels().astype(np.uint8), (cam_hw[1], cam_hw[0]), interpolation=cv2.INTER_NEAREST)
    # band boundaries may move by a pixel under bilinear upsampling; interiors must match
    assert (res.semantic == expected).mean() > 0.97
    assert set(np.unique(res.semantic)) == {0, 1, 2, 3}
    t = res.timings
    assert t.total_ms >= t.inference_ms >= 0 and t.preprocess_ms >= 0


@pytest.mark.parametrize("bad,needle", [
    (np.zeros((10, 10), np.uint8), "(H, W, 3)"),
    (np.zeros((10, 10, 4), np.uint8), "(H, W, 3)"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    ("not an image", "(H, W, 3)"),
])
def test_bad_frames_raise_pipeline_error(bad, needle):
    seg = Segmenter(PatternBackend((16, 16)), task="semantic", label_set=CITY, resolution=(16, 16))
    with pytest.raises(PipelineError) as e:
        seg.segment(bad)
    assert needle in str(e.value)


def test_class_count_mismatch_names_label_set():
    seg = Segmenter(PatternBackend((16, 16), num_classes=7), task="semantic", label_set=CITY, resolution=(16, 16))
    with pytest.raises(PipelineError, match="7 classes.*cityscapes"):
        seg.segment(np.zeros((16, 16, 3), np.uint8))


def test_panoptic_path_produces_ids_and_segments():
    be = PatternBackend((32, 48), panoptic=True)
    seg = Segmenter(be, task="panoptic", label_set=CITY, resolution=(32, 48))
    res = seg.segment(np.zeros((64, 96, 3), np.uint8))
    assert res.panoptic.shape == (64, 96) and res.panoptic.dtype == np.int32
    # all four bands are stuff classes (0..3): ids are class*1000, and segments list them with areas
    ids = set(np.unique(res.panoptic))
    assert ids <= {0, 1000, 2000, 3000, 255000}
    areas = {s.id: s.area for s in res.segments}
    for i, a in areas.items():
        assert (res.panoptic == i).sum() == a


def test_infer_returns_the_heads_postprocess_turns_into_segment():
    be = PatternBackend((32, 48), panoptic=True)
    seg = Segmenter(be, task="panoptic", label_set=CITY, resolution=(32, 48))
    frame = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    out = seg.infer(frame)
    assert out["semantic"].shape == (1, 19, 32, 48) and out["offset"].shape == (1, 2, 32, 48)
    np.testing.assert_array_equal(be.seen[-1], seg.preprocess(frame))  # the backend got the pre-processed frame
    via_infer = seg.postprocess(out, (64, 96))
    direct = seg.segment(frame)
    np.testing.assert_array_equal(via_infer.panoptic, direct.panoptic)
    seg.close()
    with pytest.raises(PipelineError, match="closed"):
        seg.infer(frame)


def test_closed_segmenter_refuses():
    seg = Segmenter(PatternBackend((16, 16)), task="semantic", label_set=CITY, resolution=(16, 16))
    seg.close()
    seg.close()  # idempotent
    with pytest.raises(PipelineError, match="closed"):
        seg.segment(np.zeros((16, 16, 3), np.uint8))


def test_unknown_model_lists_registered():
    with pytest.raises(ValueError, match="deeplabv3plus_mobilenetv2"):
        build_segmenter("no_such_net", weights="none")


def test_build_segmenter_end_to_end_torch_backend():
    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="none", resolution=(64, 96),
                          model_kwargs={"aspp_channels": 16, "decoder_channels": 16})
    res = seg.segment(np.full((50, 70, 3), 127, np.uint8))
    assert res.semantic.shape == (50, 70)
    assert res.semantic.max() < 19
    assert seg.describe()["resolution"] == [64, 96]
    seg.close()


def test_torch_native_heads_labels_are_one_resize_of_forward_native_to_the_camera():
    """backend torch + native_heads: the Segmenter's labels at the camera are those of the model's own
    forward_native logits (called directly, not through the backend) resized ONCE to the camera by
    F.interpolate + argmax; they differ from the default path's somewhere."""
    import torch.nn.functional as F

    from seg_perception.datasets.synthetic import make_scene

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256), backend="torch",
                          native_heads=True)
    plain = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256), backend="torch")
    assert seg.native_heads and seg.describe()["native_heads"] is True and not plain.native_heads
    cam = (540, 960)  # 16.875 x 15 from the 32x64 grid: one resize, no integer factor
    differ = 0
    for seed in (4242, 4243):
        image = make_scene(seed, cam).image
        with torch.no_grad():
            logits = seg.backend.model.forward_native(torch.from_numpy(seg.preprocess(image)))["semantic"]
        assert tuple(logits.shape) == (1, 19, 32, 64)  # the decoder's stride, not the network's 128x256
        want = F.interpolate(logits, size=cam, mode="bilinear", align_corners=False)[0].argmax(0).numpy()
        got = seg.segment(image).semantic
        assert got.shape == cam and len(np.unique(want)) >= 4
        assert float((got == want).mean()) >= 0.9995  # the fast path; ties at float rounding aside
        seg.exact_upsampling = True
        assert float((seg.segment(image).semantic == want).mean()) >= 0.9999
        seg.exact_upsampling = False
        differ += int((plain.segment(image).semantic != got).sum())
    assert differ > 0, "native heads gave the default path's labels everywhere: the option did not reach torch"
    seg.close()
    plain.close()


def test_torch_native_heads_panoptic_equal_the_exported_native_graph(tmp_path):
    """The shipped panoptic model (semantic grid 1/2) with native heads: torch's ids and labels equal
    onnxruntime's running the exported forward_native (an independent runtime), up to float rounding."""
    from seg_perception.datasets.synthetic import make_scene

    kw = {"weights": "default", "resolution": (128, 256), "native_heads": True}
    torch_seg = build_segmenter("panoptic_deeplab_mobilenetv2", backend="torch", **kw)
    ort_seg = build_segmenter("panoptic_deeplab_mobilenetv2", backend="onnxruntime",
                              backend_options={"cache_dir": str(tmp_path)}, **kw)
    image = make_scene(77, (300, 500)).image
    heads = torch_seg.infer(image)
    assert tuple(heads["semantic"].shape[-2:]) == (64, 128)  # 1/2 of the network
    a, b = torch_seg.segment(image), ort_seg.segment(image)
    assert a.panoptic.shape == (300, 500) and len(a.segments) > 0
    assert float((a.semantic == b.semantic).mean()) >= 0.999
    assert float((a.panoptic == b.panoptic).mean()) >= 0.99
    torch_seg.close()
    ort_seg.close()


def test_native_heads_refused_by_build_segmenter_for_a_model_without_the_form():
    from seg_perception.runtime.base import BackendError

    for backend in ("torch", "onnxruntime"):
        with pytest.raises(BackendError, match="HRNetV2Seg has no native-stride head form.*leave native_heads off"):
            build_segmenter("hrnetv2_w18_small_v2", weights="none", resolution=(64, 64), backend=backend,
                            native_heads=True)


def test_public_vainf_checkpoint_loads_through_the_pipeline(tmp_path):
    """A file in VainF's layout (one-conv decoder, `model_state`) builds the right structure and
    reproduces the source network's labels through build_segmenter."""
    from seg_perception.models import get_model

    from ..models.convert.test_formats import to_vainf

    kw = {"aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8, "decoder_convs": 1}
    src = get_model("deeplabv3plus_resnet50", num_classes=19, **kw).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for m in src.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "best_deeplabv3plus_resnet50_cityscapes_os16.pth"
    torch.save({"model_state": to_vainf(src.state_dict()), "cur_itrs": 1}, path)
    seg = build_segmenter("deeplabv3plus_resnet50", weights=str(path), resolution=(64, 96))
    rgb = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = src(torch.from_numpy(seg.preprocess(rgb)))["semantic"].argmax(1)[0].numpy()
    assert (seg.segment(rgb).semantic == ref).mean() > 0.999
    assert seg.weights_sha256 and len(seg.weights_sha256) == 64


def test_auto_judges_a_panoptic_model_by_its_published_output(monkeypatch, tmp_path):
    """build_segmenter hands backend auto the panoptic guard: offsets off by < 1 px everywhere pass
    (the raw-head guard would reject them), swapped classes do not."""
    from seg_perception.runtime import auto

    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(tmp_path))
    real, mode = auto._measure, {}

    def fake_native(be, inputs, frames, post=None):  # fp32+native "runs" fastest, with the fp32 outputs perturbed
        ms, outs = real(be, inputs, frames, post)
        if getattr(be, "onnx_path", None) and "native" in str(be.onnx_path):
            rng = np.random.default_rng(0)
            outs = [{k: v.copy() for k, v in o.items()} for o in mode["fp32"]]
            for o in outs:
                if mode["break"] == "jitter":
                    o["offset"] += rng.uniform(-0.9, 0.9, o["offset"].shape).astype(np.float32)
                else:  # the frame's most common class swapped with another: its pixels change class
                    counts = np.bincount(o["semantic"].argmax(1).ravel(), minlength=o["semantic"].shape[1])
                    a, b = np.argsort(counts)[::-1][:2]
                    o["semantic"][:, [a, b]] = o["semantic"][:, [b, a]]
            return 0.01, outs
        mode["fp32"] = outs
        return ms, outs

    monkeypatch.setattr(auto, "_measure", fake_native)
    opts = {"auto_candidates": "onnxruntime:fp32,onnxruntime:fp32+native", "calib_limit": 2, "auto_frames": 1}
    for broken, picked in (("jitter", True), ("classes", False)):
        mode["break"] = broken
        with build_segmenter("panoptic_deeplab_mobilenetv2", weights="none", resolution=(64, 128), backend="auto",
                             backend_options={**opts, "calib_limit": 2 + picked}) as seg:
            sel = seg.backend.selection
            assert sel["guard"].startswith("panoptic-mutual-best-v"), sel["guard"]
            native = next(m for m in sel["measured"] if m["native_heads"])
            assert set(native["scores"]) == {"semantic", "panoptic"}
            assert sel["native_heads"] is picked and native["eligible"] is picked, native
            if not picked:
                assert native["scores"]["semantic"] < auto.MIN_AGREEMENT

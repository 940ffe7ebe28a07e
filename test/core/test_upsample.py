"""Fast label upsampling agrees with the exact path (bilinear logits at camera size, then argmax).

The exact path is PyTorch's own ``F.interpolate(..., "bilinear", align_corners=False)`` + argmax,
the reference the Segmenter used before; agreement is checked on random logits (the worst case:
nearly every pixel is a class boundary), on smooth blob-shaped logits, with ties, up- and
downscaling, and on the shipped model's real logits for a synthetic street scene.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seg_perception.core.upsample import upsample_argmax


def _exact(logits: torch.Tensor, hw) -> np.ndarray:
    up = F.interpolate(logits[None].float(), size=tuple(hw), mode="bilinear", align_corners=False)[0]
    return up.argmax(0).numpy()


@pytest.mark.parametrize("chw,hw", [((19, 32, 64), (135, 240)), ((5, 17, 23), (40, 41)), ((7, 30, 50), (30, 50)),
                                    ((4, 40, 60), (17, 29)), ((3, 8, 8), (8, 64)), ((300, 6, 9), (20, 31))])
def test_random_logits_match_exact_path(chw, hw):
    g = torch.Generator().manual_seed(sum(chw) + hw[0])
    logits = torch.randn(*chw, generator=g)
    got = upsample_argmax(logits, hw)
    assert got.shape == tuple(hw) and got.dtype == (np.uint8 if chw[0] <= 256 else np.int32)
    agree = float((got == _exact(logits, hw)).mean())
    assert agree >= 0.999, agree


def test_ties_keep_the_first_maximum():
    logits = torch.zeros(4, 6, 8)
    logits[2, :, 4:] = 1.0  # classes 0..3 tie on the left half; 2 wins on the right
    got = upsample_argmax(logits, (25, 33))
    np.testing.assert_array_equal(got, _exact(logits, (25, 33)))
    assert set(np.unique(got)) == {0, 2}


def test_smooth_regions_match_exactly_and_numpy_input_works():
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    centers = [(10, 10), (30, 50), (40, 20), (5, 60)]
    logits = torch.stack([-((yy - cy) ** 2 + (xx - cx) ** 2) / 100 for cy, cx in centers])
    got = upsample_argmax(logits.numpy(), (202, 270))
    np.testing.assert_array_equal(got, _exact(logits, (202, 270)))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        upsample_argmax(torch.zeros(1, 3, 4, 4), (8, 8))
    with pytest.raises(ValueError, match="out_hw"):
        upsample_argmax(torch.zeros(3, 4, 4), (0, 8))


def test_real_model_logits_at_camera_resolution():
    """The shipped semantic model's logits for a street scene (network 128x256 -> camera 540x960)."""
    from seg_perception.datasets.synthetic import make_scene
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256))
    scene = make_scene(12345, (256, 512))
    logits = torch.as_tensor(seg.infer(scene.image)["semantic"])[0]
    got = upsample_argmax(logits, (540, 960))
    exact = _exact(logits, (540, 960))
    assert float((got == exact).mean()) >= 0.9995
    assert len(np.unique(exact)) >= 4  # a real scene with several classes and their boundaries


def test_segmenter_labels_match_its_exact_path_at_camera_resolution():
    from seg_perception.datasets.synthetic import make_scene
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256))
    image = make_scene(777, (540, 960)).image
    fast = seg.segment(image).semantic
    seg.exact_upsampling = True
    exact = seg.segment(image).semantic
    assert fast.shape == exact.shape == (540, 960) and fast.dtype == exact.dtype == np.uint8
    assert float((fast == exact).mean()) >= 0.9995


@pytest.mark.parametrize("small_hw, out_hw", [((4, 6), (9, 13)), ((24, 40), (51, 85)), ((8, 8), (8, 8)), ((10, 12), (6, 7))])
def test_cell_map_lists_every_camera_pixel_once_in_its_cell(small_hw, out_hw):
    from seg_perception.core.upsample import cell_map

    cm = cell_map(small_hw, out_hw)
    rows, cols = cm.pixels_of_cells(np.arange(small_hw[0] * small_hw[1]))
    flat = rows * out_hw[1] + cols
    assert np.array_equal(np.sort(flat), np.arange(out_hw[0] * out_hw[1]))
    # the cell of a camera pixel: the floor of PyTorch's source coordinate (align_corners=False)
    sy = np.clip((np.arange(out_hw[0]) + 0.5) * small_hw[0] / out_hw[0] - 0.5, 0, None).astype(int)
    sx = np.clip((np.arange(out_hw[1]) + 0.5) * small_hw[1] / out_hw[1] - 0.5, 0, None).astype(int)
    assert np.array_equal(cm.index, sy[:, None] * small_hw[1] + sx[None, :])
    small = np.arange(small_hw[0] * small_hw[1]).reshape(small_hw)
    assert np.array_equal(cm.gather(small), small[sy][:, sx])


def test_native_heads_upsample_straight_from_the_native_grid_to_the_camera(tmp_path):
    """backend option native_heads: the network returns its 1/4-stride logits and the Segmenter's
    labels are those of ONE bilinear resize from that grid to the camera (non-integer factor) --
    checked against PyTorch's F.interpolate from the native grid straight to the camera + argmax."""
    from seg_perception.datasets.synthetic import make_scene
    from seg_perception.core.segmenter import build_segmenter

    seg = build_segmenter("deeplabv3plus_mobilenetv2", weights="default", resolution=(128, 256), backend="onnxruntime",
                          backend_options={"native_heads": True, "cache_dir": str(tmp_path)})
    image = make_scene(4242, (540, 960)).image
    logits = torch.as_tensor(seg.infer(image)["semantic"])[0]
    assert tuple(logits.shape) == (19, 32, 64)  # the decoder's stride, not the network's 128x256
    got = seg.segment(image).semantic
    exact = _exact(logits, (540, 960))  # 16.875 x 15: one resize, no integer factor
    assert got.shape == (540, 960)
    assert float((got == exact).mean()) >= 0.9995
    assert len(np.unique(exact)) >= 4
    seg.exact_upsampling = True  # the Segmenter's own exact path resizes from the native grid too
    assert float((seg.segment(image).semantic == exact).mean()) >= 0.9999

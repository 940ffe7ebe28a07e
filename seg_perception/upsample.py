"""Label images at camera resolution without upsampling every logit channel.

The exact path is ``argmax(bilinear(logits, (H, W)))`` (``align_corners=False``): C x H x W floats
(19 x 1080 x 1920 = 160 MB) written and read again, as long as the network itself on a CPU.

:func:`upsample_argmax` gives the same labels for a fraction of that. Each camera pixel is a convex
combination of (at most) four network pixels. Where those four share their argmax class c, c is
the argmax of the blend too (for every k: sum_i w_i l_i[c] >= sum_i w_i l_i[k], strictly for k < c,
so even the first-maximum tie rule is kept), so the label is read from the network-resolution argmax
(a uint8 gather). Only camera pixels whose four sources disagree -- the class boundaries, a few
percent of a real frame -- get the exact C-channel bilinear blend and argmax. Labels differ from
the exact path only where float rounding of the blend flips a near-tie.

The source coordinate of camera pixel y is ``(y + 0.5) * h / H - 0.5`` clamped at 0 (PyTorch's
``upsample_bilinear2d`` with ``align_corners=False`` and an output size), rows y0 = floor, y1 =
min(y0 + 1, h - 1), weight src - y0; columns likewise.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


@lru_cache(maxsize=32)
def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, frac) for one axis: int64 (n_out,), int64 (n_out,), float32 (n_out,)."""
    # float32 arithmetic like the reference kernel (scale = in / out, src = scale * (dst + 0.5) - 0.5)
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0.astype(np.float32)).astype(np.float32)
    i0.setflags(write=False), i1.setflags(write=False), frac.setflags(write=False)
    return i0, i1, frac


def _uncertain_cells(labels: np.ndarray) -> np.ndarray:
    """(h, w) bool: cell (i, j) whose 2x2 block {i, i+1} x {j, j+1} (clamped) holds more than one label."""
    lab = np.pad(labels, ((0, 1), (0, 1)), mode="edge")
    a, b, c, d = lab[:-1, :-1], lab[:-1, 1:], lab[1:, :-1], lab[1:, 1:]
    return (a != b) | (a != c) | (a != d)


def upsample_argmax(logits: torch.Tensor | np.ndarray, out_hw: tuple[int, int], *, exact: bool = False) -> np.ndarray:
    """Per-pixel class of bilinearly upsampled logits, without materializing them at (H, W).

    Args:
        logits: (C, h, w) float logits at network resolution (torch tensor or numpy array).
        out_hw: (H, W) camera resolution.
        exact: run the reference path (full bilinear upsampling, then argmax) instead.

    Returns:
        (H, W) numpy array of class ids: uint8 for <= 256 classes, else int32.
    """
    t = torch.as_tensor(logits)
    if t.ndim != 3:
        raise ValueError(f"logits must be (C, h, w), got shape {tuple(t.shape)}")
    t = t.float() if t.dtype != torch.float32 else t
    H, W = int(out_hw[0]), int(out_hw[1])
    if H < 1 or W < 1:
        raise ValueError(f"out_hw={tuple(out_hw)} must be two integers >= 1 (height, width)")
    c, h, w = t.shape
    dtype = np.uint8 if c <= 256 else np.int32
    if (h, w) != (H, W) and (exact or t.device.type != "cpu"):
        # max(0).indices: the same first-maximum labels as argmax(0), several times faster on CPU
        t = F.interpolate(t[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    if t.shape[1:] == (H, W):
        return t.max(0).indices.cpu().numpy().astype(dtype)
    small = t.max(0).indices.numpy().astype(dtype)
    y0, y1, fy = _axis(h, H)
    x0, x1, fx = _axis(w, W)
    out = small[y0][:, x0]  # (H, W): the label wherever the 2x2 sources agree
    rows, cols = np.nonzero(_uncertain_cells(small)[y0][:, x0])
    if rows.size:
        flat = t.reshape(t.shape[0], h * w)
        ry0, ry1, cx0, cx1 = (torch.from_numpy(v) for v in (y0[rows], y1[rows], x0[cols], x1[cols]))
        wy = torch.from_numpy(fy[rows])
        wx = torch.from_numpy(fx[cols])
        # Same operation order as the reference kernel: blend along W in each source row, then along H.
        top = flat[:, ry0 * w + cx0] * (1 - wx) + flat[:, ry0 * w + cx1] * wx
        bottom = flat[:, ry1 * w + cx0] * (1 - wx) + flat[:, ry1 * w + cx1] * wx
        out[rows, cols] = (top * (1 - wy) + bottom * wy).max(0).indices.numpy().astype(out.dtype)
    return out

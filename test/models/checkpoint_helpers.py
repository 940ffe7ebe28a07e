"""Small models and output comparisons shared by the checkpoint and converter tests."""
from __future__ import annotations

import torch
import torch.nn as nn

SMALL_DLV3P = dict(num_classes=5, aspp_channels=16, decoder_channels=16, low_level_channels=8)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics/affine so that wrong mappings change the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        for name in ("classifier", "semantic_predictor", "center_predictor", "offset_predictor"):
            layer = getattr(model, name, None)
            if isinstance(layer, nn.Conv2d):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.1)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
    return model.eval()


def outputs(model: nn.Module, seed: int = 1, size: tuple[int, int] = (33, 45)) -> dict[str, torch.Tensor]:
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def assert_same_outputs(a: nn.Module, b: nn.Module, atol: float = 1e-5) -> None:
    oa, ob = outputs(a), outputs(b)
    assert list(oa) == list(ob)
    for k in oa:
        torch.testing.assert_close(oa[k], ob[k], atol=atol, rtol=1e-4)




SMALL_PDL = dict(num_classes=5, aspp_channels=16, decoder_channels=16, instance_aspp_channels=16,
                 instance_decoder_channels=8, head_channels=16, instance_head_channels=8,
                 low_level_channels=(8, 12), instance_low_level_channels=(4, 6))

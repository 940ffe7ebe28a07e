"""Loading a checkpoint reads the file once (large public files made start-up pay twice)."""
from __future__ import annotations

import torch

from seg_perception.core.weights import SHIPPED_WEIGHTS, load_model


def test_own_checkpoint_is_deserialized_once(monkeypatch):
    calls = []
    real = torch.load

    def counting_load(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("f"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    loaded = load_model("deeplabv3plus_mobilenetv2", weights="default")
    assert len(calls) == 1, calls
    assert loaded.weights_path == str(SHIPPED_WEIGHTS["deeplabv3plus_mobilenetv2"])

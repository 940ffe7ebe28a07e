"""Fixtures of the core tests."""
from __future__ import annotations

import pytest


@pytest.fixture(params=["jit", "numpy"])
def both_implementations(request, monkeypatch):
    """Run a test with the compiled kernels (numba is in requirements.txt: that side must run) and
    again with the numpy code they replace."""
    from seg_perception.core import jit, upsample

    on = request.param == "jit"
    if on:
        assert jit.AVAILABLE, "numba is not importable: pip install -r requirements.txt"
    monkeypatch.setattr(jit, "AVAILABLE", on)
    monkeypatch.setattr(upsample, "USE_JIT", on)
    return request.param

"""Fixtures shared by the runtime and Segmenter tests: an isolated cache and the fake TensorRT.

Import them into a test module or conftest (``from ..fakes.fixtures import cache_dir, fake_trt``).
"""
from __future__ import annotations

import sys

import pytest

from . import fake_tensorrt


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh cache folder, also exported as SEG_PERCEPTION_CACHE so nothing touches ~/.cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(path))
    return path


@pytest.fixture
def fake_trt(monkeypatch):
    """Install a fresh fake ``tensorrt`` module; TensorRT runs on host memory ("cpu") and a fake GPU."""
    from seg_perception.runtime import factory, tensorrt_backend

    mod = fake_tensorrt.new_module()
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    monkeypatch.setattr(factory, "_tensorrt_device", lambda device: "cpu")
    gpu = {"name": "Fake Orin", "cc": "8.7"}
    monkeypatch.setattr(tensorrt_backend, "gpu_identity", lambda device="cuda": (gpu["name"], gpu["cc"]))
    mod.fake_gpu = gpu  # tests change mod.fake_gpu["name"] to imitate another GPU
    return mod

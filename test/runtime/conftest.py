"""Fixtures for runtime tests: an isolated cache folder and the fake TensorRT module."""
from __future__ import annotations


import pytest

from ..fakes.fixtures import cache_dir, fake_trt  # noqa: F401  (fixtures for every runtime test)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Runtime tests run tiny tensors on a shared 2-core machine: one intra-op thread is several times faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

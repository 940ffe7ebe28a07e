"""The backend protocol: a runtime that maps named input arrays to named output arrays.

A backend knows nothing about segmentation. Lifetime is a context manager (``activate`` on
enter, ``deactivate`` on exit), the Polygraphy-runner shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


class BackendError(RuntimeError):
    """A backend could not be created or could not run (message says what to install or fix)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one backend input or output.

    ``shape`` entries are ints, or ``-1`` / a string for dynamic axes.
    """

    name: str
    shape: tuple
    dtype: np.dtype


@runtime_checkable
class Backend(Protocol):
    """What every runtime backend provides."""

    name: str

    def input_spec(self) -> list[TensorSpec]: ...

    def output_spec(self) -> list[TensorSpec]: ...

    def infer(self, feeds: dict) -> dict:
        """Run one batch. ``feeds`` maps input names to arrays/tensors; returns name -> array/tensor."""
        ...

    @property
    def last_latency_ms(self) -> float: ...

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def __enter__(self): ...

    def __exit__(self, *exc) -> None: ...

"""numba, where it is installed: the decorator and options every compiled kernel of the package uses.

numba is a dependency (``requirements.txt``, ``package.xml``); where it cannot be imported
:data:`AVAILABLE` is False, :func:`njit` returns the Python function unchanged, and every caller
runs its numpy implementation instead (a kernel run as plain Python would be far slower).
"""
from __future__ import annotations

try:  # pragma: no branch - which side runs depends on the installation
    from numba import njit

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is in requirements.txt; this keeps the package usable without it
    AVAILABLE = False

    def njit(*_args, **_kwargs):  # type: ignore[no-redef]
        return lambda fn: fn

__all__ = ["AVAILABLE", "INLINE", "KERNEL", "njit"]

#: Compiled on first use and cached on disk; no GIL while running (callers may use threads); no
#: bounds checks (every kernel's indices are derived from the shapes it is given).
KERNEL = dict(cache=True, nogil=True, boundscheck=False)
#: Helpers of a kernel's inner loops: inlined into them.
INLINE = dict(KERNEL, inline="always")

"""numba, where it is installed: the decorator and options every compiled kernel of the package uses.

numba is a dependency (``requirements.txt``, ``package.xml``); where it cannot be imported
:data:`AVAILABLE` is False, :func:`njit` returns the Python function unchanged, and every caller
runs its numpy implementation instead (a kernel run as plain Python would be far slower).
"""
from __future__ import annotations

import os
import tempfile


def cache_dir_default(package_dir: str = os.path.dirname(os.path.abspath(__file__))) -> "str | None":
    """Where numba's disk cache goes when it cannot go beside the sources.

    numba caches compiled kernels in ``__pycache__`` next to the module, else in the user's cache
    directory; where neither is writable (a package installed read-only for a service user without
    a home) compiling a cached kernel raises. Unless ``NUMBA_CACHE_DIR`` is set, a read-only
    package directory sends the cache to ``~/.cache/seg_perception/numba`` or, failing that, the
    temporary directory. Returns the directory set, or None when nothing was changed.
    """
    if os.environ.get("NUMBA_CACHE_DIR") or os.access(package_dir, os.W_OK):
        return None
    for base in (os.path.join(os.path.expanduser("~"), ".cache"), tempfile.gettempdir()):
        path = os.path.join(base, "seg_perception", "numba")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = path
            return path
    return None


cache_dir_default()  # before numba reads its configuration

try:  # pragma: no branch - which side runs depends on the installation
    from numba import njit

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is in requirements.txt; this keeps the package usable without it
    AVAILABLE = False

    def njit(*_args, **_kwargs):  # type: ignore[no-redef]
        return lambda fn: fn

__all__ = ["AVAILABLE", "INLINE", "KERNEL", "cache_dir_default", "fma32", "njit"]

#: Compiled on first use and cached on disk; no GIL while running (callers may use threads); no
#: bounds checks (every kernel's indices are derived from the shapes it is given).
KERNEL = dict(cache=True, nogil=True, boundscheck=False)
#: Helpers of a kernel's inner loops: inlined into them.
INLINE = dict(KERNEL, inline="always")

if AVAILABLE:
    from numba.core import types as _types
    from numba.extending import intrinsic

    @intrinsic
    def fma32(typingctx, a, b, c):  # pragma: no cover - compiled
        """``a * b + c`` of float32 scalars rounded once, inside compiled kernels: LLVM's
        ``llvm.fma.f32`` (one instruction on CPUs with FMA, a correctly rounded library call
        elsewhere). torch's CPU kernels use fused multiply-adds; this reproduces them bit for bit."""
        sig = _types.float32(_types.float32, _types.float32, _types.float32)

        def codegen(context, builder, signature, args):
            return builder.fma(*args)

        return sig, codegen
else:  # pragma: no cover - numba is in requirements.txt
    fma32 = None

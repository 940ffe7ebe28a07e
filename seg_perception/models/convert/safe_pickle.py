"""A restricted unpickler for Detectron2 ``.pkl`` weight files (numpy arrays in plain containers).

Plain :mod:`pickle` runs whatever callable a file names, so a downloaded ``.pkl`` can execute code
on load. :class:`RestrictedUnpickler` resolves only these globals:

* numpy array / dtype / scalar reconstruction: ``numpy.core.multiarray._reconstruct``,
  ``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``,
  ``numpy.core.multiarray.scalar``, ``numpy._core.multiarray.scalar``, and
  ``numpy[._]core.numeric._frombuffer`` (protocol-5 pickles rebuild arrays from bytes with it);
* ``collections.OrderedDict``;
* ``_codecs.encode`` -- protocol-2 pickles written by Python 3 store ``bytes`` (the raw array
  data) as ``_codecs.encode(text, "latin1")``; it only turns a str into bytes.

dict / list / tuple / str / int / float / bool / None / bytes come from pickle opcodes themselves and
need no global. Any other global raises :class:`UnsafePickleError` naming it, before anything is
called. Persistent ids (torch's legacy format) are refused as well.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
})


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside :data:`ALLOWED_GLOBALS` (the message names it)."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol < 3 pickles say "__builtin__", ...) -> Python 3 names, as
        # pickle's own fix_imports does, so the check and the message use the real module.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        allowed = ", ".join(sorted(f"{m}.{n}" for m, n in ALLOWED_GLOBALS))
        raise UnsafePickleError(
            f"refused to load global {module}.{name}: this file is not a plain weights pickle "
            f"(only numpy arrays in dicts/lists are accepted; allowed globals: {allowed}). "
            "Do not load it with plain pickle unless you trust its source."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"refused persistent id {str(pid)[:80]!r}: torch.save files must be read with "
            "torch.load(..., weights_only=True), not as a plain pickle"
        )


def load(file: BinaryIO) -> Any:
    """Unpickle from an open binary file with :class:`RestrictedUnpickler` (latin1 for Python 2
    strings, as Detectron2 does)."""
    return RestrictedUnpickler(file, encoding="latin1").load()


def loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`."""
    return load(io.BytesIO(data))


def load_path(path: str | Path) -> Any:
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler`."""
    with open(path, "rb") as f:
        return load(f)

"""Tests for seg_perception.core.jit: numba's cache directory where the package is read-only, and the
package without numba."""
from __future__ import annotations

import os

from seg_perception.core import jit


def test_a_writable_package_or_an_explicit_setting_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert jit.cache_dir_default(str(tmp_path)) is None  # numba caches beside the sources
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert jit.cache_dir_default(str(tmp_path)) is None
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere"


def test_a_read_only_package_sends_the_cache_to_the_users_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    package = str(tmp_path / "site-packages" / "seg_perception" / "core")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if path == package else real_access(path, mode))
    got = jit.cache_dir_default(package)
    assert got == str(tmp_path / "home" / ".cache" / "seg_perception" / "numba")
    assert os.path.isdir(got) and os.environ["NUMBA_CACHE_DIR"] == got


def test_no_writable_home_falls_back_to_the_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(jit.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    home_cache = str(tmp_path / "home" / ".cache" / "seg_perception" / "numba")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if path in ("/pkg", home_cache) else real_access(path, mode))
    assert jit.cache_dir_default("/pkg") == str(tmp_path / "tmp" / "seg_perception" / "numba")


_FRAME = r"""
import sys, numpy as np
from seg_perception.core import jit
from seg_perception.core.segmenter import build_segmenter
from seg_perception.datasets.synthetic import make_scene
seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights="default", resolution=(128, 256))
r = seg.segment(make_scene(3, (300, 500)).image)
np.savez(sys.argv[1], semantic=r.semantic, panoptic=r.panoptic, available=jit.AVAILABLE)
"""


def test_without_numba_the_package_runs_and_gives_the_same_output(tmp_path):
    """numba made unimportable (an ImportError, as where it is not installed): the package imports,
    the numpy implementation runs, and a panoptic frame at a camera above the network gives the
    same labels and ids as with the compiled kernels."""
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    root = Path(__file__).resolve().parents[2]
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "numba.py").write_text("raise ImportError('numba is not installed here')\n")
    outs = {}
    for name, path in (("numpy", f"{blocker}{os.pathsep}{root}"), ("jit", str(root))):
        env = dict(os.environ, PYTHONPATH=path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
        done = subprocess.run([sys.executable, "-c", _FRAME, str(tmp_path / f"{name}.npz")], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        outs[name] = np.load(tmp_path / f"{name}.npz")
    assert not outs["numpy"]["available"] and outs["jit"]["available"]
    np.testing.assert_array_equal(outs["numpy"]["semantic"], outs["jit"]["semantic"])
    np.testing.assert_array_equal(outs["numpy"]["panoptic"], outs["jit"]["panoptic"])

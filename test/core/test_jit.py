"""Tests for seg_perception.core.jit: numba's cache directory where the package is read-only."""
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

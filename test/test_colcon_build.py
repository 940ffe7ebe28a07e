"""The package builds as a ROS 2 ament_python package with colcon (from PyPI) and installs its
launch and config files into share/, its executables into lib/<package>/."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_colcon_build_installs_launch_config_and_executables(tmp_path):
    colcon = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    if not Path(colcon).exists():
        pytest.fail("colcon is not installed: it is pinned in requirements.txt (colcon-common-extensions)")
    src = tmp_path / "src" / "seg_perception"
    src.parent.mkdir(parents=True)
    # a clean copy of the tracked sources, like a fresh clone in a workspace
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith(("test/", "docs/")) or rel.endswith((".mcap", ".pt")):
            continue
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    proc = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(tmp_path / "src"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    share = tmp_path / "install" / "seg_perception" / "share" / "seg_perception"
    assert (share / "launch" / "segment.launch.py").is_file()
    assert (share / "package.xml").is_file()
    presets = {p.name for p in (share / "config").glob("*.yaml")}
    assert presets == {p.name for p in (REPO / "config").glob("*.yaml")} and presets
    # the DDS profile README points users at (FASTDDS_DEFAULT_PROFILES_FILE=$(ros2 pkg prefix ...)/share/...)
    assert (share / "config" / "fastdds_large_images.xml").is_file()
    index = tmp_path / "install" / "seg_perception" / "share" / "ament_index" / "resource_index" / "packages" / "seg_perception"
    assert index.is_file()
    lib = tmp_path / "install" / "seg_perception" / "lib" / "seg_perception"
    assert (lib / "segment_node").is_file() and (lib / "seg-perception").is_file()

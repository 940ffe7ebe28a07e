"""docs/ARCHITECTURE.md stays true: the paths it names exist, it names every package folder and
module, and imports follow the dependency direction it states."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ARCHITECTURE.md"
PKG = REPO / "seg_perception"
#: Folders whose modules the document names by folder only (one module per subcommand / format).
BY_FOLDER = ("cli", "models/backbones", "models/convert")
#: The dependency direction of the document, as layers: a module imports its own layer or lower.
LAYERS = {"config": 0, "hashing": 0, "provenance": 0, "models": 1, "runtime": 1, "core": 2, "bag": 2,
          "datasets": 2, "ros": 3, "eval": 3, "training": 3, "cli": 4, "tools": 4}
#: Upward imports the document lists as exceptions: (importing module, imported package).
EXCEPTIONS = {
    ("provenance.py", "runtime"),        # CPU flags for the machine block
    ("runtime/calibration.py", "bag"),   # calibration frames from a bag or the sample drive
    ("runtime/calibration.py", "core"),
    ("runtime/calibration.py", "datasets"),
}


def _named_paths() -> set[str]:
    return {m.rstrip("/") for m in re.findall(r"`(seg_perception/[^`\s]*)`", DOC.read_text())}


def test_every_named_path_exists() -> None:
    missing = sorted(p for p in _named_paths() if not (REPO / p).exists())
    assert missing == [], f"docs/ARCHITECTURE.md names paths that do not exist: {missing}"


def test_every_package_folder_and_module_is_named() -> None:
    named = _named_paths()
    folders = sorted(str(d.relative_to(REPO)) for d in PKG.rglob("*") if d.is_dir() and d.name != "__pycache__")
    modules = sorted(
        str(f.relative_to(REPO)) for f in PKG.rglob("*.py")
        if f.name not in ("__init__.py", "__main__.py")
        and not any(str(f.parent.relative_to(PKG)).startswith(b) for b in BY_FOLDER)
    )
    unnamed = [p for p in folders + modules if p not in named]
    assert unnamed == [], f"docs/ARCHITECTURE.md does not name: {unnamed}"


def _imports(path: Path) -> set[str]:
    """Top-level seg_perception packages/modules imported by ``path`` (absolute or relative)."""
    rel = path.relative_to(PKG).with_suffix("").parts
    pkg = ["seg_perception", *rel[:-1]] if rel[-1] != "__init__" else ["seg_perception", *rel[:-1]]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            names = [".".join(base + ([node.module] if node.module else []))]
            if node.level and not node.module:  # from . import x
                names = [".".join(base + [a.name]) for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "seg_perception" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_imports_follow_the_stated_direction() -> None:
    bad = []
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG)
        top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if top not in LAYERS:
            continue
        for dep in _imports(f):
            if dep in LAYERS and LAYERS[dep] > LAYERS[top] and (str(rel), dep) not in EXCEPTIONS:
                bad.append(f"{rel} imports {dep}")
    assert sorted(bad) == [], "imports against the direction of docs/ARCHITECTURE.md: " + "; ".join(sorted(bad))


def test_the_layers_here_are_the_layers_of_the_document() -> None:
    text = DOC.read_text()
    assert "cli, tools  ->  ros, eval, training  ->  core, bag, datasets  ->  models, runtime  ->  config" in text
    for module, package in EXCEPTIONS:
        assert f"`seg_perception/{module}`" in text and package in text

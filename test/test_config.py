"""The torch-free configuration layer: what launch files and ``--help`` import stays light."""
from __future__ import annotations

import subprocess
import sys

import pytest

from seg_perception import config


@pytest.mark.parametrize("module", ["seg_perception.config", "seg_perception.ros.params",
                                    "seg_perception.ros.launch_config", "seg_perception.cli.common"])
def test_import_loads_neither_torch_nor_opencv(module):
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'cv2', 'onnxruntime', 'openvino') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_one_list_of_backends_and_one_default_model():
    from seg_perception.cli import common as commands
    from seg_perception.ros import launch_config
    from seg_perception.ros import params
    from seg_perception.runtime import factory

    assert params.BACKENDS is config.BACKENDS and factory.BACKEND_CHOICES is config.BACKENDS
    assert set(factory.BACKEND_KINDS) == set(config.BACKENDS) - {"auto"}
    assert commands.DEFAULT_MODEL == launch_config.DEFAULT_MODEL == params.DEFAULT_MODEL == config.DEFAULT_MODEL
    assert params.SPECS["backend"].default in config.BACKENDS


@pytest.mark.parametrize("text, hw", [("512x1024", (512, 1024)), (" 64 X 128 ", (64, 128)), ([8, 8192], (8, 8192))])
def test_parse_resolution_accepts_the_documented_forms(text, hw):
    assert config.parse_resolution(text) == hw


@pytest.mark.parametrize("bad", ["", "512", "512x", "0x0", "7x64", "64x8193", "axb", None, 512, (1, 2, 3)])
def test_parse_resolution_refuses_with_the_accepted_form(bad):
    with pytest.raises(config.ConfigError, match="HxW"):
        config.parse_resolution(bad)


def test_no_import_cycle_through_the_package():
    """Every module's own imports (module level and function level) never lead back to it: the
    dependencies point one way."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "seg_perception"
    mods = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in root.rglob("*.py")}

    def deps(name: str, path: Path) -> set[str]:
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    out.add(target if target in mods else base)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
        # A module depends on its package's __init__ only through real imports, not by being inside it.
        return {d for d in out if d in mods and d != name and not name.startswith(d + ".")}

    graph = {n: deps(n, p) for n, p in mods.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in graph[n]:
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [n, d])
            elif d not in state:
                visit(d, stack + [d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert cycles == [], f"import cycles: {cycles[:5]}"

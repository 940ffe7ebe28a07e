"""docs/RELIABILITY.md's attack table is kept true by the tests it names.

* every test the table names exists (file and function);
* every test in the hostile-input test files is listed in the table;
* every figure written in bold in a row is a number the row's tests run with: a
  ``max_examples``, the length of a ``parametrize`` list, an integer literal in the test, or a
  default argument of a helper the test calls;
* only rows of the node section may say "TBD (node)".
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RELIABILITY.md"
LISTED_FILES = ("test/core/test_conversions_hostile.py", "test/bag/test_recover.py")
_TEST_ID = re.compile(r"`(test/[\w/]+\.py)::(\w+)`")


def _rows() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split("<!-- attack-table:start -->")[1].split("<!-- attack-table:end -->")[0]
    lines = [ln for ln in body.splitlines() if ln.startswith("|")][2:]  # header and rule
    rows = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines]
    assert rows and all(len(r) == 4 for r in rows), [r for r in rows if len(r) != 4]
    return rows


@lru_cache(maxsize=None)
def _module(path: str) -> ast.Module:
    return ast.parse((ROOT / path).read_text(encoding="utf-8"))


def _functions(path: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in _module(path).body if isinstance(n, ast.FunctionDef)}


def _figures(path: str, name: str) -> set[int]:
    """Numbers test ``name`` runs with (see the module docstring)."""
    funcs = _functions(path)
    fn = funcs[name]
    out: set[int] = set()
    for node in [*fn.decorator_list, *ast.walk(fn)]:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, int) and not isinstance(sub.value, bool):
                out.add(sub.value)
            if isinstance(sub, ast.Call) and getattr(sub.func, "attr", "") == "parametrize" and len(sub.args) > 1:
                if isinstance(sub.args[1], (ast.List, ast.Tuple)):
                    out.add(len(sub.args[1].elts))
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in funcs:
                helper = funcs[sub.func.id].args
                out |= {d.value for d in [*helper.defaults, *helper.kw_defaults]
                        if isinstance(d, ast.Constant) and isinstance(d.value, int)}
    return out


def test_every_named_test_exists():
    named = [(p, n) for row in _rows() for p, n in _TEST_ID.findall(row[3])]
    assert len(named) >= 30
    missing = [f"{p}::{n}" for p, n in named if not (ROOT / p).is_file() or n not in _functions(p)]
    assert missing == [], f"RELIABILITY.md names tests that do not exist: {missing}"


def test_every_row_names_a_test():
    for _area, attack, _outcome, tests in _rows():
        assert _TEST_ID.search(tests), f"row without a test: {attack}"


@pytest.mark.parametrize("path", LISTED_FILES)
def test_every_hostile_input_test_is_in_the_table(path):
    listed = {n for row in _rows() for p, n in _TEST_ID.findall(row[3]) if p == path}
    tests = {n for n in _functions(path) if n.startswith("test_")}
    assert tests - listed == set(), f"tests in {path} missing from RELIABILITY.md"


def test_bold_figures_are_what_the_tests_run_with():
    checked = 0
    for _area, attack, outcome, tests in _rows():
        bold = [int(b.replace(",", "")) for b in re.findall(r"\*\*([\d,]+)\*\*", attack + " " + outcome)]
        if not bold:
            continue
        figures = set().union(*(_figures(p, n) for p, n in _TEST_ID.findall(tests)))
        for value in bold:
            assert value in figures, f"figure {value} in row {attack[:60]!r} is not in its tests ({sorted(figures)})"
            checked += 1
    assert checked >= 5

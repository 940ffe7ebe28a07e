"""The shipped-weights descriptions say what the checkpoints themselves record."""
from __future__ import annotations

from pathlib import Path

import pytest

from seg_perception.config import parse_resolution
from seg_perception.models.checkpoint import load_checkpoint
from seg_perception.models.shipped import README_BEGIN, README_END, SHIPPED, markdown_table

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_description_matches_the_checkpoint(name):
    info = SHIPPED[name]
    loaded = load_checkpoint(info.path, expect_model=name)
    assert loaded.label_set == info.label_set
    assert parse_resolution(loaded.meta["resolution"]) == info.resolution
    held_out = loaded.meta["held_out"]
    assert {k: held_out[k] for k in info.metrics} == dict(info.metrics)
    assert held_out["scenes"] == 32 and held_out["miou_convention"] == "cityscapes"  # what HELD_OUT says
    anchor = info.recipe.split("#")[-1]
    doc = (REPO / info.recipe.split("#")[0]).read_text()
    assert any(line.startswith("#") and _slug(line) == anchor for line in doc.splitlines()), info.recipe


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = heading.lstrip("#").strip().lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def test_readme_model_table_is_generated_from_the_descriptions():
    text = (REPO / "README.md").read_text()
    block = text[text.index(README_BEGIN): text.index(README_END) + len(README_END)]
    assert block == markdown_table(), "README model table drifted: paste seg_perception.models.shipped.markdown_table()"

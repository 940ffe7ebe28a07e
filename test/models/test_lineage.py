"""A shipped checkpoint's recorded stages read back as its recipe."""
from __future__ import annotations

import re

import pytest

from seg_perception.cli.main import main
from seg_perception.models.checkpoint import read_checkpoint_meta
from seg_perception.models.lineage import lineage
from seg_perception.models.shipped import SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_lineage_is_ordered_and_ends_with_the_file(name):
    meta = read_checkpoint_meta(SHIPPED[name].path)
    stages = lineage(meta)
    assert len(stages) >= 10
    steps = [s.total_steps for s in stages]
    assert steps == sorted(steps) and steps[-1] == meta["total_steps"]
    assert stages[-1].command == meta["command"] and stages[-1].miou == meta["held_out"]["miou"]
    assert stages[0].command.startswith("seg-perception train-synthetic")


def test_damaged_record_is_refused_by_name():
    with pytest.raises(ValueError, match="init_from.*damaged"):
        lineage({"command": "x", "init_from": ["not", "a", "mapping"]})


def test_cli_prints_every_stage(capsys):
    path = SHIPPED["deeplabv3plus_mobilenetv2"].path
    assert main(["models", "--lineage", str(path)]) == 0
    out = capsys.readouterr().out
    numbered = [line for line in out.splitlines() if re.match(r"\s*\d+\. ", line)]
    assert len(numbered) == len(lineage(read_checkpoint_meta(path)))
    assert main(["models", "--lineage", str(path.with_name("missing.pt"))]) == 1
    assert "does not exist" in capsys.readouterr().out

"""Network resolution parsing: the accepted forms and the error that names the expected form."""
from __future__ import annotations

import pytest

from seg_perception.core.resolution import PipelineError, parse_resolution


def test_parse_resolution():
    assert parse_resolution("512x1024") == (512, 1024)
    assert parse_resolution([64, 96]) == (64, 96)
    for bad in ("512", "axb", (0, 10), "10x100000", None, 3.5):
        with pytest.raises(PipelineError, match="HxW"):
            parse_resolution(bad)

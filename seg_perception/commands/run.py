"""``seg-perception run [--ros-args ...]``: the node without a ROS distro install."""
from __future__ import annotations

HELP = "run segment_node; pass ROS arguments after --ros-args (e.g. -p model:=... --params-file f.yaml)"


def run(argv: list[str]) -> int:
    from ..ros.node import main

    return main(["segment_node", *argv])

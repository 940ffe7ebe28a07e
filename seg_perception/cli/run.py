"""``seg-perception run [--ros-args ...]``: the node without a ROS distro install."""
from __future__ import annotations

HELP = "run segment_node; pass ROS arguments after --ros-args (e.g. -p model:=... --params-file f.yaml)"


def usage() -> str:
    """The help text: how to pass ROS arguments, the topics and every parameter with its default."""
    from ..ros.params import PARAMETERS

    lines = [
        "usage: seg-perception run [--ros-args -p NAME:=VALUE ... -r FROM:=TO ... --params-file FILE]",
        "",
        HELP + ".",
        "Same as `ros2 run seg_perception segment_node`. Examples:",
        "  seg-perception run --ros-args -r image:=/camera/image_raw",
        "  seg-perception run --ros-args -p input_transport:=compressed -r image:=/cam/image_raw",
        "      (subscribes /cam/image_raw/compressed and /cam/camera_info)",
        "  seg-perception run --ros-args --params-file config/panoptic_deeplab_mobilenetv2.yaml",
        "",
        "parameters (-p NAME:=VALUE):",
    ]
    for p in PARAMETERS:
        lines.append(f"  {p.name} (default {p.default!r}): {p.description}")
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    head = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    if any(a in ("-h", "--help") for a in head):
        print(usage())
        return 0
    from ..ros.node import main

    return main(["segment_node", *argv])

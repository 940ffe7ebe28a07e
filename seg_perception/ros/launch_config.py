"""Everything ``launch/segment.launch.py`` computes, as plain importable Python.

The launch file only turns :data:`LAUNCH_ARGUMENTS` into DeclareLaunchArgument actions and hands
the resolved values to :func:`resolve_launch` inside an OpaqueFunction. Keeping the logic here lets
it be tested without the ``launch`` package.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from .params import BACKENDS, PRECISIONS, RELIABILITY, TRANSPORTS, ParameterError, check_native_heads, validate

from ..config import DEFAULT_BACKEND, DEFAULT_MODEL

PACKAGE = "seg_perception"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str
    choices: Optional[tuple[str, ...]] = None


def config_dir() -> Path:
    """The installed share/seg_perception/config, or the source tree's config/ when not installed."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            d = Path(get_package_share_directory(PACKAGE)) / "config"
            if d.is_dir():
                return d
        except (PackageNotFoundError, ValueError, KeyError, OSError):
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[2] / "config"


def list_presets() -> list[str]:
    """Model names that have a config/<model>.yaml preset."""
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("model", DEFAULT_MODEL, "Model preset: loads config/<model>.yaml.", tuple(list_presets()) or None),
    LaunchArgument("resolution", "", "Network input resolution 'HxW' (e.g. 512x1024); empty = the preset's."),
    LaunchArgument("image_topic", "/camera/image_raw", "Camera topic (sensor_msgs/Image); '<topic>/compressed' is used when input_transport=compressed."),
    LaunchArgument("namespace", "", "Namespace of the node (outputs are <ns>/segment_node/semantic, ...)."),
    LaunchArgument("params_file", "", "Extra ROS 2 parameters file applied after the preset (overrides it)."),
    LaunchArgument("backend", DEFAULT_BACKEND, "Inference runtime (auto: TensorRT on a GPU, else the fastest measured CPU path); empty = the preset's.", ("",) + BACKENDS),
    LaunchArgument("device", "", "cpu, cuda or cuda:N; empty = the preset's."),
    LaunchArgument("precision", "", "Numeric precision; empty = the preset's.", ("",) + PRECISIONS),
    LaunchArgument("native_heads", "", "true = heads at their own stride, upsampled once to the camera "
                   "(every backend; DeepLabV3+ and Panoptic-DeepLab models; docs/BACKENDS.md); empty = the preset's (false).",
                   ("", "true", "false")),
    LaunchArgument("weights", "", "Checkpoint path; empty = the preset's ('default' = shipped weights)."),
    LaunchArgument("input_transport", "", "raw or compressed (subscribes <image_topic>/compressed); empty = the preset's.",
                   ("",) + TRANSPORTS),
    LaunchArgument("qos_reliability", "", "Camera subscription reliability: auto matches the camera's publishers "
                   "(best effort if any is, else reliable), or best_effort / reliable; empty = the preset's (auto).",
                   ("",) + RELIABILITY),
    LaunchArgument("qos_depth", "", "Camera subscription history depth (>= 5 keeps every frame until the node "
                   "has seen it); empty = the preset's (5)."),
    LaunchArgument("cameras", "", "Several cameras in one node, comma-separated names (e.g. front,left): each "
                   "subscribes <namespace>/<name>/image, or image_topic with {camera} replaced by the name when it "
                   "contains {camera} (e.g. /{camera}/image_raw); empty = one camera (the preset's)."),
)
ARGUMENT_NAMES = tuple(a.name for a in LAUNCH_ARGUMENTS)
#: launch arguments that override a node parameter of the same name when non-empty
PARAM_OVERRIDES = ("resolution", "backend", "device", "precision", "native_heads", "weights", "input_transport",
                   "qos_reliability", "qos_depth")
#: launch arguments whose text is a number for the node
_INT_ARGUMENTS = ("qos_depth",)
#: launch arguments whose text is true / false for the node
_BOOL_ARGUMENTS = ("native_heads",)


@dataclass
class NodeLaunch:
    """What the launch file starts: one segment_node."""

    namespace: str
    parameters: list = field(default_factory=list)  # preset path, params_file path, overrides dict
    remappings: list = field(default_factory=list)
    preset: Optional[Path] = None


def load_preset(model: str) -> dict:
    """The ``ros__parameters`` of config/<model>.yaml (empty dict when there is no preset)."""
    path = config_dir() / f"{model}.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("/**", {}).get("ros__parameters", {}))


def resolve_launch(values: dict[str, str]) -> NodeLaunch:
    """Turn launch argument values into the node's parameters and remappings.

    Order of precedence (last wins): preset config/<model>.yaml < params_file < explicit arguments.

    Raises:
        ParameterError: an argument value is invalid (message names it and the allowed values),
            or params_file does not exist.
    """
    unknown = set(values) - set(ARGUMENT_NAMES)
    if unknown:
        raise ParameterError(f"unknown launch argument(s) {sorted(unknown)}; known: {', '.join(ARGUMENT_NAMES)}")
    vals = {a.name: a.default for a in LAUNCH_ARGUMENTS}
    vals.update({k: str(v) for k, v in values.items()})
    model = validate("model", vals["model"])
    overrides: dict = {"model": model}
    for key in PARAM_OVERRIDES:
        if vals[key] != "":
            value: object = vals[key]
            if key in _INT_ARGUMENTS:
                try:
                    value = int(vals[key])
                except ValueError:
                    raise ParameterError(f"launch argument {key}:={vals[key]!r} must be an integer (e.g. 5)") from None
            if key in _BOOL_ARGUMENTS:
                text = vals[key].strip().lower()
                if text not in ("true", "false"):
                    raise ParameterError(f"launch argument {key}:={vals[key]!r} must be true or false "
                                         f"(or empty for the preset's value)")
                value = text == "true"
            overrides[key] = validate(key, value)
    parameters: list = []
    preset = config_dir() / f"{model}.yaml"
    if preset.is_file():
        for k, v in load_preset(model).items():  # fail early on a broken preset
            validate(k, v)
        parameters.append(str(preset))
    if vals["params_file"]:
        pf = Path(vals["params_file"]).expanduser()
        if not pf.is_file():
            raise ParameterError(f"launch argument params_file={vals['params_file']!r} does not exist")
        parameters.append(str(pf))
    parameters.append(overrides)
    merged = effective_parameters(NodeLaunch(namespace="", parameters=parameters))
    check_native_heads(merged.get("native_heads", False), merged.get("model", model))
    topic = vals["image_topic"]
    if not topic:
        raise ParameterError("launch argument image_topic must not be empty (e.g. /camera/image_raw)")
    cameras = validate("cameras", [n.strip() for n in vals["cameras"].split(",") if n.strip()])
    if cameras:
        overrides["cameras"] = cameras
    if "{camera}" in topic and not cameras:
        raise ParameterError(f"launch argument image_topic:={topic!r} contains {{camera}} but no cameras are given; "
                             "pass cameras:=front,left or a plain topic")
    # the node derives <image>/compressed and the sibling camera_info from each base topic
    if cameras:
        remappings = [(f"{c}/image", topic.replace("{camera}", c)) for c in cameras] if "{camera}" in topic else []
    else:
        remappings = [("image", topic)]
    return NodeLaunch(namespace=vals["namespace"], parameters=parameters, remappings=remappings,
                      preset=preset if preset.is_file() else None)


def effective_parameters(launch: NodeLaunch) -> dict:
    """The parameter values the node will see (files merged in order, then overrides)."""
    merged: dict = {}
    for p in launch.parameters:
        if isinstance(p, dict):
            merged.update(p)
        else:
            data = yaml.safe_load(Path(p).read_text()) or {}
            for key, section in data.items():
                if key in ("/**", "segment_node", "/segment_node") or key.endswith("/segment_node"):
                    merged.update((section or {}).get("ros__parameters", {}))
    return merged

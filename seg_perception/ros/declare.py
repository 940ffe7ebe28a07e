"""Declaring the parameter table (:data:`~seg_perception.ros.params.PARAMETERS`) on the node.

Each declaration carries its description and choices; a value of the wrong type becomes one
:class:`~seg_perception.ros.startup.StartupError` line naming the fix, an integer given for a
double parameter is taken as that number, and an override nobody declares is warned about with
the closest known name.
"""
from __future__ import annotations

from typing import Any, Callable

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.parameter import Parameter

from .params import FLOAT_KEYS, PARAMETERS, SPECS, closest_parameter
from .startup import StartupError, one_line

#: Parameters every rclpy node declares itself (not ours, not misspellings).
RCLPY_PARAMS = frozenset({"use_sim_time", "start_type_description_service", "start_parameter_event_publisher"})


def coerce_numbers(params: list) -> list:
    """An integer for a double parameter (YAML ``1``, ``-p overlay_alpha:=1``) is that number.

    The node's pre-set-parameters callback: returns ``params`` with such integers as doubles.
    """
    out = []
    for p in params:
        if p.name in FLOAT_KEYS and p.type_ == Parameter.Type.INTEGER:
            p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
        out.append(p)
    return out


def coerce_overrides(overrides: dict[str, Parameter]) -> None:
    """:func:`coerce_numbers` for the start-up values, in place (declaration does not run that callback)."""
    for name, p in list(overrides.items()):
        if name in FLOAT_KEYS and p.type_ == Parameter.Type.INTEGER:
            overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(p.value))


def declare_parameters(node: Any, overrides: dict[str, Parameter]) -> dict[str, Any]:
    """Declare every parameter of the table on ``node`` whose start-up values are ``overrides``;
    returns ``{name: value}`` (not yet validated).

    Raises:
        StartupError: a start-up value has the wrong type or the declaration fails (one line).
    """
    for spec in PARAMETERS:
        choices = spec.choices() if callable(spec.choices) else spec.choices
        extra = f"choices: {', '.join(choices)}" if choices else ""
        # a list parameter (cameras) is declared by type: rclpy would type an empty default as bytes
        default = Parameter.Type.STRING_ARRAY if isinstance(spec.default, list) else spec.default
        try:
            node.declare_parameter(spec.name, default, ParameterDescriptor(
                description=spec.description, additional_constraints=extra, read_only=spec.read_only))
        except rclpy.exceptions.InvalidParameterTypeException:
            given = overrides[spec.name].value
            kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                    list: "a list of names (e.g. -p cameras:=\"[front, left]\")"}[type(spec.default)]
            example = spec.default or ("256x512" if spec.name == "resolution" else "...")
            quote = (f"; quote the value (-p {spec.name}:=\"'{example}'\"): YAML reads e.g. 0x0 as a number"
                     if isinstance(spec.default, str) else "")
            raise StartupError(f"parameter '{spec.name}' = {given!r} ({type(given).__name__}) must be {kind}"
                               f"{quote}") from None
        except Exception as e:  # noqa: BLE001 - any declaration failure is a refusal to start
            raise StartupError(f"parameter '{spec.name}': {one_line(e)}") from None
    return {spec.name: _declared_value(node, spec.name) for spec in PARAMETERS}


def _declared_value(node: Any, name: str) -> Any:
    """The parameter's value; the default for one declared by type and never set (cameras)."""
    try:
        return node.get_parameter(name).value
    except rclpy.exceptions.ParameterUninitializedException:
        return SPECS[name].default


def unknown_parameter_warnings(overrides: dict[str, Any], has_parameter: Callable[[str], bool]) -> list[str]:
    """One warning per override that is neither ours, rclpy's, declared nor a QoS override, with a
    did-you-mean hint (or the known names)."""
    out = []
    for name in sorted(overrides):
        if name in SPECS or name in RCLPY_PARAMS or has_parameter(name) or name.startswith("qos_overrides."):
            continue
        near = closest_parameter(name)
        hint = f"did you mean '{near}'?" if near else f"known: {', '.join(SPECS)}"
        out.append(f"unknown parameter '{name}' is ignored; {hint}")
    return out

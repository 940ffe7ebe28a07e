"""Declaring the parameter table on a real rclpy node (ros/declare.py); nothing spins."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.parameter import Parameter

from seg_perception.ros.declare import (coerce_numbers, coerce_overrides, declare_parameters,
                                        unknown_parameter_warnings)
from seg_perception.ros.params import PARAMETERS, SPECS
from seg_perception.ros.startup import StartupError

pytestmark = pytest.mark.ros


@pytest.fixture
def make_node():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    nodes = []

    def make(*overrides: Parameter):
        node = rclpy.create_node(f"declare_test_{len(nodes)}", context=ctx, parameter_overrides=list(overrides))
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.destroy_node()
    rclpy.try_shutdown(context=ctx)


def test_every_parameter_is_declared_with_its_description_and_default(make_node):
    node = make_node()
    raw = declare_parameters(node, node._parameter_overrides)
    assert list(raw) == [p.name for p in PARAMETERS]
    for spec in PARAMETERS:
        assert raw[spec.name] == spec.default, spec.name
        desc = node.describe_parameter(spec.name)
        assert desc.description == spec.description and desc.read_only == spec.read_only


def test_wrong_type_is_one_startup_error_naming_the_fix(make_node):
    node = make_node(Parameter("overlay_alpha", value="half"))
    with pytest.raises(StartupError, match=r"parameter 'overlay_alpha' = 'half' \(str\) must be a number") as e:
        declare_parameters(node, node._parameter_overrides)
    assert "\n" not in str(e.value)
    node = make_node(Parameter("resolution", value=0))
    with pytest.raises(StartupError, match=r"quote the value .*YAML reads e.g. 0x0 as a number"):
        declare_parameters(node, node._parameter_overrides)


def test_integers_for_doubles_become_doubles(make_node):
    overrides = {"overlay_alpha": Parameter("overlay_alpha", value=1), "qos_depth": Parameter("qos_depth", value=3)}
    coerce_overrides(overrides)
    assert overrides["overlay_alpha"].type_ == Parameter.Type.DOUBLE and overrides["overlay_alpha"].value == 1.0
    assert overrides["qos_depth"].type_ == Parameter.Type.INTEGER  # an integer parameter stays one
    out = coerce_numbers([Parameter("diagnostics_period", value=2), Parameter("model", value="x")])
    assert (out[0].type_, out[0].value) == (Parameter.Type.DOUBLE, 2.0) and out[1].value == "x"
    node = make_node(Parameter("overlay_alpha", value=1))
    coerce_overrides(node._parameter_overrides)
    assert declare_parameters(node, node._parameter_overrides)["overlay_alpha"] == 1.0


def test_unknown_overrides_are_warned_with_the_closest_name():
    names = {"overlay_alhpa": 1, "use_sim_time": 1, "qos_overrides./x.reliability": 1, "model": 1, "zzzzzz": 1,
             "declared_elsewhere": 1}
    out = unknown_parameter_warnings(names, lambda n: n == "declared_elsewhere")
    assert out[0] == "unknown parameter 'overlay_alhpa' is ignored; did you mean 'overlay_alpha'?"
    assert out[1].startswith("unknown parameter 'zzzzzz' is ignored; known: ") and all(n in out[1] for n in SPECS)
    assert len(out) == 2

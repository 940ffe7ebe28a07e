"""Launch logic (what segment.launch.py computes) and the presets it loads."""
from pathlib import Path

import pytest
import yaml

from seg_perception.ros import launch_config as lc
from seg_perception.models import list_models
from seg_perception.ros.params import SPECS, ParameterError, validate

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.parametrize("preset", sorted(CONFIG.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_preset_is_a_valid_ros_params_file(preset):
    data = yaml.safe_load(preset.read_text())
    params = data["/**"]["ros__parameters"]
    assert params["model"] == preset.stem and preset.stem in list_models()
    assert set(params) == set(SPECS), "a preset must set every declared parameter (the catalogue must match)"
    for k, v in params.items():
        validate(k, v)
    # every key is commented on its line
    for line in preset.read_text().splitlines():
        if line.startswith("    ") and ":" in line:
            assert "#" in line, f"{preset.name}: uncommented key line {line!r}"


def test_precedence_preset_then_file_then_arguments(tmp_path):
    extra = tmp_path / "mine.yaml"
    extra.write_text("/**:\n  ros__parameters:\n    overlay_alpha: 0.25\n    resolution: '64x128'\n")
    spec = lc.resolve_launch({"model": "panoptic_deeplab_mobilenetv2", "params_file": str(extra),
                              "resolution": "96x192", "image_topic": "/front/image", "namespace": "robot1"})
    eff = lc.effective_parameters(spec)
    assert eff["model"] == "panoptic_deeplab_mobilenetv2"
    assert eff["overlay_alpha"] == 0.25          # params_file beats preset
    assert eff["resolution"] == "96x192"         # argument beats params_file
    assert eff["top_k"] == lc.load_preset("panoptic_deeplab_mobilenetv2")["top_k"]
    # one base topic: the node derives <base>/compressed and <dir>/camera_info (image_transport)
    assert spec.remappings == [("image", "/front/image")]
    assert spec.namespace == "robot1"


@pytest.mark.parametrize("args,needle", [
    ({"model": "nope"}, "choose one of"),
    ({"backend": "tflite"}, "onnxruntime"),
    ({"resolution": "big"}, "HxW"),
    ({"params_file": "/does/not/exist.yaml"}, "does not exist"),
    ({"image_topic": ""}, "image_topic"),
    ({"bogus": "1"}, "unknown launch argument"),
    ({"qos_reliability": "sometimes"}, "auto, best_effort, reliable"),
    ({"qos_depth": "deep"}, "integer"),
    ({"qos_depth": "0"}, "qos_depth"),
    ({"native_heads": "maybe"}, "native_heads.*true or false"),
    ({"native_heads": "true", "model": "hrnetv2_w18_small_v2", "backend": "torch"},
     "'native_heads' = true.*'model' = 'hrnetv2_w18_small_v2'.*forward_native"),
])
def test_bad_arguments_are_refused(args, needle):
    with pytest.raises(ParameterError, match=needle):
        lc.resolve_launch(args)


def test_qos_arguments_reach_the_node_and_default_to_the_preset():
    eff = lc.effective_parameters(lc.resolve_launch({}))
    assert (eff["qos_reliability"], eff["qos_depth"]) == ("auto", 5)  # the presets' values
    eff = lc.effective_parameters(lc.resolve_launch({"qos_reliability": "best_effort", "qos_depth": "12"}))
    assert (eff["qos_reliability"], eff["qos_depth"]) == ("best_effort", 12)
    args = {a.name: a for a in lc.LAUNCH_ARGUMENTS}
    assert set(args["qos_reliability"].choices) == {"", "auto", "best_effort", "reliable"}
    assert "auto" in args["qos_reliability"].description and "depth" in args["qos_depth"].description


def test_arguments_are_described_and_model_choices_are_presets():
    for a in lc.LAUNCH_ARGUMENTS:
        assert a.description
        if a.choices:
            assert a.default in a.choices
    model = next(a for a in lc.LAUNCH_ARGUMENTS if a.name == "model")
    assert set(model.choices) == {p.stem for p in CONFIG.glob("*.yaml")}
    for required in ("model", "resolution", "image_topic", "namespace", "params_file", "backend", "device", "precision",
                     "qos_reliability", "qos_depth"):
        assert required in lc.ARGUMENT_NAMES


def test_launch_description_runs_where_launch_is_installed():
    # (the repo's own launch/ folder is a namespace package named "launch": check for the real one)
    try:
        import launch
        import launch_ros  # noqa: F401
        launch.LaunchDescription
    except (ImportError, AttributeError):
        pytest.skip("the launch/launch_ros packages are not on PyPI; this runs in a ROS 2 workspace")
    import importlib.util

    spec = importlib.util.spec_from_file_location("segment_launch", Path(__file__).resolve().parents[2] / "launch" / "segment.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    ctx = launch.LaunchContext()
    names = set()
    for entity in ld.entities:
        if isinstance(entity, launch.actions.DeclareLaunchArgument):
            names.add(entity.name)
            entity.visit(ctx)
    assert names == set(lc.ARGUMENT_NAMES)
    opaque = [e for e in ld.entities if isinstance(e, launch.actions.OpaqueFunction)][0]
    nodes = opaque.execute(ctx)
    assert nodes and nodes[0].node_executable == "segment_node"


def test_cameras_argument_sets_the_parameter_and_one_remapping_per_camera():
    spec = lc.resolve_launch({"cameras": "front, left", "image_topic": "/{camera}/image_raw"})
    assert lc.effective_parameters(spec)["cameras"] == ["front", "left"]
    assert spec.remappings == [("front/image", "/front/image_raw"), ("left/image", "/left/image_raw")]
    plain = lc.resolve_launch({"cameras": "front,left"})  # no {camera}: the relative <name>/image topics
    assert plain.remappings == [] and lc.effective_parameters(plain)["cameras"] == ["front", "left"]
    with pytest.raises(ParameterError, match="names 'front' twice"):
        lc.resolve_launch({"cameras": "front,front"})
    with pytest.raises(ParameterError, match="contains {camera} but no cameras"):
        lc.resolve_launch({"image_topic": "/{camera}/image_raw"})
    assert lc.resolve_launch({}).remappings == [("image", "/camera/image_raw")]  # one camera: unchanged


def test_native_heads_argument_reaches_the_node_as_a_bool(tmp_path):
    assert lc.effective_parameters(lc.resolve_launch({}))["native_heads"] is False  # the presets' value
    for backend in ("onnxruntime", "torch"):  # every backend runs native heads
        for text, want in (("true", True), ("True", True), ("false", False)):
            eff = lc.effective_parameters(lc.resolve_launch({"native_heads": text, "backend": backend}))
            assert eff["native_heads"] is want and eff["backend"] == backend
    # a params file that sets native_heads is checked against the model argument too
    extra = tmp_path / "native.yaml"
    extra.write_text("/**:\n  ros__parameters:\n    native_heads: true\n")
    with pytest.raises(ParameterError, match="native_heads.*hrnetv2_w18_small_v2"):
        lc.resolve_launch({"model": "hrnetv2_w18_small_v2", "params_file": str(extra)})
    eff = lc.effective_parameters(lc.resolve_launch({"backend": "torch", "params_file": str(extra)}))
    assert eff["native_heads"] is True and eff["backend"] == "torch"
    arg = next(a for a in lc.LAUNCH_ARGUMENTS if a.name == "native_heads")
    assert set(arg.choices) == {"", "true", "false"} and "every backend" in arg.description

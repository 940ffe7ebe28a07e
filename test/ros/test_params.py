"""Parameter table: defaults valid, bad values refused with the allowed values named."""
import pytest

from seg_perception.models import list_models
from seg_perception.ros.params import PANOPTIC_AUTO, PARAMETERS, NodeConfig, ParameterError, validate


def test_defaults_validate():
    cfg = NodeConfig.from_dict()
    assert cfg["model"] in list_models()
    assert all(p.description for p in PARAMETERS)


@pytest.mark.parametrize("name,value,needle", [
    ("model", "deeplab_nope", "deeplabv3plus_mobilenetv2"),
    ("backend", "tflite", "onnxruntime"),
    ("precision", "fp8", "fp16"),
    ("input_transport", "theora", "compressed"),
    ("qos_reliability", "sometimes", "best_effort"),
    ("overlay_alpha", 1.5, "[0.0, 1.0]"),
    ("overlay_alpha", "half", "number"),
    ("resolution", "512by1024", "HxW"),
    ("resolution", "4x4", "between 8 and 8192"),
    ("device", "tpu", "cuda:N"),
    ("nms_kernel", 6, "odd"),
    ("top_k", -3, "[1, 10000]"),
    ("center_threshold", 1.5, "tuned for the weights"),
    ("stuff_area", -2, "[0, 10000000]"),
    ("class_split_area", 1.5, "integer"),
    ("class_aware_grouping", 2, "[0, 1]"),
    ("class_aware_grouping", True, "integer"),
    ("qos_depth", True, "integer"),
])
def test_bad_values_name_parameter_and_allowed(name, value, needle):
    with pytest.raises(ParameterError) as e:
        validate(name, value)
    assert name in str(e.value) and needle in str(e.value)


def test_normalization_and_unknown():
    assert validate("resolution", "256 x 512") == "256x512"
    assert validate("resolution", "") == ""
    assert validate("device", "CUDA:1") == "cuda:1"
    with pytest.raises(ParameterError, match="known"):
        validate("no_such_param", 1)


def test_segmenter_kwargs_roundtrip():
    cfg = NodeConfig.from_dict({"resolution": "128x256", "model": "panoptic_deeplab_mobilenetv2", "top_k": 50})
    kw = cfg.segmenter_kwargs()
    assert kw["resolution"] == "128x256" and kw["model"] == "panoptic_deeplab_mobilenetv2"
    # only what was set explicitly; the rest stays 'auto' (the weights' tuned values)
    assert kw["panoptic"] == {"top_k": 50}
    assert cfg.replace(top_k=7)["top_k"] == 7
    with pytest.raises(ParameterError):
        cfg.replace(top_k=-1)


def test_panoptic_parameters_default_to_auto_and_accept_explicit_values():
    cfg = NodeConfig.from_dict()
    assert {k: cfg[k] for k in PANOPTIC_AUTO} == PANOPTIC_AUTO
    assert cfg.panoptic_overrides() == {}
    explicit = {"center_threshold": 0.3, "nms_kernel": 5, "top_k": 10, "stuff_area": 0, "class_split_area": 0}
    assert NodeConfig.from_dict(explicit).panoptic_overrides() == explicit
    # the ROS integer 0/1 becomes the PanopticConfig bool
    for v in (0, 1):
        got = NodeConfig.from_dict({"class_aware_grouping": v}).panoptic_overrides()
        assert got == {"class_aware_grouping": bool(v)} and type(got["class_aware_grouping"]) is bool
    # an integer -1 for a float parameter is the same sentinel (YAML writes it either way)
    assert NodeConfig.from_dict({"center_threshold": -1}).panoptic_overrides() == {}

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
    ("weights", "", "'default'"),
    ("weights", "   ", "'none'"),
    ("weights", 3, "string"),
    ("autostart", "yes", "true or false"),
    ("input_timeout", -1.0, "[0.0, 3600.0]"),
    ("native_heads", "yes", "true or false"),
    ("native_heads", 1, "true or false"),
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


def test_integers_are_accepted_where_numbers_are_expected():
    """ROS parameters from YAML or the command line: ``overlay_alpha:=1`` is the number 1.0."""
    from seg_perception.ros.params import FLOAT_KEYS

    assert {"overlay_alpha", "diagnostics_period", "center_threshold", "input_timeout"} <= FLOAT_KEYS
    cfg = NodeConfig.from_dict({"overlay_alpha": 1, "diagnostics_period": 2, "input_timeout": 0})
    assert (cfg["overlay_alpha"], cfg["diagnostics_period"], cfg["input_timeout"]) == (1.0, 2.0, 0.0)
    assert type(cfg["overlay_alpha"]) is float


def test_weights_values_and_cheap_file_checks(tmp_path):
    from seg_perception.ros.params import precheck_weights

    assert validate("weights", " Default ") == "default" and validate("weights", "NONE") == "none"
    for v in ("default", "none"):
        precheck_weights(v)
    big = tmp_path / "big.pt"
    with open(big, "wb") as f:  # sparse: 2 GiB of size, nothing written
        f.write(b"PK\x03\x04")
        f.truncate(2 << 30)
    cases = [(tmp_path / "missing.pt", "does not exist"), (tmp_path, "not a regular file"),
             (big, "bytes"), (tmp_path / "text.pt", "neither a torch.save file nor a pickle")]
    (tmp_path / "text.pt").write_text("#!/bin/sh\necho hi\n")
    for path, needle in cases:
        with pytest.raises(ParameterError, match=needle) as e:
            precheck_weights(str(path))
        assert str(path) in str(e.value)
    ok = tmp_path / "ok.pt"
    ok.write_bytes(b"PK\x03\x04" + bytes(100))
    precheck_weights(str(ok))


def test_closest_parameter_for_typos():
    from seg_perception.ros.params import closest_parameter

    assert closest_parameter("modle") == "model"
    assert closest_parameter("qos_relability") == "qos_reliability"
    assert closest_parameter("resolutoin") == "resolution"
    assert closest_parameter("zzzz") is None


def test_run_help_prints_help_and_does_not_start_the_node():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "seg_perception.cli.main", "run", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: seg-perception run" in out.stdout and "--ros-args" in out.stdout
    for p in PARAMETERS:
        assert f"  {p.name} (default" in out.stdout
    assert "listening on" not in out.stdout + out.stderr


def test_missing_vision_msgs_hint_fits_a_pip_venv(monkeypatch):
    import sys

    from seg_perception.ros.instances import InstancePublisher

    monkeypatch.setitem(sys.modules, "vision_msgs", None)  # import fails as where it is not installed
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", None)
    pub = InstancePublisher(None, "~/instances")
    assert not pub.available
    assert "colcon" in pub.why_unavailable and "pip" in pub.why_unavailable


def test_readme_parameter_table_matches_the_declared_parameters():
    """README's table is generated from PARAMETERS; regenerate it with params.markdown_table()."""
    from pathlib import Path

    from seg_perception.ros.params import README_BEGIN, README_END, markdown_table

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text[text.index(README_BEGIN): text.index(README_END) + len(README_END)]
    assert block == markdown_table(), "README parameter table drifted: paste seg_perception.ros.params.markdown_table()"


def test_cloud_range_must_not_be_empty():
    from seg_perception.ros.params import NodeConfig, ParameterError

    with pytest.raises(ParameterError, match="cloud.min_range.*cloud.max_range"):
        NodeConfig.from_dict({"cloud.min_range": 5.0, "cloud.max_range": 2.0})
    assert NodeConfig.from_dict({"cloud.min_range": 5.0})["cloud.max_range"] == 0.0  # 0 = no limit
    with pytest.raises(ParameterError, match="cloud.classes"):
        NodeConfig.from_dict({"cloud.classes": "car"})
    assert NodeConfig.from_dict({"cloud.classes": " 13, 11,13"})["cloud.classes"] == "11,13"


@pytest.mark.parametrize("cameras, needle", [
    (["front", "front"], "names 'front' twice"),
    (["front", "1st"], "'1st' is not a valid camera name"),
    (["front/left"], "'front/left' is not a valid camera name"),
    ([""], "'' is not a valid camera name"),
    ("front", "must be a list of camera names; e.g. -p cameras"),
    ([f"c{i}" for i in range(17)], "at most 16"),
])
def test_bad_camera_lists_are_refused_by_name(cameras, needle):
    with pytest.raises(ParameterError, match=needle.replace("(", r"\(")):
        NodeConfig.from_dict({"cameras": cameras})


def test_cameras_refuse_depth_and_tracking_with_the_reason():
    for key, value in (("depth_topic", "/cam/depth"), ("tracking.enabled", True)):
        with pytest.raises(ParameterError, match=f"'{key}'.*not supported with 'cameras'.*one node per camera"):
            NodeConfig.from_dict({"cameras": ["front", "left"], key: value})
        NodeConfig.from_dict({key: value})  # fine with one camera


def test_batch_size_is_the_camera_count_capped_by_max_batch():
    assert NodeConfig.from_dict({}).batch_size() == 1
    assert NodeConfig.from_dict({"cameras": ["a", "b", "c"]}).batch_size() == 3
    cfg = NodeConfig.from_dict({"cameras": ["a", "b", "c"], "max_batch": 2})
    assert cfg.batch_size() == 2 and cfg.segmenter_kwargs()["max_batch"] == 2
    assert NodeConfig.from_dict({"cameras": ["front_1", "_rear"]})["cameras"] == ["front_1", "_rear"]


def test_native_heads_runs_on_every_backend_and_is_refused_for_a_model_without_the_form():
    """native_heads (default off) reaches build_segmenter with every backend, torch included; a model
    whose registry entry has no native form (HRNetV2) is refused with both parameters and the fix
    named, also when a later change would pair them."""
    from seg_perception.config import BACKENDS, NATIVE_HEADS_BACKENDS
    from seg_perception.ros.params import RELOAD_KEYS, SPECS

    assert SPECS["native_heads"].default is False and NodeConfig.from_dict().segmenter_kwargs()["native_heads"] is False
    assert "native_heads" in RELOAD_KEYS  # a change rebuilds the Segmenter
    assert NATIVE_HEADS_BACKENDS == BACKENDS
    for backend in BACKENDS:
        cfg = NodeConfig.from_dict({"backend": backend, "native_heads": True})
        assert cfg.segmenter_kwargs()["native_heads"] is True and cfg.segmenter_kwargs()["backend"] == backend
    with pytest.raises(ParameterError) as e:
        NodeConfig.from_dict({"model": "hrnetv2_w18_small_v2", "backend": "torch", "native_heads": True})
    for needle in ("'native_heads' = true", "'model' = 'hrnetv2_w18_small_v2'", "forward_native",
                   "deeplabv3plus_mobilenetv2", "panoptic_deeplab_mobilenetv2", "leave native_heads off"):
        assert needle in str(e.value)
    assert "hrnetv2_w18" not in str(e.value).split("models with one:")[1]
    native = NodeConfig.from_dict({"backend": "torch", "native_heads": True})
    with pytest.raises(ParameterError, match="native_heads"):
        native.replace(model="hrnetv2_w18")
    assert native.replace(model="hrnetv2_w18", native_heads=False)["model"] == "hrnetv2_w18"

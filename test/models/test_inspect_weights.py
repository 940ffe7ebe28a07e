"""``seg-perception models --inspect`` and refusals of files that fit no layout, or one only partly.

The files are written the way the reference projects save them (fixture weights of
``../shared/refs`` and of ``semantic_refs/``), then damaged or replaced by a foreign layout.
"""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from seg_perception.cli.main import main
from seg_perception.models.checkpoint import CheckpointError
from seg_perception.models.convert.formats import inspect_weights
from seg_perception.core.segmenter import build_segmenter

from .. import reference_fixtures as refs
from .test_reference_parity_semantic import write_local_ref_checkpoint, write_vainf_checkpoint

FIXTURE = "vainf_deeplabv3plus_mobilenet"


@pytest.fixture(scope="module")
def vainf_file(tmp_path_factory):
    return write_vainf_checkpoint(FIXTURE, tmp_path_factory.mktemp("vainf"))


def _vainf_container(sd) -> dict:
    return {"model_state": sd, "cur_itrs": 0, "best_score": 0.0, "optimizer_state": {}, "scheduler_state": {}}


def test_inspect_vainf_file_maps_to_model_and_uses_every_key(vainf_file, capsys) -> None:
    report = inspect_weights(vainf_file)
    assert report.format == "vainf" and report.model_name == "deeplabv3plus_mobilenetv2"
    kw = report.model_kwargs
    assert kw["decoder_convs"] == 1 and kw["block_padding"] == "input" and kw["output_stride"] == 16
    assert kw["num_classes"] == 19 and kw["aspp_channels"] == 256 and kw["low_level_channels"] == 48
    entries = len(refs.manifest(FIXTURE)["state_dict"])
    assert report.ok and report.file_entries == entries and report.loaded_entries == entries

    assert main(["models", "--inspect", str(vainf_file)]) == 0
    out = capsys.readouterr().out
    assert "format:  vainf - VainF/DeepLabV3Plus-Pytorch" in out and "model:   deeplabv3plus_mobilenetv2" in out
    assert f"{entries} in the file, {entries} loaded" in out and "every key used" in out


def test_partial_vainf_file_is_refused_naming_format_keys_and_fix(vainf_file, tmp_path, capsys) -> None:
    sd = torch.load(vainf_file, weights_only=True)["model_state"]
    dropped = ["classifier.aspp.convs.1.0.weight", "backbone.high_level_features.9.conv.1.0.weight",
               "classifier.project.1.running_var"]
    for k in dropped:
        del sd[k]
    sd["classifier.extra.weight"] = torch.zeros(3)
    sd["backbone.high_level_features.18.0.weight"] = torch.zeros(1280, 320, 1, 1)
    path = tmp_path / "partial.pth"
    torch.save(_vainf_container(sd), path)

    report = inspect_weights(path)
    assert report.format == "vainf" and not report.ok
    assert len(report.missing) == 3 and {"aspp.convs.1.0.weight", "backbone.features.9.conv.1.0.weight",
                                          "decoder.project.1.running_var"} == set(report.missing)
    assert report.unexpected == ["classifier.extra.weight", "backbone.features.18.0.weight"]
    assert main(["models", "--inspect", str(path)]) == 1
    out = capsys.readouterr().out
    assert "3 missing" in out and "2 unexpected" in out and "does NOT load" in out

    with pytest.raises(CheckpointError) as err:
        build_segmenter("deeplabv3plus_mobilenetv2", weights=str(path), resolution=(65, 97))
    msg = str(err.value)
    assert "VainF/DeepLabV3Plus-Pytorch" in msg and "3 missing key(s)" in msg and "2 unexpected key(s)" in msg
    assert "aspp.convs.1.0.weight" in msg and "models --inspect" in msg


def test_vainf_file_with_wrong_shapes_names_them(vainf_file, tmp_path) -> None:
    sd = torch.load(vainf_file, weights_only=True)["model_state"]
    sd["classifier.aspp.project.0.weight"] = torch.zeros(256, 1024, 1, 1)  # 4 ASPP branches, not 5
    path = tmp_path / "shapes.pth"
    torch.save(_vainf_container(sd), path)
    report = inspect_weights(path)
    assert report.shape_mismatches == ["aspp.project.0.weight: checkpoint (256, 1024, 1, 1) vs model (256, 1280, 1, 1)"]
    with pytest.raises(CheckpointError, match=r"1 shape mismatch\(es\): aspp\.project\.0\.weight"):
        build_segmenter("deeplabv3plus_mobilenetv2", weights=str(path), resolution=(65, 97))


def test_vainf_file_of_another_model_or_head_is_refused_with_the_reason(vainf_file, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="deeplabv3plus_mobilenetv2.*not 'deeplabv3plus_resnet50'"):
        build_segmenter("deeplabv3plus_resnet50", weights=str(vainf_file), resolution=(65, 97))

    sd = torch.load(vainf_file, weights_only=True)["model_state"]
    v3 = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("classifier.project."))
    path = tmp_path / "best_deeplabv3_mobilenet_cityscapes_os16.pth"
    torch.save(_vainf_container(v3), path)
    with pytest.raises(CheckpointError, match="not a DeepLabV3\\+ head"):
        build_segmenter("deeplabv3plus_mobilenetv2", weights=str(path), resolution=(65, 97))
    assert "not a DeepLabV3+ head" in inspect_weights(path).error


def test_hrnet_file_for_another_variant_names_the_right_model(tmp_path, capsys) -> None:
    path = write_local_ref_checkpoint("hrnet_w18_small_v2", tmp_path)
    report = inspect_weights(path)
    assert report.ok and report.format == "hrnet_official" and report.model_name == "hrnetv2_w18_small_v2"
    assert report.dropped_by_converter == 1  # loss.criterion.weight
    with pytest.raises(CheckpointError, match="hrnetv2_w18_small_v2 checkpoint; load it with model"):
        build_segmenter("hrnetv2_w48", weights=str(path), resolution=(64, 64))
    assert main(["models", "--inspect", str(path), "--model", "hrnetv2_w18"]) == 1
    assert "load it with model 'hrnetv2_w18_small_v2'" in capsys.readouterr().out


def test_foreign_file_is_refused_and_inspect_says_what_it_is(tmp_path, capsys) -> None:
    path = tmp_path / "classifier.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}, path)
    report = inspect_weights(path)
    assert report.format == "state_dict" and report.model_name is None and "--model" in report.error
    assert main(["models", "--inspect", str(path), "--model", "deeplabv3plus_mobilenetv2"]) == 1
    out = capsys.readouterr().out
    assert "format:  state_dict - plain state dict" in out and "2 unexpected" in out and "missing" in out
    with pytest.raises(CheckpointError) as err:
        build_segmenter("deeplabv3plus_mobilenetv2", weights=str(path), resolution=(65, 97))
    msg = str(err.value)
    assert "plain state dict" in msg and "2 unexpected key(s): features.0.weight, fc.weight" in msg
    assert "matches none of the supported layouts" in msg

    odd = tmp_path / "list.pth"
    torch.save([1, 2, 3], odd)
    assert main(["models", "--inspect", str(odd)]) == 1
    assert "unrecognized checkpoint layout" in capsys.readouterr().out


def test_classifier_of_another_label_set_is_refused_at_load(vainf_file, tmp_path) -> None:
    from seg_perception.core.resolution import PipelineError

    sd = torch.load(vainf_file, weights_only=True)["model_state"]
    w, b = sd["classifier.classifier.3.weight"], sd["classifier.classifier.3.bias"]
    sd["classifier.classifier.3.weight"] = torch.cat([w, w[:2]])  # 21 classes, like VainF's VOC files
    sd["classifier.classifier.3.bias"] = torch.cat([b, b[:2]])
    path = tmp_path / "best_deeplabv3plus_mobilenet_voc_os16.pth"
    torch.save(_vainf_container(sd), path)
    assert inspect_weights(path).model_kwargs["num_classes"] == 21
    with pytest.raises(PipelineError, match="21-class classifier but label set 'cityscapes' has 19 classes"):
        build_segmenter("deeplabv3plus_mobilenetv2", weights=str(path), resolution=(65, 97))

"""CLI tests: make-bag and eval-bag through their argparse parsers, eval-bag with a real model."""
import argparse
import json

import cv2
import numpy as np
import pytest
import torch

from seg_perception.cli import eval_bag, make_bag
from seg_perception.bag.read import list_topics, read_images


def parse(module, argv):
    p = argparse.ArgumentParser()
    module.configure_parser(p)
    return p.parse_args([str(a) for a in argv])


def test_make_bag_cli(tmp_path, scene, capsys):
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "imgs" / f"f{i}.png"), scene.image(False)[..., ::-1])
    rc = make_bag.run(parse(make_bag, ["--images", tmp_path / "imgs", "--out", tmp_path / "bag", "--rate", "20",
                                       "--storage", "sqlite3", "--frame-id", "cam0", "--start-time", "100"]))
    assert rc == 0 and "3 frames" in capsys.readouterr().out
    frames = list(read_images(tmp_path / "bag", "/camera/image_raw"))
    assert [f.stamp_ns for f in frames] == [100_000_000_000, 100_050_000_000, 100_100_000_000]
    assert frames[0].msg.header.frame_id == "cam0" and frames[0].msg.encoding == "rgb8"
    np.testing.assert_array_equal(np.asarray(frames[1].msg.data).reshape(scene.H, scene.W, 3), scene.image(False))
    # bad input is reported, not raised
    rc = make_bag.run(parse(make_bag, ["--images", tmp_path / "nothing", "--out", tmp_path / "bag2"]))
    assert rc == 2 and "--images" in capsys.readouterr().out


def test_make_bag_gt_size_mismatch(tmp_path, scene, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "gt").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a_000000_000000_leftImg8bit.png"), scene.image(False))
    cv2.imwrite(str(tmp_path / "gt" / "a_000000_000000_gtFine_labelIds.png"), np.zeros((3, 3), np.uint8))
    rc = make_bag.run(parse(make_bag, ["--images", tmp_path / "imgs", "--gt-dir", tmp_path / "gt", "--out", tmp_path / "b"]))
    out = capsys.readouterr().out
    assert rc == 2 and "3x3" in out and "8x10" in out


@pytest.mark.slow
def test_eval_bag_cli_with_real_model(tmp_path, scene, capsys):
    bag = scene.write_scene_bag(tmp_path / "bag", "mcap", n=3, panoptic=False)
    args = parse(eval_bag, [bag, "--model", "deeplabv3plus_mobilenetv2", "--weights", "none", "--image-topic", "/cam",
                            "--gt-semantic-topic", "/gt/semantic", "--out", tmp_path / "out", "--write-bag",
                            "--resolution", "32x64", "--batch-size", "2", "--miou-convention", "detectron2", "--backend", "torch",
                            "--no-progress", "--no-figures"])
    assert eval_bag.run(args) == 0
    printed = capsys.readouterr().out
    assert "mIoU (detectron2)" in printed and "report.md" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"]["model"] == "deeplabv3plus_mobilenetv2"
    assert report["model"]["resolution"] == [32, 64] and report["model"]["backend"] == "torch"
    assert report["model"]["weights"] is None and report["model"]["weights_sha256"] is None
    assert report["frames"]["evaluated"] == 3 and report["batch_size"] == 2
    assert 0.0 <= report["semantic"]["miou"] <= 1.0
    topics = list_topics(tmp_path / "out" / "predictions.mcap")
    assert topics["/seg/semantic"] == ("sensor_msgs/msg/Image", 3) and "/seg/panoptic" not in topics


def test_eval_bag_cli_errors(tmp_path, scene, capsys):
    bag = scene.write_scene_bag(tmp_path / "bag", n=1)
    args = parse(eval_bag, [bag, "--model", "deeplabv3plus_mobilenetv2", "--weights", "none", "--image-topic", "/nope",
                            "--out", tmp_path / "out", "--resolution", "32x64", "--no-progress"])
    assert eval_bag.run(args) == 2
    assert "/nope" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --gt-panoptic-topic and --gt-dir exclude each other
        parse(eval_bag, [bag, "--model", "m", "--image-topic", "/cam", "--out", "o", "--gt-panoptic-topic", "/p",
                         "--gt-dir", "d"])


@pytest.mark.slow
def test_evaluate_with_real_panoptic_model(tmp_path, scene):
    from seg_perception.eval.evaluate import evaluate_bags
    from seg_perception.core.segmenter import build_segmenter

    bag = scene.write_scene_bag(tmp_path / "bag", "sqlite3", n=2)
    seg = build_segmenter("panoptic_deeplab_mobilenetv2", weights="none", resolution=(32, 64))
    try:
        r = evaluate_bags([bag], segmenter=seg, image_topic="/cam", gt_semantic_topic="/gt/semantic",
                          gt_panoptic_topic="/gt/panoptic", out_dir=tmp_path / "out", write_bag=True, progress=False, figures=False)
    finally:
        seg.close()
    assert r["model"]["task"] == "panoptic" and r["frames"]["evaluated"] == 2
    assert r["panoptic"] is not None and r["panoptic"]["all"]["n"] >= 1
    assert list_topics(tmp_path / "out" / "predictions.mcap")["/seg/panoptic"][1] == 2
    assert (tmp_path / "out" / "panoptic" / "predictions.json").exists()


def test_make_bag_failing_halfway_leaves_nothing_and_reruns(tmp_path, scene, capsys):
    """An unreadable image in the middle: error naming it, no partial bag; after the fix the rerun succeeds."""
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "imgs" / f"f{i}.png"), scene.image(False)[..., ::-1])
    good = (tmp_path / "imgs" / "f1.png").read_bytes()
    (tmp_path / "imgs" / "f1.png").write_bytes(b"not a png")
    argv = ["--images", tmp_path / "imgs", "--out", tmp_path / "bag"]
    assert make_bag.run(parse(make_bag, argv)) == 2
    assert "f1.png" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # no bag, no staging folder
    (tmp_path / "imgs" / "f1.png").write_bytes(good)
    assert make_bag.run(parse(make_bag, argv)) == 0
    assert len(list(read_images(tmp_path / "bag", "/camera/image_raw"))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "imgs"]
    assert make_bag.run(parse(make_bag, argv)) == 2  # an existing bag is never overwritten
    assert "exists already" in capsys.readouterr().out


@pytest.mark.parametrize("out_name", ["bag", "bag.mcap"])
def test_make_bag_names_images_without_gt(tmp_path, scene, capsys, out_name):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(3):
        key = f"a_000000_{i:06d}"
        cv2.imwrite(str(tmp_path / "imgs" / f"{key}_leftImg8bit.png"), scene.image(False)[..., ::-1])
        if i != 1:
            cv2.imwrite(str(tmp_path / "gt" / f"{key}_gtFine_labelIds.png"), np.full((scene.H, scene.W), 7, np.uint8))
    rc = make_bag.run(parse(make_bag, ["--images", tmp_path / "imgs", "--gt-dir", tmp_path / "gt",
                                       "--out", tmp_path / out_name]))
    out = capsys.readouterr().out
    assert rc == 0 and "3 frames, 2 with GT" in out
    assert "no GT file for 1 image(s): a_000000_000001_leftImg8bit.png" in out
    assert list_topics(tmp_path / out_name)["/gt/semantic"][1] == 2


def test_eval_bag_streams_score_what_one_frame_at_a_time_scores(tmp_path, scene, capsys):
    """--streams 2 on onnxruntime: the same scores as --streams 1 (the same network and post-processing,
    frames in order), the streams recorded in the report."""
    bag = scene.write_scene_bag(tmp_path / "bag", "mcap", n=4, panoptic=False)
    reports = {}
    for streams in ("1", "2"):
        out = tmp_path / f"out{streams}"
        args = parse(eval_bag, [bag, "--model", "deeplabv3plus_mobilenetv2", "--weights", "none", "--image-topic", "/cam",
                                "--gt-semantic-topic", "/gt/semantic", "--out", out, "--resolution", "32x64",
                                "--backend", "onnxruntime", "--streams", streams, "--no-progress", "--no-figures"])
        torch.manual_seed(0)  # weights none: the same random network both times
        assert eval_bag.run(args) == 0, capsys.readouterr().out
        reports[streams] = json.loads((out / "report.json").read_text())
    one, two = reports["1"], reports["2"]
    assert one["streams"] == 1 and two["streams"] == 2 and two["frames"]["evaluated"] == 4
    assert two["semantic"] == one["semantic"]
    assert [f["pixel_accuracy"] for f in two["per_frame"]] == [f["pixel_accuracy"] for f in one["per_frame"]]


@pytest.mark.parametrize("extra, needle", [
    (["--streams", "0"], "--streams must be >= 1, got 0"),
    (["--streams", "2", "--batch-size", "2"], "--streams 2 with --batch-size 2: choose one"),
    (["--streams", "2", "--backend", "torch"], "unknown option(s) ['streams'] for backend 'torch'"),
])
def test_eval_bag_streams_errors(tmp_path, scene, capsys, extra, needle):
    bag = scene.write_scene_bag(tmp_path / "bag", n=1)
    args = parse(eval_bag, [bag, "--model", "deeplabv3plus_mobilenetv2", "--weights", "none", "--image-topic", "/cam",
                            "--out", tmp_path / "out", "--resolution", "32x64", "--no-progress", *extra])
    assert eval_bag.run(args) == 2
    assert needle in capsys.readouterr().out

"""``seg-perception eval-bag``: evaluate a model on rosbags and write reports.

Example::

    seg-perception eval-bag recording/ --model deeplabv3plus_mobilenetv2 --image-topic /camera/image_raw \\
        --gt-semantic-topic /gt/semantic --gt-panoptic-topic /gt/panoptic --out eval_out --write-bag
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_backend_argument, add_model_argument, add_native_heads_argument, add_weights_argument

HELP = "evaluate a model on rosbags: mIoU, PQ/SQ/RQ, latency; writes OUT/report.{json,md} and figures"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("bags", nargs="+", type=Path, metavar="BAG", help="rosbag2 directories or .mcap/.db3 files")
    add_model_argument(p)
    add_weights_argument(p)
    p.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    p.add_argument("--gt-semantic-topic", help="GT label image topic (mono8/mono16 train ids)")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-panoptic-topic", help="GT panoptic id topic (32SC1, class*1000+instance)")
    gt.add_argument("--gt-dir", type=Path, help="Cityscapes-style GT folder (*_gtFine_labelIds.png, *_gtFine_instanceIds.png)")
    p.add_argument("--gt-match", choices=["auto", "name", "order"], default="auto",
                   help="how --gt-dir files are matched to frames: name = the image file name recorded on /image_name "
                        "(make-bag records it); order = n-th frame, n-th file (refused unless the counts agree); "
                        "auto (default) = name where the bag records names matching the GT files, else order")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--write-bag", action="store_true", help="also write OUT/predictions.mcap (images + /seg/* topics)")
    p.add_argument("--label-set", default=None, help="label set (default: the model's, e.g. cityscapes)")
    p.add_argument("--resolution", default=None, help="network input HxW, e.g. 512x1024 (default: the one the weights record, else 512x1024)")
    add_backend_argument(p, " within the accuracy guard; the report records the choice")
    add_native_heads_argument(p)
    p.add_argument("--device", default="cpu", help="device, e.g. cpu or cuda:0 (default cpu)")
    p.add_argument("--precision", default="fp32", help="fp32 or fp16 (backend permitting)")
    p.add_argument("--batch-size", type=int, default=1, help="frames per segment_batch call, run as one batched inference (default 1)")
    p.add_argument("--streams", type=int, default=1,
                   help="frames in flight at once on backends onnxruntime / openvino (each on its own session or "
                        "OpenVINO stream; more frames per second on a multi-core CPU; default 1)")
    p.add_argument("--miou-convention", choices=["cityscapes", "detectron2"], default="cityscapes",
                   help="cityscapes: classes in GT or predictions count; detectron2: only classes with GT")
    p.add_argument("--stamp-tolerance-ms", type=float, default=0.0,
                   help="max |GT stamp - image stamp| in ms for GT topics (default 0: exact)")
    p.add_argument("--max-frames", type=int, default=None, help="evaluate at most this many frames")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-figures", action="store_true", help="skip the matplotlib figures")
    p.add_argument("--video-metrics", action="store_true",
                   help="GT panoptic ids are stable track ids (one sequence per bag): also report STQ, VPQ, id switches")
    p.add_argument("--tracking", choices=["off", "on", "both"], default="both",
                   help="video metrics of the per-frame ids (off), the tracked ids (on) or both (default)")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def summary_lines(report: dict) -> list[str]:
    """Short human-readable summary of a report."""
    fr = report["frames"]
    lines = [
        f"frames: read {fr['read']}, segmented {fr['segmented']}, evaluated {fr['evaluated']}, "
        f"unmatched {fr['unmatched']}, skipped {fr['skipped']}"
    ]
    if report.get("semantic"):
        s = report["semantic"]
        lines.append(f"mIoU ({s['miou_convention']}): {_pct(s['miou'])}  pixel acc: {_pct(s['pixel_accuracy'])}")
    if report.get("panoptic"):
        p = report["panoptic"]
        lines.append(
            "PQ/SQ/RQ all: {} / {} / {}  things PQ: {}  stuff PQ: {}".format(
                _pct(p["all"]["pq"]), _pct(p["all"]["sq"]), _pct(p["all"]["rq"]), _pct(p["things"]["pq"]), _pct(p["stuff"]["pq"])
            )
        )
    video = report.get("video") or {}
    for v in ("untracked", "tracked"):
        if v in video:
            m = video[v]
            lines.append(f"video ({v} ids): STQ {_pct(m['stq'])}  VPQ {_pct(m['vpq'])}  id switches {m['id_switches']}")
    lat = report["latency"]["total"]
    if lat["count"]:
        lines.append(f"latency: mean {lat['mean_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms ({lat['fps']:.1f} fps)")
    gt = report.get("gt") or {}
    if gt.get("source") == "folder":
        lines.append(f"GT folder matched by {gt['match']}: {gt['matched_frames']} frames, "
                     f"{gt['unused_gt_files']} of {gt['gt_files']} GT files unused")
    for u in gt.get("unusable", [])[:10]:
        lines.append(f"not evaluated, unusable GT ({u['reason']}): {u['name'] or ''} bag {u['bag']} #{u['index']} "
                     f"stamp {u['stamp_ns']}")
    if gt.get("unusable_frames", 0) > 10:
        lines.append(f"... {gt['unusable_frames'] - 10} more frames with unusable GT; see report.md")
    stops = report["reading"]["stops"]
    if stops:
        lines.append(f"reading stopped early in {len(stops)} place(s); see report.md")
    return lines


def run(args: argparse.Namespace) -> int:
    from seg_perception.bag.read import BagError
    from seg_perception.eval.evaluate import evaluate_bags
    from seg_perception.eval.gt import GroundTruthError
    from seg_perception.models.checkpoint import CheckpointError
    from seg_perception.core.segmenter import build_segmenter
    from seg_perception.runtime.base import BackendError

    if args.batch_size < 1:
        print(f"eval-bag: error: --batch-size must be >= 1, got {args.batch_size}")
        return 2
    if args.streams < 1:
        print(f"eval-bag: error: --streams must be >= 1, got {args.streams}")
        return 2
    if args.streams > 1 and args.batch_size > 1:
        print(f"eval-bag: error: --streams {args.streams} with --batch-size {args.batch_size}: choose one")
        return 2
    if args.stamp_tolerance_ms < 0:
        print(f"eval-bag: error: --stamp-tolerance-ms must be >= 0, got {args.stamp_tolerance_ms}")
        return 2
    try:
        segmenter = build_segmenter(
            args.model, weights=args.weights, resolution=args.resolution, backend=args.backend,
            device=args.device, precision=args.precision, label_set=args.label_set,
            max_batch=args.batch_size,  # one inference per --batch-size frames (segment_batch)
            native_heads=args.native_heads,
            backend_options={"streams": args.streams} if args.streams > 1 else None,
        )
    except (ValueError, KeyError, FileNotFoundError, CheckpointError, BackendError) as exc:
        print(f"eval-bag: error: {exc}")
        return 2
    try:
        report = evaluate_bags(
            args.bags,
            segmenter=segmenter,
            image_topic=args.image_topic,
            gt_semantic_topic=args.gt_semantic_topic,
            gt_panoptic_topic=args.gt_panoptic_topic,
            gt_dir=args.gt_dir,
            out_dir=args.out,
            write_bag=args.write_bag,
            batch_size=args.batch_size,
            stamp_tolerance_ns=int(round(args.stamp_tolerance_ms * 1e6)),
            miou_convention=args.miou_convention,
            progress=not args.no_progress,
            gt_match=args.gt_match,
            max_frames=args.max_frames,
            figures=not args.no_figures,
            video_metrics=args.video_metrics,
            tracking=args.tracking,
        )
    except (BagError, GroundTruthError, ValueError) as exc:
        print(f"eval-bag: error: {exc}")
        return 2
    finally:
        segmenter.close()
    for line in summary_lines(report):
        print(line)
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0

"""Write the evaluation report: report.json, report.md and matplotlib figures.

``report.json`` holds every number; ``report.md`` renders the same numbers as tables. Figures:
``confusion_matrix.png`` (rows normalised by ground truth), ``per_class_iou.png`` and
``latency_hist.png``. Undefined values (NaN) are written as ``null`` in JSON and ``-`` in Markdown.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np


def json_safe(value: Any) -> Any:
    """Recursively convert numpy scalars/arrays, Paths and NaN/inf to JSON-compatible values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _f(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)) and scale == 1.0:
        return str(int(value))
    return f"{float(value) * scale:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict) -> str:
    """Markdown rendering of a report dict (as written to report.json)."""
    m = report.get("model", {})
    fr = report.get("frames", {})
    out = ["# Segmentation evaluation", ""]
    out += _table(
        ["item", "value"],
        [
            ["model", m.get("model")],
            ["task", m.get("task")],
            ["weights", m.get("weights")],
            ["weights sha256", m.get("weights_sha256")],
            ["backend / device", f"{m.get('backend')} / {m.get('device')}"],
            ["network resolution (HxW)", "x".join(str(v) for v in (m.get("resolution") or []))],
            ["label set", m.get("label_set")],
            ["mIoU convention", report.get("miou_convention")],
            ["bags", ", ".join(report.get("bags", []))],
            ["image topic", report.get("image_topic")],
        ],
    )
    out += ["", "## Frames", ""]
    out += _table(["read", "segmented", "evaluated (GT matched)", "unmatched", "skipped messages"],
                  [[fr.get("read"), fr.get("segmented"), fr.get("evaluated"), fr.get("unmatched"), fr.get("skipped")]])
    gt = report.get("gt") or {}
    if gt:
        out += ["", f"GT source: {gt.get('source')}; max |dt| = {_f(gt.get('max_abs_dt_ns', 0), 1e-6, 3)} ms"]

    sem = report.get("semantic")
    if sem:
        out += ["", "## Semantic segmentation", ""]
        out += _table(
            ["mIoU", "pixel acc", "mean class acc", "fwIoU", "classes averaged"],
            [[_f(sem["miou"], 100), _f(sem["pixel_accuracy"], 100), _f(sem["mean_class_accuracy"], 100),
              _f(sem["fw_iou"], 100), sem["evaluated_classes"]]],
        )
        out += ["", f"mIoU convention: **{sem['miou_convention']}** "
                + ("(classes in GT or predictions; a class only predicted scores 0)" if sem["miou_convention"] == "cityscapes"
                   else "(only classes with GT pixels)"), ""]
        out += _table(
            ["id", "class", "IoU %", "acc %", "GT px", "pred px", "in mean"],
            [[c["class_id"], c["name"], _f(c["iou"], 100), _f(c["accuracy"], 100), c["gt_pixels"], c["pred_pixels"],
              "yes" if c["in_mean"] else "no"] for c in sem["per_class"]],
        )
    pq = report.get("panoptic")
    if pq:
        out += ["", "## Panoptic quality", ""]
        out += _table(
            ["subset", "PQ %", "SQ %", "RQ %", "TP", "FP", "FN", "classes"],
            [[k, _f(pq[k]["pq"], 100), _f(pq[k]["sq"], 100), _f(pq[k]["rq"], 100), pq[k]["tp"], pq[k]["fp"], pq[k]["fn"], pq[k]["n"]]
             for k in ("all", "things", "stuff")],
        )
        out += [""]
        out += _table(
            ["id", "class", "thing", "PQ %", "SQ %", "RQ %", "TP", "FP", "FN"],
            [[c["class_id"], c["name"], "yes" if c["is_thing"] else "no", _f(c["pq"], 100), _f(c["sq"], 100),
              _f(c["rq"], 100), c["tp"], c["fp"], c["fn"]] for c in pq["per_class"]],
        )
    video = report.get("video")
    if video:
        out += ["", "## Video panoptic quality", "", f"{video['frames']} frames in {video['sequences']} sequence(s). "
                + video["definitions"] + ".", ""]
        out += _table(["ids", "STQ %", "AQ %", "SQ %", "VPQ %", "VPQ things %", "VPQ stuff %", "id switches"],
                      [[v, _f(video[v]["stq"], 100), _f(video[v]["aq"], 100), _f(video[v]["sq"], 100),
                        _f(video[v]["vpq"], 100), _f(video[v]["vpq_things"], 100), _f(video[v]["vpq_stuff"], 100),
                        video[v]["id_switches"]] for v in ("untracked", "tracked") if v in video])
    lat = report.get("latency", {})
    if lat:
        out += ["", "## Latency (per frame, ms)", ""]
        streams, batch = int(report.get("streams") or 1), int(report.get("batch_size") or 1)
        if streams > 1 or batch > 1:
            how = f"{streams} frames in flight" if streams > 1 else f"batches of {batch} frames"
            out += [f"Run with {how}: `total` is the wall time per frame (its fps the run's throughput); the "
                    "stage rows are each frame's own times, which overlap.", ""]
        rows = []
        for stage, s in lat.items():
            if isinstance(s, dict) and "mean_ms" in s:
                rows.append([stage, s["count"], _f(s["mean_ms"]), _f(s["median_ms"]), _f(s["p90_ms"]), _f(s["p99_ms"]),
                             _f(s["max_ms"]), _f(s["fps"], 1.0, 1)])
        out += _table(["stage", "frames", "mean", "median", "p90", "p99", "max", "fps"], rows)
    reading = report.get("reading", {})
    if reading.get("skipped") or reading.get("stops") or reading.get("damaged"):
        out += ["", "## Reading problems", ""]
        if reading.get("skipped_by_reason"):
            out += _table(["reason", "messages"], sorted(reading["skipped_by_reason"].items()))
            out += [""]
            out += _table(["bag", "topic", "index", "stamp ns", "reason", "detail"],
                          [[s["bag"], s["topic"], s["index"], s["stamp_ns"], s["reason"], s["detail"][:120]]
                           for s in reading["skipped"][:50]])
        if reading.get("stops"):
            out += ["", "Where reading stopped:", ""]
            out += _table(["bag", "storage", "message index", "recovered", "error"],
                          [[s["bag"], s["storage"], s["index"], s["recovered"], s["error"][:160]] for s in reading["stops"]])
        if reading.get("damaged"):
            # every span, not a sample: each one is data the evaluation did not see
            out += ["", "Damaged byte spans skipped (the frames in them are not evaluated):", ""]
            out += _table(["storage", "start byte", "end byte", "reason", "detail"],
                          [[d["storage"], d["start"], d["end"], d["reason"], d["detail"][:160]]
                           for d in reading["damaged"]])
    for note in reading.get("notes", []):
        out += [f"- {note}"]
    return "\n".join(out) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, names: Sequence[str], path: Union[str, Path]) -> None:
    """Row-normalised (by ground truth) confusion matrix heat map."""
    plt = _plt()
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(names)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * k + 2), max(4, 0.45 * k + 1.5)))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(k), labels=names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), labels=names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_class_iou(per_class: Sequence[dict], path: Union[str, Path], miou: Optional[float]) -> None:
    """Bar chart of per-class IoU (classes with undefined IoU are left empty)."""
    plt = _plt()
    names = [c["name"] for c in per_class]
    vals = [c["iou"] * 100 if c["iou"] is not None else 0.0 for c in per_class]
    fig, ax = plt.subplots(figsize=(max(5, 0.4 * len(names) + 2), 4))
    ax.bar(range(len(names)), vals, color="tab:blue")
    if miou is not None:
        ax.axhline(miou * 100, color="tab:red", linestyle="--", label=f"mIoU {miou * 100:.1f}")
        ax.legend()
    ax.set_xticks(range(len(names)), labels=names, rotation=90, fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("IoU %")
    ax.set_title("per-class IoU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(latencies_ms: Sequence[float], path: Union[str, Path]) -> None:
    """Histogram of per-frame latency."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    a = np.asarray(latencies_ms, dtype=np.float64)
    if a.size:
        ax.hist(a, bins=min(50, max(5, a.size // 2)), color="tab:green")
        ax.axvline(float(np.median(a)), color="k", linestyle="--", label=f"median {np.median(a):.1f} ms")
        ax.legend()
    ax.set_xlabel("latency per frame (ms)")
    ax.set_ylabel("frames")
    ax.set_title("segmentation latency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    out_dir: Union[str, Path],
    report: dict,
    *,
    confusion: Optional[np.ndarray] = None,
    class_names: Sequence[str] = (),
    latencies_ms: Sequence[float] = (),
    figures: bool = True,
) -> dict:
    """Write report.json, report.md and the figures into ``out_dir``; returns the JSON-safe report.

    Args:
        out_dir: output folder (created).
        report: report dict (see :func:`seg_perception.eval.evaluate.evaluate_bags`).
        confusion: (K, K) confusion counts for confusion_matrix.png (skipped when None).
        class_names: K names for the figures.
        latencies_ms: per-frame latencies for latency_hist.png.
        figures: False skips the matplotlib figures (faster).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": "report.json", "markdown": "report.md"}
    sem = report.get("semantic")
    if figures and confusion is not None and sem is not None:
        plot_confusion(confusion, class_names, out / "confusion_matrix.png")
        plot_per_class_iou(sem["per_class"], out / "per_class_iou.png", sem.get("miou"))
        files.update(confusion_matrix="confusion_matrix.png", per_class_iou="per_class_iou.png")
    if figures:
        plot_latency(latencies_ms, out / "latency_hist.png")
        files["latency_hist"] = "latency_hist.png"
    safe = json_safe({**report, "files": {**report.get("files", {}), **files}})
    (out / "report.json").write_text(json.dumps(safe, indent=2, allow_nan=False))
    (out / "report.md").write_text(render_markdown(safe))
    return safe

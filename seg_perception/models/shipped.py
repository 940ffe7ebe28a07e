"""What each shipped checkpoint is: file, input transforms, label set, metrics and recipe.

One description per shipped weights file, beside the model registry (as torchvision keeps a
weights description beside each builder). :mod:`seg_perception.core.weights` finds the files
through it, ``seg-perception models`` prints it and README's model table is generated from it
(``markdown_table``); a test checks every number against the checkpoint's own ``meta.held_out``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

#: Input transform every shipped model was trained with (and the Segmenter applies).
TRANSFORMS = ("RGB uint8 -> bilinear resize to the network resolution (cv2.INTER_LINEAR) -> "
              "x/255, ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225)")
#: What "held-out" means in :attr:`WeightsInfo.metrics`.
HELD_OUT = ("32 fresh synthetic street scenes at 256x512 (seeds from 5,000,000), mIoU with the "
            "Cityscapes averaging convention; panoptic post-processing as stored in the checkpoint")

README_BEGIN = "<!-- models: generated from seg_perception.models.shipped.SHIPPED -->"
README_END = "<!-- end of models -->"


@dataclass(frozen=True)
class WeightsInfo:
    """A shipped checkpoint.

    Attributes:
        model: registered model name the file builds.
        file: file name under ``seg_perception/weights/``.
        label_set: label space of the output channels.
        resolution: network input (H, W) it was trained at and runs at by default.
        metrics: held-out scores (see :data:`HELD_OUT`), keys as in the checkpoint's
            ``meta["held_out"]`` (``miou``; panoptic also ``pq``, ``pq_things``, ``pq_stuff``).
        recipe: where the training commands are written down.
        role: what the package uses it for by default.
    """

    model: str
    file: str
    label_set: str
    resolution: tuple[int, int]
    metrics: Mapping[str, float] = field(default_factory=dict)
    recipe: str = "docs/TRAINING.md"
    role: str = ""

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


SHIPPED: dict[str, WeightsInfo] = {
    info.model: info for info in (
        WeightsInfo(
            "deeplabv3plus_mobilenetv2", "deeplabv3plus_mobilenetv2_synthetic.pt", "cityscapes", (256, 512),
            {"miou": 0.8526},
            recipe="docs/TRAINING.md#semantic-model", role="default of the node and the launch file"),
        WeightsInfo(
            "panoptic_deeplab_mobilenetv2", "panoptic_deeplab_mobilenetv2_synthetic.pt", "cityscapes", (256, 512),
            {"miou": 0.8647, "pq": 0.7047, "pq_things": 0.4746, "pq_stuff": 0.8198},
            recipe="docs/TRAINING.md#panoptic-model", role="default of `make demo`"),
    )
}


def markdown_table() -> str:
    """README's table of shipped models (between :data:`README_BEGIN` and :data:`README_END`)."""
    rows = ["| model | shipped weights | network | held-out mIoU | held-out PQ (things / stuff) | recipe |",
            "|---|---|---|---|---|---|"]
    for info in SHIPPED.values():
        m = info.metrics
        pq = f"{m['pq']:.3f} ({m['pq_things']:.3f} / {m['pq_stuff']:.3f})" if "pq" in m else "-"
        size = f", {info.path.stat().st_size / 2**20:.1f} MB" if info.path.is_file() else ""
        role = f" ({info.role})" if info.role else ""
        rows.append(f"| `{info.model}`{role} | `weights/{info.file}`{size} | {info.resolution[0]}x{info.resolution[1]} "
                    f"| {m['miou']:.3f} | {pq} | [{info.recipe.split('#')[-1]}]({info.recipe}) |")
    return "\n".join([README_BEGIN, *rows, README_END])

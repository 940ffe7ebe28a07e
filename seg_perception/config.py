"""Names and defaults shared by the node's parameters, the launch file and the CLI.

No torch, no OpenCV: the launch file, ``--help`` and the parameter table import this module, and
they must stay light. Everything heavier (models, backends) lives below ``core``/``runtime``.
"""
from __future__ import annotations

from typing import Any

#: Inference runtimes (``auto``: TensorRT on a CUDA GPU, else the fastest measured CPU path).
BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
#: The backend of the node, the launch file and every CLI command that runs a model, unless one is named.
DEFAULT_BACKEND = "auto"
#: Backends that run the heads at their own stride (node parameter / backend option ``native_heads``):
#: every one -- torch calls the model's ``forward_native``, onnxruntime / OpenVINO / TensorRT run that
#: form exported, ``auto`` then measures only its ``+native`` paths. Only the model can refuse it
#: (no ``forward_native``, e.g. HRNetV2), when the backend is built.
NATIVE_HEADS_BACKENDS = BACKENDS
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: How the node subscribes: ``image`` (raw) or ``image/compressed`` (image_transport convention).
TRANSPORTS = ("raw", "compressed")
#: Subscription reliability; ``auto`` matches the publishers found on the input topic.
RELIABILITY = ("auto", "best_effort", "reliable")
#: The model the node, the launch file and every CLI command use when none is named.
DEFAULT_MODEL = "deeplabv3plus_mobilenetv2"
#: Network input (H, W) when neither the caller nor the checkpoint says.
DEFAULT_RESOLUTION = (512, 1024)


class ConfigError(ValueError):
    """A configuration value is malformed; the message names it and the accepted form."""


def parse_resolution(value: Any) -> tuple[int, int]:
    """Parse ``"512x1024"`` / ``(512, 1024)`` / ``[512, 1024]`` into ``(H, W)``.

    Raises:
        ConfigError: anything else, or sides outside 8..8192.
    """
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        try:
            hw = tuple(int(p) for p in parts)
        except ValueError:
            hw = ()
    elif isinstance(value, (tuple, list)):
        try:
            hw = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            hw = ()
    else:
        hw = ()
    if len(hw) != 2 or not all(8 <= v <= 8192 for v in hw):
        raise ConfigError(
            f"resolution {value!r} is not valid: write it as 'HxW' (height x width), "
            "each between 8 and 8192, e.g. '512x1024'"
        )
    return hw  # type: ignore[return-value]

"""The node's parameters: one table with types, defaults, descriptions and validation.

ROS-free: :func:`validate` and :class:`NodeConfig` are plain Python so the launch logic, the CLI and
the tests use the same rules as the node. ``seg_perception.ros.node`` turns :data:`PARAMETERS`
into declared ROS parameters with descriptors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..config import (BACKENDS, DEFAULT_BACKEND, DEFAULT_MODEL, PRECISIONS, RELIABILITY,
                      TRANSPORTS, ConfigError, parse_resolution)
from ..datasets.labels import list_label_sets

#: Parameters whose change on a running node rebuilds the Segmenter (refused if the rebuild fails).
RELOAD_KEYS = frozenset({"model", "weights", "label_set", "num_classes", "resolution", "backend", "device",
                         "precision", "native_heads", "center_threshold", "nms_kernel", "top_k", "stuff_area",
                         "class_split_area", "class_aware_grouping"})
#: Parameters that only take effect at start-up (topics and QoS are wired once).
STARTUP_ONLY_KEYS = frozenset({"input_transport", "qos_reliability", "qos_depth", "autostart", "depth_topic",
                               "depth_info_topic", "stamp_tolerance_ms", "match_buffer", "cameras", "max_batch"})
CLOUD_COLORS = ("class", "instance", "image")
#: Largest weights file the node opens (the biggest public checkpoint it converts is ~250 MB); a
#: bigger file is refused before it is read or hashed.
MAX_WEIGHTS_BYTES = 1 << 30
#: First bytes of the containers a weights file can be: torch.save zip, pickle protocol 2-5
#: (Detectron2 .pkl, legacy torch.save), pickle protocol 0/1 (opening MARK / dict / list).
_WEIGHTS_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"(", b"}", b"]")


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter and the allowed values."""


def _models() -> list[str]:
    from ..models import list_models

    return list_models()


def _choice(name: str, choices: Callable[[], tuple | list] | tuple) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        allowed = choices() if callable(choices) else choices
        if v not in allowed:
            raise ParameterError(f"parameter '{name}' = {v!r} is not allowed; choose one of: {', '.join(allowed)}")
        return v

    return check


def _range(name: str, lo: float, hi: float, kind: type) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            raise ParameterError(f"parameter '{name}' = {v!r} must be a{'n integer' if kind is int else ' number'}")
        if not lo <= v <= hi:
            raise ParameterError(f"parameter '{name}' = {v!r} is out of range; allowed: [{lo}, {hi}]")
        return kind(v)

    return check


def _device(v: Any) -> str:
    s = str(v).strip().lower()
    if s == "cpu" or s == "cuda" or (s.startswith("cuda:") and s[5:].isdigit()):
        return s
    raise ParameterError(f"parameter 'device' = {v!r} is not allowed; use 'cpu', 'cuda' or 'cuda:N'")


def _resolution(v: Any) -> str:
    if v in ("", "auto"):
        return ""
    try:
        h, w = parse_resolution(v)
    except ConfigError as e:
        raise ParameterError(f"parameter 'resolution': {e}") from None
    return f"{h}x{w}"


def _bool(name: str) -> Callable[[Any], Any]:
    def check(v: Any) -> bool:
        if not isinstance(v, bool):
            raise ParameterError(f"parameter '{name}' = {v!r} must be true or false")
        return v

    return check


def _odd_kernel(v: Any) -> int:
    v = _range("nms_kernel", 1, 51, int)(v)
    if v % 2 == 0:
        raise ParameterError(f"parameter 'nms_kernel' = {v} must be odd (e.g. 7)")
    return v


def _or_auto(auto: int | float, check: Callable[[Any], Any], name: str) -> Callable[[Any], Any]:
    """``check``, but the sentinel ``auto`` (the weights' tuned value) passes through unchanged."""
    def wrapped(v: Any) -> Any:
        if not isinstance(v, bool) and isinstance(v, (int, float)) and v == auto:
            return type(auto)(v)
        try:
            return check(v)
        except ParameterError as e:
            raise ParameterError(f"{e} (or {auto} = the value tuned for the weights)") from None

    wrapped.__name__ = f"{name}_or_auto"
    return wrapped


#: Sentinel of each panoptic post-processing parameter meaning "the value tuned for the weights"
#: (checkpoint ``meta.panoptic_postprocess``), else the Panoptic-DeepLab paper default.
PANOPTIC_AUTO: dict[str, int | float] = {"center_threshold": -1.0, "nms_kernel": 0, "top_k": 0, "stuff_area": -1,
                                         "class_split_area": -1, "class_aware_grouping": -1}
#: Node parameters whose PanopticConfig field has another type (ROS integer 0/1 -> bool).
_PANOPTIC_FIELD_TYPE: dict[str, type] = {"class_aware_grouping": bool}


def _weights(v: Any) -> str:
    if not isinstance(v, str):
        raise ParameterError(f"parameter 'weights' = {v!r} must be a string: 'default', 'none' or a file path")
    s = v.strip()
    if s.lower() in ("default", "none"):
        return s.lower()
    if not s:
        raise ParameterError("parameter 'weights' = '' is not allowed; use 'default' (the shipped weights), "
                             "'none' (random init) or a checkpoint path")
    return s


def precheck_weights(value: str, max_bytes: int = MAX_WEIGHTS_BYTES) -> None:
    """Cheap checks of a ``weights`` value before anything reads or hashes the file (O(1) I/O).

    ``default`` / ``none`` pass; a path must name an existing regular file of 1..``max_bytes``
    bytes that starts like a torch.save zip or a pickle.

    Raises:
        ParameterError: naming the path, what is wrong and the fix.
    """
    import os
    import stat

    if value in ("default", "none"):
        return
    path = os.path.expanduser(value)
    try:
        st = os.stat(path)
    except OSError as e:
        raise ParameterError(f"parameter 'weights': file {value!r} does not exist or cannot be read "
                             f"({e.strerror}); pass an existing checkpoint path, 'default' or 'none'") from None
    if not stat.S_ISREG(st.st_mode):
        raise ParameterError(f"parameter 'weights': {value!r} is not a regular file; pass a checkpoint file")
    if st.st_size == 0 or st.st_size > max_bytes:
        raise ParameterError(f"parameter 'weights': {value!r} has {st.st_size} bytes; a checkpoint has 1.."
                             f"{max_bytes} bytes (is it the right file?)")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ParameterError(f"parameter 'weights': cannot read {value!r}: {e.strerror}") from None
    if not head.startswith(_WEIGHTS_MAGIC):
        raise ParameterError(f"parameter 'weights': {value!r} is neither a torch.save file nor a pickle "
                             f"(starts with {head!r}); pass a .pt/.pth/.pkl checkpoint")


def _class_list(v: Any) -> str:
    """``cloud.classes``: '' (all) or comma-separated train ids, normalized to '11,13'."""
    if not isinstance(v, str):
        raise ParameterError(f"parameter 'cloud.classes' = {v!r} must be a string of comma-separated class ids "
                             "(e.g. '11,13'; '' = all classes)")
    parts = [t.strip() for t in v.split(",") if t.strip()]
    try:
        ids = sorted({int(t) for t in parts})
    except ValueError:
        raise ParameterError(f"parameter 'cloud.classes' = {v!r}: each entry must be an integer train id "
                             "(e.g. '11,13'; '' = all classes)") from None
    if any(not 0 <= i <= 65535 for i in ids):
        raise ParameterError(f"parameter 'cloud.classes' = {v!r}: class ids must be in [0, 65535]")
    return ",".join(str(i) for i in ids)


#: Largest number of cameras one node serves (each adds a subscription, publishers and a batch slot).
MAX_CAMERAS = 16


def _cameras(v: Any) -> list[str]:
    """``cameras``: [] (one camera on ``image``) or distinct names, each one ROS name token
    (letters, digits, underscores, not starting with a digit), used as ``<name>/image`` and
    ``~/<name>/semantic``."""
    fix = "e.g. -p cameras:=\"[front, left]\" (names: letters, digits, _; not starting with a digit)"
    if v is None:
        return []
    if isinstance(v, str) or not isinstance(v, (list, tuple)):
        raise ParameterError(f"parameter 'cameras' = {v!r} must be a list of camera names; {fix}")
    names = []
    for name in v:
        if not isinstance(name, str) or not name or not (name[0].isalpha() or name[0] == "_") or \
                not all(c.isascii() and (c.isalnum() or c == "_") for c in name):
            raise ParameterError(f"parameter 'cameras': {name!r} is not a valid camera name (it becomes the topic "
                                 f"namespace <name>/image); {fix}")
        if name in names:
            raise ParameterError(f"parameter 'cameras' = {list(v)!r} names {name!r} twice; each camera needs its own "
                                 "name (its topics would collide)")
        names.append(name)
    if len(names) > MAX_CAMERAS:
        raise ParameterError(f"parameter 'cameras' has {len(names)} names; at most {MAX_CAMERAS} per node "
                             "(run another node for the rest)")
    return names


def parse_class_list(v: str) -> Optional[frozenset[int]]:
    """Normalized ``cloud.classes`` -> class ids (None = all)."""
    return frozenset(int(t) for t in v.split(",")) if v else None


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter."""

    name: str
    default: Any
    description: str
    check: Callable[[Any], Any]
    choices: Optional[Callable[[], list] | tuple] = None
    read_only: bool = False


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", DEFAULT_MODEL, "Registered network name (see `seg-perception models`).", _choice("model", _models), _models),
    ParamSpec("weights", "default", "Checkpoint path; 'default' = the shipped weights of `model`; 'none' = random init (warning).", _weights),
    ParamSpec("label_set", "", "Label space ('' = from the checkpoint, else cityscapes).", lambda v: v if v == "" else _choice("label_set", list_label_sets)(v), list_label_sets),
    ParamSpec("num_classes", 0, "Expected number of output classes (0 = from label set/checkpoint); checked at load.", _range("num_classes", 0, 65535, int)),
    ParamSpec("resolution", "", "Network input 'HxW' (camera images are resized to it); '' = checkpoint default.", _resolution),
    ParamSpec("device", "cpu", "Inference device: cpu, cuda, cuda:N.", _device),
    ParamSpec("backend", DEFAULT_BACKEND, "Inference runtime; auto = TensorRT on a GPU, else the fastest measured CPU path.", _choice("backend", BACKENDS), BACKENDS),
    ParamSpec("precision", "fp32", "Numeric precision (fp16/int8 need CUDA/TensorRT).", _choice("precision", PRECISIONS), PRECISIONS),
    ParamSpec("native_heads", False, "Run the heads at their own stride (1/4; 1/2 for the shipped panoptic "
              "model) so post-processing upsamples once, straight to the camera size: faster, labels not "
              "bit-identical to the default path (docs/BACKENDS.md). Every backend (auto: then only its +native "
              "paths); DeepLabV3+ and Panoptic-DeepLab models.", _bool("native_heads")),
    ParamSpec("overlay_alpha", 0.5, "Mask opacity in ~/overlay, 0..1.", _range("overlay_alpha", 0.0, 1.0, float)),
    ParamSpec("input_transport", "raw", "Subscribe 'image' (raw) or 'image/compressed'. Start-up only.", _choice("input_transport", TRANSPORTS), TRANSPORTS, True),
    ParamSpec("qos_reliability", "auto", "Subscription reliability: auto = match the publishers on the input topic "
              "(best effort if any publisher is, re-checked when publishers change), best_effort, reliable. Start-up only.",
              _choice("qos_reliability", RELIABILITY), RELIABILITY, True),
    ParamSpec("qos_depth", 5, "Subscription history depth (>= 5 so no frame is replaced before the callback sees it; "
              "the node still processes only the newest valid frame). Start-up only.",
              _range("qos_depth", 1, 100, int), None, True),
    ParamSpec("autostart", True, "Configure and activate at start (false = wait for lifecycle transitions). Start-up only.",
              _bool("autostart"), None, True),
    ParamSpec("input_timeout", 5.0, "Seconds without a frame after which the node warns once (no publisher, QoS "
              "mismatch or DDS large-sample limit) and says so in /diagnostics; 0 = never.",
              _range("input_timeout", 0.0, 3600.0, float)),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", _range("diagnostics_period", 0.05, 60.0, float)),
    ParamSpec("center_threshold", -1.0, "Panoptic: center heatmap threshold in [0, 1]; -1 = tuned for the weights, else 0.1.",
              _or_auto(-1.0, _range("center_threshold", 0.0, 1.0, float), "center_threshold")),
    ParamSpec("nms_kernel", 0, "Panoptic: center NMS max-pool kernel (odd); 0 = tuned for the weights, else 7.",
              _or_auto(0, _odd_kernel, "nms_kernel")),
    ParamSpec("top_k", 0, "Panoptic: max number of instance centers; 0 = tuned for the weights, else 200.",
              _or_auto(0, _range("top_k", 1, 10000, int), "top_k")),
    ParamSpec("stuff_area", -1, "Panoptic: stuff segments smaller than this (px at 1024x2048, scaled) become void; "
              "-1 = tuned for the weights, else 2048.", _or_auto(-1, _range("stuff_area", 0, 10_000_000, int), "stuff_area")),
    ParamSpec("class_split_area", -1, "Panoptic: a part of an instance labelled with another thing class (e.g. a truck "
              "whose center merged with a car's) becomes its own segment from this many px (at 1024x2048, scaled); 0 = off (every pixel "
              "takes the instance's majority class); -1 = tuned for the weights, else 0.",
              _or_auto(-1, _range("class_split_area", 0, 10_000_000, int), "class_split_area")),
    ParamSpec("class_aware_grouping", -1, "Panoptic: 1 = a thing pixel joins the nearest center of its own class where "
              "there is one (a rider's legs stay with the rider, not the bicycle's center); 0 = off (nearest center, "
              "the paper); -1 = tuned for the weights, else 0.",
              _or_auto(-1, _range("class_aware_grouping", 0, 1, int), "class_aware_grouping")),
    ParamSpec("tracking.enabled", False, "Persistent instance ids (panoptic models): ~/panoptic, ~/instances and "
              "~/points carry track ids; the per-frame ids go to ~/panoptic_frame.", _bool("tracking.enabled")),
    ParamSpec("tracking.max_missed", 5, "Frames a track survives unmatched.", _range("tracking.max_missed", 0, 1000, int)),
    ParamSpec("tracking.min_iou", 0.1, "Smallest IoU of a segment with a track's motion-predicted mask to match.",
              _range("tracking.min_iou", 0.0, 1.0, float)),
    ParamSpec("tracking.max_center_distance", 1.0, "Centroid gate in units of sqrt(track area) (matches without "
              "overlap); 0 = off.", _range("tracking.max_center_distance", 0.0, 100.0, float)),
    ParamSpec("tracking.motion_weight", 0.5, "Weight of the centroid distance in the matching cost.",
              _range("tracking.motion_weight", 0.0, 100.0, float)),
    ParamSpec("depth_topic", "", "Registered depth image (16UC1 mm or 32FC1 m, aligned to the color camera); "
              "'' = no depth, no ~/points. Start-up only.", lambda v: str(v).strip(), None, True),
    ParamSpec("depth_info_topic", "", "camera_info of the depth image; '' = beside depth_topic (<dir>/camera_info). "
              "Without it the color camera_info is used (registered depth). Start-up only.",
              lambda v: str(v).strip(), None, True),
    ParamSpec("stamp_tolerance_ms", 20.0, "Largest color/depth stamp difference paired. Start-up only.",
              _range("stamp_tolerance_ms", 0.0, 1000.0, float), None, True),
    ParamSpec("match_buffer", 10, "Messages buffered per stream for stamp matching. Start-up only.",
              _range("match_buffer", 1, 100, int), None, True),
    ParamSpec("cloud.stride", 1, "~/points: keep every n-th depth pixel in x and y.", _range("cloud.stride", 1, 64, int)),
    ParamSpec("cloud.min_range", 0.0, "~/points: nearest kept depth (m).", _range("cloud.min_range", 0.0, 1000.0, float)),
    ParamSpec("cloud.max_range", 0.0, "~/points: farthest kept depth (m); 0 = no limit.",
              _range("cloud.max_range", 0.0, 1000.0, float)),
    ParamSpec("cloud.classes", "", "~/points: comma-separated train ids to keep ('' = all).", _class_list),
    ParamSpec("cloud.organized", False, "~/points: organized (image grid, NaN where dropped) instead of dense.",
              _bool("cloud.organized")),
    ParamSpec("cloud.color_by", "class", "~/points rgb: class color, instance color or the camera image.",
              _choice("cloud.color_by", CLOUD_COLORS), CLOUD_COLORS),
    ParamSpec("cameras", [], "Several cameras served by one model with batched inference, e.g. [front, left]: "
              "subscribes <name>/image (+ <name>/camera_info) per camera, publishes ~/<name>/semantic, "
              "~/<name>/camera_info, ...; [] = one camera on 'image'. Not with depth_topic or tracking. "
              "Start-up only (see docs/MULTI_CAMERA.md).", _cameras, None, True),
    ParamSpec("max_batch", 8, "With cameras: most frames in one inference (the newest frame of up to this many "
              "cameras, served round-robin). Start-up only.", _range("max_batch", 1, 64, int), None, True),
)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}
#: Parameters declared as doubles: an integer from YAML or the command line (``overlay_alpha:=1``) is
#: taken as the same number.
FLOAT_KEYS = frozenset(p.name for p in PARAMETERS if isinstance(p.default, float))


def closest_parameter(name: str) -> Optional[str]:
    """The declared parameter ``name`` was most likely meant to be (difflib), or None."""
    import difflib

    got = difflib.get_close_matches(name, list(SPECS), n=1, cutoff=0.6)
    return got[0] if got else None


def validate(name: str, value: Any) -> Any:
    """Validate and normalize one parameter value.

    Raises:
        ParameterError: unknown parameter or invalid value (message lists what is allowed).
    """
    if name not in SPECS:
        raise ParameterError(f"unknown parameter {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name].check(value)


def check_native_heads(native_heads: Any, model: Any) -> None:
    """Refuse ``native_heads`` true with a model that has no native-stride head form (HRNetV2).

    Every backend runs the form (torch calls ``forward_native``, the others export it); whether a
    model has it is in its registry entry, so this refuses before anything is built. A model whose
    form is undefined only for some weights (corner-aligned Panoptic-DeepLab) is refused when the
    backend is built.

    Raises:
        ParameterError: naming both parameters, the models that have the form and the fix.
    """
    if native_heads is not True:
        return
    from ..models import list_models, model_info

    if not model_info(model).native_heads:
        able = [m for m in list_models() if model_info(m).native_heads]
        raise ParameterError(
            f"parameter 'native_heads' = true is not supported with 'model' = {model!r}: it has no native-stride "
            f"head form (forward_native; models with one: {', '.join(able)}); leave native_heads off or choose "
            "one of those models")


@dataclass(frozen=True)
class NodeConfig:
    """Validated node configuration (what the node and the CLI run with)."""

    values: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, overrides: dict | None = None) -> "NodeConfig":
        vals = {p.name: p.default for p in PARAMETERS}
        for k, v in (overrides or {}).items():
            vals[k] = v
        out = cls({k: validate(k, v) for k, v in vals.items()})
        if out["cameras"]:
            for key, off in (("depth_topic", ""), ("tracking.enabled", False)):
                if out[key] != off:
                    raise ParameterError(
                        f"parameter '{key}' = {out[key]!r} is not supported with 'cameras' = {out['cameras']!r}: "
                        "depth clouds and tracking work on one camera per node; run one node per camera for "
                        f"them (or leave '{key}' at {off!r})")
        check_native_heads(out["native_heads"], out["model"])
        lo, hi = out["cloud.min_range"], out["cloud.max_range"]
        if hi and lo >= hi:
            raise ParameterError(f"parameters 'cloud.min_range' = {lo} and 'cloud.max_range' = {hi}: the kept depth "
                                 "interval is empty; use min_range < max_range (max_range 0 = no limit)")
        return out

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def replace(self, **changes: Any) -> "NodeConfig":
        merged = dict(self.values)
        merged.update(changes)
        return NodeConfig.from_dict(merged)

    def panoptic_overrides(self) -> dict[str, Any]:
        """The panoptic post-processing values set explicitly (not ``auto``), as PanopticConfig fields.

        The Segmenter applies them on top of the values tuned for the weights
        (:func:`seg_perception.core.weights.panoptic_config_for`).
        """
        return {k: _PANOPTIC_FIELD_TYPE.get(k, type(self[k]))(self[k])
                for k, auto in PANOPTIC_AUTO.items() if self[k] != auto}

    def segmenter_kwargs(self) -> dict:
        """Keyword arguments for :func:`seg_perception.core.segmenter.build_segmenter`."""
        return {
            "model": self["model"],
            "weights": self["weights"],
            "resolution": self["resolution"] or None,
            "backend": self["backend"],
            "device": self["device"],
            "precision": self["precision"],
            "native_heads": self["native_heads"],
            "label_set": self["label_set"] or None,
            "panoptic": self.panoptic_overrides(),
            "max_batch": self.batch_size(),
        }

    def batch_size(self) -> int:
        """Frames per inference the Segmenter is built for: min(max_batch, cameras); 1 for one camera."""
        return max(1, min(self["max_batch"], len(self["cameras"])))


README_BEGIN = "<!-- parameters: generated from seg_perception.ros.params.PARAMETERS -->"
README_END = "<!-- end of parameters -->"


def markdown_table() -> str:
    """The parameter table of README.md (between :data:`README_BEGIN` and :data:`README_END`)."""
    rows = ["| parameter | default | description |", "|---|---|---|"]
    for p in PARAMETERS:
        default = str(p.default).lower() if isinstance(p.default, bool) else repr(p.default)  # a list: []
        rows.append(f"| `{p.name}` | `{default}` | {p.description.replace('|', '/')} |")
    return "\n".join([README_BEGIN, *rows, README_END])

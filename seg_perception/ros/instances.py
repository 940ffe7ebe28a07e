"""``~/instances``: panoptic segments as vision_msgs/Detection2DArray, when vision_msgs exists.

vision_msgs is an optional run-time dependency (not on PyPI). Without it the publisher is inert
and says why once; the same list is in ``SegResult.segments`` and in the evaluator's COCO JSON.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..core.results import Segment


def segments_to_detections(header: Any, segments: Sequence[Segment], vm: Any) -> Any:
    """Build a ``vision_msgs/Detection2DArray`` (module ``vm`` = vision_msgs.msg) of the thing segments.

    class_id = class name, score, bbox center/size in pixels, id = panoptic id (string).
    """
    arr = vm.Detection2DArray()
    arr.header = header
    for s in segments:
        if not s.is_thing:
            continue
        det = vm.Detection2D()
        det.header = header
        det.id = str(s.id)
        x, y, w, h = s.bbox
        det.bbox.center.position.x = float(x) + (w - 1) / 2.0
        det.bbox.center.position.y = float(y) + (h - 1) / 2.0
        det.bbox.size_x = float(w)
        det.bbox.size_y = float(h)
        hyp = vm.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = s.class_name
        hyp.hypothesis.score = float(s.score)
        det.results = [hyp]
        arr.detections.append(det)
    return arr


class InstancePublisher:
    """Publishes instance lists when vision_msgs is importable; otherwise does nothing."""

    def __init__(self, node: Any, topic: str) -> None:
        self.why_unavailable = ""
        self._pub = None
        try:
            import vision_msgs.msg as vm
        except ImportError as e:
            self._vm = None
            self.why_unavailable = (
                f"vision_msgs is not importable ({e}); vision_msgs is not on PyPI: in a pip venv build it "
                "with colcon (git clone https://github.com/ros-perception/vision_msgs, `colcon build "
                "--packages-select vision_msgs`, source install/setup.bash) or run the node in a sourced "
                "ROS 2 distro that has it (apt: ros-<distro>-vision-msgs)")
            return
        self._vm = vm
        self._pub = node.create_publisher(vm.Detection2DArray, topic, 10)

    @property
    def available(self) -> bool:
        return self._pub is not None

    def publish(self, header: Any, segments: Sequence[Segment]) -> None:
        if self._pub is not None:
            self._pub.publish(segments_to_detections(header, segments, self._vm))

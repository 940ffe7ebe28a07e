"""Offline evaluation on recorded rosbags.

Modules (import what you need; nothing heavy is imported here):

* :mod:`.metrics` - ``ConfusionMatrix`` (mIoU, Cityscapes / Detectron2 conventions) and
  ``PanopticQuality`` (PQ / SQ / RQ as the COCO panoptic API computes them).
* :mod:`.gt` - ground truth from bag topics (matched by stamp) or Cityscapes-style folders.
* :mod:`.evaluate` - ``evaluate_bags``: small steps over a frame stream (decode, predict, match GT,
  accumulate, report); ``score_predictions`` scores predictions made elsewhere the same way.
* :mod:`.report` - report.json / report.md / figures. :mod:`.coco_panoptic` - COCO export.
* :mod:`.video_metrics`, :mod:`.video_eval` - STQ, VPQ, id switches over sequences.
* :mod:`.oracle` - perfect-network upper bounds of the metrics.

Reading bags is :mod:`seg_perception.bag`.
"""

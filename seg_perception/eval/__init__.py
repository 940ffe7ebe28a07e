"""Offline evaluation on recorded rosbags.

Modules (import what you need; nothing heavy is imported here):

* :mod:`.metrics` - ``ConfusionMatrix`` (mIoU, Cityscapes / Detectron2 conventions) and
  ``PanopticQuality`` (PQ / SQ / RQ as the COCO panoptic API computes them).
* :mod:`.bag` - ``list_topics``, ``read_images`` (tolerant to broken bags, ``ReadStats``) and
  ``BagWriter`` (rclpy messages -> mcap / sqlite3 rosbag2).
* :mod:`.gt` - ground truth from bag topics (matched by stamp) or Cityscapes-style folders.
* :mod:`.evaluate` - ``evaluate_bags``: segment, match GT, accumulate metrics, write outputs.
* :mod:`.report` - report.json / report.md / figures. :mod:`.coco_panoptic` - COCO export.
"""

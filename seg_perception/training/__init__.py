"""Training on the synthetic street scenes, model soups and panoptic post-processing tuning.

* :mod:`.config` - ``TrainConfig`` and the disjoint training / validation / held-out scene seeds.
* :mod:`.targets` - Panoptic-DeepLab targets (centre heatmap, offsets, small-instance weights).
* :mod:`.data` - training batches rendered from synthetic scenes.
* :mod:`.losses` - bootstrapped cross-entropy, centre and offset losses.
* :mod:`.synthetic_eval` - held-out mIoU / PQ, and the best score an output grid allows.
* :mod:`.loop` - ``train``: the loop, learning-rate schedule, thread tuner, warm start, lineage.
* :mod:`.soup` - averaging checkpoints of one lineage (``average_checkpoints``).
* :mod:`.tuning` - picking post-processing parameters on validation scenes.
"""

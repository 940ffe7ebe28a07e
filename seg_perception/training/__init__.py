"""Training on the synthetic street scenes, model soups and panoptic post-processing tuning.

* :mod:`.loop` - ``TrainConfig``, Panoptic-DeepLab targets, losses, the training loop, warm start.
* :mod:`.soup` - averaging checkpoints of one lineage (``average_checkpoints``).
* :mod:`.tuning` - picking post-processing parameters on validation scenes.
"""

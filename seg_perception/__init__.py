"""seg_perception: semantic and panoptic segmentation for ROS 2 robots.

The package is split into a ROS-free core (models, runtime backends, pre/post-processing,
metrics, image conversions) and a thin ROS layer in :mod:`seg_perception.ros`.
"""

__version__ = "0.1.0"

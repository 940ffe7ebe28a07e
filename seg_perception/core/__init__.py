"""ROS-free core: tracking, point clouds, stamp matching (no ROS imports)."""

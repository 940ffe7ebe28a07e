"""rosbag2 I/O without rosbag2_py: reading (tolerant of damaged files), recovery scans, writing.

* :mod:`.rosbag` - ``list_topics``, ``read_images`` / ``read_messages`` (``ReadStats``: skipped
  messages and damaged spans), ``write_mcap_crcs`` and ``BagWriter`` (rclpy messages -> mcap /
  sqlite3 rosbag2).
"""

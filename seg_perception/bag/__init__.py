"""rosbag2 I/O without rosbag2_py.

* :mod:`.read` - ``list_topics``, ``read_images`` / ``read_messages`` (``ReadStats``: skipped
  messages and damaged spans), ``deserialize``, ``typestore``.
* :mod:`.recover` - tolerant scanners for damaged bags (MCAP records, sqlite3 pages), ``write_mcap_crcs``.
* :mod:`.write` - ``BagWriter`` (rclpy messages -> mcap / sqlite3 rosbag2), ``make_header``.
* :mod:`.records` - the records a read reports (``BagFrame``, ``ReadStats``, ``BagError``, ...).
"""

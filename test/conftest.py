"""Test-wide environment: every test run gets its own ROS 2 domain on localhost only.

Set before anything imports rclpy, so both this process and the node processes the tests start
use the same isolated domain.
"""
import os
import random
import sys
import tempfile

os.environ["ROS_DOMAIN_ID"] = os.environ.get("SEG_TEST_DOMAIN_ID", str(random.Random().randint(1, 100)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="seg_roslog_"))
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
os.environ.setdefault("PYTHONUNBUFFERED", "1")

# Synthetic scene bags and a fake Segmenter shared by the eval, bag and training tests.
pytest_plugins = ["test.scene_fixtures"]

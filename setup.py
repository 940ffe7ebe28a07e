"""ament_python package definition for seg_perception."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "seg_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["weights/*.pt", "data/*.mcap", "runtime/*.json"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="seg_perception maintainers",
    maintainer_email="maintainers@seg-perception.dev",
    description="Semantic and panoptic segmentation nodes for ROS 2 with TensorRT/ONNX Runtime/torch backends.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "segment_node = seg_perception.ros.node:main",
            "seg-perception = seg_perception.cli.main:main",
        ],
    },
)

"""ament_python package: `colcon build` on a ROS 2 install, `pip install -e .` without one."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "diffhpe_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["diffhpe_models", "diffhpe_models.*", "diffhpe_ros", "diffhpe_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/models", glob("models/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="diffhpe_ros maintainers",
    maintainer_email="maintainers@diffhpe-ros.invalid",
    description="Real-time, occlusion-robust 3D human pose lifting with DiffHPE for ROS 2.",
    license="BSD-3-Clause",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "lifter_node = diffhpe_ros.lifter_node:main",
            "detector_node = diffhpe_ros.detector_node:main",
            "video_source = diffhpe_ros.video_source:main",
            "replay = diffhpe_ros.replay:main",
            "diffhpe_demo = diffhpe_ros.demo:main",
        ],
    },
)

"""ament_python package: `colcon build` in a ROS 2 workspace, or `pip install -e .` in a venv."""

from glob import glob

from setuptools import find_packages, setup

package_name = "perception"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["perception", "perception.*"]),
    package_data={
        "perception": ["py.typed"],
        "perception.weights": ["*.safetensors", "*.json", "pretrained/*.safetensors", "pretrained/*.json"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    # `pip install .[fleet]`: the distributed engine of `perception eval --bags --engine dask` (the default
    # local process pool needs nothing); the pin is the version the loopback test ran with (requirements-dev.txt)
    extras_require={"fleet": ["dask[distributed]==2026.8.0"]},
    zip_safe=False,
    maintainer="Perception maintainers",
    maintainer_email="perception@example.org",
    description="Attention-based camera perception (detection, segmentation, attention maps) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "perception = perception.cli:main",
            "perception_node = perception.ros.nodes.perception_node:main",
            "synthetic_camera = perception.ros.nodes.synthetic_camera:main",
            "incident_recorder = perception.ros.nodes.recorder:main",
        ],
    },
)

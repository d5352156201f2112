"""package.xml installs in a real ROS 2 workspace: every key resolves with rosdep, every import is declared.

Checked against stored copies of rosdistro's rosdep files and Kilted's distribution file
(test/data/rosdep/README.md records the commit): ``rosdep install --from-paths src --ignore-src`` on
Ubuntu noble fails on the first key it cannot resolve, so one bad key blocks the whole install.
"""

from __future__ import annotations

import ast
import gzip
import re
import sys
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "test" / "data" / "rosdep"
DISTRO, OS, OS_VERSION = "kilted", "ubuntu", "noble"
WORKSPACE_REQUIREMENTS = ROOT / "requirements-workspace.txt"

# every third-party module perception/ imports -> how a ROS workspace gets it:
#   ("rosdep", key in package.xml) | ("pip", distribution in requirements-workspace.txt)
#   | ("optional", why it is not declared)
IMPORTS: dict[str, tuple[str, str]] = {
    "rclpy": ("rosdep", "rclpy"),
    "ament_index_python": ("rosdep", "ament_index_python"),
    "builtin_interfaces": ("rosdep", "builtin_interfaces"),
    "rcl_interfaces": ("rosdep", "rcl_interfaces"),
    "std_msgs": ("rosdep", "std_msgs"),
    "std_srvs": ("rosdep", "std_srvs"),
    "sensor_msgs": ("rosdep", "sensor_msgs"),
    "vision_msgs": ("rosdep", "vision_msgs"),
    "geometry_msgs": ("rosdep", "geometry_msgs"),
    "visualization_msgs": ("rosdep", "visualization_msgs"),
    "unique_identifier_msgs": ("rosdep", "unique_identifier_msgs"),
    "autoware_perception_msgs": ("rosdep", "autoware_perception_msgs"),
    "foxglove_msgs": ("rosdep", "foxglove_msgs"),
    "nav_msgs": ("rosdep", "nav_msgs"),
    "tf2_msgs": ("rosdep", "tf2_msgs"),
    "diagnostic_msgs": ("rosdep", "diagnostic_msgs"),
    "launch": ("rosdep", "launch"),
    "launch_ros": ("rosdep", "launch_ros"),
    "numpy": ("rosdep", "python3-numpy"),
    "cv2": ("rosdep", "python3-opencv"),
    "scipy": ("rosdep", "python3-scipy"),
    "yaml": ("rosdep", "python3-yaml"),
    "tqdm": ("rosdep", "python3-tqdm"),
    "matplotlib": ("rosdep", "python3-matplotlib"),
    "imageio": ("rosdep", "python3-imageio"),
    "PIL": ("rosdep", "python3-pil"),
    "torch": ("rosdep", "python3-torch"),
    "open3d": ("rosdep", "python3-open3d-pip"),
    "rosbags": ("rosdep", "python3-rosbags-pip"),
    "onnxruntime": ("rosdep", "python3-onnxruntime-pip"),
    "safetensors": ("pip", "safetensors"),
    "pycocotools": ("pip", "pycocotools"),
    "onnx": ("pip", "onnx"),
    "mcap": ("pip", "mcap"),
    # zstd / lz4 chunk decompression in perception/bag/mcap_storage.py: what rosbags and mcap bring along
    "compression": ("optional", "Python >= 3.14 stdlib compression.zstd"),
    "backports": ("optional", "backports.zstd, a dependency of rosbags (Python < 3.14)"),
    "lz4": ("optional", "a dependency of rosbags and mcap"),
    "tensorrt": ("optional", "TensorRT backend: NVIDIA's install, imported only when a CUDA device is there"),
    "tensorrt_rtx": ("optional", "engine build check without a GPU (requirements-dev.txt)"),
    "dask": ("optional", "fleet engine, `pip install .[fleet]`, imported only with --engine dask"),
    "distributed": ("optional", "fleet engine, `pip install .[fleet]`, imported only with --engine dask"),
}


@cache
def _yaml_gz(name: str) -> Any:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
        return yaml.safe_load(f)


@cache
def ros_packages() -> frozenset[str]:
    """Package names released in the distribution (rosdep resolves these from the distribution file)."""
    out: set[str] = set()
    for repo, entry in _yaml_gz(f"{DISTRO}-distribution.yaml.gz")["repositories"].items():
        release = entry.get("release")
        if release:
            out.update(release.get("packages", [repo]))
    return frozenset(out)


def resolve(key: str) -> Any:
    """What rosdep installs for ``key`` on Ubuntu noble, or None when it cannot resolve it."""
    if key in ros_packages():
        return f"ros-{DISTRO}-{key.replace('_', '-')}"
    for name in ("base.yaml.gz", "python.yaml.gz"):
        rules = _yaml_gz(name)
        if key in rules:
            rule = rules[key]
            if isinstance(rule, dict) and OS in rule:
                per_os = rule[OS]
            elif isinstance(rule, dict) and "*" in rule:
                per_os = rule["*"]
            else:
                return None
            if isinstance(per_os, dict) and "pip" not in per_os:
                per_os = per_os.get(OS_VERSION, per_os.get("*"))
            return per_os or None
    return None


def package_keys() -> dict[str, str]:
    """key -> tag of every dependency in package.xml."""
    root = ET.parse(ROOT / "package.xml").getroot()
    return {el.text.strip(): el.tag for el in root if el.tag.endswith("depend") and el.text}


def third_party_imports() -> dict[str, list[str]]:
    """Top-level module -> files for every absolute import in perception/ outside the stdlib and perception."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "perception").rglob("*.py")) + sorted((ROOT / "launch").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "perception" and top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(path.relative_to(ROOT).as_posix())
    return found


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_resolver_reads_the_stored_rosdep_data() -> None:
    assert resolve("python3-numpy") == ["python3-numpy"]
    assert resolve("python3-rosbags-pip") == {"pip": {"packages": ["rosbags"]}}
    assert resolve("vision_msgs") == "ros-kilted-vision-msgs"
    assert resolve("python3-torch") == ["python3-torch"] and resolve("python3-open3d") is None  # noble: null
    # the keys the rosdep run in a real workspace stumbled over
    assert resolve("ament_python") is None
    assert resolve("python3-pycocotools") is None
    assert resolve("python3-safetensors-pip") is None


@pytest.mark.parametrize("key", sorted(package_keys()))
def test_every_package_xml_key_resolves_on_ubuntu_noble(key: str) -> None:
    assert resolve(key) is not None, (
        f"rosdep cannot resolve {key!r} ({package_keys()[key]}) for {DISTRO} on {OS} {OS_VERSION}: use a key "
        "from rosdistro's rosdep/*.yaml, or put the package in requirements-workspace.txt"
    )


def test_every_third_party_import_is_declared() -> None:
    imports = third_party_imports()
    undeclared = {m: files[:3] for m, files in imports.items() if m not in IMPORTS}
    assert not undeclared, f"imported but not in IMPORTS (declare them in package.xml or the pip file): {undeclared}"
    keys = package_keys()
    pip = requirement_pins(WORKSPACE_REQUIREMENTS)
    for module, (how, name) in IMPORTS.items():
        if how == "rosdep":
            assert name in keys, f"{module} is imported but package.xml does not declare {name!r}"
        elif how == "pip":
            assert name in pip, f"{module} is imported but {WORKSPACE_REQUIREMENTS.name} does not list {name}"
            assert resolve(f"python3-{name}") is None and resolve(f"python3-{name}-pip") is None, (
                f"rosdep has a key for {name} now: declare it in package.xml instead")
    stale = sorted(m for m in IMPORTS if m not in imports)
    assert not stale, f"IMPORTS lists modules nothing imports any more: {stale}"


def test_workspace_pip_file_agrees_with_the_tested_pins() -> None:
    tested = requirement_pins(ROOT / "requirements.txt")
    pins = requirement_pins(WORKSPACE_REQUIREMENTS)
    assert pins, "requirements-workspace.txt lists nothing"
    assert {k: v for k, v in pins.items() if tested.get(k) != v} == {}
    text = WORKSPACE_REQUIREMENTS.read_text(encoding="utf-8")
    assert "pip install --user --break-system-packages -r src/perception/requirements-workspace.txt" in text
    assert "requirements-workspace.txt" in (ROOT / "package.xml").read_text(encoding="utf-8")


def test_package_xml_is_a_valid_format_3_manifest() -> None:
    """What colcon and rosdep read: catkin_pkg's own parser and validator (the build type comes from <export>)."""
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    warnings: list[str] = []
    package = catkin_pkg.parse_package(str(ROOT / "package.xml"), warnings=warnings)
    package.validate(warnings=warnings)
    assert package.get_build_type() == "ament_python" and not package.buildtool_depends
    assert warnings == []

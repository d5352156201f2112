"""Launch files and YAML checked statically against the package (ros2 launch is not installable here).

Launch files are parsed with ``ast`` (never imported): their executables must be console scripts in
setup.py, their parameter files must exist, and every parameter they or the YAML files set must
be one the node declares. ``perception run --print`` turns each into command lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from perception.ros.errors import RosError
from perception.ros.nodes.params import PERCEPTION_PARAMS, SYNTHETIC_CAMERA_PARAMS, flatten_yaml_params, node_config
from perception.ros.tools.launch_spec import ArgRef, parse_launch_file, resolve

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
DECLARED = {
    "perception_node": {p.name for p in PERCEPTION_PARAMS},
    "synthetic_camera": set(SYNTHETIC_CAMERA_PARAMS),
}


def console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return {s.split("=")[0].strip(): s.split("=")[1].strip() for s in scripts}
    raise AssertionError("setup.py has no entry_points")


def yaml_params(path: Path) -> dict[str, object]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and len(data) == 1, f"{path}: one node key (/** or a node name) expected"
    (body,) = data.values()
    return flatten_yaml_params(body["ros__parameters"])


def test_there_are_launch_files() -> None:
    assert {p.name for p in LAUNCH_FILES} >= {"perception.launch.py", "multi_camera.launch.py", "demo.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_matches_the_package(path: Path) -> None:
    spec = parse_launch_file(path)
    scripts = console_scripts()
    assert spec.nodes, f"{path.name} starts no node"
    for node in spec.nodes:
        assert node.package == "perception"
        assert node.executable in scripts, f"{node.executable} is not a console script in setup.py"
        module = scripts[node.executable].split(":")[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).exists()
        declared = DECLARED[node.executable]
        merged: dict[str, object] = {}
        for name in node.param_files:
            f = ROOT / "config" / name
            assert f.exists(), f"{path.name}: parameter file config/{name} is missing"
            params = yaml_params(f)
            assert set(params) <= declared, f"config/{name}: undeclared {sorted(set(params) - declared)}"
            merged.update(params)
        assert set(node.param_values) <= declared, f"{path.name}: undeclared {set(node.param_values) - declared}"
        for v in node.param_values.values():
            if isinstance(v, ArgRef):
                assert v.name in spec.arguments, f"{path.name}: LaunchConfiguration({v.name!r}) not declared"
        merged.update(resolve(node.param_values, spec.arguments))
        if node.executable == "perception_node":
            node_config(merged)  # the launch file's defaults configure a valid node


def test_config_yaml_files_only_set_declared_parameters() -> None:
    for f in sorted((ROOT / "config").glob("*.yaml")):
        if f.name in ("train.yaml", "graft.yaml") or f.name.startswith("vehicle"):  # training configs; rig files
            continue
        params = yaml_params(f)
        owner = "synthetic_camera" if f.name.startswith("synthetic") else "perception_node"
        assert set(params) <= DECLARED[owner], f"{f.name}: undeclared {sorted(set(params) - DECLARED[owner])}"


def test_run_builds_the_same_command_lines(tmp_path: Path) -> None:
    from perception.ros.tools.launch_spec import launch_arguments
    from perception.ros.tools.run import node_command

    spec = parse_launch_file(ROOT / "launch" / "perception.launch.py")
    args = launch_arguments(spec, {"camera_topic": "/front/image_raw", "model": "stan_tiny_temporal"})
    argv = node_command(spec.nodes[0], args, ROOT / "config", tmp_path)
    assert argv[1:3] == ["-m", "perception.ros.nodes.perception_node"]
    assert "camera/image_raw:=/front/image_raw" in argv and "__node:=perception" in argv
    files = [argv[i + 1] for i, a in enumerate(argv) if a == "--params-file"]
    assert files[0] == str(ROOT / "config" / "perception.yaml")
    extra = yaml.safe_load(Path(files[-1]).read_text())["/**"]["ros__parameters"]
    assert extra["model.name"] == "stan_tiny_temporal" and extra["model.checkpoint"] == ""
    with pytest.raises(RosError, match="unknown launch arguments"):
        launch_arguments(spec, {"camera": "x"})


def test_non_declarative_launch_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.launch.py"
    bad.write_text("def generate_launch_description():\n    import os\n    return LaunchDescription([])\n")
    with pytest.raises(RosError, match="unsupported statement"):
        parse_launch_file(bad)

"""Start-up parameter overrides that rclpy's merge loses or ignores are refused or warned about.

Real perception nodes in this process, each in its own rclpy context initialised with the ROS
arguments under test (localhost DDS profile and private domain from ros_testing).
"""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from collections.abc import Iterator
from pathlib import Path

import rclpy
import yaml
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from ros_testing import ROOT

from perception.ros.nodes.overrides import Override, check_overrides, read_overrides
from perception.ros.nodes.perception_node import PerceptionNode

SHIPPED = str(ROOT / "config" / "perception.yaml")


class Started:
    def __init__(self, argv: list[str]) -> None:
        self.context = Context()
        rclpy.init(args=argv, context=self.context)
        self.node = PerceptionNode("perception_overrides_test", context=self.context, argv=argv)

    def configure(self) -> TransitionCallbackReturn:
        return self.node.trigger_configure()

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def start() -> Iterator[type[Started]]:
    made: list[Started] = []

    class Tracked(Started):
        def __init__(self, argv: list[str]) -> None:
            super().__init__(argv)
            made.append(self)

    yield Tracked
    for s in made:
        s.close()


def _params_file(tmp_path: Path, params: dict[str, object], node: str = "/**") -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({node: {"ros__parameters": params}}), encoding="utf-8")
    return str(path)


def test_empty_camera_list_in_a_params_file_is_refused(start: type[Started], tmp_path: Path) -> None:
    s = start(["prog", "--ros-args", "--params-file", _params_file(tmp_path, {"cameras": []})])
    assert "cameras" in s.node._startup_errors and "is empty" in s.node._startup_errors["cameras"]
    assert s.configure() == TransitionCallbackReturn.FAILURE


def test_empty_camera_list_on_the_command_line_is_refused(start: type[Started]) -> None:
    s = start(["prog", "--ros-args", "--params-file", SHIPPED, "-p", "cameras:=[]"])
    assert "is empty" in s.node._startup_errors.get("cameras", "")
    assert s.configure() == TransitionCallbackReturn.FAILURE


@pytest.mark.parametrize(("rule", "reason"), [
    ("detection.score_threshold:=high", "must be a double, got 'high'"),
    ("model.threads:=2.5", "must be an integer, got 2.5"),
])
def test_a_wrong_type_after_a_params_file_is_refused(start: type[Started], rule: str, reason: str) -> None:
    # rcl keeps the file's value in the same variant and rclpy reads that one back: without the
    # re-read the node would run with the file's value and say nothing
    s = start(["prog", "--ros-args", "--params-file", SHIPPED, "-p", rule])
    name = rule.split(":=")[0]
    assert reason in s.node._startup_errors.get(name, ""), s.node._startup_errors
    assert f"-p {rule}" in s.node._startup_errors[name]
    assert s.configure() == TransitionCallbackReturn.FAILURE


def test_good_overrides_configure(start: type[Started]) -> None:
    s = start(["prog", "--ros-args", "--params-file", SHIPPED, "-p", "cameras:=[front, rear]",
               "-p", "detection.score_threshold:=0.5", "-p", "use_sim_time:=false", "-p", "temporal.max_gap_s:=1e0"])
    assert s.node._startup_errors == {}
    assert s.node.get_parameter("cameras").value == ["front", "rear"]
    assert s.configure() == TransitionCallbackReturn.SUCCESS


def test_misspelled_names_are_warned_about(start: type[Started], tmp_path: Path,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    pfile = _params_file(tmp_path, {"detection": {"score_treshold": 0.5}, "no_such_thing": 1},
                         node="/perception_overrides_test")
    s = start(["prog", "--ros-args", "--params-file", pfile])
    err = capfd.readouterr().err
    assert "'detection.score_treshold'" in err and "did you mean 'detection.score_threshold'?" in err
    assert "'no_such_thing'" in err and "is ignored" in err
    assert s.node._startup_errors == {}  # a warning, not a refusal


def test_read_overrides_follows_argument_order_and_node_names(tmp_path: Path) -> None:
    pfile = _params_file(tmp_path, {"max_batch": 2}, node="/other_node")
    argv = ["prog", "-p", "x:=1", "--ros-args", "-r", "-p:=y", "-p", "max_batch:=3", "--params-file", pfile,
            "-p", "other_node:max_batch:=5", "-p", "perception:max_batch:=4", "--", "-p", "z:=1"]
    got = read_overrides(argv, "/perception")
    assert [(o.name, o.value) for o in got] == [("max_batch", 3), ("max_batch", 4)]


def test_read_overrides_reads_exponent_floats_as_ros_does() -> None:
    """rcl reads ``-p x:=1e-1`` as a double; PyYAML alone would read the string "1e-1" (YAML 1.1)."""
    got = read_overrides(["prog", "--ros-args", "-p", "temporal.max_gap_s:=1e-1", "-p", "model.threads:=2"],
                         "/perception")
    assert [(o.name, o.value) for o in got] == [("temporal.max_gap_s", 0.1), ("model.threads", 2)]
    assert isinstance(got[0].value, float) and isinstance(got[1].value, int)


def test_check_overrides_without_a_node() -> None:
    errors, warnings = check_overrides([Override("max_batch", 3, "-p"), Override("max_bach", 3, "-p")],
                                       {"max_batch": 8})
    assert "was not applied" in errors["max_batch"] and "did you mean 'max_batch'" in warnings[0]
    assert check_overrides([Override("max_batch", 3, "-p")], {"max_batch": 3}) == ({}, [])

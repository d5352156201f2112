"""Parameter overrides given to a node at start-up, read again from its ROS arguments and checked.

rclpy hands a node only the *merged* overrides, and the merge loses things without a word:

- ``--params-file config/perception.yaml -p detection.score_threshold:=high``: rcl's YAML parser
  stores the string next to the file's double in one variant and rclpy reads the double back, so
  the node runs with 0.3 and ``high`` is never seen (the same happens to ``model.threads:=2.5``);
- ``cameras: []`` in a file leaves the parameter uninitialised, and after a file ``-p cameras:=[]``
  keeps the file's list: either way the node would serve its default camera;
- a misspelled name (``score_treshold``) is an override nobody declares: rclpy ignores it.

:func:`read_overrides` re-reads every ``--params-file`` (rclpy's own public
``parameter_dict_from_yaml_file``, with the node-name matching launch_ros uses) and every ``-p``
in argument order; :func:`check_overrides` turns them into per-parameter errors (configure is then
refused with the reason) and warnings (names the node does not declare, with the nearest declared
name).
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import parameter_dict_from_yaml_file, parameter_value_to_python

from perception.core.config import load_yaml
from perception.ros.errors import RosError
from perception.ros.nodes.params import PARAMS_BY_NAME, check_value, node_config

# parameters every rclpy node may take that are rclpy's business, not the perception node's
RCLPY_PARAMS = ("use_sim_time", "start_type_description_service")
RCLPY_PREFIXES = ("qos_overrides.",)
# ROS arguments that take a value (skipped, so that value is never read as an option)
_VALUE_OPTIONS = {"-r", "--remap", "-e", "--enclave", "--log-level", "--log-config-file", "--log-file-name"}


@dataclass(frozen=True)
class Override:
    """One value given for a parameter at start-up and where it came from."""

    name: str
    value: Any
    source: str  # "--params-file <path>" or "-p <rule>"


def _ros_args(argv: Sequence[str]) -> list[str]:
    """The tokens inside ``--ros-args ... [--]`` sections (there may be several)."""
    out: list[str] = []
    inside = False
    for tok in argv:
        if tok == "--ros-args":
            inside = True
        elif tok == "--" and inside:
            inside = False
        elif inside:
            out.append(tok)
    return out


def _node_matches(prefix: str, node_fqn: str) -> bool:
    base = node_fqn.rsplit("/", 1)[-1]
    return prefix in (base, node_fqn, "/**", "**") or "/" + prefix.lstrip("/") == node_fqn


def read_overrides(argv: Sequence[str], node_fqn: str) -> list[Override]:
    """Every parameter value for node ``node_fqn`` in ``argv``'s ROS arguments, in argument order."""
    out: list[Override] = []
    tokens = _ros_args(argv)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        arg = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok == "--params-file" and arg is not None:
            try:
                found = parameter_dict_from_yaml_file(arg, use_wildcard=True, target_nodes=[node_fqn])
            except RuntimeError:  # nothing in the file for this node
                found = {}
            except (OSError, yaml.YAMLError) as e:
                raise RosError(f"cannot read parameter file {arg}: {e}") from e
            out += [Override(n, parameter_value_to_python(p.value), f"--params-file {arg}") for n, p in found.items()]
        elif tok in ("-p", "--param") and arg is not None and ":=" in arg:
            name, text = arg.split(":=", 1)
            node, _, pname = name.rpartition(":")
            if not node or _node_matches(node, node_fqn):
                try:
                    value = load_yaml(text) if text else ""
                except yaml.YAMLError:
                    value = text
                out.append(Override(pname, value, f"-p {arg}"))
        i += 2 if tok in _VALUE_OPTIONS | {"--params-file", "-p", "--param"} else 1
    return out


def _is_rclpy_param(name: str) -> bool:
    return name in RCLPY_PARAMS or name.startswith(RCLPY_PREFIXES)


def _as_rcl_reads(name: str, value: Any) -> Any:
    """rcl's YAML reader takes ``1e3`` or ``.5`` for numbers where PyYAML sees strings: read them alike."""
    default = PARAMS_BY_NAME[name].default
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def check_overrides(overrides: Sequence[Override], applied: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Errors (parameter name -> reason) and warnings about start-up ``overrides``.

    ``applied``: the values the node actually holds after rclpy's merge (a name missing: the
    parameter is uninitialised). Errors: a value of the wrong type, range or choice anywhere in the
    arguments, even one a later argument overrides; and the last value given for a parameter that
    rclpy did not apply. Warnings: names the node does not declare.
    """
    errors: dict[str, str] = {}
    warnings: list[str] = []
    last: dict[str, Override] = {}
    unknown: set[str] = set()
    for o in overrides:
        if o.name not in PARAMS_BY_NAME:
            if not _is_rclpy_param(o.name) and o.name not in unknown:
                unknown.add(o.name)
                near = difflib.get_close_matches(o.name, PARAMS_BY_NAME, n=1, cutoff=0.75)
                warnings.append(
                    f"'{o.name}' (from {o.source}) is not a parameter of the perception node and is ignored"
                    + (f": did you mean '{near[0]}'?" if near else "; `ros2 param list` shows the declared ones")
                )
            continue
        try:
            last[o.name] = Override(o.name, check_value(o.name, _as_rcl_reads(o.name, o.value)), o.source)
        except RosError as e:
            errors.setdefault(o.name, f"{e} (from {o.source})")
    values = {n: v for n, v in applied.items() if n in PARAMS_BY_NAME}
    for name, o in last.items():
        if name in errors:
            continue
        held = applied.get(name, "<unset>")
        try:
            if check_value(name, held) == o.value:
                continue
        except RosError:
            pass
        try:
            node_config({**values, name: o.value})
            why = f"parameter {name!r} was not applied: give it once, with the type it is declared with"
        except RosError as e:
            why = str(e)
        shown = list(o.value) if isinstance(o.value, tuple) else o.value
        errors[name] = f"{why} (given as {shown!r} by {o.source}; rclpy's merge did not apply it: the node holds " \
                       f"{held!r})"
    return errors, warnings


def node_argv(argv: Sequence[str] | None, node_kwargs: Mapping[str, Any]) -> list[str]:
    """The arguments a node's overrides come from: the process's (``rclpy.init`` reads ``sys.argv``
    when given none), unless ``use_global_arguments=False``, then the node's own ``cli_args``."""
    out = list(sys.argv if argv is None else argv) if node_kwargs.get("use_global_arguments", True) else []
    return out + list(node_kwargs.get("cli_args") or [])


def startup_override_problems(
    node: Node, argv: Sequence[str] | None, node_kwargs: Mapping[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """:func:`check_overrides` for a node whose parameters are declared: ``argv`` as given to
    ``rclpy.init`` (None: ``sys.argv``), ``node_kwargs`` as given to the Node constructor."""
    applied: dict[str, Any] = {}
    for name in PARAMS_BY_NAME:
        with contextlib.suppress(ParameterUninitializedException):
            applied[name] = node.get_parameter(name).value
    return check_overrides(read_overrides(node_argv(argv, node_kwargs), node.get_fully_qualified_name()), applied)

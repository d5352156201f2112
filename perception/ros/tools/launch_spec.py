"""Launch files read statically (``ast``): the nodes they start, with which YAML and arguments.

``ros2 launch`` is not installable from a registry, so the project's launch files are written in a
plain declarative style (a list of ``DeclareLaunchArgument`` and ``launch_ros`` ``Node`` actions)
that this module evaluates WITHOUT importing ``launch``. The same result serves two purposes:
tests check every launch file against the package (executables, parameter files, parameter
names), and ``perception run`` starts exactly those nodes with exactly those files.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from perception.ros.errors import RosError


@dataclass(frozen=True)
class ArgRef:
    """``LaunchConfiguration(name)``, optionally through ``ParameterValue(..., value_type=T)``."""

    name: str
    value_type: str | None = None  # "str", "int", "float", "bool" or None (YAML-typed, as launch_ros does)


@dataclass(frozen=True)
class ConfigFile:
    """``os.path.join(<package share>/config, name)``."""

    name: str


@dataclass
class NodeSpec:
    package: str
    executable: str
    name: str | None = None
    namespace: str | None = None
    param_files: list[str] = field(default_factory=list)  # names inside config/
    param_values: dict[str, Any] = field(default_factory=dict)  # values may be ArgRef
    remappings: list[tuple[Any, Any]] = field(default_factory=list)
    arguments: list[Any] = field(default_factory=list)


@dataclass
class LaunchSpec:
    path: Path
    arguments: dict[str, str] = field(default_factory=dict)  # name -> default value
    descriptions: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeSpec] = field(default_factory=list)


class _Evaluator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: dict[str, Any] = {}

    def fail(self, node: ast.AST, what: str) -> RosError:
        return RosError(f"{self.path}:{getattr(node, 'lineno', '?')}: {what} (launch files must stay declarative: "
                        "literals, os.path.join(config, ...), LaunchConfiguration, ParameterValue, Node)")

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values):
                if k is None:
                    raise self.fail(node, "dict unpacking is not supported")
                out[self.value(k)] = self.value(v)
            return out
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise self.fail(node, f"unknown name {node.id!r}")
            return self.names[node.id]
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(node, f"unsupported expression {ast.dump(node)[:60]}")

    def call(self, node: ast.Call) -> Any:
        func = ast.unparse(node.func)
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if func == "get_package_share_directory":
            return ("share", self.value(node.args[0]))
        if func == "os.path.join":
            parts = [self.value(a) for a in node.args]
            if parts and isinstance(parts[0], tuple) and parts[0][0] == "share" and parts[1:] == ["config"]:
                return ("config_dir", parts[0][1])
            if len(parts) == 2 and isinstance(parts[0], tuple) and parts[0][0] == "config_dir":
                return ConfigFile(str(parts[1]))
            raise self.fail(node, f"os.path.join{tuple(parts)} is not <share>/config[/file]")
        if func == "LaunchConfiguration":
            return ArgRef(str(self.value(node.args[0])))
        if func == "ParameterValue":
            ref = self.value(node.args[0])
            vt = ast.unparse(kw["value_type"]) if "value_type" in kw else None
            return ArgRef(ref.name, vt) if isinstance(ref, ArgRef) else ref
        if func == "DeclareLaunchArgument":
            return ("arg", self.value(node.args[0]), self.value(kw["default_value"]) if "default_value" in kw else None,
                    self.value(kw["description"]) if "description" in kw else "")
        if func == "Node":
            spec = NodeSpec(package=self.value(kw["package"]), executable=self.value(kw["executable"]))
            spec.name = self.value(kw["name"]) if "name" in kw else None
            spec.namespace = self.value(kw["namespace"]) if "namespace" in kw else None
            for p in self.value(kw["parameters"]) if "parameters" in kw else []:
                if isinstance(p, ConfigFile):
                    spec.param_files.append(p.name)
                elif isinstance(p, dict):
                    spec.param_values.update(p)
                else:
                    raise self.fail(node, f"parameter entry {p!r} is neither a config file nor a dict")
            spec.remappings = [tuple(r) for r in self.value(kw["remappings"])] if "remappings" in kw else []
            spec.arguments = self.value(kw["arguments"]) if "arguments" in kw else []
            return spec
        if func == "LaunchDescription":
            return self.value(node.args[0]) if node.args else []
        raise self.fail(node, f"unsupported call {func}()")


def parse_launch_file(path: str | Path) -> LaunchSpec:
    """The arguments and nodes of a launch file's ``generate_launch_description()``."""
    p = Path(path)
    tree = ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"),
              None)
    if fn is None:
        raise RosError(f"{p}: no generate_launch_description() function")
    ev = _Evaluator(p)
    result: list[Any] | None = None
    for stmt in fn.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            ev.names[stmt.targets[0].id] = ev.value(stmt.value)
        elif isinstance(stmt, ast.Return) and stmt.value is not None:
            result = ev.value(stmt.value)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring
        else:
            raise ev.fail(stmt, "unsupported statement")
    if result is None:
        raise RosError(f"{p}: generate_launch_description() returns nothing")
    spec = LaunchSpec(path=p)
    for item in result:
        if isinstance(item, tuple) and item[0] == "arg":
            spec.arguments[item[1]] = "" if item[2] is None else str(item[2])
            spec.descriptions[item[1]] = item[3]
        elif isinstance(item, NodeSpec):
            spec.nodes.append(item)
        else:
            raise RosError(f"{p}: unsupported launch action {item!r}")
    return spec


def _coerce(value: str, value_type: str | None) -> Any:
    if value_type == "str":
        return value
    if value_type == "int":
        return int(value)
    if value_type == "float":
        return float(value)
    if value_type == "bool":
        return value.strip().lower() in ("1", "true", "yes", "on")
    return yaml.safe_load(value) if value.strip() else value


def resolve(value: Any, args: Mapping[str, str]) -> Any:
    """Substitute launch arguments into a value (ArgRef -> the argument, typed like launch_ros does)."""
    if isinstance(value, ArgRef):
        if value.name not in args:
            raise RosError(f"launch argument {value.name!r} is used but not declared")
        return _coerce(args[value.name], value.value_type)
    if isinstance(value, list):
        return [resolve(v, args) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, args) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, args) for k, v in value.items()}
    return value


def launch_arguments(spec: LaunchSpec, overrides: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(overrides) - set(spec.arguments))
    if unknown:
        have = ", ".join(f"{k} (default {v!r})" for k, v in spec.arguments.items()) or "none"
        raise RosError(f"{spec.path.name}: unknown launch arguments {unknown}; it takes: {have}")
    return {**spec.arguments, **overrides}


def find_launch_file(name_or_path: str, launch_dir: Path) -> Path:
    """``demo`` -> ``<launch_dir>/demo.launch.py``; a path is taken as it is."""
    p = Path(name_or_path)
    if p.suffix == ".py" and p.exists():
        return p
    candidate = launch_dir / f"{name_or_path}.launch.py"
    if candidate.exists():
        return candidate
    have = ", ".join(sorted(f.name.removesuffix(".launch.py") for f in launch_dir.glob("*.launch.py"))) or "none"
    raise RosError(f"no launch file {name_or_path!r} in {launch_dir} (have: {have})")

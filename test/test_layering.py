"""The architecture's layering, enforced on the source (AST: every import, lazy ones inside functions too).

Layers, lowest first (ARCHITECTURE.md): a package may import only the packages named in
:data:`ALLOWED`. Those, roughly: ``core`` (pure numpy/cv2) and ``weights`` (data) -> ``models`` (torch
networks, their tensor contract) -> ``runtime`` (backends that run models and deployed files) ->
``pipeline`` -> ``sim`` / ``footage`` (real video, reference detector) -> ``eval`` (labelled real
images) -> ``train`` -> ``bag`` -> ``deploy`` (export, quantisation, engines: above models AND
runtime, so models never know how they are run and the runtime never how its files are made) ->
``bench`` / ``vehicle`` (rig, install, systemd) -> ``ros`` (the only package that imports rclpy) ->
the top-level ``cli`` / ``demo``.

A package's own CLI module (``cli.py``, ``*_cli.py``) is an entry point like ``perception/cli.py`` and
may import any package but ``ros``. A new package must be added to :data:`ALLOWED` (the test says so).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "perception"

# package -> the perception packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "weights": set(),
    "models": {"core", "weights"},  # weights: where the shipped (pretrained) files are
    "runtime": {"core", "models"},  # models: checkpoints (torch backend) and the tensor contract
    "pipeline": {"core", "runtime", "fusion", "tracking"},  # fusion, tracking: the 3D object pipeline
    "sim": {"core"},
    "footage": {"core"},  # real footage (video / image folders) and the evaluation-only reference detector
    # labelled real-image metrics (pure numpy) and the runs that feed them (Perceptor, reference detector)
    "eval": {"core", "weights", "models", "runtime", "pipeline", "footage"},
    "train": {"core", "weights", "models", "runtime", "pipeline", "sim", "footage", "fusion", "tracking"},
    "bag": {"core", "sim", "train", "tracking"},  # tracking: 3D objects scored from bags
    "fusion": {"core"},
    "tracking": {"core", "fusion"},
    "deploy": {"core", "weights", "models", "runtime", "pipeline", "sim", "footage", "train", "bag"},
    "fleet": {"core", "weights", "models", "runtime", "pipeline", "sim", "train", "bag"},  # many bags, an engine
    "bench": {"core", "weights", "models", "runtime", "pipeline", "sim", "footage", "train", "bag", "deploy",
              "fusion"},
    # in-vehicle deployment (rig config, install: engines + systemd units, sd_notify, watchdog policy): above deploy;
    # bag: the incident recorder writes its snapshots with the project's CRC'd MCAP writer and renders them
    "vehicle": {"core", "weights", "models", "runtime", "pipeline", "deploy", "bag"},
    "ros": {"core", "weights", "models", "runtime", "pipeline", "sim", "footage", "train", "bag", "deploy", "bench",
            "fusion", "tracking", "vehicle"},
}
TOP_LEVEL = {"cli", "demo", "__init__"}  # perception/<module>.py: entry points, may import anything
ROS_ONLY = ("rclpy", "rosidl_runtime_py", "launch", "launch_ros")  # + every *_msgs / *_srvs package
CORE_FORBIDDEN = ("torch", "onnx", "onnxruntime", "tensorrt", "tensorrt_rtx", "open3d", "rosbags")
RUNTIME_LAZY = ("torch", "onnx", "onnxruntime", "tensorrt", "tensorrt_rtx")  # runtime: inside functions only


def _imports(tree: ast.AST, root: str) -> Iterator[tuple[str, int, bool]]:
    """(module, line, at module level) for every absolute import; ``if TYPE_CHECKING:`` blocks skipped.
    ``from perception import bag`` counts as an import of ``perception.bag``."""

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (x for n in child.orelse for x in walk(n, top))
                continue
            if isinstance(child, ast.Import):
                yield from ((a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module == root:
                yield from ((f"{root}.{a.name}", child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.module, child.lineno, top
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, top and not nested)

    yield from walk(tree, True)


def _is_ros(module: str) -> bool:
    root = module.split(".")[0]
    return root in ROS_ONLY or root.endswith(("_msgs", "_srvs"))


def _package_rule(package: str | None, entry_point: bool, target: str, module: str) -> str | None:
    """What is wrong with ``package`` importing the perception package or module ``target`` (None: fine)."""
    if package is None or target == package:
        return None  # top-level entry points import anything; a package imports itself
    if target in TOP_LEVEL:
        return None if entry_point else f"{package} imports the entry point {module}"
    if target not in ALLOWED:
        return None  # an unknown package is reported on its own files
    if entry_point:
        return None if target != "ros" else (f"{package}'s CLI imports {module}; only perception.ros and the "
                                             "top-level entry points may import perception.ros")
    if target not in ALLOWED[package]:
        return (f"{package} imports {module}, but {package} may import only "
                f"{sorted(ALLOWED[package]) or 'no other perception package'}")
    return None


def violations(root: Path) -> list[str]:
    """Every import in the package at ``root`` that breaks the layering, as 'file:line: what is wrong'."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        package = rel.parts[0] if len(rel.parts) > 1 else None
        if package is None and path.stem not in TOP_LEVEL:
            found.append(f"{rel}: a new top-level module; put it in a package or add it to TOP_LEVEL")
            continue
        if package is not None and package not in ALLOWED:
            found.append(f"{rel}: package {package!r} has no row in ALLOWED (test/test_layering.py): "
                         "add one naming the packages it may import")
            continue
        entry_point = package is None or path.stem == "cli" or path.stem.endswith("_cli")
        for module, line, top in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)), root.name):
            where, parts = f"{rel}:{line}", module.split(".")
            if parts[0] == root.name and len(parts) > 1:
                problem = _package_rule(package, entry_point, parts[1], module)
                if problem:
                    found.append(f"{where}: {problem}")
            if _is_ros(module) and package != "ros":
                found.append(f"{where}: imports {module}; only perception.ros may import ROS packages")
            if package == "core" and parts[0] in CORE_FORBIDDEN:
                found.append(f"{where}: core imports {module}; core is pure numpy/cv2")
            if package == "runtime" and top and parts[0] in RUNTIME_LAZY:
                found.append(f"{where}: runtime imports {module} at module level; import a runtime lazily "
                             "inside the backend that needs it")
    return found


def test_the_package_follows_the_layering() -> None:
    found = violations(ROOT)
    assert not found, "layering violations:\n" + "\n".join(found)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "perception"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"models/export.py": "def f():\n    from perception.runtime.base import Backend\n"},
     "models imports perception.runtime.base"),
    ({"runtime/select.py": "from perception.deploy import ondemand\n"}, "runtime imports perception.deploy"),
    ({"core/x.py": "import perception.models.stan\n"}, "no other perception package"),
    ({"train/x.py": "def f():\n    import rclpy\n"}, "only perception.ros may import ROS"),
    ({"bag/x.py": "from sensor_msgs.msg import Image\n"}, "only perception.ros may import ROS"),
    ({"core/x.py": "def f():\n    import torch\n"}, "core is pure numpy/cv2"),
    ({"runtime/x.py": "import onnxruntime\n"}, "import a runtime lazily"),
    ({"sim/cli.py": "from perception.ros import run\n"}, "only perception.ros and the top-level entry points"),
    ({"models/x.py": "from perception import runtime\n"}, "models imports perception.runtime"),
    ({"models/x.py": "from perception.cli import main\n"}, "imports the entry point perception.cli"),
    ({"gizmo/x.py": "import numpy\n"}, "has no row in ALLOWED"),
])
def test_a_violation_is_caught(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = violations(_tree(tmp_path, files))
    assert any(expected in f for f in found), found


def test_allowed_imports_pass(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "runtime/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
                        "def f():\n    import onnxruntime\n    from perception.models.contract import IMAGE_INPUT\n",
        "deploy/x.py": "import torch\nfrom perception.runtime.select import ModelSource\n"
                       "from perception.models import stan\n",
        "ros/x.py": "import rclpy\nfrom perception.deploy.ondemand import on_demand\n",
        "sim/cli.py": "from perception.bag.drive import write_bag\n",  # a CLI module is an entry point
        "cli.py": "from perception.ros import run\n",
    })
    assert violations(root) == []

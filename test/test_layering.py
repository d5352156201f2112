"""The architecture's layering, enforced on the source (AST: every import, lazy ones inside functions too).

Layers, lowest first (docs/architecture.md): a package may import only the packages named in
:data:`ALLOWED`. Those, roughly: ``core`` (pure numpy/cv2) and ``weights`` (data) -> ``models`` (torch
networks, their tensor contract), ``bag`` (rosbag2 I/O), ``fusion``, ``footage`` (real video, reference
detector) -> ``runtime`` (backends that run models and deployed files), ``tracking``, ``sim`` (renders; bag
writes) -> ``pipeline``, ``train`` (training only) -> ``eval`` (every metric and evaluation report) ->
``deploy`` (export, quantisation, engines: above models AND runtime, so models never know how they are run
and the runtime never how its files are made), ``fleet`` (many bags; serves ``perception eval``) ->
``bench`` / ``vehicle`` (rig, install, systemd) -> ``ros`` (the only package that imports rclpy, and its
tools) -> the top-level ``cli`` / ``demo``.

:data:`LADDER` is that order: every row of :data:`ALLOWED` names only packages on lower rungs, so no
import circle can form between packages, and every import a row allows is made (the table is the real
graph, not a wish). No module is exempt: a package's CLI (``cli.py``, ``*_cli.py``) follows its package's
row; only the top-level modules (:data:`TOP_LEVEL`) may import anything. Modules import each other in no
circle either. A new package must be put on a rung and given a row in :data:`ALLOWED` (the test says so).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "perception"

# The ladder, lowest rung first: a package may import packages on lower rungs only (ALLOWED says which).
LADDER: tuple[tuple[str, ...], ...] = (
    ("core", "weights"),
    ("models", "bag", "fusion", "footage"),
    ("runtime", "tracking", "sim"),
    ("pipeline", "train"),
    ("eval",),
    ("deploy", "fleet"),
    ("bench", "vehicle"),
    ("ros",),
)

# package -> the perception packages it imports (besides itself); each one on a lower rung of LADDER
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "weights": set(),
    "models": {"core", "weights"},  # weights: where the shipped (pretrained) files are
    "bag": {"core"},  # rosbag2 I/O only: the frames it writes come from the caller
    "fusion": {"core"},
    "footage": {"core"},  # real footage (video / image folders) and the evaluation-only reference detector
    "runtime": {"core", "models"},  # models: checkpoints (torch backend) and the tensor contract
    "tracking": {"core"},
    "sim": {"core", "bag"},  # bag: rendered drives written as bags (sim.drive.render_drive_bag, perception sim --bag)
    "pipeline": {"core", "runtime", "fusion", "tracking"},  # fusion, tracking: the 3D object pipeline
    "train": {"core", "weights", "models", "runtime", "sim", "footage"},  # training only (bench alone uses it)
    # sim: the drives it scores on; bag: recorded outputs and drive bags; footage: real images and the reference
    "eval": {"core", "weights", "models", "runtime", "pipeline", "sim", "footage", "fusion", "tracking", "bag"},
    "deploy": {"core", "weights", "models", "runtime", "pipeline", "sim", "footage", "bag", "eval"},
    "fleet": {"core", "weights", "models", "runtime", "pipeline", "sim", "eval"},  # many bags, one task each
    # train: the training step's cost (bench model)
    "bench": {"core", "weights", "models", "runtime", "pipeline", "sim", "train", "bag", "deploy", "fusion", "eval"},
    # in-vehicle deployment (rig config, install: engines + systemd units, sd_notify, watchdog policy): above deploy;
    # bag: the incident recorder writes its snapshots with the project's CRC'd MCAP writer and renders them
    "vehicle": {"core", "weights", "models", "runtime", "deploy", "bag"},
    "ros": {"core", "weights", "models", "runtime", "pipeline", "sim", "bag", "deploy", "bench", "fusion", "tracking",
            "vehicle", "eval"},
}
TOP_LEVEL = {"cli", "demo", "__init__"}  # perception/<module>.py: the top, may import anything
ROS_ONLY = ("rclpy", "rosidl_runtime_py", "launch", "launch_ros")  # + every *_msgs / *_srvs package
CORE_FORBIDDEN = ("torch", "onnx", "onnxruntime", "tensorrt", "tensorrt_rtx", "open3d", "rosbags")
RUNTIME_LAZY = ("torch", "onnx", "onnxruntime", "tensorrt", "tensorrt_rtx")  # runtime: inside functions only


def _imports(tree: ast.AST, root: str, package: str = "") -> Iterator[tuple[str, int, bool]]:
    """(module, line, at module level) for every import; ``if TYPE_CHECKING:`` blocks skipped.
    ``from perception import bag`` counts as an import of ``perception.bag``. Relative imports are resolved
    against ``package`` (the dotted package of the module, e.g. ``perception.bag``); without it they are
    skipped."""

    def absolute(node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module
        if not package:
            return None
        parts = package.split(".")
        base = parts[: len(parts) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else [])) if base else None

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (x for n in child.orelse for x in walk(n, top))
                continue
            if isinstance(child, ast.Import):
                yield from ((a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and (module := absolute(child)):
                if module == root:
                    yield from ((f"{root}.{a.name}", child.lineno, top) for a in child.names)
                else:
                    yield module, child.lineno, top
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, top and not nested)

    yield from walk(tree, True)


def _package_of(path: Path, root: Path) -> str:
    """The dotted package a module file belongs to (``perception/bag/io.py`` -> ``perception.bag``)."""
    return ".".join((root.name, *path.relative_to(root).parent.parts))


def _is_ros(module: str) -> bool:
    root = module.split(".")[0]
    return root in ROS_ONLY or root.endswith(("_msgs", "_srvs"))


def _package_rule(package: str | None, target: str, module: str) -> str | None:
    """What is wrong with ``package`` importing the perception package or module ``target`` (None: fine)."""
    if package is None or target == package:
        return None  # top-level entry points import anything; a package imports itself
    if target in TOP_LEVEL:
        return f"{package} imports the entry point {module}"
    if target not in ALLOWED:
        return None  # an unknown package is reported on its own files
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
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for module, line, top in _imports(tree, root.name, _package_of(path, root)):
            where, parts = f"{rel}:{line}", module.split(".")
            if parts[0] == root.name and len(parts) > 1:
                problem = _package_rule(package, parts[1], module)
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
    ({"sim/cli.py": "from perception.ros import run\n"}, "sim imports perception.ros, but sim may import only"),
    # no exemption for CLI modules: a package's CLI follows its package's row
    ({"eval/cli.py": "def f():\n    from perception.fleet.cli import fleet_main\n"}, "eval imports perception.fleet"),
    ({"bag/drive.py": "def f():\n    from perception.sim.drive import generate_sequence\n"},
     "bag imports perception.sim.drive"),
    ({"models/x.py": "from perception import runtime\n"}, "models imports perception.runtime"),
    ({"models/x.py": "from perception.cli import main\n"}, "imports the entry point perception.cli"),
    ({"gizmo/x.py": "import numpy\n"}, "has no row in ALLOWED"),
    ({"bag/x.py": "from ..sim.drive import generate_sequence\n"}, "bag imports perception.sim.drive"),
    ({"ros/nodes/x.py": "def f():\n    from ...cli import main\n"}, "ros imports the entry point perception.cli"),
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
        "sim/cli.py": "from perception.bag.drive import write_drive_bag\n",  # sim renders, bag writes
        "cli.py": "from perception.ros import run\n",
    })
    assert violations(root) == []


def test_the_table_is_a_ladder() -> None:
    rung = {package: k for k, packages in enumerate(LADDER) for package in packages}
    assert sum(len(r) for r in LADDER) == len(rung), "a package stands on two rungs of LADDER"
    assert set(rung) == set(ALLOWED), f"on no rung: {sorted(set(ALLOWED) - set(rung))}; " \
                                      f"no row in ALLOWED: {sorted(set(rung) - set(ALLOWED))}"
    upward = [f"{p} -> {q} (rung {rung[p]} -> {rung[q]})" for p, row in ALLOWED.items() for q in sorted(row)
              if rung[q] >= rung[p]]
    assert not upward, "ALLOWED names packages on the same or a higher rung:\n" + "\n".join(upward)


def package_imports(root: Path) -> dict[str, set[str]]:
    """package -> the other perception packages its modules import (TYPE_CHECKING blocks aside)."""
    out: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for module, _, _ in _imports(tree, root.name, _package_of(path, root)):
            parts = module.split(".")
            if parts[0] == root.name and len(parts) > 1 and parts[1] != rel.parts[0]:
                out.setdefault(rel.parts[0], set()).add(parts[1])
    return out


def test_every_allowed_import_is_made() -> None:
    made = package_imports(ROOT)
    unused = [f"{p} -> {q}" for p, row in ALLOWED.items() for q in sorted(row) if q not in made.get(p, set())]
    assert not unused, "ALLOWED allows imports no module makes; take them out of the table:\n" + "\n".join(unused)


def module_circles(root: Path) -> list[list[str]]:
    """The import circles among the modules under ``root`` (relative imports resolved, TYPE_CHECKING blocks
    skipped, lazy imports counted), each as its modules in sorted order."""
    names = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names)
        edges[name] = {t for t in map(known, targets) if t is not None and t != name}

    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in edges[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(names):
        if name not in order:
            visit(name)
    return circles


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` but those inside ``if TYPE_CHECKING:`` blocks."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for n in child.orelse:
                yield n
                yield from _runtime_nodes(n)
            continue
        yield child
        yield from _runtime_nodes(child)


def test_no_module_import_circle() -> None:
    circles = module_circles(ROOT)
    assert not circles, "modules that import each other (put what they share where both can import it):\n" + \
        "\n".join(" <-> ".join(c) for c in circles)


def test_a_module_circle_is_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "sim/__init__.py": "",
        "sim/world.py": "def f():\n    from . import randomize\n",
        "sim/randomize.py": "from .world import Lighting\n",
        "sim/shading.py": "from typing import TYPE_CHECKING\n"
                          "if TYPE_CHECKING:\n    from perception.sim.light import L\n",  # not at run time
        "sim/light.py": "from perception.sim import shading\n",
    })
    assert module_circles(root) == [["perception.sim.randomize", "perception.sim.world"]]

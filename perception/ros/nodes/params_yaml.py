"""``config/perception.yaml`` generated from the parameter table, so each default is written once.

The node's parameters, their defaults and descriptions live in :data:`~perception.ros.nodes.params.PERCEPTION_PARAMS`;
the YAML the launch files load is rendered from it (each key under its description as a comment), with only
the values a deployment sets differently (:data:`DEPLOYED`). ``make params-yaml`` (``python -m
perception.ros.nodes.params_yaml``) writes it; ``--check`` exits 1 when the committed file differs, and
``test/ros/test_params_yaml.py`` runs that check. No rclpy here.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from perception.ros.nodes.params import PERCEPTION_PARAMS, ParamSpec

YAML_PATH = Path(__file__).resolve().parents[3] / "config" / "perception.yaml"
# the values config/perception.yaml sets that differ from the table's defaults
DEPLOYED: dict[str, Any] = {"autostart": True}  # a launched node goes to active by itself
WIDTH = 118
HEADER = """\
# perception_node parameters: GENERATED from the table PERCEPTION_PARAMS in perception/ros/nodes/params.py by
# `make params-yaml`; edit the table (or DEPLOYED in perception/ros/nodes/params_yaml.py), not this file
# (test/ros/test_params_yaml.py fails when they differ). Nested keys are dotted parameter names:
# model.device, detection.score_threshold, ...
/**:
  ros__parameters:
"""


def yaml_value(value: Any) -> str:
    """``value`` in YAML flow style, on one line (``""`` for an empty string)."""
    if value == "":
        return '""'
    text = yaml.safe_dump(list(value) if isinstance(value, tuple) else value, default_flow_style=True,
                          width=10**6)
    return text.removesuffix("...\n").strip()


def _comment(spec: ParamSpec, indent: str) -> list[str]:
    text = spec.description + (f" ({' | '.join(spec.choices)})" if spec.choices else "")
    return textwrap.wrap(text, WIDTH - len(indent) - 2, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ", break_on_hyphens=False)


def render(specs: Iterable[ParamSpec] = PERCEPTION_PARAMS, deployed: Mapping[str, Any] = DEPLOYED) -> str:
    """The YAML text: the table's order, a group key before its first member, every key under its description.
    An empty list default is written commented out: a params file cannot give an empty array a type."""
    lines = [HEADER.rstrip("\n")]
    groups: list[str] = []
    opened: set[tuple[str, ...]] = set()
    for spec in specs:
        *group, key = spec.name.split(".")
        common = 0
        while common < min(len(group), len(groups)) and group[common] == groups[common]:
            common += 1
        for depth in range(common, len(group)):
            if tuple(group[:depth + 1]) in opened:
                raise ValueError(f"{spec.name}: the {'.'.join(group[:depth + 1])}.* parameters are not together in "
                                 "the table; keep each group's rows contiguous")
            opened.add(tuple(group[:depth + 1]))
            lines.append("    " + "  " * depth + f"{group[depth]}:")
        groups = group
        indent = "    " + "  " * len(group)
        value = deployed.get(spec.name, spec.default)
        lines += _comment(spec, indent)
        empty = isinstance(value, list | tuple) and not value
        lines.append(f"{indent}{'# ' if empty else ''}{key}: {yaml_value(value)}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perception.ros.nodes.params_yaml", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=YAML_PATH, help=f"where to write (default {YAML_PATH})")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out differs from the table")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} differs from PERCEPTION_PARAMS: run `make params-yaml` and commit it", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from perception.core.config import (
    ConfigError,
    apply_overrides,
    count_arg,
    load_yaml,
    load_yaml_mapping,
    scalar_type_error,
    warmup_arg,
)


def test_load_and_override(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("steps: 10\nsim: {degrade: false, width: 64}\n")
    base = load_yaml_mapping(f)
    out = apply_overrides(base, ["steps=20", "sim.degrade=true", "new.key=[1, 2]"])
    assert out == {"steps": 20, "sim": {"degrade": True, "width": 64}, "new": {"key": [1, 2]}}
    assert base["sim"]["degrade"] is False  # the base is not modified


@pytest.mark.parametrize(
    ("text", "match"),
    [("- a\n- b\n", "mapping at the top level"), ("a: [1,\n", "not valid YAML")],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_yaml_mapping(f)


def test_missing_file_and_bad_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml_mapping(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["steps"])


@pytest.mark.parametrize(
    ("text", "value"),
    [("4e-4", 4e-4), ("1e3", 1000.0), ("-2.5E+3", -2500.0), ("1.0e-4", 1e-4), ("3", 3), ("0.5", 0.5),
     ('"4e-4"', "4e-4"), ("1e", "1e"), ("e3", "e3"), ("x1e3", "x1e3"), ("[1e-3, 2]", [1e-3, 2])],
)
def test_floats_follow_yaml_1_2(text: str, value: object) -> None:
    """PyYAML alone reads ``4e-4`` (no dot) as a string; config files and ``--set`` read it as ROS 2 does."""
    assert load_yaml(text) == value and type(load_yaml(text)) is type(value)
    assert apply_overrides({}, [f"k={text}"])["k"] == value


@dataclass
class _Options:
    lr: float = 1e-3
    steps: int = 10
    amp: bool = False
    name: str = "x"
    seeds: tuple[int, int] = (0, 1)
    extra: dict[str, int] = field(default_factory=dict)


@pytest.mark.parametrize(
    ("data", "message"),
    [({"lr": "fast"}, "lr must be a number like 0.001, got 'fast'"), ({"lr": True}, "lr must be a number"),
     ({"steps": 2.5}, "steps must be an integer like 10, got 2.5"), ({"steps": "10"}, "steps must be an integer"),
     ({"amp": 1}, "amp must be true or false"), ({"name": 3}, "name must be a string"),
     ({"name": None}, "name must be a string")],
)
def test_scalar_type_error_names_the_option(data: dict[str, object], message: str) -> None:
    got = scalar_type_error(_Options, data)
    assert got is not None and got.startswith(message)


def test_scalar_type_error_accepts_fitting_values() -> None:
    good = {"lr": 2, "steps": 3, "amp": True, "name": "y", "seeds": [1, 2], "extra": {"a": 1}, "unknown": object()}
    assert scalar_type_error(_Options, good) is None  # an int is a fine float; non-scalar fields are not checked


def test_count_and_warmup_arguments() -> None:
    assert count_arg("3") == 3 and warmup_arg("0") == 0
    for bad in ("0", "-3", "2.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=">= 1"):
            count_arg(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=">= 0"):
        warmup_arg("-1")


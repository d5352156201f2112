"""YAML configuration files and ``key=value`` command-line overrides (pure, no torch)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or override is unreadable or malformed."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a STRING
    (``--set lr=1e-3`` then failed deep in training with a TypeError); YAML 1.2 and ROS 2's parameter parser read
    it as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``1e-3`` is 0.001, not the string "1e-3")."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no arbitrary objects


def dataclass_kwargs(cls: type, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments for dataclass ``cls`` from a plain mapping (YAML/JSON lists become tuples)
    and the sorted keys that are no field of ``cls`` (the caller refuses them in its own words)."""
    known = {f.name for f in dataclasses.fields(cls)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
    return kw, sorted(set(data) - known)


def scalar_type_error(cls: type, data: Mapping[str, Any]) -> str | None:
    """The first value of ``data`` whose type does not fit its dataclass field's scalar default (a number, bool
    or string: an int is a fine float, a bool is no number, a float no int), as a message naming the option;
    None when all fit. Options a dataclass does not know and fields without a scalar default are not checked."""
    for f in dataclasses.fields(cls):
        if f.name not in data or not isinstance(f.default, (bool, int, float, str)):
            continue
        default, value = f.default, data[f.name]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                isinstance(value, int) or isinstance(default, float))
        else:
            ok = isinstance(value, str)
        if not ok:
            kind = {bool: "true or false, like", int: "an integer like", float: "a number like"}.get(
                type(default), "a string like")
            return f"{f.name} must be {kind} {default!r}, got {value!r}"
    return None


def parse_size(text: str) -> tuple[int, int]:
    """``"256x448"`` (HxW, as the CLIs take image and network sizes) -> ``(256, 448)``."""
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise ConfigError(f"size must look like 256x448 (HxW), not {text!r}") from e
    return h, w


def frame_count(value: str | None, default: int) -> int:
    """``--frames`` of a synthetic drive: a positive count (``None``: ``default``); the frame ranges
    ``FIRST:LAST`` that the same option takes with ``--video`` / ``--images`` are refused here."""
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise ConfigError(f"--frames must be a positive number of frames here, not {value!r} "
                          "(frame ranges FIRST:LAST are for --video / --images)")
    return n


def size_arg(text: str) -> tuple[int, int]:
    """:func:`parse_size` as an argparse ``type=`` (a bad size is a usage error naming the format)."""
    import argparse

    try:
        return parse_size(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def input_size_arg(text: str) -> tuple[int, int]:
    """A network input size ``HxW`` as an argparse ``type=``: both multiples of 32 in 32..4096 (the networks' strides;
    anything else failed deep inside the model)."""
    import argparse

    h, w = size_arg(text)
    if not (32 <= h <= 4096 and 32 <= w <= 4096 and h % 32 == 0 and w % 32 == 0):
        raise argparse.ArgumentTypeError(f"input size {text!r} must be HxW with both multiples of 32 in 32..4096, "
                                         "e.g. 384x640")
    return h, w


def count_arg(text: str) -> int:
    """An argparse ``type=`` for counts of timed iterations or frames: an integer >= 1 (0 or -3 used to run a
    whole benchmark and then fail on an empty median)."""
    return _int_at_least(text, 1)


def warmup_arg(text: str) -> int:
    """An argparse ``type=`` for untimed warm-up counts: an integer >= 0."""
    return _int_at_least(text, 0)


def crops_arg(text: str) -> int:
    """An argparse ``type=`` for refinement crops per frame (``--refine K``): an integer 0..64 (0: refinement off)."""
    n = _int_at_least(text, 0)
    if n > 64:
        import argparse

        raise argparse.ArgumentTypeError(f"must be 0..64 crops per frame, not {text!r}")
    return n


def _int_at_least(text: str, low: int) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        n = low - 1
    if n < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, not {text!r}")
    return n


def seed_range(text: str) -> tuple[int, int]:
    """``FIRST:LAST`` (LAST exclusive) or one seed ``N`` as an argparse ``type=``: the drive seeds of the
    evaluation, export-calibration and benchmark CLIs."""
    import argparse

    first, sep, last = text.partition(":")
    try:
        lo, hi = int(first), int(last) if sep else int(first) + 1
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"seeds must look like FIRST:LAST (exclusive), not {text!r}") from e
    if hi <= lo:
        raise argparse.ArgumentTypeError(f"seed range {text!r} is empty")
    return lo, hi


def load_yaml_mapping(path: str | Path, section: str | None = None) -> dict[str, Any]:
    """A YAML file's top-level mapping (or one ``section`` of it)."""
    p = Path(path)
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level, not {type(data).__name__}")
    if section is not None:
        if section not in data or not isinstance(data[section], dict):
            raise ConfigError(f"config file {p} has no mapping named {section!r} (found: {', '.join(data) or 'none'})")
        data = data[section]
    return data


def apply_overrides(base: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``["steps=100", "sim.degrade=true"]`` applied to a copy of ``base``; values parsed as YAML."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (nested: a.b=value)")
        try:
            value = load_yaml(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[leaf] = value
    return out

"""config/perception.yaml is generated from the parameter table (each default written once): the committed file
must be exactly what ``make params-yaml`` writes, and it must load back to the table's values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perception.ros.nodes.params import PERCEPTION_PARAMS, ParamSpec, flatten_yaml_params
from perception.ros.nodes.params_yaml import DEPLOYED, YAML_PATH, main, render


def test_committed_yaml_is_the_generated_one() -> None:
    assert YAML_PATH.read_text(encoding="utf-8") == render(), (
        f"{YAML_PATH} differs from PERCEPTION_PARAMS (perception/ros/nodes/params.py): run `make params-yaml`")


def test_generated_yaml_loads_to_the_table() -> None:
    params = flatten_yaml_params(yaml.safe_load(render())["/**"]["ros__parameters"])
    expected = {p.name: DEPLOYED.get(p.name, p.default) for p in PERCEPTION_PARAMS}
    empty = {k for k, v in expected.items() if isinstance(v, list | tuple) and not v}  # commented out
    assert empty == {"objects.base_T_cam", "objects.base_T_lidar", "shedding.priority", "shedding.max_rate_hz"}
    assert params == {k: list(v) if isinstance(v, tuple) else v for k, v in expected.items() if k not in empty}
    for name, value in params.items():
        assert type(value) is type(expected[name]) or isinstance(expected[name], tuple), name
    assert set(DEPLOYED) <= {p.name for p in PERCEPTION_PARAMS}


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "perception.yaml"
    assert main(["--out", str(out)]) == 0 and main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("score_threshold: 0.3", "score_threshold: 0.4"))
    assert main(["--check", "--out", str(out)]) == 1


def test_a_split_group_is_refused() -> None:
    specs = (ParamSpec("a.x", 1, "x"), ParamSpec("b", 2, "b"), ParamSpec("a.y", 3, "y"))
    with pytest.raises(ValueError, match="not together"):
        render(specs, {})


def test_config_dataclass_defaults_are_the_parameter_tables() -> None:
    """The node's config dataclasses (what code builds without parameters, e.g. tests and tools) default to
    exactly what the parameter table declares: a default changed in one place and not the other fails here."""
    import dataclasses

    from perception.ros.nodes.params import PerceptionNodeConfig, default_values, node_config

    declared, built = node_config(default_values()), PerceptionNodeConfig()
    diff = []
    for f in dataclasses.fields(built):
        a, b = getattr(built, f.name), getattr(declared, f.name)
        if dataclasses.is_dataclass(a):
            diff += [f"{f.name}.{g.name}: dataclass {getattr(a, g.name)!r} vs table {getattr(b, g.name)!r}"
                     for g in dataclasses.fields(a) if getattr(a, g.name) != getattr(b, g.name)]
        elif a != b:
            diff.append(f"{f.name}: dataclass {a!r} vs table {b!r}")
    assert not diff, "\n".join(diff)

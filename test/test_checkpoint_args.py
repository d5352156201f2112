"""Every verb that takes a checkpoint accepts a shipped name, through one resolver
(:func:`perception.weights.checkpoint_arg` -> :func:`perception.weights.resolve_checkpoint`)."""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception.cli import build_parser
from perception.weights import WEIGHTS_DIR, checkpoint_arg, resolve_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "stan_s_temporal"

# verb argv (before --checkpoint) -> the other arguments the verb requires
VERBS_WITH_CHECKPOINT: dict[tuple[str, ...], tuple[str, ...]] = {
    ("eval",): (),
    ("demo",): (),
    ("export",): ("--out", "x.onnx"),
    ("replay",): ("some_bag",),
    ("bench", "runtime"): (),
    ("bench", "ros"): (),
    ("bench", "throughput"): (),
}


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser(argv).parse_args(argv)


@pytest.mark.parametrize("verb", list(VERBS_WITH_CHECKPOINT), ids=" ".join)
def test_every_verb_resolves_a_shipped_name(verb: tuple[str, ...]) -> None:
    args = _parse([*verb, "--checkpoint", SHIPPED, *VERBS_WITH_CHECKPOINT[verb]])
    got = args.checkpoint[0] if isinstance(args.checkpoint, list) else args.checkpoint
    assert Path(got) == WEIGHTS_DIR / SHIPPED


@pytest.mark.parametrize("verb", list(VERBS_WITH_CHECKPOINT), ids=" ".join)
def test_every_verb_refuses_an_unknown_name_with_the_choices(
    verb: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        _parse([*verb, "--checkpoint", "stan_s_temporl", *VERBS_WITH_CHECKPOINT[verb]])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no shipped checkpoint named 'stan_s_temporl'" in err and SHIPPED in err


def test_no_checkpoint_argument_bypasses_the_resolver() -> None:
    """Every ``add_argument("--checkpoint", ...)`` in the package uses ``type=checkpoint_arg``."""
    found = []
    for path in (ROOT / "perception").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == "--checkpoint"):
                types = [ast.unparse(k.value) for k in node.keywords if k.arg == "type"]
                found.append((path.relative_to(ROOT).as_posix(), types))
    assert len(found) >= len(VERBS_WITH_CHECKPOINT)
    assert all(t == ["checkpoint_arg"] for _, t in found), found


def test_checkpoint_arg_takes_paths_too(tmp_path: Path) -> None:
    stem = resolve_checkpoint("stan_s")
    assert checkpoint_arg(str(stem) + ".safetensors") == str(stem)
    with pytest.raises(argparse.ArgumentTypeError, match=r"no file .*nothing\.safetensors"):
        checkpoint_arg(str(tmp_path / "nothing"))
    with pytest.raises(argparse.ArgumentTypeError, match="shipped name"):
        checkpoint_arg(" ")


def test_eval_runs_a_shipped_name(tmp_path: Path) -> None:
    """The reported failure, run for real: ``perception eval --checkpoint stan_s_temporal``."""
    out = tmp_path / "eval"
    r = subprocess.run(
        [sys.executable, "-m", "perception.cli", "eval", "--checkpoint", SHIPPED, "--seeds", "1000:1001",
         "--frames", "2", "--width", "128", "--height", "64", "--cache-dir", "", "--no-progress", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / SHIPPED / "metrics.json").read_text())
    assert metrics["model"] == SHIPPED and metrics["latency_ms"]["frames"] == 2


def test_train_init_takes_a_shipped_name() -> None:
    pytest.importorskip("torch")
    from perception.models.registry import build_model
    from perception.train.trainer import warm_start

    counts = warm_start(build_model("stan_s"), "stan_s")
    assert counts

"""The `perception` console script as a user runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perception.cli import VERBS

EXE = Path(sys.executable).parent / "perception"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout)


def test_top_level_help_lists_every_verb() -> None:
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    for verb in VERBS:
        assert verb in r.stdout


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_has_help(verb: str) -> None:
    r = _run(verb, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: perception " + verb in r.stdout


def test_bad_usage_exits_nonzero_with_message(tmp_path: Path) -> None:
    r = _run("train", "--set", "stepz=3", "--out", str(tmp_path))
    assert r.returncode == 2
    assert "unknown training option" in r.stderr
    r = _run("eval", "--checkpoint", "stan_s", "--seeds", "5:2")
    assert r.returncode == 2 and "empty" in r.stderr
    # a missing init or calibration source is refused before the slow part (rendering drives, exporting), no traceback
    cache = f"cache_dir={tmp_path}/sim"
    for argv in (["train", "--set", 'init="nosuch"', "--set", cache], ["train", "--graft", "--set", 'parts="fine"',
                                                                         "--set", 'init="nosuch"', "--set", cache]):
        r = _run(*argv, "--out", str(tmp_path / "run"))
        assert r.returncode == 2 and "init: no file nosuch.safetensors" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "sim").exists()
    r = _run("export", "--checkpoint", "stan_s", "--out", str(tmp_path / "x.onnx"), "--int8",
             "--calib-images", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no calibration source" in r.stderr and not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("argv", [["bench", "runtime", "--iters", "0"], ["bench", "model", "--warmup", "-1"],
                                  ["sim", "--frames", "-3"], ["bench", "pipeline", "--cameras", "0"]])
def test_count_options_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`perception bench runtime --iters -3` ran the whole benchmark, then failed on an empty median."""
    from perception.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "must be an integer >=" in capsys.readouterr().err

"""The torch backend does not spin against other processes (issue 10, defect 8).

OpenMP reads its wait policy once, when torch loads it: these tests start fresh interpreters and ask
GNU libgomp itself how long its idle threads spin (``OMP_DISPLAY_ENV=VERBOSE`` prints its settings at
load; ``GOMP_SPINCOUNT`` is 300000 by default, 0 with a passive policy). The loaded-machine figures
come from ``perception bench runtime`` (its ``loaded_ms`` column).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception.core.hardware import PASSIVE_OPENMP_ENV, apply_passive_openmp, available_cpus, cgroup_cpu_quota

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in PASSIVE_OPENMP_ENV and k != "OMP_NUM_THREADS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**base, "PYTHONPATH": str(ROOT), "OMP_DISPLAY_ENV": "VERBOSE", **env}, cwd=ROOT)


def _spin_count(stderr: str) -> int:
    """How many times libgomp's idle threads spin before they sleep."""
    for line in stderr.splitlines():
        if line.strip().startswith("GOMP_SPINCOUNT ="):
            return int(line.split("=", 1)[1].strip().strip("'"))
    pytest.skip("this torch build's OpenMP does not display its spin count (not GNU libgomp)")


@pytest.mark.parametrize("entry", ["perception.cli", "perception.ros.nodes.params", "perception.runtime.torch_backend"])
def test_openmp_threads_do_not_spin_when_torch_loads_after_any_entry_point(entry: str) -> None:
    r = _python(f"import {entry}; import torch; torch.ones(4) @ torch.ones(4)")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _spin_count(r.stderr) == 0


def test_an_explicit_wait_policy_is_kept() -> None:
    r = _python("import perception, torch", OMP_WAIT_POLICY="ACTIVE")
    assert _spin_count(r.stderr) > 300000
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert apply_passive_openmp(env) == {"KMP_BLOCKTIME": "0"} and env["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to take one away")
def test_threads_follow_the_cpus_the_process_gets() -> None:
    """A process pinned to one CPU after torch started (taskset -p, a launcher's affinity) runs one thread,
    not the machine's core count of threads time-slicing on one CPU."""
    code = (
        "import os, torch\n"
        "from perception.models.registry import build_model\n"
        "from perception.runtime.torch_backend import TorchBackend\n"
        "before = torch.get_num_threads()\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "b = TorchBackend(build_model('stan_tiny'), (64, 64)); b.load()\n"
        "print(before, torch.get_num_threads(), b.threads)\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr[-2000:]
    before, after, used = map(int, r.stdout.split())
    assert before >= 2 and after == used == 1


def test_cgroup_quota_caps_the_cpus(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) == 0.5 and available_cpus(v1) == 1

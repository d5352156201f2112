"""The default executor (a local spawn process pool) with real worker processes: every bag evaluated like a
plain in-process loop, results cached and skipped on a re-run, a crashed worker's bag retried alone and then
reported failed, a corrupt bag reported failed, and the CLI's baseline regression exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perception.eval.bags import evaluate_bag_offline
from perception.fleet.config import FleetConfig
from perception.fleet.executors import WORKER_DIED
from perception.fleet.run import RunOptions, run_fleet
from perception.fleet.worker import CRASH_ENV, build_perceptor

CFG = FleetConfig(untrained="stan_tiny", input_size=(96, 160), retries=1)
ROOT = Path(__file__).resolve().parents[2]


def _rows(result: dict) -> dict[str, dict]:
    return {Path(r["bag"]).name: r for r in result["bags"]}


def test_pool_matches_a_plain_loop_caches_and_survives_a_crash_and_a_corrupt_bag(
        fleet_bags: list[Path], corrupt_bag: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv(CRASH_ENV, f"drive_22@{marker}")  # the worker running drive_22 dies, the first time only
    cache = tmp_path / "cache"
    reported: list[str] = []
    bags = [*fleet_bags, corrupt_bag]
    result = run_fleet(bags, CFG, RunOptions("local", 2, "", str(cache)), lambda o: reported.append(o.task.name))
    rows = _rows(result)
    assert marker.exists(), "the test hook did not kill a worker"
    assert sorted(reported) == sorted(r["bag"] for r in result["bags"]) and len(reported) == 4  # none dropped
    assert rows["drive_22"]["status"] == "ok" and rows["drive_22"]["attempts"] == 2  # retried after the crash
    assert rows["drive_21"]["status"] == rows["drive_23"]["status"] == "ok"
    bad = rows["drive_bad"]
    assert bad["status"] == "failed" and bad["attempts"] == 2 and "damaged" in bad["error"]
    assert result["bags"][0]["bag"].endswith("drive_bad")  # failed bags first
    assert result["fleet"]["failed"] == 1 and result["fleet"]["frames"] == 9

    # the pool's numbers are the plain in-process loop's (same model recipe, single-threaded)
    import cv2
    import torch

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        perceptor = build_perceptor(CFG)
        local = evaluate_bag_offline(fleet_bags[0], perceptor, CFG.score_thresh)
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    for key in ("mAP50", "mIoU", "flicker"):
        assert rows["drive_21"][key] == pytest.approx(local["summary"][key], abs=1e-9)

    # a re-run takes the finished bags from the cache; the failed one is tried again (and fails again)
    monkeypatch.delenv(CRASH_ENV)
    again = run_fleet(bags, CFG, RunOptions("local", 2, "", str(cache)))
    assert again["run"]["evaluated"] == 1 and again["fleet"]["cached"] == 3
    assert [(r["bag"], r.get("mAP50")) for r in again["bags"]] == [(r["bag"], r.get("mAP50")) for r in result["bags"]]
    assert (cache / "bag_hashes.json").is_file()
    assert len(list(cache.glob("*.json"))) == 4  # 3 finished bags (the failed one is not cached) + the hash memo


def test_a_bag_that_always_kills_its_worker_is_retried_then_reported_failed(
        fleet_bags: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_ENV, "drive_21")
    result = run_fleet(fleet_bags, CFG, RunOptions("local", 2, "", ""))
    rows = _rows(result)
    assert rows["drive_21"]["status"] == "failed" and rows["drive_21"]["error"] == WORKER_DIED
    # its first run may have shared the pool with another bag (not blamed: either could have died), then it ran
    # 1 + retries times alone
    assert rows["drive_21"]["attempts"] == 3
    # the others all finish: a bag in flight when the pool went down is run again (2 attempts), one that finished
    # before or waited in the queue runs once; which of them was in flight depends on the workers' start-up timing
    others = [r for name, r in rows.items() if name != "drive_21"]
    assert others and all(r["status"] == "ok" and r["attempts"] in (1, 2) for r in others)
    assert sum(r["attempts"] == 2 for r in others) <= 1  # at most one neighbour shared the pool with drive_21


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perception.cli", "eval", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_report_and_baseline_regression_exit_code(fleet_bags: list[Path], tmp_path: Path) -> None:
    common = ["--bags", str(fleet_bags[0].parent), "--untrained", "stan_tiny", "--height", "96", "--width", "160",
              "--result-cache", str(tmp_path / "cache"), "--workers", "2", "--no-progress"]
    first = _cli(*common, "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    fleet = json.loads((tmp_path / "a" / "fleet.json").read_text(encoding="utf-8"))
    assert fleet["fleet"]["ok"] == 3 and fleet["run"]["evaluated"] == 3
    html = (tmp_path / "a" / "fleet.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and all(b.name in html for b in fleet_bags)

    # a baseline in which drive_22 was much better: exit 1, drive_22 named; the re-run comes from the cache
    for row in fleet["bags"]:
        if row["bag"] == "drive_22":
            row["mIoU"] = (row["mIoU"] or 0.0) + 0.5
    (tmp_path / "base.json").write_text(json.dumps(fleet), encoding="utf-8")
    second = _cli(*common, "--out", str(tmp_path / "b"), "--baseline", str(tmp_path / "base.json"))
    assert second.returncode == 1, second.stdout + second.stderr
    assert "REGRESSION" in second.stdout and "drive_22: mIoU" in second.stdout
    assert "drive_21:" not in second.stdout and "drive_23:" not in second.stdout
    b = json.loads((tmp_path / "b" / "fleet.json").read_text(encoding="utf-8"))
    assert b["run"]["evaluated"] == 0 and b["fleet"]["cached"] == 3


ENGINE_FREE = """
import sys
sys.modules['dask'] = None          # importing them now raises ImportError: the engine is not installed
sys.modules['distributed'] = None
from perception.cli import main
rc = main(sys.argv[1:])
assert 'dask' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}
sys.exit(rc)
"""


def test_default_path_needs_no_engine_and_dask_asks_for_the_extra(fleet_bags: list[Path], tmp_path: Path) -> None:
    args = ["eval", "--bags", str(fleet_bags[0]), "--untrained", "stan_tiny", "--height", "96", "--width", "160",
            "--result-cache", "", "--workers", "1", "--no-progress"]
    run = subprocess.run([sys.executable, "-c", ENGINE_FREE, *args, "--out", str(tmp_path / "o")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    run = subprocess.run([sys.executable, "-c", ENGINE_FREE, *args, "--engine", "dask", "--out", str(tmp_path / "d")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "pip install '.[fleet]'" in run.stderr

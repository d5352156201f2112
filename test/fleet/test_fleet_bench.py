"""`perception bench fleet` prints its table (tiny model, 3 short bags, local pool with 1 and 2 workers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception.cli import main


def test_bench_fleet_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "fleet", "--bags", "3", "--frames", "2", "--width", "160", "--height", "96",
               "--untrained", "stan_tiny", "--engines", "local", "--workers", "1,2", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert rows[0].startswith("| run |") and len(rows) == 4  # header, plain loop, pool x1, pool x2
    assert rows[3].startswith("| local pool | 2 |")
    runs = json.loads((tmp_path / "fleet_bench.json").read_text(encoding="utf-8"))["runs"]
    assert [len(r["done_at"]) for r in runs] == [3, 3, 3]
    assert all(b > 500 for r in runs[1:] for b in r["result_bytes"])

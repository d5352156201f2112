"""``perception bench soak``: its figures (RSS growth, level consistency) and a seconds-long real run."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from ros_testing import ROOT, needs_model

from perception.ros.tools import bench_soak


def test_rss_growth_uses_medians_after_warmup() -> None:
    rss = [(float(t), 100 * 1024 if t < 5 else 200 * 1024 + (t > 50) * 8 * 1024) for t in range(61)]
    base, final, growth = bench_soak.rss_growth_pct(rss, warmup=5.0)
    assert (base, final) == (200.0, 208.0) and growth == pytest.approx(4.0)


def test_levels_consistency() -> None:
    assert not bench_soak.levels_consistent(0.27, Counter({0: 40}))[0]  # the soak: 73 % dropped, all OK
    assert bench_soak.levels_consistent(0.27, Counter({0: 10, 1: 30}))[0]
    assert not bench_soak.levels_consistent(0.70, Counter({0: 40}))[0]  # 30 % dropped stale, all OK
    assert bench_soak.levels_consistent(0.99, Counter({0: 40}))[0]
    assert not bench_soak.levels_consistent(0.99, Counter({1: 40}))[0]
    assert not bench_soak.levels_consistent(0.99, Counter())[0]


def test_short_soak_runs_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_model()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    p = argparse.ArgumentParser()
    bench_soak.add_arguments(p)
    args = p.parse_args(["--cameras", "2", "--minutes", "0.1", "--rate", "5", "--model", "stan_tiny_temporal",
                         "--input-size", "64x128", "--threads", "1", "--width", "160", "--height", "96",
                         "--windows", "2", "--warmup", "1", "--out", str(tmp_path)])
    res = bench_soak.run_soak(args, tmp_path, log=lambda _: None)
    assert not res["died"] and not res["log_problems"]
    assert sum(res["published"].values()) >= 50 and sum(res["answered"].values()) >= 0.8 * sum(
        res["published"].values())
    assert len(res["rss"]) >= 4 and len(res["windows"]) >= 2
    rep = bench_soak.report(res, args)
    md, js = rep.write(tmp_path, "bench_soak")
    assert "RSS growth" in md.read_text() and js.exists()

"""A fleet run: bags -> tasks (hash, cache key) -> cached results or an executor -> rows -> fleet result."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from perception.fleet.aggregate import bag_row, fleet_summary, regressions, worst_first
from perception.fleet.bags import HashMemo
from perception.fleet.config import RESULT_FORMAT, BagTask, FleetConfig, cache_key
from perception.fleet.executors import DaskEngine, Outcome, run_local


class ResultCache:
    """One JSON file per finished bag, ``<root>/<key>.json`` (written atomically); None: no cache."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def get(self, key: str) -> dict[str, Any] | None:
        if self.root is None:
            return None
        try:
            data = json.loads((self.root / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("key") == key else None

    def put(self, key: str, result: dict[str, Any]) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(result) + "\n", encoding="utf-8")
        tmp.replace(self.root / f"{key}.json")


@dataclass(frozen=True)
class RunOptions:
    engine: str = "local"  # local | dask
    workers: int = 2
    address: str = ""  # dask: an existing scheduler (tcp://host:port); empty: a LocalCluster on 127.0.0.1
    cache_dir: str = "runs/fleet/cache"  # empty: no cache


def make_tasks(bags: Sequence[Path], model_sha: str, cfg: FleetConfig, memo: HashMemo | None = None) -> list[BagTask]:
    """One task per bag; names are the paths relative to the bags' common folder (unique, readable)."""
    root = Path(os.path.commonpath([str(b.parent) for b in bags]))
    memo = memo or HashMemo(None)
    tasks = []
    for b in bags:
        sha = memo.bag_hash(b)
        tasks.append(BagTask(str(b), str(b.relative_to(root)), sha, cache_key(sha, model_sha, cfg)))
    memo.save()
    return tasks


def run_fleet(bags: Sequence[Path], cfg: FleetConfig, opts: RunOptions,
              progress: Callable[[Outcome], None] | None = None, baseline: dict[str, Any] | None = None,
              tolerance: float = 0.02) -> dict[str, Any]:
    """Evaluate every bag (cached ones are not re-run) and return the fleet result (JSON-able)."""
    t0 = time.perf_counter()
    model_sha = cfg.model_sha()
    cache = ResultCache(Path(opts.cache_dir) if opts.cache_dir else None)
    tasks = make_tasks(bags, model_sha, cfg, HashMemo(cache.root / "bag_hashes.json" if cache.root else None))
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for t in tasks:
        hit = cache.get(t.key)
        if hit is not None:
            rows[t.key] = bag_row(t.name, hit, cached=True)
            if progress:
                progress(Outcome(t, hit))
        else:
            todo.append(t)

    def done(out: Outcome) -> None:
        if out.result is not None:
            cache.put(out.task.key, out.result)
        rows[out.task.key] = bag_row(out.task.name, out.result, out.error, attempts=out.attempts)
        if progress:
            progress(out)

    engine_start_s = 0.0
    if todo:
        if opts.engine == "dask":
            with DaskEngine(opts.workers, opts.address, retries=cfg.retries) as engine:
                engine_start_s = engine.start_s
                engine.run(todo, cfg, done)
        else:
            run_local(todo, cfg, opts.workers, done)
    ordered = worst_first([rows[t.key] for t in tasks])  # every task has a row: none dropped
    fleet = fleet_summary(ordered)
    wall = time.perf_counter() - t0
    path = cfg.checkpoint_path()
    result: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "model": {"name": path.stem if path else f"{cfg.untrained} (untrained)", "sha256": model_sha,
                  "checkpoint": str(path or "")},
        "config": asdict(cfg),
        "run": {"engine": opts.engine, "workers": opts.workers, "address": opts.address, "wall_s": wall,
                "engine_start_s": engine_start_s, "evaluated": len(todo),
                "bags_per_s": len(todo) / wall if todo and wall > 0 else None},
        "fleet": fleet,
        "bags": ordered,
    }
    if baseline is not None:
        result["regressions"] = regressions(ordered, fleet, baseline, tolerance)
    return result

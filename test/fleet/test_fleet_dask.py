"""The optional engine (Dask distributed, `pip install .[fleet]`) is loopback-only: a LocalCluster on 127.0.0.1
with 2 worker processes, checked through the engine's own address list AND every socket its processes opened;
fleet tasks run on it for real (one bag kills its worker: retried by the scheduler, then reported failed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perception.fleet.config import FleetConfig
from perception.fleet.executors import WORKER_DIED, DaskEngine, Outcome
from perception.fleet.run import make_tasks
from perception.fleet.worker import CRASH_ENV

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

LOOPBACK = "127.0.0.1"


def _inet(proc: psutil.Process) -> set[tuple]:
    return {(c.type, c.laddr, c.raddr, c.status) for c in proc.net_connections(kind="inet")}


def _host(address: str) -> str:
    return address.removeprefix("tcp://").rsplit(":", 1)[0]


def test_dask_engine_is_loopback_only_and_runs_fleet_tasks(fleet_bags: list[Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_ENV, "drive_21")  # inherited by the worker processes: drive_21 kills its worker
    me = psutil.Process()
    before_children = {p.pid for p in me.children(recursive=True)}
    before_sockets = _inet(me)
    cfg = FleetConfig(untrained="stan_tiny", input_size=(96, 160), retries=1)
    done: list[Outcome] = []
    environ = dict(os.environ)
    with DaskEngine(workers=2, retries=cfg.retries) as engine:
        info = engine.client.scheduler_info()
        addresses = [info["address"], *list(info["workers"])]
        addresses += [w["nanny"] for w in info["workers"].values()]
        assert len(info["workers"]) == 2
        assert all(a.startswith("tcp://") and _host(a) == LOOPBACK for a in addresses), addresses
        assert all(w["host"] == LOOPBACK for w in info["workers"].values())
        worker_pids = set(engine.client.run(os.getpid).values())
        started = {p.pid for p in me.children(recursive=True)} - before_children
        assert worker_pids <= started and len(worker_pids) == 2

        outcomes = engine.run(make_tasks(fleet_bags[:2], cfg.model_sha(), cfg), cfg, done.append)

        # every socket the engine opened: the workers' (all of them) and the new ones of this process (scheduler,
        # nannies, client); listening or connected, each end on 127.0.0.1
        sockets = set().union(*(_inet(psutil.Process(pid)) for pid in
                                ({p.pid for p in me.children(recursive=True)} - before_children)))
        sockets |= _inet(me) - before_sockets
        assert sockets, "no engine sockets seen: the check would prove nothing"
        listening = [s for s in sockets if s[3] == psutil.CONN_LISTEN]
        assert listening
        for kind, laddr, raddr, status in sockets:
            assert laddr.ip == LOOPBACK, (kind, laddr, raddr, status)
            assert not raddr or raddr.ip == LOOPBACK, (kind, laddr, raddr, status)
        engine_pids = {p.pid for p in me.children(recursive=True)} - before_children

    # Dask's Nanny writes its pre-spawn environment (OMP_NUM_THREADS=1, ...) into this process's os.environ;
    # the engine puts the caller's back, so processes started later are not silently single-threaded (what Dask
    # keeps for itself: its parent pid, and the hash seed it shares with every worker it starts)
    dask_own = {"PYTHONHASHSEED", "__DASK_PARENT_PID"}
    assert {k: v for k, v in os.environ.items() if k not in dask_own} == {
        k: v for k, v in environ.items() if k not in dask_own}
    rows = {Path(o.task.name).name: o for o in outcomes}
    assert [o.task.name for o in done] and len(done) == 2
    assert rows["drive_22"].result is not None and rows["drive_22"].result["metrics"]["coverage"]["scored"] == 3
    assert rows["drive_21"].result is None and rows["drive_21"].error == WORKER_DIED
    # torn down: none of the processes we started is left (end only those, by pid, if one is)
    procs = []
    for pid in engine_pids:
        try:
            p = psutil.Process(pid)
            if not any("multiprocessing.resource_tracker" in a for a in p.cmdline()):  # this process's, for life
                procs.append(p)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    left = [(p.pid, p.cmdline()) for p in alive]
    for p in alive:
        p.kill()
    assert not left, f"engine processes left after teardown: {left}"

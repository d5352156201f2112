"""Where fleet tasks run: a local process pool (default, no engine) or a Dask cluster (``--engine dask``).

Both run :func:`perception.fleet.worker.run_task` once per bag in single-threaded worker processes that
keep their model loaded between bags, report each finished bag through ``on_done`` as it completes,
and never drop a bag: every task ends as a result or as a failure with its reason.

Crashes (a worker process that dies) are retried ``cfg.retries`` times:

- local pool: when a worker dies the pool breaks and every task in flight fails with it, so those are
  suspects, not culprits: each is re-run ALONE in a fresh pool; a task whose lone run dies is charged
  one attempt, and after ``1 + retries`` charged attempts it is reported failed. At most ``workers``
  tasks are in flight, so a crash never touches the bags still queued.
- Dask: the scheduler does the same bookkeeping (a worker death marks the tasks it was running as
  suspicious; ``distributed.scheduler.allowed-failures`` = ``retries``), then raises KilledWorker.

An exception inside a task (a corrupt bag) is exact, so it is charged directly and retried likewise.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from perception.fleet import FleetError
from perception.fleet.config import BagTask, FleetConfig
from perception.fleet.worker import init_worker, run_task

ENGINES = ("local", "dask")
WORKER_DIED = "worker process died while evaluating this bag (crash, kill or out of memory)"


@dataclass
class Outcome:
    task: BagTask
    result: dict[str, Any] | None  # None: failed
    error: str = ""
    attempts: int = 1


OnDone = Callable[[Outcome], None]


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def run_local(tasks: Sequence[BagTask], cfg: FleetConfig, workers: int, on_done: OnDone) -> list[Outcome]:
    """Run ``tasks`` on a local spawn-context process pool of ``workers`` single-threaded processes."""
    ctx = multiprocessing.get_context("spawn")
    queue: deque[BagTask] = deque(tasks)
    suspects: deque[BagTask] = deque()
    charged: dict[str, int] = {}  # crashes / errors blamed on the task
    started: dict[str, int] = {}  # runs of the task (attempts)
    outcomes: list[Outcome] = []
    inflight: dict[Future[dict[str, Any]], BagTask] = {}
    alone: set[str] = set()  # keys of tasks running without company (a crash there is theirs)
    pool: ProcessPoolExecutor | None = None
    broken = False

    def finish(task: BagTask, result: dict[str, Any] | None, error: str = "") -> None:
        out = Outcome(task, result, error, started[task.key])
        outcomes.append(out)
        on_done(out)

    def charge(task: BagTask, error: str, retry: deque[BagTask]) -> None:
        charged[task.key] = charged.get(task.key, 0) + 1
        if charged[task.key] > cfg.retries:
            finish(task, None, error)
        else:
            retry.append(task)

    def submit(pool: ProcessPoolExecutor, task: BagTask) -> bool:
        """False: the pool broke before it took the task (a worker died since the last look): not run, not
        charged."""
        try:
            fut = pool.submit(run_task, task, cfg)
        except BrokenProcessPool:
            return False
        started[task.key] = started.get(task.key, 0) + 1
        inflight[fut] = task
        return True

    try:
        while queue or suspects or inflight:
            if pool is None:
                pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(cfg.threads,))
                broken = False
            if not broken:
                if suspects:
                    if not inflight:  # a suspect runs alone, so a crash is its own
                        task = suspects.popleft()
                        alone.add(task.key)
                        if not submit(pool, task):
                            alone.discard(task.key)
                            suspects.appendleft(task)
                            broken = True
                elif not alone:  # no company for a suspect still running alone
                    while queue and len(inflight) < workers:
                        task = queue.popleft()
                        if not submit(pool, task):
                            queue.appendleft(task)
                            broken = True
                            break
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in done:
                task = inflight.pop(fut)
                was_alone = task.key in alone
                alone.discard(task.key)
                try:
                    finish(task, fut.result())
                except BrokenProcessPool:
                    broken = True
                    if was_alone:
                        charge(task, WORKER_DIED, suspects)
                    else:
                        suspects.append(task)
                except Exception as e:  # the task's own error (bad bag): exact, charge it
                    charge(task, _error_text(e), queue)
            if broken and not inflight:
                pool.shutdown(wait=True, cancel_futures=True)
                pool = None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


@dataclass
class DaskEngine:
    """A Dask client: on a new LocalCluster bound to ``host`` (default 127.0.0.1), or on ``address``."""

    workers: int = 2
    address: str = ""
    host: str = "127.0.0.1"
    retries: int = 1
    client: Any = None
    cluster: Any = None
    start_s: float = 0.0
    saved_environ: dict[str, str | None] = field(default_factory=dict)

    def __enter__(self) -> DaskEngine:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as e:
            raise FleetError("--engine dask needs Dask distributed: pip install '.[fleet]' "
                             f"(dask[distributed]); {e}") from e
        t0 = time.perf_counter()
        # Dask's Nanny sets its pre-spawn environment (OMP/MKL/OPENBLAS_NUM_THREADS=1) in THIS process's
        # os.environ to pass it to the workers and leaves it there: put it back on exit, so every process this
        # one starts afterwards gets the caller's environment
        self.saved_environ = {k: os.environ.get(k) for k in dask.config.get("distributed.nanny.pre-spawn-environ", {})}
        if self.address:
            self.client = Client(self.address, timeout="30s")
        else:
            # read when the scheduler starts: a bag whose worker died this many extra times raises KilledWorker;
            # the workers' statistical profiler (a stack sample every 10 ms, holding the GIL) is off: it slowed
            # the evaluation inside a worker 2-3x on 2 cores
            with dask.config.set({"distributed.scheduler.allowed-failures": self.retries,
                                  "distributed.worker.profile.enabled": False}):
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                            host=self.host, dashboard_address=None, scheduler_port=0,
                                            protocol="tcp://", silence_logs=40)
            self.client = Client(self.cluster)
        self.start_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        for k, v in self.saved_environ.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def run(self, tasks: Sequence[BagTask], cfg: FleetConfig, on_done: OnDone) -> list[Outcome]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        attempts: dict[str, int] = {}

        def submit(task: BagTask) -> Any:
            attempts[task.key] = attempts.get(task.key, 0) + 1
            return self.client.submit(run_task, task, cfg, pure=False, key=f"bag-{task.key}-{attempts[task.key]}")

        by_future = {submit(t): t for t in tasks}
        seq = as_completed(list(by_future))
        outcomes: list[Outcome] = []
        for fut in seq:
            task = by_future.pop(fut)
            out: Outcome | None = None
            try:
                out = Outcome(task, fut.result(), attempts=attempts[task.key])
            except KilledWorker:
                out = Outcome(task, None, WORKER_DIED, attempts=self.retries + 1)
            except Exception as e:
                if attempts[task.key] > cfg.retries:
                    out = Outcome(task, None, _error_text(e), attempts=attempts[task.key])
                else:
                    again = submit(task)
                    by_future[again] = task
                    seq.add(again)
            fut.release()
            if out is not None:
                outcomes.append(out)
                on_done(out)
        return outcomes

"""The thread(s) that feed the queued frames to the runner, and restart it when it dies. No rclpy here.

Pipelining (``runtime.pipelining``, :func:`pipelining_enabled`): disabled, one worker thread runs convert ->
infer -> publish for each batch in turn. Enabled, three threads overlap them: convert (input slots ->
:class:`~perception.ros.nodes.queues.ConvertedFrames`, depth 1 per camera, newest wins: a converted frame
replaced before inference took it is shed like an input-slot drop), infer (->
:class:`~perception.ros.nodes.queues.Handoff`, depth 1 with backpressure: an inferred result is never thrown
away) and publish. The Python stages hold the GIL only briefly, so they add at most about one core of work next
to the runtime's intra-op threads.

If a worker thread dies anyway (a ``BaseException`` such as ``SystemExit`` escaping a backend),
:meth:`InferenceWorker.check` -- which the node calls with every diagnostics period -- reports it (ERROR in
/diagnostics for ``DEATH_REPORT_S``) and restarts the thread; a worker that dies ``max_restarts`` times within
``restart_window_s`` is not restarted again (:attr:`InferenceWorker.failure` says why), and the node then shuts
down and exits non-zero so that a supervisor restarts the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from perception.core.hardware import available_cpus
from perception.ros.errors import RosError
from perception.ros.nodes.queues import ConvertedFrames, Handoff, LatestFrameSlots, Pending
from perception.ros.nodes.runner import PerceptionRunner
from perception.ros.nodes.throttle import why

DEATH_REPORT_S = 10.0  # a worker death is reported ERROR for this long after its restart


def pipelining_enabled(mode: str, cpus: int | None = None) -> bool:
    """``runtime.pipelining``: enabled / disabled, or auto = enabled when this process may use >= 2 CPUs
    (affinity, cgroup quota)."""
    if mode not in ("auto", "enabled", "disabled"):
        raise RosError(f"runtime.pipelining must be auto, enabled or disabled, not {mode!r}")
    if mode != "auto":
        return mode == "enabled"
    return (available_cpus() if cpus is None else cpus) >= 2


class InferenceWorker:
    """The thread(s) that feed slots to the runner; ``stop`` joins them (finishing the current batch).

    ``pipelined`` False: one thread runs convert -> infer -> publish per batch. True: three stage threads
    (``perception-convert``, ``perception-inference``, ``perception-publish``) joined by
    :class:`ConvertedFrames` (newest wins per camera, replaced frames shed) and :class:`Handoff`
    (backpressure), so the next batch is converted and inferred while the last one is published.

    Nothing a batch raises ends a thread (the runner's stages catch every ``Exception``, and the loops
    catch what might escape). If one dies anyway (a ``BaseException``), the death is recorded; :meth:`check`
    restarts it and reports why -- unless deaths happened more than ``max_restarts`` times within
    ``restart_window_s``: then :attr:`failure` says why and it stays down.
    """

    def __init__(self, slots: LatestFrameSlots, runner: PerceptionRunner, max_batch: int,
                 max_restarts: int = 3, restart_window_s: float = 60.0, pipelined: bool = False) -> None:
        self._slots, self._runner, self._max_batch = slots, runner, max_batch
        self._stop = threading.Event()
        self._max_restarts, self._restart_window_s = max_restarts, restart_window_s
        self.pipelined = pipelined
        self.deaths: list[tuple[float, str]] = []  # (monotonic time, why) of every death
        self.failure = ""  # set when it died too often to be restarted again
        # the load-shedding scheduler (if any) chooses where inference takes from: the converted frames when pipelined
        self.converted = ConvertedFrames(slots.scheduler if pipelined else None)
        slots.choosing = slots.scheduler is not None and not pipelined
        self.inferred = Handoff()
        # thread name -> time.monotonic() of its last loop iteration (at least every 0.1 s when idle, after every
        # batch when busy): a thread stuck in a batch stops beating (the systemd watchdog reads these)
        self.beats: dict[str, float] = {}
        loops: dict[str, Callable[[], None]] = (
            {"perception-convert": self._convert_loop, "perception-inference": self._infer_loop,
             "perception-publish": self._publish_loop} if pipelined else {"perception-inference": self._loop})
        self._loops = loops
        self._threads = {name: self._new_thread(name) for name in loops}

    def _new_thread(self, name: str) -> threading.Thread:
        return threading.Thread(target=self._guard, args=(name,), name=name, daemon=True)

    def start(self) -> None:
        for t in self._threads.values():
            t.start()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads.values())

    def _guard(self, name: str) -> None:
        self.beats[name] = time.monotonic()
        try:
            self._loops[name]()
        except BaseException as e:  # recorded and reported: check() restarts the thread
            self.deaths.append((time.monotonic(), f"{name}: {why(e)}" if self.pipelined else why(e)))

    def _loop(self) -> None:
        items: list[Pending] = []
        try:
            while not self._stop.is_set():
                self.beats["perception-inference"] = time.monotonic()
                items = self._slots.take(0.1, self._max_batch, self._runner.gather_s(self._max_batch))
                if items and not self._stop.is_set():
                    try:
                        self._runner.process(items)
                    except Exception as e:  # process() raises nothing; a bug there still must not end us
                        self._runner.fail(items, e)
                items = []
        except BaseException as e:
            self._runner.fail(items, e)
            raise

    def _convert_loop(self) -> None:
        while not self._stop.is_set():
            self.beats["perception-convert"] = time.monotonic()
            items = self._slots.take(0.1, self._max_batch, self._runner.gather_s(self._max_batch))
            if not items or self._stop.is_set():
                continue
            try:
                batch = self._runner.convert(items)
            except Exception as e:  # convert() raises nothing; a bug there still must not end us
                self._runner.fail(items, e)
                continue
            for old, reason in self.converted.put(batch):  # newest wins: the replaced frame is shed
                self._runner.shed(old.camera, reason)

    def _infer_loop(self) -> None:
        while not self._stop.is_set():
            self.beats["perception-inference"] = time.monotonic()
            batch = self.converted.take(timeout=0.1, limit=self._max_batch)
            if not batch or self._stop.is_set():
                continue
            try:
                inferred = self._runner.infer(batch)
            except Exception as e:
                self._runner.fail([item for item, _ in batch], e)
                continue
            if inferred and not self.inferred.put(inferred):
                return  # closed while waiting: the node is going away, nothing more is published

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            self.beats["perception-publish"] = time.monotonic()
            inferred = self.inferred.take(timeout=0.1)
            if not inferred:
                continue
            try:
                self._runner.publish(inferred)
            except Exception as e:
                self._runner.fail([item for item, _ in inferred], e)

    def check(self) -> str | None:
        """Restart dead threads; returns why the last one died (None: all are running, or stopped on purpose).
        When deaths happened more than ``max_restarts`` times within ``restart_window_s``, nothing is
        restarted and :attr:`failure` is set."""
        dead = [n for n, t in self._threads.items() if not t.is_alive() and t.ident]
        if self._stop.is_set() or not dead or self.failure:
            return None
        now = time.monotonic()
        why = self.deaths[-1][1] if self.deaths else "ended without an error"
        recent = [t for t, _ in self.deaths if now - t < self._restart_window_s]
        if len(recent) > self._max_restarts:
            self.failure = (f"the inference worker died {len(recent)} times in {self._restart_window_s:g} s "
                            f"(last: {why})")
            return why
        for name in dead:
            self._threads[name] = self._new_thread(name)
            self._threads[name].start()
        return why

    def health(self) -> tuple[str, str]:
        """("error", why) for ``DEATH_REPORT_S`` after a death or once it failed for good, else ("ok", "")."""
        if self.failure:
            return "error", self.failure
        started = all(t.ident for t in self._threads.values())
        if self.deaths and time.monotonic() - self.deaths[-1][0] < DEATH_REPORT_S:
            state = "restarted" if self.alive() else "not running"
            return "error", (f"inference worker died ({self.deaths[-1][1]}), {state}; "
                             f"{len(self.deaths)} death(s) so far")
        if not self._stop.is_set() and started and not self.alive():
            return "error", "inference worker is not running"
        return "ok", ""

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._runner.close()
        self._slots.close()
        self.converted.close()
        self.inferred.close()
        end = time.monotonic() + timeout
        for t in self._threads.values():
            if t.is_alive():
                t.join(max(0.0, end - time.monotonic()))


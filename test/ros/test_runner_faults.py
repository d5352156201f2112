"""Fault injection into the inference worker with REAL backends (a tiny untrained torch network).

The faults are injected by subclassing the real torch backend (it raises / sleeps / returns NaN at
a chosen frame and otherwise runs the network), and registered as a runtime of the selection table
so that the real fallback chain (:class:`perception.runtime.select.FallbackBackend`) runs it.
No ROS graph: the runner, the slots and the worker thread are driven directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("torch")

import torch
from ros_testing import image_msg, rgb_image
from sensor_msgs.msg import Image

from perception.models.registry import build_model
from perception.pipeline.perceptor import Perceptor, PerceptorConfig
from perception.ros import convert
from perception.ros.nodes import engine, outputs, queues, runner
from perception.ros.nodes.params import node_config
from perception.ros.nodes.stats import HealthThresholds, NodeStats
from perception.ros.nodes.worker import InferenceWorker
from perception.runtime import select
from perception.runtime.select import BackendEntry, FallbackBackend, ModelSource, RuntimeConfig
from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

SIZE = (64, 128)


class Fatal(BaseException):
    """Not an Exception: escapes every ``except Exception``."""


class FaultyTorch(TorchBackend):
    """The real torch backend, with one fault injected at the calls listed in ``plan`` (shared counter)."""

    def __init__(self, model: Any, size: tuple[int, int], plan: dict[int, str], calls: list[int]) -> None:
        super().__init__(model, size, TorchBackendConfig(threads=1))
        self.plan, self.calls = plan, calls

    def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        n = len(self.calls)
        self.calls.append(n)
        fault = self.plan.get(n, "")
        if fault == "raise":
            raise RuntimeError(f"injected fault at call {n}")
        if fault == "fatal":
            raise Fatal(f"injected fatal at call {n}")
        if fault == "slow":
            time.sleep(0.8)
        out = super().infer(inputs, skip)
        if fault == "nan":
            out = {k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in out.items()}
        return out


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict[int, str]], list[int]]:
    """Make runtime ``name`` of the selection table a FaultyTorch running ``plan``; returns its call log."""

    def make(name: str, plan: dict[int, str]) -> list[int]:
        calls: list[int] = []

        def factory(source: ModelSource, cfg: RuntimeConfig) -> FaultyTorch:
            assert source.module_factory is not None
            return FaultyTorch(source.module_factory(), source.input_size, plan, calls)

        monkeypatch.setitem(select.BACKENDS, name, BackendEntry(lambda s, c: None, factory))
        return calls

    return make


def _net() -> Any:
    torch.manual_seed(0)
    return build_model("stan_tiny_temporal")


class Rig:
    """A real Perceptor behind a FallbackBackend, a runner, slots and a running worker."""

    def __init__(self, backend: str, thresholds: HealthThresholds | None = None, max_restarts: int = 3) -> None:
        torch.set_num_threads(1)
        self.backend = FallbackBackend(ModelSource(module_factory=_net, input_size=SIZE),
                                       RuntimeConfig(backend=backend, threads=1))
        self.backend.load()
        self.cfg = node_config({"cameras": ["a"], "model.input_height": SIZE[0], "model.input_width": SIZE[1]})
        self.stats = NodeStats(("a",), thresholds)
        self.published: list[tuple[str, str, Any]] = []
        self.warnings: list[str] = []
        self.runner = runner.PerceptionRunner(
            Perceptor(self.backend, PerceptorConfig(score_thresh=0.0, max_det=5)), self.cfg,
            lambda c, k, m: self.published.append((c, k, m)), self.stats, warn=self.warnings.append)
        self.slots = queues.LatestFrameSlots(("a",))
        self.worker = InferenceWorker(self.slots, self.runner, 1, max_restarts=max_restarts)
        self.worker.start()

    def answered(self, stamp: float) -> bool:
        return any(k == outputs.DETECTIONS and convert.stamp_to_seconds(m.header.stamp) == stamp
                   for _, k, m in self.published)

    def send(self, msg: Any, wait: bool = True, timeout: float = 10.0) -> bool:
        """Put one frame and wait until the worker took it (and answered it, or gave up on it)."""
        stamp = convert.stamp_to_seconds(msg.header.stamp)
        before = sum(self.stats.snapshot()["a"][k] for k in ("processed", "dropped_bad_input", "dropped_failed",
                                                              "dropped_invalid_output"))
        self.stats.received("a")  # what the node's subscription callback does
        if self.slots.put(queues.Pending("a", msg, time.monotonic(), stamp)):
            self.stats.dropped("a", "stale")
        deadline = time.monotonic() + timeout
        while wait and time.monotonic() < deadline:
            snap = self.stats.snapshot()["a"]
            done = sum(snap[k] for k in ("processed", "dropped_bad_input", "dropped_failed", "dropped_invalid_output"))
            if done > before:
                break
            time.sleep(0.01)
        return self.answered(stamp)

    def close(self) -> None:
        self.worker.stop()
        self.backend.close()


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


def _frames(n: int, t0: float = 100.0) -> list[Image]:
    rgb = rgb_image(48, 64, seed=1)
    return [image_msg(rgb, t0 + 0.1 * i) for i in range(n)]


def test_a_converter_raising_a_non_ros_error_does_not_end_the_worker(rigs: list[Rig]) -> None:
    """Defect 1: a yuv422_yuy2 image of odd width made cv2 raise in the conversion and killed the thread."""
    rig = Rig("torch")
    rigs.append(rig)
    odd = Image(height=240, width=319, step=638, encoding="yuv422_yuy2", data=bytes(638 * 240))
    odd.header = convert.make_header(99.0, "cam")
    assert not rig.send(odd)
    frames = _frames(3)
    assert all(rig.send(m) for m in frames), rig.warnings
    snap = rig.stats.snapshot()["a"]
    assert snap["dropped_bad_input"] == 1 and snap["processed"] == 3
    assert snap["drop_reasons"].startswith("bad:")
    assert rig.worker.alive() and rig.worker.health() == ("ok", "")


def test_a_backend_raising_mid_stream_costs_one_frame_and_the_backend_is_reloaded(
    rigs: list[Rig], inject: Callable[[str, dict[int, str]], list[int]]
) -> None:
    """No fallback runtime (torch only): the fault exhausts the chain; the runner reloads it."""
    inject("torch", {2: "raise"})
    rig = Rig("torch")
    rigs.append(rig)
    answered = [rig.send(m) for m in _frames(6)]
    assert answered == [True, True, False, True, True, True], rig.warnings
    snap = rig.stats.snapshot()["a"]
    assert snap["dropped_failed"] == 1 and "failed:BackendError" in snap["drop_reasons"]
    assert "injected fault" in snap["last_error"]
    assert snap["level"] == "warn" and "failed in the pipeline/backend" in snap["message"]
    assert any("backend reloaded" in w for w in rig.warnings)
    assert rig.backend.status()["backend.fallbacks"] == "1"


def test_a_backend_raising_with_a_fallback_loses_no_frame(
    rigs: list[Rig], inject: Callable[[str, dict[int, str]], list[int]]
) -> None:
    inject("onnxruntime", {2: "raise"})  # the first runtime of the chain is the faulty one; torch follows
    rig = Rig("onnxruntime")
    rigs.append(rig)
    assert rig.backend.chain == ["onnxruntime", "torch"]
    assert all(rig.send(m) for m in _frames(5))  # the failing frame is re-run on torch
    status = rig.backend.status()
    assert status["backend.active"] == "torch" and "injected fault" in status["backend.last_error"]


def test_non_finite_outputs_are_dropped_and_the_backend_is_replaced(
    rigs: list[Rig], inject: Callable[[str, dict[int, str]], list[int]]
) -> None:
    inject("onnxruntime", {2: "nan", 3: "nan", 4: "nan", 5: "nan"})  # broken from call 2 on
    rig = Rig("onnxruntime")
    rigs.append(rig)
    answered = [rig.send(m) for m in _frames(6)]
    # two frames lost (runner.INVALID_FAILOVER_AFTER), then torch takes over: <= 1 s at >= 2 Hz
    assert answered == [True, True, False, False, True, True], rig.warnings
    snap = rig.stats.snapshot()["a"]
    assert snap["dropped_invalid_output"] == 2 and snap["level"] == "warn"
    assert rig.backend.status()["backend.active"] == "torch"
    assert any("non-finite outputs" in w and "switched to torch" in w for w in rig.warnings)
    for _, key, m in rig.published:
        if m.encoding == "32FC1" if hasattr(m, "encoding") else False:
            assert np.isfinite(convert.image_to_array(m)).all(), key


def test_a_slow_backend_is_reported_while_it_stalls(
    rigs: list[Rig], inject: Callable[[str, dict[int, str]], list[int]]
) -> None:
    inject("torch", {1: "slow"})  # 0.8 s in one inference
    rig = Rig("torch", HealthThresholds(stall_s=0.4))
    rigs.append(rig)
    frames = _frames(3)
    assert rig.send(frames[0])
    rig.send(frames[1], wait=False)
    deadline = time.monotonic() + 5
    while rig.runner.busy_for() < 0.5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rig.runner.busy_for() >= 0.5
    snap = rig.stats.snapshot()["a"]
    assert snap["level"] == "error" and "nothing answered" in snap["message"]
    deadline = time.monotonic() + 5
    # the slow frame is answered after all, and counted (after publishing: with pipelining in another thread), so
    # the next send's "taken" count is not satisfied by it
    while not (rig.answered(100.1) and rig.stats.snapshot()["a"]["processed"] >= 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rig.send(frames[2])
    assert rig.stats.snapshot()["a"]["level"] == "ok"


def test_a_dead_worker_is_reported_and_restarted_then_given_up(
    rigs: list[Rig], inject: Callable[[str, dict[int, str]], list[int]]
) -> None:
    inject("torch", {1: "fatal", 3: "fatal"})
    rig = Rig("torch", max_restarts=1)
    rigs.append(rig)
    frames = _frames(5)
    assert rig.send(frames[0])
    assert not rig.send(frames[1])  # the thread died on it
    deadline = time.monotonic() + 5
    while rig.worker.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    level, text = rig.worker.health()
    assert level == "error" and "Fatal" in text
    assert "Fatal" in rig.worker.check()  # type: ignore[operator]
    assert rig.worker.alive()
    assert rig.send(frames[2])  # restarted: serving again
    assert rig.worker.health()[0] == "error"  # still reported for a while
    assert not rig.send(frames[3])  # second death within the window: given up
    deadline = time.monotonic() + 5
    while rig.worker.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    rig.worker.check()
    assert rig.worker.failure and not rig.worker.alive()
    assert rig.worker.health() == ("error", rig.worker.failure)
    assert rig.stats.snapshot()["a"]["dropped_failed"] == 2  # the batches the deaths took are counted


def test_a_replaced_model_file_keeps_the_loaded_model_and_is_noticed(rigs: list[Rig], tmp_path: Path) -> None:
    from perception.models.checkpoint import save_checkpoint
    from perception.models.registry import model_config

    name = "stan_tiny_temporal"
    weights, _meta = save_checkpoint(tmp_path / "m", _net(), name, model_config(name))
    backend = FallbackBackend(ModelSource(checkpoint=tmp_path / "m", input_size=SIZE),
                              RuntimeConfig(backend="torch", threads=1))
    backend.load()
    watch = engine.ModelFileWatch(engine.model_files(tmp_path / "m", ""))
    assert watch.changed() == []
    perceptor = Perceptor(backend, PerceptorConfig(score_thresh=0.0))
    cfg = node_config({"cameras": ["a"]})
    stats = NodeStats(("a",))
    published: list[Any] = []
    r = runner.PerceptionRunner(perceptor, cfg, lambda c, k, m: published.append(m), stats, warn=lambda s: None)
    frames = _frames(2)
    r.process([queues.Pending("a", frames[0], time.monotonic())])
    weights.write_bytes(b"half-copied" * 10)  # replaced while running
    assert watch.changed() == [str(weights)]
    r.process([queues.Pending("a", frames[1], time.monotonic())])
    assert stats.snapshot()["a"]["processed"] == 2  # still running the model it loaded
    backend.close()


def test_the_nodes_own_stale_drops_are_not_time_jumps(rigs: list[Rig]) -> None:
    """Defect 7: in a soak 73 % stale drops caused 6-7 temporal time_jump resets per camera."""
    backend = FallbackBackend(ModelSource(module_factory=_net, input_size=SIZE), RuntimeConfig("torch", threads=1))
    backend.load()
    cfg = node_config({"cameras": ["a"], "temporal.max_gap_s": 0.5})
    stats = NodeStats(("a",))
    r = runner.PerceptionRunner(Perceptor(backend, PerceptorConfig(reset=cfg.temporal.policy)), cfg,
                                lambda c, k, m: None, stats, warn=lambda s: None)
    slots = queues.LatestFrameSlots(("a",))
    rgb = rgb_image(48, 64, seed=2)
    for i in range(33):  # 10 Hz; inference takes every 8th frame (0.8 s apart), the rest are dropped stale
        t = 200.0 + 0.1 * i
        if slots.put(queues.Pending("a", image_msg(rgb, t), time.monotonic(), t)):
            stats.dropped("a", "stale")
        if i % 8 == 0:
            r.process(slots.take(0.0))
    snap = stats.snapshot()["a"]
    assert snap["processed"] == 5 and snap["dropped_stale"] == 28
    assert snap["resets"] == "first_frame=1"
    t = 230.0  # a real jump, on a frame that is then replaced before inference takes it
    slots.put(queues.Pending("a", image_msg(rgb, t), time.monotonic(), t))
    slots.put(queues.Pending("a", image_msg(rgb, t + 0.1), time.monotonic(), t + 0.1))
    r.process(slots.take(0.0))
    assert "time_jump=1" in stats.snapshot()["a"]["resets"]
    backend.close()

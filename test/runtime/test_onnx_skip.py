"""ONNX Runtime leaves out the outputs a caller does not need (``Backend.infer``'s ``skip``): the graph pruned to
the rest computes the same numbers, state outputs always come back, and the Perceptor's results do not depend on
whether the segmentation was computed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from perception.runtime.model_info import read_model_info
from perception.runtime.onnx_backend import OnnxRuntimeBackend, pruned_model

pytest.importorskip("onnxruntime")


def _frame(h: int, w: int) -> np.ndarray:
    """A synthetic drive's frame (RGB uint8, h x w)."""
    from perception.sim.config import SimConfig
    from perception.sim.drive import render_frame

    return render_frame(1003, 10, SimConfig(width=w, height=h)).rgb


def test_pruned_model_keeps_only_what_the_kept_outputs_need() -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 4], [1.0, 2.0, 3.0, 4.0])
    v = helper.make_tensor("v", TensorProto.FLOAT, [1, 4], [5.0, 6.0, 7.0, 8.0])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "w"], ["a"]),
             helper.make_node("Mul", ["r", "v"], ["m"]), helper.make_node("Neg", ["m"], ["b"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [a, b], [w, v]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    only_a = pruned_model(model, {"a"})
    assert [n.op_type for n in only_a.graph.node] == ["Relu", "Add"]
    assert [o.name for o in only_a.graph.output] == ["a"] and [t.name for t in only_a.graph.initializer] == ["w"]
    assert [i.name for i in only_a.graph.input] == ["x"]
    onnx.checker.check_model(only_a)
    assert len(model.graph.node) == 4  # a copy: the model itself is untouched
    import onnxruntime as ort

    feed = {"x": np.array([[-1.0, 0.5, 2.0, -3.0]], np.float32)}
    full = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    part = ort.InferenceSession(only_a.SerializeToString()).run(None, feed)
    np.testing.assert_array_equal(part[0], full[0])


def test_skipping_the_segmentation_prunes_it_and_keeps_the_rest(model_onnx: Callable[[str], Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """stan_mbv2 (the node's network): without ``seg`` the detections and attention are those of the full graph,
    the pruned session is made once and kept; names it does not have, or every output, fall back to the full one."""
    path = model_onnx("stan_mbv2")
    with OnnxRuntimeBackend(path) as backend:
        h, w = (int(d) for d in backend.input_specs[0].shape[2:])
        image = (_frame(h, w).transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
        full = backend.infer({"image": image})
        part = backend.infer({"image": image}, frozenset({"seg"}))
        assert set(full) == {"boxes", "scores", "seg", "attention"} and set(part) == {"boxes", "scores", "attention"}
        for k in part:
            np.testing.assert_allclose(part[k], full[k], atol=1e-4, rtol=1e-4)
        pruned = dict(backend._pruned)
        assert list(pruned) == [frozenset({"seg"})]
        n_pruned = len(pruned_model(onnx.load(str(path)), {"boxes", "scores", "attention"}).graph.node)
        assert n_pruned < len(onnx.load(str(path)).graph.node)
        backend.infer({"image": image}, frozenset({"seg"}))
        assert backend._pruned[frozenset({"seg"})][0] is pruned[frozenset({"seg"})][0]  # made once
        assert set(backend.infer({"image": image}, frozenset({"no_such_output"}))) == set(full)
        assert set(backend.infer({"image": image}, frozenset(full))) == set(full)  # nothing left: the full graph
    assert not backend._pruned  # close() lets them go
    # an INT8 model is never pruned (its pruned graph fuses the quantised convolutions differently): the same file
    # described as INT8 by its metadata
    import perception.runtime.onnx_backend as ob

    monkeypatch.setattr(ob, "read_model_info", lambda p: replace(read_model_info(p), precision="int8"))
    with OnnxRuntimeBackend(path) as backend:
        assert set(backend.infer({"image": image}, frozenset({"seg"}))) == set(full)


def test_state_outputs_are_never_skipped(shipped_onnx: Callable[[str], Path]) -> None:
    """A temporal network's next state comes back whatever is skipped, equal to the full graph's."""
    with OnnxRuntimeBackend(shipped_onnx("stan_s_temporal")) as backend:
        h, w = (int(d) for d in backend.input_specs[0].shape[2:])
        image = (_frame(h, w).transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
        inputs = {"image": image, **backend.initial_state(1)}
        states = set(backend.state_pairs.values())
        full = backend.infer(inputs)
        part = backend.infer(inputs, frozenset({"seg", *states}))
        assert "seg" not in part and states <= set(part)
        for k in part:
            np.testing.assert_allclose(part[k], full[k], atol=1e-4, rtol=1e-4)


def test_perceptor_results_do_not_depend_on_the_segmentation_being_computed(
        model_onnx: Callable[[str], Path]) -> None:
    """The Perceptor skips ``seg`` when its segmentation is off; the detections, their attention scores and the
    low-resolution attention map (its grid included) are those of a run that computed it."""
    from perception.pipeline.perceptor import FrameInput, Perceptor, PerceptorConfig

    calls: list[frozenset[str]] = []

    class Recording(OnnxRuntimeBackend):
        def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
            calls.append(skip)
            return super().infer(inputs, skip)

    with Recording(model_onnx("stan_mbv2")) as backend:
        frame = FrameInput("c", _frame(450, 800), 0.0, scene_cut=True)
        p = Perceptor(backend, PerceptorConfig())
        with_seg = p.process(frame)
        p.config = replace(p.config, segmentation=False)
        without = p.process(frame)
    assert calls == [frozenset(), frozenset({"seg"})]
    assert with_seg.segmentation_lowres is not None and without.segmentation_lowres is None
    np.testing.assert_allclose(without.detections.boxes, with_seg.detections.boxes, atol=1e-2)
    np.testing.assert_allclose(without.detections.scores, with_seg.detections.scores, atol=1e-4)
    assert without.detections.attention is not None and with_seg.detections.attention is not None
    np.testing.assert_allclose(without.detections.attention, with_seg.detections.attention, atol=1e-4)
    assert without.attention_lowres is not None and with_seg.attention_lowres is not None
    assert without.attention_lowres.shape == with_seg.attention_lowres.shape
    np.testing.assert_allclose(without.attention_lowres, with_seg.attention_lowres, atol=1e-4)


def test_a_pruned_graph_that_does_not_load_leaves_the_full_one_serving(
        model_onnx: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Pruning is an optimisation: when the pruned graph fails to load, the full graph answers (every output),
    logged once, and the backend keeps running."""
    import perception.runtime.onnx_backend as ob

    def broken(model: object, keep: set[str]) -> object:
        out = pruned_model(model, keep)
        del out.graph.node[0]  # a graph whose first node is gone: its readers have no input
        return out

    with OnnxRuntimeBackend(model_onnx("stan_mbv2")) as backend:
        monkeypatch.setattr(ob, "pruned_model", broken)
        h, w = (int(d) for d in backend.input_specs[0].shape[2:])
        image = (_frame(h, w).transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
        first = backend.infer({"image": image}, frozenset({"seg"}))
        again = backend.infer({"image": image}, frozenset({"seg"}))
    assert set(first) == set(again) == {"boxes", "scores", "seg", "attention"}
    assert sum("does not load" in r.getMessage() for r in caplog.records) == 1

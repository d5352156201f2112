"""Temporal attention: empty memory, memory shift, masking of invalid slots, streaming, gradients."""

from __future__ import annotations

import pytest
import torch

from perception.models.errors import ModelError
from perception.models.layers import TemporalAttention
from perception.models.layers.temporal import sincos_position_2d


def _layer() -> TemporalAttention:
    torch.manual_seed(1)
    return TemporalAttention(channels=24, memory_len=3, memory_channels=16, num_heads=2).eval()


def test_empty_memory_gives_finite_output_and_valid_slot0() -> None:
    m = _layer()
    x = torch.randn(2, 24, 4, 6)
    mem, valid = m.init_state(2, 4, 6)
    assert mem.shape == (2, 3, 16, 4, 6) and valid.shape == (2, 3)
    y, _, nvalid, w = m.forward_with_map(x, mem, valid)
    assert torch.isfinite(y).all()
    assert torch.equal(nvalid, torch.tensor([[1.0, 0.0, 0.0]] * 2))
    # only the current frame can be attended to
    assert torch.allclose(w, torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2))


def test_memory_shifts_with_new_frame_at_slot0() -> None:
    m = _layer()
    x = torch.randn(1, 24, 4, 6)
    mem = torch.randn(1, 3, 16, 4, 6)
    valid = torch.ones(1, 3)
    _, nmem, nvalid = m(x, mem, valid)
    assert torch.allclose(nmem[:, 0], m.proj_in(x))
    assert torch.equal(nmem[:, 1], mem[:, 0]) and torch.equal(nmem[:, 2], mem[:, 1])
    assert torch.equal(nvalid, torch.ones(1, 3))


def test_invalid_slots_do_not_influence_output() -> None:
    m = _layer()
    x = torch.randn(1, 24, 4, 6)
    mem = torch.randn(1, 3, 16, 4, 6)
    valid = torch.tensor([[1.0, 0.0, 0.0]])
    mem2 = mem.clone()
    mem2[:, 1:] = torch.randn(1, 2, 16, 4, 6) * 100.0
    y1, n1, v1 = m(x, mem, valid)
    y2, n2, v2 = m(x, mem2, valid)
    assert torch.equal(y1, y2) and torch.equal(n1, n2) and torch.equal(v1, v2)
    # ...while a VALID slot does change the output
    mem3 = mem.clone()
    mem3[:, 0] += torch.randn(1, 16, 4, 6)
    y3, _, _ = m(x, mem3, valid)
    assert not torch.allclose(y1, y3)


def test_fused_and_explicit_attention_agree() -> None:
    m = _layer()
    x = torch.randn(2, 24, 4, 6)
    mem = torch.randn(2, 3, 16, 4, 6)
    valid = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    a = m(x, mem, valid)
    b = m.forward_with_map(x, mem, valid)
    for p, q in zip(a, b[:3]):
        assert torch.allclose(p, q, atol=1e-5)
    assert torch.allclose(b[3].sum(dim=1), torch.ones(2), atol=1e-5)
    assert float(b[3][1, 2:].abs().max()) == 0.0  # masked slots get no attention


def test_streaming_over_frames_fills_memory() -> None:
    m = _layer()
    mem, valid = m.init_state(1, 4, 6)
    frames = [torch.randn(1, 24, 4, 6) for _ in range(4)]
    for t, x in enumerate(frames):
        _, mem, valid = m(x, mem, valid)
        assert valid.sum().item() == min(t + 1, 3)
    assert torch.allclose(mem[:, 0], m.proj_in(frames[3]))
    assert torch.allclose(mem[:, 2], m.proj_in(frames[1]))


def test_gradients_reach_all_parameters_and_memory() -> None:
    m = _layer().train()
    x = torch.randn(1, 24, 4, 6, requires_grad=True)
    mem = torch.randn(1, 3, 16, 4, 6, requires_grad=True)
    y, _, _ = m(x, mem, torch.ones(1, 3))
    y.square().mean().backward()
    assert mem.grad is not None and float(mem.grad.abs().sum()) > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_positional_encoding_distinguishes_cells() -> None:
    pe = sincos_position_2d(5, 7, 16, torch.device("cpu"), torch.float32)
    assert pe.shape == (35, 16)
    d = torch.cdist(pe, pe)
    assert float(d[~torch.eye(35, dtype=torch.bool)].min()) > 1e-3
    # neighbours are closer than far cells
    assert float(d[0, 1]) < float(d[0, 6])


def test_memory_at_stride_16_streams_and_reports_usage() -> None:
    """memory_stride=16 puts the memory on the stride-16 stage (4x the cells); the memory-use probe's
    figures are well-formed: an empty memory gets no attention, a filled one some."""
    from perception.models.registry import build_model

    model = build_model("stan_tiny_temporal", memory_stride=16).eval()
    assert model.state_shape(64, 96) == (model.cfg.memory_len, model.cfg.memory_channels, 4, 6)
    memory, valid = model.init_state(1, 64, 96)
    with torch.no_grad():
        stats0, memory, valid = model.memory_usage(torch.rand(1, 3, 64, 96), memory, valid)
        assert float(stats0["slot_weights"][0, 0]) == pytest.approx(1.0)
        stats1, memory, valid = model.memory_usage(torch.rand(1, 3, 64, 96), memory, valid)
        out = model(torch.rand(1, 3, 64, 96), memory, valid)
    assert 0.0 < float(stats1["slot_weights"][0, 1]) < 1.0
    assert 0.0 < float(stats1["entropy"][0]) <= 1.0 + 1e-5
    assert float(stats1["residual"][0]) > 0.0
    assert out["memory"].shape == (1, model.cfg.memory_len, model.cfg.memory_channels, 4, 6)
    with pytest.raises(ModelError, match="memory_stride"):
        build_model("stan_tiny_temporal", memory_stride=8)

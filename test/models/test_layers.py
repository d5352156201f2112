"""Attention layers: shapes, map ranges, factory, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from perception.models.errors import ModelError
from perception.models.layers import CBAM, ChannelAttention, SpatialAttention, create_attention


@pytest.mark.parametrize("shape", [(2, 32, 12, 20), (1, 16, 7, 5)])
def test_channel_attention_map_shape_and_range(shape: tuple[int, int, int, int]) -> None:
    x = torch.randn(shape)
    m = ChannelAttention(shape[1], reduction=4)
    with torch.no_grad():
        y, a = m.forward_with_map(x)
    assert y.shape == x.shape
    assert a.shape == (shape[0], shape[1], 1, 1)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.allclose(y, x * a)
    with torch.no_grad():
        assert torch.equal(m(x), y)


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_spatial_attention_map_shape_and_range(kernel_size: int) -> None:
    x = torch.randn(2, 8, 10, 14)
    m = SpatialAttention(kernel_size).eval()
    with torch.no_grad():
        y, a = m.forward_with_map(x)
    assert a.shape == (2, 1, 10, 14)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.allclose(y, x * a)


def test_spatial_attention_rejects_even_kernel() -> None:
    with pytest.raises(ModelError, match="odd"):
        SpatialAttention(4)


def test_cbam_map_depends_on_content_and_gradients_flow() -> None:
    m = CBAM(16, reduction=4, kernel_size=5)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    y, a = m.forward_with_map(x)
    assert y.shape == x.shape and a.shape == (2, 1, 8, 8)
    assert not torch.allclose(a[0], a[1])  # different images, different maps
    y.square().mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    for name, p in m.named_parameters():
        assert p.grad is not None, name


@pytest.mark.parametrize("kind", [None, "none", "None"])
def test_create_attention_disabled(kind: str | None) -> None:
    assert create_attention(kind, 32) is None


@pytest.mark.parametrize(
    ("kind", "cls"), [("cbam", CBAM), ("channel", ChannelAttention), ("spatial", SpatialAttention)]
)
def test_create_attention_kinds(kind: str, cls: type[nn.Module]) -> None:
    m = create_attention(kind, 32, reduction=8, kernel_size=3)
    assert isinstance(m, cls)
    x = torch.randn(1, 32, 6, 6)
    with torch.no_grad():
        y, a = m.forward_with_map(x)  # type: ignore[operator]
    assert y.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1


def test_create_attention_unknown_kind() -> None:
    with pytest.raises(ModelError, match="unknown attention kind 'se'"):
        create_attention("se", 8)

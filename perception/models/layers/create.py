"""``create_attention(kind, channels, **kw)``: the one place that maps a name to a module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from perception.models.errors import ModelError
from perception.models.layers.cbam import CBAM
from perception.models.layers.channel import ChannelAttention
from perception.models.layers.spatial import SpatialAttention


def _spatial(channels: int, **kw: Any) -> nn.Module:
    kw.pop("reduction", None)
    kw.pop("act_layer", None)
    return SpatialAttention(channels=channels, **kw)


def _channel(channels: int, **kw: Any) -> nn.Module:
    kw.pop("kernel_size", None)
    kw.pop("projection", None)
    return ChannelAttention(channels, **kw)


ATTENTION_KINDS: dict[str, Callable[..., nn.Module]] = {
    "cbam": CBAM,
    "channel": _channel,
    "spatial": _spatial,
}


def create_attention(kind: str | None, channels: int, **kw: Any) -> nn.Module | None:
    """Build the attention module named ``kind`` for ``channels``; ``None``/``"none"`` gives None.

    Keyword arguments (``reduction``, ``kernel_size``, ``act_layer``, ``gate_layer``, ``projection``) are passed on;
    those a kind does not use are dropped so one config serves every kind.
    """
    if kind is None or kind.lower() in ("", "none"):
        return None
    try:
        factory = ATTENTION_KINDS[kind.lower()]
    except KeyError:
        raise ModelError(
            f"unknown attention kind {kind!r}; use one of {sorted(ATTENTION_KINDS)} or None to disable"
        ) from None
    return factory(channels, **kw)

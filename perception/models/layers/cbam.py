"""CBAM (Woo et al. 2018): channel attention followed by spatial attention."""

from __future__ import annotations

import torch
from torch import nn

from perception.models.layers.channel import ChannelAttention
from perception.models.layers.spatial import SpatialAttention


class CBAM(nn.Module):
    """Channel then spatial attention; ``forward_with_map`` returns the spatial map ``(B, 1, H, W)``."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        act_layer: type[nn.Module] = nn.ReLU,
        gate_layer: type[nn.Module] = nn.Sigmoid,
        projection: int = 0,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, act_layer=act_layer, gate_layer=gate_layer)
        self.spatial = SpatialAttention(kernel_size, gate_layer=gate_layer, channels=channels, projection=projection)

    def forward_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.channel(x)
        return self.spatial.forward_with_map(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_map(x)[0]

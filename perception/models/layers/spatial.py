"""Spatial attention (CBAM's spatial branch): channel-pooled avg/max -> conv -> gate."""

from __future__ import annotations

import torch
from torch import nn

from perception.models.errors import ModelError
from perception.models.layers.pool import channel_avg_max


class SpatialAttention(nn.Module):
    """``x * gate(conv([mean_c(x), max_c(x)]))``; the map is ``(B, 1, H, W)`` in [0, 1].

    ``projection`` P > 0 (needs ``channels``) adds P learned channel poolings (a 1x1 conv) to the two fixed
    ones: on a wide pretrained trunk (hundreds of channels that were never trained to be salient where
    objects are) mean/max alone cannot tell a car from foliage; a learned pooling can.
    """

    def __init__(self, kernel_size: int = 7, gate_layer: type[nn.Module] = nn.Sigmoid, channels: int = 0,
                 projection: int = 0) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ModelError(f"SpatialAttention kernel_size must be odd (got {kernel_size}); use 3, 5 or 7")
        if projection and channels <= 0:
            raise ModelError("SpatialAttention projection needs the input's channels")
        self.project = nn.Conv2d(channels, projection, 1) if projection else None
        self.conv = nn.Conv2d(2 + projection, 1, kernel_size, padding=kernel_size // 2, bias=True)
        self.gate = gate_layer()

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat(channel_avg_max(x), dim=1)
        if self.project is not None:
            pooled = torch.cat([pooled, torch.relu(self.project(x))], dim=1)
        return self.gate(self.conv(pooled))

    def forward_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attn = self.attention_map(x)
        return x * attn, attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_map(x)[0]

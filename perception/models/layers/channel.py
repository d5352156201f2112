"""Channel attention (CBAM's channel branch, Woo et al. 2018): avg- and max-pooled MLP gate."""

from __future__ import annotations

import torch
from torch import nn

from perception.models.layers.pool import global_avg_max


def _hidden_channels(channels: int, reduction: int, min_channels: int = 8) -> int:
    return max(min_channels, channels // max(1, reduction))


class ChannelAttention(nn.Module):
    """``x * gate(mlp(avgpool(x)) + mlp(maxpool(x)))``; the map is ``(B, C, 1, 1)`` in [0, 1]."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        act_layer: type[nn.Module] = nn.ReLU,
        gate_layer: type[nn.Module] = nn.Sigmoid,
        min_hidden: int = 8,
    ) -> None:
        super().__init__()
        hidden = _hidden_channels(channels, reduction, min_hidden)
        # Linear on the pooled (2B, C) vectors: same maths as timm's 1x1 convs, far less call overhead
        self.fc1 = nn.Linear(channels, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = gate_layer()

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        avg, mx = global_avg_max(x)
        # one MLP pass over both pooled vectors (stacked on a new leading axis) is cheaper than two;
        # stacking (not cat + chunk on the batch axis) keeps the batch dimension dynamic in export
        pooled = torch.stack([avg.flatten(1), mx.flatten(1)], dim=0)  # (2, B, C)
        logits = self.fc2(self.act(self.fc1(pooled)))
        return self.gate(logits[0] + logits[1])[:, :, None, None]

    def forward_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attn = self.attention_map(x)
        return x * attn, attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_map(x)[0]

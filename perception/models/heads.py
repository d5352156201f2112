"""Task heads: CenterNet-style centre heatmap + ltrb box at stride 8, segmentation at stride 4."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from perception.models.layers import ConvBnAct


class DetectionHead(nn.Module):
    """``heatmap`` logits (B, classes, h, w) and ``box`` ltrb distances in strides (>= 0, softplus)."""

    def __init__(
        self,
        in_channels: int,
        head_channels: int,
        num_classes: int,
        act_layer: type[nn.Module] = nn.ReLU,
        heatmap_prior: float = 0.1,
        box_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.hm_conv = ConvBnAct(in_channels, head_channels, 3, act_layer=act_layer)
        self.hm_out = nn.Conv2d(head_channels, num_classes, 1)
        self.box_conv = ConvBnAct(in_channels, head_channels, 3, act_layer=act_layer)
        self.box_out = nn.Conv2d(head_channels, 4, 1)
        nn.init.normal_(self.box_out.weight, std=0.01)
        with torch.no_grad():
            self.hm_out.bias.fill_(-math.log((1.0 - heatmap_prior) / heatmap_prior))  # type: ignore[union-attr]
            self.box_out.bias.fill_(math.log(math.expm1(box_init)))  # type: ignore[union-attr]  # softplus^-1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heatmap = self.hm_out(self.hm_conv(x))
        box = F.softplus(self.box_out(self.box_conv(x)))
        return heatmap, box


class SegmentationHead(nn.Module):
    """Per-pixel class logits at the input feature's stride."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.out = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x)

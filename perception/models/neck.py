"""Light FPN neck: top-down fusion of strides 32/16/8 to one stride-8 map, plus a stride-4 path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.models.layers import ConvBnAct


def upsample_to(x: torch.Tensor, ref: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """Resize ``x`` to ``ref``'s spatial size (exact x2 steps here: H, W are multiples of 32)."""
    if mode == "nearest":
        return F.interpolate(x, size=ref.shape[-2:], mode="nearest")
    return F.interpolate(x, size=ref.shape[-2:], mode=mode, align_corners=False)


class FPNNeck(nn.Module):
    """``p8`` (B, neck, H/8, W/8) for detection, ``p4`` (B, seg, H/4, W/4) for segmentation."""

    def __init__(
        self,
        in_channels: tuple[int, ...],
        neck_channels: int,
        seg_channels: int,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        c4, c8, c16, c32 = in_channels
        self.lat32 = ConvBnAct(c32, neck_channels, 1, act_layer=None)
        self.lat16 = ConvBnAct(c16, neck_channels, 1, act_layer=None)
        self.lat8 = ConvBnAct(c8, neck_channels, 1, act_layer=None)
        self.smooth16 = ConvBnAct(neck_channels, neck_channels, 3, act_layer=act_layer)
        self.smooth8 = ConvBnAct(neck_channels, neck_channels, 3, act_layer=act_layer)
        self.lat4 = ConvBnAct(c4, seg_channels, 1, act_layer=None)
        self.reduce8 = ConvBnAct(neck_channels, seg_channels, 1, act_layer=None)
        self.smooth4 = ConvBnAct(seg_channels, seg_channels, 3, act_layer=act_layer)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        f4, f8, f16, f32 = feats
        p16 = self.smooth16(self.lat16(f16) + upsample_to(self.lat32(f32), f16))
        p8 = self.smooth8(self.lat8(f8) + upsample_to(p16, f8))
        p4 = self.smooth4(self.lat4(f4) + upsample_to(self.reduce8(p8), f4, mode="bilinear"))
        return p8, p4

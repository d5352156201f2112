"""CPU-friendly CNN backbone: conv stem + 4 residual stages at strides 4, 8, 16, 32.

Plain 3x3 convolutions at low channel counts train faster per image on a few CPU cores (bf16
autocast, oneDNN) than many tiny depthwise layers, so every block is a ResNet basic block.
Attention (CBAM or a part of it) follows the configured stages; each attention module's map is
collected so the network can return it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.models.config import NetConfig
from perception.models.layers import CBAM, ConvBnAct, SpatialAttention, create_attention


def act_layer_of(name: str) -> type[nn.Module]:
    return {"relu": nn.ReLU, "silu": nn.SiLU}[name]


class NormalizingStem(nn.Module):
    """Stride-2 3x3 conv on ``(image - mean) / std`` + BN + act, with the normalisation folded into
    the conv weights: no extra full-resolution op (which costs as much as the conv on a CPU).

    Exact except at the image border, where the implicit zero padding is in raw pixel space
    (i.e. the normalised image is padded with ``-mean/std``) — a fixed convention the network
    learns with.
    """

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(
        self,
        out_channels: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        act_layer: type[nn.Module],
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = act_layer()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight * self.inv_std[None, :, None, None]
        b = -(w * self.mean[None, :, None, None]).sum(dim=(1, 2, 3))
        return self.act(self.bn(F.conv2d(x, w, b, stride=2, padding=1)))


class BasicBlock(nn.Module):
    """``act(x + bn(conv3x3(act(bn(conv3x3(x))))))``."""

    def __init__(self, channels: int, act_layer: type[nn.Module]) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(channels, channels, 3, act_layer=act_layer)
        self.conv2 = ConvBnAct(channels, channels, 3, act_layer=None)
        bn = self.conv2[1]
        assert isinstance(bn, nn.BatchNorm2d)
        nn.init.zeros_(bn.weight)  # residual branch starts at zero: stable early training
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class Stage(nn.Sequential):
    """Stride-2 3x3 conv from ``in_channels`` to ``out_channels``, then ``depth`` basic blocks."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, act_layer: type[nn.Module]) -> None:
        layers: list[nn.Module] = [ConvBnAct(in_channels, out_channels, 3, stride=2, act_layer=act_layer)]
        layers += [BasicBlock(out_channels, act_layer) for _ in range(depth)]
        super().__init__(*layers)


class Backbone(nn.Module):
    """Returns the 4 stage outputs (strides 4, 8, 16, 32) and the attention map of each attended stage."""

    strides = (4, 8, 16, 32)

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        act = act_layer_of(cfg.act)
        self.stem = NormalizingStem(cfg.stem_width, cfg.mean, cfg.std, act)
        ins = (cfg.stem_width, *cfg.widths[:-1])
        self.stages = nn.ModuleList(Stage(i, o, d, act) for i, o, d in zip(ins, cfg.widths, cfg.depths))
        attn: list[nn.Module] = []
        for idx, width in enumerate(cfg.widths):
            module = (
                create_attention(cfg.attention, width, reduction=cfg.reduction, kernel_size=cfg.kernel_size)
                if idx in cfg.attention_stages
                else None
            )
            attn.append(module if module is not None else nn.Identity())
        self.attn = nn.ModuleList(attn)
        self.out_channels = tuple(cfg.widths)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``x``: RGB in [0, 1] (normalised inside the stem). Returns ``(features per stage, spatial
        attention maps of the stages that produce one)``."""
        feats: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        x = self.stem(x)
        for stage, attn in zip(self.stages, self.attn):
            x = stage(x)
            if not isinstance(attn, nn.Identity):
                x, amap = attn.forward_with_map(x)  # type: ignore[operator]
                if isinstance(attn, (CBAM, SpatialAttention)):  # a spatial map (B,1,H,W), not a channel map
                    maps.append(amap)
            feats.append(x)
        return feats, maps

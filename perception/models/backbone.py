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
from perception.models.errors import ModelError
from perception.models.layers import CBAM, ConvBnAct, SpatialAttention, create_attention


def act_layer_of(name: str) -> type[nn.Module]:
    return {"relu": nn.ReLU, "silu": nn.SiLU}[name]


class NormalizingStem(nn.Module):
    """Stride-2 conv on ``(image - mean) / std`` + BN + act, with the normalisation folded into
    the conv weights: no extra full-resolution op (which costs as much as the conv on a CPU).

    ``pads`` None (the stan stems): symmetric ``kernel_size // 2`` zero padding in raw pixel space,
    i.e. the normalised image is padded with ``-mean/std`` — exact except at the image border, a
    fixed convention the network learns with. ``pads`` ``(left, right, top, bottom)`` (TF "SAME"
    stems of pretrained trunks): the raw image is padded with ``mean``, which is 0 after
    normalisation, so the result equals the original network exactly; that needs one mean for all
    channels.
    """

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(
        self,
        out_channels: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        act_layer: type[nn.Module],
        kernel_size: int = 3,
        pads: tuple[int, int, int, int] | None = None,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if pads is not None and len(set(mean)) != 1:
            raise ModelError(f"a stem padded with the mean needs one mean for all channels, got {mean}")
        self.pads = pads
        self.pad_value = float(mean[0])
        self.padding = kernel_size // 2 if pads is None else 0
        self.conv = nn.Conv2d(3, out_channels, kernel_size, stride=2, padding=self.padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = act_layer()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight * self.inv_std[None, :, None, None]
        b = -(w * self.mean[None, :, None, None]).sum(dim=(1, 2, 3))
        if self.pads is not None:
            x = F.pad(x, self.pads, value=self.pad_value)
        return self.act(self.bn(F.conv2d(x, w, b, stride=2, padding=self.padding)))


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


def stage_attention(cfg: NetConfig, widths: tuple[int, ...]) -> nn.ModuleList:
    """One attention module per stage (``nn.Identity`` where ``cfg`` attends none), shared by every
    backbone so CBAM sits after the same stages whatever the trunk."""
    attn: list[nn.Module] = []
    for idx, width in enumerate(widths):
        module = (
            create_attention(cfg.attention, width, reduction=cfg.reduction, kernel_size=cfg.kernel_size)
            if idx in cfg.attention_stages
            else None
        )
        attn.append(module if module is not None else nn.Identity())
    return nn.ModuleList(attn)


def attend(attn: nn.Module, x: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
    """Apply one stage's attention to ``x``; a spatial map (B, 1, H, W) is appended to ``maps``."""
    if isinstance(attn, nn.Identity):
        return x
    x, amap = attn.forward_with_map(x)  # type: ignore[operator]
    if isinstance(attn, (CBAM, SpatialAttention)):  # a spatial map (B,1,H,W), not a channel map
        maps.append(amap)
    return x


class Backbone(nn.Module):
    """Returns the 4 stage outputs (strides 4, 8, 16, 32) and the attention map of each attended stage."""

    strides = (4, 8, 16, 32)

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        act = act_layer_of(cfg.act)
        self.stem = NormalizingStem(cfg.stem_width, cfg.mean, cfg.std, act)
        ins = (cfg.stem_width, *cfg.widths[:-1])
        self.stages = nn.ModuleList(Stage(i, o, d, act) for i, o, d in zip(ins, cfg.widths, cfg.depths))
        self.attn = stage_attention(cfg, cfg.widths)
        self.out_channels = tuple(cfg.widths)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``x``: RGB in [0, 1] (normalised inside the stem). Returns ``(features per stage, spatial
        attention maps of the stages that produce one)``."""
        feats: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        x = self.stem(x)
        for stage, attn in zip(self.stages, self.attn):
            x = attend(attn, stage(x), maps)
            feats.append(x)
        return feats, maps

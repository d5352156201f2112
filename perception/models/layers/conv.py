"""Conv -> BatchNorm -> activation, the building brick of backbone, neck and heads."""

from __future__ import annotations

from torch import nn


class ConvBnAct(nn.Sequential):
    """``kernel_size`` conv (same padding, no bias) + BatchNorm + ``act_layer`` (None: no activation)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act_layer: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False
        )
        layers: list[nn.Module] = [conv, nn.BatchNorm2d(out_channels)]
        if act_layer is not None:
            layers.append(act_layer(inplace=True) if act_layer in (nn.ReLU, nn.SiLU) else act_layer())
        super().__init__(*layers)

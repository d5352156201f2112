"""The real-eyed trunk: SSD-MobileNetV2 trained on COCO (TF model zoo ``ssd_mobilenet_v2_coco_2018_03_29``,
Apache-2.0), rebuilt as torch modules, with residual CBAM grafted on and the SSD box predictors kept.

Why this trunk: on a 2-core CPU the only real-image supervision to be had offline is weights others
trained on real images. The SSD's feature extractor AND its box predictors learned real cars,
people, buses and bicycles; they are kept as they are (converted once by
``python -m perception.models.mbv2_ssd_convert``, see the JSON beside the weights), and what is new is
trained on top: CBAM attention, the segmentation neck and head, a temporal memory.

Layout (names as in the TF graph, ``FeatureExtractor/MobilenetV2/...``):

    image -> stem (3x3 s2) -> 17 inverted-residual blocks -> conv_1 (1x1, 1280)
             tap s16 = block 13's expansion (576 ch)  --CBAM-->  box predictor 0 (3 anchors/cell)
             s32     = conv_1 (1280 ch)               --CBAM-->  box predictor 1, extras 1..4 -> predictors 2..5
             s4 (block 2, 24 ch), s8 (block 5, 32 ch), s16, s32 -> FPN neck -> segmentation (stride 4)
             fine level (``NetConfig.fine_level``): s8 + upsampled s16 tap -> a stride-8 predictor with
             three small anchors per cell (15-30 px), for objects under the SSD's 30 px smallest anchor

The grafted attention is residual and starts as the identity: ``x + gamma * (cbam(x) - x)`` with
``gamma = 0``, so an untrained graft is exactly the COCO detector; the spatial map of the CBAM is the
gate that modulates the features (once ``gamma`` moves) and is the published attention map.

Padding is TensorFlow's "SAME": stride-1 convs pad symmetrically, stride-2 convs pad ``total = max(k -
s, 0)`` or so, extra pixel at the bottom/right, computed from the input's size (constants in an export
of a fixed size). Inputs are RGB in [0, 1]; the graph's ``x * 2 - 1`` scaling happens in the stem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.core.anchors import BOX_SCALES, FINE_SPECS, anchors_per_cell, ssd_anchors
from perception.core.classes import DETECTION_NAMES
from perception.models.config import NetConfig
from perception.models.errors import ModelError
from perception.models.layers import create_attention

BN_EPS = 1e-3  # the TF Object Detection API's MobileNetV2 batch-norm epsilon
# COCO category ids (TF model zoo numbering) whose class-predictor columns are kept, background first
COCO_KEEP = (0, 1, 2, 3, 4, 6, 8, 10, 13)
COCO_KEEP_NAMES = ("background", "person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light",
                   "stop sign")
# our detection classes -> the COCO ids whose best score is theirs (a traffic light is not a sign: not mapped)
DETECTION_FROM_COCO: dict[str, tuple[int, ...]] = {
    "car": (3,),
    "truck": (6, 8),
    "pedestrian": (1,),
    "cyclist": (2, 4),
    "traffic_sign": (13,),
}
# (expansion, out channels, stride) of MobileNetV2's 17 inverted-residual blocks ("expanded_conv[_N]")
BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
TAP_BLOCK = 13  # box predictor 0 reads this block's expansion output (stride 16)
S4_BLOCK, S8_BLOCK = 2, 5  # outputs at strides 4 and 8 (for the segmentation neck)
EXTRAS: tuple[tuple[int, int], ...] = ((256, 512), (128, 256), (128, 256), (64, 128))  # (reduce, out)
PREDICTOR_IN = (576, 1280, 512, 256, 256, 128)
OUT_CHANNELS = (24, 32, 576, 1280)  # s4, s8, s16 tap, s32: what the neck and the temporal memory see


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF "SAME" zero padding of ``x`` for a ``kernel``/``stride`` convolution (extra pixel bottom/right)."""
    if stride == 1:
        return x  # symmetric, done by the conv's own padding
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class ConvBN(nn.Module):
    """Conv (no bias, "SAME") + BatchNorm (eps 1e-3) + optional ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 relu6: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=0.01)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(same_pad(x, self.kernel, self.stride)))
        return F.relu6(x) if self.relu6 else x


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand + ReLU6] -> 3x3 depthwise + ReLU6 -> 1x1 project (+ x when it fits)."""

    def __init__(self, cin: int, expansion: int, cout: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvBN(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBN(hidden, cout, 1, relu6=False)
        self.residual = stride == 1 and cin == cout

    def expansion(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(x) if self.expand is not None else x

    def finish(self, x: torch.Tensor, expanded: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(expanded))
        return x + y if self.residual else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.expansion(x))


class NormalizedStem(nn.Module):
    """``(x * 2 - 1)`` (the graph's Preprocessor) then the 3x3 stride-2 stem conv, BN, ReLU6."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBN(3, 32, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x * 2.0 - 1.0)


class ResidualAttention(nn.Module):
    """``x + gamma * (attn(x) - x)``, ``gamma`` 0 at init: the graft starts as the identity. The wrapped
    module's spatial map (when it has one) is returned by :meth:`forward_with_map`."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, amap = self.attn.forward_with_map(x)  # type: ignore[operator]
        return x + self.gamma * (y - x), amap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_map(x)[0]


class MobileNetV2SSDTrunk(nn.Module):
    """MobileNetV2 feature extractor of the SSD plus its four extra layers.

    :meth:`forward` returns ``(feats, maps)`` like every stan backbone -- ``feats`` = [s4, s8, s16 tap,
    s32] after attention, ``maps`` = spatial attention maps of the attended taps -- and :meth:`extras`
    turns s32 into the four coarser predictor maps.
    """

    strides = (4, 8, 16, 32)
    out_channels = OUT_CHANNELS

    def __init__(self, attention: tuple[nn.Module, nn.Module] | None = None) -> None:
        super().__init__()
        self.stem = NormalizedStem()
        blocks = []
        cin = 32
        for expansion, cout, stride in BLOCKS:
            blocks.append(InvertedResidual(cin, expansion, cout, stride))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.conv_1 = ConvBN(320, 1280, 1)
        self.extra_layers = nn.ModuleList(
            nn.Sequential(ConvBN(c, r, 1), ConvBN(r, r, 3, 2, groups=r), ConvBN(r, o, 1))
            for c, (r, o) in zip((1280, 512, 256, 256), EXTRAS)
        )
        self.attn = nn.ModuleList(attention) if attention is not None else None

    def _attend(self, i: int, x: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
        if self.attn is None:
            return x
        x, amap = self.attn[i].forward_with_map(x)  # type: ignore[operator]
        if amap.shape[1] == 1:
            maps.append(amap)
        return x

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        maps: list[torch.Tensor] = []
        x = self.stem(x)
        s4 = s8 = tap = x
        for i, module in enumerate(self.blocks):
            block: InvertedResidual = module  # type: ignore[assignment]
            if i == TAP_BLOCK:
                expanded = self._attend(0, block.expansion(x), maps)
                tap = expanded
                x = block.finish(x, expanded)
            else:
                x = block(x)
            if i == S4_BLOCK:
                s4 = x
            elif i == S8_BLOCK:
                s8 = x
        s32 = self._attend(1, self.conv_1(x), maps)
        return [s4, s8, tap, s32], maps

    def extras(self, s32: torch.Tensor) -> list[torch.Tensor]:
        out, x = [], s32
        for layer in self.extra_layers:
            x = layer(x)
            out.append(x)
        return out


class FineLevel(nn.Module):
    """A seventh, new box predictor at stride 8 for small objects (``perception.core.anchors.FINE_SPECS``):
    the trunk's stride-8 output (block 5, 32 ch) plus its stride-16 tap (COCO features, after attention),
    upsampled, through two depthwise-separable residual blocks, then 3x3 class and box convolutions like the
    SSD's. The class bias starts at a 1 % prior, so an untrained fine level detects nothing and the network
    stays equal to its trunk until it is trained."""

    def __init__(self, columns: int, channels: int = 64, prior: float = 0.01) -> None:
        super().__init__()
        a = len(FINE_SPECS)
        self.lat8 = nn.Conv2d(OUT_CHANNELS[1], channels, 1)
        self.lat16 = nn.Conv2d(OUT_CHANNELS[2], channels, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
                          nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True))
            for _ in range(2)
        )
        self.cls = nn.Conv2d(channels, a * columns, 3, padding=1)
        self.box = nn.Conv2d(channels, a * 4, 3, padding=1)
        with torch.no_grad():
            for conv, bias in ((self.cls, -math.log((1.0 - prior) / prior)), (self.box, 0.0)):
                conv.weight.normal_(0.0, 0.01)
                assert conv.bias is not None
                conv.bias.fill_(bias)

    def forward(self, s8: torch.Tensor, s16: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up = F.interpolate(self.lat16(s16), size=(int(s8.shape[-2]), int(s8.shape[-1])), mode="nearest")
        x = F.relu(self.lat8(s8) + up)
        for block in self.blocks:
            x = x + block(x)
        return self.cls(x), self.box(x)


@dataclass(frozen=True)
class SSDHeadOutput:
    boxes: torch.Tensor  # (B, N, 4) xyxy, input pixels
    scores: torch.Tensor  # (B, N, num_det_classes) in [0, 1]
    logits: torch.Tensor  # (B, N, len(COCO_KEEP)) raw class logits (what distillation compares)
    codes: torch.Tensor  # (B, N, 4) raw box codes (tx, ty, tw, th) against the anchors


class SSDHead(nn.Module):
    """The SSD's six box predictors (3x3 convs) and the box decoder; class columns are the kept COCO ones,
    mapped to our detection classes by the best sigmoid score among each class's COCO ids."""

    select: torch.Tensor

    def __init__(self, anchor_base: float = 300.0, fine: bool = False) -> None:
        super().__init__()
        per_cell = anchors_per_cell()
        k = len(COCO_KEEP)
        self.cls = nn.ModuleList(nn.Conv2d(c, a * k, 3, padding=1) for c, a in zip(PREDICTOR_IN, per_cell))
        self.box = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(PREDICTOR_IN, per_cell))
        self.fine = FineLevel(k) if fine else None
        self.anchor_base = float(anchor_base)
        self._anchor_cache: dict[tuple[int, int], np.ndarray] = {}
        # (num_det_classes, len(COCO_KEEP)) 0/1: which kept columns feed each detection class
        select = torch.zeros(len(DETECTION_NAMES), k)
        for d, name in enumerate(DETECTION_NAMES):
            for coco in DETECTION_FROM_COCO[name]:
                select[d, COCO_KEEP.index(coco)] = 1.0
        self.register_buffer("select", select, persistent=False)

    def anchors(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._anchor_cache:
            self._anchor_cache[key] = ssd_anchors(height, width, self.anchor_base, fine=self.fine is not None)
        return self._anchor_cache[key]

    def forward(self, maps: list[torch.Tensor], height: int, width: int,
                fine_inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> SSDHeadOutput:
        """``maps``: the six predictor inputs; ``fine_inputs``: (s8, s16 tap), needed when the head has a fine
        level (its anchors come last)."""
        b = maps[0].shape[0]
        k = len(COCO_KEEP)
        logit_parts = [c(m).permute(0, 2, 3, 1).reshape(b, -1, k) for c, m in zip(self.cls, maps)]
        code_parts = [r(m).permute(0, 2, 3, 1).reshape(b, -1, 4) for r, m in zip(self.box, maps)]
        if self.fine is not None:
            if fine_inputs is None:
                raise ModelError("this SSD head has a fine level: pass its (s8, s16) inputs")
            fl, fc = self.fine(*fine_inputs)
            logit_parts.append(fl.permute(0, 2, 3, 1).reshape(b, -1, k))
            code_parts.append(fc.permute(0, 2, 3, 1).reshape(b, -1, 4))
        logits = torch.cat(logit_parts, dim=1)
        codes = torch.cat(code_parts, dim=1)
        anchors = torch.as_tensor(self.anchors(height, width), device=codes.device)
        return SSDHeadOutput(decode_codes(codes.float(), anchors), self.class_scores(logits), logits, codes)

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, N, C) our classes' scores: the best sigmoid among each class's COCO columns."""
        probs = torch.sigmoid(logits.float())  # (B, N, K)
        masked = probs[:, :, None, :] * self.select[None, None]  # (B, N, C, K)
        return masked.amax(dim=-1)


def decode_codes(codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """SSD box coder (TF ``FasterRcnnBoxCoder``, scales 10, 10, 5, 5): codes (B, N, 4) ``(tx, ty, tw, th)``
    against anchors (N, 4) ``(cx, cy, w, h)`` -> (B, N, 4) xyxy pixels. (TF orders codes y-first; OpenCV's
    importer, which the conversion reads, already swapped the predictor's output channels to x-first.)
    Log-sizes are clamped so a degenerate code never overflows to inf."""
    sx, sy, sw, sh = BOX_SCALES[1], BOX_SCALES[0], BOX_SCALES[3], BOX_SCALES[2]
    clip = math.log(1000.0 / 16.0)
    cx = codes[..., 0] / sx * anchors[:, 2] + anchors[:, 0]
    cy = codes[..., 1] / sy * anchors[:, 3] + anchors[:, 1]
    w = torch.exp(torch.clamp(codes[..., 2] / sw, max=clip)) * anchors[:, 2]
    h = torch.exp(torch.clamp(codes[..., 3] / sh, max=clip)) * anchors[:, 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def pretrained_weights_path() -> Path:
    """The converted COCO weights shipped in ``perception/weights/pretrained`` (see the JSON beside them)."""
    from perception.weights import WEIGHTS_DIR

    return WEIGHTS_DIR / "pretrained" / "ssd_mobilenet_v2_coco.safetensors"


def build_mbv2ssd(cfg: NetConfig, pretrained: bool) -> tuple[MobileNetV2SSDTrunk, SSDHead]:
    """Trunk (with residual attention on the s16/s32 taps when ``cfg.attention``) and anchor head; with
    ``pretrained`` both get the converted COCO weights (the grafted parts keep their identity init)."""
    attention = None
    if cfg.attention is not None:
        mods = []
        for ch in OUT_CHANNELS[2:]:
            attn = create_attention(cfg.attention, ch, reduction=cfg.reduction, kernel_size=cfg.kernel_size,
                                    projection=cfg.spatial_projection)
            assert attn is not None
            mods.append(ResidualAttention(attn))
        attention = (mods[0], mods[1])
    trunk, head = MobileNetV2SSDTrunk(attention), SSDHead(cfg.anchor_base, fine=cfg.fine_level)
    if pretrained:
        from safetensors.torch import load_file

        path = pretrained_weights_path()
        if not path.is_file():
            raise ModelError(f"the COCO SSD-MobileNetV2 weights {path} are missing; rebuild them with "
                             "`make weights-mbv2ssd` (needs `make data`)")
        state = load_file(str(path))
        for module, prefix in ((trunk, "trunk."), (head, "head.")):
            own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            missing, unexpected = module.load_state_dict(own, strict=False)
            missing = [k for k in missing if not k.startswith(("attn.", "fine."))]  # new parts: own init
            if missing or unexpected:
                raise ModelError(f"{path} does not fit the {prefix[:-1]}: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}; rebuild it with `make weights-mbv2ssd`")
    return trunk, head

"""STAN: spatio-temporal attention network — multi-task (detection + segmentation + attention).

Output contract (``forward(image, memory=None, memory_valid=None)``), keys in this order:

- ``heatmap`` (B, num_det_classes, H/8, W/8): logits of CenterNet-style object-centre heatmaps;
- ``box`` (B, 4, H/8, W/8): non-negative (left, top, right, bottom) distances from the cell centre
  ``((j + 0.5) * 8, (i + 0.5) * 8)`` to the box edges, in strides (pixels = value * 8);
- ``seg`` (B, num_seg_classes, H/4, W/4): segmentation logits;
- ``attention`` (B, 1, H/8, W/8) in [0, 1]: the mean of the spatial attention maps of the attended
  stages, upsampled (bilinear) to stride 8. Networks without a spatial attention map (the
  no-attention ablation, channel-only attention) return an ACTIVATION-based map instead
  (Zagoruyko & Komodakis 2017): the channel mean of |features| of stages 8/16/32, each divided by
  its per-image maximum, upsampled to stride 8 and averaged — comparable in range, so attention
  concentration can be compared across variants;
- temporal variants also ``memory`` (B, K, Cm, H/s, W/s), s = ``memory_stride`` (32 or 16), and
  ``memory_valid`` (B, K): the state for the next frame (slot 0 = this frame).

The names are :mod:`perception.models.contract`'s (what every runtime runs under).

``image`` is float32 RGB in [0, 1], (B, 3, H, W) with H and W multiples of 32; mean/std
normalisation happens inside.
"""

from __future__ import annotations

import torch
from torch import nn

from perception.models.backbone import Backbone, act_layer_of
from perception.models.config import NetConfig
from perception.models.contract import IMAGE_INPUT, STATE_INPUTS, head_outputs
from perception.models.errors import ModelError
from perception.models.heads import DetectionHead, SegmentationHead
from perception.models.layers import TemporalAttention
from perception.models.lite0 import Lite0Backbone
from perception.models.mbv2_ssd import MobileNetV2SSDTrunk, SSDHead, SSDHeadOutput, build_mbv2ssd
from perception.models.neck import FPNNeck, upsample_to

_EPS = 1e-6


def activation_attention(feats: list[torch.Tensor], ref: torch.Tensor) -> torch.Tensor:
    """Activation-based attention (Zagoruyko & Komodakis): mean over ``feats`` of the channel
    mean of |f|, each normalised by its per-image max, resized to ``ref``; (B, 1, h, w) in [0, 1]."""
    maps = []
    for f in feats:
        a = f.abs().mean(dim=1, keepdim=True).float()
        a = a / (a.amax(dim=(2, 3), keepdim=True) + _EPS)
        maps.append(upsample_to(a, ref, mode="bilinear"))
    return torch.stack(maps, dim=0).mean(dim=0).clamp(0.0, 1.0)


class STAN(nn.Module):
    """The stan network family; build through :func:`perception.models.registry.build_model`."""

    stride_det = 8
    stride_seg = 4

    def __init__(self, cfg: NetConfig, name: str = "stan", pretrained: bool | None = None) -> None:
        """``pretrained`` None follows ``cfg.pretrained``; False skips loading pretrained trunk weights
        (a checkpoint's own weights replace them anyway)."""
        super().__init__()
        self.cfg = cfg
        self.name = name
        act = act_layer_of(cfg.act)
        self.det_head: DetectionHead | SSDHead
        self.backbone: Backbone | Lite0Backbone | MobileNetV2SSDTrunk
        if cfg.backbone == "mbv2ssd":
            self.backbone, self.det_head = build_mbv2ssd(cfg, cfg.pretrained if pretrained is None else pretrained)
        elif cfg.backbone == "lite0":
            self.backbone = Lite0Backbone(cfg, pretrained)
        else:
            self.backbone = Backbone(cfg)
        self.stride_memory = cfg.memory_stride
        self._memory_stage = 3 if cfg.memory_stride == 32 else 2
        self.temporal: TemporalAttention | None = (
            TemporalAttention(
                self.backbone.out_channels[self._memory_stage], cfg.memory_len, cfg.memory_channels, cfg.temporal_heads
            )
            if cfg.temporal
            else None
        )
        self.neck = FPNNeck(self.backbone.out_channels, cfg.neck_channels, cfg.seg_channels, act)
        if cfg.det_head == "centernet":
            self.det_head = DetectionHead(
                cfg.neck_channels, cfg.head_channels, cfg.num_det_classes, act, cfg.heatmap_prior, cfg.box_init
            )
        self.seg_head = SegmentationHead(cfg.seg_channels, cfg.num_seg_classes)
        self._spatial_map = (
            cfg.attention is not None
            and cfg.attention.lower() in ("cbam", "spatial")
            and (cfg.backbone == "mbv2ssd" or bool(set(cfg.attention_stages) & {0, 1, 2, 3}))
        )

    # ----------------------------------------------------------------------------- state
    @property
    def has_attention_map(self) -> bool:
        """True when ``attention`` is the network's own spatial attention (CBAM / spatial gates), which
        modulates its features; False when it is the activation-based map of an ablation."""
        return self._spatial_map

    @property
    def is_temporal(self) -> bool:
        return self.temporal is not None

    @property
    def input_names(self) -> list[str]:
        return [IMAGE_INPUT, *STATE_INPUTS] if self.is_temporal else [IMAGE_INPUT]

    @property
    def output_names(self) -> list[str]:
        heads = list(head_outputs(self.cfg.det_head))
        return [*heads, *STATE_INPUTS] if self.is_temporal else heads

    def _temporal(self) -> TemporalAttention:
        if self.temporal is None:
            raise ModelError(f"{self.name} is not temporal: it has no state; use a *_temporal model")
        return self.temporal

    def state_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Per-sample memory shape ``(K, Cm, height/s, width/s)`` (s = ``memory_stride``) for an input of
        ``height x width``."""
        check_input_size(height, width)
        return self._temporal().state_shape(height // self.stride_memory, width // self.stride_memory)

    def init_state(
        self,
        batch: int,
        height: int,
        width: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Empty ``(memory, memory_valid)`` (zeros) for ``batch`` inputs of ``height x width`` pixels."""
        check_input_size(height, width)
        return self._temporal().init_state(
            batch, height // self.stride_memory, width // self.stride_memory, device=device, dtype=dtype
        )

    # ----------------------------------------------------------------------------- forward
    def forward_features(
        self,
        image: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``p8`` (stride-8 neck features), ``p4`` (stride-4 seg features), ``attention`` and, when
        temporal, ``memory``/``memory_valid`` for the next frame."""
        feats, maps = self.backbone(image)  # mean/std normalisation is folded into the stem conv
        out: dict[str, torch.Tensor] = {}
        if self.temporal is not None:
            if memory is None or memory_valid is None:
                B, _, H, W = image.shape
                memory, memory_valid = self.init_state(B, H, W, device=image.device)
            i = self._memory_stage
            fused, next_memory, next_valid = self.temporal(feats[i], memory, memory_valid)
            feats = [*feats[:i], fused, *feats[i + 1 :]]
        p8, p4 = self.neck(feats)
        if self._spatial_map and maps:
            attn = torch.stack([upsample_to(m.float(), p8, mode="bilinear") for m in maps], dim=0).mean(dim=0)
        else:
            attn = activation_attention(feats[1:], p8)
        out["p8"], out["p4"], out["attention"] = p8, p4, attn.clamp(0.0, 1.0)
        if self.cfg.det_head == "ssd":
            out["s8"], out["s16"], out["s32"] = feats[1], feats[2], feats[3]
        if self.temporal is not None:
            out["memory"], out["memory_valid"] = next_memory, next_valid
        return out

    def memory_usage(
        self, image: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The temporal memory-use probe for one frame: ``(stats, next_memory, next_valid)`` with
        the statistics of :meth:`TemporalAttention.forward_with_stats` (the heads are not run)."""
        feats, _ = self.backbone(image)
        _, next_memory, next_valid, stats = self._temporal().forward_with_stats(
            feats[self._memory_stage], memory, memory_valid
        )
        return stats, next_memory, next_valid

    def forward_head(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Heads on :meth:`forward_features` output; returns the output contract dict."""
        out: dict[str, torch.Tensor]
        if isinstance(self.det_head, SSDHead):
            det = self.forward_ssd(features)
            out = {"boxes": det.boxes, "scores": det.scores}
        else:
            heatmap, box = self.det_head(features["p8"])
            out = {"heatmap": heatmap, "box": box}
        out.update({"seg": self.seg_head(features["p4"]), "attention": features["attention"]})
        if "memory" in features:
            out["memory"] = features["memory"]
            out["memory_valid"] = features["memory_valid"]
        return out

    def forward_ssd(self, features: dict[str, torch.Tensor]) -> SSDHeadOutput:
        """The anchor head (mbv2ssd) on :meth:`forward_features` output: boxes, our class scores and the raw
        COCO logits (what distillation from the original detector compares)."""
        assert isinstance(self.det_head, SSDHead) and isinstance(self.backbone, MobileNetV2SSDTrunk)
        s16, s32 = features["s16"], features["s32"]
        maps = [s16, s32, *self.backbone.extras(s32)]
        h, w = int(features["p4"].shape[-2]) * 4, int(features["p4"].shape[-1]) * 4
        fine = (features["s8"], s16) if self.det_head.fine is not None else None
        return self.det_head(maps, h, w, fine)

    def forward(
        self,
        image: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(image, memory, memory_valid))


def check_input_size(height: int, width: int) -> None:
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise ModelError(f"input size {height}x{width} must be positive multiples of 32; letterbox/resize first")

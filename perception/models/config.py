"""``NetConfig``: the one frozen dataclass that fully describes a network of the stan family."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from perception.core import classes
from perception.models.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# trunks a network can be built on: "stan" (the family's own, trained from scratch) and "lite0"
# (EfficientNet-Lite0, ImageNet-pretrained weights shipped in perception/weights/pretrained) and "mbv2ssd"
# (SSD-MobileNetV2 trained on COCO: trunk AND anchor detection head, real-image weights in the same folder)
BACKBONES = ("stan", "lite0", "mbv2ssd")


@dataclass(frozen=True)
class NetConfig:
    """Architecture of a spatio-temporal attention network (stan).

    Stages run at strides 4, 8, 16, 32 with ``widths``/``depths`` each (a stride-2 3x3 conv then
    ``depth`` residual blocks of two 3x3 convs). ``attention`` (``"cbam"``, ``"channel"``,
    ``"spatial"`` or None) is applied after the stages listed in ``attention_stages``
    (indices into the 4 stages; default the stride 8/16/32 ones). ``temporal`` adds temporal
    attention over ``memory_len`` previous frames before the neck, on the stage of stride
    ``memory_stride`` (32: the coarsest, cheapest; 16: four times the cells, finer correspondence).

    ``backbone`` picks the trunk: ``"stan"`` (above) or ``"lite0"`` (EfficientNet-Lite0; its
    ``widths`` are fixed at (24, 40, 112, 320) and ``stem_width``/``depths``/``act`` do not apply
    to it). ``pretrained`` loads the shipped ImageNet trunk weights when the network is built
    (lite0 only; a checkpoint's own weights replace them on load), ``freeze_blocks`` N > 0 freezes
    the lite0 stem and its first N blocks (no gradients, BatchNorm kept in eval mode).

    ``"mbv2ssd"`` is the COCO-trained SSD-MobileNetV2 with its own anchor detection head (outputs
    ``boxes``/``scores`` instead of ``heatmap``/``box``, see :mod:`perception.models.mbv2_ssd`); its
    attention (residual CBAM, identity at init) sits on the stride-16 and stride-32 taps, and
    ``anchor_base`` is the pixel size the anchor scales are relative to (300: as trained; 0: the
    input's shorter side, TF's rule).
    """

    widths: tuple[int, int, int, int] = (24, 48, 96, 160)
    depths: tuple[int, int, int, int] = (1, 2, 2, 1)
    stem_width: int = 16
    neck_channels: int = 64
    seg_channels: int = 48
    head_channels: int = 64
    act: str = "relu"
    attention: str | None = "cbam"
    attention_stages: tuple[int, ...] = (1, 2, 3)
    reduction: int = 16
    kernel_size: int = 7
    temporal: bool = False
    memory_len: int = 3
    memory_channels: int = 64
    temporal_heads: int = 4
    memory_stride: int = 32
    num_det_classes: int = classes.NUM_DETECTION
    num_seg_classes: int = classes.NUM_SEMANTIC
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    heatmap_prior: float = 0.1  # initial sigmoid of the heatmap logits (CenterNet: bias -2.19)
    box_init: float = 1.0  # initial ltrb distance in strides
    backbone: str = "stan"
    pretrained: bool = False
    freeze_blocks: int = 0
    anchor_base: float = 300.0
    spatial_projection: int = 0  # learned channel poolings in the spatial attention (besides mean and max)
    fine_level: bool = False  # mbv2ssd: a stride-8 predictor with 15-30 px anchors for small objects

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or len(self.depths) != 4:
            raise ModelError(
                f"widths and depths need 4 entries (strides 4, 8, 16, 32); got {self.widths}, {self.depths}"
            )
        if any(s not in (0, 1, 2, 3) for s in self.attention_stages):
            raise ModelError(f"attention_stages must be indices 0..3, got {self.attention_stages}")
        if self.act not in ("relu", "silu"):
            raise ModelError(f"act must be 'relu' or 'silu', got {self.act!r}")
        if self.backbone not in BACKBONES:
            raise ModelError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.backbone == "mbv2ssd" and self.attention is not None and self.attention.lower() not in (
                "cbam", "spatial", "channel", "none"):
            raise ModelError(f"attention {self.attention!r} cannot be grafted on mbv2ssd; use cbam, spatial, channel")
        if self.fine_level and self.backbone != "mbv2ssd":
            raise ModelError("fine_level is a level of the anchor head: only the mbv2ssd backbone has one")
        if self.anchor_base < 0:
            raise ModelError(f"anchor_base must be >= 0 (0: the input's shorter side), got {self.anchor_base}")
        if self.backbone == "stan" and (self.pretrained or self.freeze_blocks):
            raise ModelError(
                "the stan backbone has no pretrained weights (pretrained/freeze_blocks); use backbone='lite0'"
            )
        if self.memory_stride not in (16, 32):
            raise ModelError(f"memory_stride must be 16 or 32 (the stage the temporal memory attends on), "
                             f"got {self.memory_stride}")
        if self.freeze_blocks < 0:
            raise ModelError(f"freeze_blocks must be >= 0 (0: train every block), got {self.freeze_blocks}")
        if self.attention is not None and self.attention.lower() == "none":
            object.__setattr__(self, "attention", None)

    @property
    def det_head(self) -> str:
        """``"ssd"`` (anchor head, outputs boxes/scores) for mbv2ssd, else ``"centernet"`` (heatmap/box)."""
        return "ssd" if self.backbone == "mbv2ssd" else "centernet"

    @property
    def has_attention(self) -> bool:
        return self.attention is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (they signal a newer/other format)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown NetConfig keys {unknown}; known keys: {sorted(known)}")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kw)

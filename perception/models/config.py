"""``NetConfig``: the one frozen dataclass that fully describes a network of the stan family."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from perception.core import classes
from perception.models.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class NetConfig:
    """Architecture of a spatio-temporal attention network (stan).

    Stages run at strides 4, 8, 16, 32 with ``widths``/``depths`` each (a stride-2 3x3 conv then
    ``depth`` residual blocks of two 3x3 convs). ``attention`` (``"cbam"``, ``"channel"``,
    ``"spatial"`` or None) is applied after the stages listed in ``attention_stages``
    (indices into the 4 stages; default the stride 8/16/32 ones). ``temporal`` adds temporal
    attention over ``memory_len`` previous frames at stride 32 before the neck.
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
    num_det_classes: int = classes.NUM_DETECTION
    num_seg_classes: int = classes.NUM_SEMANTIC
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    heatmap_prior: float = 0.1  # initial sigmoid of the heatmap logits (CenterNet: bias -2.19)
    box_init: float = 1.0  # initial ltrb distance in strides

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or len(self.depths) != 4:
            raise ModelError(
                f"widths and depths need 4 entries (strides 4, 8, 16, 32); got {self.widths}, {self.depths}"
            )
        if any(s not in (0, 1, 2, 3) for s in self.attention_stages):
            raise ModelError(f"attention_stages must be indices 0..3, got {self.attention_stages}")
        if self.act not in ("relu", "silu"):
            raise ModelError(f"act must be 'relu' or 'silu', got {self.act!r}")
        if self.attention is not None and self.attention.lower() == "none":
            object.__setattr__(self, "attention", None)

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

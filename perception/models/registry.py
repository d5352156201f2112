"""Model registry: ``build_model(name, **overrides)``, ``list_models()``, ``model_config(name)``.

Family ``stan`` (spatio-temporal attention network), sizes ``s`` (~1.5 M params) and ``m``
(~5 M), each as spatial-only (CBAM), spatio-temporal (CBAM + temporal attention at stride 32)
and no-attention ablation; ``lite0`` is the ``s`` neck and heads on an ImageNet-pretrained
EfficientNet-Lite0 trunk (~3.1 M params, 3.4 M temporal; ``pretrained=False`` for a random init,
``freeze_blocks=N`` to freeze its stem and first N blocks); ``mbv2`` is the COCO-trained
SSD-MobileNetV2 (trunk and anchor detection head, real images) with residual CBAM grafted on, and the
``s`` neck for segmentation (~4.9 M params).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from perception.models.config import NetConfig
from perception.models.errors import ModelError
from perception.models.stan import STAN

_S = NetConfig(
    widths=(24, 48, 96, 160),
    depths=(1, 2, 2, 1),
    stem_width=16,
    neck_channels=64,
    seg_channels=32,
    head_channels=48,
    memory_channels=64,
)
_M = NetConfig(
    widths=(32, 64, 128, 256),
    depths=(1, 2, 3, 2),
    stem_width=24,
    neck_channels=96,
    seg_channels=64,
    head_channels=96,
    memory_channels=96,
)
_TINY = NetConfig(
    widths=(8, 16, 24, 32),
    depths=(1, 1, 1, 1),
    stem_width=8,
    neck_channels=16,
    seg_channels=16,
    head_channels=16,
    memory_channels=16,
    temporal_heads=2,
    reduction=4,
)

# EfficientNet-Lite0 trunk with ImageNet weights (inputs scaled by mean = std = 0.5 inside the stem)
_LITE0 = replace(
    _S,
    backbone="lite0",
    pretrained=True,
    widths=(24, 40, 112, 320),
    depths=(3, 2, 6, 5),  # Lite0 blocks per stage (informative: the trunk is fixed)
    stem_width=32,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)

# SSD-MobileNetV2 trained on COCO (real images): trunk + anchor head kept, residual CBAM grafted on the
# stride-16/32 taps (identity at init), segmentation neck and head new (input scaled by x * 2 - 1 in the stem)
_MBV2 = replace(
    _S,
    backbone="mbv2ssd",
    pretrained=True,
    widths=(24, 32, 576, 1280),  # informative: the trunk is fixed
    depths=(3, 3, 7, 4),
    stem_width=32,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    attention_stages=(2, 3),
    spatial_projection=16,
    fine_level=True,  # stride-8 anchors for objects under the SSD's 30 px smallest one (new, trained by --graft)
)

_MODELS: dict[str, NetConfig] = {
    "stan_s": _S,
    "stan_s_temporal": replace(_S, temporal=True),
    "stan_s_noattn": replace(_S, attention=None),
    "stan_s_noattn_temporal": replace(_S, attention=None, temporal=True),
    "stan_m": _M,
    "stan_m_temporal": replace(_M, temporal=True),
    "stan_m_noattn": replace(_M, attention=None),
    "stan_lite0": _LITE0,
    "stan_lite0_temporal": replace(_LITE0, temporal=True),
    "stan_lite0_noattn": replace(_LITE0, attention=None),
    "stan_lite0_noattn_temporal": replace(_LITE0, attention=None, temporal=True),
    "stan_mbv2": _MBV2,
    "stan_mbv2_temporal": replace(_MBV2, temporal=True),
    "stan_mbv2_noattn": replace(_MBV2, attention=None),
    # for tests and smoke runs only (~30 k params)
    "stan_tiny": _TINY,
    "stan_tiny_temporal": replace(_TINY, temporal=True),
    "stan_tiny_noattn": replace(_TINY, attention=None),
}


def list_models() -> list[str]:
    """Registered model names."""
    return list(_MODELS)


def model_config(name: str, **overrides: Any) -> NetConfig:
    """The :class:`NetConfig` of ``name`` with ``overrides`` (NetConfig field names) applied."""
    try:
        cfg = _MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; registered: {', '.join(_MODELS)}") from None
    known = {f.name for f in fields(NetConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ModelError(f"unknown override(s) {bad} for {name}; NetConfig fields: {sorted(known)}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(cfg, **overrides)


def build_model(name: str, **overrides: Any) -> STAN:
    """Build registered network ``name``; ``overrides`` replace NetConfig fields (e.g. ``temporal=True``)."""
    return STAN(model_config(name, **overrides), name=name)


def build_from_config(config: NetConfig, name: str = "stan", pretrained: bool = False) -> STAN:
    """Build a network from an explicit config (as stored in a checkpoint, whose weights replace any
    pretrained ones: those are only loaded when ``pretrained``)."""
    return STAN(config, name=name, pretrained=pretrained and config.pretrained)

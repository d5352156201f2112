"""Attention layers (timm style, one concept per file, channels first).

Every attention module has ``forward(x) -> features`` and ``forward_with_map(x)`` that also
returns its attention map; :func:`create_attention` returns ``None`` when attention is off.
"""

from perception.models.layers.cbam import CBAM
from perception.models.layers.channel import ChannelAttention
from perception.models.layers.conv import ConvBnAct
from perception.models.layers.create import ATTENTION_KINDS, create_attention
from perception.models.layers.spatial import SpatialAttention
from perception.models.layers.temporal import TemporalAttention

__all__ = [
    "ATTENTION_KINDS",
    "CBAM",
    "ChannelAttention",
    "ConvBnAct",
    "SpatialAttention",
    "TemporalAttention",
    "create_attention",
]

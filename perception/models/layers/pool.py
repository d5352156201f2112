"""Global and channel pooling used by the attention layers, fast in every memory format.

PyTorch's CPU ``amax`` over the spatial dims of a channels_last bf16 tensor is ~15x slower than
``adaptive_max_pool2d``, while for contiguous NCHW tensors ``amax`` is the fast one. The choice
depends only on the memory format (tensor metadata, fixed at trace time), never on values, so
traced/exported graphs stay static. All variants compute the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4D tensor stored channels_last (and not also plain contiguous, e.g. C == 1)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def global_avg_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial mean and max, each (B, C, 1, 1)."""
    if is_channels_last(x):
        return F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)
    return x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)


def channel_avg_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel mean and max, each (B, 1, H, W)."""
    if is_channels_last(x) and x.dtype != torch.float32:
        return x.mean(dim=1, keepdim=True), x.float().amax(dim=1, keepdim=True).to(x.dtype)
    return x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)

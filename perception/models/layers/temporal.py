"""Temporal attention: the current frame's features attend over a memory of K previous frames.

The memory is an explicit tensor input and output (no hidden Python state), so the same graph
exports to ONNX/TensorRT with the state as plain inputs/outputs:

    memory       (B, K, Cm, h, w)  projected features of the K previous frames, slot 0 = newest
    memory_valid (B, K)            1.0 where a slot holds a real frame, 0.0 where it is empty

Keys/values are the current frame's own tokens (always valid, so an all-empty memory still gives
finite output) followed by the K memory slots; invalid slots are zeroed and masked out of the
softmax, so their content cannot influence anything. Queries and keys carry a 2D sinusoidal
positional encoding (in cells) so spatial correspondence of moving objects can be learned, and
keys a learned per-slot (age) embedding. The result is fused with a gated residual
``x + sigmoid(gate([x, y])) * y``. The updated memory pushes the current frame's projected
features in at slot 0 and drops the oldest slot.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from perception.models.errors import ModelError

_MASK_VALUE = -1.0e4  # additive logit for invalid keys: exp() underflows to exactly 0 in fp32/bf16


def sincos_position_2d(
    height: int, width: int, channels: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``(height * width, channels)`` 2D sine/cosine encoding of cell indices (row-major).

    Half the channels encode the column, half the row; periods grow geometrically from 4 to
    256 cells so nearby cells are similar and distant ones distinguishable.
    """
    if channels % 4 != 0:
        raise ModelError(f"positional encoding needs channels divisible by 4 (got {channels})")
    n_freq = channels // 4
    k = torch.arange(n_freq, device=device, dtype=torch.float32)
    periods = 4.0 * torch.pow(64.0, k / max(1, n_freq - 1))
    omega = (2.0 * math.pi) / periods  # (n_freq,)
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    ay = ys[:, None] * omega[None, :]  # (h, n_freq)
    ax = xs[:, None] * omega[None, :]  # (w, n_freq)
    enc_y = torch.cat([ay.sin(), ay.cos()], dim=1)[:, None, :].expand(height, width, 2 * n_freq)
    enc_x = torch.cat([ax.sin(), ax.cos()], dim=1)[None, :, :].expand(height, width, 2 * n_freq)
    return torch.cat([enc_x, enc_y], dim=2).reshape(height * width, channels).to(dtype)


class TemporalAttention(nn.Module):
    """Multi-head attention of the current frame's tokens over [current, memory slots 0..K-1].

    Args:
        channels: channels of the incoming feature map ``x`` (B, C, h, w).
        memory_len: K, number of previous frames kept.
        memory_channels: Cm, channels of the projected features stored in the memory.
        num_heads: attention heads; ``memory_channels`` must be divisible by it.
        gate_bias: initial bias of the fusion gate (negative: starts close to identity).
    """

    def __init__(
        self,
        channels: int,
        memory_len: int = 3,
        memory_channels: int = 64,
        num_heads: int = 4,
        gate_bias: float = -2.0,
    ) -> None:
        super().__init__()
        if memory_len < 1:
            raise ModelError(f"memory_len must be >= 1 (got {memory_len}); disable temporal attention instead")
        if memory_channels % num_heads != 0 or memory_channels % 4 != 0:
            raise ModelError(f"memory_channels={memory_channels} must be divisible by num_heads={num_heads} and by 4")
        self.channels = channels
        self.memory_len = memory_len
        self.memory_channels = memory_channels
        self.num_heads = num_heads
        self.head_dim = memory_channels // num_heads
        self.scale = self.head_dim**-0.5
        self.proj_in = nn.Conv2d(channels, memory_channels, 1)
        self.norm_q = nn.LayerNorm(memory_channels)
        self.norm_kv = nn.LayerNorm(memory_channels)
        self.q = nn.Linear(memory_channels, memory_channels)
        self.k = nn.Linear(memory_channels, memory_channels)
        self.v = nn.Linear(memory_channels, memory_channels)
        self.out = nn.Linear(memory_channels, memory_channels)
        # slot 0 = current frame, slots 1..K = memory (age 1..K)
        self.slot_embed = nn.Parameter(torch.zeros(memory_len + 1, memory_channels))
        nn.init.trunc_normal_(self.slot_embed, std=0.02)
        self.proj_out = nn.Conv2d(memory_channels, channels, 1)
        self.gate = nn.Conv2d(2 * channels, channels, 1)
        if self.gate.bias is not None:
            nn.init.constant_(self.gate.bias, gate_bias)

    def state_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Per-sample memory shape ``(K, Cm, height, width)`` for a feature map of that size."""
        return (self.memory_len, self.memory_channels, height, width)

    def init_state(
        self,
        batch: int,
        height: int,
        width: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An empty memory (zeros, all slots invalid) for feature maps of ``height x width``."""
        dtype = dtype or torch.float32
        mem = torch.zeros((batch, *self.state_shape(height, width)), device=device, dtype=dtype)
        return mem, torch.zeros((batch, self.memory_len), device=device, dtype=dtype)

    def _tokens(
        self, x: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected current features, masked memory, per-head q/k/v, additive key bias and key validity."""
        B, _, h, w = x.shape
        K, Cm, n = self.memory_len, self.memory_channels, h * w
        cur = self.proj_in(x)  # (B, Cm, h, w)
        valid = memory_valid.to(cur.dtype)
        zeros = torch.zeros_like(cur[:, None])
        mem = torch.where(valid[:, :, None, None, None] > 0.5, memory.to(cur.dtype), zeros)  # (B, K, Cm, h, w)

        cur_tok = cur.flatten(2).transpose(1, 2)  # (B, n, Cm)
        mem_tok = mem.permute(0, 1, 3, 4, 2).reshape(B, K * n, Cm)
        kv = torch.cat([cur_tok, mem_tok], dim=1)  # (B, (K+1) n, Cm)

        pos = sincos_position_2d(h, w, Cm, x.device, cur_tok.dtype)  # (n, Cm)
        slot = self.slot_embed.to(cur_tok.dtype)[:, None, :].expand(K + 1, n, Cm).reshape((K + 1) * n, Cm)
        pos_kv = pos.repeat(K + 1, 1) + slot

        kv_n = self.norm_kv(kv)
        q = self.q(self.norm_q(cur_tok) + pos)
        k = self.k(kv_n + pos_kv)
        v = self.v(kv_n)
        H, D = self.num_heads, self.head_dim
        q = q.reshape(B, n, H, D).transpose(1, 2)  # (B, H, n, D)
        k = k.reshape(B, (K + 1) * n, H, D).transpose(1, 2)
        v = v.reshape(B, (K + 1) * n, H, D).transpose(1, 2)
        key_valid = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)  # (B, K+1)
        bias = ((1.0 - key_valid) * _MASK_VALUE)[:, :, None].expand(B, K + 1, n).reshape(B, 1, 1, (K + 1) * n)
        return cur, mem, q, k, v, bias.to(q.dtype), valid

    def _fuse(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        cur: torch.Tensor,
        mem: torch.Tensor,
        valid: torch.Tensor,
        memory: torch.Tensor,
        memory_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, _, h, w = x.shape
        K, Cm = self.memory_len, self.memory_channels
        y = y.transpose(1, 2).reshape(B, h * w, Cm)
        y = self.out(y).transpose(1, 2).reshape(B, Cm, h, w)
        y = self.proj_out(y)
        g = torch.sigmoid(self.gate(torch.cat([x, y.to(x.dtype)], dim=1)))
        fused = x + g * y
        next_memory = torch.cat([cur[:, None], mem[:, : K - 1]], dim=1).to(memory.dtype)
        next_valid = torch.cat([torch.ones_like(valid[:, :1]), valid[:, : K - 1]], dim=1).to(memory_valid.dtype)
        return fused, next_memory, next_valid

    def forward_with_map(
        self, x: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(fused, next_memory, next_valid, slot_weights)``.

        ``slot_weights`` (B, K + 1) is the attention mass per key slot averaged over heads and
        queries: index 0 is the current frame, index k the memory slot k - 1 (rows sum to 1).
        Same result as :meth:`forward` (explicit softmax instead of the fused kernel).
        """
        fused, next_memory, next_valid, stats = self.forward_with_stats(x, memory, memory_valid)
        return fused, next_memory, next_valid, stats["slot_weights"]

    def forward_with_stats(
        self, x: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`forward` plus what the memory contributes, per sample (the memory-use probe):

        - ``slot_weights`` (B, K + 1): attention mass per key slot (see :meth:`forward_with_map`);
        - ``entropy`` (B,): attention entropy per query over the valid keys, divided by its maximum
          log(#valid keys) and averaged over heads and queries -- 1.0 is uniform attention (a global
          average: no correspondence), near 0 a sharp look-up;
        - ``residual`` (B,): mean |gate * attended| over mean |x| -- how much the fused features move;
        - ``feature_abs`` (B,): mean |x|.
        """
        B, _, h, w = x.shape
        K, n = self.memory_len, h * w
        cur, mem, q, k, v, bias, valid = self._tokens(x, memory, memory_valid)
        logits = torch.matmul(q, k.transpose(-2, -1)) * self.scale + bias
        weights = torch.softmax(logits.float(), dim=-1)  # (B, H, n, (K+1) n)
        y = torch.matmul(weights.to(v.dtype), v)
        fused, next_memory, next_valid = self._fuse(x, y, cur, mem, valid, memory, memory_valid)
        n_keys = (1.0 + valid.float().sum(dim=1)) * n  # (B,)
        ent = -(weights * torch.log(weights.clamp_min(1e-12))).sum(dim=-1).mean(dim=(1, 2))
        x_abs = x.float().abs().mean(dim=(1, 2, 3))
        stats = {
            "slot_weights": weights.reshape(B, self.num_heads, n, K + 1, n).sum(dim=-1).mean(dim=(1, 2)),
            "entropy": ent / torch.log(n_keys).clamp_min(1e-6),
            "residual": (fused - x).float().abs().mean(dim=(1, 2, 3)) / x_abs.clamp_min(1e-12),
            "feature_abs": x_abs,
        }
        return fused, next_memory, next_valid, stats

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(fused, next_memory, next_valid)``."""
        cur, mem, q, k, v, bias, valid = self._tokens(x, memory, memory_valid)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self._fuse(x, y, cur, mem, valid, memory, memory_valid)

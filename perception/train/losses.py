"""Multi-task loss of the stan networks: CenterNet focal + GIoU/L1 boxes + CE/dice segmentation.

Batch target format (``targets`` argument of :class:`DetSegLoss`, build it with
:func:`stack_targets`), B images of H x W network-input pixels, stride 8 detection:

- ``heatmap``    float32 (B, C, H/8, W/8) — :func:`perception.train.targets.encode_targets`
- ``box``        float32 (B, 4, H/8, W/8) ltrb in strides
- ``reg_weight`` float32 (B, 1, H/8, W/8)
- ``hm_ignore``  float32 (B, 1, H/8, W/8); an image without detection labels has it all 1
  (:func:`perception.train.targets.unsupervised_targets`) and contributes no detection loss
- ``objmask``    float32 (B, 1, H/8, W/8) object-saliency target of the attention map in [0, 1],
  -1 where unknown (optional: without the key, or with weight ``attention`` 0, no attention loss)
- ``seg``        int64   (B, H, W) semantic ids at input resolution, ``classes.IGNORE_INDEX`` where
  unlabelled; an image without segmentation labels is all IGNORE_INDEX. Optional: without the
  key no segmentation loss is computed.

Model outputs are the stan output contract (``heatmap`` logits, ``box`` ltrb, ``seg`` logits
at stride 4, upsampled bilinearly to H x W here). Every part is normalised so that images
without supervision contribute zero (never NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.core import classes

_EPS = 1e-7


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss parts (0 disables a part) and focal-loss exponents."""

    heatmap: float = 1.0
    giou: float = 2.0
    l1: float = 0.1
    seg_ce: float = 1.0
    seg_dice: float = 0.5
    # supervised attention: BCE of the published attention map against the objects' pixel coverage at
    # stride 8 (``objmask``); turns the CBAM map into an object-saliency map. 0 = unsupervised CBAM.
    attention: float = 1.0
    focal_alpha: float = 2.0  # (1 - p)^alpha on positives, p^alpha on negatives
    focal_beta: float = 4.0  # (1 - gt)^beta down-weights negatives near centres
    seg_stride: int = 2  # seg loss on every 2nd label pixel (4x cheaper than full resolution); 1 = full
    ignore_index: int = classes.IGNORE_INDEX


def focal_loss(logits: torch.Tensor, gt: torch.Tensor, ignore: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """CenterNet penalty-reduced focal loss, summed and divided by the number of positives (>= 1).

    Positives are cells with ``gt == 1``; negatives in ``ignore`` (broadcast over classes) are skipped.
    """
    logits = logits.float()
    p = torch.sigmoid(logits)
    pos = (gt >= 1.0 - 1e-4).float()
    neg = (1.0 - pos) * (1.0 - ignore)
    pos_loss = -F.logsigmoid(logits) * (1.0 - p).pow(alpha) * pos
    neg_loss = -F.logsigmoid(-logits) * p.pow(alpha) * (1.0 - gt).pow(beta) * neg
    num_pos = pos.sum().clamp(min=1.0)
    return (pos_loss.sum() + neg_loss.sum()) / num_pos


def giou_ltrb(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """GIoU of boxes given as ltrb distances from the same point; inputs (..., 4), output (...)."""
    pl, pt, pr, pb = pred.unbind(-1)
    tl, tt, tr, tb = target.unbind(-1)
    area_p = (pl + pr) * (pt + pb)
    area_t = (tl + tr) * (tt + tb)
    iw = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    ih = torch.minimum(pt, tt) + torch.minimum(pb, tb)
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    union = area_p + area_t - inter
    iou = inter / (union + _EPS)
    enclose = (torch.maximum(pl, tl) + torch.maximum(pr, tr)) * (torch.maximum(pt, tt) + torch.maximum(pb, tb))
    return iou - (enclose - union) / (enclose + _EPS)


def box_losses(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean GIoU loss and L1 (in strides) over cells with ``weight > 0``; (B,4,h,w) maps."""
    w = weight.float().flatten()
    pred_v = pred.float().permute(0, 2, 3, 1).reshape(-1, 4)
    tgt_v = target.float().permute(0, 2, 3, 1).reshape(-1, 4)
    denom = w.sum().clamp(min=1e-3)
    sel = w > 0
    # masked (not indexed) so the graph has no data-dependent shapes; cells with w = 0 add nothing
    giou = torch.where(sel, 1.0 - giou_ltrb(pred_v, tgt_v), torch.zeros_like(w))
    l1 = (pred_v - tgt_v).abs().sum(dim=1)
    return (giou * w).sum() / denom, (l1 * w).sum() / denom


def seg_losses(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, stride: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (mean over labelled pixels) and soft dice (mean over classes present in the
    labels) of ``logits`` against ``labels`` (B, H, W) at full resolution.

    ``stride`` > 1 evaluates both on a grid of every ``stride``-th label pixel (nearest sampling)
    with the logits upsampled bilinearly to that grid: ``stride**2`` times cheaper, nearly the same
    gradient for all but the thinnest structures.
    """
    if stride > 1:
        off = stride // 2
        labels = labels[:, off::stride, off::stride]
    logits = logits.float()
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    labels = labels.long()
    num_classes = logits.shape[1]
    valid = labels != ignore_index
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    logp = F.log_softmax(logits, dim=1)
    logp_true = logp.gather(1, safe[:, None])[:, 0]  # (B, h, w)
    validf = valid.float()
    n_valid = validf.sum()
    ce = -(logp_true * validf).sum() / n_valid.clamp(min=1.0)
    # soft dice without a one-hot tensor: per-class sums via index_add over the labelled pixels
    flat_labels = safe.flatten()
    inter = torch.zeros(num_classes, device=logits.device).index_add(
        0, flat_labels, (logp_true.exp() * validf).flatten()
    )
    count = torch.zeros(num_classes, device=logits.device).index_add(0, flat_labels, validf.flatten())
    prob_sum = (logp.exp() * validf[:, None]).sum(dim=(0, 2, 3))
    present = (count > 0).float()
    dice = 1.0 - (2.0 * inter + 1.0) / (prob_sum + count + 1.0)
    dice = (dice * present).sum() / present.sum().clamp(min=1.0)
    return ce, dice


def attention_loss(attention: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of an attention map in [0, 1] against a soft target (same shape),
    over the cells where ``target >= 0`` (``-1`` = unknown); 0 when there are none. Computed in
    float32 outside any autocast (BCE on probabilities is not autocast-safe)."""
    p = attention.float().clamp(1e-4, 1.0 - 1e-4)
    t = target.float()
    valid = (t >= 0).float()
    t = t.clamp(min=0.0)
    bce = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
    return (bce * valid).sum() / valid.sum().clamp(min=1.0)


class DetSegLoss(nn.Module):
    """``forward(outputs, targets) -> (total, parts)``; parts are detached scalars keyed
    ``heatmap``, ``giou``, ``l1``, ``seg_ce``, ``seg_dice``, ``attention`` (unweighted) and ``total``."""

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()

    def forward(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        zero = outputs["heatmap"].float().sum() * 0.0
        parts: dict[str, torch.Tensor] = {}
        parts["heatmap"] = focal_loss(
            outputs["heatmap"], targets["heatmap"], targets["hm_ignore"], c.focal_alpha, c.focal_beta
        )
        parts["giou"], parts["l1"] = box_losses(outputs["box"], targets["box"], targets["reg_weight"])
        if "seg" in targets and (c.seg_ce > 0 or c.seg_dice > 0):
            parts["seg_ce"], parts["seg_dice"] = seg_losses(
                outputs["seg"], targets["seg"], c.ignore_index, c.seg_stride
            )
        else:
            parts["seg_ce"], parts["seg_dice"] = zero, zero
        if c.attention > 0 and "objmask" in targets:
            parts["attention"] = attention_loss(outputs["attention"], targets["objmask"])
        else:
            parts["attention"] = zero
        total = (
            c.attention * parts["attention"]
            + c.heatmap * parts["heatmap"]
            + c.giou * parts["giou"]
            + c.l1 * parts["l1"]
            + c.seg_ce * parts["seg_ce"]
            + c.seg_dice * parts["seg_dice"]
        )
        detached = {k: v.detach() for k, v in parts.items()}
        detached["total"] = total.detach()
        return total, detached


def stack_targets(
    items: Sequence[Mapping[str, np.ndarray]], seg: Sequence[np.ndarray] | np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """Stack per-image :func:`encode_targets` dicts (and optional (H, W) label masks) into the batch
    format documented in this module."""
    if not items:
        raise ValueError("stack_targets needs at least one image's targets")
    out = {k: torch.from_numpy(np.stack([np.asarray(it[k], np.float32) for it in items])) for k in items[0]}
    if seg is not None:
        out["seg"] = torch.from_numpy(np.stack([np.asarray(s) for s in seg]).astype(np.int64))
    return out

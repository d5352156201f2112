"""Training an SSD anchor head (the real-eyed network's, :mod:`perception.models.mbv2_ssd`): box codes, anchor
matching, the sigmoid focal detection loss and the learning-without-forgetting distillation loss. Torch + numpy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from perception.core.anchors import BOX_SCALES
from perception.core.classes import DETECTION_NAMES
from perception.models.mbv2_ssd import COCO_KEEP, DETECTION_FROM_COCO, decode_codes

# the COCO column each of our classes is trained into on synthetic data (its first COCO id)
TRAIN_COLUMN = {name: COCO_KEEP.index(DETECTION_FROM_COCO[name][0]) for name in DETECTION_NAMES}
POS_IOU, NEG_IOU = 0.5, 0.4
Targets = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # class targets, weights, positives, codes


def anchors_xyxy(anchors: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = anchors.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) IoU of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)


def encode_boxes(gt: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """xyxy ``gt`` (N, 4) against anchors (N, 4) cxcywh -> codes (tx, ty, tw, th) (inverse of decode_codes)."""
    sy, sx, sh, sw = BOX_SCALES
    gw = (gt[:, 2] - gt[:, 0]).clamp(min=1.0)
    gh = (gt[:, 3] - gt[:, 1]).clamp(min=1.0)
    gcx, gcy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
    return torch.stack([(gcx - anchors[:, 0]) / anchors[:, 2] * sx, (gcy - anchors[:, 1]) / anchors[:, 3] * sy,
                        torch.log(gw / anchors[:, 2]) * sw, torch.log(gh / anchors[:, 3]) * sh], dim=-1)


def match_targets(anchors: torch.Tensor, boxes: np.ndarray, class_ids: np.ndarray, ignore: np.ndarray,
                  columns: int) -> Targets:
    """One image's SSD targets: class targets (N, columns) 0/1, a (N,) weight of the class loss (0 where the
    anchor is in the ignore band or overlaps an ignored object), positives (N,) bool, box codes (N, 4)."""
    n = anchors.shape[0]
    cls_t = torch.zeros(n, columns)
    weight = torch.ones(n)
    pos = torch.zeros(n, dtype=torch.bool)
    codes = torch.zeros(n, 4)
    if len(boxes) == 0:
        return cls_t, weight, pos, codes
    gt = torch.as_tensor(np.asarray(boxes, np.float32))
    iou = box_iou(anchors_xyxy(anchors), gt)  # (N, M)
    ign = torch.as_tensor(np.asarray(ignore, bool))
    if ign.any():
        weight[(iou[:, ign] >= NEG_IOU).any(dim=1)] = 0.0
    keep = ~ign
    if not keep.any():
        return cls_t, weight, pos, codes
    iou_k = iou[:, keep]
    gt_k = gt[keep]
    cls_k = torch.as_tensor(np.asarray(class_ids, np.int64))[keep]
    best, idx = iou_k.max(dim=1)
    best_anchor = iou_k.argmax(dim=0)  # every object gets at least its best anchor
    best[best_anchor] = 1.0
    idx[best_anchor] = torch.arange(len(gt_k))
    pos = best >= POS_IOU
    weight[(best >= NEG_IOU) & ~pos] = 0.0
    cols = torch.as_tensor([TRAIN_COLUMN[DETECTION_NAMES[int(c)]] for c in cls_k])
    cls_t[pos, cols[idx[pos]]] = 1.0
    weight[pos] = 1.0
    codes[pos] = encode_boxes(gt_k[idx[pos]], anchors[pos])
    return cls_t, weight, pos, codes


def focal_bce(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    a = alpha * target + (1 - alpha) * (1 - target)
    return a * (1 - pt) ** gamma * ce


def quality_focal(logits: torch.Tensor, target: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Quality focal loss (Li et al., Generalized Focal Loss, 2020): BCE against a soft target in [0, 1] (the
    localisation quality of a positive, 0 elsewhere), modulated by ``|target - p| ** beta``."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (target - p).abs().pow(beta) * ce


def box_quality(codes: torch.Tensor, code_t: torch.Tensor, pos: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(B, N) IoU of each positive's predicted box with its target box, both decoded from codes (B, N, 4) against
    ``anchors`` (N, 4) cxcywh; 0 elsewhere; no gradient (it is a target)."""
    quality = torch.zeros(pos.shape, device=codes.device)
    _, idx = pos.nonzero(as_tuple=True)
    with torch.no_grad():
        pred = decode_codes(codes[pos].detach().float()[None], anchors[idx])[0]
        gt = decode_codes(code_t[pos][None], anchors[idx])[0]
        quality[pos] = box_iou(pred, gt).diagonal()
    return quality


def detection_loss(logits: torch.Tensor, codes: torch.Tensor, targets: list[Targets],
                   quality_anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Focal loss over the object columns (not background) + smooth-L1 on positive codes, per positive.

    With ``quality_anchors`` (the anchors of ``logits``' rows, cxcywh) the class loss is the quality focal loss
    instead: a positive's target is the IoU of its predicted box with the object, so a loosely placed box learns
    a low score (its rank, for AP and the score threshold, follows how well it is placed)."""
    cls_t = torch.stack([t[0] for t in targets]).to(logits.device)
    weight = torch.stack([t[1] for t in targets]).to(logits.device)
    pos = torch.stack([t[2] for t in targets]).to(logits.device)
    code_t = torch.stack([t[3] for t in targets]).to(logits.device)
    n_pos = pos.sum().clamp(min=1).float()
    if quality_anchors is not None:
        soft = cls_t[..., 1:] * box_quality(codes, code_t, pos, quality_anchors.to(logits.device))[..., None]
        cls = (quality_focal(logits[..., 1:].float(), soft) * weight[..., None]).sum() / n_pos
    else:
        cls = (focal_bce(logits[..., 1:].float(), cls_t[..., 1:]) * weight[..., None]).sum() / n_pos
    box = F.smooth_l1_loss(codes[pos].float(), code_t[pos], beta=1.0 / 9.0, reduction="sum") / n_pos
    return cls + box


def distill_loss(student_logits: torch.Tensor, student_codes: torch.Tensor, teacher_logits: torch.Tensor,
                 teacher_codes: torch.Tensor) -> torch.Tensor:
    """Learning without forgetting: BCE of the student's object-column logits against the teacher's
    probabilities (normalised by the teacher's probability mass), and smooth-L1 on the codes of anchors the
    teacher is confident about (weighted by its best probability)."""
    t = torch.sigmoid(teacher_logits[..., 1:].float())
    bce = F.binary_cross_entropy_with_logits(student_logits[..., 1:].float(), t, reduction="none")
    # subtract the teacher's own entropy so a perfect student scores 0 (same gradient)
    ent = F.binary_cross_entropy(t, t, reduction="none")
    mass = t.sum().clamp(min=1.0)
    cls = (bce - ent).sum() / mass
    w = t.amax(dim=-1)
    w = torch.where(w > 0.3, w, torch.zeros_like(w))
    box = (F.smooth_l1_loss(student_codes.float(), teacher_codes.float(), beta=1.0 / 9.0, reduction="none").sum(-1)
           * w).sum() / w.sum().clamp(min=1.0)
    return cls + box

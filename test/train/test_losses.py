"""DetSegLoss: parts, unsupervised samples, and a tiny network overfitting one batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.core import classes
from perception.train.losses import DetSegLoss, LossConfig, focal_loss, giou_ltrb, stack_targets
from perception.train.targets import encode_targets, unsupervised_targets

H, W, C = 64, 96, classes.NUM_DETECTION


def _batch() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    imgs = np.zeros((2, 3, H, W), np.float32)
    seg = np.full((2, H, W), 1, np.int64)  # road
    items = []
    boxes = [np.array([[10.0, 20.0, 40.0, 50.0]]), np.array([[50.0, 8.0, 90.0, 40.0]])]
    for b in range(2):
        imgs[b] = rng.uniform(0.3, 0.4, (3, H, W))
        x1, y1, x2, y2 = boxes[b][0].astype(int)
        imgs[b, :, y1:y2, x1:x2] = [[[0.9]], [[0.1]], [[0.1]]]
        seg[b, y1:y2, x1:x2] = 9  # car
        items.append(encode_targets(boxes[b], np.array([0]), None, H, W, C))
    return torch.from_numpy(imgs), stack_targets(items, seg)


def test_stack_targets_format() -> None:
    _, t = _batch()
    assert t["heatmap"].shape == (2, C, H // 8, W // 8) and t["heatmap"].dtype == torch.float32
    assert t["seg"].shape == (2, H, W) and t["seg"].dtype == torch.int64
    assert t["reg_weight"].shape == t["hm_ignore"].shape == (2, 1, H // 8, W // 8)


def test_giou_identity_and_disjoint() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert torch.allclose(giou_ltrb(a, a), torch.ones(1))
    far = torch.tensor([[0.1, 0.1, 0.1, 0.1]])
    assert float(giou_ltrb(far, torch.tensor([[10.0, 10.0, 10.0, 10.0]]))) < 0.01


def test_focal_loss_prefers_correct_logits() -> None:
    gt = torch.zeros(1, 1, 4, 4)
    gt[0, 0, 1, 1] = 1.0
    ign = torch.zeros(1, 1, 4, 4)
    good = torch.where(gt > 0, torch.tensor(4.0), torch.tensor(-4.0))
    assert float(focal_loss(good, gt, ign, 2, 4)) < float(focal_loss(-good, gt, ign, 2, 4))
    # ignored negatives do not count
    assert float(focal_loss(torch.full_like(gt, 3.0), torch.zeros_like(gt), torch.ones_like(gt), 2, 4)) == 0.0


def test_unsupervised_samples_give_zero_finite_losses() -> None:
    from perception.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("stan_tiny")
    x = torch.rand(2, 3, H, W)
    t = stack_targets([unsupervised_targets(H, W, C)] * 2, np.full((2, H, W), classes.IGNORE_INDEX))
    total, _ = DetSegLoss()(model(x), t)
    assert torch.isfinite(total) and float(total.detach()) == 0.0
    total.backward()  # still a graph


def test_loss_decreases_when_overfitting_one_batch() -> None:
    from perception.models.registry import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("stan_tiny").train()
    x, t = _batch()
    loss_fn = DetSegLoss(LossConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for step in range(40):
        total, parts = loss_fn(model(x), t)
        opt.zero_grad()
        total.backward()
        opt.step()
        (first if step == 0 else last).update({k: float(v) for k, v in parts.items()})
    for k in ("total", "heatmap", "giou", "seg_ce", "seg_dice"):
        assert last[k] < 0.7 * first[k], (k, first[k], last[k])


def test_seg_losses_match_reference_formulas() -> None:
    import torch.nn.functional as F

    from perception.train.losses import seg_losses

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 12)
    labels = torch.randint(0, 3, (2, 32, 48))  # class 3 absent
    labels[0, :5] = classes.IGNORE_INDEX
    ce, dice = seg_losses(logits, labels, classes.IGNORE_INDEX, stride=1)
    up = F.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=False)
    assert torch.allclose(ce, F.cross_entropy(up, labels, ignore_index=classes.IGNORE_INDEX), atol=1e-5)
    valid = (labels != classes.IGNORE_INDEX)[:, None].float()
    probs = up.softmax(1) * valid
    onehot = F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).float() * valid
    inter, card = (probs * onehot).sum((0, 2, 3)), (probs + onehot).sum((0, 2, 3))
    ref = (1 - (2 * inter + 1) / (card + 1))[:3].mean()
    assert torch.allclose(dice, ref, atol=1e-5)
    # stride 2 samples every 2nd label pixel (offset 1)
    ce2, _ = seg_losses(logits, labels, classes.IGNORE_INDEX, stride=2)
    up2 = F.interpolate(logits, size=(16, 24), mode="bilinear", align_corners=False)
    ref2 = F.cross_entropy(up2, labels[:, 1::2, 1::2], ignore_index=classes.IGNORE_INDEX)
    assert torch.allclose(ce2, ref2, atol=1e-5)


def test_attention_loss_rewards_maps_on_objects_and_skips_unknown() -> None:
    from perception.train.losses import attention_loss

    target = torch.zeros(1, 1, 4, 4)
    target[..., 1:3, 1:3] = 1.0
    on_objects = target.clamp(0.05, 0.95)
    uniform = torch.full_like(target, 0.5)
    assert attention_loss(on_objects, target) < 0.2 < attention_loss(uniform, target)
    unknown = torch.full_like(target, -1.0)
    assert float(attention_loss(uniform, unknown)) == 0.0
    # the part is present, weighted, and 0 with weight 0 (unsupervised CBAM)
    img, t = _batch()
    from perception.models.registry import build_model

    out = build_model("stan_tiny")(img)
    total, parts = DetSegLoss()(out, t)
    assert float(parts["attention"]) > 0.0
    total0, parts0 = DetSegLoss(LossConfig(attention=0.0))(out, t)
    assert float(parts0["attention"]) == 0.0
    assert float((total - total0).detach()) == pytest.approx(float(parts["attention"]), rel=1e-4)

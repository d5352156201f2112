"""Training the real-eyed network's new parts: anchor targets, distillation from the original detector, and
a short real training run through `perception train --graft` (synthetic drive + real frames)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.core.anchors import ssd_anchors
from perception.core.classes import detection_id
from perception.core.config import apply_overrides
from perception.models.mbv2_ssd import COCO_KEEP, decode_codes
from perception.train.anchor_losses import (
    TRAIN_COLUMN,
    anchors_xyxy,
    box_iou,
    detection_loss,
    distill_loss,
    encode_boxes,
    match_targets,
)
from perception.train.graft import LATE_TRUNK, GraftConfig
from perception.train.trainer import TrainError


def test_box_codes_invert_the_decoder() -> None:
    anchors = torch.as_tensor(ssd_anchors(256, 448))[:50]
    gt = torch.tensor([[10.0, 20.0, 60.0, 140.0]]).repeat(50, 1)
    np.testing.assert_allclose(decode_codes(encode_boxes(gt, anchors)[None], anchors)[0].numpy(), gt.numpy(),
                               atol=1e-3)


def test_every_object_gets_an_anchor_and_ignored_ones_silence_their_anchors() -> None:
    anchors = torch.as_tensor(ssd_anchors(256, 448))
    car, ped = detection_id("car"), detection_id("pedestrian")
    boxes = np.array([[100, 100, 160, 140], [300, 50, 309, 70], [10, 10, 60, 60]], np.float32)  # a 9x20 px person
    cls_t, weight, pos, codes = match_targets(anchors, boxes, np.array([car, ped, car]),
                                              np.array([False, False, True]), len(COCO_KEEP))
    car_col, ped_col = TRAIN_COLUMN["car"], TRAIN_COLUMN["pedestrian"]
    assert COCO_KEEP[car_col] == 3 and COCO_KEEP[ped_col] == 1  # COCO car, person
    assert cls_t[:, car_col].sum() >= 1 and cls_t[:, ped_col].sum() >= 1  # the tiny person has its best anchor
    assert torch.equal(cls_t.sum(1) > 0, pos)
    assert torch.isfinite(codes).all()
    on_ignored = box_iou(anchors_xyxy(anchors), torch.as_tensor(boxes[2:]))[:, 0] >= 0.4
    assert on_ignored.any() and (weight[on_ignored] == 0).all() and not pos[on_ignored].any()


def test_distillation_is_zero_for_the_teacher_itself_and_grows_with_drift() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 300, len(COCO_KEEP), generator=g) * 3 - 4
    codes = torch.randn(2, 300, 4, generator=g)
    assert float(distill_loss(logits, codes, logits, codes)) == pytest.approx(0.0, abs=1e-5)
    assert float(distill_loss(logits + 2.0, codes, logits, codes)) > 0.1
    assert float(distill_loss(logits, codes + 1.0, logits, codes)) > 0.0


def test_quality_loss_scores_a_box_by_how_well_it_is_placed() -> None:
    """``fine_loss: quality``: a positive's class target is its predicted box's IoU with the object, so a confident
    but loosely placed box is pushed to a lower score, and a box exactly on the object to a higher one (its target
    is 1, the 0/1 focal loss's). The 0/1 focal loss raises both."""
    anchors = torch.as_tensor(ssd_anchors(256, 448))
    car = detection_id("car")
    target = match_targets(anchors, np.array([[100, 100, 160, 140]], np.float32), np.array([car]),
                           np.array([False]), len(COCO_KEEP))
    _, _, pos, code_t = target
    col = TRAIN_COLUMN["car"]
    exact = code_t.clone()
    loose = code_t.clone()
    loose[pos, 0] += 3.0  # centre moved by 0.3 anchor widths: IoU about 0.5
    loose[pos, 2] += 2.0  # and 1.5x as wide

    def loss(codes: torch.Tensor, logit: float, quality: bool) -> torch.Tensor:
        logits = torch.full((1, len(anchors), len(COCO_KEEP)), -8.0)
        logits[0, pos, col] = logit
        logits.requires_grad_(True)
        value = detection_loss(logits, codes[None], [target], anchors if quality else None)
        value.backward()
        return torch.stack([value.detach(), logits.grad[0, pos, col].mean()])

    sure = 4.0  # sigmoid 0.98
    exact_q, loose_q = loss(exact, sure, True), loss(loose, sure, True)
    assert float(loose_q[0]) > float(exact_q[0]) + 0.5  # the loose box costs more (its box term and its score)
    assert float(loose_q[1]) > 0.0 > float(loss(exact, 0.0, True)[1])  # loose: score down; exact: score up
    exact_f, loose_f = loss(exact, sure, False), loss(loose, sure, False)
    assert float(loose_f[1]) < 0.0 and float(exact_f[1]) < 0.0  # the 0/1 focal loss raises both
    assert torch.isfinite(loose_q).all() and torch.isfinite(exact_q).all()
    with pytest.raises(TrainError, match="fine_loss"):
        GraftConfig.from_dict({"parts": "fine", "init": "stan_mbv2", "fine_loss": "iou"})


def test_graft_config_is_checked() -> None:
    with pytest.raises(TrainError, match="unknown graft option"):
        GraftConfig.from_dict({"stepz": 3})
    with pytest.raises(TrainError, match="multiples of 32"):
        GraftConfig.from_dict({"input_height": 100})
    with pytest.raises(TrainError, match="stan_mbv2"):
        GraftConfig.from_dict({"model": "stan_s"})
    with pytest.raises(TrainError, match="head_lr must be a number"):
        GraftConfig.from_dict({"head_lr": "fast"})
    with pytest.raises(TrainError, match="steps must be an integer"):
        GraftConfig.from_dict({"steps": 2.5})
    with pytest.raises(TrainError, match="lr must be a number"):
        GraftConfig.from_dict({"lr": True})
    # PyYAML alone reads 4e-4 (no dot) as a string; the overrides follow YAML 1.2, as ROS 2 does
    assert GraftConfig.from_dict(apply_overrides({}, ["head_lr=4e-4", "lr=1e-3"])).head_lr == pytest.approx(4e-4)


def test_a_short_graft_run_trains_only_the_new_parts(tmp_path: Path, vtest: Path) -> None:
    """Two real steps through the CLI: the frozen trunk (stem, blocks 0-12, every BatchNorm statistic) is
    bit-identical afterwards, the grafted attention and the heads moved, and the checkpoint loads and records
    how it was made."""
    from perception.cli import main
    from perception.models.checkpoint import load_checkpoint, read_checkpoint_info
    from perception.models.registry import build_model

    out = tmp_path / "graft"
    rc = main(["train", "--graft", "--out", str(out), "--steps", "2",
               "--set", "train_seeds=[0,1]", "--set", "frames_per_sequence=3", "--set", "input_height=128",
               "--set", "input_width=224", "--set", "batch_size=1", "--set", "real_batch=1",
               "--set", f"real_video={vtest}", "--set", "real_frames=[0,20]", "--set", f"cache_dir={tmp_path}/sim",
               "--set", "checkpoint_every=2", "--set", "log_every=1", "--set", "precision=fp32",
               "--set", "real_dirs=[]"])
    assert rc == 0
    model, _ = load_checkpoint(out / "model")
    fresh = build_model("stan_mbv2")
    trained, original = model.state_dict(), fresh.state_dict()
    frozen = [k for k in original if k.startswith("backbone.") and ".attn." not in k and not k.startswith(LATE_TRUNK)]
    assert frozen and all(torch.equal(trained[k], original[k]) for k in frozen)  # stem + blocks 0-12
    stats = [k for k in original if k.startswith("backbone.") and k.endswith(("running_mean", "running_var"))]
    assert all(torch.equal(trained[k], original[k]) for k in stats)  # the trunk keeps COCO's BatchNorm statistics
    moved = [k for k in original if (k.startswith(("seg_head.", "det_head.")) or ".attn." in k)
             and original[k].is_floating_point() and not torch.equal(trained[k], original[k])]
    assert any(k.startswith("seg_head.") for k in moved) and any(".attn." in k for k in moved)
    info = read_checkpoint_info(out / "model")
    assert info["extra"]["graft_config"]["steps"] == 2 and info["extra"]["trunk"].startswith("ssd_mobilenet_v2")
    assert info["extra"]["input_size"] == [128, 224]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)


def test_fine_options_are_checked() -> None:
    with pytest.raises(TrainError, match="parts"):
        GraftConfig.from_dict({"parts": "everything"})
    with pytest.raises(TrainError, match="init"):
        GraftConfig.from_dict({"parts": "fine"})
    with pytest.raises(TrainError, match="zoom"):
        GraftConfig.from_dict({"parts": "fine", "init": "stan_mbv2", "zoom": 9})


def test_pseudo_labels_follow_the_crop_flip_and_letterbox() -> None:
    """A white box drawn into a frame lands exactly where its carried label says, through every random crop,
    flip and letterbox; a box the crop cuts to under half its area becomes unknown (score < 0.5)."""
    from perception.train.real_frames import real_batch_labelled

    frame = np.zeros((300, 500, 3), np.uint8)
    frame[100:180, 320:360] = 255
    labels = [(np.array([[320, 100, 360, 180]], np.float32), np.array([detection_id("pedestrian")]),
               np.array([0.9], np.float32))]
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(20):
        batch, mapped = real_batch_labelled([frame], labels, 1, 128, 224, rng)
        white = (batch[0].mean(0) > 0.5).numpy()
        boxes, cls, scores = mapped[0]
        if not white.any():  # the crop left the box out
            assert len(boxes) == 0 or scores.max() < 0.5
            continue
        ys, xs = np.nonzero(white)
        assert len(boxes) == 1 and cls[0] == detection_id("pedestrian")
        if scores[0] >= 0.5:
            seen += 1
            np.testing.assert_allclose(boxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.5)
    assert seen >= 5


@pytest.mark.parametrize("grid", [2, 3])
def test_mosaic_labels_follow_each_tile(grid: int) -> None:
    """With ``real_mosaic`` every real image is g x g images at 1/g of the size: each confident label lies on its
    white box in the mosaic, and every white pixel is under a label (confident, or unknown where a crop cut it)."""
    from perception.train.real_frames import real_batch_mosaic

    frame = np.zeros((300, 500, 3), np.uint8)
    frame[100:180, 320:360] = 255
    labels = [(np.array([[320, 100, 360, 180]], np.float32), np.array([detection_id("pedestrian")]),
               np.array([0.9], np.float32))]
    rng = np.random.default_rng(5)
    batch, mapped = real_batch_mosaic([frame], labels, 3, 128, 224, rng, mosaic=1.0, grids=(grid,))
    assert batch.shape == (3, 3, 128, 224)
    confident = 0
    for k in range(3):
        white = (batch[k].mean(0) > 0.5).numpy()
        boxes, cls, scores = mapped[k]
        assert len(boxes) <= grid * grid and (cls == detection_id("pedestrian")).all()
        covered = np.zeros_like(white)
        for b, sc in zip(boxes, scores):
            x0, y0, x1, y1 = (int(np.rint(v)) for v in b)
            covered[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = True
            if sc >= 0.5:
                confident += 1
                assert white[y0 + 1:y1 - 1, x0 + 1:x1 - 1].mean() > 0.9  # the label sits on its box
                # at the tile's scale: letterboxed whole the 40 px box is >= 17 px wide (scale 128 / 300), in a
                # tile of a 2 x 2 mosaic at most 40 * (64 / 300) / 0.6 = 14.2 px (the crop zooms in up to 1 / 0.6)
                assert x1 - x0 <= 16 * 2 / grid
        assert not (white & ~covered).any()
    assert confident >= 4
    with pytest.raises(ValueError, match="mosaic"):
        real_batch_mosaic([frame], labels, 1, 128, 224, rng, mosaic=1.5)
    # without mosaics the batches (and the random numbers drawn) are exactly real_batch_labelled's
    from perception.train.real_frames import real_batch_labelled

    plain, plain_labels = real_batch_labelled([frame], labels, 2, 128, 224, np.random.default_rng(9))
    same, same_labels = real_batch_mosaic([frame], labels, 2, 128, 224, np.random.default_rng(9), mosaic=0.0)
    assert torch.equal(plain, same) and all(np.array_equal(a[0], b[0]) for a, b in zip(plain_labels, same_labels))
    with pytest.raises(ValueError, match="grids"):
        real_batch_mosaic([frame], labels, 1, 128, 224, rng, mosaic=0.5, grids=(1,))
    with pytest.raises(TrainError, match="mosaic_grids"):
        GraftConfig.from_dict({"parts": "fine", "init": "stan_mbv2", "mosaic_grids": [2, 5]})
    with pytest.raises(TrainError, match="real_mosaic"):
        GraftConfig.from_dict({"parts": "fine", "init": "stan_mbv2", "real_mosaic": -0.1})


@pytest.mark.parametrize("parts", ["fine", "fine+seg"])
def test_a_short_fine_run_moves_only_the_fine_level(tmp_path: Path, vtest: Path, parts: str) -> None:
    """`--set parts="fine"` from the shipped stan_mbv2: the real frames get zoom pseudo-labels from it, and after
    two steps every tensor but the fine level's is bit-identical to the shipped network's. ``fine+seg`` moves
    the segmentation neck and head too, and nothing else (no detector and not the attention)."""
    from perception.cli import main
    from perception.models.checkpoint import load_checkpoint
    from perception.weights import resolve_checkpoint

    out = tmp_path / "fine"
    rc = main(["train", "--graft", "--out", str(out), "--steps", "2", "--set", f'parts="{parts}"',
               "--set", 'init="stan_mbv2"', "--set", "train_seeds=[0,1]", "--set", "frames_per_sequence=3",
               "--set", "input_height=128", "--set", "input_width=224", "--set", "batch_size=1",
               "--set", "real_batch=2", "--set", f"real_video={vtest}", "--set", "real_frames=[0,12]",
               "--set", f"cache_dir={tmp_path}/sim", "--set", "checkpoint_every=2", "--set", "log_every=1",
               "--set", "precision=fp32", "--set", "real_dirs=[]", "--set", "real_mosaic=0.5"])
    assert rc == 0
    z = np.load(out / "zoom_labels.npz")
    assert int(z["count"]) == 3 and sum(int((z[f"s{i}"] >= 0.5).sum()) for i in range(3)) >= 3  # vtest people
    # the cache is keyed by the init's weights, not only its name (a shipped name changes meaning when weights ship)
    shipped_weights = resolve_checkpoint("stan_mbv2").with_suffix(".safetensors")
    assert hashlib.sha256(shipped_weights.read_bytes()).hexdigest() in str(z["key"])
    model, _ = load_checkpoint(out / "model")
    shipped, _ = load_checkpoint(resolve_checkpoint("stan_mbv2"))
    trained, before = model.state_dict(), shipped.state_dict()
    moving = ("det_head.fine.", "neck.", "seg_head.") if parts == "fine+seg" else ("det_head.fine.",)
    fine = [k for k in trained if k.startswith("det_head.fine.")]
    assert fine and all(k in trained for k in before)  # only a fine level can be new
    assert all(torch.equal(trained[k], v) for k, v in before.items() if not k.startswith(moving))
    assert any(k not in before or not torch.equal(trained[k], before[k]) for k in fine)  # the fine level moved
    seg = [k for k in before if k.startswith("seg_head.") and k.endswith("weight")]
    assert seg and any(not torch.equal(trained[k], before[k]) for k in seg) == (parts == "fine+seg")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["real"]) for r in log)
    assert all(np.isfinite(r["seg"]) for r in log) if parts == "fine+seg" else all("seg" not in r for r in log)


def test_a_short_head_run_moves_only_the_coco_predictors(tmp_path: Path, vtest: Path) -> None:
    """`--set parts="head"` from the shipped stan_mbv2: after two steps only the six COCO box predictors moved;
    the trunk, the attention, segmentation and the fine level (what its inputs are) are bit-identical, and the
    log holds the synthetic detection and real distillation losses only."""
    from perception.cli import main
    from perception.models.checkpoint import load_checkpoint
    from perception.weights import resolve_checkpoint

    out = tmp_path / "head"
    rc = main(["train", "--graft", "--out", str(out), "--steps", "2", "--set", 'parts="head"',
               "--set", 'init="stan_mbv2"', "--set", "train_seeds=[0,1]", "--set", "frames_per_sequence=3",
               "--set", "input_height=128", "--set", "input_width=224", "--set", "batch_size=1",
               "--set", "real_batch=1", "--set", f"real_video={vtest}", "--set", "real_frames=[0,12]",
               "--set", f"cache_dir={tmp_path}/sim", "--set", "checkpoint_every=2", "--set", "log_every=1",
               "--set", "precision=fp32", "--set", "real_dirs=[]"])
    assert rc == 0
    assert not (out / "zoom_labels.npz").exists()  # no pseudo-labels: the predictors are distilled, not self-trained
    model, _ = load_checkpoint(out / "model")
    shipped, _ = load_checkpoint(resolve_checkpoint("stan_mbv2"))
    trained, before = model.state_dict(), shipped.state_dict()
    assert trained.keys() == before.keys()
    predictors = ("det_head.cls.", "det_head.box.")
    assert all(torch.equal(trained[k], v) for k, v in before.items() if not k.startswith(predictors))
    assert any(not torch.equal(trained[k], v) for k, v in before.items() if k.startswith(predictors))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert all(np.isfinite(r["det"]) and np.isfinite(r["distill"]) and "seg" not in r for r in log)
    assert log[0]["distill"] < 1e-4  # the teacher is init itself: before the first step nothing differs

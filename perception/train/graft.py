"""Train what is new on the real-eyed network (``stan_mbv2``) without forgetting what it learned on real images.

The trunk (MobileNetV2, COCO) is frozen up to block 12 and its BatchNorm statistics stay COCO's; its last
blocks, conv_1 and the extra layers move slowly (``trunk_lr``). Each step takes two batches:

* synthetic drives (``perception sim`` world, domain randomised, ground truth): the segmentation neck and
  head learn the semantic classes; the grafted attention learns object saliency (BCE against the objects'
  pixel coverage, as the stan family does); the SSD box predictors learn the synthetic world's objects
  (anchor matching IoU >= 0.5, sigmoid focal loss on the COCO column of each class, smooth-L1 on codes);
* real frames (unlabelled): learning without forgetting (Li & Hoiem 2017) -- the predictors' COCO class
  probabilities and box codes are distilled from the ORIGINAL detector (this network as converted, before
  any step) on real images, so fitting the synthetic world does not teach it pedestrians in trees; and the
  attention learns where the original detector is confident (its boxes >= 0.5 are the saliency target, its
  unsure ones are "unknown"), so the published map points at real objects, not only synthetic ones.

``parts: fine`` trains only the fine level (the stride-8 small-object predictor, ``NetConfig.fine_level``)
of a network started from ``init`` (e.g. the shipped ``stan_mbv2``), everything else frozen, so the real-image
figures of the other levels cannot move. Its real-image supervision is **zoom self-training**: the ``init``
network itself, run on 2x upscaled tiles of each real photo (where small objects are the size it sees well),
gives pseudo-labels (score >= 0.5 objects, 0.3-0.5 unknown) for the small objects the fine level is for;
synthetic drives give it ground truth. ``parts: fine+seg`` trains the segmentation neck and head beside it on the
synthetic drives (neither feeds a detector, so the detection figures of the COCO levels cannot move either).
``fine_loss: quality`` scores the fine level's boxes by how well they are placed (the quality focal loss:
a positive's class target is its box's IoU; measured in docs/real_eyes.md, not shipped).

``parts: head`` goes on training the six COCO box predictors alone from ``init`` (synthetic ground truth; real
frames distilled from ``init`` itself, so what it learned on real images is what is kept); the trunk, the
attention, segmentation and the fine level stay bit-identical, so the attention map and the fine level's inputs
cannot move.

Resumable (``trainer_state.pt`` every ``checkpoint_every`` steps), logged to ``train_log.jsonl``; the
result is a checkpoint like any other (``perception eval / export / run`` take it).

    perception train --graft [--set steps=900] [--out runs/graft] [--resume]   (config/graft.yaml)
    perception train --graft --set parts='"fine"' --set init='"stan_mbv2"' --out runs/fine   (the fine level)
    perception train --graft --set parts='"fine+seg"' --set init='"stan_mbv2"' --out runs/fine_seg   (+ segmentation)
    perception train --graft --set parts='"head"' --set init='"stan_mbv2"' --out runs/head   (the COCO predictors)
    python -m perception.train.graft --out runs/graft --steps 900 [--resume]  (the same, GraftConfig defaults)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception.core.anchors import num_anchors
from perception.core.classes import IGNORE_INDEX
from perception.core.config import scalar_type_error
from perception.models.mbv2_ssd import COCO_KEEP
from perception.train.anchor_losses import Targets, detection_loss, distill_loss, match_targets
from perception.train.real_frames import (
    PseudoLabels,
    real_batch,
    real_batch_mosaic,
    real_frames,
    teacher_saliency,
    zoom_pseudo_labels,
)

PARTS = ("graft", "fine", "fine+seg", "head")
SEG_PARTS = ("neck.", "seg_head.")  # the segmentation neck and head: no detector and not the attention reads them
LATE_TRUNK = (*(f"backbone.blocks.{i}." for i in range(13, 17)), "backbone.conv_1.", "backbone.extra_layers.")


@dataclass(frozen=True)
class GraftConfig:
    model: str = "stan_mbv2"
    input_height: int = 384
    input_width: int = 640
    train_seeds: tuple[int, int] = (0, 32)  # synthetic drives; evaluation uses 1000+
    frames_per_sequence: int = 40
    batch_size: int = 4  # synthetic images per step
    real_batch: int = 3  # real images per step (distillation)
    steps: int = 1200
    lr: float = 2e-3  # new parts: attention, segmentation neck and head
    head_lr: float = 2e-4  # the COCO box predictors (slow: they carry the real-image knowledge)
    trunk_lr: float = 5e-5  # the trunk's last blocks (13-16), conv_1 and extra layers; 0 keeps them frozen
    warmup_steps: int = 50
    weight_decay: float = 0.01
    det: float = 1.0
    seg: float = 1.0
    attention: float = 1.0
    distill: float = 2.0
    real_attention: float = 1.0  # attention on real frames, target: the original detector's confident objects
    real_video: str = "data/footage/vtest.avi"  # unlabelled real frames for distillation
    real_frames: tuple[int, int] = (0, 500)  # never the frames evaluation uses (>= 500)
    real_every: int = 4
    real_dirs: tuple[str, ...] = ("data/real_unlabelled",)  # unlabelled real photos (`make data`)
    precision: str = "auto"
    cache_dir: str = "cache/sim"
    out: str = "runs/graft"
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    sim: dict[str, Any] = field(default_factory=dict)  # SimConfig overrides (the renders are cached by them)
    augment: dict[str, Any] = field(default_factory=lambda: {"scale": [0.8, 1.4], "hue": 10, "saturation": 0.3})
    parts: str = "graft"  # "graft": attention, segmentation, predictors, late trunk; "fine": the fine level only;
    # "fine+seg": the fine level and the segmentation neck + head (nothing a COCO level or the attention uses);
    # "head": the six COCO box predictors only (what the fine level, the attention and segmentation read is frozen)
    init: str = ""  # a checkpoint (name or path) to start from; "" = the converted COCO detector, graft at identity
    zoom: float = 2.0  # fine: the pseudo-label teacher runs on tiles upscaled this much
    fine_real: float = 1.0  # fine: weight of the real-image pseudo-label loss
    real_mosaic: float = 0.0  # fine: share of real images that are g x g mosaics (objects at 1/g of the scale)
    mosaic_grids: tuple[int, ...] = (2,)  # fine: the mosaics' g, drawn uniformly per image
    fine_loss: str = "focal"  # fine: "focal" (0/1 class targets) | "quality" (a positive's target is its box's IoU)


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraftConfig:
        from perception.train.trainer import TrainError

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"device"})
        if unknown:
            raise TrainError(f"unknown graft option(s) {unknown}; known: {sorted(known)}")
        tuples = ("train_seeds", "real_frames", "real_dirs", "mosaic_grids")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) and k in tuples else v
                              for k, v in d.items() if k != "device"}
        wrong = scalar_type_error(cls, kw)  # here, in the option's name, not as a TypeError mid-training
        if wrong:
            raise TrainError(wrong)
        cfg = cls(**kw)
        if cfg.input_height % 32 or cfg.input_width % 32:
            raise TrainError(f"input size {cfg.input_height}x{cfg.input_width} must be multiples of 32")
        if not cfg.model.startswith("stan_mbv2"):
            raise TrainError(f"--graft trains the real-eyed family (stan_mbv2*), not {cfg.model}")
        if cfg.parts not in PARTS:
            raise TrainError(f"parts must be one of {', '.join(PARTS)}, got {cfg.parts!r}")
        if cfg.parts != "graft" and not cfg.init:
            raise TrainError(f"parts {cfg.parts!r} trains part of a trained network: set init (e.g. stan_mbv2)")
        if not 0.0 <= cfg.real_mosaic <= 1.0:
            raise TrainError(f"real_mosaic must be in [0, 1], got {cfg.real_mosaic}")
        if not cfg.mosaic_grids or any(not isinstance(g, int) or not 2 <= g <= 4 for g in cfg.mosaic_grids):
            raise TrainError(f"mosaic_grids must list 2, 3 or 4 (tiles a side), got {list(cfg.mosaic_grids)}")
        if not 1.0 <= cfg.zoom <= 4.0:
            raise TrainError(f"zoom must be in [1, 4], got {cfg.zoom}")
        if cfg.fine_loss not in ("focal", "quality"):
            raise TrainError(f"fine_loss must be focal or quality, got {cfg.fine_loss!r}")
        return cfg


def synthetic_batch(clips: Any, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                            list[Any]]:
    from perception.train.targets import object_mask_target

    imgs, segs, masks, gts = [], [], [], []
    for i in rng.choice(len(clips), size=n, replace=len(clips) < n):
        c = clips.clip(int(i))
        imgs.append(torch.from_numpy(np.ascontiguousarray(c.rgb[0].transpose(2, 0, 1))))
        segs.append(torch.from_numpy(np.ascontiguousarray(c.seg[0], dtype=np.int64)))
        masks.append(torch.from_numpy(object_mask_target(c.instance[0] != 0)))
        gts.append(c.gt[0])
    return torch.stack(imgs), torch.stack(segs), torch.stack(masks), gts


# ----------------------------------------------------------------------------- training
def lr_scale(step: int, cfg: GraftConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))


def trainable_groups(model: Any, cfg: GraftConfig) -> list[dict[str, Any]]:
    """Freeze the trunk up to block 12; train attention, neck, segmentation head and box predictors, and (at
    ``trunk_lr``, protected by the distillation) the trunk's last blocks, conv_1 and the extra layers.
    ``parts: fine``: only the fine level, at ``lr``; ``fine+seg``: and the segmentation neck and head;
    ``head``: only the six COCO box predictors, at ``head_lr``."""
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.parts == "head":
        coco = [p for n, p in model.named_parameters() if n.startswith(("det_head.cls.", "det_head.box."))]
        for p in coco:
            p.requires_grad_(True)
        return [{"params": coco, "lr": cfg.head_lr, "base_lr": cfg.head_lr}]
    if cfg.parts.startswith("fine"):
        fine = [p for n, p in model.named_parameters() if n.startswith("det_head.fine.")]
        if not fine:
            from perception.train.trainer import TrainError

            raise TrainError(f"{cfg.model} has no fine level (NetConfig.fine_level) to train")
        seg = [p for n, p in model.named_parameters() if n.startswith(SEG_PARTS)] if cfg.parts == "fine+seg" else []
        for p in [*fine, *seg]:
            p.requires_grad_(True)
        return [{"params": fine + seg, "lr": cfg.lr, "base_lr": cfg.lr}]
    new = [p for n, p in model.named_parameters() if n.startswith(("backbone.attn.", *SEG_PARTS, "temporal."))]
    # the fine level is not trained here (`parts: fine` does, from the graft's result)
    head = [p for n, p in model.named_parameters() if n.startswith("det_head.") and not n.startswith("det_head.fine.")]
    late = LATE_TRUNK if cfg.trunk_lr > 0 else ()
    trunk = [p for n, p in model.named_parameters() if n.startswith(late)] if late else []
    groups: list[dict[str, Any]] = [{"params": new, "lr": cfg.lr, "base_lr": cfg.lr},
              {"params": head, "lr": cfg.head_lr, "base_lr": cfg.head_lr}]
    if trunk:
        groups.append({"params": trunk, "lr": cfg.trunk_lr, "base_lr": cfg.trunk_lr})
    for g in groups:
        for p in g["params"]:
            p.requires_grad_(True)
    return groups


def set_train_mode(model: Any, parts: str = "graft") -> None:
    """Train mode for what learns; the frozen trunk's BatchNorm keeps its COCO statistics. (The box predictors
    are plain convolutions: ``head`` leaves the whole network in eval mode.)"""
    if parts != "graft":
        model.eval()
        if parts == "head":
            return
        model.det_head.fine.train()
        if parts == "fine+seg":
            model.neck.train()
            model.seg_head.train()
        return
    model.train()
    model.backbone.eval()
    if model.backbone.attn is not None:
        model.backbone.attn.train()


def train(cfg: GraftConfig, resume: bool = False, command: str = "") -> Path:
    from perception.models.registry import build_model
    from perception.train.augment import AugmentConfig
    from perception.train.losses import attention_loss, seg_losses
    from perception.train.synthetic import SyntheticClips
    from perception.train.trainer import TrainConfig, check_init, load_sequences, pick_precision

    check_init(cfg.init)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tcfg = TrainConfig(model=cfg.model, input_height=cfg.input_height, input_width=cfg.input_width,
                       frames_per_sequence=cfg.frames_per_sequence, cache_dir=cfg.cache_dir, sim=cfg.sim)
    sequences = load_sequences(tcfg, range(*cfg.train_seeds), progress=False)
    clips = SyntheticClips(sequences, 1, AugmentConfig.from_dict(cfg.augment), seed=cfg.seed)
    reals = real_frames(cfg.real_dirs, cfg.real_video, cfg.real_frames, cfg.real_every)
    model = build_model(cfg.model)
    # the teacher: the converted COCO detector (the graft is the identity at init); for ``head`` init itself, to keep
    # what it does on real images (distilling to the COCO original undid the graft's gains: precision 0.82 -> 0.79)
    original = None if cfg.parts == "head" else copy.deepcopy(model)
    if cfg.init:
        load_init(model, cfg.init)
    teacher = copy.deepcopy(model) if original is None else original
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    precision = pick_precision(cfg.precision, "cpu")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    # fine, fine+seg: the init network (at stage 2 its fine level still silent) labels the real frames before any step
    labels = pseudo_labels(cfg, model, reals, amp, out) if cfg.parts.startswith("fine") else []
    groups = trainable_groups(model, cfg)
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    step = 0
    state_path = out / "trainer_state.pt"
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        rng = np.random.default_rng([cfg.seed, step])
    if cfg.parts.startswith("fine"):
        return _train_fine(cfg, model, opt, groups, clips, reals, labels, step, rng, amp, command)
    head: Any = model.det_head
    anchors = torch.as_tensor(head.anchors(cfg.input_height, cfg.input_width))
    coco = num_anchors(cfg.input_height, cfg.input_width)
    columns = len(COCO_KEEP)
    head_only = cfg.parts == "head"
    log_path = out / "train_log.jsonl"
    t0 = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as log:
        while step < cfg.steps:
            set_train_mode(model, cfg.parts)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_scale(step, cfg)
            img, seg, objmask, gts = synthetic_batch(clips, cfg.batch_size, rng)
            targets = [match_targets(anchors, g.boxes, g.class_ids, g.ignore, columns) for g in gts]
            real = real_batch(reals, cfg.real_batch, cfg.input_height, cfg.input_width, rng)
            b = len(img)
            # ``head``: the frozen features build no graph, only the predictors do
            with torch.set_grad_enabled(not head_only), torch.autocast("cpu", dtype=amp or torch.float32,
                                                                        enabled=amp is not None):
                f = model.forward_features(torch.cat([img, real]))
            with torch.no_grad(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                # ``head``: the teacher's features ARE the model's (all frozen): only its predictors run again
                t_feats = {k: v[b:] for k, v in f.items()} if head_only else teacher.forward_features(real)
                t_out = teacher.forward_ssd(t_feats)
            with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                d = model.forward_ssd(f)
                seg_logits = None if head_only else model.seg_head(f["p4"][:b])
            parts = {
                "det": detection_loss(d.logits[:b], d.codes[:b], targets),
                # the COCO levels only: a fine level is new (the teacher's is untrained); `parts: fine` teaches it
                "distill": distill_loss(d.logits[b:, :coco], d.codes[b:, :coco], t_out.logits[:, :coco],
                                        t_out.codes[:, :coco]),
            }
            loss = cfg.det * parts["det"] + cfg.distill * parts["distill"]
            if seg_logits is not None:  # graft: the attention and segmentation learn too
                parts["attention"] = attention_loss(f["attention"][:b], objmask)
                parts["real_attention"] = attention_loss(f["attention"][b:], teacher_saliency(
                    t_out.boxes, t_out.scores, cfg.input_height, cfg.input_width))
                ce, dice = seg_losses(seg_logits, seg, IGNORE_INDEX, stride=2)
                parts["seg"] = ce + dice
                loss = (loss + cfg.attention * parts["attention"] + cfg.real_attention * parts["real_attention"]
                        + cfg.seg * parts["seg"])
            _optimise(opt, groups, loss, step)
            step += 1
            attn: Any = model.backbone.attn
            gam = [float(a.gamma.detach()) for a in attn] if attn is not None else []
            t0 = _after_step(cfg, model, opt, step, {"loss": loss, **parts}, {"gamma": gam}, log, t0, command)
    return _save_final(cfg, model, step, command)


def _optimise(opt: torch.optim.Optimizer, groups: list[dict[str, Any]], loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise SystemExit(f"loss became {float(loss)} at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 5.0)
    opt.step()


def _after_step(cfg: GraftConfig, model: Any, opt: torch.optim.Optimizer, step: int, losses: dict[str, torch.Tensor],
                extra: dict[str, Any], log: Any, t0: float, command: str) -> float:
    """Log every ``log_every`` steps, save the resumable state and a snapshot every ``checkpoint_every``;
    returns the new start of the logging interval."""
    from perception.models.checkpoint import save_checkpoint

    out = Path(cfg.out)
    if step % cfg.log_every == 0 or step == cfg.steps:
        rec = {"step": step, **{k: float(v.detach()) for k, v in losses.items()}, **extra,
               "s_per_step": (time.perf_counter() - t0) / cfg.log_every}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        t0 = time.perf_counter()
    if step % cfg.checkpoint_every == 0 or step == cfg.steps:
        state_path = out / "trainer_state.pt"
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)
        tmp.replace(state_path)
        model.eval()
        save_checkpoint(out / "snapshots" / f"model_step{step:06d}", model, cfg.model, model.cfg,
                        _meta(cfg, step, command))
    return t0


def _save_final(cfg: GraftConfig, model: Any, step: int, command: str) -> Path:
    from perception.models.checkpoint import save_checkpoint

    model.eval()
    stem = Path(cfg.out) / "model"
    save_checkpoint(stem, model, cfg.model, model.cfg, _meta(cfg, step, command))
    return stem


def load_init(model: Any, init: str) -> None:
    """Start from the weights of checkpoint ``init`` (a shipped name or a path); parts it lacks (a fine level
    it never had) keep their own initialisation, every other tensor must fit."""
    from safetensors.torch import load_file

    from perception.models.checkpoint import checkpoint_paths
    from perception.train.trainer import TrainError
    from perception.weights import resolve_checkpoint

    weights, _ = checkpoint_paths(resolve_checkpoint(init))
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("det_head.fine.")]
    if missing or unexpected:
        raise TrainError(f"init checkpoint {init} does not fit {model.name}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


def pseudo_labels(cfg: GraftConfig, model: Any, reals: list[np.ndarray], amp: torch.dtype | None,
                  out: Path) -> list[PseudoLabels]:
    """:func:`zoom_pseudo_labels` of every real frame, by ``model`` as it is now (cached in ``out``, reused while
    the frames' count, ``init`` and its weights' sha256 (a shipped name changes meaning when new weights ship),
    ``zoom`` and the input size are the same)."""
    from perception.core.files import sha256_file
    from perception.models.checkpoint import checkpoint_paths
    from perception.weights import resolve_checkpoint

    weights, _ = checkpoint_paths(resolve_checkpoint(cfg.init))
    digest = sha256_file(weights)
    path = out / "zoom_labels.npz"
    key = json.dumps([len(reals), cfg.init, digest, cfg.zoom, cfg.input_height, cfg.input_width])
    if path.exists():
        z = np.load(path)
        if "key" in z and str(z["key"]) == key:
            return [(z[f"b{i}"], z[f"c{i}"], z[f"s{i}"]) for i in range(len(reals))]
    model.eval()
    labels = [zoom_pseudo_labels(model, img, cfg.input_height, cfg.input_width, cfg.zoom, amp) for img in reals]
    arrays: dict[str, np.ndarray] = {"count": np.array(len(reals)), "key": np.array(key)}
    for i, (b, c, sc) in enumerate(labels):
        arrays[f"b{i}"], arrays[f"c{i}"], arrays[f"s{i}"] = b, c, sc
    tmp = out / "zoom_labels.tmp.npz"
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return labels


def _slice(t: Targets, start: int) -> Targets:
    return t[0][start:], t[1][start:], t[2][start:], t[3][start:]


def _train_fine(cfg: GraftConfig, model: Any, opt: torch.optim.Optimizer, groups: list[dict[str, Any]], clips: Any,
                reals: list[np.ndarray], labels: list[PseudoLabels], step: int, rng: np.random.Generator,
                amp: torch.dtype | None, command: str) -> Path:
    """``parts: fine``: the fine level learns synthetic ground truth and the zoom pseudo-labels of real frames;
    nothing else moves (so no distillation is needed). Loss on the fine level's anchors only. ``fine+seg``: the
    segmentation neck and head learn the synthetic drives' labels too (cross-entropy + dice, as in the graft)."""
    from perception.train.losses import seg_losses

    out = Path(cfg.out)
    n_pos = sum(int((sc >= 0.5).sum()) for _, _, sc in labels)
    print(f"[graft fine] {len(reals)} real frames, {n_pos} pseudo-labelled objects (score >= 0.5)", flush=True)
    h, w = cfg.input_height, cfg.input_width
    anchors = torch.as_tensor(model.det_head.anchors(h, w))
    first = num_anchors(h, w)  # the fine level's anchors come after the six COCO maps'
    columns = len(COCO_KEEP)
    with_seg = cfg.parts == "fine+seg"
    quality = anchors[first:] if cfg.fine_loss == "quality" else None
    log_path = out / "train_log.jsonl"
    t0 = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as log:
        while step < cfg.steps:
            set_train_mode(model, cfg.parts)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_scale(step, cfg)
            img, seg, _, gts = synthetic_batch(clips, cfg.batch_size, rng)
            targets = [_slice(match_targets(anchors, g.boxes, g.class_ids, g.ignore, columns), first) for g in gts]
            real, real_labels = real_batch_mosaic(reals, labels, cfg.real_batch, h, w, rng, cfg.real_mosaic,
                                                  cfg.mosaic_grids)
            real_targets = [_slice(match_targets(anchors, b, c, sc < 0.5, columns), first)
                            for b, c, sc in real_labels]
            # the frozen trunk builds no graph; with fine+seg only the neck's does
            with torch.set_grad_enabled(with_seg), torch.autocast("cpu", dtype=amp or torch.float32,
                                                                   enabled=amp is not None):
                f = model.forward_features(torch.cat([img, real]))
            with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                logits, codes = model.det_head.fine(f["s8"], f["s16"])
                seg_logits = model.seg_head(f["p4"][: len(img)]) if with_seg else None
            b = logits.shape[0]
            logits = logits.permute(0, 2, 3, 1).reshape(b, -1, columns)
            codes = codes.permute(0, 2, 3, 1).reshape(b, -1, 4)
            k = len(img)
            parts = {"det": detection_loss(logits[:k], codes[:k], targets, quality),
                     "real": detection_loss(logits[k:], codes[k:], real_targets, quality)}
            loss = cfg.det * parts["det"] + cfg.fine_real * parts["real"]
            if seg_logits is not None:
                ce, dice = seg_losses(seg_logits, seg, IGNORE_INDEX, stride=2)
                parts["seg"] = ce + dice
                loss = loss + cfg.seg * parts["seg"]
            _optimise(opt, groups, loss, step)
            step += 1
            t0 = _after_step(cfg, model, opt, step, {"loss": loss, **parts}, {}, log, t0, command)
    return _save_final(cfg, model, step, command)


def _meta(cfg: GraftConfig, step: int, command: str) -> dict[str, Any]:
    return {"input_size": [cfg.input_height, cfg.input_width], "steps": step, "command": command,
            "graft_config": asdict(cfg),
            "trunk": "ssd_mobilenet_v2_coco (perception/weights/pretrained/ssd_mobilenet_v2_coco.json), frozen"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perception.train.graft", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=GraftConfig.out)
    p.add_argument("--steps", type=int, default=GraftConfig.steps)
    p.add_argument("--resume", action="store_true", help="continue from <out>/trainer_state.pt")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a GraftConfig field")
    args = p.parse_args(argv)
    kw: dict[str, Any] = {"out": args.out, "steps": args.steps}
    for item in args.set:
        key, _, value = item.partition("=")
        kw[key] = json.loads(value)
    cfg = GraftConfig.from_dict(kw)
    command = " ".join(["python -m perception.train.graft", *(argv if argv is not None else sys.argv[1:])])
    stem = train(cfg, resume=args.resume, command=command)
    print(stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

Resumable (``trainer_state.pt`` every ``checkpoint_every`` steps), logged to ``train_log.jsonl``; the
result is a checkpoint like any other (``perception eval / export / run`` take it).

    perception train --graft [--set steps=900] [--out runs/graft] [--resume]   (config/graft.yaml)
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

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from perception.core.anchors import BOX_SCALES
from perception.core.classes import DETECTION_NAMES, IGNORE_INDEX
from perception.core.letterbox import letterbox
from perception.models.mbv2_ssd import COCO_KEEP, DETECTION_FROM_COCO

# the COCO column each of our classes is trained into on synthetic data (its first COCO id)
TRAIN_COLUMN = {name: COCO_KEEP.index(DETECTION_FROM_COCO[name][0]) for name in DETECTION_NAMES}
POS_IOU, NEG_IOU = 0.5, 0.4
LATE_TRUNK = (*(f"backbone.blocks.{i}." for i in range(13, 17)), "backbone.conv_1.", "backbone.extra_layers.")
Targets = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # class targets, weights, positives, codes


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


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraftConfig:
        from perception.train.trainer import TrainError

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"device"})
        if unknown:
            raise TrainError(f"unknown graft option(s) {unknown}; known: {sorted(known)}")
        tuples = ("train_seeds", "real_frames", "real_dirs")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) and k in tuples else v
                              for k, v in d.items() if k != "device"}
        cfg = cls(**kw)
        if cfg.input_height % 32 or cfg.input_width % 32:
            raise TrainError(f"input size {cfg.input_height}x{cfg.input_width} must be multiples of 32")
        if not cfg.model.startswith("stan_mbv2"):
            raise TrainError(f"--graft trains the real-eyed family (stan_mbv2*), not {cfg.model}")
        return cfg


# ----------------------------------------------------------------------------- losses
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


def detection_loss(logits: torch.Tensor, codes: torch.Tensor, targets: list[Targets]) -> torch.Tensor:
    """Focal loss over the object columns (not background) + smooth-L1 on positive codes, per positive."""
    cls_t = torch.stack([t[0] for t in targets]).to(logits.device)
    weight = torch.stack([t[1] for t in targets]).to(logits.device)
    pos = torch.stack([t[2] for t in targets]).to(logits.device)
    code_t = torch.stack([t[3] for t in targets]).to(logits.device)
    n_pos = pos.sum().clamp(min=1).float()
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


# ----------------------------------------------------------------------------- data
def real_frames(cfg: GraftConfig) -> list[np.ndarray]:
    """Unlabelled real images (RGB uint8) for distillation: every ``real_every``-th of ``real_frames`` of the
    video and every image in ``real_dirs``."""
    from perception.footage.source import list_images

    out: list[np.ndarray] = []
    for d in cfg.real_dirs:
        if not Path(d).is_dir():
            raise SystemExit(f"no folder {d} of unlabelled real photos; fetch it with `make data`")
        for p in list_images(Path(d)):
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is not None:
                out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out + _video_frames(cfg)


def _video_frames(cfg: GraftConfig) -> list[np.ndarray]:
    cap = cv2.VideoCapture(cfg.real_video)
    if not cap.isOpened():
        raise SystemExit(f"cannot open {cfg.real_video}; fetch it with `make data`")
    out, i = [], 0
    try:
        while i < cfg.real_frames[1]:
            ok, bgr = cap.read()
            if not ok:
                break
            if i >= cfg.real_frames[0] and (i - cfg.real_frames[0]) % cfg.real_every == 0:
                out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            i += 1
    finally:
        cap.release()
    return out


def real_batch(frames: list[np.ndarray], n: int, h: int, w: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` real frames, each a random zoom (0.6-1.0 of the frame, random place, random flip) letterboxed
    to ``h x w``: (n, 3, h, w) float in [0, 1]."""
    out = []
    for _ in range(n):
        img = frames[int(rng.integers(len(frames)))]
        fh, fw = img.shape[:2]
        s = float(rng.uniform(0.6, 1.0))
        ch, cw = int(fh * s), int(fw * s)
        y0, x0 = int(rng.integers(0, fh - ch + 1)), int(rng.integers(0, fw - cw + 1))
        crop = img[y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        boxed, _ = letterbox(np.ascontiguousarray(crop), w, h)
        out.append(torch.from_numpy(boxed).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out)


def teacher_saliency(boxes: torch.Tensor, scores: torch.Tensor, height: int, width: int, stride: int = 8,
                     sure: float = 0.5, unsure: float = 0.25) -> torch.Tensor:
    """The attention target on real frames: (B, 1, H/stride, W/stride) coverage of the original detector's
    confident objects (score >= ``sure``); cells of its unsure ones (``unsure`` .. ``sure``) are unknown (-1)."""
    from perception.core.anchors import decode_box_list

    out = np.zeros((len(boxes), 1, height // stride, width // stride), np.float32)
    fine = np.zeros((height, width), np.float32)
    for i in range(len(boxes)):
        det = decode_box_list(boxes[i].float().numpy(), scores[i].float().numpy(), unsure, image_size=(height, width))
        fine[:] = 0.0
        unknown = np.zeros((height, width), bool)
        for b, s in zip(det.boxes.astype(int), det.scores):
            if s >= sure:
                fine[b[1]:b[3], b[0]:b[2]] = 1.0
            else:
                unknown[b[1]:b[3], b[0]:b[2]] = True
        cells = fine.reshape(height // stride, stride, width // stride, stride).mean(axis=(1, 3))
        unk = unknown.reshape(height // stride, stride, width // stride, stride).any(axis=(1, 3))
        out[i, 0] = np.where(unk & (cells == 0), -1.0, cells)
    return torch.from_numpy(out)


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
    ``trunk_lr``, protected by the distillation) the trunk's last blocks, conv_1 and the extra layers."""
    for p in model.parameters():
        p.requires_grad_(False)
    new = [p for n, p in model.named_parameters() if n.startswith(("backbone.attn.", "neck.", "seg_head.",
                                                                   "temporal."))]
    head = [p for n, p in model.named_parameters() if n.startswith("det_head.")]
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


def set_train_mode(model: Any) -> None:
    """Train mode for what learns; the frozen trunk's BatchNorm keeps its COCO statistics."""
    model.train()
    model.backbone.eval()
    if model.backbone.attn is not None:
        model.backbone.attn.train()


def train(cfg: GraftConfig, resume: bool = False, command: str = "") -> Path:
    from perception.models.checkpoint import save_checkpoint
    from perception.models.registry import build_model
    from perception.train.augment import AugmentConfig
    from perception.train.losses import attention_loss, seg_losses
    from perception.train.synthetic import SyntheticClips
    from perception.train.trainer import TrainConfig, load_sequences, pick_precision

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tcfg = TrainConfig(model=cfg.model, input_height=cfg.input_height, input_width=cfg.input_width,
                       frames_per_sequence=cfg.frames_per_sequence, cache_dir=cfg.cache_dir, sim=cfg.sim)
    sequences = load_sequences(tcfg, range(*cfg.train_seeds), progress=False)
    clips = SyntheticClips(sequences, 1, AugmentConfig.from_dict(cfg.augment), seed=cfg.seed)
    reals = real_frames(cfg)
    model = build_model(cfg.model)
    teacher = copy.deepcopy(model).eval()  # the converted COCO detector: the graft is the identity at init
    for p in teacher.parameters():
        p.requires_grad_(False)
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
    precision = pick_precision(cfg.precision, "cpu")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    head: Any = model.det_head
    anchors = torch.as_tensor(head.anchors(cfg.input_height, cfg.input_width))
    columns = len(COCO_KEEP)
    log_path = out / "train_log.jsonl"
    t0 = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as log:
        while step < cfg.steps:
            set_train_mode(model)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_scale(step, cfg)
            img, seg, objmask, gts = synthetic_batch(clips, cfg.batch_size, rng)
            targets = [match_targets(anchors, g.boxes, g.class_ids, g.ignore, columns) for g in gts]
            real = real_batch(reals, cfg.real_batch, cfg.input_height, cfg.input_width, rng)
            with torch.no_grad(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                t_out = teacher.forward_ssd(teacher.forward_features(real))
            with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                both = torch.cat([img, real])
                f = model.forward_features(both)
                d = model.forward_ssd(f)
                seg_logits = model.seg_head(f["p4"][: len(img)])
            b = len(img)
            saliency = teacher_saliency(t_out.boxes, t_out.scores, cfg.input_height, cfg.input_width)
            parts = {
                "det": detection_loss(d.logits[:b], d.codes[:b], targets),
                "distill": distill_loss(d.logits[b:], d.codes[b:], t_out.logits, t_out.codes),
                "attention": attention_loss(f["attention"][:b], objmask),
                "real_attention": attention_loss(f["attention"][b:], saliency),
            }
            ce, dice = seg_losses(seg_logits, seg, IGNORE_INDEX, stride=2)
            parts["seg"] = ce + dice
            loss = (cfg.det * parts["det"] + cfg.distill * parts["distill"] + cfg.attention * parts["attention"]
                    + cfg.real_attention * parts["real_attention"] + cfg.seg * parts["seg"])
            if not torch.isfinite(loss):
                raise SystemExit(f"loss became {float(loss)} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 5.0)
            opt.step()
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                attn: Any = model.backbone.attn
                gam = [float(a.gamma.detach()) for a in attn] if attn is not None else []
                rec = {"step": step, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()},
                       "gamma": gam, "s_per_step": (time.perf_counter() - t0) / cfg.log_every}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                t0 = time.perf_counter()
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                tmp = state_path.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)
                tmp.replace(state_path)
                model.eval()
                save_checkpoint(out / "snapshots" / f"model_step{step:06d}", model, cfg.model, model.cfg,
                                _meta(cfg, step, command))
    model.eval()
    stem = out / "model"
    save_checkpoint(stem, model, cfg.model, model.cfg, _meta(cfg, step, command))
    return stem


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

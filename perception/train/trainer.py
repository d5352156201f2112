"""Training loop: synthetic clips -> multi-task loss -> AdamW, bf16 autocast on CPU, CUDA when present.

Spatial models see the frames of a clip as independent images (one batched forward); temporal
models stream the clip frame by frame, feeding the memory back (backpropagation through the clip).
Both see identical pixels, so their accuracy can be compared.

Outputs in ``out``: ``model.safetensors`` + ``model.json`` (the checkpoint), ``trainer_state.pt``
(optimizer, step, RNG; loaded with ``weights_only=True``) for ``--resume``, ``train_log.jsonl``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.config import scalar_type_error
from perception.train import TrainError


@dataclass(frozen=True)
class TrainConfig:
    model: str = "stan_s_temporal"
    input_height: int = 256
    input_width: int = 448
    train_seeds: tuple[int, int] = (0, 48)  # [first, last) seeds of training drives
    frames_per_sequence: int = 40
    clip_len: int = 4
    batch_size: int = 4  # clips per step (images per step = batch_size * clip_len)
    steps: int = 2000
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    precision: str = "auto"  # auto (bf16 where the CPU/GPU computes it natively, else fp32/fp16) | bf16 | fp32 | fp16
    channels_last: bool = True  # ~2x faster convolutions on CPU with bf16 (used only with bf16/fp16)
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    threads: int = 0  # 0: torch default
    seed: int = 0
    cache_dir: str = "cache/sim"
    out: str = "runs/train"
    checkpoint_every: int = 250
    log_every: int = 10
    sim: dict[str, Any] = field(default_factory=dict)  # SimConfig overrides (width/height forced to input size)
    augment: dict[str, Any] = field(default_factory=dict)  # AugmentConfig overrides (perception.train.augment)
    synthetic: bool = True  # train on rendered drives
    # users' real data, e.g. [{kind: coco, images: DIR, annotations: FILE}, {kind: cityscapes, images: D, labels: D}];
    # steps take their batches from the sources in turn (synthetic first)
    datasets: tuple[dict[str, Any], ...] = ()
    # steps per cycle taken from each source (synthetic first, then ``datasets`` in order), e.g. [3, 1]:
    # three synthetic steps, then one of the first dataset; empty: one step from each in turn
    source_weights: tuple[int, ...] = ()
    model_overrides: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)  # LossConfig overrides, e.g. {attention: 0} (unsupervised CBAM)
    ema: float = 0.0  # decay of an exponential moving average of the weights (0 = off); the checkpoint holds the EMA
    init: str = ""  # warm start: a checkpoint (shipped name or path stem) whose matching weights initialise the model

    def __post_init__(self) -> None:
        if self.input_height % 32 or self.input_width % 32:
            raise TrainError(f"input size {self.input_height}x{self.input_width} must be multiples of 32")
        if self.precision not in ("auto", "bf16", "fp32", "fp16"):
            raise TrainError(f"precision must be auto, bf16, fp32 or fp16, not {self.precision!r}")
        n_sources = int(self.synthetic) + len(self.datasets)
        if self.source_weights and (len(self.source_weights) != n_sources or min(self.source_weights) < 1):
            raise TrainError(f"source_weights {list(self.source_weights)} must give a positive step count for each "
                             f"of the {n_sources} sources (synthetic first, then datasets in order)")
        if not 0.0 <= self.ema < 1.0:
            raise TrainError(f"ema must be a decay in [0, 1) (0 = off), not {self.ema}")
        if not self.synthetic and not self.datasets:
            raise TrainError("no training data: synthetic is false and no datasets are given")
        if self.synthetic and self.train_seeds[1] <= self.train_seeds[0]:
            raise TrainError(f"train_seeds {self.train_seeds} is an empty range")
        self.augment_config()  # refuses unknown or invalid augment / sim options now, not at the first step
        from perception.train.losses import LossConfig

        bad = sorted(set(self.loss) - {f.name for f in fields(LossConfig)})
        if bad:
            raise TrainError(f"unknown loss option(s) {bad}; known: {sorted(f.name for f in fields(LossConfig))}")
        if self.synthetic and self.sim:
            from perception.sim.config import SimConfig, SimError

            try:
                SimConfig.from_dict(self.sim_config())
            except (SimError, TypeError) as e:
                raise TrainError(f"sim: {e}") from None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TrainError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(known)}")
        wrong = scalar_type_error(cls, d)  # here, in the option's name, not as a TypeError mid-training
        if wrong:
            raise TrainError(wrong)
        d = dict(d)
        if "train_seeds" in d:
            d["train_seeds"] = tuple(d["train_seeds"])
        if "datasets" in d:
            d["datasets"] = tuple(d["datasets"] or ())
        if "source_weights" in d:
            d["source_weights"] = tuple(int(w) for w in d["source_weights"] or ())
        return cls(**d)

    def sim_config(self) -> dict[str, Any]:
        return {**self.sim, "width": self.input_width, "height": self.input_height}

    def augment_config(self) -> Any:
        """The AugmentConfig of the synthetic clips: its defaults with ``augment`` applied."""
        from perception.train.augment import AugmentConfig

        return AugmentConfig.from_dict(self.augment)


def same_config(saved: str | None, cfg: TrainConfig) -> bool:
    """Whether a checkpoint's config (JSON) is ``cfg``; options the checkpoint predates count as equal
    when ``cfg`` leaves them at their defaults (so a run can resume after the config grew a field)."""
    if saved is None:
        return False
    old = json.loads(saved)
    now = json.loads(json.dumps(asdict(cfg), sort_keys=True, default=list))
    default = json.loads(json.dumps(asdict(TrainConfig()), sort_keys=True, default=list))
    return set(old) <= set(now) and all(old[k] == v if k in old else v == default[k] for k, v in now.items())


def pick_precision(precision: str, device: str) -> str:
    """``auto`` -> bf16 where the CPU (AVX512-bf16/AMX) or GPU computes it natively, else fp32 (CPU) / fp16."""
    from perception.runtime.torch_backend import torch_precision

    try:
        return torch_precision(precision, device)
    except ValueError as e:
        raise TrainError(str(e)) from None


class WeightEMA:
    """Exponential moving average of a model's parameters and buffers (Polyak averaging), with the
    usual warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so early steps are not averaged away."""

    def __init__(self, model: Any, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                      for k, v in model.state_dict().items()}

    def update(self, model: Any) -> None:
        import torch

        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        with torch.no_grad():
            for k, v in model.state_dict().items():
                e = self.state[k]
                if v.is_floating_point():
                    e.mul_(d).add_(v.detach().float(), alpha=1.0 - d)
                else:
                    e.copy_(v)

    def copy_to(self, model: Any) -> None:
        """Load the averaged weights into ``model`` (dtypes and memory formats of ``model`` kept)."""
        own = model.state_dict()
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in self.state.items()})


def check_init(init: str) -> None:
    """Refuse an ``init`` checkpoint that does not resolve before any slow set-up (rendering the drives)."""
    from perception.weights import resolve_checkpoint

    if init:
        try:
            resolve_checkpoint(init)
        except FileNotFoundError as e:
            raise TrainError(f"init: {e}") from e


def warm_start(model: Any, init: str) -> dict[str, Any]:
    """Copy the weights of checkpoint ``init`` whose names and shapes match ``model``'s into it;
    returns counts of loaded / skipped tensors. Refuses when fewer than half of the model's tensors
    match (another architecture: a warm start would be mostly random)."""
    from perception.models.checkpoint import CheckpointError, load_checkpoint
    from perception.weights import resolve_checkpoint

    try:
        src_model, src_meta = load_checkpoint(resolve_checkpoint(init))
        src = src_model.state_dict()
    except (CheckpointError, FileNotFoundError) as e:
        raise TrainError(f"init: cannot load checkpoint {init!r}: {e}") from e
    own = model.state_dict()
    take = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    if 2 * len(take) < len(own):
        raise TrainError(f"init: only {len(take)} of the model's {len(own)} tensors match checkpoint {init!r} "
                         "(name and shape); warm-start from a checkpoint of the same architecture")
    model.load_state_dict(take, strict=False)
    return {"loaded": len(take), "skipped": len(own) - len(take), "sha256": src_meta.get("sha256"),
            "steps": src_meta.get("extra", {}).get("steps")}


def _save_snapshot(model: Any, ema: WeightEMA | None, stem: Path, cfg: TrainConfig, net_cfg: Any, step: int) -> None:
    """A loadable checkpoint of the weights at ``step`` (the EMA when on): for learning curves."""
    import copy

    from perception.models.checkpoint import save_checkpoint

    snap = copy.deepcopy(model).cpu().float()
    if ema is not None:
        ema.copy_to(snap)
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(stem, snap.eval(), cfg.model, net_cfg,
                    {"train_config": asdict(cfg), "steps": step, "input_size": [cfg.input_height, cfg.input_width]})


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return name


def load_sequences(cfg: TrainConfig, seeds: range, progress: bool = True) -> list[Any]:
    from tqdm import tqdm

    from perception.sim.sequences import load_or_render

    it = tqdm(seeds, desc="rendering/loading drives", disable=not progress, unit="drive")
    return [load_or_render(s, cfg.frames_per_sequence, cfg.sim_config(), cfg.cache_dir) for s in it]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 2 % of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, p))))


def _to_torch(batch: dict[str, np.ndarray], device: str, channels_last: bool) -> dict[str, Any]:
    import torch

    out = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
    if channels_last:  # (B, T, 3, H, W): make every frame's (3, H, W) channels-last
        img = out["image"]
        out["image"] = img.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return out


def _collate(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


def clip_loss(model: Any, loss_fn: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    """Mean loss over the frames of a batch of clips (B, T, ...)."""
    import torch

    b, t = batch["image"].shape[:2]
    target_keys = [k for k in batch if k not in ("image", "reset")]

    def frames(sl: Any) -> dict[str, Any]:
        return {k: batch[k][sl] for k in target_keys}

    if not model.is_temporal:
        flat = {k: v.flatten(0, 1) for k, v in batch.items() if k != "reset"}
        out = model(flat["image"])
        total, parts = loss_fn(out, {k: flat[k] for k in target_keys})
        return total, {k: float(v.detach()) for k, v in parts.items()}
    memory, valid = model.init_state(b, batch["image"].shape[-2], batch["image"].shape[-1],
                                     device=batch["image"].device)
    total = torch.zeros((), device=batch["image"].device)
    acc: dict[str, float] = {}
    for i in range(t):
        out = model(batch["image"][:, i], memory, valid)
        loss_i, parts = loss_fn(out, frames((slice(None), i)))
        total = total + loss_i / t
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach()) / t
        memory, valid = out["memory"], out["memory_valid"]
    return total, acc


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, command: str = "") -> Path:
    """Train ``cfg.model``; return the checkpoint path stem (``<out>/model``)."""
    import torch
    from tqdm import tqdm

    from perception.models.checkpoint import save_checkpoint
    from perception.models.registry import build_model, model_config
    from perception.train.datasets import build_source
    from perception.train.losses import DetSegLoss, LossConfig
    from perception.train.synthetic import SyntheticClips

    check_init(cfg.init)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    sources: list[Any] = []
    if cfg.synthetic:
        sequences = load_sequences(cfg, range(*cfg.train_seeds), progress)
        sources.append(SyntheticClips(sequences, cfg.clip_len, cfg.augment_config(), seed=cfg.seed))
    sources += [build_source(spec, (cfg.input_height, cfg.input_width)) for spec in cfg.datasets]
    precision = pick_precision(cfg.precision, device)
    channels_last = cfg.channels_last and precision != "fp32"  # channels_last pays only with bf16/fp16 kernels
    model = build_model(cfg.model, **cfg.model_overrides)
    init_counts = warm_start(model, cfg.init) if cfg.init else None
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net_cfg = model_config(cfg.model, **cfg.model_overrides)
    loss_cfg = LossConfig(**cfg.loss)
    if loss_cfg.attention > 0 and not model.has_attention_map:
        loss_cfg = replace(loss_cfg, attention=0.0)  # nothing to supervise: the ablation's map is activation-based
    loss_fn = DetSegLoss(loss_cfg).to(device)
    ema = WeightEMA(model, cfg.ema) if cfg.ema > 0 else None
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    step = 0
    state_path = out / "trainer_state.pt"
    if resume:
        if not state_path.exists():
            raise TrainError(f"--resume: {state_path} does not exist; start without --resume")
        state = torch.load(state_path, map_location=device, weights_only=True)
        if not same_config(state.get("config"), cfg):
            raise TrainError(f"--resume: {state_path} was written with a different training config")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            if "ema" not in state:
                raise TrainError(f"--resume: {state_path} holds no EMA weights")
            ema.state = {k: v.to(device) for k, v in state["ema"].items()}
            ema.updates = int(state["ema_updates"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        for src in sources:
            if isinstance(src, SyntheticClips):
                src.rng = np.random.default_rng([cfg.seed, step])

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    order_rng = np.random.default_rng([cfg.seed, step, 1])
    log_path = out / "train_log.jsonl"
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.model}", disable=not progress, unit="step")
    t_start = time.perf_counter()
    images = 0
    last_loss = float("nan")
    with log_path.open("a", encoding="utf-8") as log:
        cycle = [i for i, w in enumerate(cfg.source_weights or (1,) * len(sources)) for _ in range(w)]
        while step < cfg.steps:
            data = sources[cycle[step % len(cycle)]]
            per_clip = data.clip_len if isinstance(data, SyntheticClips) else 1
            n = cfg.batch_size * (cfg.clip_len // per_clip)  # the same number of images from every source
            idx = order_rng.choice(len(data), size=n, replace=len(data) < n)
            batch = _to_torch(_collate([data[int(i)] for i in idx]), device, channels_last)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            with torch.autocast(torch.device(device).type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                loss, parts = clip_loss(model, loss_fn, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if ema is not None:
                ema.update(model)
            step += 1
            images += int(batch["image"].shape[0] * batch["image"].shape[1])
            last_loss = float(loss.detach())
            if not math.isfinite(last_loss):
                raise TrainError(f"loss became {last_loss} at step {step}; lower --lr or use --precision fp32")
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr_at(step, cfg):.1e}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                rate = images / (time.perf_counter() - t_start)
                log.write(json.dumps({"step": step, "loss": last_loss, **parts, "img_per_s": rate}) + "\n")
                log.flush()
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                state_out = {
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "torch_rng": torch.get_rng_state(),
                    "config": json.dumps(asdict(cfg), sort_keys=True, default=list),
                }
                if ema is not None:
                    state_out["ema"], state_out["ema_updates"] = ema.state, ema.updates
                tmp_path = state_path.with_suffix(".tmp")
                torch.save(state_out, tmp_path)
                tmp_path.replace(state_path)  # a run killed while saving keeps its previous state
                _save_snapshot(model, ema, out / "snapshots" / f"model_step{step:06d}", cfg, net_cfg, step)
    bar.close()
    if ema is not None:
        ema.copy_to(model)
    model.eval()
    extra = {
        "train_config": asdict(cfg),
        "command": command,
        "steps": step,
        "final_loss": last_loss,
        "input_size": [cfg.input_height, cfg.input_width],
        "train_images_per_s": images / max(1e-9, time.perf_counter() - t_start),
        "precision": precision,
        "channels_last": channels_last,
        "loss": asdict(loss_cfg),
        "init": {"checkpoint": cfg.init, **init_counts} if init_counts else None,
        "ema": cfg.ema,
    }
    stem = out / "model"
    save_checkpoint(stem, model.cpu(), cfg.model, net_cfg, extra)
    return stem

"""A short real training run on rendered drives lowers the loss; resume continues it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perception.train.trainer import TrainConfig, TrainError, lr_at, train


def _cfg(tmp_path: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        model="stan_tiny_temporal", input_height=64, input_width=128, train_seeds=(0, 2), frames_per_sequence=6,
        clip_len=3, batch_size=2, steps=30, lr=5e-3, warmup_steps=3, precision="fp32", threads=1,
        cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"), checkpoint_every=15, log_every=5,
    )
    base.update(kw)
    return TrainConfig.from_dict(base)


@pytest.mark.slow
def test_short_training_lowers_loss_and_writes_checkpoint(tmp_path: Path) -> None:
    from perception.models.checkpoint import load_checkpoint

    cfg = _cfg(tmp_path)
    stem = train(cfg, progress=False, command="test")
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log]
    assert len(losses) == 6
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    model, meta = load_checkpoint(stem)
    assert model.is_temporal and meta["extra"]["steps"] == 30
    assert meta["extra"]["input_size"] == [64, 128]
    # the rendered drives were cached: a second run renders nothing new
    cached = sorted((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 2


@pytest.mark.slow
def test_resume_continues_from_saved_step(tmp_path: Path) -> None:
    train(_cfg(tmp_path, steps=10, checkpoint_every=5, model="stan_tiny"), progress=False)
    cfg = _cfg(tmp_path, steps=14, checkpoint_every=5, model="stan_tiny")
    with pytest.raises(TrainError, match="different training config"):
        train(cfg, resume=True, progress=False)
    # the same config with more steps is a different config too: resume needs the identical one
    cfg10 = _cfg(tmp_path, steps=10, checkpoint_every=5, model="stan_tiny")
    train(cfg10, resume=True, progress=False)  # already at step 10: nothing to do, checkpoint rewritten
    lines = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [5, 10]


def test_config_validation() -> None:
    with pytest.raises(TrainError, match="multiples of 32"):
        TrainConfig(input_height=100)
    with pytest.raises(TrainError, match="unknown training option"):
        TrainConfig.from_dict({"stepz": 3})
    cfg = TrainConfig(lr=1.0, warmup_steps=10, steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(110, cfg) == pytest.approx(0.02)

"""The shipped checkpoints load without unpickling and still perceive an unseen drive."""

from __future__ import annotations

import pytest

from perception.models.checkpoint import load_checkpoint, read_checkpoint_info
from perception.weights import shipped_checkpoints, weights_path


def test_shipped_checkpoints_record_how_they_were_made() -> None:
    names = shipped_checkpoints()
    assert {"stan_s_temporal", "stan_s", "stan_mbv2"} <= set(names)
    for name in names:
        info = read_checkpoint_info(weights_path(name))
        assert info["name"] == name
        assert info["extra"]["command"].startswith("perception train")
        # the real-eyed network is trained at the node's input size; the synthetic-only family at 256x448
        assert info["extra"]["input_size"] == ([384, 640] if name == "stan_mbv2" else [256, 448])


@pytest.mark.parametrize("name", ["stan_s_temporal", "stan_s"])
def test_shipped_model_beats_floor_on_an_unseen_drive(name: str) -> None:
    """Regression floor (well below the measured figures in the checkpoint JSON), not a benchmark."""
    from perception.eval.synthetic import EvalConfig, evaluate_checkpoint, load_eval_sequences

    model, _ = load_checkpoint(weights_path(name))
    assert model.is_temporal == name.endswith("temporal")
    cfg = EvalConfig(seeds=(1500, 1501), frames_per_sequence=12, cache_dir=None)
    metrics = evaluate_checkpoint(weights_path(name), cfg, load_eval_sequences(cfg), progress=False)
    summary = metrics["summary"]
    assert summary["mIoU"] > 0.45, summary
    assert summary["mAP50"] > 0.15, summary

"""Checkpoints: round trip and every failure mode's message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from perception.models.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint, sha256_file
from perception.models.errors import CheckpointError
from perception.models.registry import build_model, model_config


def _saved(tmp_path: Path, name: str = "stan_tiny_temporal") -> tuple[torch.nn.Module, Path]:
    model = build_model(name).eval()
    with torch.no_grad():  # make BN statistics non-trivial so a round trip proves they are stored
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
    save_checkpoint(tmp_path / "ckpt", model, name, model_config(name), {"command": "pytest", "miou": 0.5})
    return model, tmp_path / "ckpt"


def test_round_trip_equal_outputs(tmp_path: Path) -> None:
    model, path = _saved(tmp_path)
    loaded, info = load_checkpoint(str(path) + ".safetensors")
    assert info["name"] == "stan_tiny_temporal" and info["extra"]["miou"] == 0.5
    assert info["sha256"] == sha256_file(checkpoint_paths(path)[0])
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not loaded.training


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nothing\.json is missing"):
        load_checkpoint(tmp_path / "nothing")
    _, path = _saved(tmp_path)
    checkpoint_paths(path)[0].unlink()
    with pytest.raises(CheckpointError, match=r"ckpt\.safetensors are missing"):
        load_checkpoint(path)


def test_corrupt_json(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    checkpoint_paths(path)[1].write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    checkpoint_paths(path)[1].write_text("{}", encoding="utf-8")
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(path)


def test_truncated_weights_fail_hash(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    w = checkpoint_paths(path)[0]
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"do not match the sha256.*truncated"):
        load_checkpoint(path)


def _rehash(path: Path) -> None:
    w, j = checkpoint_paths(path)
    info = json.loads(j.read_text())
    info["sha256"] = sha256_file(w)
    j.write_text(json.dumps(info))


def test_corrupt_weights_with_matching_hash(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    checkpoint_paths(path)[0].write_bytes(b"\x00garbage" * 10)
    _rehash(path)
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_checkpoint(path)


def test_wrong_architecture(tmp_path: Path) -> None:
    _, path = _saved(tmp_path, "stan_tiny")
    j = checkpoint_paths(path)[1]
    info = json.loads(j.read_text())
    info["config"] = model_config("stan_tiny_temporal").to_dict()
    j.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"do not fit architecture.*missing.*temporal"):
        load_checkpoint(path)
    info["config"] = model_config("stan_tiny", widths=(8, 16, 24, 40)).to_dict()
    j.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(path)


def test_bad_config(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    j = checkpoint_paths(path)[1]
    info = json.loads(j.read_text())
    info["config"]["wingspan"] = 3
    j.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="unusable config"):
        load_checkpoint(path)


def test_annotate_keeps_weights_and_adds_metadata(tmp_path: Path) -> None:
    from perception.models.checkpoint import annotate_checkpoint, read_checkpoint_info

    name = "stan_tiny"
    stem = tmp_path / "m"
    save_checkpoint(stem, build_model(name), name, model_config(name), {"steps": 3})
    before = (tmp_path / "m.safetensors").read_bytes()
    annotate_checkpoint(stem, "eval", {"mAP50": 0.5})
    info = read_checkpoint_info(stem)
    assert info["extra"] == {"steps": 3, "eval": {"mAP50": 0.5}}
    assert (tmp_path / "m.safetensors").read_bytes() == before
    model, _ = load_checkpoint(stem)  # the hash still matches
    assert model.name == name

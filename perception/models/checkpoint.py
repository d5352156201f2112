"""Checkpoints: ``<path>.safetensors`` (weights) + ``<path>.json`` (name, config, extra, sha256).

Loading never unpickles anything: the weights are safetensors, the metadata JSON, and the
network is rebuilt from the stored :class:`NetConfig`. Every failure raises
:class:`CheckpointError` naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perception.core.files import sha256_file
from perception.models.config import NetConfig
from perception.models.errors import CheckpointError, ModelError

FORMAT_VERSION = 1
_SUFFIXES = (".safetensors", ".json")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths for ``path`` given with or without a suffix."""
    p = Path(path)
    if p.suffix in _SUFFIXES:
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_checkpoint(
    path: str | Path, model: nn.Module, name: str, config: NetConfig, extra: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write the model's state dict and metadata; returns ``(weights_path, json_path)``."""
    from safetensors.torch import save_file

    weights, meta = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(weights), metadata={"name": name, "format_version": str(FORMAT_VERSION)})
        info = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "config": config.to_dict(),
            "extra": dict(extra or {}),
            "weights": weights.name,
            "sha256": sha256_file(weights),
            "num_params": int(sum(p.numel() for p in model.parameters())),
        }
        meta.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    except (OSError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"could not write checkpoint {weights} / {meta}: {e}; check the directory and that extra is JSON-able"
        ) from e
    return weights, meta


def read_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The metadata dict of a checkpoint (no weights loaded, no hash check)."""
    _, meta = checkpoint_paths(path)
    if not meta.is_file():
        raise CheckpointError(
            f"checkpoint metadata {meta} is missing; a checkpoint is a .safetensors + .json pair written by "
            "save_checkpoint — pass the path of one (with or without suffix)"
        )
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint metadata {meta} is not valid JSON ({e}); re-save the checkpoint") from e
    missing = [k for k in ("name", "config", "sha256") if not isinstance(info, dict) or k not in info]
    if missing:
        raise CheckpointError(f"checkpoint metadata {meta} lacks {missing}; it was not written by save_checkpoint")
    return dict(info)


def annotate_checkpoint(path: str | Path, key: str, value: Any) -> None:
    """Store ``value`` under ``extra[key]`` in a checkpoint's metadata (e.g. its evaluation figures).

    The weights and their hash are untouched; the JSON is replaced atomically.
    """
    info = read_checkpoint_info(path)
    info.setdefault("extra", {})[key] = value
    _, meta = checkpoint_paths(path)
    tmp = meta.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(meta)
    except (OSError, TypeError, ValueError) as e:
        raise CheckpointError(f"could not update checkpoint metadata {meta}: {e}") from e


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored at ``path`` and load its weights; returns ``(model in eval mode, info)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from perception.models.registry import build_from_config

    weights, meta = checkpoint_paths(path)
    info = read_checkpoint_info(path)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} are missing (metadata {meta} exists); copy both files")
    digest = sha256_file(weights)
    if digest != info["sha256"]:
        raise CheckpointError(
            f"checkpoint weights {weights} do not match the sha256 recorded in {meta} "
            f"(expected {info['sha256'][:12]}…, got {digest[:12]}…): the file is truncated, corrupt or from "
            "another run; copy the pair again or re-train"
        )
    try:
        config = NetConfig.from_dict(info["config"])
        model = build_from_config(config, name=str(info["name"]))
    except (ModelError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata {meta} holds an unusable config: {e}") from e
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint weights {weights} cannot be read as safetensors ({e}); re-save them") from e
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = _shape_mismatches(own, state)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"checkpoint weights {weights} do not fit architecture {info['name']!r} described in {meta}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {mismatched[:5]}; "
            "the .json and .safetensors belong to different models — use the pair written together"
        )
    model.load_state_dict(state, strict=True)
    model.to(map_location)
    model.eval()
    return model, info


def _shape_mismatches(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    return [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]


def checkpoint_input_size(path: str | Path, default: tuple[int, int] = (256, 448)) -> tuple[int, int]:
    """The (height, width) a checkpoint was trained at (its metadata ``extra.input_size``)."""
    size = read_checkpoint_info(path).get("extra", {}).get("input_size")
    return (int(size[0]), int(size[1])) if size else default

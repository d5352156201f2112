"""Checkpoints shipped with the package, trained with the project's own commands.

Each ``<name>.safetensors`` has a ``<name>.json`` beside it holding the network config, the exact
training command and the evaluation metrics measured on unseen drives (see README).
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent


def shipped_checkpoints() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def weights_path(name: str) -> Path:
    """Path stem (without suffix) of a shipped checkpoint; FileNotFoundError names the choices."""
    stem = WEIGHTS_DIR / name
    if not stem.with_suffix(".safetensors").exists():
        have = ", ".join(shipped_checkpoints()) or "none"
        raise FileNotFoundError(
            f"no shipped checkpoint named {name!r} in {WEIGHTS_DIR} (shipped: {have}); "
            "train one with `perception train` and pass its path instead"
        )
    return stem

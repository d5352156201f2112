"""Checkpoints shipped with the package, trained with the project's own commands.

Each ``<name>.safetensors`` has a ``<name>.json`` beside it holding the network config, the exact
training command and the evaluation metrics measured on unseen drives (see docs/networks.md and docs/real_eyes.md).
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent


def shipped_checkpoints() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """Path stem of a checkpoint given as a path (with or without ``.safetensors``) or a shipped name.

    FileNotFoundError says both what was looked for on disk and which checkpoints are shipped.
    """
    p = Path(name_or_path).expanduser()
    if p.suffix == ".safetensors":
        p = p.with_suffix("")
    if p.with_suffix(".safetensors").exists():
        return p
    try:
        return weights_path(str(name_or_path))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"no file {p}.safetensors, and {e}") from e


def checkpoint_arg(text: str) -> str:
    """argparse ``type`` of every verb's ``--checkpoint``: a shipped name or a path, resolved by
    :func:`resolve_checkpoint` when the command line is parsed, so every verb accepts the same names
    and a wrong one fails at once with what was looked for. Returns the checkpoint's path stem."""
    import argparse

    if not text.strip():
        shipped = ", ".join(shipped_checkpoints())
        raise argparse.ArgumentTypeError(f"give a checkpoint path or a shipped name ({shipped})")
    try:
        return str(resolve_checkpoint(text))
    except FileNotFoundError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


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

"""Training only: datasets (synthetic clips, COCO / Cityscapes, pseudo-labelled footage), augmentation,
targets, losses and the training loop. Metrics and evaluation reports live in :mod:`perception.eval`."""

from __future__ import annotations


class TrainError(RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""

"""Exceptions of the models layer: one base type, messages say what to do."""

from __future__ import annotations


class ModelError(Exception):
    """Bad model name, configuration or input for a network of ``perception.models``."""


class CheckpointError(ModelError):
    """A checkpoint could not be written or read; the message names the file and the fix."""

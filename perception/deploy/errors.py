"""Exceptions of the deploy layer: one base type, messages say what to change."""

from __future__ import annotations


class DeployError(Exception):
    """A model could not be exported or quantised; the message says what to change.

    Engine builds raise the runtime's :class:`~perception.runtime.tensorrt_engine.EngineError` (the
    engine cache's error, shared with the backend that loads engines); checkpoints that cannot be read
    raise the models' ``CheckpointError``.
    """


class ExportError(DeployError):
    """The network could not be exported to ONNX."""


class QuantizeError(DeployError):
    """An ONNX model could not be quantised to INT8."""

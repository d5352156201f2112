"""The one Backend abstraction every runtime implements (torch, ONNX Runtime, TensorRT).

A backend runs a network on numpy arrays: named inputs in, named outputs out. Recurrent state
(the temporal memory) is part of the I/O — the caller owns it and feeds it back — so every runtime
sees the same plain graph. ``TensorSpec`` describes each tensor; ``state_pairs`` maps each state
input to the output that carries its next value.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


class BackendError(RuntimeError):
    """A backend failed to load or to run; the message says which backend, what and what to do."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # str for dynamic axes ("batch")
    dtype: str = "float32"


class Backend(abc.ABC):
    """Abstract runtime. Subclasses import their runtime library lazily inside ``load``."""

    name: str = "abstract"

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model (may be slow: engines, compilation). Raises BackendError."""

    @abc.abstractmethod
    def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        """Run one batch. ``inputs`` holds every input in ``input_specs`` (state included). ``skip``: outputs the
        caller does not need (the segmentation when nobody consumes it; a refinement crop's). A backend that can
        leave them uncomputed without changing the other outputs does (ONNX Runtime, float models on the CPU: a
        session of the graph pruned to the other outputs) and returns the rest; the others return every output.
        State outputs are always returned."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every resource ``load`` acquired. Safe to call twice."""

    @property
    @abc.abstractmethod
    def input_specs(self) -> tuple[TensorSpec, ...]: ...

    @property
    @abc.abstractmethod
    def output_specs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def state_pairs(self) -> dict[str, str]:
        """state input name -> output name holding its next value (empty: stateless model)."""
        return {}

    @property
    def is_temporal(self) -> bool:
        return bool(self.state_pairs)

    def initial_state(self, batch: int) -> dict[str, np.ndarray]:
        """Zero state (an empty memory is a valid first frame) for ``batch`` streams."""
        state = {}
        specs = {s.name: s for s in self.input_specs}
        for name in self.state_pairs:
            spec = specs[name]
            shape = tuple(batch if isinstance(d, str) else d for d in spec.shape)
            state[name] = np.zeros(shape, dtype=np.dtype(spec.dtype))
        return state

    def status(self) -> dict[str, str]:
        """Key/values for diagnostics (which runtime runs; a fallback wrapper adds its failures)."""
        return {"backend.active": self.name}

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WrappingBackend(Backend):
    """A backend that delegates its I/O contract to another one (fallback chains, recorders)."""

    @abc.abstractmethod
    def wrapped(self) -> Backend:
        """The backend currently doing the work (raises BackendError before load)."""

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self.wrapped().input_specs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self.wrapped().output_specs

    @property
    def state_pairs(self) -> dict[str, str]:
        return self.wrapped().state_pairs

"""Exceptions of the vehicle layer: messages name the key or file and say what to do."""

from __future__ import annotations


class VehicleError(Exception):
    """Installing or checking a vehicle failed; the message says what to change."""


class RigConfigError(VehicleError):
    """A rig file is invalid: :attr:`problems` lists every problem, each ``key: what is wrong; the fix``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, list(problems)
        where = source or "rig config"
        super().__init__(f"{where}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))

"""Log lines that repeat per frame, at most one per period, and the one-line form of an exception. No rclpy here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def why(e: BaseException) -> str:
    """``Type: message``: an exception as a diagnostics / log reason."""
    return f"{type(e).__name__}: {e}"


class ThrottledLog:
    """At most one line per ``period`` seconds per key; says how many were suppressed meanwhile."""

    def __init__(self, log: Callable[[str], None], period: float = 5.0) -> None:
        self._log, self._period = log, period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self._period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        self._log(text + (f" ({n} similar messages suppressed)" if n else ""))

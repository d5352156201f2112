"""One camera's /diagnostics status of the perception node: its level, message and key/values, composed from
the node-wide state and the camera's own statistics (pure: no ROS; the node publishes what this returns).

Levels only get worse along the way (:func:`perception.ros.nodes.stats.worse`): the node-wide problem (configure
rejected, model not loaded, worker dead), while serving a stalled inference (ERROR) and the camera's own window
(stale drops, malformed input, failures), a fallback backend (WARN), a problem of the objects stage, a model file
changed on disk (WARN). Declared load shedding is said, not a fault: it leaves the level as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perception.ros.nodes.stats import worse


def camera_status(values: Mapping[str, Any], *, state: str, node_level: str, node_text: str, serving: bool,
                  busy_s: float, stall_s: float, runtime: Mapping[str, Any], active: str, objects_problem: str,
                  changed: list[str], extra: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(level, message, values)`` of one camera. ``values``: its statistics (``level`` and ``message`` of its
    window included); ``serving``: active and not paused; ``busy_s``: how long the running inference has taken;
    ``runtime``: the backend's status; ``extra``: node facts put before the camera's values."""
    level, texts = "ok", []
    if node_level != "ok":
        level, texts = node_level, [node_text]
    if serving and values.get("shedding"):
        texts.append(str(values["shedding"]))
    if serving:
        if busy_s > stall_s:
            level = worse(level, "error")
            texts.append(f"inference has been running for {busy_s:.1f} s (backend stalled?)")
        if values.get("level", "ok") != "ok":
            level = worse(level, str(values["level"]))
            texts.append(str(values["message"]))
    if runtime.get("backend.fallbacks", "0") != "0":
        level = worse(level, "warn")
        texts.append(f"on fallback backend {active} ({runtime.get('backend.last_error')})")
    if objects_problem and serving:
        level = worse(level, "warn")
        texts.append(objects_problem)
    if changed:
        level = worse(level, "warn")
        texts.append(f"model file(s) {', '.join(changed)} changed on disk: still running the loaded model "
                     "(re-activate to load the new one)")
    return level, "; ".join(texts) or state, {**extra, **values}

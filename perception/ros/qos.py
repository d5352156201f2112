"""QoS profiles built from parameters (camera inputs default to sensor-data QoS)."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

_RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def qos_profile(reliability: str = "best_effort", depth: int = 1, transient_local: bool = False) -> QoSProfile:
    """KEEP_LAST ``depth`` with the named reliability; volatile unless ``transient_local``.

    ``best_effort`` / depth 1 is the sensor-data profile: a slow subscriber gets the newest frame,
    never a queue of stale ones.
    """
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE,
    )


def latched(depth: int = 1) -> QoSProfile:
    """Reliable + transient local: late subscribers still get the last message (LabelInfo)."""
    return qos_profile("reliable", depth, transient_local=True)

"""The ROS layer's one exception type."""

from __future__ import annotations


class RosError(ValueError):
    """Something at the ROS boundary is wrong: a parameter value, an input message, a launch file.

    The message names the offending item and says what would be accepted. A node that meets one
    for an input message drops that frame, counts it and stays alive; for a parameter, the
    configure transition (or the parameter change) is rejected with this message as the reason.
    """

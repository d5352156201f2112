"""rosbag2 without ROS, I/O only (it imports nothing of this project but core): read/write (rosbags),
replay scheduling, repair. Scoring recorded bags is :mod:`perception.eval.bags`.

MCAP files are written with CRCs and verified before use; ``perception bag repair`` rebuilds a
crash-truncated or damaged one (:mod:`perception.bag.mcap_storage`, :mod:`perception.bag.repair`).

Nothing here imports rclpy: bags are read and written with ``rosbags`` (mcap and sqlite3
storage), messages are rosbags' dataclasses of the Kilted typestore plus vision_msgs. The
player node that puts a bag on a live graph lives in :mod:`perception.ros.tools.replay`.
"""

from __future__ import annotations


class BagError(RuntimeError):
    """A bag that cannot be used as asked; the message names the bag and says what to do."""

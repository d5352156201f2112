"""The ROS 2 nodes and their parts (see :mod:`perception.ros`)."""

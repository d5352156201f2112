"""Tools that start, feed, record and measure ROS 2 graphs (see :mod:`perception.ros`)."""

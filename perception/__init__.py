"""Attention-based camera perception for ROS 2.

Layers (left to right is the data path): core (numpy/cv2), models (torch), runtime,
pipeline, sim, train, bag, fusion, ros (the only package importing rclpy), cli.

Importing the package sets a passive OpenMP wait policy (``OMP_WAIT_POLICY=PASSIVE``,
``KMP_BLOCKTIME=0``) unless those variables are set already: it must happen before torch loads
OpenMP, and spinning worker threads made torch inference tens of times slower next to one other busy
process (measured here: 28-32 ms a frame passive, 840-1133 ms spinning)
(:mod:`perception.core.hardware`). Set ``OMP_WAIT_POLICY=ACTIVE`` to keep spinning on a dedicated machine.
"""

from perception.core.hardware import apply_passive_openmp

apply_passive_openmp()

__version__ = "0.1.0"

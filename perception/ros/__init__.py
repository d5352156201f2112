"""ROS 2 layer: the ONLY package that imports rclpy.

Modules, left to right along the data path:

- ``convert``: pure functions sensor_msgs / vision_msgs <-> numpy and core dataclasses;
- ``objects_msgs``: pure functions fused objects / tracks -> Detection3DArray, Autoware
  DetectedObjects / TrackedObjects, MarkerArray, foxglove ImageAnnotations;
- ``frames``: 4x4 poses <-> TransformStamped / Odometry, the /tf_static store (no rclpy);
- ``objects_stage``: LiDAR / odometry / extrinsics synchronised to each image by stamp, fusion +
  tracking per camera for the perception node (no rclpy);
- ``params``: the perception node's parameters, validated into frozen config dataclasses (no rclpy);
- ``runner``: latest-frame-wins slots, the inference worker, results -> output messages (no rclpy);
- ``stats``: rates, drops and latency percentiles for ``/diagnostics`` (no rclpy);
- ``perception_node`` / ``synthetic_camera``: the nodes (thin glue, ``main(args=None)`` each);
- ``env``: the localhost Fast DDS profile and private domain ids for every process we start;
- ``launch_spec`` / ``run``: launch files parsed statically and run without ``ros2 launch``;
- ``bench`` / ``demo``: ``perception bench ros`` and ``perception demo --ros``.
"""

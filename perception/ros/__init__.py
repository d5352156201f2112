"""ROS 2 layer: the ONLY package that imports rclpy. Shared message code here, the nodes in ``nodes``,
the tools that drive graphs in ``tools``.

Shared (used by nodes and tools alike):

- ``convert``: pure functions sensor_msgs / vision_msgs <-> numpy and core dataclasses;
- ``objects_msgs``: pure functions fused objects / tracks -> Detection3DArray, Autoware
  DetectedObjects / TrackedObjects, MarkerArray, foxglove ImageAnnotations;
- ``frames``: 4x4 poses <-> TransformStamped / Odometry, the /tf_static store (no rclpy);
- ``env``: the localhost Fast DDS profile and private domain ids for every process we start;
- ``qos``, ``spin``, ``errors``: QoS profiles, signal-aware spinning, the layer's error type.

``nodes`` -- what runs in a vehicle: ``perception_node`` and ``synthetic_camera`` (thin glue,
``main(args=None)`` each) and their parts: ``params`` / ``overrides`` (parameters validated into frozen
dataclasses), ``engine`` (model loading), ``runner`` (latest-frame-wins slots, the inference worker,
results -> messages), ``objects_stage`` (LiDAR / odometry / extrinsics synchronised by stamp, fusion +
tracking per camera), ``stats`` (rates, drops, latency for ``/diagnostics``).

``tools`` -- what drives a graph from outside: ``launch_spec`` / ``run`` (launch files run without
``ros2 launch``), ``replay`` (bags into a graph, outputs recorded), ``demo`` (``perception demo --ros``),
``bench`` / ``bench_throughput`` / ``bench_fuzz`` / ``bench_soak`` (``perception bench ros|throughput|fuzz|soak``).
"""

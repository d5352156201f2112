"""The compatibility interface packages (interfaces/) are the public ones: same text, same type hashes.

ROS 2 (Iron and later) checks RIHS01 type hashes, computed from the field names and types of a
message and of every type it contains, when a publisher and a subscriber match; a field that
differs from upstream would make Autoware or Foxglove see a different type.

Provenance of the recorded values:
- ``UPSTREAM_BLOBS``: git blob ids of the .msg files at autowarefoundation/autoware_msgs
  7025d8f7df0ead43037d86f8a4ffda8b397d0293 (tag 1.12.0, autoware_perception_msgs/msg/) and
  foxglove/schemas dd8b4f38df88908e05f3ddee18ffddfa5ef7a4cd (ros_foxglove_msgs/ros2/, foxglove_msgs 3.1.0) and
  ros2/geometry2 1b005c6556cf350d7670812ef30eefed8443a759 (tf2_msgs/msg/TFMessage.msg, unchanged since Foxy),
  read with ``git ls-tree`` on 2026-11-30;
- ``RIHS01``: the hashes rosidl_generator_type_description 4.9.5 (Kilted, the pip wheels) wrote into
  share/<pkg>/msg/<Type>.json when scripts/build_interfaces.sh built those upstream files on 2026-11-30;
  rosbags 0.11.9's own RIHS01 implementation gives the same values from the same text (checked below),
  and visualization_msgs' come from the ros-visualization-msgs 5.5.1 wheel (Kilted release).
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

UPSTREAM_BLOBS: dict[str, str] = {
    "autoware_perception_msgs/DetectedObject.msg": "ce2783cd6ec69b262f25a2b600de3c503a3e61da",
    "autoware_perception_msgs/DetectedObjectKinematics.msg": "c7358fd0e0df90e2b9d17c48e1eed1465c69daea",
    "autoware_perception_msgs/DetectedObjects.msg": "261fe9cec7a78abd87c2cbeabf342a6488a3d80c",
    "autoware_perception_msgs/ObjectClassification.msg": "96e6fd5651374a4659f004e4087aaac432d569e4",
    "autoware_perception_msgs/PredictedObject.msg": "4cdc96fc4be6d59317fdd4ff47a3fda948ba18b0",
    "autoware_perception_msgs/PredictedObjectKinematics.msg": "267e71bd8205ccac7382073cf9dd850eba9696a6",
    "autoware_perception_msgs/PredictedObjects.msg": "fbfb520456db202edcc514c733323c86fa57f1a8",
    "autoware_perception_msgs/PredictedPath.msg": "98bcc155d3763ea2c3a2cd4d01c3eba9a6bab2c9",
    "autoware_perception_msgs/PredictedTrafficLightState.msg": "d05e7ccf060dbef473d1720573f7c9e32dbbe822",
    "autoware_perception_msgs/Shape.msg": "ca7ff86ffd7213e1e381519483be27e56429ed49",
    "autoware_perception_msgs/TrackedObject.msg": "cd45664d0ef5c7a24bddd2b696e7443342147a8d",
    "autoware_perception_msgs/TrackedObjectKinematics.msg": "2f6c77763e9d05e817558561bf3ff7f5fcba9932",
    "autoware_perception_msgs/TrackedObjects.msg": "5fcc2c96981bc49bd2daba4dd50974a7a8e4ab89",
    "autoware_perception_msgs/TrafficLightElement.msg": "70ba6100a3a6d4a3effdeb80efa466f986994d5a",
    "autoware_perception_msgs/TrafficLightGroup.msg": "448330ef67956911815fcfc505e9399117cc0e14",
    "autoware_perception_msgs/TrafficLightGroupArray.msg": "ebc5ced718c6910bc9a2cbe7c1db930759873056",
    "autoware_perception_msgs/TrafficSignal.msg": "014a0b83329efc2fc3b4814d07faa5631d088bc5",
    "autoware_perception_msgs/TrafficSignalArray.msg": "10159e42b618f1b6a8028ed492a86f7147fa15b5",
    "autoware_perception_msgs/TrafficSignalElement.msg": "326ff36f8f7346c2afd12fdec8577616fe2df83a",
    "foxglove_msgs/CircleAnnotation.msg": "513ffa5ba0e283a80c9115673b9bb0364349bc6b",
    "foxglove_msgs/Color.msg": "bb6127f6c3efa927117780f5b08a7f6d7afa7998",
    "foxglove_msgs/ImageAnnotations.msg": "26a3a7c11e40985eb610fc5f8c7448cbfc0bcb47",
    "foxglove_msgs/Point2.msg": "685560f586f562c91be4ad01212e220fdd5ab73b",
    "foxglove_msgs/PointsAnnotation.msg": "22e79fca3931bdef3644e5df3b5a1ae58f7e4502",
    "foxglove_msgs/TextAnnotation.msg": "4857e7101b8839e5cd11b6d89ee5665317b74531",
    "tf2_msgs/TFMessage.msg": "fda1e4d0985406667d26b7b36cbbedc9bb497074",
}

# the types the project publishes and everything they contain that is not in common_interfaces
RIHS01: dict[str, str] = {
    "autoware_perception_msgs/msg/DetectedObjects":
        "RIHS01_2facd6b15786cbd1f720cdd23d22e6d60d2e7e83b8dff8fd401330e24edb187b",
    "autoware_perception_msgs/msg/DetectedObject":
        "RIHS01_395e8cae03c45c86ddb3263f9db58f5a1364bdabdcec56c24c817a372f7d566f",
    "autoware_perception_msgs/msg/DetectedObjectKinematics":
        "RIHS01_a01b4e06aa855e7a501b1af1e7c6a9eddb70e728e8f1195372ff5801cae1c9eb",
    "autoware_perception_msgs/msg/ObjectClassification":
        "RIHS01_38131fef2df46486c20c12c238faf778328309f4c3e9daa6ffd621732e48dd19",
    "autoware_perception_msgs/msg/Shape": "RIHS01_1a32ac3073c17e4822d39b7f4c263eb1c4a2bacbf707d6db96e77e867063562b",
    "autoware_perception_msgs/msg/TrackedObjects":
        "RIHS01_3559bd4e62ce8a4d96e32720c02bbe656cc090bb2b3f3f91f52a7c3ab095417a",
    "autoware_perception_msgs/msg/TrackedObject":
        "RIHS01_3feae2f15953814466d9c0b88485f423d18d94c351877d8fd1645270222c3526",
    "autoware_perception_msgs/msg/TrackedObjectKinematics":
        "RIHS01_9bcc5af91f7802926c091b89fea44d29f8ce04cb34bd62b98844afab21e49ec7",
    "autoware_perception_msgs/msg/PredictedObjects":
        "RIHS01_b63151309c3323bb6e3f09c54b3358aa53a8e66937a1cde15c5d5ede1ef80a08",
    "foxglove_msgs/msg/ImageAnnotations": "RIHS01_47c6c0891ba263ec1b20d9b785c4261d4bc41051cbcc01668130e36aa2dcaee3",
    "foxglove_msgs/msg/PointsAnnotation": "RIHS01_61bd8dda01243d9c7232f00d9101577291b5a9bc1855b06ada4a29e0dc0496a7",
    "foxglove_msgs/msg/TextAnnotation": "RIHS01_c02ec64b79eb5682e73b2b2572f127a27baec868b6ad6acc085abc39355a5b2b",
    # tf2_msgs: also rosbags' stored Kilted typestore value (its hash depends on TFMessage and
    # geometry_msgs/TransformStamped only); nav_msgs comes from the ros-nav-msgs 5.5.1 wheel
    "tf2_msgs/msg/TFMessage": "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    "nav_msgs/msg/Odometry": "RIHS01_3cc97dc7fb7502f8714462c526d369e35b603cfc34d946e3f2eda2766dfec6e0",
    "visualization_msgs/msg/MarkerArray": "RIHS01_86cb8800b6fb05b5eff1abd7a56f62a5641d3ae9a1c29e78e67e704f1d067dcf",
}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_msg_files_are_verbatim_upstream() -> None:
    pkgs = {k.split("/")[0] for k in UPSTREAM_BLOBS}
    files = [f for p in sorted(pkgs) for f in (ROOT / "interfaces" / p / "msg").glob("*.msg")]
    here = {f"{f.parent.parent.name}/{f.name}": git_blob_id(f.read_bytes()) for f in files}
    assert here == UPSTREAM_BLOBS


def test_recorded_hashes_match_an_independent_rihs01_implementation() -> None:
    """rosbags computes RIHS01 from the .msg text itself (no rosidl, no build needed)."""
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_KILTED)
    types: dict[str, object] = {}
    for path in sorted((ROOT / "interfaces").glob("*/msg/*.msg")):
        pkg = path.parent.parent.name
        if pkg != "vision_msgs":
            types.update(typesys.get_types_from_msg(path.read_text(encoding="utf-8"), f"{pkg}/msg/{path.stem}"))
    store.register(types)
    assert {name: store.hash_rihs01(name) for name in RIHS01} == RIHS01


def test_the_graph_advertises_the_recorded_hashes(client: Any) -> None:
    """What this environment's type support (the build here, or a ROS 2 install) tells DDS: the hash a
    publisher of each type announces, as any subscriber on the graph sees it."""
    for pkg in sorted({k.split("/")[0] for k in RIHS01}):
        pytest.importorskip(f"{pkg}.msg")
    seen = {}
    for i, name in enumerate(sorted(RIHS01)):
        pkg, _, typ = name.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.msg"), typ)
        topic = f"/hash_check_{i}"
        pub = client.node.create_publisher(cls, topic, 1)
        seen[name] = str(client.node.get_publishers_info_by_topic(topic)[0].topic_type_hash)
        client.node.destroy_publisher(pub)
    assert seen == RIHS01

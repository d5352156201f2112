"""Lifecycle transitions, parameter rejection and compressed input of perception_node, across processes."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from collections.abc import Callable

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from ros_testing import TINY_MODEL, Client, compressed_msg, needs_model, rgb_image
from sensor_msgs.msg import CompressedImage
from vision_msgs.msg import Detection2DArray, LabelInfo

from perception.ros import convert
from perception.ros.qos import latched
from perception.ros.tools.node_process import NodeProcess


def _state(client: Client, node: str) -> int:
    return int(client.call(GetState, f"/{node}/get_state", GetState.Request(), resend_every=3.0).current_state.id)


def _transition(client: Client, node: str, transition: int) -> bool:
    req = ChangeState.Request()
    req.transition.id = transition
    return bool(client.call(ChangeState, f"/{node}/change_state", req, timeout=60.0).success)


def _set(client: Client, node: str, name: str, value: object) -> tuple[bool, str]:
    pv = ParameterValue()
    if isinstance(value, bool):
        pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
    elif isinstance(value, float):
        pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
    elif isinstance(value, int):
        pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
    else:
        pv.type, pv.string_value = ParameterType.PARAMETER_STRING, str(value)
    req = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
    res = client.call(SetParameters, f"/{node}/set_parameters", req).results[0]
    return bool(res.successful), str(res.reason)


def test_lifecycle_transitions_and_compressed_input(client: Client, node_factory: Callable[..., NodeProcess]) -> None:
    needs_model()
    name = "perception_lifecycle_test"
    proc = node_factory("perception.ros.nodes.perception_node", name,
                        {**TINY_MODEL, "cameras": ["cam"], "input.transport": "compressed"})
    assert _state(client, name) == State.PRIMARY_STATE_UNCONFIGURED

    # parameters are validated when set, with a reason
    ok, reason = _set(client, name, "detection.score_threshold", 1.5)
    assert not ok and "1.5" in reason
    ok, reason = _set(client, name, "model.backend", "caffe")
    assert not ok and "torch" in reason
    ok, _ = _set(client, name, "detection.score_threshold", 0.0)
    assert ok

    assert _transition(client, name, Transition.TRANSITION_CONFIGURE)
    assert _state(client, name) == State.PRIMARY_STATE_INACTIVE
    labels = client.collect(LabelInfo, "/cam/label_info", latched())
    assert client.spin_until(lambda: labels, 10.0)

    dets = client.collect(Detection2DArray, "/cam/detections")
    pub = client.node.create_publisher(CompressedImage, "/cam/image_raw/compressed", qos_profile_sensor_data)
    rgb = rgb_image(72, 96, seed=11)
    pub.publish(compressed_msg(rgb, 10.0))
    client.spin_for(0.5)
    assert not dets, "an inactive node must not publish"

    assert _transition(client, name, Transition.TRANSITION_ACTIVATE)
    assert _state(client, name) == State.PRIMARY_STATE_ACTIVE

    def send(stamp: float, msg: CompressedImage | None = None) -> bool:
        for _ in range(30):
            pub.publish(msg or compressed_msg(rgb, stamp))
            if client.spin_until(lambda: any(convert.stamp_to_seconds(d.header.stamp) == stamp for d in dets), 0.5):
                return True
        return False

    assert send(11.0)
    corrupt = compressed_msg(rgb, 11.5)
    corrupt.data = bytes(corrupt.data)[: len(corrupt.data) // 3]
    pub.publish(corrupt)
    client.spin_for(0.3)
    assert send(12.0), "node stopped serving after a corrupt JPEG"
    assert "dropped a frame" in proc.output() and proc.alive()

    assert _transition(client, name, Transition.TRANSITION_DEACTIVATE)
    assert _state(client, name) == State.PRIMARY_STATE_INACTIVE
    assert "model released" in proc.output()
    assert _transition(client, name, Transition.TRANSITION_CLEANUP)
    assert _state(client, name) == State.PRIMARY_STATE_UNCONFIGURED
    # and back up again: configure + activate after a cleanup
    assert _transition(client, name, Transition.TRANSITION_CONFIGURE)
    assert _transition(client, name, Transition.TRANSITION_ACTIVATE)
    assert send(13.0)


def test_invalid_parameter_files_make_configure_fail_with_a_reason(
    client: Client, node_factory: Callable[..., NodeProcess]
) -> None:
    name = "perception_badparams_test"
    proc = node_factory("perception.ros.nodes.perception_node", name,
                        {**TINY_MODEL, "model.input_height": 100, "detection.score_threshold": 2.0})
    assert _state(client, name) == State.PRIMARY_STATE_UNCONFIGURED
    assert not _transition(client, name, Transition.TRANSITION_CONFIGURE)
    assert _state(client, name) == State.PRIMARY_STATE_UNCONFIGURED
    out = proc.output()
    assert "configure rejected" in out and "detection.score_threshold" in out
    assert proc.alive()
    # fixed at run time, the node configures
    ok, why = _set(client, name, "model.input_height", 128)
    assert ok, why
    assert not _transition(client, name, Transition.TRANSITION_CONFIGURE)  # score_threshold still refused
    assert _set(client, name, "detection.score_threshold", 0.5)[0]
    assert _transition(client, name, Transition.TRANSITION_CONFIGURE)
    assert _set(client, name, "use_sim_time", False)[0]  # rclpy's own parameters are not ours to refuse


def test_missing_checkpoint_is_rejected_on_configure(client: Client, node_factory: Callable[..., NodeProcess]) -> None:
    name = "perception_nockpt_test"
    proc = node_factory("perception.ros.nodes.perception_node", name, {"model.checkpoint": "/nonexistent/model"})
    assert not _transition(client, name, Transition.TRANSITION_CONFIGURE)
    assert "/nonexistent/model" in proc.output()

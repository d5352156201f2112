"""Parameter validation of the perception node (pure: no ROS graph needed)."""

from __future__ import annotations

from typing import Any

import pytest

from perception.core.classes import DETECTION_NAMES
from perception.ros.errors import RosError
from perception.ros.nodes.params import PERCEPTION_PARAMS, default_values, flatten_yaml_params, node_config


def test_defaults_are_valid_and_land_in_frozen_dataclasses() -> None:
    cfg = node_config({})
    assert cfg.model.input_size == (0, 0) and cfg.input.cameras == ("camera",)
    assert cfg.input.image_topic("front") == "front/image_raw"
    assert cfg.detection.classes == DETECTION_NAMES and cfg.detection.class_ids == (0, 1, 2, 3, 4)
    assert cfg.temporal.policy.max_gap_s == 0.5
    with pytest.raises(AttributeError):
        cfg.max_batch = 3  # type: ignore[misc]
    assert set(default_values()) == {p.name for p in PERCEPTION_PARAMS}
    assert all(p.description for p in PERCEPTION_PARAMS)


def test_values_are_normalised() -> None:
    cfg = node_config({"cameras": ["front", "rear/left"], "input.transport": "compressed",
                       "detection.score_threshold": 1, "detection.classes": ["car"], "detection.vehicle_nms_iou": 1})
    assert cfg.input.cameras == ("front", "rear/left") and cfg.detection.score_threshold == 1.0
    assert cfg.detection.vehicle_nms_iou == 1.0 and isinstance(cfg.detection.vehicle_nms_iou, float)
    assert cfg.input.image_topic("front") == "front/image_raw/compressed"
    assert cfg.detection.class_ids == (0,)


def test_shedding_parameters() -> None:
    default = node_config({}).shedding
    assert (dict(default.priority), dict(default.max_rate_hz), default.max_wait_s) == ({}, {}, 1.0)  # as before
    cfg = node_config({"cameras": ["front", "rear"], "shedding.priority": ["front=2", " rear = -1"],
                       "shedding.max_rate_hz": ["rear=5"], "shedding.max_wait_s": 0.5}).shedding
    assert cfg.priority == {"front": 2, "rear": -1} and cfg.max_rate_hz == {"rear": 5.0} and cfg.max_wait_s == 0.5
    assert cfg.priority_of("front") == 2



@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"model.backend": "caffe"}, "not one of: auto, tensorrt, onnxruntime, torch"),
        ({"model.device": "gpu0"}, "use cpu, cuda or cuda:N"),
        ({"model.input_height": 100}, "multiples of 32"),
        ({"model.precision": "fp16"}, "needs a CUDA device"),
        ({"detection.score_threshold": 1.5}, "above its maximum"),
        ({"detection.score_threshold": "high"}, "must be a double"),
        ({"detection.max_detections": 0}, "below its minimum"),
        ({"detection.vehicle_nms_iou": -0.1}, "below its minimum"),
        ({"detection.vehicle_nms_iou": float("nan")}, "finite"),
        ({"detection.classes": ["car", "unicorn"]}, "unknown classes \\['unicorn'\\]"),
        ({"cameras": []}, "is empty"),
        ({"cameras": ["front", "front"]}, "twice"),
        ({"cameras": ["/abs"]}, "not a valid relative ROS name"),
        ({"input.topic": "9lives"}, "not a valid relative ROS name"),
        ({"input.qos_reliability": "sometimes"}, "best_effort, reliable"),
        ({"temporal.max_gap_s": float("nan")}, "finite"),
        ({"autostart": "yes"}, "must be a bool"),
        ({"no.such": 1}, "unknown parameters"),
        ({"shedding.priority": ["front"]}, "must look like camera=value"),
        ({"shedding.priority": ["rear=1"]}, "names camera 'rear', which is not in 'cameras'"),
        ({"shedding.priority": ["camera=1", "camera=2"]}, "gives camera 'camera' twice"),
        ({"shedding.priority": ["camera=high"]}, "is not an integer"),
        ({"shedding.max_rate_hz": ["camera=0"]}, "must be in \\[0.01, 1000\\]"),
        ({"shedding.max_rate_hz": ["camera=nan"]}, "must be in"),
        ({"shedding.max_rate_hz": [5.0]}, "must be a string array"),
        ({"shedding.max_wait_s": 0.0}, "below its minimum"),
        ({"output.detections": False, "output.segmentation": False, "output.segmentation_color": False,
          "output.attention": False}, "enable at least one"),
    ],
)
def test_invalid_values_are_rejected_with_a_reason(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(RosError, match=reason):
        node_config(values)


def test_flatten_yaml() -> None:
    assert flatten_yaml_params({"a": {"b": 1, "c": {"d": [1]}}, "e": True}) == {"a.b": 1, "a.c.d": [1], "e": True}


def test_missing_weights_fail_unless_untrained_is_allowed() -> None:
    from perception.ros.errors import RosError
    from perception.ros.nodes.engine import model_source
    from perception.ros.nodes.params import ModelConfig

    with pytest.raises(RosError, match=r"model\.checkpoint is empty and no shipped checkpoint named .stan_m."):
        model_source(ModelConfig(name="stan_m"))
    path, label = model_source(ModelConfig(name="stan_m", allow_untrained=True))
    assert path is None and "UNTRAINED" in label

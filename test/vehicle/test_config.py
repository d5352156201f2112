"""The rig file: the example is valid; every problem is reported at once, naming the key and the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from perception.vehicle.config import load_rig, rig_from_dict
from perception.vehicle.errors import RigConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "vehicle.example.yaml"


def _example() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))


def test_the_example_rig_is_valid() -> None:
    rig = load_rig(EXAMPLE)
    assert rig.name == "test_car"
    assert [c.name for c in rig.cameras] == ["front", "rear"]
    assert rig.cameras[0].image_topic == "/front/image_raw" and rig.cameras[1].info_topic == "/rear/camera_info"
    assert rig.lidar.topic == "/lidar/points" and rig.frames.base == "base_link"
    assert rig.backend.name == "onnxruntime" and rig.service.watchdog_sec == 10.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        rig.name = "x"  # type: ignore[misc]


def test_every_problem_is_reported_with_its_key_and_fix() -> None:
    tree = _example()
    tree["cameras"][1].update(transport="compressed", encoding="rgb8", rate_hz=-3, frame_id="front_optical_frame")
    tree["model"].update(input_height=100, precision="fp16", bogus=1)
    tree["backend"]["device"] = "gpu"
    tree["service"].update(start_limit_interval_sec=5, cpu_affinity="0-1")
    tree["dds"]["profile"] = "vehicle_lan"
    with pytest.raises(RigConfigError) as err:
        rig_from_dict(tree, "rig.yaml")
    problems = err.value.problems
    expect = {
        "cameras[1].encoding": "transport: raw",  # the fix is named
        "cameras[1].rate_hz": "[0.1, 1000.0]",
        "cameras[*].transport": "same transport",
        "cameras[*].frame_id": "own frame",
        "model.input_height": "multiple of 32",
        "model.bogus": "unknown key",
        "model.precision": "tensorrt",
        "backend.device": "cuda:N",
        "service.start_limit_interval_sec": "larger than",
        "service.cpu_affinity": "[2, 3]",
        "dds.profile": "XML profile",
    }
    for key, fix in expect.items():
        hits = [p for p in problems if p.startswith(key + ":")]
        assert hits, f"no problem reported for {key}: {problems}"
        assert any(fix in p for p in hits), (key, hits)
    assert "rig.yaml" in str(err.value)


@pytest.mark.parametrize("tree, key", [
    ({"name": "car"}, "cameras:"),
    ({"name": "car", "cameras": [{"name": "front"}, {"name": "front"}]}, "cameras: the name 'front'"),
    ({"name": "car", "cameras": [{"name": "1front"}]}, "cameras[0].name:"),
    ({"name": "car", "cameras": [{"name": "f", "topic": "/f/image_raw"}]}, "cameras[0].topic:"),
    ({"name": "car", "cameras": [{"name": "f"}], "lidar": {"topic": "/points"}}, "lidar.frame_id:"),
    ({"name": "car", "cameras": [{"name": "f"}], "backend": {"name": "tensorrt"}}, "backend.name:"),
    ({"name": "car", "cameras": [{"name": "f"}], "service": {"nice": "high"}}, "service.nice:"),
])
def test_single_mistakes(tree: dict[str, Any], key: str) -> None:
    with pytest.raises(RigConfigError) as err:
        rig_from_dict(tree)
    assert any(p.startswith(key) for p in err.value.problems), err.value.problems


def test_unreadable_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(RigConfigError, match="cannot read"):
        load_rig(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(RigConfigError, match="not valid YAML"):
        load_rig(bad)


def test_the_recording_section_is_validated_key_by_key() -> None:
    tree = _example()
    tree["recording"] = {"enabled": True, "directory": "incidents", "before_s": 0, "after_s": "5", "budget_mb": 64,
                         "max_message_mb": 40, "quota_gb": 2, "topics": ["/front/image_raw", "front/detections"],
                         "trigger_on_error": 1, "memory_max_mb": 100, "nice": 40, "ring": 3}
    with pytest.raises(RigConfigError) as e:
        rig_from_dict(tree)
    text = str(e.value)
    for part in ("recording.directory: 'incidents' must be an absolute path", "recording.before_s: 0.0 is out of range",
                 "recording.after_s: must be float", "recording.max_message_mb: 40 is more than half the budget",
                 "recording.topics[1]: 'front/detections' is not an absolute ROS topic",
                 "recording.trigger_on_error: must be bool", "recording.nice: 40 is out of range",
                 "recording.ring: unknown key", "recording.memory_max_mb: 100 leaves no room over budget_mb"):
        assert part in text, (part, text)
    rig = load_rig(EXAMPLE)  # recording off, defaults: the rig's own topics, 20 s before, 10 s after
    assert not rig.recording.enabled and rig.recording.recorder.before_s == 20.0
    assert rig.recording.recorder.topics[:2] == ("/front/image_raw", "/front/detections")
    assert rig.recording.memory_limit_mb == 512 + 512 and rig.recording.directory == "/var/lib/perception/incidents"

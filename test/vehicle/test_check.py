"""The pre-flight verdicts that the live-graph test cannot provoke cheaply: clocks off, sensors out of sync,
a DDS profile that does not parse (pure: records in, rows out)."""

from __future__ import annotations

from pathlib import Path

from perception.vehicle.check import GraphObservation, SensorSample, check_dds, check_graph, table
from perception.vehicle.config import rig_from_dict

RIG = rig_from_dict({"name": "car", "cameras": [{"name": "front", "rate_hz": 10, "frame_id": "front_optical",
                                                 "camera_info": False}],
                     "lidar": {"topic": "/points", "frame_id": "lidar", "rate_hz": 10}})


def _samples(t0: float, age: float, frame: str, n: int = 21) -> list[SensorSample]:
    return [SensorSample(t0 + 0.1 * i, t0 + 0.1 * i - age, frame, "rgb8", 64, 48) for i in range(n)]


def _obs(cam_age: float, lidar_age: float) -> GraphObservation:
    return GraphObservation(2.0, images={"front": _samples(100.0, cam_age, "front_optical")},
                            lidar=_samples(100.0, lidar_age, "lidar"),
                            tf_parents={"front_optical": "front_link", "front_link": "base_link", "lidar": "base_link"})


def test_in_sync_and_on_time_passes() -> None:
    rows = check_graph(RIG, _obs(0.02, 0.03))
    assert all(r.ok for r in rows), table(rows)
    assert next(r for r in rows if r.check == "tf_static").detail == "base_link <- front_link <- front_optical"


def test_a_clock_off_and_sensors_out_of_sync_fail() -> None:
    rows = check_graph(RIG, _obs(2.0, 0.03))  # the camera stamps 2 s in the past
    failed = {(r.item, r.check): r.detail for r in rows if not r.ok}
    assert "+2000 ms" in failed[("camera front", "stamps")] and "PTP" in failed[("camera front", "stamps")]
    assert "camera front" in failed[("sensors", "sync")] and ("lidar", "stamps") not in failed


def test_the_dds_profile_must_parse(tmp_path: Path) -> None:
    good = Path(__file__).resolve().parents[2] / "config" / "fastdds_localhost.xml"
    assert check_dds(RIG, good)[0].ok
    broken = tmp_path / "p.xml"
    broken.write_text("<dds><profiles><participant>")
    assert not check_dds(RIG, broken)[0].ok
    other = tmp_path / "o.xml"
    other.write_text("<root/>")
    row = check_dds(RIG, other)[0]
    assert not row.ok and "not a Fast DDS profile" in row.detail

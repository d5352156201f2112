"""The installed service, started the way systemd starts it: ``perception vehicle install`` on a tiny checkpoint,
then the unit's ExecStart= command line run with its Environment= and a NOTIFY_SOCKET
(:mod:`perception.ros.tools.vehicle_boot`): READY=1, detections for every camera well within the issue's 10 s
from the process start with the warm engine cache, STOPPING=1 and exit 0 on SIGTERM within TimeoutStopSec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ros_testing import DOMAIN_ID, ROOT, Client, needs_model

from perception.ros.tools.vehicle_boot import measure_boot
from perception.vehicle.config import rig_from_dict
from perception.vehicle.install import install

needs_model()


def test_installed_unit_boots_to_detections(client: Client, tmp_path: Path, tiny_checkpoint: Path) -> None:
    rig = rig_from_dict({"name": "tiny_car", "cameras": [{"name": "vb_front"}, {"name": "vb_rear"}],
                         "model": {"checkpoint": str(tiny_checkpoint), "max_batch": 2},
                         "backend": {"name": "onnxruntime", "threads": 1},
                         "service": {"watchdog_sec": 4, "stop_timeout_sec": 15}})
    report = install(rig, tmp_path / "prefix", warm_runs=1, verify=False)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    t = measure_boot(Path(report.unit), DOMAIN_ID, timeout=60.0, size=(90, 160),
                     extra_env={"PYTHONPATH": pythonpath})
    assert t.first_detections_s < 10.0, t.log
    assert 0 < t.ready_s <= t.first_detections_s, t  # no detections before READY (warm-up first)
    assert "model loaded" in t.log and "warm-up inference answered" in t.log, t.log
    assert t.exit_code == 0 and t.stopping and t.stop_s < 15.0, t
    assert any("vb_front" in s and "vb_rear" in s and "Hz" in s for s in t.status), t.status  # per-camera rates

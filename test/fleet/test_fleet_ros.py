"""``--ros``: bags through real ROS graphs (perception replay + perception_node processes, loopback DDS), two
workers at once, each on its own private domain; the scores equal the offline path's on the same bags."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.fleet.config import FleetConfig
from perception.fleet.executors import Outcome, run_local
from perception.fleet.ros_mode import DOMAIN_IDS
from perception.fleet.run import make_tasks

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs")


def test_ros_mode_two_workers_private_domains_same_scores_as_offline(fleet_bags: list[Path], tmp_path: Path) -> None:
    ros = FleetConfig(checkpoint="stan_s_temporal", mode="ros", retries=0, keep_replays=str(tmp_path / "replays"))
    offline = FleetConfig(checkpoint="stan_s_temporal", retries=0)
    bags = fleet_bags[:2]
    got: dict[str, dict[str, Outcome]] = {}
    for cfg in (ros, offline):
        outs = run_local(make_tasks(bags, cfg.model_sha(), cfg), cfg, 2, lambda o: None)
        assert all(o.result is not None for o in outs), [o.error for o in outs]
        got[cfg.mode] = {Path(o.task.name).name: o for o in outs}
    by_pid: dict[int, int] = {}
    for name, o in got["ros"].items():
        res = o.result
        assert res is not None
        m = res["metrics"]
        assert m["coverage"]["missing"] == 0 and m["coverage"]["answered"] == 3
        assert m["domain_id"] in DOMAIN_IDS
        assert by_pid.setdefault(res["pid"], m["domain_id"]) == m["domain_id"]  # one domain per worker
        off = got["offline"][name].result
        assert off is not None
        for key in ("mAP50", "mIoU", "flicker"):
            assert m["summary"][key] == pytest.approx(off["metrics"]["summary"][key], abs=1e-6), key
    assert len(set(by_pid.values())) == len(by_pid)  # different workers, different domains
    # the recorded outputs were kept, one output bag per input bag (a replay of many bags)
    from perception.eval.bags import load_outputs

    for bag in bags:
        assert len(load_outputs(tmp_path / "replays" / bag.name).detections) == 3

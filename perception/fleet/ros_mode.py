"""``perception eval --bags --ros``: each bag through a real ROS graph, on a private ROS domain per worker.

The worker runs ``perception replay BAG --deterministic --out TMP --domain-id D`` (a perception_node process
and the player, loopback-only DDS: the project's localhost Fast DDS profile), then scores the recorded
outputs against the bag's ground truth with :func:`perception.eval.bags.evaluate_bags`, the code of
``perception eval --bag OUT --gt IN``. Each worker holds one domain id for its life (an flock on a file
per id, released by the OS when the worker dies), so concurrent workers never share a graph. The node is
started per bag (its model is loaded per bag): the ROS mode measures the real graph, the offline mode is
the fast path. With ``--keep-replays DIR`` the recorded output bags stay, ``DIR/<bag name>``: a replay of
many bags at once (each can be checked again with ``perception eval --bag DIR/<name> --gt <bag>``).
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from perception.fleet import FleetError
from perception.fleet.config import BagTask, FleetConfig

DOMAIN_IDS = range(101, 201)  # outside 1..100, where the single-graph tools derive theirs from a pid
REPLAY_TIMEOUT_S = 900.0

_domain: tuple[int, IO[str]] | None = None


def worker_domain() -> int:
    """This process's private ROS domain id, claimed once (flock) and held until the process exits."""
    global _domain
    if _domain is None:
        locks = Path(tempfile.gettempdir()) / "perception-fleet-domains"
        locks.mkdir(parents=True, exist_ok=True)
        for d in DOMAIN_IDS:
            f = open(locks / f"{d}.lock", "w")  # noqa: SIM115 - held open: the lock lives as long as the worker
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            _domain = (d, f)
            break
        else:
            raise FleetError(f"every ROS domain id in {DOMAIN_IDS.start}..{DOMAIN_IDS.stop - 1} is taken by another "
                             "fleet worker on this machine: run fewer --ros workers")
    return _domain[0]


def evaluate_bag_ros(task: BagTask, cfg: FleetConfig) -> dict[str, Any]:
    from perception.eval.bags import evaluate_bags

    path = cfg.checkpoint_path()
    if path is None:
        raise FleetError("--ros runs the perception node, which needs --checkpoint (a trained network)")
    with tempfile.TemporaryDirectory(prefix="perception_fleet_ros_") as tmp:
        out = Path(cfg.keep_replays) / task.name if cfg.keep_replays else Path(tmp) / "outputs"
        if out.exists():  # a previous try's (crashed) recording: replay records into a new bag
            import shutil

            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "perception.cli", "replay", task.path, "--out", str(out), "--deterministic",
                "--outputs", "detections,segmentation", "--checkpoint", str(path), "--backend", "torch",
                "--precision", "fp32", "--threads", str(cfg.threads), "--score-threshold", "0.05",
                "--domain-id", str(worker_domain())]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=REPLAY_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise FleetError(f"replay of {task.name} took over {REPLAY_TIMEOUT_S:.0f} s") from e
        if proc.returncode != 0:
            raise FleetError(f"replay of {task.name} failed (exit {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout)[-1500:]}")
        metrics, _ = evaluate_bags(out, task.path, cfg.score_thresh, samples=0)
    metrics["latency_ms"].pop("values", None)  # per-frame list: the percentiles are kept
    metrics.pop("bags", None)
    metrics["domain_id"] = worker_domain()
    return metrics

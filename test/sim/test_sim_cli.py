from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from perception.cli import build_parser, main
from perception.sim import cli as sim_cli


def test_cli_writes_the_dataset(tmp_path: Path) -> None:
    out = tmp_path / "drive"
    argv = ["sim", "--seed", "2", "--frames", "3", "--width", "96", "--height", "64", "--depth", "--lidar",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    for sub, ext in (("rgb", "png"), ("semantic", "png"), ("instance", "png"), ("depth", "npy"), ("lidar", "npz")):
        assert sorted(p.name for p in (out / sub).iterdir()) == [f"{i:06d}.{ext}" for i in range(3)], sub
    rgb = cv2.imread(str(out / "rgb" / "000001.png"), cv2.IMREAD_UNCHANGED)
    inst = cv2.imread(str(out / "instance" / "000001.png"), cv2.IMREAD_UNCHANGED)
    sem = cv2.imread(str(out / "semantic" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert rgb.shape == (64, 96, 3) and inst.dtype == np.uint16 and sem.dtype == np.uint8
    assert np.load(out / "depth" / "000000.npy").dtype == np.float32
    lines = (out / "gt.jsonl").read_text().splitlines()
    assert len(lines) == 3
    rec = json.loads(lines[1])
    assert rec["index"] == 1 and rec["sequence"] == 2 and not rec["scene_cut"]
    n = len(rec["track_ids"])
    for key in ("boxes", "class_ids", "visibility", "ignore", "amodal_boxes", "boxes3d"):
        assert len(rec[key]) == n, key
    assert set(rec["track_ids"]) == set(np.unique(inst).tolist()) - {0}
    cam = json.loads((out / "camera.json").read_text())
    assert (cam["width"], cam["height"]) == (96, 64) and cam["fx"] == cam["fy"] > 0
    assert cam["config"]["lidar"] is True


def test_config_file_and_bad_config(tmp_path: Path) -> None:
    cfg_file = tmp_path / "sim.yaml"
    cfg_file.write_text("sim:\n  num_lanes: 4\n  width: 64\n  height: 48\n")
    p = argparse.ArgumentParser()
    sim_cli.add_arguments(p)
    args = p.parse_args(["--config", str(cfg_file), "--height", "40", "--out", str(tmp_path / "o")])
    cfg = sim_cli.config_from_args(args)
    assert (cfg.num_lanes, cfg.width, cfg.height) == (4, 64, 40)
    cfg_file.write_text("sim:\n  lanes: 4\n")
    args = build_parser(["sim"]).parse_args(["sim", "--config", str(cfg_file), "--out", str(tmp_path / "o")])
    assert sim_cli.main(args) == 2

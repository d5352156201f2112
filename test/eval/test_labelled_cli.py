"""`perception eval --images DIR --labels FILE`: the labelled evaluation end to end through the CLI, on two
tiny images with a tiny untrained checkpoint (and the real reference detector where it is installed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.cli import main as cli


def _labelled_folder(path: Path) -> tuple[Path, Path]:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(path / f"{i}.png"), rng.integers(0, 255, (72, 96, 3), dtype=np.uint8))
    labels = {"images": [
        {"file": "0.png", "width": 96, "height": 72, "source": "noise",
         "objects": [{"class": "pedestrian", "box": [10, 10, 30, 60], "ignore": False},
                     {"class": "car", "box": [40, 40, 80, 60], "ignore": False}]},
        {"file": "1.png", "width": 96, "height": 72, "source": "noise", "objects": []}]}
    (path / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    return path, path / "labels.json"


def test_eval_labels_report_and_stills(tmp_path: Path, tiny_checkpoint: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = _labelled_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    rc = cli(["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
              "--no-reference", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # the node's defaults: attention-guided refinement on (refine.enabled: true, refine.max_regions 2)
    assert "| tiny+refine |" in captured.out and "pedestrian 1/0/0/0" in captured.out
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]) == ["tiny+refine"]
    r = report["results"]["tiny+refine"]
    assert r["info"]["refine"]["max_regions"] == 2 and r["info"]["refine"]["max_pixels"] == 0
    assert r["images"] == 2 and r["all"]["num_gt"] == 1 and r["small"]["all"]["num_gt"] == 1  # the 20 px car: small
    assert set(r["per_class"]) == {"car", "truck", "pedestrian", "cyclist", "traffic_sign"}
    assert r["info"]["score_thresh"] == 0.3 and r["info"]["input_size"] == [64, 128]
    assert r["latency_ms"]["frames"] == 2 and len(r["per_image"]) == 2
    assert report["object_counts"]["car"]["small"] == 1
    assert "| tiny+refine |" in (out / "table.md").read_text()
    still = cv2.imread(str(out / "stills" / "0.png"))
    assert still is not None and still.shape[1] == 2 * 96  # detections | attention


def test_eval_labels_refine_modes(tmp_path: Path, tiny_checkpoint: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`--refine` alone: a row without refinement and one with it; `--refine off`: one pass only; the crop budget
    follows --refine-max-regions, an out-of-range one is a usage error."""
    images, labels = _labelled_folder(tmp_path / "imgs")
    args = ["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
            "--no-reference", "--out", str(tmp_path / "out")]
    assert cli([*args, "--refine"]) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert list(results) == ["tiny", "tiny+refine"]
    ref = results["tiny+refine"]["info"]["refine"]
    assert ref["frames"] == 2 and ref["max_regions"] == 2 and ref["pixel_ratio"] > 0.0
    assert "refine" not in results["tiny"]["info"]
    assert cli([*args, "--refine", "off"]) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert list(results) == ["tiny"] and "refine" not in results["tiny"]["info"]
    assert cli([*args, "--refine", "on", "--refine-max-regions", "3"]) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert list(results) == ["tiny+refine"] and results["tiny+refine"]["info"]["refine"]["max_regions"] == 3
    assert cli([*args, "--refine-max-regions", "-1"]) == 2
    assert "refine.max_regions = -1 is out of range" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli([*args, "--refine", "maybe"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_eval_node_defaults_are_the_nodes() -> None:
    """The labelled evaluation runs the node's defaults: its detection settings and its refinement are the
    parameter table's, so the two cannot drift apart."""
    from perception.eval.labelled_run import NodeDefaults, node_refine
    from perception.ros.nodes.params import PARAMS_BY_NAME, PerceptionNodeConfig

    node = NodeDefaults()
    table = {k: PARAMS_BY_NAME[k].default for k in ("detection.score_threshold", "detection.nms_iou",
                                                       "detection.max_detections", "detection.vehicle_nms_iou")}
    assert table == {"detection.score_threshold": node.score_thresh, "detection.nms_iou": node.nms_iou,
                     "detection.max_detections": node.max_det, "detection.vehicle_nms_iou": node.vehicle_nms_iou}
    refine = PerceptionNodeConfig().refine
    assert node_refine() == (refine if refine.enabled else None)
    assert PARAMS_BY_NAME["refine.enabled"].default is refine.enabled
    assert PARAMS_BY_NAME["refine.max_regions"].default == refine.max_regions


def test_eval_labels_with_the_reference(tmp_path: Path, tiny_checkpoint: Path, reference_model: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = _labelled_folder(tmp_path / "imgs")
    rc = cli(["eval", "--images", str(images), "--labels", str(labels), "--reference-only",
              "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["results"]) == ["reference"]
    assert report["results"]["reference"]["info"]["input_size"] == [300, 300]


@pytest.mark.parametrize(("extra", "message"), [
    ([], "needs --checkpoint"),
    (["--reference-only", "--no-reference"], "exclude each other"),
    (["--reference-only", "--labels", "MISSING"], "does not exist"),
    (["--checkpoint", "TINY", "--no-reference", "--images", "EMPTY"], "cannot read labelled image"),
    (["--checkpoint", "TINY", "--no-reference", "--labels", "SLIVER"], "is 300x4 pixels; the network takes images"),
])
def test_eval_labels_errors(tmp_path: Path, tiny_checkpoint: Path, extra: list[str], message: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = _labelled_folder(tmp_path / "imgs")
    (tmp_path / "empty").mkdir()
    cv2.imwrite(str(images / "sliver.png"), np.zeros((4, 300, 3), np.uint8))  # under 8x8: once a traceback
    (images / "sliver.json").write_text(json.dumps({"images": [
        {"file": "sliver.png", "width": 300, "height": 4, "source": "test", "objects": []}]}), encoding="utf-8")
    subst = {"MISSING": str(tmp_path / "missing.json"), "TINY": str(tiny_checkpoint), "EMPTY": str(tmp_path / "empty"),
             "SLIVER": str(images / "sliver.json")}
    args = ["eval", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "out")]
    rc = cli(args + [subst.get(a, a) for a in extra])
    assert rc == 2 and message in capsys.readouterr().err


def test_eval_labels_on_a_larger_canvas(tmp_path: Path, tiny_checkpoint: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`--canvas 2`: each image on a grey canvas twice its size, labels moved with it (same objects scored)."""
    images, labels = _labelled_folder(tmp_path / "imgs")
    rc = cli(["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
              "--no-reference", "--canvas", "2", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "on 2x canvases" in captured.out
    r = json.loads((tmp_path / "out" / "report.json").read_text())["results"]["tiny+refine"]
    assert r["all"]["num_gt"] == 1 and r["small"]["all"]["num_gt"] == 1  # sizes in pixels do not change
    still = cv2.imread(str(tmp_path / "out" / "stills" / "0.png"))
    assert still is not None and still.shape[1] == 2 * 192
    rc = cli(["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
              "--no-reference", "--canvas", "0.5", "--out", str(tmp_path / "out")])
    assert rc == 2 and "canvas scale must be >= 1" in capsys.readouterr().err


def test_eval_labels_of_a_farther_scene(tmp_path: Path, tiny_checkpoint: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`--shrink 0.5`: images and labels at half size on the canvas, so the 50 px pedestrian is a 25 px (small)
    object and the 20 px car a tiny one (don't care); a shrink outside (0, 1] is a usage error."""
    images, labels = _labelled_folder(tmp_path / "imgs")
    args = ["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
            "--no-reference", "--canvas", "2", "--out", str(tmp_path / "out")]
    rc = cli([*args, "--shrink", "0.5"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "on 2x canvases, resized by 0.5" in captured.out
    r = json.loads((tmp_path / "out" / "report.json").read_text())["results"]["tiny+refine"]
    assert r["all"]["num_gt"] == 0 and r["small"]["all"]["num_gt"] == 1
    assert cli([*args, "--shrink", "0"]) == 2 and "shrink must be in (0, 1]" in capsys.readouterr().err
    # --camera HxW frames the images itself; with --canvas / --shrink it is a usage error
    cam = ["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
           "--no-reference", "--out", str(tmp_path / "cam"), "--camera", "36x192"]
    rc = cli(cam)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "framed by a 192 x 36 camera" in captured.out
    r = json.loads((tmp_path / "cam" / "report.json").read_text())["results"]["tiny+refine"]
    assert r["all"]["num_gt"] == 0 and r["small"]["all"]["num_gt"] == 1  # the 72 px image at 36 px: half size
    assert cli([*cam, "--canvas", "2"]) == 2 and "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli([*cam[:-1], "wide"])
    assert e.value.code == 2 and "256x448" in capsys.readouterr().err


def test_eval_labels_of_a_closer_scene(tmp_path: Path, tiny_checkpoint: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`--closer 2`: the scene twice as near, its centre framed at the image's size: the pedestrian at the left
    edge is mostly cut off (don't care), the car grows to a 28 px (small) object clipped by the frame; a factor
    outside [1, 8] and a zoom-out scale outside the node's range are usage errors."""
    images, labels = _labelled_folder(tmp_path / "imgs")
    args = ["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
            "--no-reference", "--out", str(tmp_path / "out")]
    rc = cli([*args, "--closer", "2", "--refine-zoom-out", "0"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "the scene 2x closer" in captured.out and "zoom-out on 0/2 images" in captured.out
    r = json.loads((tmp_path / "out" / "report.json").read_text())["results"]["tiny+refine"]
    assert r["all"]["num_gt"] == 0 and r["small"]["all"]["num_gt"] == 1
    assert cli([*args, "--closer", "0.5"]) == 2 and "closer factor must be in [1, 8]" in capsys.readouterr().err
    assert cli([*args, "--refine-zoom-out", "0.05"]) == 2 and "refine.zoom_out" in capsys.readouterr().err


def test_eval_labels_of_an_exported_model_alone(tmp_path: Path, model_onnx: Callable[[str], Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`--onnx FILE` without any --checkpoint (it once crashed on the missing checkpoint list)."""
    images, labels = _labelled_folder(tmp_path / "imgs")
    onnx = model_onnx("stan_tiny")
    rc = cli(["eval", "--images", str(images), "--labels", str(labels), "--onnx", str(onnx), "--no-reference",
              "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    name = f"{onnx.stem}+refine"  # the node's defaults: refinement on
    assert list(results) == [name] and results[name]["info"]["backend"].startswith("onnxruntime")
    # an exported model runs at its exported size: --input-size with it is a usage error, not a silent no-op
    rc = cli(["eval", "--images", str(images), "--labels", str(labels), "--onnx", str(onnx), "--no-reference",
              "--input-size", "96x128", "--out", str(tmp_path / "out")])
    assert rc == 2 and "runs at the input size it was exported at" in capsys.readouterr().err
    # --refine runs the exported model again with refinement (the node's refine.enabled: true on ONNX Runtime)
    rc = cli(["eval", "--images", str(images), "--labels", str(labels), "--onnx", str(onnx), "--no-reference",
              "--refine", "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert list(results) == [onnx.stem, f"{onnx.stem}+refine"] and "refine" in results[f"{onnx.stem}+refine"]["info"]


def test_eval_labels_at_another_input_size(tmp_path: Path, tiny_checkpoint: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`--input-size HxW`: the checkpoint at the node's model.input_height / input_width; not multiples of 32 is a
    usage error before anything runs."""
    images, labels = _labelled_folder(tmp_path / "imgs")
    args = ["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
            "--no-reference", "--out", str(tmp_path / "out")]
    assert cli([*args, "--input-size", "96x160"]) == 0, capsys.readouterr().err
    r = json.loads((tmp_path / "out" / "report.json").read_text())["results"]["tiny+refine"]
    assert r["info"]["input_size"] == [96, 160] and "160x96 input" in r["detector"]
    with pytest.raises(SystemExit) as e:
        cli([*args, "--input-size", "100x160"])
    assert e.value.code == 2 and "multiples of 32" in capsys.readouterr().err

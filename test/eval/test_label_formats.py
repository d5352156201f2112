"""Public datasets' labels (COCO JSON, KITTI label_2) read as the project's label document: the class mapping,
don't-care rules, clipping, hostile files -- and through the CLI, the same labels in three formats score alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.cli import main as cli
from perception.core import classes
from perception.eval import EvalError
from perception.eval.label_formats import coco_document, kitti_document
from perception.eval.labelled import ANY_CLASS, load_label_source

CAR, TRUCK, PED, CYC, SIGN = (classes.detection_id(n)
                              for n in ("car", "truck", "pedestrian", "cyclist", "traffic_sign"))


def _coco(images: list[dict], annotations: list[dict]) -> dict:
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"},
            {"id": 6, "name": "bus"}, {"id": 7, "name": "train"}, {"id": 8, "name": "truck"},
            {"id": 13, "name": "stop sign"}, {"id": 18, "name": "dog"}]
    return {"images": images, "annotations": annotations, "categories": cats}


def _ann(image_id: int, cat: int, bbox: list[float], crowd: int = 0) -> dict:
    return {"id": 0, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": crowd}


def test_coco_classes_dont_care_and_clipping() -> None:
    doc = _coco([{"id": 5, "file_name": "a.jpg", "width": 200, "height": 100},
                 {"id": 6, "file_name": "empty.jpg", "width": 64, "height": 48}],
                [_ann(5, 1, [10, 10, 20, 50]), _ann(5, 3, [150, 20, 80, 40]),  # a car running off the right edge
                 _ann(5, 6, [0, 0, 30, 40]), _ann(5, 8, [0, 50, 30, 40]), _ann(5, 13, [60, 5, 10, 10]),
                 _ann(5, 2, [40, 40, 20, 30]), _ann(5, 7, [90, 0, 40, 40]), _ann(5, 1, [100, 60, 50, 30], crowd=1),
                 _ann(5, 18, [0, 0, 10, 10]), _ann(5, 3, [300, 10, 20, 20])])  # a dog; a car wholly outside
    out, skipped = coco_document(doc)
    assert skipped == {"dog": 1, "(empty after clipping)": 1}
    a, empty = out["images"]
    assert empty == {"file": "empty.jpg", "width": 64, "height": 48, "source": "COCO labels", "objects": []}
    got = [(o["class"], o["box"], o["ignore"]) for o in a["objects"]]
    assert got == [("pedestrian", [10, 10, 30, 60], False), ("car", [150, 20, 200, 60], False),
                   ("truck", [0, 0, 30, 40], False), ("truck", [0, 50, 30, 90], False),
                   ("traffic_sign", [60, 5, 70, 15], False), ("cyclist", [40, 40, 60, 70], True),
                   ("any", [90, 0, 130, 40], True), ("pedestrian", [100, 60, 150, 90], True)]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("categories"), "needs the lists"),
    (lambda d: d["annotations"].append(_ann(99, 1, [0, 0, 5, 5])), "image_id 99 is not in 'images'"),
    (lambda d: d["annotations"].append(_ann(5, 42, [0, 0, 5, 5])), "category_id 42"),
    (lambda d: d["annotations"].append(_ann(5, 1, [0, 0, 5])), "'bbox' must be"),
    (lambda d: d["annotations"].append(_ann(5, 1, [0, 0, "5", 5])), "finite number"),
    (lambda d: d["annotations"].append(_ann(5, 1, [0, 0, float("nan"), 5])), "finite number"),
    (lambda d: d["annotations"].append("box"), "expected an object"),
    (lambda d: d["images"].append(dict(d["images"][0])), "listed twice"),
    (lambda d: d["images"][0].pop("width"), "integer 'width'"),
    (lambda d: d["categories"].append({"id": 50}), "needs an 'id' and a 'name'"),
    (lambda d: d["annotations"].append(_ann([5], 1, [0, 0, 5, 5])), "an id must be"),  # unhashable ids
    (lambda d: d["categories"].append({"id": {"a": 1}, "name": "x"}), "an id must be"),
    (lambda d: d["images"][0].update(width=float("inf")), "integer 'width'"),
])
def test_coco_hostile_documents(mutate: Callable[[dict], object], message: str) -> None:
    doc = _coco([{"id": 5, "file_name": "a.jpg", "width": 200, "height": 100}], [_ann(5, 1, [10, 10, 20, 50])])
    mutate(doc)
    with pytest.raises(EvalError, match=message):
        coco_document(doc)


def _kitti(root: Path) -> tuple[Path, Path]:
    labels, images = root / "label_2", root / "image_2"
    labels.mkdir(parents=True)
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "000000.png"), np.zeros((100, 300, 3), np.uint8))
    cv2.imwrite(str(images / "000001.jpg"), np.zeros((60, 80, 3), np.uint8))
    (labels / "000000.txt").write_text("\n".join([
        "Car 0.00 0 -1.58 10.5 20.0 60.0 70.0 1.5 1.6 3.9 -3.0 1.6 12.0 -1.6",
        "Van 0.00 1 -1.58 70 20 110 70 2.0 1.9 4.5 1.0 1.7 20.0 -1.6",
        "Truck 0.00 0 0 120 0 180 80 3 2.5 8 5 1.7 30 0",
        "Pedestrian 0.00 0 0 190 20 210 90 1.7 0.6 0.8 2 1.7 8 0",
        "Person_sitting 0.00 0 0 215 20 230 60 1.2 0.6 0.8 2 1.7 8 0",
        "Cyclist 0.60 0 0 280 20 320 80 1.7 0.6 1.8 6 1.7 8 0",  # truncated > 0.5, box clipped at 300
        "Pedestrian 0.00 2 0 235 20 245 60 1.7 0.6 0.8 2 1.7 8 0",  # largely occluded
        "Tram 0.00 0 0 0 0 5 5 3 3 15 0 1.7 40 0",
        "DontCare -1 -1 -10 250 10 270 30 -1 -1 -1 -1000 -1000 -1000 -10",
        "Animal 0.00 0 0 0 0 5 5 1 1 1 0 0 5 0",
        ""]), encoding="utf-8")
    (labels / "000001.txt").write_text("", encoding="utf-8")  # an image without objects
    return labels, images


def test_kitti_classes_truncation_occlusion_and_sizes(tmp_path: Path) -> None:
    labels, images = _kitti(tmp_path)
    doc, skipped = kitti_document(labels, images)
    assert skipped == {"Animal": 1}
    a, b = doc["images"]
    assert (a["file"], a["width"], a["height"]) == ("000000.png", 300, 100)
    assert (b["file"], b["width"], b["height"], b["objects"]) == ("000001.jpg", 80, 60, [])
    got = [(o["class"], o["box"], o["ignore"]) for o in a["objects"]]
    assert got == [("car", [10.5, 20.0, 60.0, 70.0], False), ("car", [70, 20, 110, 70], False),
                   ("truck", [120, 0, 180, 80], False), ("pedestrian", [190, 20, 210, 90], False),
                   ("pedestrian", [215, 20, 230, 60], True), ("cyclist", [280, 20, 300, 80], True),
                   ("pedestrian", [235, 20, 245, 60], True), ("any", [0, 0, 5, 5], True),
                   ("any", [250, 10, 270, 30], True)]
    ims, fmt, _ = load_label_source(labels, images)
    assert fmt == "kitti" and ims[0].class_ids.tolist() == [CAR, CAR, TRUCK, PED, PED, CYC, PED, ANY_CLASS,
                                                            ANY_CLASS]


@pytest.mark.parametrize("line, message", [
    ("Car 0 0", "at least 8 fields"), ("Car zero 0 0 1 1 5 5", "not a number"),
    ("Car 0 0 0 nan 1 5 5", "not a finite number"), ("Car 0 0 0 1 1 inf 5", "not a finite number"),
])
def test_kitti_hostile_lines(tmp_path: Path, line: str, message: str) -> None:
    labels, images = _kitti(tmp_path)
    (labels / "000001.txt").write_text(line + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match=message):
        kitti_document(labels, images)


def test_kitti_missing_or_unreadable_images(tmp_path: Path) -> None:
    labels, images = _kitti(tmp_path)
    with pytest.raises(EvalError, match="no KITTI label files"):
        kitti_document(images, images)
    (labels / "000002.txt").write_text("Car 0 0 0 1 1 5 5\n", encoding="utf-8")
    with pytest.raises(EvalError, match="no image 000002"):
        kitti_document(labels, images)
    (images / "000002.png").write_bytes(b"not a png")
    with pytest.raises(EvalError, match="not a readable image"):
        kitti_document(labels, images)


def test_the_same_labels_in_three_formats_score_alike(tmp_path: Path, tiny_checkpoint: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """One folder of two images labelled as project JSON, COCO and KITTI: `perception eval --labels` gives the
    same figures for each (and says what the COCO file had that we have no class for)."""
    rng = np.random.default_rng(1)
    images = tmp_path / "image_2"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"00000{i}.png"), rng.integers(0, 255, (72, 96, 3), dtype=np.uint8))
    ours = {"images": [
        {"file": "000000.png", "width": 96, "height": 72, "objects": [
            {"class": "pedestrian", "box": [10, 10, 30, 60], "ignore": False},
            {"class": "car", "box": [40, 20, 90, 60], "ignore": False},
            {"class": "cyclist", "box": [60, 0, 90, 15], "ignore": True}]},
        {"file": "000001.png", "width": 96, "height": 72, "objects": []}]}
    (tmp_path / "ours.json").write_text(json.dumps(ours), encoding="utf-8")
    coco = _coco([{"id": 0, "file_name": "000000.png", "width": 96, "height": 72},
                  {"id": 1, "file_name": "000001.png", "width": 96, "height": 72}],
                 [_ann(0, 1, [10, 10, 20, 50]), _ann(0, 3, [40, 20, 50, 40]), _ann(0, 2, [60, 0, 30, 15]),
                  _ann(1, 18, [0, 0, 20, 20])])
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    kitti = tmp_path / "label_2"
    kitti.mkdir()
    (kitti / "000000.txt").write_text("Pedestrian 0 0 0 10 10 30 60 0 0 0 0 0 0 0\n"
                                      "Car 0 0 0 40 20 90 60 0 0 0 0 0 0 0\n"
                                      "Cyclist 0 3 0 60 0 90 15 0 0 0 0 0 0 0\n", encoding="utf-8")
    (kitti / "000001.txt").write_text("", encoding="utf-8")
    results = {}
    for name, labels in [("ours", tmp_path / "ours.json"), ("coco", tmp_path / "coco.json"), ("kitti", kitti)]:
        out = tmp_path / f"out_{name}"
        rc = cli(["eval", "--images", str(images), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
                  "--no-reference", "--score-thresh", "0.05", "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 0, err
        report = json.loads((out / "report.json").read_text())
        assert report["label_format"] == {"ours": "perception"}.get(name, name)
        assert ("dog 1" in err) == (name == "coco")
        r = report["results"]["tiny+refine"]
        results[name] = (r["all"], r["small"]["all"], r["fp_per_image"], report["object_counts"])
    assert results["ours"] == results["coco"] == results["kitti"]
    assert results["ours"][3]["cyclist"]["ignore"] == 1 and results["ours"][0]["num_gt"] == 2

"""Public datasets' labels (COCO JSON, KITTI label_2, BDD100K JSON, Cityscapes gtFine) read as the project's label
document: the class mapping, don't-care rules, clipping, hostile files -- and through the CLI, the same labels in
every format score alike."""

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
from perception.eval.label_formats import bdd_document, cityscapes_document, coco_document, kitti_document
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


def _bdd_label(category: str, box: list[float] | None, **attributes: object) -> dict:
    lab: dict = {"category": category, "attributes": attributes}
    if box is not None:
        lab["box2d"] = dict(zip(("x1", "y1", "x2", "y2"), box))
    return lab


def test_bdd100k_classes_crowds_lanes_and_clipping(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((100, 300, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.jpg"), np.zeros((60, 80, 3), np.uint8))
    doc = [{"name": "a.jpg", "labels": [
        _bdd_label("car", [10, 20, 60, 70], occluded=True), _bdd_label("bus", [70, 0, 130, 80]),
        _bdd_label("truck", [130, 0, 170, 80]), _bdd_label("pedestrian", [190, 20, 210, 90]),
        _bdd_label("pedestrian", [215, 20, 240, 60], crowd=True), _bdd_label("rider", [245, 20, 260, 60]),
        _bdd_label("bicycle", [245, 40, 262, 70]), _bdd_label("traffic sign", [280, 10, 320, 30]),
        _bdd_label("traffic light", [0, 0, 5, 12]), _bdd_label("lane/single white", None),
        _bdd_label("drivable area", None), _bdd_label("animal", [0, 50, 9, 60])]},
        {"name": "b.jpg", "labels": None}]
    out, skipped = bdd_document(doc, tmp_path)
    assert skipped == {"animal": 1}
    a, b = out["images"]
    assert (a["width"], a["height"], b["file"], b["width"], b["height"], b["objects"]) == (300, 100, "b.jpg", 80, 60,
                                                                                          [])
    got = [(o["class"], o["box"], o["ignore"]) for o in a["objects"]]
    assert got == [("car", [10, 20, 60, 70], False), ("truck", [70, 0, 130, 80], False),
                   ("truck", [130, 0, 170, 80], False), ("pedestrian", [190, 20, 210, 90], False),
                   ("pedestrian", [215, 20, 240, 60], True), ("any", [245, 20, 260, 60], True),
                   ("cyclist", [245, 40, 262, 70], True), ("traffic_sign", [280, 10, 300, 30], False),
                   ("any", [0, 0, 5, 12], True)]
    path = tmp_path / "det_val.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    ims, fmt, _ = load_label_source(path, tmp_path)
    assert fmt == "bdd100k" and ims[0].class_ids.tolist()[:4] == [CAR, TRUCK, TRUCK, PED]
    with pytest.raises(EvalError, match="images directory"):
        load_label_source(path)


@pytest.mark.parametrize("doc, message", [
    ([{"labels": []}], "needs a 'name'"),
    ([{"name": "a.jpg"}, {"name": "a.jpg"}], "listed twice"),
    ([{"name": "a.jpg", "labels": {"car": 1}}], "must be a list"),
    ([{"name": "a.jpg", "labels": [{"category": "car", "box2d": [1, 2, 3, 4]}]}], "box2d"),
    ([{"name": "a.jpg", "labels": [{"category": "car", "box2d": {"x1": 1, "y1": "2", "x2": 3, "y2": 4}}]}],
     "finite number"),
    ([{"name": "a.jpg", "labels": [{"category": "car", "box2d": {"x1": 1, "y1": 2, "x2": float("nan"), "y2": 4}}]}],
     "finite number"),
    ([{"name": "missing.jpg"}], "not a readable image"),
])
def test_bdd100k_hostile_documents(tmp_path: Path, doc: list, message: str) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(EvalError, match=message):
        bdd_document(doc, tmp_path)


def _cityscapes(root: Path, objects: list[dict], size: tuple[int, int] = (300, 100)) -> tuple[Path, Path]:
    labels, images = root / "gtFine" / "val" / "aachen", root / "leftImg8bit" / "val" / "aachen"
    labels.mkdir(parents=True)
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "aachen_000000_000019_leftImg8bit.png"), np.zeros((size[1], size[0], 3), np.uint8))
    doc = {"imgWidth": size[0], "imgHeight": size[1], "objects": objects}
    (labels / "aachen_000000_000019_gtFine_polygons.json").write_text(json.dumps(doc), encoding="utf-8")
    return root / "gtFine", root / "leftImg8bit" / "val"


def test_cityscapes_polygons_groups_and_stuff(tmp_path: Path) -> None:
    def obj(label: str, poly: list[list[float]], **kw: object) -> dict:
        return {"label": label, "polygon": poly, **kw}

    labels, images = _cityscapes(tmp_path, [
        obj("road", [[0, 50], [300, 50], [300, 100], [0, 100]]), obj("car", [[10, 20], [60, 25], [40, 70]]),
        obj("bus", [[70, 0], [130, 0], [130, 80]]), obj("person", [[190, 20], [210, 90]]),
        obj("persongroup", [[215, 20], [240, 60]]), obj("rider", [[245, 20], [260, 60]]),
        obj("bicycle", [[245, 40], [262, 70]]), obj("traffic sign", [[280, 10], [320, 30]]),
        obj("car", [[0, 0], [5, 5]], deleted=1), obj("license plate", [[20, 60], [30, 64]]),
        obj("ego vehicle", [[0, 90], [300, 100]])])
    doc, skipped = cityscapes_document(labels, images)
    assert skipped == {}
    (a,) = doc["images"]
    assert (a["file"], a["width"], a["height"]) == ("aachen/aachen_000000_000019_leftImg8bit.png", 300, 100)
    got = [(o["class"], o["box"], o["ignore"]) for o in a["objects"]]
    assert got == [("car", [10, 20, 60, 70], False), ("truck", [70, 0, 130, 80], False),
                   ("pedestrian", [190, 20, 210, 90], False), ("pedestrian", [215, 20, 240, 60], True),
                   ("any", [245, 20, 260, 60], True), ("cyclist", [245, 40, 262, 70], True),
                   ("traffic_sign", [280, 10, 300, 30], False)]
    ims, fmt, _ = load_label_source(labels, images)
    assert fmt == "cityscapes" and ims[0].class_ids.tolist()[:3] == [CAR, TRUCK, PED]


@pytest.mark.parametrize("objects, message", [
    ([{"polygon": [[0, 0], [1, 1]]}], "needs a 'label'"),
    ([{"label": "car", "polygon": [[0, 0, 1]]}], "list of \\[x, y\\] points"),
    ([{"label": "car", "polygon": []}], "list of \\[x, y\\] points"),
    ([{"label": "car", "polygon": [[0, "a"], [1, 1]]}], "finite number"),
])
def test_cityscapes_hostile_files(tmp_path: Path, objects: list, message: str) -> None:
    labels, images = _cityscapes(tmp_path, objects)
    with pytest.raises(EvalError, match=message):
        cityscapes_document(labels, images)


def test_cityscapes_missing_images_and_broken_files(tmp_path: Path) -> None:
    labels, images = _cityscapes(tmp_path, [])
    with pytest.raises(EvalError, match="no image aachen/"):
        cityscapes_document(labels, tmp_path)
    with pytest.raises(EvalError, match="no Cityscapes label files"):
        cityscapes_document(images, images)
    (labels / "val" / "aachen" / "aachen_000000_000019_gtFine_polygons.json").write_text("{", encoding="utf-8")
    with pytest.raises(EvalError, match="not valid JSON"):
        cityscapes_document(labels, images)


def test_the_same_labels_in_every_format_score_alike(tmp_path: Path, tiny_checkpoint: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Two images labelled as project JSON, COCO, KITTI, BDD100K and Cityscapes: `perception eval --labels` gives
    the same figures for each (and says what the COCO file had that we have no class for)."""
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
    bdd = [{"name": "000000.png", "labels": [_bdd_label("pedestrian", [10, 10, 30, 60]),
                                             _bdd_label("car", [40, 20, 90, 60]),
                                             _bdd_label("bicycle", [60, 0, 90, 15]),
                                             _bdd_label("drivable area", None)]},
           {"name": "000001.png", "labels": []}]
    (tmp_path / "bdd.json").write_text(json.dumps(bdd), encoding="utf-8")
    city_labels, city_images = tmp_path / "gtFine" / "val" / "x", tmp_path / "leftImg8bit" / "x"
    city_labels.mkdir(parents=True)
    city_images.mkdir(parents=True)
    for i, objects in enumerate([[{"label": "person", "polygon": [[10, 10], [30, 60]]},
                                  {"label": "car", "polygon": [[40, 20], [90, 60]]},
                                  {"label": "bicycle", "polygon": [[60, 0], [90, 15]]},
                                  {"label": "road", "polygon": [[0, 60], [96, 72]]}], []]):
        (city_images / f"x_{i}_leftImg8bit.png").write_bytes((images / f"00000{i}.png").read_bytes())
        (city_labels / f"x_{i}_gtFine_polygons.json").write_text(
            json.dumps({"imgWidth": 96, "imgHeight": 72, "objects": objects}), encoding="utf-8")
    results = {}
    for name, labels, folder in [("ours", tmp_path / "ours.json", images), ("coco", tmp_path / "coco.json", images),
                                 ("kitti", kitti, images), ("bdd100k", tmp_path / "bdd.json", images),
                                 ("cityscapes", tmp_path / "gtFine", tmp_path / "leftImg8bit")]:
        out = tmp_path / f"out_{name}"
        rc = cli(["eval", "--images", str(folder), "--labels", str(labels), "--checkpoint", str(tiny_checkpoint),
                  "--no-reference", "--score-thresh", "0.05", "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 0, err
        report = json.loads((out / "report.json").read_text())
        assert report["label_format"] == {"ours": "perception"}.get(name, name)
        assert ("dog 1" in err) == (name == "coco")
        r = report["results"]["tiny+refine"]
        results[name] = (r["all"], r["small"]["all"], r["fp_per_image"], report["object_counts"])
    assert results["ours"] == results["coco"] == results["kitti"] == results["bdd100k"] == results["cityscapes"]
    assert results["ours"][3]["cyclist"]["ignore"] == 1 and results["ours"][0]["num_gt"] == 2

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from perception.core import classes
from perception.train.datasets import CityscapesSegDataset, CocoDetectionDataset, DatasetError, collate


def _write_rgb(path: Path, h: int, w: int, value: int = 200) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    assert cv2.imwrite(str(path), img)


def _coco(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    _write_rgb(images / "a.png", 50, 100)
    _write_rgb(images / "b.png", 40, 40)
    ann = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}, {"id": 9, "name": "boat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 5, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 0, 10, 30], "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"id": 4, "image_id": 2, "category_id": 9, "bbox": [0, 0, 5, 5]},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    return images, path


def test_coco_dataset_letterboxes_and_maps_classes(tmp_path: Path) -> None:
    images, ann = _coco(tmp_path)
    ds = CocoDetectionDataset(images, ann, input_size=(64, 64))
    assert len(ds) == 2 and ds.skipped == {"boat": 2}
    s = ds[0]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert float(s["image"][0, 32, 32]) == pytest.approx(200 / 255)
    assert float(s["image"][0, 0, 0]) == pytest.approx(114 / 255)  # letterbox padding
    # 100x50 -> scale 0.64, new 64x32, pad_y 16
    torch.testing.assert_close(s["boxes"], torch.tensor([[6.4, 19.2, 19.2, 25.6], [32.0, 16.0, 38.4, 35.2]]))
    assert s["class_ids"].tolist() == [classes.detection_id("car"), classes.detection_id("pedestrian")]
    assert s["ignore"].tolist() == [False, True]
    assert (s["seg"] == classes.IGNORE_INDEX).all() and s["has_det"] and not s["has_seg"]
    assert len(ds[1]["boxes"]) == 0
    assert ds.letterbox_map(0).pad_y == 16


def test_coco_custom_map_and_errors(tmp_path: Path) -> None:
    images, ann = _coco(tmp_path)
    ds = CocoDetectionDataset(images, ann, input_size=(32, 64), class_map={"boat": "truck"})
    assert ds.skipped == {"car": 1, "person": 1}
    assert ds[1]["class_ids"].tolist() == [classes.detection_id("truck")]
    with pytest.raises(DatasetError, match="not found"):
        CocoDetectionDataset(images, tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DatasetError, match="not valid JSON"):
        CocoDetectionDataset(images, bad)
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="missing COCO key"):
        CocoDetectionDataset(images, bad)
    with pytest.raises(DatasetError, match="not a detection class"):
        CocoDetectionDataset(images, ann, class_map={"car": "plane"})
    (images / "b.png").unlink()
    with pytest.raises(DatasetError, match="missing"):
        CocoDetectionDataset(images, ann)


def test_cityscapes_dataset_maps_ids_and_matches_names(tmp_path: Path) -> None:
    img_dir, lab_dir = tmp_path / "leftImg8bit" / "city", tmp_path / "gtFine" / "city"
    _write_rgb(img_dir / "x_000001_leftImg8bit.png", 20, 40)
    _write_rgb(img_dir / "plain.png", 20, 40)
    _write_rgb(img_dir / "orphan.png", 20, 40)
    lab_dir.mkdir(parents=True)
    label = np.zeros((20, 40), np.uint8)
    label[:10] = 23  # sky
    label[10:, :20] = 26  # car
    label[10:, 20:] = 4  # unmapped -> ignore
    cv2.imwrite(str(lab_dir / "x_000001_gtFine_labelIds.png"), label)
    cv2.imwrite(str(lab_dir / "plain.png"), label)
    ds = CityscapesSegDataset(tmp_path / "leftImg8bit", tmp_path / "gtFine", input_size=(20, 40))
    assert len(ds) == 2 and [p.name for p in ds.unmatched] == ["orphan.png"]
    s = ds[0]
    seg = s["seg"].numpy()
    assert (seg[:10] == classes.semantic_id("sky")).all()
    assert (seg[10:, :20] == classes.semantic_id("car")).all()
    assert (seg[10:, 20:] == classes.IGNORE_INDEX).all()
    assert s["has_seg"] and not s["has_det"] and s["boxes"].shape == (0, 4)
    # letterboxed to a taller input: padding is ignored
    tall = CityscapesSegDataset(tmp_path / "leftImg8bit", tmp_path / "gtFine", input_size=(40, 40))[0]["seg"]
    assert (tall[:10] == classes.IGNORE_INDEX).all() and (tall[10:20] == classes.semantic_id("sky")).all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image"):
        CityscapesSegDataset(tmp_path / "leftImg8bit", tmp_path / "empty", input_size=(20, 40))
    with pytest.raises(DatasetError, match="not found"):
        CityscapesSegDataset(tmp_path / "leftImg8bit", tmp_path / "missing", input_size=(20, 40))


def test_cityscapes_rejects_colour_labels(tmp_path: Path) -> None:
    _write_rgb(tmp_path / "img" / "a.png", 8, 8)
    _write_rgb(tmp_path / "lab" / "a.png", 8, 8)
    ds = CityscapesSegDataset(tmp_path / "img", tmp_path / "lab", input_size=(8, 8))
    with pytest.raises(DatasetError, match="single-channel"):
        ds[0]


def test_collate_mixed_batch(tmp_path: Path) -> None:
    images, ann = _coco(tmp_path)
    det = CocoDetectionDataset(images, ann, input_size=(20, 40))
    _write_rgb(tmp_path / "seg_img" / "a.png", 20, 40)
    (tmp_path / "seg_lab").mkdir()
    cv2.imwrite(str(tmp_path / "seg_lab" / "a.png"), np.full((20, 40), 7, np.uint8))
    seg = CityscapesSegDataset(tmp_path / "seg_img", tmp_path / "seg_lab", input_size=(20, 40))
    batch = collate([det[0], det[1], seg[0]])
    assert batch["image"].shape == (3, 3, 20, 40) and batch["seg"].shape == (3, 20, 40)
    assert [len(b) for b in batch["boxes"]] == [2, 0, 0]
    assert batch["has_det"].tolist() == [True, True, False]
    assert batch["has_seg"].tolist() == [False, False, True]
    assert (batch["seg"][2] == classes.semantic_id("road")).all()
    with pytest.raises(DatasetError, match="different sizes"):
        collate([det[0], CocoDetectionDataset(images, ann, input_size=(16, 16))[0]])

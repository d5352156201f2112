"""Labelled real-image metrics (perception.eval.labelled), worked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perception.core import classes
from perception.core.types import Detections
from perception.eval import EvalError
from perception.eval.labelled import (
    LabelledImage,
    attention_concentration,
    evaluate,
    load_labels,
    match,
    object_counts,
    parse_labels,
    table,
)

CAR, PED, SIGN = (classes.detection_id(n) for n in ("car", "pedestrian", "traffic_sign"))
REPO_LABELS = Path(__file__).resolve().parents[1] / "data" / "real_val" / "labels.json"


def _dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    a = np.asarray(rows, np.float64).reshape(-1, 6)
    return Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64))


def _image(*objs: tuple[float, float, float, float, int, bool]) -> LabelledImage:
    a = np.asarray([o[:4] for o in objs], np.float32).reshape(-1, 4)
    return LabelledImage("x.png", 200, 100, a, np.asarray([o[4] for o in objs], np.int64),
                         np.asarray([o[5] for o in objs], bool))


def test_match_tp_fp_duplicate_and_dont_care() -> None:
    gt = np.array([[0, 0, 10, 40], [50, 0, 60, 40]], np.float32)  # scored, don't care
    dets = np.array([[0, 0, 10, 40],     # 0.9: TP on the scored box
                     [1, 0, 10, 40],     # 0.8: the scored box is taken -> a duplicate: FP
                     [50, 0, 60, 39],    # 0.7: on the don't-care box: neither
                     [100, 0, 110, 40]],  # 0.6: on nothing: FP
                    np.float32)
    c = match(gt, np.array([True, False]), dets, np.array([0.9, 0.8, 0.7, 0.6]))
    assert (c.tp, c.fp, c.dont_care, c.num_gt) == (1, 2, 1, 1)
    assert c.recall == 1.0 and c.precision == pytest.approx(1 / 3)


def test_match_takes_detections_best_score_first() -> None:
    gt = np.array([[0, 0, 10, 40]], np.float32)
    # the lower-scoring detection overlaps more, but the better score claims the object
    c = match(gt, np.array([True]), np.array([[0, 0, 10, 40], [0, 0, 10, 30]], np.float32), np.array([0.4, 0.9]))
    assert (c.tp, c.fp) == (1, 1)
    # IoU 0.5 exactly is a match; just below is not
    half = np.array([[0, 0, 10, 20]], np.float32)  # IoU with [0, 0, 10, 40] = 0.5
    assert match(gt, np.array([True]), half, np.array([0.9])).tp == 1
    assert match(gt, np.array([True]), half - [0, 0, 0, 0.5], np.array([0.9])).tp == 0


def test_evaluate_bands_classes_and_fp_per_image() -> None:
    im = _image((0, 0, 20, 50, PED, False),    # scored pedestrian (50 px)
                (30, 0, 50, 20, PED, False),   # 20 px: small band
                (60, 0, 70, 10, CAR, False),   # 10 px: tiny, don't care everywhere
                (80, 0, 120, 40, CAR, True),   # ignore
                (130, 0, 190, 40, CAR, False))  # scored car
    dets = _dets((0, 0, 20, 50, 0.9, PED),      # TP pedestrian
                 (30, 0, 50, 20, 0.8, PED),     # matches the small pedestrian: don't care in the main band
                 (60, 0, 70, 10, 0.7, CAR),     # tiny: don't care
                 (80, 0, 120, 40, 0.6, CAR),    # ignore: don't care
                 (130, 0, 190, 40, 0.5, PED),   # right box, wrong class: FP (but class-agnostic hit)
                 (0, 60, 20, 100, 0.4, SIGN),   # nothing there: FP
                 (0, 0, 20, 50, 0.1, CAR))      # below the score threshold: dropped
    r = evaluate([im, _image()], [dets, _dets()], score_thresh=0.3)
    assert r["per_class"]["pedestrian"] == {"recall": 1.0, "precision": 0.5, "tp": 1, "fp": 1, "dont_care": 1,
                                            "num_gt": 1}
    assert r["per_class"]["car"]["recall"] == 0.0 and r["per_class"]["car"]["num_gt"] == 1
    assert r["per_class"]["car"]["dont_care"] == 2 and r["per_class"]["car"]["fp"] == 0
    assert r["per_class"]["traffic_sign"]["fp"] == 1 and r["per_class"]["traffic_sign"]["recall"] is None
    assert (r["all"]["tp"], r["all"]["fp"], r["all"]["num_gt"]) == (1, 2, 2)
    assert r["all"]["recall"] == 0.5 and r["all"]["precision"] == pytest.approx(1 / 3)
    assert r["class_agnostic"]["recall"] == 1.0  # the car was found, as a pedestrian
    assert r["fp_per_image"] == 1.0  # 2 FPs over 2 images
    assert r["small"]["all"]["num_gt"] == 1 and r["small"]["all"]["recall"] == 1.0
    assert r["small"]["per_class"]["pedestrian"]["tp"] == 1
    assert r["per_image"][0]["detections"] == 6 and r["per_image"][1]["num_gt"] == 0
    assert r["attention_concentration"]["mean"] is None
    md = table({"ours": r})
    assert "| ours | 0.50 | 0.33 | 1/2 | 2 | 1.00 | 1.00 |" in md and "1.00 (1/1)" in md


def test_attention_concentration_formula() -> None:
    att = np.zeros((10, 10), np.float32)
    att[:5, :5] = 1.0  # a quarter of the image holds half the mass
    att[5:, 5:] = 1.0 / 3.0
    att[:5, 5:] = 1.0 / 3.0
    att[5:, :5] = 1.0 / 3.0
    box = np.array([[0, 0, 5, 5]], np.float32)
    assert attention_concentration(att, box) == pytest.approx(0.5 / 0.25)
    assert attention_concentration(np.ones((10, 10)), box) == pytest.approx(1.0)  # uniform: 1
    # the union counts overlapping boxes once; fractional edges round outward to whole pixels
    two = np.array([[0, 0, 5, 5], [2, 2, 4.2, 4.2]], np.float32)
    assert attention_concentration(att, two) == pytest.approx(2.0)
    assert attention_concentration(att, np.zeros((0, 4))) is None
    assert attention_concentration(np.zeros((10, 10)), box) is None
    im = _image((0, 0, 100, 50, CAR, False))  # the left quarter of a 200x100 image
    a = np.zeros((100, 200), np.float32)
    a[:50, :100] = 1.0
    r = evaluate([im], [_dets()], [a])
    assert r["attention_concentration"] == {"mean": pytest.approx(4.0), "images": 1}


def test_parse_labels_rejects_bad_input() -> None:
    ok = {"file": "a.png", "width": 100, "height": 50,
          "objects": [{"class": "car", "box": [0, 0, 10, 40]}, {"class": "cyclist", "box": [1, 1, 9, 9],
                                                                 "ignore": True}]}
    (im,) = parse_labels({"images": [ok]})
    assert im.class_ids.tolist() == [CAR, classes.detection_id("cyclist")] and im.ignore.tolist() == [False, True]
    bad_class = {**ok, "objects": [{"class": "bus", "box": [0, 0, 10, 10]}]}
    outside = {**ok, "objects": [{"class": "car", "box": [0, 0, 110, 10]}]}
    for doc, message in [({"images": [bad_class]}, "not one of"), ({"images": [outside]}, "outside the 100x50"),
                         ({"images": [ok, ok]}, "listed twice"), ({"pictures": []}, "expected a JSON object"),
                         ({"images": [{"file": "a.png"}]}, "'width' and 'height'"),
                         # hostile: strings / NaN / bools for numbers, absurd sizes, wrong container types
                         ({"images": [{**ok, "objects": [{"class": "car", "box": ["a", 0, 1, 1]}]}]}, "'box' must be"),
                         ({"images": [{**ok, "objects": [{"class": "car", "box": [float("nan"), 0, 1, 1]}]}]},
                          "empty or outside"),
                         ({"images": [{**ok, "objects": [{"class": "car", "box": [True, 0, 1, 1]}]}]}, "'box' must be"),
                         ({"images": [{**ok, "objects": [{"class": "car", "box": [0, 0, 5, 5], "ignore": "no"}]}]},
                          "'ignore' must be true or false"),
                         ({"images": [{**ok, "objects": {"class": "car"}}]}, "'objects' must be a list"),
                         ({"images": [{**ok, "width": 0}]}, "not 1..65536"),
                         ({"images": [{**ok, "width": 10**30}]}, "not 1..65536"),
                         ({"images": [{**ok, "width": float("inf")}]}, "'width' and 'height'"),
                         ({"images": [{**ok, "height": True}]}, "'width' and 'height'"),
                         ({"images": [{**ok, "file": ""}]}, "needs a 'file'"),
                         ({"images": [{**ok, "objects": [{"class": "any", "box": [0, 0, 5, 5]}]}]},
                          "needs \"ignore\": true")]:
        with pytest.raises(EvalError, match=message):
            parse_labels(doc)


def test_an_any_box_is_dont_care_for_every_class() -> None:
    """Class "any" (ignore only): a detection of whatever class on it is neither right nor wrong; elsewhere the
    same detection is a false positive."""
    (im,) = parse_labels({"images": [{"file": "a.png", "width": 200, "height": 100, "objects": [
        {"class": "any", "box": [0, 0, 50, 60], "ignore": True}, {"class": "car", "box": [100, 0, 150, 60]}]}]})
    on_any = _dets((0, 0, 50, 60, 0.9, PED), (1, 1, 50, 60, 0.8, SIGN), (100, 0, 150, 60, 0.9, CAR))
    r = evaluate([im], [on_any])
    assert (r["all"]["tp"], r["all"]["fp"], r["all"]["dont_care"], r["all"]["num_gt"]) == (1, 0, 2, 1)
    elsewhere = _dets((60, 0, 95, 60, 0.9, PED), (100, 0, 150, 60, 0.9, CAR))
    assert evaluate([im], [elsewhere])["all"]["fp"] == 1
    assert object_counts([im])["any"] == {"main": 0, "small": 0, "tiny": 0, "ignore": 1}


def test_load_labels_errors(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="does not exist"):
        load_labels(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(EvalError, match="not valid JSON"):
        load_labels(tmp_path / "bad.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(EvalError, match="not valid JSON"):
        load_labels(tmp_path / "binary.json")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000, encoding="utf-8")
    with pytest.raises(EvalError):
        load_labels(tmp_path / "deep.json")
    with pytest.raises(EvalError, match="images directory is needed"):
        load_labels(tmp_path)


def test_the_shipped_validation_labels() -> None:
    """test/data/real_val/labels.json: loads, every image has a source, at most 3 vtest frames, none of the frames
    0:600 the shipped checkpoints trained on."""
    images = load_labels(REPO_LABELS)
    doc = json.loads(REPO_LABELS.read_text(encoding="utf-8"))
    assert all(e["source"] for e in doc["images"])
    frames = [int(im.file[6:10]) for im in images if im.file.startswith("vtest_")]
    assert len(frames) <= 3 and min(frames) >= 600
    counts = object_counts(images)
    assert sum(c["main"] for c in counts.values()) >= 30
    assert counts["pedestrian"]["main"] >= 15 and counts["car"]["main"] >= 5


def test_on_canvas_keeps_pixel_sizes_and_moves_the_labels(tmp_path: Path) -> None:
    import cv2

    from perception.eval.labelled import LabelledImage, on_canvas
    from perception.eval.labelled_run import read_image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[10:30, 20:30] = 255
    cv2.imwrite(str(tmp_path / "a.png"), rgb)
    im = LabelledImage("a.png", 60, 40, np.array([[20, 10, 30, 30]], np.float32), np.array([2]), np.array([False]))
    assert on_canvas(im, 1.0) is im
    big = on_canvas(im, 2.5)
    assert (big.width, big.height) == (150, 100) and np.allclose(big.heights, im.heights)
    canvas = read_image(tmp_path, big)
    assert canvas.shape == (100, 150, 3)
    ys, xs = np.nonzero(canvas[:, :, 0] == 255)
    np.testing.assert_array_equal([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], big.boxes[0])
    assert (canvas[0, 0] == 114).all()  # grey, like the letterbox padding


def test_on_canvas_with_shrink_makes_the_objects_smaller_with_the_image(tmp_path: Path) -> None:
    """``shrink``: the scene as if farther away -- image and labels resized together, canvas still ``scale`` x the
    original; the resized white box lands where its label says."""
    import cv2

    from perception.eval.labelled import LabelledImage, on_canvas
    from perception.eval.labelled_run import read_image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[8:32, 20:32] = 255
    cv2.imwrite(str(tmp_path / "a.png"), rgb)
    im = LabelledImage("a.png", 60, 40, np.array([[20, 8, 32, 32]], np.float32), np.array([2]), np.array([False]))
    far = on_canvas(im, 2.0, 0.5)
    assert (far.width, far.height) == (120, 80) and np.allclose(far.heights, im.heights * 0.5)
    canvas = read_image(tmp_path, far)
    assert canvas.shape == (80, 120, 3)
    ys, xs = np.nonzero(canvas[:, :, 0] > 127)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], far.boxes[0], atol=1)
    assert on_canvas(im, 1.0, 0.5).width == 60  # shrunk in place on a canvas of the original size
    for bad in (0.0, -1.0, 1.5, float("nan")):
        with pytest.raises(EvalError, match="shrink must be in"):
            on_canvas(im, 2.0, bad)
    for bad in (0.5, float("nan"), float("inf"), 1e6):  # NaN / inf were a ValueError / OverflowError traceback
        with pytest.raises(EvalError, match="canvas scale must be >= 1"):
            on_canvas(im, bad)


def test_on_camera_frames_the_image_as_a_camera_of_that_size(tmp_path: Path) -> None:
    """A 60 x 40 image in a 90 x 20 (wide) camera: shrunk to fit its height (0.5), never enlarged in a larger one."""
    import cv2

    from perception.eval.labelled import LabelledImage, on_camera
    from perception.eval.labelled_run import read_image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[8:32, 20:32] = 255
    cv2.imwrite(str(tmp_path / "a.png"), rgb)
    im = LabelledImage("a.png", 60, 40, np.array([[20, 8, 32, 32]], np.float32), np.array([2]), np.array([False]))
    wide = on_camera(im, 90, 20)
    assert (wide.width, wide.height, wide.shrink) == (90, 20, 0.5) and np.allclose(wide.heights, 12)
    frame = read_image(tmp_path, wide)
    assert frame.shape == (20, 90, 3) and (frame[:, :10] == 114).all()  # grey beside the image
    ys, xs = np.nonzero(frame[:, :, 0] > 127)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], wide.boxes[0], atol=1)
    big = on_camera(im, 200, 100)
    assert big.shrink == 1.0 and np.allclose(big.heights, im.heights)  # objects keep their pixel size
    for w, h in ((0, 20), (90, 5), (10**6, 20)):
        with pytest.raises(EvalError, match="camera size must be"):
            on_camera(im, w, h)


def test_closer_enlarges_the_scene_about_its_centre(tmp_path: Path) -> None:
    """``closer``: the image enlarged F times, its centre framed at its own size; a box in the middle grows about
    the centre and lands where the pixels do, one the frame cuts is clipped (don't care when under half of it is
    left), one pushed out of the frame is gone; then framed by a camera, both steps hold."""
    import cv2

    from perception.eval.labelled import LabelledImage, closer, on_camera
    from perception.eval.labelled_run import read_image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[15:25, 25:35] = 255  # in the middle
    rgb[2:12, 44:58] = 200  # near the top-right corner
    cv2.imwrite(str(tmp_path / "a.png"), rgb)
    boxes = np.array([[25, 15, 35, 25], [44, 2, 58, 12], [0, 0, 6, 4]], np.float32)
    im = LabelledImage("a.png", 60, 40, boxes, np.array([2, 0, 0]), np.array([False, False, False]))
    assert closer(im, 1.0) is im
    near = closer(im, 2.0)
    assert (near.width, near.height, near.enlarge) == (60, 40, 2.0)
    assert near.class_ids.tolist() == [2, 0]  # the corner box left the frame
    np.testing.assert_allclose(near.boxes[0], [20, 10, 40, 30])  # (25..35) * 2 - 30: about the centre
    np.testing.assert_allclose(near.boxes[1], [58, 0, 60, 4])  # cut by the frame: 2 of 28 px wide left
    assert near.ignore.tolist() == [False, True]
    frame = read_image(tmp_path, near)
    assert frame.shape == (40, 60, 3)
    ys, xs = np.nonzero(frame[:, :, 0] > 230)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], near.boxes[0], atol=1)
    framed = on_camera(near, 120, 80)  # placed on a larger camera after
    canvas = read_image(tmp_path, framed)
    ys, xs = np.nonzero(canvas[:, :, 0] > 230)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], framed.boxes[0], atol=1)
    for bad in (0.5, 9.0, float("nan")):
        with pytest.raises(EvalError, match="closer factor"):
            closer(im, bad)
    with pytest.raises(EvalError, match="before it is placed"):
        closer(framed, 2.0)

"""Metrics on hand-labelled real images (numpy only: no torch, no ROS).

Label file (JSON, boxes in source-image pixels, ``x0 y0 x1 y1``)::

    {"images": [{"file": "a.jpg", "width": 640, "height": 480, "source": "...",
                 "objects": [{"class": "car", "box": [x0, y0, x1, y1], "ignore": false}]}]}

Class ``"any"`` (``ignore`` true only) marks a don't-care region for every class (a tram, a crowd). A COCO
document or a KITTI label directory is read too (:func:`load_label_source`, :mod:`.label_formats`).

What is scored (IoU >= 0.5, detections matched greedily in descending score order, a detection only
to a box of its own class unless class-agnostic):

* **main** band: labelled objects at least :data:`MAIN_MIN_HEIGHT` (32) px tall, not ``ignore``. Every
  other labelled object (``ignore``, under 16 px, 16-32 px) is *don't care*: a detection matching it
  is neither a true nor a false positive. Recall, precision per class and overall; false positives
  per image; class-agnostic recall (any class counts).
* **small** band: objects 16-32 px tall (not ``ignore``): their own recall (everything else don't care).
* **attention concentration** of an image: the attention mass inside the union of its labelled boxes
  (``ignore`` ones included: they are objects too) over the total mass, divided by the union's share
  of the image area. 1 = no better than uniform; the mean over images with boxes is reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from perception.core import classes
from perception.core.boxes import box_area, clip_boxes, iou_matrix
from perception.core.types import Detections
from perception.eval import EvalError

MAIN_MIN_HEIGHT = 32.0  # px: objects at least this tall are scored
SMALL_MIN_HEIGHT = 16.0  # px: [16, 32) is the small band (own recall); below 16: don't care everywhere
IOU_THRESH = 0.5
ANY_CLASS = -1  # class id of an "any" (don't care for every class) box
MAX_IMAGE_SIDE = 65536


@dataclass(frozen=True)
class LabelledImage:
    """One labelled image: boxes (N, 4) xyxy float32 in its pixels, detection class ids, ignore flags."""

    file: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ignore: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    source: str = ""
    placed: tuple[int, int] | None = None  # on a larger canvas (:func:`on_canvas`): the file's (x0, y0) on it
    shrink: float = 1.0  # the file resized by this factor before it is placed (:func:`on_canvas`)
    enlarge: float = 1.0  # the file enlarged by this factor, its centre framed at its own size (:func:`closer`)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def heights(self) -> np.ndarray:
        return (self.boxes[:, 3] - self.boxes[:, 1]).astype(np.float64)


def on_canvas(im: LabelledImage, scale: float, shrink: float = 1.0) -> LabelledImage:
    """``im`` as seen by a camera ``scale`` times larger: the image at its own pixel size on a grey canvas
    ``scale`` times its width and height (horizontally centred, a quarter of the spare height below it), the
    labels moved with it. Objects keep their size in pixels, so a network letterboxing the frame sees them
    ``scale`` times smaller: the 1600 x 900 driving camera's view of them. ``scale`` 1 is ``im`` itself.

    ``shrink`` < 1 first resizes the image (and its labels) by that factor, as if the scene were 1 / ``shrink``
    times farther away: its 32-64 px objects become 16-32 px ones, the small objects refinement is for, with real
    content (the canvas stays ``scale`` times the original size)."""
    if not 1.0 <= scale <= 100.0:  # NaN fails too
        raise EvalError(f"canvas scale must be >= 1 (and at most 100), got {scale}")
    if not 0.0 < shrink <= 1.0:
        raise EvalError(f"shrink must be in (0, 1], got {shrink}")
    if scale == 1.0 and shrink == 1.0:
        return im
    return _placed(im, round(im.width * scale), round(im.height * scale), shrink)


CUT_VISIBLE = 0.5  # :func:`closer`: an object with less than this share of its box in the frame is don't care


def closer(im: LabelledImage, factor: float) -> LabelledImage:
    """``im`` as if the scene were ``factor`` times closer: the image enlarged ``factor`` times and its centre
    framed at its own size, labels with it -- near vehicles and people, the ones a network trained at 300 x 300
    loses as they outgrow its largest priors. A box the frame cuts is clipped to it; one with less than
    :data:`CUT_VISIBLE` of its area left in the frame is don't care; one wholly outside is gone. Apply before
    :func:`on_canvas` / :func:`on_camera` (a placed image cannot be enlarged)."""
    if not 1.0 <= factor <= 8.0:  # NaN fails too
        raise EvalError(f"closer factor must be in [1, 8], got {factor}")
    if im.placed is not None or im.enlarge != 1.0:
        raise EvalError(f"{im.file}: closer() takes an image as labelled, before it is placed or enlarged")
    if factor == 1.0:
        return im
    ox, oy = closer_offset(im.width, im.height, factor)
    b = im.boxes * np.float32(factor) - np.array([ox, oy, ox, oy], np.float32)
    clipped = clip_boxes(b, im.width, im.height)
    visible = box_area(clipped) / np.maximum(box_area(b), 1e-6)
    keep = visible > 0.0
    return replace(im, boxes=clipped[keep].astype(np.float32), class_ids=im.class_ids[keep],
                   ignore=(im.ignore | (visible < CUT_VISIBLE))[keep], enlarge=float(factor))


def closer_offset(width: int, height: int, factor: float) -> tuple[int, int]:
    """(x0, y0) of the frame in an image of ``width`` x ``height`` enlarged ``factor`` times (:func:`closer`)."""
    return (round(width * factor) - width) // 2, (round(height * factor) - height) // 2


def on_camera(im: LabelledImage, width: int, height: int) -> LabelledImage:
    """``im`` as a ``width`` x ``height`` camera would frame it: shrunk to fit when it is larger (never enlarged:
    objects keep at most their pixel size), on a grey frame of exactly that size, labels moved with it -- e.g.
    1242 x 375, a wide camera whose frame the network's 384 x 640 input letterboxes to half its height."""
    if not (16 <= width <= 16384 and 16 <= height <= 16384):
        raise EvalError(f"camera size must be 16..16384 pixels a side, got {width}x{height}")
    return _placed(im, width, height, min(1.0, width / im.width, height / im.height))


def _placed(im: LabelledImage, width: int, height: int, shrink: float) -> LabelledImage:
    """``im`` resized by ``shrink`` on a ``width`` x ``height`` grey frame (horizontally centred, a quarter of the
    spare height below it), labels resized and moved with it (:func:`on_canvas`, :func:`on_camera`)."""
    iw, ih = max(1, round(im.width * shrink)), max(1, round(im.height * shrink))
    x0, y0 = (width - iw) // 2, height - ih - (height - ih) // 4
    sx, sy = iw / im.width, ih / im.height
    boxes = im.boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([x0, y0, x0, y0], np.float32)
    return replace(im, width=width, height=height, boxes=boxes.astype(np.float32), placed=(x0, y0), shrink=shrink)


def _image(entry: Any, where: str) -> LabelledImage:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
        raise EvalError(f"{where}: each image needs a 'file' name")
    file = entry["file"]
    try:
        if isinstance(entry["width"], bool) or isinstance(entry["height"], bool):
            raise TypeError("a bool is not a size")
        width, height = int(entry["width"]), int(entry["height"])
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise EvalError(f"{where} ({file}): 'width' and 'height' (pixels) are required") from e
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise EvalError(f"{where} ({file}): image size {width}x{height} is not 1..{MAX_IMAGE_SIDE} pixels a side")
    objects = entry.get("objects", [])
    if not isinstance(objects, list):
        raise EvalError(f"{where} ({file}): 'objects' must be a list, got {type(objects).__name__}")
    boxes, cids, ign = [], [], []
    for k, obj in enumerate(objects):
        what = f"{where} ({file}) object {k}"
        name = obj.get("class") if isinstance(obj, dict) else None
        if name not in classes.DETECTION_NAMES and name != "any":
            raise EvalError(f"{what}: class {name!r} is not one of {', '.join(classes.DETECTION_NAMES)} (or 'any')")
        ignore = obj.get("ignore", False)
        if not isinstance(ignore, bool):
            raise EvalError(f"{what}: 'ignore' must be true or false, got {ignore!r}")
        if name == "any" and not ignore:
            raise EvalError(f"{what}: class 'any' is a don't-care region: it needs \"ignore\": true")
        box = obj.get("box")
        if not isinstance(box, list) or len(box) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            raise EvalError(f"{what}: 'box' must be [x0, y0, x1, y1] in pixels, got {box!r}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):  # NaN fails too
            raise EvalError(f"{what}: box {box} is empty or outside the {width}x{height} image")
        boxes.append((x0, y0, x1, y1))
        cids.append(ANY_CLASS if name == "any" else classes.detection_id(name))
        ign.append(ignore)
    return LabelledImage(file, width, height, np.asarray(boxes, np.float32).reshape(-1, 4),
                         np.asarray(cids, np.int64), np.asarray(ign, bool), str(entry.get("source", "")))


def parse_labels(doc: Any, where: str = "labels") -> list[LabelledImage]:
    """The images of a label document (see the module doc); EvalError names what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise EvalError(f"{where}: expected a JSON object {{\"images\": [...]}}")
    images = [_image(e, f"{where} images[{i}]") for i, e in enumerate(doc["images"])]
    names = [im.file for im in images]
    if len(set(names)) != len(names):
        raise EvalError(f"{where}: an image file is listed twice")
    return images


def load_label_source(path: str | Path, images_dir: str | Path | None = None
                      ) -> tuple[list[LabelledImage], str, dict[str, int]]:
    """The labelled images of ``path``, its format and what was left out converting it (``{name: boxes}``).

    ``path`` is the project's JSON (see the module doc), a COCO detection JSON (it has ``annotations`` and
    ``categories``), a BDD100K detection JSON (a list of frames), a KITTI object label directory (``*.txt``) or a
    Cityscapes ``gtFine`` directory (``*_gtFine_polygons.json`` at any depth); BDD100K's and KITTI's image sizes
    are read from ``images_dir``. :mod:`.label_formats` says how their classes map onto ours."""
    from perception.eval.label_formats import (
        bdd_document,
        cityscapes_document,
        coco_document,
        is_bdd,
        is_cityscapes,
        is_coco,
        kitti_document,
    )

    p = Path(path)
    if p.is_dir():
        if images_dir is None:
            raise EvalError(f"{p} is a directory (KITTI or Cityscapes labels): the images directory is needed too")
        if is_cityscapes(p):
            doc, skipped = cityscapes_document(p, images_dir)
            return parse_labels(doc, str(p)), "cityscapes", skipped
        doc, skipped = kitti_document(p, images_dir)
        return parse_labels(doc, str(p)), "kitti", skipped
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise EvalError(f"label file {p} does not exist") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvalError(f"label file {p} is not valid JSON ({e})") from e
    except RecursionError as e:
        raise EvalError(f"label file {p} is nested too deeply") from e
    if is_coco(doc):
        doc, skipped = coco_document(doc, str(p))
        return parse_labels(doc, str(p)), "coco", skipped
    if is_bdd(doc):
        if images_dir is None:
            raise EvalError(f"{p} is a BDD100K label list: the images directory is needed for the images' sizes")
        doc, skipped = bdd_document(doc, images_dir, str(p))
        return parse_labels(doc, str(p)), "bdd100k", skipped
    return parse_labels(doc, str(p)), "perception", {}


def load_labels(path: str | Path, images_dir: str | Path | None = None) -> list[LabelledImage]:
    """The labelled images of a label file or directory in any format :func:`load_label_source` reads."""
    return load_label_source(path, images_dir)[0]


def size_band(heights: np.ndarray) -> np.ndarray:
    """'main' (>= 32 px), 'small' ([16, 32) px) or 'tiny' (< 16 px) for each box height."""
    h = np.asarray(heights, np.float64)
    return np.where(h >= MAIN_MIN_HEIGHT, "main", np.where(h >= SMALL_MIN_HEIGHT, "small", "tiny"))


@dataclass(frozen=True)
class MatchCounts:
    tp: int  # detections matched to a scored object (= objects found)
    fp: int  # detections matching neither a scored nor a don't-care object
    dont_care: int  # detections matched to a don't-care object (not counted either way)
    num_gt: int  # scored objects

    @property
    def recall(self) -> float | None:
        return self.tp / self.num_gt if self.num_gt else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None


def match(gt_boxes: np.ndarray, scored: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray,
          iou_thresh: float = IOU_THRESH) -> MatchCounts:
    """Greedy matching of one image's detections (one class, or all classes for class-agnostic) to its
    labelled boxes. ``scored`` marks the objects that count; the others are don't care.

    Detections are taken best score first. Each takes the unmatched scored object it overlaps most
    (IoU >= ``iou_thresh``): a true positive. Failing that, a don't-care object it overlaps enough
    absorbs it (a don't-care object may absorb several). Otherwise it is a false positive (a second
    detection of an already-found object included)."""
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    scored = np.asarray(scored, bool).reshape(-1)
    det_boxes = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(det_scores, np.float64), kind="stable")
    iou = iou_matrix(det_boxes, gt_boxes) if len(gt_boxes) and len(det_boxes) else np.zeros((len(det_boxes), 0))
    taken = np.zeros(len(gt_boxes), bool)
    tp = fp = dc = 0
    for d in order:
        ok = iou[d] >= iou_thresh
        free = ok & scored & ~taken
        if free.any():
            g = int(np.argmax(np.where(free, iou[d], -1.0)))
            taken[g] = True
            tp += 1
        elif (ok & ~scored).any():
            dc += 1
        else:
            fp += 1
    return MatchCounts(tp, fp, dc, int(scored.sum()))


def _add(a: MatchCounts, b: MatchCounts) -> MatchCounts:
    return MatchCounts(a.tp + b.tp, a.fp + b.fp, a.dont_care + b.dont_care, a.num_gt + b.num_gt)


def _row(c: MatchCounts) -> dict[str, Any]:
    return {"recall": c.recall, "precision": c.precision, "tp": c.tp, "fp": c.fp, "dont_care": c.dont_care,
            "num_gt": c.num_gt}


def attention_concentration(attention: np.ndarray, boxes: np.ndarray) -> float | None:
    """(attention mass inside the union of ``boxes`` / total mass) / (union area / image area).

    ``attention`` is (H, W) at the image's resolution, non-negative; ``boxes`` xyxy in its pixels
    (rounded outward to whole pixels). None when there is no box or no attention mass."""
    att = np.asarray(attention, np.float64)
    if att.ndim != 2:
        raise EvalError(f"attention must be an (H, W) map, got shape {att.shape}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    total = float(np.clip(att, 0.0, None).sum())
    if not len(boxes) or total <= 0.0:
        return None
    h, w = att.shape
    mask = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        c0, r0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        c1, r1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        mask[r0:r1, c0:c1] = True
    share = mask.mean()
    if share <= 0.0:
        return None
    inside = float(np.clip(att, 0.0, None)[mask].sum()) / total
    return inside / float(share)


def evaluate(images: Sequence[LabelledImage], detections: Sequence[Detections],
             attention: Sequence[np.ndarray | None] | None = None, score_thresh: float = 0.3,
             iou_thresh: float = IOU_THRESH) -> dict[str, Any]:
    """Every figure of the module doc for one detector over ``images`` (``detections[i]`` in image i's
    pixels; detections scoring below ``score_thresh`` are dropped first). ``attention[i]``: image i's
    map at its resolution, or None (concentration not reported)."""
    if len(detections) != len(images):
        raise EvalError(f"{len(detections)} detection sets for {len(images)} images")
    if attention is not None and len(attention) != len(images):
        raise EvalError(f"{len(attention)} attention maps for {len(images)} images")
    names = classes.DETECTION_NAMES
    zero = MatchCounts(0, 0, 0, 0)
    main = {n: zero for n in names}
    small = {n: zero for n in names}
    agnostic = zero
    per_image: list[dict[str, Any]] = []
    for k, (im, det) in enumerate(zip(images, detections)):
        keep = np.asarray(det.scores) >= score_thresh
        db, ds, dcls = det.boxes[keep], det.scores[keep], np.asarray(det.class_ids)[keep]
        band = size_band(im.heights)
        is_main = (band == "main") & ~im.ignore
        is_small = (band == "small") & ~im.ignore
        img_main = zero
        for cid, n in enumerate(names):
            g, d = (im.class_ids == cid) | (im.class_ids == ANY_CLASS), dcls == cid
            c = match(im.boxes[g], is_main[g], db[d], ds[d], iou_thresh)
            main[n] = _add(main[n], c)
            img_main = _add(img_main, c)
            small[n] = _add(small[n], match(im.boxes[g], is_small[g], db[d], ds[d], iou_thresh))
        agnostic = _add(agnostic, match(im.boxes, is_main, db, ds, iou_thresh))
        conc = None
        if attention is not None and attention[k] is not None:
            conc = attention_concentration(np.asarray(attention[k]), im.boxes)
        per_image.append({"file": im.file, "detections": int(keep.sum()), "tp": img_main.tp, "fp": img_main.fp,
                          "dont_care": img_main.dont_care, "num_gt": img_main.num_gt,
                          "attention_concentration": conc})
    total = zero
    for c in main.values():
        total = _add(total, c)
    small_total = zero
    for c in small.values():
        small_total = _add(small_total, c)
    concs = [p["attention_concentration"] for p in per_image if p["attention_concentration"] is not None]
    return {
        "score_thresh": score_thresh, "iou_thresh": iou_thresh, "images": len(images),
        "per_class": {n: _row(c) for n, c in main.items()},
        "all": _row(total),
        "class_agnostic": _row(agnostic),
        "fp_per_image": total.fp / len(images) if len(images) else None,
        "small": {"per_class": {n: _row(c) for n, c in small.items()}, "all": _row(small_total)},
        "attention_concentration": {"mean": float(np.mean(concs)) if concs else None, "images": len(concs)},
        "per_image": per_image,
    }


def object_counts(images: Sequence[LabelledImage]) -> dict[str, dict[str, int]]:
    """Labelled objects per class and band: main (>= 32 px), small (16-32 px), tiny (< 16 px), ignore (and
    "any": don't-care regions of every class, when there are some)."""
    out = {n: {"main": 0, "small": 0, "tiny": 0, "ignore": 0} for n in classes.DETECTION_NAMES}
    for im in images:
        for cid, b, ign in zip(im.class_ids, size_band(im.heights), im.ignore):
            name = "any" if cid == ANY_CLASS else classes.DETECTION_NAMES[int(cid)]
            out.setdefault(name, {"main": 0, "small": 0, "tiny": 0, "ignore": 0})["ignore" if ign else str(b)] += 1
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per detector (recall / precision overall and per class for >= 32 px objects,
    class-agnostic recall, 16-32 px recall, false positives per image, attention concentration)."""
    names = [n for n in classes.DETECTION_NAMES]
    head = ["detector", "R", "P", "TP/GT", "FP", "FP/img", "R agn."] + [f"R/P {n}" for n in names] + \
        ["R 16-32px", "att. conc."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        a = r["all"]
        cells = [name, _fmt(a["recall"]), _fmt(a["precision"]), f"{a['tp']}/{a['num_gt']}", str(a["fp"]),
                 _fmt(r["fp_per_image"]), _fmt(r["class_agnostic"]["recall"])]
        for n in names:
            c = r["per_class"][n]
            cells.append(f"{_fmt(c['recall'])}/{_fmt(c['precision'])} ({c['num_gt']})")
        s = r["small"]["all"]
        cells.append(f"{_fmt(s['recall'])} ({s['tp']}/{s['num_gt']})")
        cells.append(_fmt(r["attention_concentration"]["mean"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""Public datasets' 2D labels as the project's label document (:mod:`.labelled`), so ``perception eval --labels``
scores a network directly on them. Pure conversion: each function returns ``{"images": [...]}`` in the project
format, which :func:`.labelled.parse_labels` then checks like any hand-written file.

* **COCO** (``instances_*.json``: ``images`` / ``annotations`` / ``categories``, boxes ``[x, y, w, h]``):
  person -> pedestrian, car -> car, bus / truck -> truck, stop sign -> traffic_sign, each scored; bicycle /
  motorcycle -> cyclist, *don't care* (COCO boxes the two-wheeler, riders or not: a rider is a separate person
  box); train, boat, airplane, traffic light -> class ``any``, don't care (a detection of any class on them is
  neither right nor wrong); ``iscrowd`` boxes -> don't care; every other category is left out (a detection on a
  dog or a bench is a false positive). A category already named like one of ours (``car``, ``traffic_sign`` ...)
  keeps its name. Every image of the document is evaluated, those without a box too (false-positive checks).
* **KITTI object** (``label_2/``: one ``NNNNNN.txt`` per image, ``type truncated occluded alpha x0 y0 x1 y1 ...``;
  the image ``NNNNNN.png`` / ``.jpg`` in the images directory, whose size is read from it): Car, Van -> car, Truck
  -> truck, Pedestrian -> pedestrian, Cyclist -> cyclist, scored; Person_sitting -> pedestrian, don't care;
  Tram, Misc, DontCare -> ``any``, don't care. An object truncated more than 0.5 or largely / fully occluded
  (occluded >= 2) is don't care, as in KITTI's own "hard" cut-offs.

* **BDD100K** detection (``det_20`` / ``bdd100k_labels_images_*.json``: a JSON list of frames ``{"name",
  "labels": [{"category", "box2d": {"x1", "y1", "x2", "y2"}, "attributes": {"crowd", ...}}]}``; image sizes read
  from the images directory): pedestrian -> pedestrian, car -> car, truck / bus -> truck, traffic sign ->
  traffic_sign, scored; bicycle / motorcycle -> cyclist, don't care (as COCO: the two-wheeler's box); rider,
  train, traffic light, trailer, other vehicle / person -> ``any``, don't care; ``crowd`` boxes -> don't care;
  labels without a ``box2d`` (lanes, drivable area) are not objects and are passed over.
* **Cityscapes** (``gtFine/<split>/<city>/*_gtFine_polygons.json``: ``imgWidth``, ``imgHeight``, ``objects`` of
  ``label`` + ``polygon``; each box is its polygon's extent; the image is ``<city>/<stem>_leftImg8bit.png`` under the
  images directory, e.g. ``leftImg8bit/val``): person -> pedestrian, car -> car, truck / bus -> truck, traffic
  sign -> traffic_sign, scored; bicycle / motorcycle -> cyclist, don't care; rider, caravan, trailer, train,
  traffic light -> ``any``, don't care; a ``...group`` label (a crowd of its class) -> its class, don't care;
  a polygon marked ``deleted`` is left out; the other labels (road, building, sky, ...) are not objects.

Boxes are clipped to the image; empty ones after clipping are left out (counted in ``skipped``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perception.core import classes
from perception.eval import EvalError

ANY = "any"  # don't-care class: a detection of any class matching it is neither a true nor a false positive

# lower-cased COCO category name -> (our class, ignore)
COCO_CLASSES: dict[str, tuple[str, bool]] = {
    "person": ("pedestrian", False), "car": ("car", False), "bus": ("truck", False), "truck": ("truck", False),
    "stop sign": ("traffic_sign", False), "bicycle": ("cyclist", True), "motorcycle": ("cyclist", True),
    "train": (ANY, True), "boat": (ANY, True), "airplane": (ANY, True), "traffic light": (ANY, True),
    **{n: (n, False) for n in classes.DETECTION_NAMES},
}

# KITTI object type -> (our class, ignore)
KITTI_CLASSES: dict[str, tuple[str, bool]] = {
    "Car": ("car", False), "Van": ("car", False), "Truck": ("truck", False), "Pedestrian": ("pedestrian", False),
    "Cyclist": ("cyclist", False), "Person_sitting": ("pedestrian", True), "Tram": (ANY, True),
    "Misc": (ANY, True), "DontCare": (ANY, True),
}
# BDD100K category -> (our class, ignore)
BDD_CLASSES: dict[str, tuple[str, bool]] = {
    "pedestrian": ("pedestrian", False), "car": ("car", False), "truck": ("truck", False), "bus": ("truck", False),
    "traffic sign": ("traffic_sign", False), "bicycle": ("cyclist", True), "bike": ("cyclist", True),
    "motorcycle": ("cyclist", True), "motor": ("cyclist", True), "rider": (ANY, True), "train": (ANY, True),
    "traffic light": (ANY, True), "trailer": (ANY, True), "other vehicle": (ANY, True),
    "other person": (ANY, True), "person": ("pedestrian", False),
}
# Cityscapes label -> (our class, ignore); "<label>group" is its class, don't care
CITYSCAPES_CLASSES: dict[str, tuple[str, bool]] = {
    "person": ("pedestrian", False), "car": ("car", False), "truck": ("truck", False), "bus": ("truck", False),
    "traffic sign": ("traffic_sign", False), "bicycle": ("cyclist", True), "motorcycle": ("cyclist", True),
    "rider": (ANY, True), "caravan": (ANY, True), "trailer": (ANY, True), "train": (ANY, True),
    "traffic light": (ANY, True),
}
CITYSCAPES_SUFFIX = "_gtFine_polygons.json"
KITTI_MAX_TRUNCATION = 0.5
KITTI_MAX_OCCLUSION = 1  # 0 visible, 1 partly occluded, 2 largely occluded, 3 unknown
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _clipped(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> list[float] | None:
    b = [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
    return b if b[2] > b[0] and b[3] > b[1] else None


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        raise EvalError(f"{what}: expected a finite number, got {v!r}")
    return float(v)


def _id(v: Any, what: str) -> int | str:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise EvalError(f"{what}: an id must be an integer or a string, got {v!r}")
    return v


def is_coco(doc: Any) -> bool:
    return isinstance(doc, dict) and "annotations" in doc and "categories" in doc


def coco_document(doc: Any, where: str = "COCO labels") -> tuple[dict[str, Any], dict[str, int]]:
    """A COCO detection document as the project's label document, and what was left out:
    ``{"category name": boxes}`` of categories without a counterpart, ``"(empty after clipping)"`` included."""
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations",
                                                                                  "categories")):
        raise EvalError(f"{where}: a COCO document needs the lists 'images', 'annotations' and 'categories'")
    cats: dict[Any, str] = {}
    for c in doc["categories"]:
        if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
            raise EvalError(f"{where}: each category needs an 'id' and a 'name', got {c!r}")
        cats[_id(c["id"], f"{where} category")] = c["name"]
    images: dict[Any, dict[str, Any]] = {}
    for i, e in enumerate(doc["images"]):
        if not isinstance(e, dict) or "id" not in e or not isinstance(e.get("file_name"), str):
            raise EvalError(f"{where} images[{i}]: each image needs an 'id' and a 'file_name'")
        if _id(e["id"], f"{where} images[{i}]") in images:
            raise EvalError(f"{where} images[{i}]: image id {e['id']!r} is listed twice")
        images[e["id"]] = {"file": e["file_name"], "width": e.get("width"), "height": e.get("height"),
                           "source": str(e.get("coco_url") or e.get("flickr_url") or where), "objects": []}
    skipped: dict[str, int] = {}
    for i, a in enumerate(doc["annotations"]):
        what = f"{where} annotations[{i}]"
        if not isinstance(a, dict):
            raise EvalError(f"{what}: expected an object, got {a!r}")
        if _id(a.get("image_id"), what) not in images:
            raise EvalError(f"{what}: image_id {a.get('image_id')!r} is not in 'images'")
        if _id(a.get("category_id"), what) not in cats:
            raise EvalError(f"{what}: category_id {a.get('category_id')!r} is not in 'categories'")
        name = cats[a["category_id"]]
        mapped = COCO_CLASSES.get(name.strip().lower())
        if mapped is None:
            skipped[name] = skipped.get(name, 0) + 1
            continue
        box = a.get("bbox")
        if not isinstance(box, list) or len(box) != 4:
            raise EvalError(f"{what}: 'bbox' must be [x, y, width, height], got {box!r}")
        x, y, w, h = (_number(v, f"{what} bbox") for v in box)
        im = images[a["image_id"]]
        try:
            width, height = int(im["width"]), int(im["height"])
        except (TypeError, ValueError, OverflowError) as e:
            raise EvalError(f"{where}: image {im['file']} needs an integer 'width' and 'height'") from e
        clipped = _clipped(x, y, x + w, y + h, width, height)
        if clipped is None:
            skipped["(empty after clipping)"] = skipped.get("(empty after clipping)", 0) + 1
            continue
        cls, ignore = mapped
        im["objects"].append({"class": cls, "box": clipped, "ignore": ignore or bool(a.get("iscrowd", 0))})
    return {"images": list(images.values())}, skipped


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image file ``path``, read from its header (a BDD100K split is 10 000 images)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except (OSError, UnidentifiedImageError) as e:
        raise EvalError(f"{path}: not a readable image") from e


def kitti_document(label_dir: str | Path, images_dir: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """A KITTI object label directory as the project's label document (image sizes read from ``images_dir``),
    and what was left out: ``{"type": objects}`` of types without a counterpart, empty boxes included."""
    label_dir, images_dir = Path(label_dir), Path(images_dir)
    files = sorted(label_dir.glob("*.txt"))
    if not files:
        raise EvalError(f"{label_dir}: no KITTI label files (*.txt) in it")
    out: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for f in files:
        image = next((images_dir / (f.stem + s) for s in IMAGE_SUFFIXES if (images_dir / (f.stem + s)).is_file()),
                     None)
        if image is None:
            raise EvalError(f"{f}: no image {f.stem}{{{','.join(IMAGE_SUFFIXES)}}} in {images_dir}")
        width, height = _image_size(image)
        objects = []
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 8:
                raise EvalError(f"{f}:{n}: a KITTI label line has at least 8 fields "
                                f"(type truncated occluded alpha x0 y0 x1 y1 ...), got {len(parts)}")
            mapped = KITTI_CLASSES.get(parts[0])
            if mapped is None:
                skipped[parts[0]] = skipped.get(parts[0], 0) + 1
                continue
            try:
                truncated, occluded = float(parts[1]), int(float(parts[2]))
                x0, y0, x1, y1 = (float(v) for v in parts[4:8])
            except ValueError as e:
                raise EvalError(f"{f}:{n}: not a number in {line.strip()!r}") from e
            if not all(v == v and abs(v) != float("inf") for v in (truncated, x0, y0, x1, y1)):
                raise EvalError(f"{f}:{n}: not a finite number in {line.strip()!r}")
            box = _clipped(x0, y0, x1, y1, width, height)
            if box is None:
                skipped["(empty after clipping)"] = skipped.get("(empty after clipping)", 0) + 1
                continue
            cls, ignore = mapped
            ignore = ignore or truncated > KITTI_MAX_TRUNCATION or occluded > KITTI_MAX_OCCLUSION
            objects.append({"class": cls, "box": box, "ignore": ignore})
        out.append({"file": image.name, "width": width, "height": height, "source": str(f), "objects": objects})
    return {"images": out}, skipped


def is_bdd(doc: Any) -> bool:
    return isinstance(doc, list) and bool(doc) and all(isinstance(e, dict) and "name" in e for e in doc[:10])


def bdd_document(doc: Any, images_dir: str | Path, where: str = "BDD100K labels") -> tuple[dict[str, Any],
                                                                                              dict[str, int]]:
    """A BDD100K detection list as the project's label document (image sizes read from ``images_dir``), and what
    was left out: ``{"category": boxes}`` of categories without a counterpart, empty boxes included."""
    if not isinstance(doc, list):
        raise EvalError(f"{where}: a BDD100K document is a list of frames")
    images_dir = Path(images_dir)
    out: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    names: set[str] = set()
    for i, frame in enumerate(doc):
        what = f"{where}[{i}]"
        if not isinstance(frame, dict) or not isinstance(frame.get("name"), str) or not frame["name"]:
            raise EvalError(f"{what}: each frame needs a 'name' (its image file)")
        name = frame["name"]
        if name in names:
            raise EvalError(f"{what}: frame {name} is listed twice")
        names.add(name)
        labels = frame.get("labels") or []
        if not isinstance(labels, list):
            raise EvalError(f"{what} ({name}): 'labels' must be a list, got {type(labels).__name__}")
        width, height = _image_size(images_dir / name)
        objects = []
        for k, lab in enumerate(labels):
            if not isinstance(lab, dict):
                raise EvalError(f"{what} ({name}) labels[{k}]: expected an object, got {lab!r}")
            box = lab.get("box2d")
            if box is None:  # a lane or drivable-area polygon: not an object
                continue
            category = str(lab.get("category", ""))
            mapped = BDD_CLASSES.get(category.strip().lower())
            if mapped is None:
                skipped[category] = skipped.get(category, 0) + 1
                continue
            if not isinstance(box, dict):
                raise EvalError(f"{what} ({name}) labels[{k}]: 'box2d' must be {{x1, y1, x2, y2}}, got {box!r}")
            x0, y0, x1, y1 = (_number(box.get(c), f"{what} ({name}) labels[{k}] box2d.{c}")
                              for c in ("x1", "y1", "x2", "y2"))
            clipped = _clipped(x0, y0, x1, y1, width, height)
            if clipped is None:
                skipped["(empty after clipping)"] = skipped.get("(empty after clipping)", 0) + 1
                continue
            attributes = lab.get("attributes")
            crowd = isinstance(attributes, dict) and attributes.get("crowd") is True
            cls, ignore = mapped
            objects.append({"class": cls, "box": clipped, "ignore": ignore or crowd})
        out.append({"file": name, "width": width, "height": height, "source": where, "objects": objects})
    return {"images": out}, skipped


def is_cityscapes(label_dir: Path) -> bool:
    return next(label_dir.rglob(f"*{CITYSCAPES_SUFFIX}"), None) is not None


def cityscapes_document(label_dir: str | Path, images_dir: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Cityscapes ``*_gtFine_polygons.json`` files under ``label_dir`` (any depth) as the project's label document,
    each image ``<city>/<stem>_leftImg8bit.png`` relative to ``images_dir``, and what was left out: boxes empty after
    clipping (labels that are no object we detect -- stuff, licence plates, the ego vehicle -- are passed over)."""
    import json

    label_dir, images_dir = Path(label_dir), Path(images_dir)
    files = sorted(label_dir.rglob(f"*{CITYSCAPES_SUFFIX}"))
    if not files:
        raise EvalError(f"{label_dir}: no Cityscapes label files (*{CITYSCAPES_SUFFIX}) in it")
    out: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EvalError(f"{f}: not valid JSON ({e})") from e
        if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
            raise EvalError(f"{f}: expected {{\"imgWidth\", \"imgHeight\", \"objects\": [...]}}")
        width, height = (int(_number(doc.get(k), f"{f} {k}")) for k in ("imgWidth", "imgHeight"))
        stem = f.name[: -len(CITYSCAPES_SUFFIX)]
        file = f"{f.parent.name}/{stem}_leftImg8bit.png"
        if not (images_dir / file).is_file():
            raise EvalError(f"{f}: no image {file} in {images_dir} (give the leftImg8bit/<split> folder as --images)")
        objects = []
        for k, obj in enumerate(doc["objects"]):
            what = f"{f} objects[{k}]"
            if not isinstance(obj, dict) or not isinstance(obj.get("label"), str):
                raise EvalError(f"{what}: each object needs a 'label'")
            if obj.get("deleted"):
                continue
            label = obj["label"].strip().lower()
            group = label.endswith("group")
            mapped = CITYSCAPES_CLASSES.get(label[: -len("group")] if group else label)
            if mapped is None:  # stuff (road, sky, ...), a licence plate, the ego vehicle: not objects we detect
                continue
            poly = obj.get("polygon")
            if not isinstance(poly, list) or not poly or not all(isinstance(p, list) and len(p) == 2 for p in poly):
                raise EvalError(f"{what}: 'polygon' must be a list of [x, y] points, got {poly!r}")
            xs = [_number(p[0], f"{what} polygon") for p in poly]
            ys = [_number(p[1], f"{what} polygon") for p in poly]
            clipped = _clipped(min(xs), min(ys), max(xs), max(ys), width, height)
            if clipped is None:
                skipped["(empty after clipping)"] = skipped.get("(empty after clipping)", 0) + 1
                continue
            cls, ignore = mapped
            objects.append({"class": cls, "box": clipped, "ignore": ignore or group})
        out.append({"file": file, "width": width, "height": height, "source": str(f), "objects": objects})
    return {"images": out}, skipped

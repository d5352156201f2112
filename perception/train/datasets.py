"""Loaders for users' real data: COCO-format detection, Cityscapes-style segmentation, and
unlabelled footage (video or image folder) pseudo-labelled by the reference detector (distillation).

Both letterbox images to the network input size and return the common sample format::

    {"image": FloatTensor (3, H, W) in [0, 1], "seg": LongTensor (H, W), "boxes": FloatTensor (N, 4)
     xyxy in network-input pixels, "class_ids": LongTensor (N,), "ignore": BoolTensor (N,),
     "has_det": bool, "has_seg": bool}

Detection data carries no segmentation supervision (``seg`` is all ``IGNORE_INDEX``,
``has_seg=False``); segmentation data carries no boxes (``has_det=False``). :func:`collate`
stacks images and masks and keeps per-image box lists.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from perception.core import classes
from perception.core.boxes import xywh_to_xyxy
from perception.core.letterbox import LetterboxMap, letterbox, resize_labels
from perception.core.types import Detections
from perception.footage import FootageError
from perception.footage.source import Footage, FrameRange, list_images

# COCO / Cityscapes-style category names -> our detection class names
DEFAULT_CATEGORY_MAP: dict[str, str] = {
    "car": "car",
    "truck": "truck",
    "bus": "truck",
    "person": "pedestrian",
    "pedestrian": "pedestrian",
    "rider": "cyclist",
    "bicycle": "cyclist",
    "motorcycle": "cyclist",
    "cyclist": "cyclist",
    "stop sign": "traffic_sign",
    "traffic sign": "traffic_sign",
    "traffic_sign": "traffic_sign",
}

# Cityscapes labelIds -> our semantic ids (everything else -> IGNORE_INDEX)
CITYSCAPES_TO_SEMANTIC: dict[int, int] = {
    7: classes.semantic_id("road"),
    8: classes.semantic_id("sidewalk"),
    11: classes.semantic_id("building"),
    17: classes.semantic_id("pole"),
    18: classes.semantic_id("pole"),  # polegroup
    20: classes.semantic_id("traffic_sign"),
    21: classes.semantic_id("vegetation"),
    22: classes.semantic_id("terrain"),
    23: classes.semantic_id("sky"),
    24: classes.semantic_id("pedestrian"),  # person
    25: classes.semantic_id("cyclist"),  # rider
    26: classes.semantic_id("car"),
    27: classes.semantic_id("truck"),
    28: classes.semantic_id("truck"),  # bus
    32: classes.semantic_id("cyclist"),  # motorcycle
    33: classes.semantic_id("cyclist"),  # bicycle
}


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message names the file and what to fix."""


@dataclass(frozen=True)
class _CocoImage:
    path: Path
    boxes: np.ndarray  # (N, 4) xyxy source pixels
    class_ids: np.ndarray  # (N,) detection ids
    ignore: np.ndarray  # (N,) bool


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image {path}; check that it exists and is a PNG/JPEG file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _to_sample(
    rgb: np.ndarray,
    seg: np.ndarray,
    boxes: np.ndarray,
    class_ids: np.ndarray,
    ignore: np.ndarray,
    has_det: bool,
    has_seg: bool,
) -> dict[str, Any]:
    return {
        "image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0),
        "seg": torch.from_numpy(seg.astype(np.int64)),
        "boxes": torch.from_numpy(boxes.astype(np.float32).reshape(-1, 4)),
        "class_ids": torch.from_numpy(class_ids.astype(np.int64)),
        "ignore": torch.from_numpy(ignore.astype(bool)),
        "has_det": has_det,
        "has_seg": has_seg,
    }


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"annotation file {path} not found; pass the path of a COCO instances JSON")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise DatasetError(f"{path}: missing COCO key(s) {missing}; expected 'images', 'annotations', 'categories'")
    return data


class CocoDetectionDataset(Dataset):
    """COCO-format detection data mapped to our detection classes and letterboxed to ``input_size``.

    ``class_map`` maps COCO category names to our detection class names; annotations of other
    categories are skipped and counted in ``skipped`` (name -> count). ``iscrowd`` annotations
    become ``ignore`` boxes. Boxes smaller than ``min_size`` input pixels are dropped.
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotation_json: str | Path,
        input_size: tuple[int, int] = (256, 512),
        class_map: Mapping[str, str] | None = None,
        keep_aspect: bool = True,
        min_size: float = 1.0,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.input_size = input_size
        self.keep_aspect = keep_aspect
        self.min_size = min_size
        if not self.images_dir.is_dir():
            raise DatasetError(f"images directory {self.images_dir} not found")
        cmap = DEFAULT_CATEGORY_MAP if class_map is None else class_map
        for target in set(cmap.values()):
            if target not in classes.DETECTION_NAMES:
                raise DatasetError(
                    f"class_map target {target!r} is not a detection class; use one of {classes.DETECTION_NAMES}"
                )
        data = _load_json(Path(annotation_json))
        try:
            cat_to_ours = {int(c["id"]): cmap.get(str(c["name"])) for c in data["categories"]}
            cat_names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            per_image: dict[int, list[tuple[list[float], int, bool]]] = {int(im["id"]): [] for im in data["images"]}
            skipped: Counter[str] = Counter()
            for a in data["annotations"]:
                cid = int(a["category_id"])
                ours = cat_to_ours.get(cid)
                if ours is None:
                    skipped[cat_names.get(cid, f"id {cid}")] += 1
                    continue
                image_id = int(a["image_id"])
                if image_id not in per_image:
                    raise DatasetError(f"annotation {a.get('id')} refers to unknown image_id {image_id}")
                bbox = [float(v) for v in a["bbox"]]
                if len(bbox) != 4:
                    raise DatasetError(f"annotation {a.get('id')}: bbox must be [x, y, width, height]")
                per_image[image_id].append((bbox, classes.detection_id(ours), bool(a.get("iscrowd", 0))))
            self.items: list[_CocoImage] = []
            for im in data["images"]:
                anns = per_image[int(im["id"])]
                xywh = np.array([b for b, _, _ in anns], np.float32).reshape(-1, 4)
                self.items.append(
                    _CocoImage(
                        path=self.images_dir / str(im["file_name"]),
                        boxes=xywh_to_xyxy(xywh),
                        class_ids=np.array([c for _, c, _ in anns], np.int64),
                        ignore=np.array([g for _, _, g in anns], bool),
                    )
                )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(f"{annotation_json}: malformed COCO entry ({e!r}); check the file's schema") from e
        self.skipped: dict[str, int] = dict(skipped)
        missing = [it.path.name for it in self.items if not it.path.is_file()]
        if missing:
            raise DatasetError(
                f"{len(missing)} image file(s) listed in {annotation_json} are missing from {self.images_dir}, "
                f"e.g. {missing[:3]}"
            )

    def __len__(self) -> int:
        return len(self.items)

    def letterbox_map(self, i: int) -> LetterboxMap:
        """How item ``i`` was placed in the network input (reads the image header)."""
        h, w = read_rgb(self.items[i].path).shape[:2]
        return LetterboxMap.compute(w, h, self.input_size[1], self.input_size[0], self.keep_aspect)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        img, m = letterbox(read_rgb(item.path), self.input_size[1], self.input_size[0], keep_aspect=self.keep_aspect)
        return _detection_sample(img, m, item.boxes, item.class_ids, item.ignore, self.min_size)


def _detection_sample(img: np.ndarray, m: LetterboxMap, boxes: np.ndarray, class_ids: np.ndarray,
                      ignore: np.ndarray, min_size: float) -> dict[str, Any]:
    """A letterboxed image with its source-pixel boxes mapped into it (clipped; boxes thinner than
    ``min_size`` input pixels dropped); detection supervision only."""
    h, w = img.shape[:2]
    b = m.boxes_to_dst(boxes)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    ok = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    seg = np.full((h, w), classes.IGNORE_INDEX, np.int64)
    return _to_sample(img, seg, b[ok], class_ids[ok], ignore[ok], has_det=True, has_seg=False)


def _label_key(image: Path) -> str:
    stem = image.stem
    return stem[: -len("_leftImg8bit")] if stem.endswith("_leftImg8bit") else stem


def id_lut(id_map: Mapping[int, int]) -> np.ndarray:
    """(256,) uint8 lookup: label id -> our semantic id, IGNORE_INDEX elsewhere."""
    lut = np.full(256, classes.IGNORE_INDEX, np.uint8)
    for src, dst in id_map.items():
        if not (0 <= src < 256) or not (0 <= dst < classes.NUM_SEMANTIC or dst == classes.IGNORE_INDEX):
            raise DatasetError(f"id_map entry {src} -> {dst} out of range; map 0..255 to our semantic ids")
        lut[src] = dst
    return lut


class CityscapesSegDataset(Dataset):
    """Label-image segmentation (Cityscapes layout or plain same-stem PNG labels).

    For ``<stem>_leftImg8bit.png`` the label is ``<stem>_gtFine_labelIds.png`` anywhere under
    ``labels_dir``; otherwise a label with the image's own stem (``<stem>.png``). Label ids are
    mapped with ``id_map`` (default: Cityscapes labelIds); unmapped ids become IGNORE_INDEX.
    Images without a label are skipped and listed in ``unmatched``.
    """

    def __init__(
        self,
        images_dir: str | Path,
        labels_dir: str | Path,
        input_size: tuple[int, int] = (256, 512),
        id_map: Mapping[int, int] | None = None,
        keep_aspect: bool = True,
    ) -> None:
        self.images_dir, self.labels_dir = Path(images_dir), Path(labels_dir)
        for d in (self.images_dir, self.labels_dir):
            if not d.is_dir():
                raise DatasetError(f"directory {d} not found")
        self.input_size = input_size
        self.keep_aspect = keep_aspect
        self.lut = id_lut(CITYSCAPES_TO_SEMANTIC if id_map is None else id_map)
        labels = {p.name: p for p in self.labels_dir.rglob("*.png")}
        self.pairs: list[tuple[Path, Path]] = []
        self.unmatched: list[Path] = []
        for img in list_images(self.images_dir):
            key = _label_key(img)
            label = labels.get(f"{key}_gtFine_labelIds.png") or labels.get(f"{img.stem}.png")
            if label is None or label == img:
                self.unmatched.append(img)
            else:
                self.pairs.append((img, label))
        if not self.pairs:
            raise DatasetError(
                f"no image in {self.images_dir} has a label in {self.labels_dir}; expected "
                "<stem>_leftImg8bit.png + <stem>_gtFine_labelIds.png, or the same file stem"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img_path, label_path = self.pairs[i]
        rgb = read_rgb(img_path)
        raw = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot read label image {label_path}")
        if raw.ndim != 2 or raw.dtype != np.uint8:
            raise DatasetError(
                f"label {label_path} must be a single-channel 8-bit id image (e.g. *_gtFine_labelIds.png), "
                f"got {raw.dtype} {raw.shape}"
            )
        if raw.shape != rgb.shape[:2]:
            raise DatasetError(f"label {label_path} is {raw.shape}, image {img_path} is {rgb.shape[:2]}")
        h, w = self.input_size
        img, m = letterbox(rgb, w, h, keep_aspect=self.keep_aspect)
        seg = resize_labels(self.lut[raw], m, fill=classes.IGNORE_INDEX)
        empty = np.zeros((0,), np.int64)
        return _to_sample(img, seg, np.zeros((0, 4), np.float32), empty, empty.astype(bool), False, True)


class PseudoLabelledFootage(Dataset):
    """Frames of unlabelled footage (a video file or an image folder) with the reference detector's
    detections as labels: detection targets only (segmentation is ignored), letterboxed to ``input_size``.

    The reference runs once per frame; its raw detections are cached as JSON in ``cache_dir``, keyed by
    the footage's content, the frames and the reference graph's sha256, so later runs (and other
    thresholds) skip it. Reference boxes scoring >= ``score_thresh`` are labels, those in
    ``[ignore_thresh, score_thresh)`` ignore regions. Frames are decoded once and kept in memory at the
    input size (~0.34 MB a frame at 256x448). Keep the frames you report on out of ``frames``.
    """

    def __init__(
        self,
        path: str | Path,
        frames: FrameRange | str | Sequence[int],
        input_size: tuple[int, int] = (256, 448),
        every: int = 1,
        score_thresh: float = 0.5,
        ignore_thresh: float = 0.3,
        reference_model: str = "",
        cache_dir: str | Path = "cache/pseudo_labels",
        min_size: float = 2.0,
        progress: bool = True,
    ) -> None:
        from tqdm import tqdm

        from perception.footage.reference import (
            GRAPH,
            ReferenceConfig,
            ReferenceDetector,
            find_reference_model,
            pseudo_labels,
        )

        if every < 1:
            raise DatasetError(f"every must be a positive frame step, not {every}")
        try:
            footage = Footage(path, FrameRange.parse(frames))
            ref_cfg = ReferenceConfig(reference_model, score_thresh, ignore_thresh)
            graph = find_reference_model(reference_model) / GRAPH
        except FootageError as e:
            raise DatasetError(str(e)) from e
        self.input_size, self.min_size = input_size, min_size
        self.indices = list(footage.indices)[::every]
        key = hashlib.sha256(json.dumps({
            "footage": _content_digest(footage), "frames": self.indices, "reference": _file_digest(graph),
            "min_score": ref_cfg.min_score}).encode()).hexdigest()[:16]
        stem = f"{Path(footage.info.path).stem}_{footage.start}-{footage.stop}_{every}_{key}"
        self.cache_path = Path(cache_dir) / f"{stem}.json"
        cached = self._load(self.cache_path, key)
        detector = None if cached is not None else ReferenceDetector(ref_cfg)
        h, w = input_size
        keep = set(self.indices)
        self.images: list[np.ndarray] = []
        self.maps: list[LetterboxMap] = []
        raw: list[Detections] = []
        desc = f"pseudo-labelling {Path(footage.info.path).name}" if detector else "loading footage"
        try:
            for frame in tqdm(footage, total=len(footage), desc=desc, disable=not progress, unit="frame"):
                if frame.index not in keep:
                    continue
                img, m = letterbox(frame.rgb, w, h)
                self.images.append(img)
                self.maps.append(m)
                if detector is not None:
                    raw.append(detector.detect(frame.rgb))
        except FootageError as e:
            raise DatasetError(str(e)) from e
        if cached is None:
            self._save(self.cache_path, key, footage, raw)
        else:
            raw = cached
        self.labels = [pseudo_labels(d, score_thresh, ignore_thresh) for d in raw]

    @staticmethod
    def _load(path: Path, key: str) -> list[Detections] | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") != key:
                return None
            return [Detections(np.asarray(f["boxes"], np.float32).reshape(-1, 4), np.asarray(f["scores"], np.float32),
                               np.asarray(f["class_ids"], np.int64)) for f in data["frames"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # unreadable or damaged: label again and overwrite

    def _save(self, path: Path, key: str, footage: Footage, raw: list[Detections]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = [{"frame": i, "boxes": d.boxes.round(2).tolist(), "scores": d.scores.round(4).tolist(),
                   "class_ids": d.class_ids.tolist()} for i, d in zip(self.indices, raw)]
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps({"key": key, "source": footage.info.path, "range": str(footage.range),
                                   "frames": frames}) + "\n", encoding="utf-8")
        tmp.replace(path)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        gt = self.labels[i]
        return _detection_sample(self.images[i], self.maps[i], gt.boxes, gt.class_ids, gt.ignore, self.min_size)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content_digest(footage: Footage) -> str:
    """A video's sha256; for an image folder, its files' names and sizes."""
    path = Path(footage.info.path)
    if footage.info.kind == "video":
        return _file_digest(path)
    return hashlib.sha256(json.dumps([(str(p.relative_to(path)), p.stat().st_size)
                                      for p in list_images(path)]).encode()).hexdigest()


def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack ``image`` (B, 3, H, W) and ``seg`` (B, H, W); keep ``boxes`` / ``class_ids`` /
    ``ignore`` as per-image lists; ``has_det`` / ``has_seg`` as BoolTensors (B,)."""
    if not batch:
        raise DatasetError("collate got an empty batch")
    shapes = {tuple(s["image"].shape) for s in batch}
    if len(shapes) != 1:
        raise DatasetError(f"images of different sizes in one batch {sorted(shapes)}; use the same input_size")
    return {
        "image": torch.stack([s["image"] for s in batch]),
        "seg": torch.stack([s["seg"] for s in batch]),
        "boxes": [s["boxes"] for s in batch],
        "class_ids": [s["class_ids"] for s in batch],
        "ignore": [s["ignore"] for s in batch],
        "has_det": torch.tensor([bool(s["has_det"]) for s in batch]),
        "has_seg": torch.tensor([bool(s["has_seg"]) for s in batch]),
    }


class SingleFrameClips:
    """Adapts a loader of this module to the trainer's clip format (clips of one frame).

    Items match :class:`perception.train.synthetic.SyntheticClips`: ``image`` (1, 3, H, W),
    ``seg`` (1, H, W) and the encoded detection targets with a leading time axis of 1; images
    without boxes get :func:`perception.train.targets.unsupervised_targets` (no detection loss).
    """

    def __init__(self, dataset: Any, num_classes: int = classes.NUM_DETECTION) -> None:
        self.dataset = dataset
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        from perception.train.targets import encode_targets, unsupervised_targets

        s = self.dataset[i]
        image = s["image"].numpy()
        _, h, w = image.shape
        if s["has_det"]:
            t = encode_targets(s["boxes"].numpy(), s["class_ids"].numpy(), s["ignore"].numpy(), h, w,
                               self.num_classes)
        else:
            t = unsupervised_targets(h, w, self.num_classes)
        item = {"image": image[None], "seg": s["seg"].numpy()[None], "reset": np.ones(1, dtype=bool)}
        item.update({k: v[None] for k, v in t.items()})
        return item


FOOTAGE_KEYS = {"kind", "path", "frames", "labels", "every", "score_thresh", "ignore_thresh", "reference_model",
                "cache"}


def _footage_source(spec: Mapping[str, Any], input_size: tuple[int, int]) -> PseudoLabelledFootage:
    unknown = set(spec) - FOOTAGE_KEYS
    if unknown:
        raise DatasetError(f"dataset entry {dict(spec)}: unknown key(s) {sorted(unknown)}; "
                           f"known: {sorted(FOOTAGE_KEYS)}")
    if spec.get("labels") != "reference":
        raise DatasetError(f"dataset entry {dict(spec)}: footage has no labels of its own; add `labels: reference` "
                           "(pseudo-labels from the reference detector, `bash scripts/get_real_data.sh`)")
    if "frames" not in spec:
        raise DatasetError(f"dataset entry {dict(spec)}: say which frames to train on, e.g. `frames: [0, 600]` for "
                           "vtest.avi, and keep the frames you report on (vtest 600:795) out of them")
    return PseudoLabelledFootage(
        spec["path"], spec["frames"], input_size, every=int(spec.get("every", 1)),
        score_thresh=float(spec.get("score_thresh", 0.5)), ignore_thresh=float(spec.get("ignore_thresh", 0.3)),
        reference_model=str(spec.get("reference_model", "")), cache_dir=spec.get("cache", "cache/pseudo_labels"))


def build_source(spec: Mapping[str, Any], input_size: tuple[int, int]) -> SingleFrameClips:
    """A training source from a config entry, e.g. ``{kind: coco, images: DIR, annotations: FILE}``,
    ``{kind: cityscapes, images: DIR, labels: DIR}``, or unlabelled footage pseudo-labelled by the
    reference detector: ``{kind: video, path: FILE, frames: [0, 600], labels: reference}`` (or
    ``kind: images, path: DIR``; optional ``every`` frame step, ``score_thresh`` / ``ignore_thresh``,
    ``reference_model`` and ``cache`` directory)."""
    kind = spec.get("kind")
    try:
        if kind in ("video", "images"):
            return SingleFrameClips(_footage_source(spec, input_size))
        if kind == "coco":
            return SingleFrameClips(CocoDetectionDataset(spec["images"], spec["annotations"], input_size,
                                                         spec.get("class_map")))
        if kind == "cityscapes":
            return SingleFrameClips(CityscapesSegDataset(spec["images"], spec["labels"], input_size,
                                                         spec.get("id_map")))
    except KeyError as e:
        raise DatasetError(f"dataset entry {dict(spec)} lacks key {e}") from e
    raise DatasetError(f"dataset entry {dict(spec)}: kind must be 'coco', 'cityscapes', 'video' or 'images'")

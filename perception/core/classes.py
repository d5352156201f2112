"""Class tables: the single source of truth for semantic and detection classes.

Semantic ids are what segmentation masks hold (mono8); detection ids are what
Detection2DArray class ids and LabelInfo use. Colours follow the Cityscapes palette
where a Cityscapes class exists, so overlays look familiar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    color: tuple[int, int, int]  # RGB


SEMANTIC_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "sky", (70, 130, 180)),
    ClassInfo(1, "road", (128, 64, 128)),
    ClassInfo(2, "lane_marking", (255, 255, 255)),
    ClassInfo(3, "sidewalk", (244, 35, 232)),
    ClassInfo(4, "building", (70, 70, 70)),
    ClassInfo(5, "vegetation", (107, 142, 35)),
    ClassInfo(6, "terrain", (152, 251, 152)),
    ClassInfo(7, "pole", (153, 153, 153)),
    ClassInfo(8, "traffic_sign", (220, 220, 0)),
    ClassInfo(9, "car", (0, 0, 142)),
    ClassInfo(10, "truck", (0, 0, 70)),
    ClassInfo(11, "pedestrian", (220, 20, 60)),
    ClassInfo(12, "cyclist", (255, 0, 0)),
)
SEMANTIC_NAMES: tuple[str, ...] = tuple(c.name for c in SEMANTIC_CLASSES)
NUM_SEMANTIC = len(SEMANTIC_CLASSES)
IGNORE_INDEX = 255  # label value excluded from segmentation loss and mIoU

DETECTION_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "car", (0, 0, 142)),
    ClassInfo(1, "truck", (0, 0, 70)),
    ClassInfo(2, "pedestrian", (220, 20, 60)),
    ClassInfo(3, "cyclist", (255, 0, 0)),
    ClassInfo(4, "traffic_sign", (220, 220, 0)),
)
DETECTION_NAMES: tuple[str, ...] = tuple(c.name for c in DETECTION_CLASSES)
NUM_DETECTION = len(DETECTION_CLASSES)

# detection classes one real object is often scored as at once: COCO-trained heads score a van, a pickup or an
# SUV as car AND truck (bus/truck), two boxes in the same place that class-aware NMS keeps both of. Each class maps to
# its group's first member (``detection.vehicle_nms_iou`` suppresses the lower-scoring box of a group).
VEHICLE_GROUP: tuple[str, ...] = ("car", "truck")
DETECTION_GROUP_IDS: np.ndarray = np.array(
    [DETECTION_NAMES.index(VEHICLE_GROUP[0]) if c.name in VEHICLE_GROUP else c.id for c in DETECTION_CLASSES],
    np.int64)

# semantic id -> detection id (only "thing" classes are detected)
SEMANTIC_TO_DETECTION: dict[int, int] = {8: 4, 9: 0, 10: 1, 11: 2, 12: 3}
DETECTION_TO_SEMANTIC: dict[int, int] = {v: k for k, v in SEMANTIC_TO_DETECTION.items()}


def semantic_palette() -> np.ndarray:
    """(256, 3) uint8 RGB lookup table; ids without a class map to black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for c in SEMANTIC_CLASSES:
        lut[c.id] = c.color
    return lut


def semantic_id(name: str) -> int:
    for c in SEMANTIC_CLASSES:
        if c.name == name:
            return c.id
    raise KeyError(f"unknown semantic class {name!r}; known: {', '.join(SEMANTIC_NAMES)}")


def detection_id(name: str) -> int:
    for c in DETECTION_CLASSES:
        if c.name == name:
            return c.id
    raise KeyError(f"unknown detection class {name!r}; known: {', '.join(DETECTION_NAMES)}")

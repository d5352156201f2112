"""Synthetic training data: drives rendered by ``perception.sim`` and cached on disk
(:func:`perception.sim.sequences.load_or_render`), served as clips.

Clips of ``clip_len`` consecutive frames feed both spatial (frames used independently) and
spatio-temporal (state streamed through the clip) training, so every variant sees the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.core.classes import IGNORE_INDEX, NUM_DETECTION
from perception.core.types import GroundTruth
from perception.sim.sequences import Sequence
from perception.train.augment import AugmentConfig, apply_geometry, cutout, photometric, sample_clip


@dataclass(frozen=True)
class Clip:
    """One (augmented) clip: ``rgb`` (T, H, W, 3) float32 in [0, 1], ``seg`` (T, H, W) semantic ids
    (``IGNORE_INDEX`` where a zoom-out padded), ``instance`` (T, H, W) track ids (0 = none) and the
    per-frame ground truth in the clip's pixels. Arrays may be read-only views of the sequence."""

    rgb: np.ndarray
    seg: np.ndarray
    instance: np.ndarray
    gt: tuple[GroundTruth, ...]


class SyntheticClips:
    """A torch-style dataset of clips: ``len`` and ``__getitem__`` returning stacked arrays.

    Item: ``image`` float32 (T, 3, H, W) in [0, 1]; ``seg`` int64 (T, H, W); encoded detection
    targets (``perception.train.targets.encode_targets``) stacked over T; ``reset`` bool (T,) true
    on the first frame of the clip. ``augment`` (``perception.train.augment``) is drawn once per clip.
    """

    def __init__(
        self,
        sequences: list[Sequence],
        clip_len: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        clip_stride: int = 1,
    ) -> None:
        if not sequences:
            raise ValueError("no sequences given")
        self.sequences = sequences
        self.clip_len = clip_len
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.index = [
            (si, start)
            for si, s in enumerate(sequences)
            for start in range(0, len(s) - clip_len + 1, clip_stride)
        ]
        if not self.index:
            raise ValueError(f"sequences are shorter than clip_len={clip_len}")

    def __len__(self) -> int:
        return len(self.index)

    def clip(self, i: int) -> Clip:
        """Clip ``i`` with its augmentation applied (the same transform on every frame): what
        ``__getitem__`` encodes into training targets."""
        si, start = self.index[i]
        seq = self.sequences[si]
        sl = slice(start, start + self.clip_len)
        rgb = seq.rgb[sl].astype(np.float32) * (1.0 / 255.0)
        _, h, w, _ = rgb.shape
        masks = {"seg": seq.semantic[sl], "instance": seq.instance[sl]}
        gts: list[GroundTruth] = list(seq.gt[sl])
        aug = self.augment
        if aug is not None:
            choice = sample_clip(self.rng, aug)
            rgb = photometric(rgb, choice, aug, self.rng)
            rgb, masks, gts = apply_geometry(choice.geometry(aug, h, w), rgb, masks, gts, aug,
                                             fill={"seg": IGNORE_INDEX})  # fmt: skip
            rgb, masks["seg"] = cutout(rgb, masks["seg"], aug, self.rng, IGNORE_INDEX)
        return Clip(rgb=rgb, seg=masks["seg"], instance=masks["instance"], gt=tuple(gts))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        from perception.train.targets import encode_targets, object_mask_target

        c = self.clip(i)
        _, h, w, _ = c.rgb.shape
        targets = []
        for g, inst in zip(c.gt, c.instance):
            t = encode_targets(g.boxes, g.class_ids, g.ignore, h, w, NUM_DETECTION)
            # the attention target: every object's exact pixel coverage (zoom-out padding is no object)
            t["objmask"] = object_mask_target(inst != 0)
            targets.append(t)
        item = {
            "image": np.ascontiguousarray(c.rgb.transpose(0, 3, 1, 2)),
            "seg": np.ascontiguousarray(c.seg, dtype=np.int64),
            "reset": np.arange(self.clip_len) == 0,
        }
        for k in targets[0]:
            item[k] = np.stack([t[k] for t in targets])
        return item

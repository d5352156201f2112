"""One-screen summary of `make gpu-check` (scripts/gpu_check.sh): tests, inference benchmark, training speed.

    python3 scripts/gpu_check_summary.py OUT_DIR   # reads OUT_DIR/{status.txt,tests.xml,bench_*.json,runs/}

Standard library only: it must run even where the project's dependencies do not. Prints the summary and
writes it to OUT_DIR/summary.md.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _tests(out: Path) -> list[str]:
    path = out / "tests.xml"
    if not path.is_file():
        return ["- no test report (tests.xml missing)"]
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
    if suite is None:
        return ["- unreadable test report"]
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    lines = [f"- {passed} passed, {n['failures'] + n['errors']} failed, {n['skipped']} skipped"]
    for case in suite.iter("testcase"):
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                lines.append(f"  - {tag}: {case.get('name')}: {(el.get('message') or '')[:110]}")
    return lines


def _bench(out: Path) -> list[str]:
    path = out / "bench_runtime.json"
    if not path.is_file():
        return ["- no benchmark report (bench_runtime.json missing)"]
    data = json.loads(path.read_text())
    lines = [f"{data.get('title', '')}", "",
             "| variant | median ms | speed-up vs baseline | max score diff | seg label agreement |",
             "|---|---:|---:|---:|---:|"]
    for r in data.get("rows", []):
        x, diff, seg = (r.get(k, float("nan")) for k in ("x_vs_torch_fp32", "max_score_diff", "seg_label_agreement"))
        lines.append(f"| {r['name']} | {r['median_ms']:.2f} | {x:.2f} | {diff:.1e} | {seg:.4f} |")
    lines += [f"- {n}" for n in data.get("notes", []) if n.startswith("not run")]
    return lines


def _pipeline(out: Path) -> list[str]:
    path = out / "bench_pipeline.json"
    if not path.is_file():
        return ["- no pipeline report (bench_pipeline.json missing)"]
    data = json.loads(path.read_text())
    lines = [f"{data.get('title', '')}", "",
             "| variant | infer ms | pre ms | post ms | total / infer | 4 cameras batched / unbatched |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in data.get("rows", []):
        vals = (r.get(k, float("nan")) for k in ("infer_ms", "pre_ms", "post_ms", "total/infer", "batched/unbatched"))
        lines.append(f"| {r['name']} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    lines += [f"- goal {g['what']}: {g['value']:.2f} ({g['goal']}: {'met' if g['met'] else 'NOT met'})"
              for g in data.get("goals", [])]
    return lines


def _steady_rate(run: Path) -> tuple[float, int] | None:
    """(images/s between the first and the last log entry, last step): leaves out start-up (data, cuDNN
    tuning, allocation); with one entry, the rate since the start. None when the run left no log."""
    log = run / "train_log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    if not rows:
        return None
    if len(rows) == 1:
        return float(rows[0]["img_per_s"]), int(rows[0]["step"])
    # img_per_s at step s is cumulative: s * k / elapsed(s) with k images per step, so
    # elapsed(s) = s * k / rate(s), and between two entries: rate = (s1 - s0) / (s1 / r1 - s0 / r0) (k cancels)
    (s0, r0), (s1, r1) = ((r["step"], r["img_per_s"]) for r in (rows[0], rows[-1]))
    span = s1 / r1 - s0 / r0
    return ((s1 - s0) / span if span > 0 else float("nan")), int(s1)


def _train(out: Path) -> list[str]:
    rates = {dev: _steady_rate(out / "runs" / dev) for dev in ("cuda", "cpu")}
    lines = []
    for dev, r in rates.items():
        meta = out / "runs" / dev / "model.json"
        cfg = json.loads(meta.read_text())["extra"]["train_config"] if meta.is_file() else {}
        what = (f"{cfg.get('model', '?')} {cfg.get('input_height', '?')}x{cfg.get('input_width', '?')}, "
                f"{cfg.get('precision', '?')}, {cfg.get('batch_size', 0) * cfg.get('clip_len', 0)} images/step")
        lines.append(f"- {dev}: " + (f"{r[0]:.1f} images/s, steps {r[1]} ({what})" if r else "no result"))
    gpu, cpu = rates["cuda"], rates["cpu"]
    if gpu and cpu and cpu[0] > 0:
        lines.append(f"- GPU / CPU training throughput: {gpu[0] / cpu[0]:.1f}x")
    return lines


def main(out_dir: str) -> int:
    out = Path(out_dir)
    status = (out / "status.txt").read_text().splitlines() if (out / "status.txt").is_file() else []
    head = (out / "machine.txt").read_text().strip() if (out / "machine.txt").is_file() else "machine: unknown"
    text = "\n".join([
        "# make gpu-check", "", head, "",
        "## Steps", *[f"- {s}" for s in status], "",
        "## CUDA/TensorRT-gated tests", *_tests(out), "",
        "## Inference (perception bench runtime --device cuda)", *_bench(out), "",
        "## Frame path (perception bench pipeline: pre/post on the GPU vs in numpy)", *_pipeline(out), "",
        "## Training throughput (perception train, steady state)", *_train(out), "",
    ])
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

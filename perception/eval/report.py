"""Evaluation reports: metrics.json, a markdown summary, per-class bar charts and sample overlays.

Takes the dict of :meth:`perception.eval.metrics.EvalAccumulator.compute` (or one loaded back
from ``metrics.json``, where NaN became ``null``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception.eval import EvalError
from perception.eval.metrics import to_jsonable

# (key in metrics["summary"], label, higher is better)
SUMMARY_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("mAP50", "mAP@0.5", True),
    ("mAP", "mAP@[.5:.95]", True),
    ("mIoU", "mIoU", True),
    ("flicker", "flicker (lower is better)", False),
    ("post_occlusion_recall", "post-occlusion recall", True),
    ("attention_concentration", "attention concentration (1 = uniform)", True),
    # real footage, agreement with a reference detector's pseudo-labels (perception.eval.agreement)
    ("pedestrian_recall", "**pedestrian recall** vs reference", True),
    ("pedestrian_precision", "pedestrian precision vs reference", True),
    ("recall", "recall vs reference, all classes", True),
    ("precision", "precision vs reference, all classes", True),
    ("class_agnostic_recall", "recall vs reference, any class", True),
)


def _num(v: Any) -> float:
    """A metric value as float; None/missing -> NaN."""
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def fmt(v: Any, digits: int = 3) -> str:
    x = _num(v)
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _summary(metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    s = metrics.get("summary")
    if not isinstance(s, Mapping):
        raise EvalError("metrics has no 'summary' section; pass the dict returned by EvalAccumulator.compute()")
    return s


def summary_table(metrics: Mapping[str, Any]) -> str:
    s = _summary(metrics)
    lines = ["| metric | value |", "|---|---:|"]
    lines += [f"| {label} | {fmt(s.get(key))} |" for key, label, _ in SUMMARY_ROWS if key in s]
    occ = metrics.get("occlusion", {})
    if occ:
        lines.append(f"| re-emerging instances counted | {occ.get('count', 0)} |")
    tmp = metrics.get("temporal", {})
    if tmp:
        lines.append(f"| consecutive track pairs (flicker) | {tmp.get('pairs', 0)} |")
    return "\n".join(lines)


def detection_table(metrics: Mapping[str, Any]) -> str:
    det = metrics.get("detection")
    if not det:
        return "_no detection metrics_"
    lines = ["| class | AP@0.5 | AP@[.5:.95] | GT objects |", "|---|---:|---:|---:|"]
    for name, v in det.get("per_class", {}).items():
        lines.append(f"| {name} | {fmt(v.get('AP50'))} | {fmt(v.get('AP'))} | {v.get('num_gt', 0)} |")
    lines.append(f"| **mean** | **{fmt(det.get('mAP50'))}** | **{fmt(det.get('mAP'))}** | {det.get('num_gt', 0)} |")
    areas = [k for k in det if k.startswith("mAP_")]
    if areas:
        lines.append("")
        lines.append("| size | " + " | ".join(a[4:] for a in areas) + " |")
        lines.append("|---|" + "---:|" * len(areas))
        lines.append("| mAP@[.5:.95] | " + " | ".join(fmt(det[a]) for a in areas) + " |")
    return "\n".join(lines)


def agreement_table(metrics: Mapping[str, Any]) -> str:
    """Per-class recall / precision against the reference (``metrics["agreement"]``)."""
    agr = metrics.get("agreement")
    if not agr:
        return "_no agreement metrics_"
    lines = ["| class | recall | precision | matched | reference objects | our detections |",
             "|---|---:|---:|---:|---:|---:|"]
    rows = [*agr.get("per_class", {}).items(), ("**all classes**", agr.get("all", {})),
            ("any class (boxes only)", agr.get("class_agnostic", {}))]
    for name, v in rows:
        lines.append(f"| {name} | {fmt(v.get('recall'))} | {fmt(v.get('precision'))} | {v.get('matched', 0)} "
                     f"| {v.get('num_ref', 0)} | {v.get('num_det', 0)} |")
    return "\n".join(lines)


def segmentation_table(metrics: Mapping[str, Any]) -> str:
    seg = metrics.get("segmentation")
    if not seg:
        return "_no segmentation metrics_"
    lines = ["| class | IoU |", "|---|---:|"]
    lines += [f"| {name} | {fmt(v)} |" for name, v in seg.get("per_class_iou", {}).items()]
    lines.append(f"| **mIoU** | **{fmt(seg.get('mIoU'))}** |")
    lines.append(f"| pixel accuracy | {fmt(seg.get('pixel_acc'))} |")
    return "\n".join(lines)


def _bar_chart(path: Path, title: str, series: Mapping[str, Sequence[float]], labels: Sequence[str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        vals = np.nan_to_num(np.array([_num(v) for v in values]), nan=0.0)
        ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path))


def latency_table(latency: Mapping[str, Any]) -> str:
    keys = [k for k in ("p50", "p95", "p99", "max") if k in latency]
    lines = ["| frames | " + " | ".join(f"{k} (ms)" for k in keys) + " |", "|---:|" + "---:|" * len(keys)]
    lines.append(f"| {latency.get('frames', 0)} | " + " | ".join(fmt(latency[k], 1) for k in keys) + " |")
    return "\n".join(lines)


def _histogram(path: Path, title: str, values: Sequence[float], xlabel: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(np.asarray(values, np.float64), bins=min(40, max(5, len(values) // 3)), color="#4c72b0")
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        ax.axvline(float(np.percentile(values, q)), color="k", linestyle=style, linewidth=1, label=f"p{q}")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path))


def markdown_to_html(md: str, title: str) -> str:
    """The subset of markdown these reports use (headings, tables, images, bold, lists) as one HTML page."""
    import html
    import re

    def inline(text: str) -> str:
        t = html.escape(text)
        t = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', t)
        t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)

    body: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            head, *rest = rows
            body.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rest)
                        + "</table>")
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<li>{inline(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_eval_report(
    metrics: Mapping[str, Any],
    out_dir: str | Path,
    title: str = "Evaluation",
    samples: Sequence[np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` + ``report.html``, per-class AP / IoU bar charts, a latency
    histogram (when ``metrics["latency_ms"]["values"]`` holds per-frame latencies) and ``sample_XX.png``
    overlays (RGB uint8) into ``out_dir``; returns the written paths by name."""
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"json": out / "metrics.json", "markdown": out / "report.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(to_jsonable(dict(metrics)), indent=2, allow_nan=False) + "\n")
    md = [f"# {title}", "", "## Summary", "", summary_table(metrics), ""]
    agr = metrics.get("agreement")
    if agr:
        md += [f"## Agreement with the reference detector (IoU >= {fmt(agr.get('iou_thresh'), 2)}, our score >= "
               f"{fmt(agr.get('score_thresh'), 2)})", ""]
        src, ref = metrics.get("source", {}), metrics.get("reference", {})
        if src and ref:
            md += [f"- footage: `{src.get('path')}`, frames {src.get('range')} ({src.get('num_frames')} frames, "
                   f"{src.get('width')}x{src.get('height')})",
                   f"- reference: {ref.get('description')}; its boxes scoring >= {fmt(ref.get('score_thresh'), 2)} "
                   f"are the labels, those in [{fmt(ref.get('ignore_thresh'), 2)}, {fmt(ref.get('score_thresh'), 2)}) "
                   "are don't-care (neither found nor false)",
                   "- stills: ours (the reference's labels as thin white boxes, don't-care grey) | the reference | "
                   "our attention", ""]
        md += [agreement_table(metrics), ""]
        names = list(agr.get("per_class", {}))
        paths["agreement_plot"] = out / "agreement_per_class.png"
        _bar_chart(paths["agreement_plot"], "per-class agreement with the reference",
                   {k: [agr["per_class"][n].get(k) for n in names] for k in ("recall", "precision")}, names)
        md += [f"![per-class agreement]({paths['agreement_plot'].name})", ""]
        md += ["## Detection AP against the reference's pseudo-labels (pycocotools)", "", detection_table(metrics), ""]
    else:
        md += ["## Detection (COCO box AP, pycocotools)", "", detection_table(metrics), ""]
    det = metrics.get("detection")
    if det and det.get("per_class"):
        names = list(det["per_class"])
        paths["ap_plot"] = out / "ap_per_class.png"
        _bar_chart(
            paths["ap_plot"],
            "per-class AP",
            {
                "AP@0.5": [det["per_class"][n].get("AP50") for n in names],
                "AP@[.5:.95]": [det["per_class"][n].get("AP") for n in names],
            },
            names,
        )
        md += [f"![per-class AP]({paths['ap_plot'].name})", ""]
    seg = metrics.get("segmentation")
    if seg or not agr:  # real footage has no segmentation labels
        md += ["## Segmentation", "", segmentation_table(metrics), ""]
    if seg and seg.get("per_class_iou"):
        names = list(seg["per_class_iou"])
        paths["iou_plot"] = out / "iou_per_class.png"
        _bar_chart(paths["iou_plot"], "per-class IoU", {"IoU": [seg["per_class_iou"][n] for n in names]}, names)
        md += [f"![per-class IoU]({paths['iou_plot'].name})", ""]
    if metrics.get("objects3d"):
        from perception.eval.objects import markdown as objects3d_markdown

        md += objects3d_markdown(metrics["objects3d"])
    latency = metrics.get("latency_ms")
    if isinstance(latency, Mapping) and latency.get("values"):
        md += ["## Latency (input published -> detections received)", "", latency_table(latency), ""]
        paths["latency_plot"] = out / "latency_hist.png"
        _histogram(paths["latency_plot"], "latency", latency["values"], "ms")
        md += [f"![latency histogram]({paths['latency_plot'].name})", ""]
    if samples:
        md += ["## Samples", ""]
        for i, img in enumerate(samples):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise EvalError(f"sample {i} must be an RGB uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
            p = out / f"sample_{i:02d}.png"
            if not cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                raise EvalError(f"could not write {p}; check that the directory is writable")
            paths[f"sample_{i:02d}"] = p
            md += [f"![sample {i}]({p.name})", ""]
    paths["markdown"].write_text("\n".join(md))
    paths["html"].write_text(markdown_to_html("\n".join(md), title), encoding="utf-8")
    return paths


def _best(values: list[float], higher: bool) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:
        return None
    return max(finite) if higher else min(finite)


def compare_table(named_metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table with one column per model: summary rows, then per-class AP@0.5 and IoU.
    The best value of each row is bold (lowest for flicker)."""
    if not named_metrics:
        raise EvalError("compare_table needs at least one named metrics dict")
    models = list(named_metrics)
    lines = ["| metric | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]

    def row(label: str, values: list[float], higher: bool = True) -> None:
        best = _best(values, higher)
        cells = [f"**{fmt(v)}**" if best is not None and not math.isnan(v) and v == best else fmt(v) for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for key, label, higher in SUMMARY_ROWS:
        if any(key in _summary(named_metrics[m]) for m in models):
            row(label, [_num(_summary(named_metrics[m]).get(key)) for m in models], higher)
    det_classes: list[str] = []
    seg_classes: list[str] = []
    for m in models:
        for n in named_metrics[m].get("detection", {}).get("per_class", {}):
            if n not in det_classes:
                det_classes.append(n)
        for n in named_metrics[m].get("segmentation", {}).get("per_class_iou", {}):
            if n not in seg_classes:
                seg_classes.append(n)
    for n in det_classes:
        row(
            f"AP@0.5 {n}",
            [_num(named_metrics[m].get("detection", {}).get("per_class", {}).get(n, {}).get("AP50")) for m in models],
        )
    agr_classes = list(dict.fromkeys(
        n for m in models for n in named_metrics[m].get("agreement", {}).get("per_class", {})))
    for key in ("recall", "precision"):
        for n in agr_classes:
            row(f"{key} {n}", [_num(named_metrics[m].get("agreement", {}).get("per_class", {}).get(n, {}).get(key))
                               for m in models])
    for n in seg_classes:
        row(
            f"IoU {n}",
            [_num(named_metrics[m].get("segmentation", {}).get("per_class_iou", {}).get(n)) for m in models],
        )
    return "\n".join(lines)


def memory_usage_table(usage: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of :func:`perception.eval.synthetic.memory_usage` per temporal checkpoint."""
    lines = ["Memory use (probe; frames after each drive's first):", "",
             "| model | attention on past frames | entropy / uniform | residual / features | mean abs features |",
             "|---|---:|---:|---:|---:|"]
    for name, u in usage.items():
        lines.append(f"| {name} | {u['memory_mass']:.3f} | {u['entropy']:.3f} | {u['residual']:.3f} | "
                     f"{u['feature_abs']:.4f} |")
    return "\n".join(lines) + "\n"

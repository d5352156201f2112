"""The fleet result as ``fleet.json``, ``fleet.md`` and a self-contained ``fleet.html`` (plots inline)."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception.fleet.aggregate import METRICS

MAX_PLOTTED_BAGS = 40


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def bag_table(rows: Sequence[Mapping[str, Any]]) -> str:
    cols = [*list(METRICS), "latency_p50", "latency_p95"]
    lines = ["| bag | status | frames | " + " | ".join(cols) + " | s |", "|---|---|---:|" + "---:|" * (len(cols) + 1)]
    for r in rows:
        status = r["status"] + (" (cached)" if r.get("cached") else "")
        if r["status"] != "ok":
            status += f": {r.get('error', '')} after {r.get('attempts', 1)} attempt(s)"
        lines.append(f"| {r['bag']} | {status} | {r.get('frames', '-')} | "
                     + " | ".join(_fmt(r.get(c), 1 if c.startswith("latency") else 3) for c in cols)
                     + f" | {_fmt(r.get('seconds'), 2)} |")
    return "\n".join(lines)


def fleet_table(fleet: Mapping[str, Any]) -> str:
    lines = ["| metric | fleet (frame-weighted) | worst bag |", "|---|---:|---:|"]
    for k in METRICS:
        lines.append(f"| {k} | {_fmt(fleet.get(k))} | {_fmt(fleet.get(f'{k}_worst'))} |")
    lat = fleet.get("latency_ms", {})
    lines.append(f"| latency p50 ms (median bag) | {_fmt(lat.get('median_bag_p50'), 1)} | "
                 f"{_fmt(lat.get('worst_bag_p95'), 1)} (worst p95) |")
    return "\n".join(lines)


def regression_lines(found: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"- {r['bag']}: {r['metric']} {_fmt(r['baseline'])} -> {_fmt(r['now'])}" for r in found]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(title, PNG data URI): per-bag mAP@0.5 and mIoU (worst first), seconds per bag."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = [r for r in rows if r["status"] == "ok"][:MAX_PLOTTED_BAGS]
    if not ok:
        return []
    names = [r["bag"] for r in ok]
    x = np.arange(len(ok))
    out = []
    fig = Figure(figsize=(max(5.0, 0.35 * len(ok) + 2), 3.4), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, k in enumerate(("mAP50", "mIoU")):
        vals = [r.get(k) for r in ok]
        ax.bar(x + (i - 0.5) * 0.4, [v if v is not None else 0.0 for v in vals], 0.4, label=k)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    title = f"per bag, worst first ({len(ok)} shown)"
    ax.set_title(title, fontsize=10)
    out.append((title, _png(fig)))
    fig = Figure(figsize=(5.0, 3.0), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    secs = [float(r.get("seconds") or 0.0) for r in rows if r["status"] == "ok"]
    ax.hist(secs, bins=min(30, max(5, len(secs) // 2)), color="#4c72b0")
    ax.set_xlabel("seconds per bag (worker time)", fontsize=8)
    ax.set_title("evaluation time per bag", fontsize=10)
    out.append(("evaluation time per bag", _png(fig)))
    return out


def write_fleet_report(result: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """fleet.json (everything), fleet.md and fleet.html (tables, regressions, plots inline)."""
    from perception.eval.report import markdown_to_html

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "fleet.json", "markdown": out_dir / "fleet.md", "html": out_dir / "fleet.html"}
    paths["json"].write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    fleet, rows, run = result["fleet"], result["bags"], result["run"]
    md = [f"# Fleet evaluation: {result['model']['name']}", "",
          f"{fleet['bags']} bags ({fleet['ok']} ok, {fleet['failed']} failed, {fleet['cached']} from the cache), "
          f"{fleet['frames']} frames; engine {run['engine']}, {run['workers']} worker(s), {run['wall_s']:.1f} s", "",
          "## Fleet", "", fleet_table(fleet), ""]
    if "regressions" in result:
        md += [f"## Regressions against {result.get('baseline', 'the baseline')}", ""]
        md += regression_lines(result["regressions"]) or ["- none"]
        md.append("")
    md += ["## Bags, worst first", "", bag_table(rows), ""]
    paths["markdown"].write_text("\n".join(md) + "\n", encoding="utf-8")
    figs = [f"![{title}]({uri})" for title, uri in plots(rows)]
    cut = md.index("## Bags, worst first")
    html_md = [*md[:cut], "## Plots", "", *figs, "", *md[cut:]]
    paths["html"].write_text(markdown_to_html("\n".join(html_md), f"Fleet evaluation: {result['model']['name']}"),
                             encoding="utf-8")
    return paths

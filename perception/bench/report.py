"""Benchmark reports: rows of measurements -> markdown table + JSON, with the machine named.

Every benchmark in ``perception bench`` measures all of its variants in ONE run and reports
ratios against a named baseline row, because absolute times on a shared 2-core machine are
noisy while ratios measured side by side are not.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def machine_description() -> dict[str, Any]:
    """Who ran this: CPU model and its precision path, core count, python, torch version and device."""
    from perception.core.hardware import cpu_description, cpu_has_fast_bf16, cpu_model_name

    cpu = cpu_model_name()
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_path": cpu_description(),
        "precision_auto_cpu": "bf16" if cpu_has_fast_bf16() else "fp32",
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def time_call(fn: Callable[[], object], *, warmup: int = 2, iters: int = 10) -> list[float]:
    """Wall-clock seconds of ``iters`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[k]


@dataclass
class Report:
    """A benchmark table. ``rows`` are dicts with the same keys; ``baseline`` names the row
    (by its ``name`` column) that ratio columns divide by."""

    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_description)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def add_timing(self, name: str, times_s: Sequence[float], **extra: Any) -> dict[str, Any]:
        row = {
            "name": name,
            "median_ms": 1000.0 * statistics.median(times_s),
            "p95_ms": 1000.0 * percentile(times_s, 95),
            "iters": len(times_s),
            **extra,
        }
        self.rows.append(row)
        return row

    def row(self, name: str) -> dict[str, Any]:
        for r in self.rows:
            if r.get("name") == name:
                return r
        raise KeyError(f"no row named {name!r} in report {self.title!r}")

    def ratio(self, name: str, baseline: str, key: str = "median_ms") -> float:
        return float(self.row(name)[key]) / float(self.row(baseline)[key])

    def add_ratios(self, baseline: str, key: str = "median_ms", column: str = "x_baseline") -> None:
        """Add ``column`` = row[key] / baseline[key] to every row."""
        base = float(self.row(baseline)[key])
        for r in self.rows:
            r[column] = float(r[key]) / base if key in r else float("nan")

    def add_goal(self, what: str, value: float, goal: str, met: bool) -> None:
        self.goals.append({"what": what, "value": value, "goal": goal, "met": bool(met)})

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        m = self.machine
        lines.append(
            f"Machine: {m.get('cpu')} ({m.get('cores')} cores), python {m.get('python')}, "
            f"torch {m.get('torch', '-')}" + (f", GPU {m['gpu']}" if "gpu" in m else "")
        )
        if "cpu_path" in m:
            lines += ["", f"CPU precision path: {m['cpu_path']}; `precision: auto` picks {m.get('precision_auto_cpu')} "
                          f"here (torch CPU capability {m.get('torch_cpu_capability', '-')})"]
        lines.append("")
        if self.rows:
            cols: list[str] = []
            for r in self.rows:
                cols.extend(k for k in r if k not in cols)
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|" + "---|" * len(cols))
            for r in self.rows:
                lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
            lines.append("")
        if self.goals:
            lines.append("| goal | measured | target | met |")
            lines.append("|---|---|---|---|")
            for g in self.goals:
                met = "yes" if g["met"] else "NO"
                lines.append(f"| {g['what']} | {_fmt(g['value'])} | {g['goal']} | {met} |")
            lines.append("")
        lines.extend(f"- {n}" for n in self.notes)
        return "\n".join(lines).rstrip() + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "machine": self.machine, "rows": self.rows, "goals": self.goals, "notes": self.notes
        }

    def publish(self, out_dir: str | Path, stem: str) -> None:
        """Write ``<stem>.md`` / ``.json`` under ``out_dir`` and print the table (what a bench verb ends with)."""
        md, js = self.write(out_dir, stem)
        print(self.to_markdown())
        print(f"wrote {md} and {js}")

    def write(self, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, js = out / f"{stem}.md", out / f"{stem}.json"
        md.write_text(self.to_markdown(), encoding="utf-8")
        js.write_text(json.dumps(self.to_json(), indent=2, default=float) + "\n", encoding="utf-8")
        return md, js


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # nan
            return "-"
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)

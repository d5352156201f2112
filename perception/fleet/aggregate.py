"""Per-bag rows, fleet metrics, worst bags first, and the regression check against a baseline fleet result."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from perception.fleet import FleetError

# summary metric -> higher is better
METRICS: dict[str, bool] = {"mAP50": True, "mAP": True, "mIoU": True, "flicker": False,
                            "post_occlusion_recall": True}
REGRESSION_METRICS = ("mAP50", "mIoU", "flicker", "post_occlusion_recall")


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None else math.nan


def bag_row(name: str, result: Mapping[str, Any] | None, error: str = "", cached: bool = False,
            attempts: int = 1) -> dict[str, Any]:
    """The figures of one bag that the fleet table, the plots and the regression check use."""
    row: dict[str, Any] = {"bag": name, "status": "ok" if result is not None else "failed", "cached": cached,
                           "attempts": attempts}
    if result is None:
        row["error"] = error
        return row
    metrics = result["metrics"]
    summary = metrics.get("summary", {})
    for k in METRICS:
        row[k] = summary.get(k)
    lat = metrics.get("latency_ms", {})
    row["frames"] = int(metrics.get("coverage", {}).get("scored", lat.get("frames", 0)))
    row["latency_p50"], row["latency_p95"] = lat.get("p50"), lat.get("p95")
    row["seconds"], row["bag_sha"] = result.get("seconds"), result.get("bag_sha")
    return row


def _quality(row: Mapping[str, Any]) -> float:
    vals = [_num(row.get(k)) for k in ("mAP50", "mIoU")]
    vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.inf


def worst_first(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed bags first, then by mean of mAP@0.5 and mIoU, lowest first (bags with neither last)."""
    return sorted(rows, key=lambda r: (r["status"] == "ok", _quality(r), r["bag"]))


def fleet_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Frame-weighted means of each metric over the bags that have it, their worst bag, latency, counts."""
    ok = [r for r in rows if r["status"] == "ok"]
    out: dict[str, Any] = {"bags": len(rows), "ok": len(ok), "failed": len(rows) - len(ok),
                           "cached": sum(1 for r in rows if r.get("cached")),
                           "frames": sum(int(r.get("frames") or 0) for r in ok)}
    for k, higher in METRICS.items():
        pairs = [(_num(r.get(k)), int(r.get("frames") or 0)) for r in ok]
        pairs = [(v, w) for v, w in pairs if not math.isnan(v) and w > 0]
        weight = sum(w for _, w in pairs)
        out[k] = sum(v * w for v, w in pairs) / weight if weight else None
        vals = [v for v, _ in pairs]
        out[f"{k}_worst"] = (min(vals) if higher else max(vals)) if vals else None
    p50 = sorted(_num(r.get("latency_p50")) for r in ok if r.get("latency_p50") is not None)
    p95 = [_num(r.get("latency_p95")) for r in ok if r.get("latency_p95") is not None]
    out["latency_ms"] = {"median_bag_p50": p50[len(p50) // 2] if p50 else None,
                         "worst_bag_p95": max(p95) if p95 else None}
    return out


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FleetError(f"baseline {path}: {e}; give a fleet.json written by `perception eval --bags`") from e
    if not isinstance(data, dict) or "bags" not in data or "fleet" not in data:
        raise FleetError(f"baseline {path} is not a fleet result (no 'bags'/'fleet'); give a fleet.json written by "
                         "`perception eval --bags`")
    return data


def regressions(rows: Sequence[Mapping[str, Any]], fleet: Mapping[str, Any], baseline: Mapping[str, Any],
                tolerance: float) -> list[dict[str, Any]]:
    """Each (bag, metric) that got worse than the baseline by more than ``tolerance`` (absolute), a bag that
    failed now but not then, and the fleet means (bag ``*fleet*``). Bags are matched by name."""
    base_rows = {r["bag"]: r for r in baseline["bags"]}
    found: list[dict[str, Any]] = []

    def check(bag: str, now: Mapping[str, Any], then: Mapping[str, Any]) -> None:
        for k in REGRESSION_METRICS:
            a, b = _num(then.get(k)), _num(now.get(k))
            if math.isnan(a):
                continue
            worse = (a - b) if METRICS[k] else (b - a)
            if math.isnan(b) or worse > tolerance:
                found.append({"bag": bag, "metric": k, "baseline": a, "now": None if math.isnan(b) else b})

    for r in rows:
        then = base_rows.get(r["bag"])
        if then is None:
            continue
        if r["status"] != "ok":
            if then.get("status") == "ok":
                found.append({"bag": r["bag"], "metric": "status", "baseline": "ok", "now": "failed"})
            continue
        check(r["bag"], r, then)
    check("*fleet*", fleet, baseline["fleet"])
    return found

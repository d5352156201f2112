"""``perception bench soak``: N cameras at a fixed rate into one perception_node for M minutes.

This process publishes ``--cameras`` rgb8 streams at ``--rate`` Hz each (sensor-data QoS, like a
camera driver; stamps are the publish time) into a perception_node in ANOTHER process (localhost
DDS, private domain) and watches it:

* **RSS** of the node process (``/proc/<pid>/status``), sampled every second; growth is the last
  minute's median against the median of the first minute after warm-up (goal < 5 %);
* **crashes**: the node process exiting, or a traceback / dead thread in its log (goal 0);
* **answered share**: images whose detections came back / images published, per camera;
* **drops** from the node's own counters (``/diagnostics``): stale (replaced by a newer frame),
  bad input, paused;
* **diagnostics levels** seen per window, and whether they are consistent with the answered
  share: a node answering under 80 % of its input must not report only OK, a node answering at
  least 95 % must report OK at least 80 % of the time.

The report has one row per window (``--windows``) and the goals; markdown + json. Bounded in time.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.config import parse_size
from perception.ros.nodes.params import add_model_arguments
from perception.weights import checkpoint_arg

RSS_GOAL_PCT = 5.0
WARN_BELOW = 0.8  # answering less than this share of the input, the node must not report only OK
OK_ABOVE = 0.95  # answering at least this share, it must report OK most (>= 80 %) of the time
LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("out/bench"))
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=10.0, help="frames per second per camera")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--windows", type=int, default=10, help="report rows (equal time windows)")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds excluded from the RSS baseline")
    p.add_argument("--checkpoint", default="stan_s_temporal", type=checkpoint_arg, help="path or shipped name")
    p.add_argument("--model", default="",
                   help="registry name of an untrained network instead (e.g. stan_tiny_temporal)")
    add_model_arguments(p, "192x320", "network input HxW")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def node_parameters(cameras: list[str], args: argparse.Namespace) -> dict[str, Any]:
    ih, iw = parse_size(args.input_size)
    model: dict[str, Any] = ({"model.name": args.model, "model.allow_untrained": True, "model.checkpoint": ""}
                             if args.model else {"model.checkpoint": args.checkpoint})
    return {"autostart": True, "cameras": cameras, "max_batch": len(cameras), "diagnostics_period": 1.0,
            "model.input_height": ih, "model.input_width": iw, "model.threads": args.threads,
            "model.precision": args.precision, "model.backend": args.backend, **model}


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    import cv2

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.dstack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx ^ yy) & 255]).astype(np.uint8)
    return [cv2.GaussianBlur(np.roll(base, int(rng.integers(w)), axis=1), (5, 5), 0) for _ in range(n)]


def levels_consistent(answered_share: float, levels: Counter[int]) -> tuple[bool, str]:
    """Diagnostics levels vs what the node did (see the module docstring)."""
    total = sum(levels.values())
    if not total:
        return False, "no diagnostics seen"
    ok_share = levels.get(0, 0) / total
    if answered_share < WARN_BELOW and ok_share == 1.0:
        return False, f"answered {answered_share:.0%} of the input but every diagnostics message said OK"
    if answered_share >= OK_ABOVE and ok_share < 0.8:
        return False, f"answered {answered_share:.0%} but only {ok_share:.0%} of the diagnostics said OK"
    return True, f"answered {answered_share:.0%}, {ok_share:.0%} of diagnostics OK"


def run_soak(args: argparse.Namespace, tmp: Path, log: Any = print) -> dict[str, Any]:
    """The soak itself; returns every figure (the report is built from it)."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception.ros import convert
    from perception.ros.tools.graph import Graph

    cams = [f"soak_cam{c}" for c in range(args.cameras)]
    name = "perception_soak"
    graph = Graph({name: node_parameters(cams, args)}, tmp, "soak_client")
    out: dict[str, Any] = {"cameras": cams, "windows": []}
    try:
        pubs = {c: graph.publisher(Image, f"/{c}/image_raw", qos_profile_sensor_data) for c in cams}
        for c in cams:
            graph.watch(c)
        t_start = time.monotonic()
        graph.wait_active({name: cams}, timeout=300.0)
        graph.wait_subscribed()
        log(f"node active after {time.monotonic() - t_start:.1f} s; soaking {args.cameras} cameras at {args.rate:g} Hz "
            f"for {args.minutes:g} min")
        frames = _frames(8, args.height, args.width)
        pid = graph.runs[name].pid
        duration = 60.0 * args.minutes
        period = 1.0 / args.rate
        t0 = time.monotonic()
        next_t = {c: t0 + k * period / len(cams) for k, c in enumerate(cams)}
        published: dict[str, list[int]] = {c: [] for c in cams}
        rss: list[tuple[float, int]] = []
        window = duration / max(args.windows, 1)
        w_start, w_levels_mark = t0, {k: Counter(v) for k, v in graph.levels.items()}
        w_pub_mark = 0

        def close_window(now: float) -> None:
            nonlocal w_levels_mark, w_pub_mark, w_start
            n_pub = sum(len(v) for v in published.values())
            seen: Counter[int] = Counter()
            for k, v in graph.levels.items():
                seen.update(v - w_levels_mark.get(k, Counter()))
            w_levels_mark = {k: Counter(v) for k, v in graph.levels.items()}
            out["windows"].append({"t_end_s": now - t0, "published": n_pub - w_pub_mark,
                                   "rss_mib": (rss[-1][1] / 1024) if rss else math.nan, "levels": dict(seen)})
            w_pub_mark, w_start = n_pub, now
            log(f"  {now - t0:.0f} s: {n_pub} published, RSS {out['windows'][-1]['rss_mib']:.0f} MiB, "
                f"diagnostics levels {dict(seen)}")

        next_sample = t0
        i = 0
        died = False
        while (now := time.monotonic()) < t0 + duration:
            for c in cams:
                if now >= next_t[c]:
                    stamp_ns = time.time_ns()
                    msg = convert.array_to_image(frames[i % len(frames)],
                                                 convert.make_header(stamp_ns * 1e-9, c), "rgb8")
                    i += 1
                    pubs[c].publish(msg)
                    published[c].append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
                    next_t[c] = max(next_t[c] + period, now - period)  # never a burst to catch up
            if now >= next_sample:
                next_sample += 1.0
                kib = rss_kib(pid)
                if kib is not None:
                    rss.append((now - t0, kib))
                if not graph.alive(name):
                    died = True
                    log(f"node exited with {graph.runs[name].proc.poll()} at {now - t0:.0f} s")
                    break
            if now - w_start >= window:
                close_window(now)
            graph.executor.spin_once(timeout_sec=0.001)
        graph.spin_until(lambda: False, 2.5)  # last answers and one more diagnostics period
        if sum(len(v) for v in published.values()) > w_pub_mark:
            close_window(time.monotonic())
        out["seconds"] = time.monotonic() - t0
        out["died"] = died or not graph.alive(name)
        out["exit_code"] = graph.runs[name].proc.poll()
        out["rss"] = rss
        out["published"] = {c: len(v) for c, v in published.items()}
        out["answered"] = {c: sum(s in graph.answers[c] for s in v) for c, v in published.items()}
        out["counters"] = {c: graph.values(name, c) for c in cams}
        out["levels"] = {c: dict(graph.levels.get(f"{name}: {c}", {})) for c in cams}
        out["pid"] = pid
    finally:
        graph.close()
        text = graph.runs[name].output() if name in graph.runs else ""
        out["log_problems"] = [ln for ln in text.splitlines()
                               if "Traceback" in ln or "Exception in thread" in ln or "Segmentation" in ln][:10]
        out["log"] = str(graph.runs[name].log) if name in graph.runs else ""
    return out


def rss_growth_pct(rss: list[tuple[float, int]], warmup: float) -> tuple[float, float, float]:
    """(baseline MiB, final MiB, growth %): median of the first minute after warm-up vs the last minute."""
    after = [(t, k) for t, k in rss if t >= warmup] or rss
    if not after:
        return math.nan, math.nan, math.nan
    t_first, t_last = after[0][0], after[-1][0]
    span = min(60.0, max(1.0, (t_last - t_first) / 4))
    first = statistics.median(k for t, k in after if t <= t_first + span) / 1024
    last = statistics.median(k for t, k in after if t >= t_last - span) / 1024
    return first, last, 100.0 * (last - first) / first


def report(res: dict[str, Any], args: argparse.Namespace) -> Any:
    from perception.bench.report import Report

    rep = Report(f"Soak: {args.cameras} cameras x {args.rate:g} Hz for {args.minutes:g} min into one perception_node")
    for w in res["windows"]:
        levels = ", ".join(f"{LEVEL_NAMES.get(k, k)} {v}" for k, v in sorted(w["levels"].items())) or "-"
        rep.add(name=f"window to {w['t_end_s']:.0f} s", published=w["published"], rss_mib=w["rss_mib"],
                diagnostics=levels)
    total_pub = sum(res["published"].values())
    total_ans = sum(res["answered"].values())
    share = total_ans / total_pub if total_pub else 0.0
    all_levels: Counter[int] = Counter()
    for c in res["cameras"]:
        cnt = res["counters"].get(c, {})
        lv = Counter(res["levels"].get(c, {}))
        all_levels.update(lv)
        rep.add(name=f"camera {c}", published=res["published"][c], answered=res["answered"][c],
                answered_pct=100.0 * res["answered"][c] / max(res["published"][c], 1),
                received=cnt.get("received", "-"), dropped_stale=cnt.get("dropped_stale", "-"),
                dropped_bad_input=cnt.get("dropped_bad_input", "-"), resets=cnt.get("resets", "-"),
                latency_p50_ms=cnt.get("latency_p50_ms", "-"),
                diagnostics=", ".join(f"{LEVEL_NAMES.get(k, k)} {v}" for k, v in sorted(lv.items())))
    base, final, growth = rss_growth_pct(res["rss"], min(args.warmup, 0.2 * 60 * args.minutes))
    crashes = int(res["died"]) + len(res["log_problems"])
    consistent, why = levels_consistent(share, all_levels)
    rep.add_goal(f"node RSS growth (first vs last minute after warm-up, {base:.0f} -> {final:.0f} MiB) %", growth,
                 f"< {RSS_GOAL_PCT:g}", growth < RSS_GOAL_PCT)
    rep.add_goal("crashes (node exit, traceback or dead thread in its log)", float(crashes), "0", crashes == 0)
    rep.add_goal("answered share of published images %", 100.0 * share, "reported", True)
    rep.add_goal(f"diagnostics levels consistent with the answered share ({why})", float(consistent), "yes",
                 consistent)
    model = f"untrained {args.model}" if args.model else args.checkpoint
    rep.notes.append(f"{args.width}x{args.height} rgb8, sensor-data QoS (best effort, depth 5), node defaults "
                     f"(best-effort depth-1 input, latest-frame slots); model {model} input {args.input_size} "
                     f"{args.precision} backend {args.backend} threads {args.threads or 'default'}; "
                     f"{os.cpu_count()} cores shared with the publisher; {res['seconds']:.0f} s measured")
    if res["died"]:
        rep.notes.append(f"node exited with code {res['exit_code']}; log {res['log']}")
    for line in res["log_problems"]:
        rep.notes.append(f"node log: {line[:300]}")
    return rep


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    res = run_soak(args, tmp)
    rep = report(res, args)
    rep.publish(args.out, "bench_soak")
    return 0 if all(g["met"] for g in rep.goals) else 1

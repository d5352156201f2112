"""``perception vehicle``: deploy perception in a vehicle.

    perception vehicle install --config vehicle.yaml --prefix DIR   validate, prebuild + warm engines, write units
    perception vehicle validate --config vehicle.yaml                only validate the rig file
    perception vehicle check --config vehicle.yaml [--prefix DIR]   pre-flight on the live graph
                                                                    (perception.ros.tools.vehicle)
    perception vehicle incidents --dir DIR [--check] [--render NAME|latest --out FILE.mp4 --camera CAM]
                                                                    the incident recorder's snapshots

The unit then runs under systemd (``systemctl link DIR/lib/systemd/system/<name>.service``, ``enable --now``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from perception.vehicle.errors import VehicleError


def add_arguments(p: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """install + validate; returns the sub-parsers (``perception.ros.tools.vehicle`` adds ``check``)."""
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    inst = sub.add_parser("install", help="validate the rig, prebuild and warm the engines, write systemd units")
    inst.add_argument("--config", required=True, help="the rig YAML (see config/vehicle.example.yaml)")
    inst.add_argument("--prefix", required=True, help="install root: etc/perception, var/cache/perception, "
                      "lib/systemd/system under it (e.g. / or /opt/perception)")
    inst.add_argument("--python", default=sys.executable, help="the interpreter the unit runs (default: this one)")
    inst.add_argument("--warm-runs", type=int, default=3, help="warm-up inferences timed after loading the engine")
    inst.add_argument("--no-verify", action="store_true", help="skip `systemd-analyze verify` of the units")
    inst.add_argument("--json", action="store_true", help="print the install report as JSON")
    val = sub.add_parser("validate", help="validate the rig file only (every problem, each with its fix)")
    val.add_argument("--config", required=True)
    inc = sub.add_parser("incidents", help="list the incident recorder's snapshots; render one as an overlay video")
    where = inc.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", help="the snapshots' directory (recording.directory)")
    where.add_argument("--config", help="the rig YAML: its recording.directory")
    inc.add_argument("--render", metavar="NAME", default="",
                     help="render this snapshot (a name from the list, or `latest`) to --out")
    inc.add_argument("--out", default="", help="the video file (default: <snapshot>/overlay_<camera>.mp4)")
    inc.add_argument("--camera", default="", help="the camera namespace to render (default: the first)")
    inc.add_argument("--check", action="store_true", help="also read every snapshot (CRCs) and report each "
                     "topic's window and gaps")
    inc.add_argument("--json", action="store_true")
    return sub


def incidents_main(args: argparse.Namespace) -> int:
    """``perception vehicle incidents``: the table (time, trigger, duration, size, topics); --check; --render."""
    from dataclasses import asdict

    from perception.bag import BagError
    from perception.vehicle import incidents

    directory = args.dir
    if args.config:
        from perception.vehicle.config import load_rig

        directory = load_rig(args.config).recording.directory
    try:
        found = incidents.list_incidents(directory)
        report: dict[str, object] = {"directory": str(directory), "incidents": [
            {k: (str(v) if k == "path" else v) for k, v in asdict(i).items() if k != "index"} for i in found],
            "in_progress": incidents.in_progress(directory)}
        if not args.json:
            print(incidents.table(found) if found else f"no snapshots in {directory}")
            if report["in_progress"]:
                print(f"being written (or left by a killed recorder): {', '.join(incidents.in_progress(directory))}")
        if args.check:
            checks = {}
            for i in found:
                _, rows = incidents.window_report(i.path)
                checks[i.name] = [asdict(r) for r in rows]
                if not args.json:
                    print(f"\n{i.name}: CRCs ok, window {i.duration_s:.1f} s")
                    for r in rows:
                        print(f"  {r.topic:<42} {r.messages:>6} msgs  first +{r.first_s:.3f} s  last -{r.last_s:.3f} s"
                              f"  period {r.median_period_ms:.1f} ms  missing {r.missing}  outside {r.outside}")
            report["checks"] = checks
        if args.render:
            if not found:
                raise VehicleError(f"no snapshot in {directory} to render")
            chosen = found[-1] if args.render == "latest" else next((i for i in found if i.name == args.render), None)
            if chosen is None:
                raise VehicleError(f"no snapshot named {args.render!r} in {directory}; `perception vehicle "
                                   "incidents` lists them")
            out = args.out or str(chosen.path / f"overlay_{args.camera or 'camera'}.mp4")
            rendered = incidents.render(chosen.path, out, args.camera)
            report["rendered"] = rendered
            if not args.json:
                print(f"rendered {rendered['frames']} frames of {rendered['camera']} ({rendered['with_detections']} "
                      f"with detections, {rendered['with_attention']} with attention) to {rendered['video']}")
    except (VehicleError, BagError) as e:
        print(f"perception vehicle incidents: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return 0


def main(args: argparse.Namespace) -> int:
    from perception.vehicle.config import load_rig
    from perception.vehicle.errors import RigConfigError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "incidents":
        try:
            return incidents_main(args)
        except RigConfigError as e:
            print(f"perception vehicle: {e}", file=sys.stderr)
            return 2
    try:
        rig = load_rig(args.config)
    except RigConfigError as e:
        print(f"perception vehicle: {e}", file=sys.stderr)
        return 2
    if args.action == "validate":
        print(f"{args.config}: rig {rig.name!r} is valid ({len(rig.cameras)} camera(s), backend {rig.backend.name} "
              f"on {rig.backend.device}, {rig.model.precision})")
        return 0
    from perception.runtime.base import BackendError
    from perception.vehicle.install import install

    def note(text: str) -> None:
        if not args.json:
            print(f"[install] {text}", flush=True)

    try:
        report = install(rig, args.prefix, python=args.python, warm_runs=args.warm_runs, verify=not args.no_verify,
                         note=note)
    except (VehicleError, BackendError, OSError) as e:
        print(f"perception vehicle install: FAILED: {e}", file=sys.stderr)
        return 1
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(report), indent=2))
    else:
        for s in report.steps:
            print(f"  {s['step']:<9} {s['seconds']:8.2f} s  {s['detail']}")
        print(f"unit: {report.unit}\nparams: {report.params}\nverify: {report.verify}")
        if report.recorder_unit:
            print(f"incident recorder unit: {report.recorder_unit}")
    if report.verify not in ("ok",) and not report.verify.startswith("skipped"):
        print("perception vehicle install: FAILED: systemd-analyze verify complained (above)", file=sys.stderr)
        return 1
    return 0

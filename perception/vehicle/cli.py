"""``perception vehicle``: deploy perception in a vehicle.

    perception vehicle install --config vehicle.yaml --prefix DIR   validate, prebuild + warm engines, write units
    perception vehicle validate --config vehicle.yaml                only validate the rig file
    perception vehicle check --config vehicle.yaml [--prefix DIR]   pre-flight on the live graph
                                                                    (perception.ros.tools.vehicle)

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
    return sub


def main(args: argparse.Namespace) -> int:
    from perception.vehicle.config import load_rig
    from perception.vehicle.errors import RigConfigError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
    if report.verify not in ("ok",) and not report.verify.startswith("skipped"):
        print("perception vehicle install: FAILED: systemd-analyze verify complained (above)", file=sys.stderr)
        return 1
    return 0

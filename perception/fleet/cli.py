"""`perception eval`: every evaluation of :mod:`perception.eval.cli`, plus ``--bags DIR|GLOB|LIST ...`` (the
fleet evaluation: many bags, one task each). The verb is served from here because the fleet builds on
:mod:`perception.eval`: the eval package cannot import the fleet without a circle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perception.core.config import ConfigError, frame_count
from perception.fleet import FleetError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from perception.eval.cli import add_arguments as add_eval_arguments

    add_eval_arguments(p)
    add_fleet_arguments(p)


def main(args: argparse.Namespace) -> int:
    if args.bags:
        return fleet_main(args)
    from perception.eval.cli import main as eval_main

    return eval_main(args)


def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    """``--bags`` and the options that go with it."""
    g = p.add_argument_group("fleet (--bags)")
    g.add_argument("--bags", nargs="+", default=None, metavar="DIR|GLOB|LIST",
                   help="evaluate many drive bags, one task per bag: bag folders, folders of bags, globs (quoted), "
                        "list files (one bag per line) or synthetic:FIRST:LAST (the built-in synthetic drives of "
                        "those seeds, --frames/--width/--height, rendered once into --cache-dir/bags); "
                        "--checkpoint NAME or --untrained REGISTRY_NAME")
    g.add_argument("--workers", type=int, default=2, help="worker processes (single-threaded each; default 2)")
    g.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="local: a process pool, no engine needed (default); dask: Dask distributed "
                        "(pip install '.[fleet]'), a LocalCluster on 127.0.0.1 or --address")
    g.add_argument("--address", default="", help="with --engine dask: an existing scheduler, tcp://HOST:PORT")
    g.add_argument("--ros", action="store_true",
                   help="evaluate each bag through a real ROS graph (`perception replay`, private domain per worker)")
    g.add_argument("--keep-replays", default="",
                   help="with --ros: keep each bag's recorded outputs in DIR/<bag name> (replay many bags)")
    g.add_argument("--untrained", default="", help="fleet: a registry network with random weights (plumbing)")
    g.add_argument("--retries", type=int, default=1, help="fleet: retries of a bag whose worker crashed or failed")
    g.add_argument("--baseline", type=Path, default=None,
                   help="fleet: a previous fleet.json; exit 1 naming every bag that regressed beyond --tolerance")
    g.add_argument("--tolerance", type=float, default=0.02, help="fleet: allowed absolute metric drop (0.02)")
    g.add_argument("--result-cache", default="runs/fleet/cache",
                   help="fleet: finished bags' results, keyed by bag hash + model sha + config ('' disables)")


def fleet_main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from perception.fleet.aggregate import load_baseline
    from perception.fleet.bags import SYNTHETIC, discover_bags, synthetic_bags
    from perception.fleet.config import FleetConfig
    from perception.fleet.executors import Outcome
    from perception.fleet.report import fleet_table, regression_lines, write_fleet_report
    from perception.fleet.run import RunOptions, run_fleet

    try:
        if args.checkpoint and len(args.checkpoint) > 1:
            raise FleetError("--bags evaluates one --checkpoint; run it once per checkpoint and compare with "
                             "--baseline")
        cfg = FleetConfig(checkpoint=args.checkpoint[0] if args.checkpoint else "", untrained=args.untrained,
                          input_size=(args.height, args.width), score_thresh=args.score_thresh,
                          mode="ros" if args.ros else "offline", retries=args.retries,
                          keep_replays=str(Path(args.keep_replays).resolve()) if args.keep_replays else "")
        if args.workers < 1:
            raise FleetError("--workers must be at least 1")
        specs = []
        for spec in args.bags:
            if spec.startswith(SYNTHETIC):
                root = Path(args.cache_dir or "cache/sim") / "bags"
                specs += [str(b) for b in synthetic_bags(spec, root, frame_count(args.frames, 20), args.width,
                                                         args.height, progress=not args.no_progress)]
            else:
                specs.append(spec)
        bags = discover_bags(specs)
        baseline = load_baseline(args.baseline) if args.baseline else None
        bar = tqdm(total=len(bags), desc="bags", unit="bag", disable=args.no_progress)
        failed = 0

        def progress(out: Outcome) -> None:
            nonlocal failed
            failed += out.result is None
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(1)

        result = run_fleet(bags, cfg, RunOptions(args.engine, args.workers, args.address, args.result_cache),
                           progress, baseline, args.tolerance)
        bar.close()
        if baseline is not None:
            result["baseline"] = str(args.baseline)
        paths = write_fleet_report(result, args.out)
    except (FleetError, FileNotFoundError, ConfigError) as e:
        print(f"perception eval: error: {e}", file=sys.stderr)
        return 2
    fleet, run = result["fleet"], result["run"]
    print(fleet_table(fleet))
    print(f"{fleet['bags']} bags: {fleet['ok']} ok, {fleet['failed']} failed, {fleet['cached']} cached; "
          f"{run['wall_s']:.1f} s on {run['workers']} {run['engine']} worker(s)")
    for r in result["bags"]:
        if r["status"] != "ok":
            print(f"FAILED {r['bag']}: {r['error']} (after {r['attempts']} attempt(s))")
    print(f"wrote {paths['json']} and {paths['html']}")
    rc = 1 if fleet["failed"] else 0
    if result.get("regressions"):
        print(f"REGRESSION against {args.baseline}:")
        print("\n".join(regression_lines(result["regressions"])))
        rc = 1
    return rc

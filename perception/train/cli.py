"""`perception train`: train a network on the synthetic world (config/train.yaml + overrides); with ``--graft``
train what is new on the real-eyed network (config/graft.yaml, :mod:`perception.train.graft`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "train.yaml"
GRAFT_CONFIG = DEFAULT_CONFIG.with_name("graft.yaml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--graft", action="store_true",
                   help="the real-eyed network (stan_mbv2): frozen COCO trunk, train attention, segmentation and "
                        "the box predictors on synthetic drives while distilling the original detector on real "
                        f"frames (GraftConfig fields, default {GRAFT_CONFIG.name})")
    p.add_argument("--config", type=Path, default=None,
                   help=f"YAML file of TrainConfig fields (default {DEFAULT_CONFIG.name})")
    p.add_argument("--model", help="registered model name, e.g. stan_s_temporal, stan_s, stan_s_noattn")
    p.add_argument("--steps", type=int)
    p.add_argument("--out", help="output directory for the checkpoint and logs")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (YAML value), repeatable; nested: sim.degrade=true")
    p.add_argument("--resume", action="store_true", help="continue from <out>/trainer_state.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_config(args: argparse.Namespace) -> dict[str, object]:
    from perception.core.config import apply_overrides, load_yaml_mapping

    path = args.config or (GRAFT_CONFIG if getattr(args, "graft", False) else DEFAULT_CONFIG)
    base = load_yaml_mapping(path) if path.exists() else {}
    flags = [f"{k}={v}" for k, v in (("model", args.model), ("steps", args.steps), ("out", args.out),
                                     ("device", args.device)) if v is not None]
    if getattr(args, "graft", False) and args.device not in (None, "cpu", "auto"):
        flags = [f for f in flags if not f.startswith("device=")]  # the graft trains on the CPU
    return apply_overrides(base, [*flags, *args.overrides])


def main(args: argparse.Namespace) -> int:
    from perception.core.config import ConfigError
    from perception.train.datasets import DatasetError
    from perception.train.trainer import TrainConfig, TrainError, train

    command = "perception " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        if args.graft:
            from perception.train import graft

            stem = graft.train(graft.GraftConfig.from_dict(resolve_config(args)), resume=args.resume, command=command)
        else:
            cfg = TrainConfig.from_dict(resolve_config(args))
            stem = train(cfg, resume=args.resume, progress=not args.no_progress, command=command)
    except (ConfigError, DatasetError, TrainError) as e:
        print(f"perception train: error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoint: {stem}.safetensors (+ {stem.name}.json)")
    return 0

"""`perception <verb>`: one entry point for every tool of the project.

Each verb lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int``.
Modules are imported only when their verb runs (or for ``--help``), so the CLI starts fast and a
verb's heavy dependencies (torch, open3d) are loaded only when needed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "sim": ("perception.sim.cli", "render synthetic drives (frames, ground truth, benchmark)"),
    "train": ("perception.train.cli", "train a network on the synthetic world or your data"),
    # perception.eval.cli's evaluations plus --bags (fleet), which sits above eval and so adds itself
    "eval": ("perception.fleet.cli", "evaluate a checkpoint: mAP, mIoU, flicker, occlusion, attention"),
    "track-eval": ("perception.eval.track_cli", "3D tracker on synthetic drives: IDF1, MOTA, IDSW, velocity error"),
    "export": ("perception.deploy.export_cli", "export a checkpoint to ONNX (fp32, INT8 QDQ) with parity checks"),
    "build-engine": ("perception.deploy.build_engine_cli", "prebuild a TensorRT engine of an exported model"),
    "bench": ("perception.bench.cli", "benchmarks (model, sim): reports with ratios from one run"),
    "demo": ("perception.demo", "the main job: synthetic drive -> perception -> overlay video + metrics"),
    "run": ("perception.ros.tools.run", "run a launch file's ROS 2 nodes without ros2 launch (localhost DDS)"),
    "replay": ("perception.ros.tools.replay",
               "play a rosbag2 bag into the perception graph, record outputs, golden check"),
    "bag": ("perception.bag.repair", "rosbag2 bags: verify every CRC, repair a crash-truncated or damaged MCAP bag"),
    "vehicle": ("perception.ros.tools.vehicle", "in-vehicle: install (engines, systemd units), pre-flight check"),
}


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the verb named in ``argv`` gets its module imported for its arguments."""
    requested = {a for a in argv[:2] if a in VERBS}
    parser = argparse.ArgumentParser(prog="perception", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb, (module, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if verb in requested:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

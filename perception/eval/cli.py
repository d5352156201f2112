"""`perception eval`: metrics of one or more checkpoints on unseen synthetic drives, with a report;
or (``--bag``) of a replay's recorded outputs against the ground truth in the input bag, and
(``--golden``) a golden regression check of those outputs against an expected bag; or
(``--video`` / ``--images``) agreement with a reference detector on unlabelled real footage, or
(``--images DIR --labels FILE``) recall / precision on hand-labelled real images.

The verb's entry module is :mod:`perception.fleet.cli`: it adds ``--bags`` (many bags, one task each) to
these options and hands everything else to :func:`main` here (fleet evaluation builds on this package,
so it sits above it)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from perception.core.config import ConfigError, frame_count, input_size_arg, seed_range, size_arg
from perception.footage import REFERENCES
from perception.weights import checkpoint_arg

REFINE_MODES = ("on", "off", "both")


def refine_config(args: argparse.Namespace) -> Any:
    """The node's default refinement (``refine.*``) turned on, with ``--refine-max-regions / --refine-max-pixels /
    --refine-zoom-out`` where given (RefineError when out of range). Without the node's deadline
    (``refine.deadline_ms``: the camera's frame period): every planned crop runs, so a figure does not depend on how
    busy the machine was -- what the node does when its CPU or GPU has the time."""
    from perception.pipeline.refine import NODE_REFINE

    return replace(NODE_REFINE, enabled=True, deadline_ms=0.0,
                   max_regions=NODE_REFINE.max_regions if args.refine_max_regions is None else args.refine_max_regions,
                   max_pixels=NODE_REFINE.max_pixels if args.refine_max_pixels is None else args.refine_max_pixels,
                   zoom_out=NODE_REFINE.zoom_out if args.refine_zoom_out is None else args.refine_zoom_out)


def _is_temporal(checkpoint: Path) -> bool:
    from perception.models.checkpoint import read_checkpoint_info
    from perception.weights import resolve_checkpoint

    return bool(read_checkpoint_info(resolve_checkpoint(checkpoint))["config"].get("temporal"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", action="append", type=checkpoint_arg,
                   help="shipped name (stan_mbv2, stan_s_temporal, ...) or checkpoint stem / .safetensors path; "
                        "repeat to compare several")
    p.add_argument("--bag", type=Path, default=None,
                   help="evaluate this output bag (`perception replay --out`) instead of a checkpoint")
    p.add_argument("--gt", type=Path, default=None, help="with --bag: the input bag holding the ground truth")
    p.add_argument("--golden", type=Path, default=None,
                   help="with --bag: compare it with this expected output bag; exit 1 on regression")
    p.add_argument("--no-verify", action="store_true", help="with --bag: skip the bags' whole-file CRC check")
    p.add_argument("--box-iou", type=float, default=0.9, help="golden: minimum IoU of matching boxes")
    p.add_argument("--score-delta", type=float, default=0.05, help="golden: maximum score difference")
    p.add_argument("--mask-agreement", type=float, default=0.98, help="golden: minimum share of equal mask pixels")
    footage = p.add_mutually_exclusive_group()
    footage.add_argument("--video", type=Path, default=None,
                         help="real footage: measure agreement with --reference on this video file")
    footage.add_argument("--images", type=Path, default=None, help="real footage: a folder of images (sorted)")
    p.add_argument("--onnx", type=Path, action="append", default=[],
                   help="with --labels: also evaluate this exported model (fp32 or INT8, `perception export`) on ONNX "
                        "Runtime; repeatable")
    p.add_argument("--labels", type=Path, default=None,
                   help="with --images: labels to score recall / precision per class at IoU 0.5 against, instead "
                        "of agreement with the reference: the project's JSON (test/data/real_val/labels.json), a "
                        "COCO detection JSON (instances_*.json), a BDD100K detection JSON, a KITTI label_2 "
                        "directory or a Cityscapes gtFine directory (classes mapped as "
                        "perception/eval/label_formats.py says)")
    p.add_argument("--canvas", type=float, default=1.0, metavar="K",
                   help="with --labels: put each image, at its own pixel size, on a grey canvas K times larger (a "
                        "larger camera's view: the network sees the objects K times smaller; default 1)")
    p.add_argument("--camera", type=size_arg, default=None, metavar="HxW",
                   help="with --labels: frame each image as an HxW camera would (shrunk to fit, never enlarged, on a "
                        "grey frame of that size; e.g. 375x1242, a wide 1242 x 375 camera); instead of --canvas / "
                        "--shrink")
    p.add_argument("--shrink", type=float, default=1.0, metavar="S",
                   help="with --labels: resize each image (and its labels) by S in (0, 1] before placing it on its "
                        "canvas: the scene S times as large, as if farther away (--shrink 0.5: 32-64 px objects "
                        "become 16-32 px ones, the band refinement is for); default 1")
    p.add_argument("--closer", type=float, default=1.0, metavar="F",
                   help="with --labels: the scene F times closer, in [1, 8]: each image enlarged F times, its centre "
                        "framed at its own size (boxes cut by the frame clipped; under half left in it: don't "
                        "care) -- near vehicles, which outgrow a 300x300-trained network; before --canvas / "
                        "--camera; default 1")
    p.add_argument("--input-size", type=input_size_arg, default=None, metavar="HxW",
                   help="with --labels: run the checkpoints at this network input size (the node's "
                        "model.input_height / input_width; multiples of 32; default: the checkpoint's)")
    p.add_argument("--reference-only", action="store_true",
                   help="with --labels: evaluate only the reference detector (no --checkpoint needed)")
    p.add_argument("--no-reference", action="store_true",
                   help="with --labels: do not evaluate the reference detector beside the checkpoints")
    p.add_argument("--reference", choices=REFERENCES, default="ssd",
                   help="with --video/--images: the reference detector whose detections are the pseudo-labels "
                        "(ssd: SSD-MobileNetV2 COCO via cv2.dnn, evaluation only; `bash scripts/get_real_data.sh`)")
    p.add_argument("--reference-model", default="", help="folder with the reference's .pb + .pbtxt (default: found)")
    p.add_argument("--reference-thresh", type=float, default=0.5,
                   help="reference boxes scoring at least this are labels (default 0.5)")
    p.add_argument("--reference-ignore", type=float, default=0.3,
                   help="reference boxes scoring in [this, --reference-thresh) are don't-care (default 0.3)")
    p.add_argument("--iou", type=float, default=0.5, help="with --video/--images: IoU of a match (default 0.5)")
    p.add_argument("--stills", type=int, default=4, help="with --video/--images: overlay stills per checkpoint")
    p.add_argument("--fps", type=float, default=None, help="with --images: frame rate (default 10)")
    p.add_argument("--seeds", type=seed_range, default=(1000, 1008), help="drive seeds FIRST:LAST (default 1000:1008)")
    p.add_argument("--frames", default=None,
                   help="synthetic: frames per drive (default 40); --video/--images: which frames, FIRST:LAST "
                        "(LAST exclusive, e.g. 600:795), FIRST: or a count N (default: all)")
    p.add_argument("--width", type=int, default=448)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--score-thresh", type=float, default=0.3, help="score threshold for flicker/recall")
    p.add_argument("--cache-dir", default="cache/sim", help="rendered-drive cache ('' disables)")
    p.add_argument("--out", type=Path, default=Path("runs/eval"))
    p.add_argument("--annotate", action="store_true",
                   help="store the summary figures and this command in each checkpoint's JSON (extra.eval)")
    p.add_argument("--memory-ablation", action="store_true",
                   help="also evaluate each temporal checkpoint with its memory reset at every frame (same weights, "
                        "no past): what the temporal path contributes")
    p.add_argument("--objects3d", action="store_true",
                   help="also render the drives with the LiDAR and score the 3D object pipeline (fusion + tracking): "
                        "centre-distance AP, ATE/ASE/AOE, IDF1/MOTA, velocity error, camera-only range error, ms")
    p.add_argument("--lidar-beams", type=int, default=32, help="with --objects3d: LiDAR beams (default 32)")
    p.add_argument("--refine", nargs="?", const="both", choices=REFINE_MODES, default=None,
                   help="attention-guided refinement (the node's refine.*: up to --refine-max-regions "
                        "native-resolution crops where the attention map points). --labels: on (default: the "
                        "node's refine.enabled), off (one pass), both (a row each; `--refine` alone). Synthetic "
                        "drives / --objects3d: on or both turn it on, default off (it needs frames larger than the "
                        "network input, e.g. --width 1280 --height 720)")
    p.add_argument("--refine-max-regions", type=int, default=None,
                   help="with refinement: crops per frame at most (default: the node's refine.max_regions)")
    p.add_argument("--refine-zoom-out", type=float, default=None, metavar="Z",
                   help="with refinement: the zoom-out pass's scale of pass 1 for objects too large for it (0: off; "
                        "default: the node's refine.zoom_out)")
    p.add_argument("--refine-max-pixels", type=int, default=None,
                   help="with refinement: network-input pixels per frame at most, pass 1 included (0: no cap; "
                        "default: the node's refine.max_pixels)")
    p.add_argument("--no-progress", action="store_true")


def bag_main(args: argparse.Namespace) -> int:
    """``--bag OUT [--gt IN] [--golden EXPECTED]``: metrics and/or golden regression from bags."""
    from perception.bag import BagError
    from perception.bag.io import verify_on_read
    from perception.eval.bags import evaluate_bags, golden_compare
    from perception.eval.golden import Tolerances
    from perception.eval.report import summary_table, write_eval_report

    verify_on_read(not args.no_verify)

    if args.gt is None and args.golden is None:
        print("perception eval: error: --bag needs --gt INPUT_BAG (metrics) and/or --golden EXPECTED_BAG",
              file=sys.stderr)
        return 2
    rc = 0
    try:
        if args.gt is not None:
            metrics, samples = evaluate_bags(args.bag, args.gt, args.score_thresh)
            paths = write_eval_report(metrics, args.out, title=f"Evaluation of {args.bag.name} against {args.gt.name}",
                                      samples=samples)
            print(summary_table(metrics))
            lat = metrics["latency_ms"]
            if lat.get("frames"):
                print(f"latency ms: p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, p99 {lat['p99']:.1f} "
                      f"({lat['frames']} outputs)")
            print(f"coverage: {metrics['coverage']}")
            o3d = metrics.get("objects3d_bag", {})
            if o3d.get("scored"):
                ap = {n: round(r["AP@2m"], 3) for n, r in o3d["detection"]["per_class"].items() if r["num_gt"]}
                print(f"3D objects ({o3d['frames']} frames): AP@2m {ap}, IDF1 {o3d['tracking']['IDF1']:.3f}, "
                      f"MOTA {o3d['tracking']['MOTA']:.3f}")
            elif o3d:
                print(f"3D objects not scored: {o3d['reason']}")
            print(f"wrote {paths['markdown']} and {paths['html']}")
        if args.golden is not None:
            report = golden_compare(args.golden, args.bag, Tolerances(args.box_iou, args.score_delta,
                                                                       args.mask_agreement))
            print(report.summary())
            rc = 0 if report.ok else 1
    except BagError as e:
        print(f"perception eval: error: {e}", file=sys.stderr)
        return 2
    return rc


def _annotate(ckpt: Path, key: str, metrics: dict[str, object], extra: dict[str, object]) -> None:
    from perception.eval.metrics import to_jsonable
    from perception.models.checkpoint import annotate_checkpoint

    command = "perception " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    annotate_checkpoint(ckpt, key, to_jsonable({"command": command, **extra, "summary": metrics["summary"]}))


def footage_main(args: argparse.Namespace) -> int:
    """``--video FILE | --images DIR``: agreement of each checkpoint with the reference detector."""
    from perception.eval.agreement import AgreementConfig, evaluate_agreement
    from perception.eval.metrics import to_jsonable
    from perception.eval.report import compare_table, write_eval_report
    from perception.footage import FootageError
    from perception.footage.reference import ReferenceConfig, ReferenceDetector
    from perception.footage.source import Footage
    from perception.models.checkpoint import CheckpointError
    from perception.weights import resolve_checkpoint

    try:
        footage = Footage(args.video or args.images, args.frames, fps=args.fps)
        reference = ReferenceDetector(ReferenceConfig(args.reference_model, args.reference_thresh,
                                                      args.reference_ignore))
        ckpts = [resolve_checkpoint(c) for c in args.checkpoint]
        results, stills, ref_dets = evaluate_agreement(
            ckpts, footage, reference, AgreementConfig(args.score_thresh, args.iou, args.stills),
            progress=not args.no_progress)
    except (FootageError, CheckpointError, FileNotFoundError) as e:
        print(f"perception eval: error: {e}", file=sys.stderr)
        return 2
    for (name, metrics), ckpt in zip(results.items(), ckpts):
        paths = write_eval_report(metrics, args.out / name, samples=stills[name],
                                  title=f"{metrics['model']} ({name}) against {reference.name} on "
                                        f"{Path(footage.info.path).name} frames {footage.range}")
        print(f"wrote {paths['markdown']}")
        if args.annotate:
            _annotate(ckpt, "real_footage", metrics, {"source": metrics["source"], "reference": metrics["reference"]})
    args.out.mkdir(parents=True, exist_ok=True)
    frames = [{"frame": i, "boxes": d.boxes.round(1), "scores": d.scores.round(3), "class_ids": d.class_ids}
              for i, d in zip(footage.indices, ref_dets)]
    (args.out / "reference.json").write_text(json.dumps(to_jsonable(
        {"reference": next(iter(results.values()))["reference"], "frames": frames})) + "\n", encoding="utf-8")
    table = compare_table(results)
    (args.out / "comparison.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "comparison.json").write_text(json.dumps(to_jsonable(results), indent=2) + "\n", encoding="utf-8")
    print(table)
    return 0


def labelled_main(args: argparse.Namespace) -> int:
    """``--images DIR --labels FILE``: our checkpoints (at the node's defaults) and the reference against
    hand-drawn labels: a table, report.json and one overlay still per image in --out."""
    import cv2

    from perception.eval import EvalError
    from perception.eval.labelled import (
        closer,
        evaluate,
        load_label_source,
        object_counts,
        on_camera,
        on_canvas,
        table,
    )
    from perception.eval.labelled_run import (
        NodeDefaults,
        latency,
        node_refine,
        overlay,
        read_image,
        run_checkpoint,
        run_reference,
    )
    from perception.eval.metrics import to_jsonable
    from perception.footage import FootageError
    from perception.models.checkpoint import CheckpointError
    from perception.pipeline.refine import RefineError
    from perception.runtime.base import BackendError

    if args.images is None or args.labels is None:
        print("perception eval: error: labelled evaluation needs both --images DIR and --labels FILE",
              file=sys.stderr)
        return 2
    if not args.checkpoint and not args.onnx and not args.reference_only:
        print("perception eval: error: --labels needs --checkpoint (e.g. stan_mbv2), --onnx or --reference-only",
              file=sys.stderr)
        return 2
    if args.reference_only and args.no_reference:
        print("perception eval: error: --reference-only and --no-reference exclude each other", file=sys.stderr)
        return 2
    try:
        if args.camera is not None and (args.canvas != 1.0 or args.shrink != 1.0):
            raise EvalError("--camera frames the images itself: give it or --canvas / --shrink, not both")
        labelled, label_format, skipped = load_label_source(args.labels, args.images)
        if not labelled:
            raise EvalError(f"{args.labels}: no images in it")
        if skipped:
            print(f"{args.labels} ({label_format}): left out (no counterpart among our classes): "
                  + ", ".join(f"{n} {k}" for n, k in sorted(skipped.items())), file=sys.stderr)
        near = [closer(im, args.closer) for im in labelled]
        images = [on_canvas(im, args.canvas, args.shrink) if args.camera is None
                  else on_camera(im, args.camera[1], args.camera[0]) for im in near]
        node = NodeDefaults(score_thresh=args.score_thresh, input_size=args.input_size)
        checkpoints = [] if args.reference_only else list(args.checkpoint or [])
        exported = [] if args.reference_only else list(args.onnx)
        mode = args.refine or ("on" if node_refine() is not None else "off")
        runs = []
        if mode in ("off", "both"):  # one pass (refine.enabled: false)
            runs += [run_checkpoint(c, args.images, images, node) for c in checkpoints]
            runs += [run_checkpoint("", args.images, images, node, onnx=o) for o in exported]
        if mode in ("on", "both"):  # the same models with refine.enabled: true, named <model>+refine
            rcfg = refine_config(args)
            runs += [run_checkpoint(c, args.images, images, node, rcfg) for c in checkpoints]
            runs += [run_checkpoint("", args.images, images, node, rcfg, onnx=o) for o in exported]
        if not args.no_reference:
            runs.append(run_reference(args.images, images, args.reference_model, args.score_thresh))
    except (EvalError, FootageError, CheckpointError, FileNotFoundError, RefineError, BackendError) as e:
        print(f"perception eval: error: {e}", file=sys.stderr)
        return 2
    results = {run.name: {**evaluate(images, run.detections, run.attention, args.score_thresh, args.iou),
                          "detector": run.description, "info": run.info, "latency_ms": latency(run.latency_ms)}
               for run in runs}
    counts = object_counts(images)
    args.out.mkdir(parents=True, exist_ok=True)
    stills = args.out / "stills"
    stills.mkdir(exist_ok=True)
    for k, im in enumerate(images):
        still = overlay(read_image(args.images, im), im, runs, k)
        cv2.imwrite(str(stills / (Path(im.file).stem + ".png")), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    on = f", the scene {args.closer:g}x closer" if args.closer != 1.0 else ""
    on += f" on {args.canvas:g}x canvases" if args.canvas != 1.0 else ""
    on += f", resized by {args.shrink:g}" if args.shrink != 1.0 else ""
    on += f" framed by a {args.camera[1]} x {args.camera[0]} camera" if args.camera is not None else ""
    text = (f"Labelled evaluation on {len(images)} images{on} ({args.labels}), IoU {args.iou}, score >= "
            f"{args.score_thresh}; R/P over objects >= 32 px tall (don't care: ignore, < 32 px); "
            f"per class R/P (scored objects)\n\n" + table(results) + "\n")
    for name, r in results.items():
        if "refine" in r["info"]:
            ref = r["info"]["refine"]
            text += (f"{name}: {ref['regions'] / max(1, ref['frames']):.2f} crops/image, zoom-out on "
                     f"{ref['zoom_out']}/{ref['frames']} images, pixels processed "
                     f"{ref['pixel_ratio']:.3f} of full resolution\n")
    report = {"labels": str(args.labels), "label_format": label_format, "left_out": skipped,
              "images_dir": str(args.images), "object_counts": counts,
              "command": "perception " + " ".join(shlex.quote(a) for a in sys.argv[1:]), "results": results}
    (args.out / "report.json").write_text(json.dumps(to_jsonable(report), indent=2) + "\n", encoding="utf-8")
    (args.out / "table.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print("objects (main >= 32 px / small 16-32 px / tiny / ignore): "
          + ", ".join(f"{n} {c['main']}/{c['small']}/{c['tiny']}/{c['ignore']}" for n, c in counts.items()))
    print(f"wrote {args.out / 'report.json'}, {args.out / 'table.md'} and {len(images)} stills in {stills}")
    return 0


def _object_drives(args: argparse.Namespace, frames: int, refine: Any = None) -> tuple[Any, Any]:
    """``--objects3d``: the drives rendered with the LiDAR (and their config); (None, None) without it."""
    if not args.objects3d:
        return None, None
    from perception.eval.objects import ObjectsEvalConfig, load_drives

    ocfg = ObjectsEvalConfig(seeds=args.seeds, frames=frames, width=args.width, height=args.height,
                             lidar_beams=args.lidar_beams, refine=refine)
    return load_drives(ocfg), ocfg


def main(args: argparse.Namespace) -> int:
    if args.bag is not None:
        return bag_main(args)
    if args.labels is not None or args.reference_only:
        return labelled_main(args)
    if args.video is not None or args.images is not None:
        if not args.checkpoint:
            print("perception eval: error: --video/--images need --checkpoint (e.g. stan_mbv2, the node's default)",
                  file=sys.stderr)
            return 2
        return footage_main(args)
    if not args.checkpoint:
        print("perception eval: error: give --checkpoint (evaluate on synthetic drives) or --bag (recorded outputs)",
              file=sys.stderr)
        return 2
    from perception.eval.report import compare_table, memory_usage_table, write_eval_report
    from perception.eval.synthetic import EvalConfig, evaluate_checkpoint, load_eval_sequences, memory_usage
    from perception.models.checkpoint import CheckpointError

    try:
        frames = frame_count(args.frames, 40)
    except ConfigError as e:
        print(f"perception eval: error: {e}", file=sys.stderr)
        return 2
    refine = None
    if args.refine in ("on", "both"):
        from perception.pipeline.refine import RefineError

        try:
            refine = refine_config(args)
        except RefineError as e:
            print(f"perception eval: error: {e}", file=sys.stderr)
            return 2
    cfg = EvalConfig(seeds=args.seeds, frames_per_sequence=frames, width=args.width, height=args.height,
                     score_thresh=args.score_thresh, cache_dir=args.cache_dir or None, refine=refine)
    sequences = load_eval_sequences(cfg)
    drives, ocfg = _object_drives(args, frames, refine)
    results: dict[str, dict[str, object]] = {}
    usage: dict[str, dict[str, float]] = {}
    for ckpt in args.checkpoint:
        try:
            metrics = evaluate_checkpoint(ckpt, cfg, sequences, progress=not args.no_progress)
        except (CheckpointError, FileNotFoundError) as e:
            print(f"perception eval: error: {e}", file=sys.stderr)
            return 2
        if drives is not None:
            from perception.eval.objects import evaluate_objects_checkpoint

            metrics["objects3d"] = evaluate_objects_checkpoint(ckpt, drives, ocfg, progress=not args.no_progress)
        name = Path(str(ckpt)).name.removesuffix(".safetensors")
        key = f"{metrics['model']} ({name})" if name != metrics["model"] else name
        if "refine" in metrics:
            ref = metrics["refine"]
            print(f"{key}: refinement {ref['regions'] / max(1, ref['frames']):.2f} regions/frame, zoom-out on "
                  f"{ref['zoom_out']}/{ref['frames']} frames, pixels processed "
                  f"{ref['pixel_ratio']:.3f} of full resolution")
        write_eval_report(metrics, args.out / name, title=f"Evaluation of {key}")
        results[key] = metrics
        for goal in metrics.get("objects3d", {}).get("goals", []):
            met = "met" if goal["met"] else "NOT met"
            print(f"{key}: {goal['goal']} {goal['value']:.3f} (goal {goal['target']}: {met})")
        if args.annotate:
            _annotate(ckpt, "eval", metrics, metrics["eval_config"])
        if args.memory_ablation and _is_temporal(ckpt):
            off = evaluate_checkpoint(ckpt, replace(cfg, memory=False), sequences, progress=not args.no_progress)
            write_eval_report(off, args.out / f"{name}-memory-off", title=f"Evaluation of {key}, memory off")
            results[f"{key} memory off"] = off
            usage[key] = memory_usage(ckpt, sequences)
    args.out.mkdir(parents=True, exist_ok=True)
    table = compare_table(results)
    if usage:
        table += "\n" + memory_usage_table(usage)
    (args.out / "comparison.md").write_text(table, encoding="utf-8")
    (args.out / "comparison.json").write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    print(table)
    return 0

"""CLI: ``translate``, ``translate-train``, ``clouds`` (SAR -> optical, MultiEarth / SEN1-2)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sarfusion.cli import add_json_flag, print_json

log = logging.getLogger(__name__)


def _translate(args: argparse.Namespace) -> int:
    from sarfusion.tasks.translate import translate

    written = translate(args.input, args.out, args.weights, samples=args.samples, preview_dir=args.preview,
                        device=args.device)
    if args.json:
        print_json({"written": [str(p) for p in written], "n": len(written)})
    else:
        log.info("wrote %d image(s) to %s", len(written), args.out)
    return 0


def _train(args: argparse.Namespace) -> int:
    from sarfusion.tasks.translate import evaluate_translation, format_table, train_translation

    if args.holdout:
        work = Path(args.work_dir) if args.work_dir else Path(args.weights) / "eval"
        results = evaluate_translation(args.data, args.weights, work, holdout=args.holdout, preset=args.preset,
                                       samples=args.samples)
        if args.json:
            print_json(results)
        else:
            print(format_table(results))
        return 0
    out = train_translation(args.data, args.weights, preset=args.preset, work_dir=args.work_dir)
    if args.json:
        print_json({"weights": str(out)})
    return 0


def _clouds(args: argparse.Namespace) -> int:
    from sarfusion.clouds import assess_clouds

    rows = assess_clouds(args.paths, max_cloud=args.max_cloud)
    dropped = sum(not r["keep"] for r in rows)
    if args.json:
        print_json({"max_cloud": args.max_cloud, "images": rows, "kept": len(rows) - dropped, "dropped": dropped})
        return 0
    print(f"{'cloud+shadow':>12} {'cloud':>7} {'shadow':>7} {'QA60':>6}  decision  image")
    for r in rows:
        qa = "-" if r["qa60"] is None else f"{100 * r['qa60']:5.1f}%"
        print(f"{100 * r['cloud_fraction']:11.2f}% {100 * r['cloud']:6.2f}% {100 * r['shadow']:6.2f}% {qa:>6}  "
              f"{'keep' if r['keep'] else 'DROP':<8}  {r['path']}")
    print(f"{len(rows)} image(s): {len(rows) - dropped} kept, {dropped} dropped (max cloud {args.max_cloud:g})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from sarfusion.clouds import DEFAULT_MAX_CLOUD

    p = subparsers.add_parser(
        "translate", help="SAR -> optical images with a trained Pix2Pix (SEN1-2 PNG / MultiEarth tiff)",
        description=(
            "Generate one optical image per SAR input. Input: a SEN1-2 s1 PNG or a folder of them "
            "(8-bit grey), or MultiEarth Sentinel1_{VV,VH}_<lon>_<lat>_<date>.tiff files / folder "
            "(float32 dB; VV and VH both needed). Output: <out>/<input name>.png (SEN1-2) or "
            "<out>/<VV file name>.tiff (3-band uint8 RGB GeoTIFF with the input's georeferencing); "
            "with --samples K > 1, K dropout samples named <name>_s<k>."),
    )
    p.add_argument("--input", required=True, help="SAR file or folder")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--weights", required=True, help="weights folder from translate-train (holds sen12/ and/or multiearth/)")
    p.add_argument("--samples", type=int, default=1, help="outputs per input (test-time dropout when > 1; default 1)")
    p.add_argument("--preview", default=None, metavar="DIR", help="also write PNG panels SAR | truth | generated here")
    p.add_argument("--device", default=None, help="torch device (default: CUDA if available, else CPU)")
    add_json_flag(p)
    p.set_defaults(func=_translate)

    p = subparsers.add_parser(
        "translate-train", help="train the SAR -> optical Pix2Pix (cloud-filtered targets)",
        description=(
            "Train one Pix2Pix per layout found under --data: SEN1-2 (<season>/s1_<scene>/... PNG "
            "pairs) and/or MultiEarth (sent1/ + sent2/ tiffs; every cloud-free optical date of a site "
            "is a target of each SAR date). Cloudy targets are dropped first (see 'sarfusion clouds'). "
            "Writes <weights>/{sen12,multiearth}/generator.pt + config.json. With --holdout K, the "
            "last K real inputs are held out and the model is scored against two baselines (training "
            "mean image, SAR histogram-matched to the optical distribution): PSNR, SSIM, MultiEarth."),
    )
    p.add_argument("--data", required=True, help="training data folder")
    p.add_argument("--weights", required=True, help="output weights folder")
    p.add_argument("--preset", default="demo", choices=["demo", "full"],
                   help="demo: tiny U-Net, CPU minutes; full: the reference U-Net 256 recipe (default demo)")
    p.add_argument("--work-dir", default=None, help="checkpoints / eval files (default <weights>/runs or <weights>/eval)")
    p.add_argument("--holdout", type=int, default=0, help="hold out this many real inputs and print the score table")
    p.add_argument("--samples", type=int, default=1, help="outputs per held-out input for the scores (default 1)")
    add_json_flag(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "clouds", help="cloud + shadow fraction and keep/drop per optical image",
        description=(
            "Screen optical images for clouds and their shadows: QA60 bits 10/11 where set, plus a "
            "spectral rule on B2/B3/B4 (whiteness, haze-optimised transform, brightness relative to "
            "the scene's own robust statistics, compact-blob shape; shadows = dark pixels near "
            "clouds). Accepts MultiEarth Sentinel2_* band files (grouped per date), RGB GeoTIFFs and "
            "8-bit RGB PNGs, or folders of them."),
    )
    p.add_argument("paths", nargs="+", help="optical files or folders")
    p.add_argument("--max-cloud", type=float, default=DEFAULT_MAX_CLOUD,
                   help=f"keep an image when its cloud + shadow fraction is at most this (default {DEFAULT_MAX_CLOUD})")
    add_json_flag(p)
    p.set_defaults(func=_clouds)

"""CLI: ``translate``, ``translate-train``, ``clouds`` (SAR -> optical, MultiEarth / SEN1-2)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sarfusion.cli import add_json_flag, print_json
from sarfusion.errors import InputError

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

    if args.fold is not None and args.holdout:
        raise InputError("--fold and --holdout-pairs choose the held-out pairs two ways; give one")
    if args.holdout or args.fold is not None:
        work = Path(args.work_dir) if args.work_dir else Path(args.weights) / "eval"
        results = evaluate_translation(args.data, args.weights, work, holdout=args.holdout, preset=args.preset,
                                       samples=args.samples, fold=args.fold, folds=args.folds)
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
        "translate", help="SAR -> optical images with a trained Pix2Pix (SEN1-2, MultiEarth, sar/ + opt/ pairs)",
        description=(
            "Generate one optical image per SAR input. Input: a SEN1-2 s1 PNG or a folder of them "
            "(8-bit grey); MultiEarth Sentinel1_{VV,VH}_<lon>_<lat>_<date>.tiff files / folder "
            "(float32 dB; VV and VH both needed); or a pair folder DIR (DIR/sar/NAME + DIR/opt/NAME), "
            "its DIR/sar folder or one SAR image of any size (PNG or GeoTIFF, any scale). Output: "
            "<out>/<name>.png, or <out>/<name>.tif(f) (3-band uint8 RGB GeoTIFF with the input's "
            "georeferencing) for MultiEarth and georeferenced inputs; with --samples K > 1, K dropout "
            "samples named <name>_s<k>. The model of the input's layout is used; a weights folder "
            "holding one model uses it for every layout. Images over 1024 px go through in "
            "overlapping tiles."),
    )
    p.add_argument("--input", required=True, help="SAR file or folder")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--weights", required=True,
                   help="weights folder from translate-train (holds sen12/, multiearth/ and/or pairs/)")
    p.add_argument("--samples", type=int, default=1, help="outputs per input (test-time dropout when > 1; default 1)")
    p.add_argument("--preview", default=None, metavar="DIR", help="also write PNG panels SAR | generated | truth here")
    p.add_argument("--device", default=None, help="torch device (default: CUDA if available, else CPU)")
    add_json_flag(p)
    p.set_defaults(func=_translate)

    p = subparsers.add_parser(
        "translate-train", help="train the SAR -> optical Pix2Pix (cloud-filtered targets)",
        description=(
            "Train one Pix2Pix per layout found under --data: SEN1-2 (<season>/s1_<scene>/... PNG "
            "pairs), MultiEarth (sent1/ + sent2/ tiffs; every cloud-free optical date of a site "
            "is a target of each SAR date) and pair folders (DIR/sar/NAME + DIR/opt/NAME or "
            "DIR/optical/NAME, PNG or GeoTIFF, paired by file name, any size). Cloudy targets are "
            "dropped first (see 'sarfusion clouds'; in pair folders cloudy pixels are also left out "
            "of the loss). Writes <weights>/{sen12,multiearth,pairs}/generator.pt + config.json. "
            "Evaluation: --holdout-pairs K keeps the last K inputs (sorted by name) out, --fold I "
            "keeps block I of --folds contiguous blocks of the sorted names out; the model is then "
            "scored on them, whole images, beside two baselines (the training targets' mean image, "
            "the SAR histogram-matched to the optical distribution): PSNR, SSIM, MultiEarth score, "
            "with a full-size PNG panel SAR | generated | truth per held-out input."),
    )
    p.add_argument("--data", required=True, help="training data folder")
    p.add_argument("--weights", required=True, help="output weights folder")
    p.add_argument("--preset", default="demo", choices=["demo", "cpu", "full"],
                   help="demo: tiny U-Net, a few CPU minutes (make demo, tests); cpu: the recipe for real "
                        "Sentinel pairs on a CPU (<= 15 min on 2 cores); full: the GPU recipe (default demo)")
    p.add_argument("--work-dir", default=None, help="checkpoints / eval files (default <weights>/runs or <weights>/eval)")
    p.add_argument("--holdout-pairs", "--holdout", dest="holdout", type=int, default=0, metavar="K",
                   help="hold out the last K inputs by name and print the score table")
    p.add_argument("--fold", type=int, default=None, metavar="I",
                   help="hold out block I (0-based) of --folds contiguous blocks of the sorted names and print "
                        "the score table")
    p.add_argument("--folds", type=int, default=4, help="number of blocks for --fold (default 4)")
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

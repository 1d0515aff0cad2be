"""CLI: ``sarfusion buildings train|predict`` and ``sarfusion experiment sn6-inputs``."""
from __future__ import annotations

import argparse
import logging

from sarfusion.cli import add_json_flag, print_json

log = logging.getLogger(__name__)

MODES = ("sar4", "span", "fused", "colorized")
ENCODER_WEIGHTS_HELP = ("building encoder initialisation: imagenet (smp's ImageNet weights, from the local cache "
                        "the Docker image fills at build time, else downloaded), none (random), or PATH to a "
                        "local state dict of the 3-band encoder (for offline machines)")


def _train(args: argparse.Namespace) -> int:
    from sarfusion.config import choose_preset
    from sarfusion.tasks.buildings import PRESETS, train_buildings

    cfg = choose_preset(PRESETS, args.preset)
    if args.max_steps:
        cfg.engine.max_steps = args.max_steps
        cfg.area_steps = min(cfg.area_steps, args.max_steps)
    if args.encoder_weights:
        cfg.encoder_weights = args.encoder_weights
    if args.strip_context is not None:
        cfg.strip_context = args.strip_context
    if args.row_split is not None:
        cfg.row_split = args.row_split
    if args.row_targets is not None:
        cfg.row_targets = args.row_targets
    if args.area_model is not None:
        cfg.area_model = args.area_model
    out = train_buildings(args.aoi, args.weights, preset=args.preset, input_mode=args.input_mode,
                          folds=args.folds, work_dir=args.work_dir, config=cfg)
    report = (out / "buildings_train_report.json").read_text()
    if args.json:
        import json

        print_json({"weights": str(out), **json.loads(report)})
    else:
        print(f"weights in {out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from sarfusion.tasks.buildings import predict_buildings

    out = predict_buildings(args.aoi, args.weights, args.out, preview_dir=args.preview, tta=args.tta,
                            orientations=args.orientations, work_dir=args.work_dir, geo_path=args.geo)
    result: dict = {"submission": str(out)}
    if args.geo:
        result["footprints"] = str(args.geo)
    if args.truth:
        from sarfusion.metrics.buildings import score_buildings

        result.update(score_buildings(args.truth, out))
    if args.json:
        print_json(result)
    else:
        print(f"wrote {out}")
        if args.truth:
            print(f"F1 x 100 = {100 * result['f1']:.2f}  (P {result['precision']:.3f}, R {result['recall']:.3f}, "
                  f"TP {result['tp']}, FP {result['fp']}, FN {result['fn']})")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from sarfusion.config import choose_preset
    from sarfusion.tasks.buildings import PRESETS, experiment_markdown, run_input_experiment

    cfg = choose_preset(PRESETS, args.preset)
    if args.max_steps:
        cfg.engine.max_steps = args.max_steps
    result = run_input_experiment(args.data, preset=args.preset, work_dir=args.work_dir,
                                  modes=args.modes, config=cfg)
    if args.json:
        print_json(result)
    else:
        print(experiment_markdown(result))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    bld = subparsers.add_parser(
        "buildings", help="SpaceNet 6 building footprints from SAR: train, predict",
        description="Building footprints from SAR (SpaceNet 6): a U-Net (smp, EfficientNet encoder) predicts "
                    "footprint, edge and contact; a seeded watershed splits buildings; polygons < 80 px^2 are "
                    "dropped.", formatter_class=fmt)
    sub = bld.add_subparsers(dest="buildings_command", metavar="<action>")

    tr = sub.add_parser(
        "train", help="train the building model(s) on an SN6 training AOI",
        description="Inputs: AOI/SAR-Intensity/*.tif (4 bands HH,HV,VH,VV), AOI/SummaryData/*Buildings*.csv, "
                    "AOI/SummaryData/SAR_orientations.txt (direction-1 tiles are rotated 180 deg), and "
                    "AOI/PS-RGB for --input-mode fused.\nOutputs in --weights: buildings_fold<k>.pt, "
                    "buildings_area_fold<k>.pt (with --area-model), buildings_config.json, "
                    "buildings_train_report.json (steps/s, validation F1 per fold).",
        formatter_class=fmt)
    tr.add_argument("--aoi", required=True, help="SN6 training AOI folder (…/train/AOI_11_Rotterdam)")
    tr.add_argument("--weights", required=True, help="output weights folder")
    tr.add_argument("--input-mode", choices=MODES, default="sar4",
                    help="network input: sar4 (4 pols), span (SPAN dB), fused (HSV RGB+SPAN, needs PS-RGB), "
                         "colorized (Pix2Pix RGB from SAR; trains the colorizer first) (default: sar4)")
    tr.add_argument("--preset", choices=("demo", "full"), default="demo",
                    help="demo: efficientnet-b0, 128 px crops at the tiles' 0.5 m, 3300 steps, then the area "
                         "network, 1500 steps at 1 m (~13 CPU minutes on 2 cores); full: the SN6 winner recipe, efficientnet-b5, 512 px crops at 0.5 m "
                         "(default: demo)")
    tr.add_argument("--folds", type=int, default=None,
                    help="easting-band folds; K > 1 trains K models, each without its band and the neighbours, "
                         "and calibrates the thresholds out of fold (default: the preset's: demo 1 = one model on "
                         "every tile, full 8)")
    tr.add_argument("--max-steps", type=int, default=None,
                    help="override the preset's training steps (and cap the area network's)")
    tr.add_argument("--encoder-weights", default=None, metavar="imagenet|none|PATH",
                    help=ENCODER_WEIGHTS_HELP + " (default: the preset's: demo none, full imagenet)")
    tr.add_argument("--strip-context", action=argparse.BooleanOptionalAction, default=None,
                    help="the SN6 winner's extra inputs at the network's bottleneck: a one-hot of the tile's "
                         "strip, its look direction and the strip's northing (default: the preset's: demo off, "
                         "full on)")
    tr.add_argument("--row-split", action=argparse.BooleanOptionalAction, default=None,
                    help="offer row splitting to the threshold calibration: each found building cut into as "
                         "many equal parts as label blobs of its area and depth held in the training labels; "
                         "kept only where it raises F1 on the calibration tiles (default: on)")
    tr.add_argument("--row-targets", action=argparse.BooleanOptionalAction, default=None,
                    help="train the edge and contact targets around rows of touching buildings, not around each "
                         "building (for SAR that shows no wall between terraced houses; the row splitting then "
                         "cuts the rows) (default: the preset's: demo on, full off, the winner's targets)")
    tr.add_argument("--area-model", action=argparse.BooleanOptionalAction, default=None,
                    help="train a second network per fold that predicts the area of the building each footprint "
                         "pixel belongs to; the row splitting may then count a row's houses from it instead of "
                         "the label table (the calibration chooses) (default: the preset's: demo on, full off)")
    tr.add_argument("--work-dir", default=None, help="checkpoints and prepared inputs (default: WEIGHTS/runs/...)")
    add_json_flag(tr)
    tr.set_defaults(func=_train)

    pr = sub.add_parser(
        "predict", help="predict footprints for an AOI and write the SN6 submission CSV",
        description="Writes ImageId,PolygonWKT_Pix,Confidence with a POLYGON EMPTY row for every tile without "
                    "detections (pixel coordinates). With --truth, scores it with the bundled SN6 scorer.",
        formatter_class=fmt)
    pr.add_argument("--aoi", required=True, help="SN6 AOI with SAR-Intensity/ (e.g. …/test_public/AOI_11_Rotterdam)")
    pr.add_argument("--weights", required=True, help="weights folder written by 'buildings train'")
    pr.add_argument("--out", required=True, help="output submission CSV")
    pr.add_argument("--geo", default=None, metavar="OUT.gpkg",
                    help="also write the footprints in map coordinates for GIS (QGIS, web maps): a GeoPackage "
                         "(.gpkg) or GeoJSON (.geojson) in the tiles' CRS, duplicates where tiles overlap merged "
                         "(one polygon per building, none overlapping), fields confidence, image_id (source tile), "
                         "tiles, n_tiles, area_m2. The CSV stays the competition's pixel-coordinate submission")
    pr.add_argument("--preview", default=None, help="folder for PNG previews (footprints over the SAR)")
    pr.add_argument("--truth", default=None, help="truth CSV (SN6 label format): print F1, precision, recall")
    pr.add_argument("--tta", action="store_true", help="left-right flip and scale test-time augmentation")
    pr.add_argument("--orientations", default=None,
                    help="SAR_orientations.txt (default: the AOI's own, else the sibling train AOI's, else the "
                         "copy saved in --weights at training time)")
    pr.add_argument("--work-dir", default=None, help="where prepared inputs (colorized) go")
    add_json_flag(pr)
    pr.set_defaults(func=_predict)
    bld.set_defaults(func=lambda a: (bld.print_help(), 2)[1])

    exp = subparsers.add_parser(
        "experiment", help="experiments from the SpaceNet 6 blog (sn6-inputs)",
        description="Reproducible comparisons on a data folder.", formatter_class=fmt)
    esub = exp.add_subparsers(dest="experiment_command", metavar="<name>")
    inp = esub.add_parser(
        "sn6-inputs", help="train one building model per input mode and compare F1 / precision / recall",
        description="On the training AOI (it has optical, so fused can be built), holds out the east-most "
                    "easting band (tiles within one tile width excluded), trains one model per input mode "
                    "(sar4, span, fused, colorized) on the rest and prints the blog's comparison table.",
        formatter_class=fmt)
    inp.add_argument("--data", required=True, help="SN6 data folder (holds train/AOI_*) or the AOI itself")
    inp.add_argument("--preset", choices=("demo", "full"), default="demo", help="default: demo")
    inp.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="default: all four")
    inp.add_argument("--max-steps", type=int, default=None, help="override the preset's training steps")
    inp.add_argument("--work-dir", default=None, help="default: DATA/experiment_sn6_inputs")
    add_json_flag(inp)
    inp.set_defaults(func=_experiment)
    exp.set_defaults(func=lambda a: (exp.print_help(), 2)[1])

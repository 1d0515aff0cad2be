"""``sarfusion score buildings | tiepoints | translation``: thin CLI wrappers over the scorers."""
from __future__ import annotations

import argparse
import logging
import math

from sarfusion.cli import add_json_flag, print_json

log = logging.getLogger(__name__)


def _finite_or_none(value: float) -> float | None:
    """Strict JSON has no Infinity: non-finite numbers print as null."""
    return value if math.isfinite(value) else None


def _print_lines(result: dict, keys: tuple[str, ...]) -> None:
    for k in keys:
        v = result[k]
        print(f"{k:>10}: {v:.4f}" if isinstance(v, float) else f"{k:>10}: {v}")


def _buildings(args: argparse.Namespace) -> int:
    from sarfusion.io.vector import write_csv_atomic
    from sarfusion.metrics.buildings import SCORE_KEYS, score_buildings

    result = score_buildings(args.truth, args.pred, rules=args.rules, min_area=args.min_area, iou=args.iou,
                             all_images=True if args.all_images else None, raster_dir=args.truth_rasters,
                             per_image=args.per_image is not None)
    if args.per_image is not None:
        write_csv_atomic(args.per_image, result.pop("per_image").reset_index())
        log.info("per-image counts written to %s", args.per_image)
    if args.json:
        print_json({k: result[k] for k in SCORE_KEYS})
    else:
        _print_lines(result, SCORE_KEYS)
    return 0


def _tiepoints(args: argparse.Namespace) -> int:
    from sarfusion.metrics.tiepoints import score_tiepoints

    result = score_tiepoints(args.optical, args.sar, args.tiepoints, args.offsets)
    keys = ("mean_px", "mean_m", "score", "n_points")
    if args.json:
        print_json({k: result[k] for k in keys})
    else:
        _print_lines(result, keys)
    return 0


def _translation(args: argparse.Namespace) -> int:
    from sarfusion.metrics.image_quality import score_translation

    result = score_translation(args.pred, args.truth)
    keys = ("psnr", "ssim", "multiearth", "n_images")
    if args.json:
        print_json({k: _finite_or_none(result[k]) if isinstance(result[k], float) else result[k] for k in keys})
    else:
        _print_lines(result, keys)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    score = subparsers.add_parser(
        "score", help="bundled scorers: building F1, tie-point offsets, translation quality",
        description="Score outputs the way the public challenges do (SPEC sections 2, 4, 5).")
    sub = score.add_subparsers(dest="score_command", metavar="<scorer>")
    score.set_defaults(func=lambda args: (score.print_help(), 2)[1])

    p = sub.add_parser(
        "buildings", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="SpaceNet building-footprint F1 (SN6 official rules or solaris)",
        description=(
            "SpaceNet building F1. Default rules 'sn6' (official SN6 scorer): polygons < 80 px^2 dropped "
            "on both sides,\npredictions by descending Confidence matched one-to-one to the unmatched "
            "truth with the highest IoU,\nmatch at IoU > 0.5 (strict), unparseable prediction WKT = FP, "
            "only ImageIds present in PRED scored.\n'solaris': min area 20, truth >= A, predictions > A, "
            "match at IoU >= threshold, union of ImageIds scored.\n\n"
            "TRUTH: SN6 label CSV (ImageId,TileBuildingId,PolygonWKT_Pix,...), a SpaceNet CSV with BuildingId,\n"
            "  or a folder of per-tile GeoJSONs (ImageId from the file name).\n"
            "PRED: submission CSV (ImageId,PolygonWKT_Pix,Confidence; also ImageId,BuildingId,PolygonWKT_Pix,"
            "Confidence),\n  a GeoJSON file or a folder of them (Confidence property, default 1).\n"
            "GeoJSON in pixel coordinates is used as is; map-coordinate GeoJSON (a 'crs' member, or lon/lat)\n"
            "  needs --truth-rasters with the same-ImageId GeoTIFF tiles to convert to pixels.\n\n"
            "Output: tp, fp, fn, precision, recall, f1, score (= 100 x F1), n_images."))
    p.add_argument("truth", help="truth CSV or folder of per-tile GeoJSONs")
    p.add_argument("pred", help="prediction CSV, GeoJSON file or folder of GeoJSONs")
    p.add_argument("--rules", choices=("sn6", "solaris"), default="sn6", help="rule set (default: sn6)")
    p.add_argument("--min-area", type=float, default=None, metavar="A",
                   help="area cut in px^2 (default: 80 for sn6, 20 for solaris)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU threshold (default: 0.5)")
    p.add_argument("--all-images", action="store_true",
                   help="also score ImageIds found only in TRUTH (their buildings count as FN); "
                        "sn6 default: only ImageIds in PRED, as the official scorer")
    p.add_argument("--per-image", metavar="FILE", default=None,
                   help="write per-image ImageId,tp,fp,fn,precision,recall,f1 CSV here")
    p.add_argument("--truth-rasters", metavar="DIR", default=None,
                   help="GeoTIFF tiles (SN6 names) to convert map-coordinate GeoJSON to pixels")
    add_json_flag(p)
    p.set_defaults(func=_buildings)

    p = sub.add_parser(
        "tiepoints", help="SpaceNet 9 offset map against tie points (mean px error, score)",
        description=(
            "SpaceNet 9 registration score. Reference offsets: SAR and optical tie-point pixels to map "
            "coordinates (SAR reprojected into the optical CRS when they differ), dx = rint((Xs - Xo) / "
            "gt_opt[1]), dy = rint((Ys - Yo) / gt_opt[5]). Predicted offsets are read at the integer optical "
            "pixel (band 1 dx, band 2 dy); tie points sharing an optical pixel count once. Output: mean_px "
            "(mean Euclidean error, optical px), mean_m, score = 100 / (1 + 0.01 mean_px), n_points. Only "
            "the georeferencing of the optical and SAR images is read."))
    p.add_argument("--optical", required=True, metavar="O.tif", help="optical image (its grid defines pixels)")
    p.add_argument("--sar", required=True, metavar="S.tif", help="SAR image (geotransform and CRS only)")
    p.add_argument("--tiepoints", required=True, metavar="T.csv",
                   help="CSV with sar_row,sar_col,optical_row,optical_col")
    p.add_argument("--offsets", required=True, metavar="OFF.tif",
                   help="2-band float offset map on the optical grid (dx, dy in optical px)")
    add_json_flag(p)
    p.set_defaults(func=_tiepoints)

    p = sub.add_parser(
        "translation", help="SAR->optical translation: PSNR, SSIM, MultiEarth error",
        description=(
            "Compare translated images with the truth. Files match by relative path and name (PNG or "
            "GeoTIFF). Several outputs for one input may be named <stem>_s<k>.<ext>; several truths for one "
            "input may be given as a folder <stem>/ in TRUTH. Images are scaled to [0, 1] by their dtype "
            "(uint8 / 255, uint16 / 65535, floats as is). PSNR (dB) and SSIM (11x11 Gaussian window, sigma "
            "1.5) average over every output x truth pair; MultiEarth error = sum_j min_i RMS(f(x)_i - y_j), "
            "averaged over inputs. Output: psnr (null in JSON when infinite), ssim, multiearth, n_images."))
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of translated images")
    p.add_argument("--truth", required=True, metavar="DIR", help="folder of truth images")
    add_json_flag(p)
    p.set_defaults(func=_translation)

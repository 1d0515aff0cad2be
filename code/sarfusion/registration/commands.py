"""CLI: ``sarfusion register`` (offset map for one pair) and ``sarfusion register-train``."""
from __future__ import annotations

import argparse
import logging

from sarfusion.cli import add_json_flag, print_json

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "register",
        help="optical -> SAR registration: write a dense offset map (SpaceNet 9)",
        description=(
            "Register a SAR scene to an optical scene and write the SpaceNet 9 offset map: a Cloud-Optimized "
            "GeoTIFF with 2 float32 bands (dx, dy in optical pixels; the SAR counterpart of optical pixel "
            "(row, col) sits at optical-grid column col+dx, row row+dy), same size, geotransform and "
            "CRS as the optical. Any GDAL-readable pair works; non-georeferenced images are taken to "
            "share one pixel grid; a SAR scene in another CRS (UTM zone) is reprojected."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--optical", required=True, help="optical image (e.g. <aoi>_optical_<split>.tif, 3-band RGB)")
    p.add_argument("--sar", required=True, help="SAR image (1 band, linear or dB)")
    p.add_argument("--out", required=True, help="output offset GeoTIFF (written atomically)")
    p.add_argument("--mode", choices=("dense", "baseline", "none"), default="dense",
                   help="dense: coarse-to-fine local matching (training-free, or with the learned "
                        "descriptors of --weights); baseline: keypoint U-Nets + RANSAC affine (needs "
                        "--weights); none: zero offsets")
    p.add_argument("--weights", default=None,
                   help="folder from register-train: keypoints.pt (needed by the baseline mode) and "
                        "descriptors.pt (the dense mode then uses the learned descriptors; without "
                        "it the dense mode is training-free)")
    p.add_argument("--tiepoints", default=None,
                   help="tie-point CSV (sar_row,sar_col,optical_row,optical_col): also score the result")
    p.add_argument("--aligned-sar", default=None, metavar="OUT.tif",
                   help="also write the SAR resampled through the offsets onto the optical grid (same size, "
                        "geotransform and CRS as the optical; the SAR's bands and dtype; nodata where the SAR has "
                        "none): a Cloud-Optimized GeoTIFF to compare with the optical pixel by pixel")
    p.add_argument("--confidence", default=None, metavar="OUT.tif",
                   help="also write the dense field's confidence (float32 in [0, 1], same grid as the offset map): "
                        "1 where local matches decided the offset, 0 where it fell back to the scene-wide "
                        "translation or, where that is unreliable too, toward zero offsets. A sidecar, so the "
                        "offset map stays the 2 bands the SpaceNet 9 scorer reads; --json also prints the "
                        "mean confidence and the fraction of local matches kept")
    p.add_argument("--preview", default=None,
                   help="folder for PNG previews (offset vectors, checkerboards; the aligned SAR with --aligned-sar; "
                        "the confidence over the optical with --confidence)")
    add_json_flag(p)
    p.set_defaults(func=_register)

    t = subparsers.add_parser(
        "register-train",
        help="train the keypoint-baseline U-Nets and the dense mode's descriptors (scenes with tie points, "
             "or co-registered pairs)",
        description=(
            "With --data: train the SN9 keypoint baseline (optical-keypoint and SAR-keypoint heatmap U-Nets) "
            "and the dense mode's learned descriptors for VHR grids from every <aoi>_optical_<split>.tif / "
            "<aoi>_sar_<split>.tif / <aoi>_tiepoints_<split>.csv triple under --data. The descriptors learn "
            "to match the ground: their label is <aoi>_groundfield_<split>.tif where present (synthetic "
            "scenes), else a smooth field through the tie points, and they also train on SAR resampled "
            "through smoothed copies of it, the local strain the dense mode's coarse levels leave. Writes "
            "<weights>/keypoints.pt, descriptors.pt. "
            "With --pairs: train the descriptors for the medium-resolution route (10 m Sentinel-1/2 "
            "pairs, no CRS or a 1 m or coarser grid, 320 px and up) self-supervised from co-registered pairs "
            "(a pair folder sar/ + opt/ paired by file name, or a SEN1-2 folder): the label is each pair's "
            "own training-free dense field, the SAR is also resampled through random smooth warps and the "
            "nets learn to find them, no tie points needed. Writes "
            "<weights>/descriptors_medium.pt. Both kinds can share one weights folder; 'register "
            "--weights' uses the one that fits each grid. Each file has its *_config.json and a "
            "resumable run folder <weights>/<name>_run."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    t.add_argument("--data", default=None, help="folder holding the scene triples (searched recursively)")
    t.add_argument("--pairs", nargs="+", default=None, metavar="DIR",
                   help="co-registered pair folders (sar/ + opt/) or SEN1-2 folders: train the medium-grid "
                        "descriptors from them")
    t.add_argument("--exclude", default="", metavar="NAME[,NAME...]",
                   help="--pairs: pair names (file stems) to leave out, e.g. the pairs you evaluate on")
    t.add_argument("--weights", required=True, help="output folder for the weights")
    t.add_argument("--preset", choices=("demo", "full"), default="demo",
                   help="demo: tiny nets / short runs, CPU minutes; full: the real recipe (GPU)")
    t.add_argument("--what", choices=("all", "keypoints", "descriptors"), default="all",
                   help="which networks to train")
    add_json_flag(t)
    t.set_defaults(func=_train)


def _register(args: argparse.Namespace) -> int:
    from sarfusion.registration.api import register_scene
    if args.tiepoints:  # a malformed CSV fails before any work is done
        from sarfusion.metrics.tiepoints import read_tiepoints
        read_tiepoints(args.tiepoints)
    result = register_scene(args.optical, args.sar, args.out, args.mode, args.weights, args.preview,
                            aligned_sar_path=args.aligned_sar, confidence_path=args.confidence)
    if args.tiepoints:
        from sarfusion.metrics.tiepoints import score_tiepoints
        result.update(score_tiepoints(args.optical, args.sar, args.tiepoints, args.out))
    if args.json:
        print_json(result)
    else:
        line = f"wrote {result['offsets']} ({result['mode']}, {result['seconds']} s)"
        if args.aligned_sar:
            line += f" and {result['aligned_sar']}"
        if args.confidence:
            line += f" and {result['confidence_map']}"
        if result["confidence"] is not None:
            line += f"; confidence {result['confidence']:.2f}"
        if result["kept"] is not None:
            line += f", {100 * result['kept']:.0f}% of local matches kept"
        if args.tiepoints:
            line += f"; mean error {result['mean_px']:.2f} px = {result['mean_m']:.2f} m, score {result['score']:.2f}"
        print(line)
    return 0


def _train(args: argparse.Namespace) -> int:
    from sarfusion.errors import InputError
    if args.data is None and args.pairs is None:
        raise InputError("register-train needs --data (scenes with tie points) and/or --pairs (co-registered pairs)")
    if args.data is None and args.what == "keypoints":
        raise InputError("--what keypoints needs --data: the keypoint baseline trains on scenes with tie points")
    paths = {}
    if args.data is not None and args.what in ("all", "keypoints"):
        from sarfusion.registration.keypoints import train_keypoints
        paths["keypoints"] = str(train_keypoints(args.data, args.weights, args.preset))
    if args.data is not None and args.what in ("all", "descriptors"):
        from sarfusion.registration.descriptors import train_descriptors
        paths["descriptors"] = str(train_descriptors(args.data, args.weights, args.preset))
    if args.pairs is not None and args.what in ("all", "descriptors"):
        from sarfusion.registration.descriptors import train_pair_descriptors
        exclude = {n.strip() for n in args.exclude.split(",") if n.strip()}
        paths["descriptors_medium"] = str(train_pair_descriptors(args.pairs, args.weights, args.preset,
                                                                 exclude=exclude))
    if args.json:
        print_json({"weights": paths})
    else:
        for path in paths.values():
            print(f"wrote {path}")
    return 0

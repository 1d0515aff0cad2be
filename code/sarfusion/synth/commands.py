"""``sarfusion synth <kind>``: write synthetic datasets in the real SpaceNet / SEN1-2 / MultiEarth formats.

Each kind is a ``(name, register_fn)`` pair in :data:`SUBCOMMANDS`; ``register_fn(subparsers)``
adds one subparser. A module ``sarfusion.synth.landscape`` (if present) may export its own
``SUBCOMMANDS`` list, which is appended.
"""
from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path


def _add_preview(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preview", nargs="?", const=True, default=False, metavar="DIR",
                   help="write PNG previews (optical, SAR composite, labels / tie points / offset "
                        "vectors) into DIR (default: OUT/previews)")


def _sn6(args: argparse.Namespace) -> int:
    from sarfusion.cli import print_json
    from sarfusion.synth.sn6 import generate_sn6

    t0 = time.perf_counter()
    out = generate_sn6(args.out, args.tiles, size=args.size, seed=args.seed, preview=args.preview,
                       looks=args.looks)
    result = {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if args.json:
        print_json(result)
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def _sn9(args: argparse.Namespace) -> int:
    from sarfusion.cli import print_json
    from sarfusion.synth.sn9 import generate_sn9

    t0 = time.perf_counter()
    scenes = generate_sn9(args.out, size=args.size, seed=args.seed, difficulty=args.difficulty,
                          scenes=args.scenes, preview=args.preview, split=args.split)
    result = {"scenes": [{k: str(v) if isinstance(v, Path) else v for k, v in s.items()} for s in scenes],
              "seconds": round(time.perf_counter() - t0, 2)}
    if args.json:
        print_json(result)
    else:
        for s in result["scenes"]:
            print(" ".join(f"{k}={v}" for k, v in s.items()))
    return 0


def register_sn6(sub: argparse._SubParsersAction) -> None:
    from sarfusion.cli import add_json_flag

    p = sub.add_parser(
        "sn6", help="synthetic SpaceNet 6 AOI (SAR-Intensity, PS-RGB, labels; train + test_public)",
        description=(
            "Write a synthetic SpaceNet 6 AOI in the exact real layout: OUT/train/AOI_11_Rotterdam/"
            "{SAR-Intensity,PS-RGB,geojson_buildings,SummaryData}, OUT/test_public/AOI_11_Rotterdam/"
            "SAR-Intensity and the test truth OUT/test_public_truth/SN6_Test_Public_AOI_11_Rotterdam_"
            "Buildings.csv. Tiles are 0.5 m, EPSG:32631; SAR is 4-band float32 HH,HV,VH,VV on the SN6 "
            "offset-dB scale (0 = nodata) simulated with layover, double bounce, radar shadow and Gamma "
            "speckle; strips of both look directions overlap."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output root folder")
    p.add_argument("--tiles", type=int, required=True, help="total tiles; ~1/4 (at least 1) go to test_public")
    p.add_argument("--size", type=int, default=900, help="tile size in pixels (0.5 m)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--looks", type=float, default=5.0, help="number of looks of the speckle")
    _add_preview(p)
    add_json_flag(p)
    p.set_defaults(func=_sn6)


def register_sn9(sub: argparse._SubParsersAction) -> None:
    from sarfusion.cli import add_json_flag

    p = sub.add_parser(
        "sn9", help="synthetic SpaceNet 9 scene(s): optical, SAR, tie points, true offset map",
        description=(
            "Write synthetic SpaceNet 9 scenes OUT/<aoi>_{optical,sar,offsets}_<split>.tif and "
            "<aoi>_tiepoints_<split>.csv (aoi = synth_aoi_<k>). Optical: 3-band uint8 at 0.3 m; SAR: "
            "1-band uint8 at 0.41 m with its own extent; offsets: the true 2-band float32 dx,dy map in "
            "the submission format. The SAR is rendered through a realistic misalignment (global "
            "shift + affine + smooth local field, plus layover) that --difficulty scales."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--size", type=int, default=4096, help="optical width/height in pixels (0.3 m)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--difficulty", type=float, default=1.0, help="misalignment scale (0 = layover only)")
    p.add_argument("--scenes", type=int, default=1, help="number of scenes (synth_aoi_0 ...)")
    p.add_argument("--split", default="train", help="split token of the file names")
    _add_preview(p)
    add_json_flag(p)
    p.set_defaults(func=_sn9)


SUBCOMMANDS = [("sn6", register_sn6), ("sn9", register_sn9)]


def _all_subcommands() -> list:
    extra = []
    try:
        extra = list(getattr(importlib.import_module("sarfusion.synth.landscape"), "SUBCOMMANDS", []))
    except ModuleNotFoundError as exc:
        if exc.name != "sarfusion.synth.landscape":
            raise
    return SUBCOMMANDS + extra


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth`` with one subcommand per synthetic dataset kind."""
    p = subparsers.add_parser(
        "synth", help="write synthetic datasets in the real formats (sn6, sn9, ...)",
        description="Synthetic data with known truth, in the exact formats of the real datasets.")
    sub = p.add_subparsers(dest="synth_kind", metavar="<kind>")
    for _name, register_fn in _all_subcommands():
        register_fn(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

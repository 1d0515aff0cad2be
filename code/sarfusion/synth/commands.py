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
                       looks=args.looks, port=args.port)
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
            "offset-dB scale (0 = nodata) simulated with layover, double bounce, radar shadow, point "
            "targets, a noise floor varying across the swath and correlated speckle, 28-42 deg incidence "
            "per strip; strips of both look directions overlap. No two labels of a tile overlap; "
            "adjoining buildings are separate polygons."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output root folder")
    p.add_argument("--tiles", type=int, required=True, help="total tiles; ~1/4 (at least 1) go to test_public")
    p.add_argument("--size", type=int, default=900, help="tile size in pixels (0.5 m)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--looks", type=float, default=5.0, help="number of looks of the speckle")
    p.add_argument("--port", action="store_true",
                   help="give the city a port district on its river (dock basins, quays, tank farms, container "
                        "yards, warehouses, berthed ships, gantry cranes and rails on container-terminal quays); tanks, "
                        "containers, ships and cranes are not labelled")
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
            "the submission format. A town in hills seen at any look azimuth and 20-50 deg incidence; "
            "the SAR is rendered through a misalignment made of DEM errors seen through both sensors' "
            "geometry, a small affine part, a smooth residual and a global shift (scaled by "
            "--difficulty), plus layover; <aoi>_groundfield_<split>.tif holds the misalignment alone."),
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


def _report(args: argparse.Namespace) -> int:
    import json

    from sarfusion.cli import print_json
    from sarfusion.synth.report import REAL_ROOT, run_report

    t0 = time.perf_counter()
    result = run_report(args.real or REAL_ROOT, seeds=args.seeds, sn6_tiles=args.sn6_tiles,
                        sn9_size=args.sn9_size, sn9_scenes=args.sn9_scenes, out=args.out)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.out is not None:
        (args.out / "synth_report.json").write_text(json.dumps({k: v for k, v in result.items() if k != "text"},
                                                               indent=1))
    if args.json:
        print_json({k: v for k, v in result.items() if k != "text"})
    else:
        print(result["text"])
        print(f"\nPNG: {', '.join(result['png']) or '(none: give --out)'}; {result['seconds']} s")
    return 0


def register_report(sub: argparse._SubParsersAction) -> None:
    from sarfusion.cli import add_json_flag

    p = sub.add_parser(
        "report", help="realism report: statistics of generated scenes beside the real samples",
        description=(
            "Generate small SN6 (with and without a port district), SN9, SEN1-2 and MultiEarth scenes in a "
            "temporary folder and print, "
            "side by side with the real samples (../shared/real_samples: Capella at 4.5 m; S1/S2 "
            "pairs, SEN1-2, MultiEarth at 10 m), at the real sample's resolution: global optical/SAR "
            "NCC, NCC of oriented-gradient features in 64 px windows, gradient-orientation agreement, "
            "SAR equivalent number of looks (9 px windows, most homogeneous tenth) and the dB histogram "
            "tails (p99 - median, median - p1) per polarisation. A synthetic median outside the real "
            "min..max (over all real samples of that resolution) is marked NO; where several real samples "
            "share a resolution, a second table puts each synthetic source against its own kind of scene "
            "alone (SEN1-2 synth vs SEN1-2, MultiEarth synth vs MultiEarth), a stricter view. Synthetic "
            "columns pool the scenes of every seed given (about 25 s per seed); after each verdict, how many "
            "seeds' own medians are inside (ok 3/3: settled; NO 1/3: near an edge). With --out, also PNGs of a "
            "synthetic tile beside the real crop "
            "(same resolution, same dB stretch) and the numbers as synth_report.json."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="folder for the PNGs and synth_report.json")
    p.add_argument("--real", type=Path, default=None, help="real samples folder (default: ../shared/real_samples)")
    p.add_argument("--seeds", "--seed", dest="seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="generator seeds (SN9 scenes use seed + 200); each column pools every seed's scenes, "
                        "since one seed's few scenes can move a median across a narrow real range")
    p.add_argument("--sn6-tiles", type=int, default=8, help="SN6 tiles to generate per seed (900 px)")
    p.add_argument("--sn9-size", type=int, default=2048, help="SN9 optical size (px)")
    p.add_argument("--sn9-scenes", type=int, default=2, help="SN9 scenes")
    add_json_flag(p)
    p.set_defaults(func=_report)


SUBCOMMANDS = [("sn6", register_sn6), ("sn9", register_sn9), ("report", register_report)]


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

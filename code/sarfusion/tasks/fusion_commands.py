"""``sarfusion fuse`` and ``sarfusion colorize train | predict | evaluate``: thin CLI wrappers over
:mod:`sarfusion.fusion` and :mod:`sarfusion.tasks.colorize`."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sarfusion.cli import add_json_flag, print_json
from sarfusion.errors import InputError

log = logging.getLogger(__name__)

_RAW = argparse.RawDescriptionHelpFormatter


def _fuse(args: argparse.Namespace) -> int:
    from sarfusion.tasks.colorize import build_fused_tiles

    result = build_fused_tiles(args.aoi, args.out, mode=args.mode, preview_dir=args.preview)
    if args.json:
        print_json(result)
    else:
        print(f"fused {result['tiles']} tiles -> {result['fused_dir']} and {result['span_dir']} "
              f"(valid {result['valid_fraction']:.1%}, {result['seconds']} s)")
    return 0


def _evaluate_and_print(args: argparse.Namespace, aoi: str, weights: str, extra: dict | None = None) -> int:
    from sarfusion.tasks.colorize import evaluate_colorizer

    result = evaluate_colorizer(aoi, weights, batch_size=args.batch_size, num_workers=args.workers,
                                preview_dir=args.preview, device=args.device)
    result = {**(extra or {}), **result}
    if args.json:
        print_json(result)
    else:
        print(f"held-out tiles {result['tiles']} ({result['pixels']} valid px)")
        print(f"{'':>12} {'model':>9} {'baseline':>9}")
        for k in ("rgb_mae", "hue_err_deg", "sat_mae", "chroma_l1"):
            print(f"{k:>12} {result['model'][k]:9.4f} {result['baseline'][k]:9.4f}")
        print(f"beats the constant mean-colour baseline: {result['beats_baseline']}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from sarfusion.tasks.colorize import train_colorizer

    path = train_colorizer(args.aoi, args.weights, preset=args.preset, work_dir=args.work_dir)
    log.info("weights written to %s", path)
    if args.no_eval:
        if args.json:
            print_json({"weights": str(path)})
        return 0
    return _evaluate_and_print(args, args.aoi, args.weights, {"weights": str(path)})


def _predict(args: argparse.Namespace) -> int:
    from sarfusion.tasks.colorize import colorize_tiles

    paths: list[Path] = []
    for item in args.inputs:
        p = Path(item)
        if p.is_dir():
            sar_dir = p / "SAR-Intensity" if (p / "SAR-Intensity").is_dir() else p
            found = sorted(q for q in sar_dir.iterdir() if q.suffix.lower() in (".tif", ".tiff"))
            if not found:
                raise InputError("no .tif SAR tiles here", sar_dir)
            paths += found
        else:
            paths.append(p)
    written = colorize_tiles(paths, args.weights, args.out, batch_size=args.batch_size,
                             num_workers=args.workers, preview_dir=args.preview, device=args.device)
    if args.json:
        print_json({"tiles": len(written), "out_dir": str(args.out)})
    else:
        print(f"colorized {len(written)} tiles -> {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    return _evaluate_and_print(args, args.aoi, args.weights)


def _add_runtime(p: argparse.ArgumentParser, workers: int) -> None:
    p.add_argument("--batch-size", type=int, default=8, help="tiles per inference batch (default 8)")
    p.add_argument("--workers", type=int, default=workers,
                   help=f"data-loading processes that read and prepare tiles (default {workers})")
    p.add_argument("--device", default=None, help="torch device (default: CUDA when present, else CPU)")
    p.add_argument("--preview", metavar="DIR", default=None, help="write PNG panels here")
    add_json_flag(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fuse", formatter_class=_RAW, help="HSV fusion of SN6 quad-pol SAR with PS-RGB (fused + SPAN tiles)",
        description=(
            "Fuse every SAR-Intensity/PS-RGB pair (paired by ImageId) of an SN6 AOI folder:\n"
            "SPAN of HH, HV, VH, VV -> histogram-matched to the optical green band (valid pixels) -> Lee 3x3\n"
            "-> RGB->HSV, V := SPAN, HSV->RGB. Nodata (SAR 0/NaN, optical 0) stays 0.\n\n"
            "Writes OUT/Fused-RGB-SAR/<name>.tif (3-band uint8) and OUT/SPAN/<name>.tif (1-band uint8),\n"
            "georeferenced like the SAR tile, 'SAR-Intensity' in the name replaced by the folder name.\n"
            "A SAR tile without 4 bands or without its PS-RGB partner stops the run before anything is written."))
    p.add_argument("aoi", help="SN6 AOI folder holding SAR-Intensity/ and PS-RGB/")
    p.add_argument("--out", required=True, help="output folder (Fused-RGB-SAR/ and SPAN/ are created in it)")
    p.add_argument("--mode", choices=("textbook", "notebook"), default="textbook",
                   help="SPAN: 'textbook' = |HH|^2+|HV|^2+|VH|^2+|VV|^2 in linear power (dB -> 10^(dB/10), "
                        "summed, back to dB; default); 'notebook' = HH^2 + 2|HV| + VV^2 on the dB values "
                        "(SN6 public notebook)")
    p.add_argument("--preview", metavar="DIR", default=None, help="write optical | SPAN | fused PNG panels here")
    add_json_flag(p)
    p.set_defaults(func=_fuse)

    col = subparsers.add_parser(
        "colorize", help="Pix2Pix colorization of SAR (SPAN -> hue, saturation): train, predict, evaluate",
        description=("Pix2Pix (U-Net + 70x70 PatchGAN, L1 x100) learns the optical colour of a SAR SPAN image.\n"
                     "Hue and saturation are predicted as the chroma vector (S cos H, S sin H), so hue has no\n"
                     "wrap-around; the output is HSV->RGB with V = the SPAN."),
        formatter_class=_RAW)
    sub = col.add_subparsers(dest="colorize_command", metavar="<action>")
    col.set_defaults(func=lambda args: (col.print_help(), 2)[1])

    t = sub.add_parser(
        "train", formatter_class=_RAW, help="train on an SN6 training AOI, then evaluate on held-out tiles",
        description=("Train on SAR-Intensity + PS-RGB of an SN6 training AOI. The last 20% of tiles (by ImageId)\n"
                     "are held out; after training the model is compared with the constant mean-colour baseline\n"
                     "on them (RGB MAE with V shared, saturation-weighted hue error, ...).\n"
                     "Presets: 'demo' (64 px crops, U-Net 6 levels / 16 filters, batch 4, 400 steps: ~1 CPU minute);\n"
                     "'full' (the Pix2Pix reference: U-Net 256 with 8 levels / 64 filters, 256 px crops, batch 1,\n"
                     "200 epochs with linear decay over the last 100, Adam 2e-4 (0.5, 0.999)).\n"
                     "Writes WEIGHTS/colorizer.pt and colorizer_config.json; checkpoints in --work-dir\n"
                     "(default WEIGHTS/runs/colorize_<preset>), resumed automatically."))
    t.add_argument("aoi", help="SN6 training AOI folder (SAR-Intensity/, PS-RGB/)")
    t.add_argument("--weights", required=True, help="folder for colorizer.pt")
    t.add_argument("--preset", choices=("demo", "full"), default="demo", help="recipe (default demo)")
    t.add_argument("--work-dir", default=None, help="checkpoint/run folder (default WEIGHTS/runs/colorize_<preset>)")
    t.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    _add_runtime(t, workers=0)
    t.set_defaults(func=_train)

    pr = sub.add_parser(
        "predict", formatter_class=_RAW, help="colorize SAR-Intensity tiles (GeoTIFF RGB out)",
        description=("Colorize SAR tiles: batched inference with parallel tile loading.\n"
                     "INPUTS are SAR-Intensity GeoTIFFs or folders (an AOI folder uses its SAR-Intensity/).\n"
                     "Writes OUT/<name with 'SAR-Intensity' -> 'Colorized'>.tif: 3-band uint8 RGB, georeferenced\n"
                     "like the input, nodata 0. --preview writes SPAN | colorized PNG panels."))
    pr.add_argument("inputs", nargs="+", help="SAR-Intensity .tif files or folders")
    pr.add_argument("--weights", required=True, help="folder holding colorizer.pt")
    pr.add_argument("--out", required=True, help="output folder")
    _add_runtime(pr, workers=2)
    pr.set_defaults(func=_predict)

    ev = sub.add_parser(
        "evaluate", formatter_class=_RAW, help="model vs constant mean-colour baseline on held-out tiles",
        description=("Compare the colorizer with the constant mean-colour baseline (the training set's mean\n"
                     "chroma) on the held-out tiles saved at training, rendered with the fused truth's V.\n"
                     "--preview writes SPAN | colorized | fused truth | baseline PNG panels."))
    ev.add_argument("aoi", help="SN6 training AOI folder (SAR-Intensity/, PS-RGB/)")
    ev.add_argument("--weights", required=True, help="folder holding colorizer.pt")
    _add_runtime(ev, workers=0)
    ev.set_defaults(func=_evaluate)

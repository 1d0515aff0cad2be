#!/usr/bin/env python
"""SAR -> optical translation benchmarks.

``--what cv`` (the honest quality number): cross-validation over the real co-registered pairs in
``../shared/real_samples/s1s2_pairs`` (26 Sentinel-1 VH / Sentinel-2 RGB pairs, 1024 px, 10 m) or
any other pair folder / SEN1-2 folder given by ``--data``. The sorted names are cut into
``--folds`` contiguous blocks (neighbouring fragment numbers are neighbouring areas); each fold
trains the ``--preset`` recipe on the other blocks and scores the held-out images, whole, beside
the mean-image and histogram-matched-SAR baselines. Prints one line per fold, the mean over folds
and a JSON summary on the last line; the panels (SAR | generated | truth) of every held-out pair
are left under ``--work``.

``--what speed``: inference throughput of ``sarfusion.tasks.translate.translate`` (read,
normalise, generator, write) on generated MultiEarth tiffs or SEN1-2 PNGs, for one or several
dropout samples per input, with an untrained generator of the preset's size.

    python bench/bench_translate.py --what cv [--data DIR] [--folds 4] [--only-folds 0,1] [--preset cpu]
    python bench/bench_translate.py --what speed [--kind multiearth|sen12] [--images 8] [--samples 1,4]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from sarfusion.engine import save_torch_atomic, select_device
from sarfusion.models.pix2pix import UNetGenerator, init_weights
from sarfusion.synth.landscape import write_multiearth, write_sen12
from sarfusion.tasks.translate import PRESETS, WEIGHTS_NAME, evaluate_translation, translate

REAL_PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "real_samples" / "s1s2_pairs"
METHODS = ("model", "mean", "histmatch")


def cross_validate(args: argparse.Namespace) -> dict:
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"{data}: not found (the real pairs sit at ../shared/real_samples beside the repo)")
    cfg = PRESETS[args.preset]
    if args.steps:
        cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, max_steps=args.steps))
    work = Path(args.work)
    folds = [int(f) for f in args.only_folds.split(",")] if args.only_folds else list(range(args.folds))
    rows = []
    for fold in folds:
        t0 = time.time()
        res = evaluate_translation(data, work / f"fold{fold}" / "weights", work / f"fold{fold}", preset=args.preset,
                                   config=cfg, fold=fold, folds=args.folds)
        for kind, scores in res.items():
            row = {"fold": fold, "kind": kind, "held_out": scores["held_out"], "train_s": scores["train_seconds"],
                   "wall_s": round(time.time() - t0, 1),
                   **{f"{m}_{k}": round(scores[m][k], 4) for m in METHODS for k in ("psnr", "ssim", "multiearth")}}
            rows.append(row)
            print(f"fold {fold} ({kind}, held out {', '.join(scores['held_out'])}): "
                  + "  ".join(f"{m} {scores[m]['psnr']:.2f} dB / {scores[m]['ssim']:.3f}" for m in METHODS)
                  + f"  (trained {scores['train_seconds']} s)", flush=True)
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k.split("_")[0] in METHODS}
    print("mean over folds: " + "  ".join(f"{m} {mean[m + '_psnr']:.2f} dB / {mean[m + '_ssim']:.3f}" for m in METHODS))
    print(f"model - mean image: {mean['model_psnr'] - mean['mean_psnr']:+.2f} dB PSNR, "
          f"{mean['model_ssim'] - mean['mean_ssim']:+.3f} SSIM; model - histmatch: "
          f"{mean['model_psnr'] - mean['histmatch_psnr']:+.2f} dB, {mean['model_ssim'] - mean['histmatch_ssim']:+.3f}")
    return {"bench": "translate_cv", "data": str(data), "preset": args.preset, "folds": args.folds,
            "config": asdict(cfg), "per_fold": rows, "mean": mean}


def speed(args: argparse.Namespace) -> dict:
    device = select_device(args.device)
    preset = args.preset or ("full" if device.type == "cuda" else "demo")
    cfg = PRESETS[preset]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.kind == "multiearth":
            write_multiearth(tmp / "data", seed=0, sites=1, sar_dates=args.images, optical_dates=1)
            inputs, in_ch = tmp / "data" / "sent1", 2
        else:
            write_sen12(tmp / "data", args.images, seed=0)
            inputs, in_ch = tmp / "data", 1
        gen = init_weights(UNetGenerator(in_ch, 3, cfg.net.num_downs, cfg.net.ngf, cfg.net.dropout))
        save_torch_atomic({"config": asdict(cfg), "kind": args.kind, "in_channels": in_ch, "out_channels": 3,
                           "generator": gen.state_dict()}, tmp / "w" / args.kind / WEIGHTS_NAME)
        results = []
        for k in (int(s) for s in args.samples.split(",")):
            translate(inputs, tmp / f"warm{k}", tmp / "w", samples=k, device=str(device))  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            translate(inputs, tmp / f"out{k}", tmp / "w", samples=k, device=str(device))
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            rec = {"kind": args.kind, "preset": preset, "device": str(device), "samples": k, "images": args.images,
                   "seconds": round(dt, 3), "images_per_s": round(args.images / dt, 2),
                   "outputs_per_s": round(args.images * k / dt, 2), "torch_threads": torch.get_num_threads()}
            print(" ".join(f"{a}={b}" for a, b in rec.items()), flush=True)
            results.append(rec)
    return {"bench": "translate_speed", "results": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=["cv", "speed"], default="speed")
    ap.add_argument("--data", default=str(REAL_PAIRS), help="cv: pair folder or SEN1-2 folder (default: the shared S1/S2 pairs)")
    ap.add_argument("--folds", type=int, default=4, help="cv: contiguous blocks of the sorted names (default 4)")
    ap.add_argument("--only-folds", default="", help="cv: comma-separated folds to run (default: all)")
    ap.add_argument("--steps", type=int, default=0, help="cv: override the preset's training steps")
    ap.add_argument("--work", default="wdata/bench_translate_cv", help="cv: weights, panels and scored images")
    ap.add_argument("--kind", choices=["multiearth", "sen12"], default="multiearth", help="speed: input layout")
    ap.add_argument("--images", type=int, default=8, help="speed: SAR inputs to translate")
    ap.add_argument("--preset", choices=list(PRESETS), default=None,
                    help="cv: default cpu; speed: default full on CUDA, demo on CPU")
    ap.add_argument("--samples", default="1,4", help="speed: comma-separated outputs per input")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    if args.what == "cv":
        args.preset = args.preset or "cpu"
        out = cross_validate(args)
    else:
        out = speed(args)
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()

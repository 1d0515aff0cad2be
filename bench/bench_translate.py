#!/usr/bin/env python
"""SAR -> optical inference throughput: images per second of ``sarfusion.tasks.translate.translate``
(read, normalise, generator, write) on generated MultiEarth tiffs (VV + VH, 256 x 256) or SEN1-2
PNGs, for one or several dropout samples per input.

    python bench/bench_translate.py [--kind multiearth|sen12] [--images 8] [--preset demo|full] \
        [--samples 1,4] [--device cpu]

Weights are an untrained generator of the preset's size (speed does not depend on training).
Prints one line per setting and a JSON summary on the last line. Default preset: ``full`` on
CUDA, ``demo`` on CPU.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from sarfusion.engine import save_torch_atomic, select_device
from sarfusion.models.pix2pix import UNetGenerator, init_weights
from sarfusion.synth.landscape import write_multiearth, write_sen12
from sarfusion.tasks.translate import PRESETS, WEIGHTS_NAME, translate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["multiearth", "sen12"], default="multiearth")
    ap.add_argument("--images", type=int, default=8, help="SAR inputs to translate")
    ap.add_argument("--preset", choices=list(PRESETS), default=None)
    ap.add_argument("--samples", default="1,4", help="comma-separated outputs per input")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
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
    print(json.dumps({"bench": "translate", "results": results}))


if __name__ == "__main__":
    main()

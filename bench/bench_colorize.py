#!/usr/bin/env python
"""Colorization inference speed: tiles per second of ``colorize_tiles`` (read SAR, SPAN input,
generator, HSV->RGB, GeoTIFF write) for several batch sizes and loader process counts.

The SpaceNet 6 blog's colorization took 5.4 s a tile because one process loaded the data; here
tiles are prepared by ``--workers`` DataLoader processes while the generator runs batched.

    python bench/bench_colorize.py [--tiles 16] [--size 900] [--preset demo|full] \
        [--batch-sizes 1,8] [--workers 0,2] [--device cpu]

Weights are an untrained generator of the preset's size (speed does not depend on training);
tiles are random SN6-like SAR (offset dB, band means 26-36, a nodata band). Prints one line per
setting and a JSON summary on the last line. Default preset: ``full`` on CUDA, ``demo`` on CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from sarfusion.engine import save_torch_atomic, select_device
from sarfusion.io.raster import write_raster
from sarfusion.models.pix2pix import UNetGenerator, init_weights
from sarfusion.tasks.colorize import CHROMA_ENCODING, PRESETS, WEIGHTS_NAME, colorize_tiles


def make_tiles(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    gt = (592000.0, 0.5, 0.0, 5750000.0, 0.0, -0.5)
    means = np.array([28.6, 36.1, 33.8, 26.2], np.float32)[:, None, None]
    paths = []
    for i in range(n):
        sar = (means + 8.5 * rng.standard_normal((4, size, size), dtype=np.float32)).clip(1, 93)
        sar[:, : size // 10] = 0  # a nodata band, as at strip edges
        path = folder / f"SN6_Test_Public_AOI_11_Rotterdam_SAR-Intensity_20190823144405_20190823144711_tile_{i}.tif"
        paths.append(write_raster(path, sar.astype(np.float32), gt, 32631, 0))
    return paths


def make_weights(folder: Path, preset: str) -> Path:
    cfg = PRESETS[preset]
    gen = init_weights(UNetGenerator(1, 2, cfg.net.num_downs, cfg.net.ngf, cfg.net.dropout))
    state = {"config": asdict(cfg), "in_channels": 1, "out_channels": 2, "encoding": CHROMA_ENCODING,
             "generator": gen.state_dict(), "baseline_chroma": [0.0, 0.0], "train_ids": [], "holdout_ids": []}
    return save_torch_atomic(state, folder / WEIGHTS_NAME)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--size", type=int, default=900)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = select_device(args.device)
    preset = args.preset or ("full" if device.type == "cuda" else "demo")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        paths = make_tiles(tmp / "in", args.tiles, args.size)
        make_weights(tmp, preset)
        # warm-up (first conv algorithm choice, page cache)
        colorize_tiles(paths[:1], tmp, tmp / "warm", batch_size=1, num_workers=0, device=str(device))
        for workers in [int(w) for w in args.workers.split(",")]:
            for bs in [int(b) for b in args.batch_sizes.split(",")]:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                colorize_tiles(paths, tmp, tmp / f"out_{workers}_{bs}", batch_size=bs, num_workers=workers,
                               device=str(device))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                rec = {"workers": workers, "batch_size": bs, "tiles": len(paths), "seconds": round(dt, 2),
                       "tiles_per_s": round(len(paths) / dt, 3), "s_per_tile": round(dt / len(paths), 3)}
                results.append(rec)
                print(f"workers {workers} batch {bs:2d}: {rec['tiles_per_s']:.3f} tiles/s "
                      f"({rec['s_per_tile']:.3f} s/tile)", file=sys.stderr, flush=True)
    print(json.dumps({"bench": "colorize", "device": str(device), "preset": preset, "size": args.size,
                      "torch_threads": torch.get_num_threads(), "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark the building scorer: 100,000 truth and 100,000 predicted polygons over 2,000 tiles.

Writes the two CSVs (SN6 label and submission formats) to a temporary folder, then times
``score_buildings`` from the file paths (reading + parsing + matching). Target: under 10 s on 2 cores.

    .venv/bin/python bench/bench_buildings_metric.py [--tiles 2000] [--per-tile 50] [--seed 0]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from sarfusion.io.vector import geometries_to_wkt
from sarfusion.metrics.buildings import score_buildings

TILE_PX = 900


def footprints(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """``n`` disjoint rotated rectangles (one per grid cell) inside a 900 px tile."""
    cell = TILE_PX / cells
    idx = rng.choice(cells * cells, size=n, replace=False)
    cx = (idx % cells + 0.5) * cell + rng.uniform(-0.1, 0.1, n) * cell
    cy = (idx // cells + 0.5) * cell + rng.uniform(-0.1, 0.1, n) * cell
    w = rng.uniform(0.3, 0.7, n) * cell
    h = rng.uniform(0.3, 0.7, n) * cell
    angle = rng.uniform(0, np.pi / 2, n)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / 2
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x = cx[:, None] + corners[:, 0] * w[:, None] * ca - corners[:, 1] * h[:, None] * sa
    y = cy[:, None] + corners[:, 0] * w[:, None] * sa + corners[:, 1] * h[:, None] * ca
    return shapely.polygons(np.stack([x, y], axis=-1))


def make_files(folder: Path, tiles: int, per_tile: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    cells = int(np.ceil(np.sqrt(per_tile * 1.3)))
    ids, geoms, pids, pgeoms = [], [], [], []
    for t in range(tiles):
        image_id = f"20190823144405_20190823144711_tile_{t}"
        truth = footprints(rng, per_tile, cells)
        # predictions: 80% jittered copies of true buildings, 20% spurious shapes elsewhere
        n_hit = int(0.8 * per_tile)
        hit = rng.choice(per_tile, n_hit, replace=False)
        jitter = rng.normal(0, 3, (n_hit, 2))
        shifted = shapely.transform(truth[hit], lambda c, j=np.repeat(jitter, 5, axis=0): c + j)
        spurious = footprints(rng, per_tile - n_hit, cells)
        ids += [image_id] * per_tile
        geoms.append(truth)
        pids += [image_id] * per_tile
        pgeoms.append(np.concatenate([shifted, spurious]))
    truth_csv, pred_csv = folder / "truth.csv", folder / "pred.csv"
    pd.DataFrame({"ImageId": ids, "TileBuildingId": np.arange(len(ids)) % per_tile,
                  "PolygonWKT_Pix": geometries_to_wkt(np.concatenate(geoms))}).to_csv(truth_csv, index=False)
    pd.DataFrame({"ImageId": pids, "PolygonWKT_Pix": geometries_to_wkt(np.concatenate(pgeoms)),
                  "Confidence": rng.random(len(pids)).round(4)}).to_csv(pred_csv, index=False)
    return truth_csv, pred_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=2000)
    parser.add_argument("--per-tile", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        truth_csv, pred_csv = make_files(Path(tmp), args.tiles, args.per_tile, args.seed)
        gen = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        result = score_buildings(truth_csv, pred_csv)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = args.tiles * args.per_tile
    print(f"generated {n} truth + {n} predicted polygons over {args.tiles} tiles in {gen:.1f} s")
    print(f"tp {result['tp']} fp {result['fp']} fn {result['fn']} F1 {result['f1']:.4f} "
          f"n_images {result['n_images']}")
    print(f"score_buildings (read CSVs + parse + match): {elapsed:.2f} s wall, {cpu:.2f} s CPU "
          f"(target < 10 s on 2 cores; wall time is inflated when other jobs share the cores)")


if __name__ == "__main__":
    main()

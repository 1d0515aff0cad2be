#!/usr/bin/env python
"""What the SN6 post-processing can reach: F1 of perfect maps against the labels they came from.

For every labelled tile of an SN6 AOI (default: a generated city, ``synth sn6`` seed 0, 40 tiles,
as ``make demo`` makes it), three ceilings per preset, scored with the bundled SpaceNet scorer:

- ``targets``: the preset's own targets (footprint, edge, contact) fed to its watershed, at the
  tile's 0.5 m. A model that predicted its targets exactly would score this; anything below 1
  is the post-processing losing buildings;
- ``targets at input scale``: the same, with the targets built at the preset's ``input_scale``
  and resized back to the tile, as prediction does; only for a preset whose network sees resized
  tiles (none since the demo moved to the tiles' 0.5 m; it trained at 1 m before);
- ``footprint only``: a perfect footprint mask split only where it has gaps (connected
  components): what a model that finds the footprints but no wall between touching buildings
  can reach;
- ``footprint only, rows split``: the same blobs cut by the row splitting
  (``postproc.split_rows``) with a row-count table fitted on the labels of ``--rows-from`` (a
  training AOI; default: the scored AOI itself, an in-sample bound).

Without ``--aoi`` the bench generates the city and scores its training part, then its test part
(the table from the training part's labels: out of sample).

Also prints the share of buildings that touch another (terraced rows). The README quotes it
(SN6 buildings: "Targets and watershed, checked against perfect maps").

    .venv/bin/python bench/bench_buildings_ceiling.py [--aoi DIR/train/AOI_11_Rotterdam] [--rows-from AOI]
        [--presets demo,full]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import shapely
import shapely.affinity
from scipy import ndimage as ndi

from sarfusion.datasets.sn6 import find_label_csv, find_tiles, read_label_csv
from sarfusion.datasets.sn6_buildings import (building_targets, rasterize_instances, read_building_polygons,
                                              scaled_target_widths)
from sarfusion.io.raster import raster_info
from sarfusion.io.vector import geometries_to_wkt
from sarfusion.metrics.buildings import score_buildings
from sarfusion.postproc import polygonize_instances, probabilities_to_polygons, split_rows
from sarfusion.tasks.buildings import PRESETS, label_row_counts

COLUMNS = ["ImageId", "PolygonWKT_Pix", "Confidence"]


def ceilings(truth: pd.DataFrame, shapes: dict[str, tuple[int, int]], preset: str,
             row_counts: tuple[str, ...]) -> dict[str, float]:
    cfg = PRESETS[preset]
    rows: dict[str, list] = {"targets": [], "targets at input scale": [], "footprint only": [],
                             "footprint only, rows split": []}
    for image_id, (h, w) in shapes.items():
        polys = [shapely.from_wkt(t) for t in truth.loc[truth.ImageId == image_id, "PolygonWKT_Pix"]]
        inst = rasterize_instances(polys, (h, w))
        found = {
            "targets": probabilities_to_polygons(
                building_targets(inst, cfg.edge_width, cfg.contact_width, cfg.contact_inside_width)
                .astype(np.float32), cfg.watershed)[0],
            "footprint only": polygonize_instances(ndi.label(inst > 0)[0], None, cfg.watershed)[0],
            "footprint only, rows split": polygonize_instances(split_rows(ndi.label(inst > 0)[0], row_counts),
                                                               None, cfg.watershed)[0],
        }
        s = cfg.input_scale
        if s != 1.0:  # built at the network's scale, resized back as predict_probabilities does
            sh, sw = int(round(h * s)), int(round(w * s))
            small = rasterize_instances([shapely.affinity.scale(p, s, s, origin=(0, 0)) for p in polys], (sh, sw))
            widths = scaled_target_widths(cfg.edge_width, cfg.contact_width, cfg.contact_inside_width, s)
            t = building_targets(small, *widths).astype(np.float32)
            t = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in t])
            found["targets at input scale"] = probabilities_to_polygons(t, cfg.watershed)[0]
        for key, polys_found in found.items():
            rows[key] += [(image_id, wkt, 1.0) for wkt in geometries_to_wkt(polys_found)]
    return {key: score_buildings(truth, pd.DataFrame(r, columns=COLUMNS))["f1"] for key, r in rows.items() if r}


def labelled_shapes(aoi: Path, csv: Path | None = None) -> tuple[pd.DataFrame, dict[str, tuple[int, int]]]:
    """The AOI's labels (``csv``, default its SummaryData CSV) and the pixel shape of each labelled tile."""
    truth = read_label_csv(csv or find_label_csv(aoi))
    truth = truth[truth.PolygonWKT_Pix != "POLYGON EMPTY"]
    labelled = set(truth.ImageId)
    shapes = {}
    for tile in find_tiles(aoi):
        if tile.image_id in labelled:
            info = raster_info(tile.sar_path)
            shapes[tile.image_id] = (info.height, info.width)
    return truth[truth.ImageId.isin(shapes)], shapes


def table_from(aoi: Path) -> tuple[str, ...]:
    """The row-count table of a training AOI's labels, as ``buildings train`` fits it."""
    polygons = read_building_polygons(find_label_csv(aoi))
    return label_row_counts([t for t in find_tiles(aoi) if t.image_id in polygons], polygons, 10 ** 6)


def touching_share(truth: pd.DataFrame) -> float:
    touching = total = 0
    for _, group in truth.groupby("ImageId"):
        polys = [shapely.from_wkt(t) for t in group.PolygonWKT_Pix]
        tree = shapely.STRtree(polys)
        for i, p in enumerate(polys):
            touching += any(j != i for j in tree.query(p.buffer(0.6)))
            total += 1
    return touching / max(total, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aoi", type=Path, default=None,
                    help="an SN6 training AOI (SAR-Intensity/ + SummaryData/*Buildings.csv); default: "
                         "a generated city (synth sn6 --seed 0 --tiles 40, its training part)")
    ap.add_argument("--rows-from", type=Path, default=None,
                    help="training AOI whose labels fit the row-count table (default: the scored AOI)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated city (default 0, the demo's)")
    ap.add_argument("--presets", default="demo,full", help="comma-separated building presets (default demo,full)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        parts = [(args.aoi, None)]
        if args.aoi is None:
            from sarfusion.synth.sn6 import generate_sn6
            data = generate_sn6(Path(tmp) / "sn6", tiles=40, seed=args.seed)
            parts = [(data["train_aoi"], None), (data["test_aoi"], data["test_truth_csv"])]
        table = table_from(args.rows_from or Path(parts[0][0]))
        for aoi, csv in parts:
            truth, shapes = labelled_shapes(Path(aoi), csv)
            print(f"{aoi}: {len(shapes)} tiles, {len(truth)} buildings, "
                  f"{touching_share(truth):.3f} of them touch another", flush=True)
            for preset in args.presets.split(","):
                t0 = time.time()
                for key, f1 in ceilings(truth, shapes, preset, table).items():
                    print(f"  {preset:5s} {key:28s} F1 {f1:.3f}", flush=True)
                print(f"  ({preset}: {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

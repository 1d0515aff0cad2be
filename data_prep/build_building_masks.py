"""Write SN6 building target masks (footprint, edge, contact; 3-band uint8 GeoTIFF) per SAR tile.

Usage: python data_prep/build_building_masks.py AOI_DIR OUT_DIR [--edge-width 2] [--contact-width 3]

Training rasterises these on the fly; this script writes them for inspection or other tools.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sarfusion.datasets.sn6 import find_label_csv, find_tiles
from sarfusion.datasets.sn6_buildings import building_targets, rasterize_instances, read_building_polygons
from sarfusion.errors import InputError
from sarfusion.io.raster import raster_info, write_raster


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("aoi")
    ap.add_argument("out")
    ap.add_argument("--edge-width", type=int, default=2)
    ap.add_argument("--contact-width", type=int, default=3)
    args = ap.parse_args()
    try:
        csv = find_label_csv(args.aoi)
        if csv is None:
            raise InputError("no building label CSV in SummaryData", args.aoi)
        polygons = read_building_polygons(csv)
        for tile in find_tiles(args.aoi):
            info = raster_info(tile.sar_path)
            labels = rasterize_instances(polygons.get(tile.image_id, []), (info.height, info.width))
            masks = building_targets(labels, args.edge_width, args.contact_width)
            write_raster(Path(args.out) / f"{tile.image_id}_masks.tif", masks, info.geotransform, info.crs_wkt)
    except InputError as exc:
        print(f"build_building_masks: error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Building footprints as a GIS layer: map coordinates, one polygon per building across
overlapping tiles, GeoPackage / GeoJSON through OGR."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import shapely

from sarfusion.io.raster import crs_epsg
from sarfusion.io.vector import read_features
from sarfusion.postproc import merge_footprints


def max_pairwise_overlap(polygons) -> float:
    """Largest intersection area between two different polygons (m^2 for UTM)."""
    polygons = np.asarray(list(polygons), dtype=object)
    if len(polygons) < 2:
        return 0.0
    tree = shapely.STRtree(polygons)
    worst = 0.0
    for i, j in zip(*tree.query(polygons, predicate="intersects")):
        if i < j:
            worst = max(worst, float(polygons[i].intersection(polygons[j]).area))
    return worst


def test_merge_keeps_one_polygon_per_building_and_no_overlaps():
    """Twelve buildings seen by two overlapping tiles: whole copies (jittered 0.3 m), copies cut by
    a tile edge, and two neighbours whose predictions bleed 1 m into each other. Every building
    comes out once, as its whole copy, and no two outputs overlap."""
    rng = np.random.default_rng(0)
    truth = [shapely.box(x, y, x + 12, y + 8) for x in range(0, 120, 20) for y in (0, 30)]
    polys, conf, src, cut = [], [], [], []
    for k, b in enumerate(truth):
        for tile in ("A", "B"):
            g = shapely.affinity.translate(b, *rng.uniform(-0.3, 0.3, 2))
            is_cut = tile == "B" and k % 3 == 0
            if is_cut:  # tile B ends across this building: a partial copy, flagged, more confident
                g = g.intersection(shapely.box(-1e3, -1e3, b.bounds[0] + 5, 1e3))
            polys.append(g)
            conf.append(0.99 if is_cut else rng.uniform(0.6, 0.9))
            src.append(tile)
            cut.append(is_cut)
    # two distinct neighbours 2 m apart whose predictions (tile A only) overlap by 1 m
    polys += [shapely.box(200, 0, 210, 10), shapely.box(209, 0, 219, 10)]
    conf += [0.8, 0.7]
    src += ["A", "A"]
    cut += [False, False]
    merged = merge_footprints(np.array(polys, dtype=object), np.array(conf), np.array(src), np.array(cut))
    assert len(merged) == len(truth) + 2
    out = [m["geometry"] for m in merged]
    assert max_pairwise_overlap(out) < 1e-6
    for b in truth:  # each building once, as a whole copy (IoU with the truth > 0.9)
        ious = [b.intersection(g).area / b.union(g).area for g in out]
        assert sorted(ious)[-1] > 0.9 and sorted(ious)[-2] < 0.05
        best = merged[int(np.argmax(ious))]
        assert best["n_tiles"] == 2 and best["tiles"] == "A,B"
    neighbours = [m for m in merged if m["geometry"].bounds[0] >= 200]
    assert sorted(round(m["area_m2"]) for m in neighbours) == [90, 100]  # the less confident one gave up 1 m


@pytest.fixture(scope="module")
def sn6_scene(tmp_path_factory):
    from sarfusion.synth.sn6 import generate_sn6

    return generate_sn6(tmp_path_factory.mktemp("sn6geo"), tiles=16, size=200, seed=4)


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_truth_footprints_to_map_merge_the_tile_overlaps(sn6_scene, tmp_path, suffix):
    """The synthetic test tiles' TRUE footprints (two strips that overlap) through
    write_map_footprints: as many polygons as distinct buildings (counted independently, from
    the union of all copies shrunk by 5 cm), none overlapping by more than 1 m^2, each the largest
    copy of its building, in the tiles' CRS; ogrinfo reads it."""
    from sarfusion.datasets.sn6 import find_tiles
    from sarfusion.io.raster import pixel_to_map, raster_info
    from sarfusion.io.vector import parse_wkt
    from sarfusion.tasks.buildings import write_map_footprints

    tiles = find_tiles(sn6_scene["test_aoi"])
    truth = pd.read_csv(sn6_scene["test_truth_csv"])
    truth = truth[truth.PolygonWKT_Pix != "POLYGON EMPTY"].assign(Confidence=1.0)
    result = write_map_footprints(truth, tiles, tmp_path / f"b{suffix}")
    geoms, props, crs = read_features(result["footprints"])
    assert crs_epsg(crs) == 32631 and result["crs_epsg"] == 32631
    copies = []
    for t in tiles:
        gt = raster_info(t.sar_path).geotransform
        for g in parse_wkt(truth.loc[truth.ImageId == t.image_id, "PolygonWKT_Pix"]):
            copies.append(shapely.transform(g, lambda xy, gt=gt: np.column_stack(pixel_to_map(gt, xy[:, 1], xy[:, 0]))))
    # SN6 drops polygons under 80 px^2 (20 m^2 here): a building seen only as a smaller sliver is gone
    kept = [c for c in copies if c.area >= 80 * 0.25]
    distinct = len(shapely.get_parts(shapely.union_all(shapely.buffer(kept, -0.05, join_style="mitre"))))
    assert len(copies) > len(geoms) == distinct > 5, (len(copies), len(geoms), distinct)
    assert max_pairwise_overlap(geoms) <= 1.0
    for c in copies:  # every copy is inside one output polygon, the largest copy of its building
        share = [c.intersection(g).area / c.area for g in geoms]
        k = int(np.argmax(share))
        assert share[k] > 0.99 or (c.area < 20 and share[k] == 0)
        assert share[k] == 0 or geoms[k].area >= c.area - 1e-6
    assert set(props[0]) == {"confidence", "image_id", "tiles", "n_tiles", "area_m2"}
    assert any(p["n_tiles"] == 2 for p in props)
    if shutil.which("ogrinfo"):
        info = subprocess.run(["ogrinfo", "-ro", "-so", "-al", str(result["footprints"])], capture_output=True,
                              text=True, check=True).stdout
        assert f"Feature Count: {len(geoms)}" in info and "32631" in info

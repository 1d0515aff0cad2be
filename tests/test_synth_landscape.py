"""Generated SEN1-2 and MultiEarth data: layouts the readers accept, determinism, physics."""
from __future__ import annotations

import numpy as np

from sarfusion.datasets import multiearth, sen12
from sarfusion.io.raster import raster_info, read_raster
from sarfusion.synth.landscape import (BARE, FOREST, FRONTIER_CLEARED_SHARE, FRONTIER_LOT_DEPTH_M,
                                       FRONTIER_LOT_WIDTH_M, FRONTIER_RELIEF_M, WATER, make_clouds,
                                       make_forest_frontier, make_landscape, render_optical, render_sar, speckle_db,
                                       write_multiearth, write_sen12)


def test_sen12_layout_pairs_and_determinism(tmp_path):
    truth = write_sen12(tmp_path / "a", pairs=6, seed=5, size=64, cloudy_share=0.5, patches_per_scene=3)
    write_sen12(tmp_path / "b", pairs=6, seed=5, size=64, cloudy_share=0.5, patches_per_scene=3)
    pairs = sen12.find_pairs(tmp_path / "a")
    assert len(pairs) == 6 and {p.scene for p in pairs} == {"100", "101"}
    assert set(truth) == {p.key for p in pairs}
    for p in pairs:
        sar, opt = sen12.read_png(p.sar, 1), sen12.read_png(p.optical, 3)
        assert sar.shape == (1, 64, 64) and opt.shape == (3, 64, 64)
        same = tmp_path / "b" / p.sar.relative_to(tmp_path / "a")
        assert np.array_equal(sar, sen12.read_png(same, 1))


def test_multiearth_layout_georef_and_qa60(tmp_path):
    truth = write_multiearth(tmp_path, seed=2, sites=2, sar_dates=2, optical_dates=4, size=64)
    scenes = multiearth.find_pairs(tmp_path)
    assert len(scenes) == 4 and all(len(s.optical) == 4 for s in scenes)
    info = raster_info(scenes[0].vv)
    assert info.georeferenced and info.epsg == 4326 and info.dtype == np.float32
    sar = multiearth.read_sar(scenes[0])
    assert sar.shape == (2, 64, 64) and -35 < np.median(sar[0]) < 0 and np.median(sar[1]) < np.median(sar[0])
    bands, qa = multiearth.read_optical(scenes[0].optical[0])
    assert bands.dtype == np.uint16 and qa is not None
    cloudy = [k for k, t in truth.items() if t["cloud_fraction"] > 0]
    assert cloudy and len(cloudy) < len(truth)
    qa_flags = {k: read_raster(next(tmp_path.glob(f"sent2/Sentinel2_QA60_{k[len('Sentinel2_'):]}.tiff"))).any()
                for k in truth}
    assert all(qa_flags[k] == truth[k]["qa60_set"] for k in truth)
    assert all(not qa_flags[k] for k, t in truth.items() if t["cloud_fraction"] == 0)


def test_physics_forest_brighter_in_sar_water_darkest():
    rng = np.random.default_rng(0)
    land = make_landscape(128, rng)
    sar = render_sar(land, rng)
    refl = render_optical(land, rng)
    assert sar[0][land.classes == FOREST].mean() > sar[0].mean() - 1
    if (land.classes == WATER).any():
        assert sar[0][land.classes == WATER].mean() < sar[0][land.classes != WATER].mean() - 5
    assert refl[2][land.classes == FOREST].mean() > refl[3][land.classes == FOREST].mean()  # green > red


def test_forest_frontier_clears_lots_along_roads_only():
    """A MultiEarth site is forest cleared along its roads: nothing is cleared away from a road,
    a site without roads stays forest, the cleared share stays under the site maximum plus one lot,
    each lot has one use, and the relief is the frontier's."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(11)
    max_lot_px = FRONTIER_LOT_DEPTH_M[1] / 10 * FRONTIER_LOT_WIDTH_M[1] / 10
    saw_cleared = False
    for _ in range(8):
        land = make_forest_frontier(192, rng)
        road_id = land.parcel.max()
        road = (land.parcel == road_id) & (land.classes == BARE)
        cleared = np.isin(land.classes, (1, 2, 3)) & ~road  # crop, bare, pasture
        assert (land.classes == FOREST).mean() > 0.5
        if not road.any():
            assert not cleared.any()
            continue
        saw_cleared |= cleared.mean() > 0.02
        assert cleared.mean() <= FRONTIER_CLEARED_SHARE[1] + max_lot_px / cleared.size
        to_road = ndi.distance_transform_edt(~road)
        border = np.zeros_like(road)
        border[[0, -1], :] = border[:, [0, -1]] = True
        for lot in np.unique(land.parcel[cleared]):
            pixels = cleared & (land.parcel == lot)
            assert len(np.unique(land.classes[pixels])) == 1
            # a lot starts at its road, unless that stretch of road lies outside the patch
            assert to_road[pixels].min() <= 1.5 or (pixels & border).any()
        relief = np.percentile(land.terrain, 99) - np.percentile(land.terrain, 1)
        assert 0.9 * FRONTIER_RELIEF_M[0] <= relief <= 1.1 * FRONTIER_RELIEF_M[1]
    assert saw_cleared


def test_speckle_is_unit_mean_gamma():
    rng = np.random.default_rng(1)
    db = speckle_db(np.full((200, 200), -10.0, np.float32), looks=4.0, rng=rng)
    lin = 10 ** (db / 10) / 0.1
    assert abs(lin.mean() - 1) < 0.02 and abs(lin.var() - 0.25) < 0.03


def test_cloud_shadow_is_displaced():
    rng = np.random.default_rng(4)
    opacity, shadow = make_clouds(128, rng, 0.2)
    assert 0.05 < (opacity > 0.1).mean() < 0.35
    assert not np.allclose(opacity, shadow) and shadow.max() > 0.5


def test_relief_lights_the_flanks_each_sensor_faces():
    """On a hill, the SAR brightens the flank facing the radar (here looking east: the west flank)
    and the optical the flank facing the sun (here from the south: the south flank); flat ground
    has neither effect, and the orbit is one per scene."""
    from sarfusion.synth.landscape import PASTURE, S1_INCIDENCE_DEG, Landscape, terrain_backscatter_gain

    n = 128
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    hill = np.maximum(0, 60 - np.hypot(yy - 64, xx - 64)) * np.float32(3.0)  # 3 m per 10 m pixel: 17 deg
    # looking east: the sensor is to the west (azimuth 270)
    land = Landscape(np.full((n, n), PASTURE, np.uint8), np.zeros((n, n), np.int64), 10.0, hill, 35.0, 270.0)
    west, east = (slice(54, 74), slice(14, 44)), (slice(54, 74), slice(84, 114))
    north, south = (slice(14, 44), slice(54, 74)), (slice(84, 114), slice(54, 74))
    gain_db = 10 * np.log10(np.maximum(terrain_backscatter_gain(land), 1e-6))
    assert gain_db[west].mean() > 2.0 and gain_db[east].mean() < -1.0
    sar = render_sar(land, np.random.default_rng(0))[0]
    assert sar[west].mean() - sar[east].mean() > 3.0
    rng = np.random.default_rng(1)
    refl = render_optical(land, rng)
    assert refl[3][south].mean() > 1.2 * refl[3][north].mean()  # the sun is in the south-east (120-170 deg)
    flat = make_landscape(64, np.random.default_rng(2), relief_m=0.0)
    assert flat.terrain is None and np.all(terrain_backscatter_gain(flat) == 1)
    hilly = make_landscape(64, np.random.default_rng(2))
    assert np.array_equal(hilly.classes, flat.classes)  # relief does not move the fields
    assert S1_INCIDENCE_DEG[0] <= hilly.incidence_deg <= S1_INCIDENCE_DEG[1]

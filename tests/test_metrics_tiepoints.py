"""SpaceNet 9 tie-point scorer on tiny georeferenced rasters with known offsets."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
import pytest
from osgeo import gdal, osr

from sarfusion.cli import main
from sarfusion.errors import InputError
from sarfusion.io.raster import write_raster
from sarfusion.metrics.tiepoints import score_tiepoints

H, W = 48, 64
OPT_GT = (600000.0, 0.5, 0.0, 5700000.0, 0.0, -0.5)


def write_scene(tmp_path, sar_gt, sar_crs="EPSG:32631", opt_crs="EPSG:32631", opt_gt=OPT_GT):
    optical, sar = tmp_path / "optical.tif", tmp_path / "sar.tif"
    write_raster(optical, np.zeros((3, H, W), np.uint8), opt_gt, opt_crs)
    write_raster(sar, np.zeros((1, 40, 40), np.float32), sar_gt, sar_crs)
    return optical, sar


def write_points(path, rows):
    pd.DataFrame(rows, columns=["sar_row", "sar_col", "optical_row", "optical_col"]).to_csv(path, index=False)
    return path


def write_offsets(path, dx, dy, gt=OPT_GT, crs="EPSG:32631"):
    dx = np.broadcast_to(np.asarray(dx, np.float32), (H, W))
    dy = np.broadcast_to(np.asarray(dy, np.float32), (H, W))
    return write_raster(path, np.stack([dx, dy]), gt, crs)


# SAR pixel (r, c) sits at optical pixel (r + 3, c + 4): same 0.5 m grid, origin 2 m east and 1.5 m south.
SHIFT_SAR_GT = (600002.0, 0.5, 0.0, 5699998.5, 0.0, -0.5)
SHIFT_POINTS = [(r, c, r, c) for r, c in [(0, 0), (5, 9), (20, 30), (33, 11), (40, 50)]]


def test_offsets_equal_to_truth_score_zero(tmp_path):
    optical, sar = write_scene(tmp_path, SHIFT_SAR_GT)
    points = write_points(tmp_path / "tp.csv", SHIFT_POINTS)
    offsets = write_offsets(tmp_path / "off.tif", 4.0, 3.0)
    r = score_tiepoints(optical, sar, points, offsets)
    assert r == {"mean_px": 0.0, "mean_m": 0.0, "score": 100.0, "n_points": 5}


def test_constant_shift_has_known_mean(tmp_path):
    optical, sar = write_scene(tmp_path, SHIFT_SAR_GT)
    points = write_points(tmp_path / "tp.csv", SHIFT_POINTS)
    r = score_tiepoints(optical, sar, points, write_offsets(tmp_path / "off.tif", 1.0, -1.0))
    assert r["mean_px"] == pytest.approx(5.0)  # (1-4, -1-3) -> 5 px at every point
    assert r["mean_m"] == pytest.approx(2.5)
    assert r["score"] == pytest.approx(100 / 1.05)
    r = score_tiepoints(optical, sar, points, write_offsets(tmp_path / "zero.tif", 0.0, 0.0))
    assert r["mean_px"] == pytest.approx(5.0)


def test_reference_is_rounded_prediction_is_not(tmp_path):
    # SAR origin 1.3 m east, 0.8 m south: reference dx = rint(2.6) = 3, dy = rint(1.6) = 2
    optical, sar = write_scene(tmp_path, (600001.3, 0.5, 0.0, 5699999.2, 0.0, -0.5))
    points = write_points(tmp_path / "tp.csv", [(0, 0, 0, 0)])
    assert score_tiepoints(optical, sar, points, write_offsets(tmp_path / "a.tif", 3.0, 2.0))["mean_px"] == 0.0
    r = score_tiepoints(optical, sar, points, write_offsets(tmp_path / "b.tif", 2.6, 1.6))
    assert r["mean_px"] == pytest.approx(np.hypot(0.4, 0.4), abs=1e-6)


def test_offsets_read_at_each_tie_pixel(tmp_path):
    # different SAR pixel sizes: reference dx = rint(0.8 * sar_col - col + 4), dy = rint(0.8 * sar_row - row + 3)
    optical, sar = write_scene(tmp_path, (600002.0, 0.4, 0.0, 5699998.5, 0.0, -0.4))
    rows = [(10, 20, 7, 11), (30, 5, 40, 60), (0, 39, 12, 2)]
    points = write_points(tmp_path / "tp.csv", rows)
    field = np.zeros((2, H, W), np.float32)
    for sr, sc, r, c in rows:
        field[0, r, c] = np.rint(0.8 * sc - c + 4)
        field[1, r, c] = np.rint(0.8 * sr - r + 3)
    write_raster(tmp_path / "off.tif", field, OPT_GT, "EPSG:32631")
    assert score_tiepoints(optical, sar, points, tmp_path / "off.tif")["mean_px"] == 0.0
    field[0, 40, 60] += 6  # one point off by 6 px -> mean 2
    write_raster(tmp_path / "off2.tif", field, OPT_GT, "EPSG:32631")
    assert score_tiepoints(optical, sar, points, tmp_path / "off2.tif")["mean_px"] == pytest.approx(2.0)


def test_duplicate_optical_pixels_count_once(tmp_path):
    optical, sar = write_scene(tmp_path, SHIFT_SAR_GT)
    # the second row repeats optical (5, 9) with another SAR pixel: ignored (first wins)
    points = write_points(tmp_path / "tp.csv", [(5, 9, 5, 9), (25, 29, 5, 9), (20, 30, 20, 30)])
    r = score_tiepoints(optical, sar, points, write_offsets(tmp_path / "off.tif", 4.0, 3.0))
    assert r["n_points"] == 2 and r["mean_px"] == 0.0


def _utm(lon_lat, epsg):
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(4326)
    dst.ImportFromEPSG(epsg)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return np.asarray(osr.CoordinateTransformation(src, dst).TransformPoints(lon_lat))[:, :2]


def _between(points, src_epsg, dst_epsg):
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(src_epsg)
    dst.ImportFromEPSG(dst_epsg)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return np.asarray(osr.CoordinateTransformation(src, dst).TransformPoints(points))[:, :2]


def test_sar_in_neighbouring_utm_zone_is_reprojected(tmp_path):
    # optical in UTM 32N just east of 6 E; SAR in UTM 31N, its pixels picked at the same ground spots
    (x0, y0), = _utm([(6.05, 51.5)], 32632)
    opt_gt = (np.floor(x0), 0.5, 0.0, np.floor(y0), 0.0, -0.5)
    (sx0, sy0), = _between([(opt_gt[0], opt_gt[3])], 32632, 32631)
    sar_gt = (np.floor(sx0) - 5.0, 0.5, 0.0, np.floor(sy0) + 5.0, 0.0, -0.5)
    optical, sar = write_scene(tmp_path, sar_gt, sar_crs="EPSG:32631", opt_crs="EPSG:32632", opt_gt=opt_gt)
    opt_rc = np.array([(0, 0), (10, 50), (40, 5), (47, 63), (25, 30)])
    ground = np.column_stack([opt_gt[0] + opt_rc[:, 1] * 0.5, opt_gt[3] - opt_rc[:, 0] * 0.5])
    in31 = _between(ground, 32632, 32631)
    sar_rc = np.column_stack([np.rint((in31[:, 1] - sar_gt[3]) / -0.5), np.rint((in31[:, 0] - sar_gt[0]) / 0.5)])
    points = write_points(tmp_path / "tp.csv", np.column_stack([sar_rc, opt_rc]).astype(int))
    # same ground spot up to half a SAR pixel: the true offsets are 0 or +-1 px
    zero = score_tiepoints(optical, sar, points, write_offsets(tmp_path / "z.tif", 0.0, 0.0, opt_gt, "EPSG:32632"))
    assert zero["mean_px"] <= np.sqrt(2)
    # the exact reference, computed here with osr directly
    back = _between(np.column_stack([sar_gt[0] + sar_rc[:, 1] * 0.5, sar_gt[3] - sar_rc[:, 0] * 0.5]), 32631, 32632)
    field = np.zeros((2, H, W), np.float32)
    field[0][opt_rc[:, 0], opt_rc[:, 1]] = np.rint((back[:, 0] - ground[:, 0]) / 0.5)
    field[1][opt_rc[:, 0], opt_rc[:, 1]] = np.rint((back[:, 1] - ground[:, 1]) / -0.5)
    write_raster(tmp_path / "exact.tif", field, opt_gt, "EPSG:32632")
    assert score_tiepoints(optical, sar, points, tmp_path / "exact.tif")["mean_px"] == 0.0


def test_huge_rasters_are_never_read_whole(tmp_path):
    """13,000 px scenes: sparse GeoTIFFs (no pixel data written) score in well under a second."""
    size, gt = 13_000, (500000.0, 0.3, 0.0, 4000000.0, 0.0, -0.3)
    drv = gdal.GetDriverByName("GTiff")
    opts = ["TILED=YES", "SPARSE_OK=TRUE", "BLOCKXSIZE=256", "BLOCKYSIZE=256"]
    for name, bands, dtype in (("optical.tif", 3, gdal.GDT_Byte), ("sar.tif", 1, gdal.GDT_Float32),
                               ("off.tif", 2, gdal.GDT_Float32)):
        ds = drv.Create(str(tmp_path / name), size, size, bands, dtype, options=opts)
        ds.SetGeoTransform(gt)
        ds.SetProjection(_wkt(32631))
        if name == "off.tif":
            ds.GetRasterBand(1).WriteArray(np.full((1, 1), 3.0, np.float32), 12_500, 12_000)
        ds = None
    points = write_points(tmp_path / "tp.csv", [(100, 100, 100, 100), (12_000, 12_500, 12_000, 12_500)])
    r = score_tiepoints(tmp_path / "optical.tif", tmp_path / "sar.tif", points, tmp_path / "off.tif")
    assert r["n_points"] == 2 and r["mean_px"] == pytest.approx(1.5)  # 0 and 3 px
    assert (tmp_path / "off.tif").stat().st_size < 1_000_000


def _wkt(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


@pytest.fixture
def scene(tmp_path):
    optical, sar = write_scene(tmp_path, SHIFT_SAR_GT)
    points = write_points(tmp_path / "tp.csv", SHIFT_POINTS)
    return tmp_path, optical, sar, points


def test_wrong_size_is_an_error(scene):
    tmp, optical, sar, points = scene
    write_raster(tmp / "off.tif", np.zeros((2, H, W + 1), np.float32), OPT_GT, "EPSG:32631")
    with pytest.raises(InputError, match=r"off\.tif.*65x48"):
        score_tiepoints(optical, sar, points, tmp / "off.tif")


def test_wrong_band_count_is_an_error(scene):
    tmp, optical, sar, points = scene
    write_raster(tmp / "off.tif", np.zeros((3, H, W), np.float32), OPT_GT, "EPSG:32631")
    with pytest.raises(InputError, match=r"off\.tif.*3 band"):
        score_tiepoints(optical, sar, points, tmp / "off.tif")


def test_nan_at_a_tie_point_is_an_error(scene):
    tmp, optical, sar, points = scene
    field = np.zeros((2, H, W), np.float32)
    field[1, 20, 30] = np.nan
    field[0, 0, 1] = np.inf  # not a tie point: allowed to pass unnoticed by the scorer
    write_raster(tmp / "off.tif", field, OPT_GT, "EPSG:32631")
    with pytest.raises(InputError, match=r"off\.tif.*row 20, col 30"):
        score_tiepoints(optical, sar, points, tmp / "off.tif")


def test_missing_column_is_an_error(scene):
    tmp, optical, sar, _ = scene
    pd.DataFrame({"sar_row": [1], "sar_col": [1], "optical_row": [1]}).to_csv(tmp / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"bad\.csv.*optical_col"):
        score_tiepoints(optical, sar, tmp / "bad.csv", write_offsets(tmp / "off.tif", 0, 0))


def test_cli_json_and_error_exit(scene, capsys):
    tmp, optical, sar, points = scene
    write_offsets(tmp / "off.tif", 1.0, -1.0)
    args = ["score", "tiepoints", "--optical", str(optical), "--sar", str(sar), "--tiepoints", str(points)]
    assert main(args + ["--offsets", str(tmp / "off.tif"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"mean_px", "mean_m", "score", "n_points"}
    assert out["mean_px"] == pytest.approx(5.0) and out["n_points"] == 5
    write_raster(tmp / "one.tif", np.zeros((1, H, W), np.float32), OPT_GT, "EPSG:32631")
    assert main(args + ["--offsets", str(tmp / "one.tif"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "one.tif" in captured.err and len(captured.err.strip().splitlines()) == 1

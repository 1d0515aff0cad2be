import numpy as np
import pytest
from osgeo import gdal

from sarfusion.errors import InputError
from sarfusion.io.raster import (
    RasterWriter, iter_windows, map_to_pixel, nodata_mask, pixel_to_map, raster_info, read_points,
    read_raster, reproject_points, write_raster,
)

GT = (592000.0, 0.5, 0.0, 5750000.0, 0.0, -0.5)


def test_geotiff_round_trip_keeps_data_georef_and_nodata(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.normal(30, 8, size=(4, 300, 280)).astype(np.float32)
    arr[:, :10] = 0
    path = write_raster(tmp_path / "sar.tif", arr, GT, "EPSG:32631", nodata=0)
    info = raster_info(path)
    assert info.shape == (4, 300, 280)
    assert info.dtype == np.float32
    assert info.geotransform == GT
    assert info.epsg == 32631
    assert info.nodata == (0.0,) * 4
    np.testing.assert_array_equal(read_raster(path), arr)
    # tiled + compressed, as promised
    ds = gdal.Open(str(path))
    assert ds.GetRasterBand(1).GetBlockSize() == [256, 256]
    assert ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
    assert [p.name for p in tmp_path.iterdir()] == ["sar.tif"]  # no temp file left behind


def test_window_and_band_selective_reads(tmp_path):
    arr = np.arange(3 * 50 * 60, dtype=np.uint16).reshape(3, 50, 60)
    path = write_raster(tmp_path / "a.tif", arr, GT, 32631)
    np.testing.assert_array_equal(read_raster(path, bands=[3, 1], window=(5, 7, 20, 10)), arr[[2, 0], 7:17, 5:25])
    rows, cols = np.array([0, 49, 20]), np.array([0, 59, 33])
    np.testing.assert_array_equal(read_points(path, 2, rows, cols), arr[1, rows, cols])
    with pytest.raises(InputError, match="outside"):
        read_raster(path, window=(50, 0, 20, 10))
    with pytest.raises(InputError, match="has 3 bands, expected 4"):
        read_raster(path, expect_bands=4)


def test_windowed_writer_and_window_cover(tmp_path):
    full = np.random.default_rng(1).random((2, 700, 530)).astype(np.float32)
    wins = list(iter_windows(530, 700, 256))
    covered = np.zeros((700, 530), int)
    with RasterWriter(tmp_path / "big.tif", 530, 700, 2, np.float32, GT, 32631) as w:
        for col, row, ww, hh in wins:
            w.write(full[:, row:row + hh, col:col + ww], col, row)
            covered[row:row + hh, col:col + ww] += 1
    assert (covered == 1).all()
    np.testing.assert_array_equal(read_raster(tmp_path / "big.tif"), full)


def test_failed_write_leaves_previous_file_intact(tmp_path):
    path = write_raster(tmp_path / "keep.tif", np.ones((1, 8, 8), np.uint8), GT, 32631)
    with pytest.raises(RuntimeError):
        with RasterWriter(path, 8, 8, 1, np.uint8, GT, 32631) as w:
            w.write(np.zeros((1, 8, 8), np.uint8))
            raise RuntimeError("crash mid-write")
    np.testing.assert_array_equal(read_raster(path), np.ones((1, 8, 8), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]


def test_corrupt_and_missing_files_give_clear_errors(tmp_path):
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00" + b"\x13" * 200)
    with pytest.raises(InputError, match="corrupt.tif: not a readable raster"):
        raster_info(bad)
    with pytest.raises(InputError, match="missing.tif: file not found"):
        read_raster(tmp_path / "missing.tif")
    truncated = tmp_path / "truncated.tif"
    write_raster(truncated, np.random.default_rng(0).random((1, 512, 512)).astype(np.float32), GT, 32631)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated.tif"):
        read_raster(truncated)


def test_pixel_map_round_trip_and_reprojection():
    rows, cols = np.array([0.0, 10.0, 899.0]), np.array([0.0, 5.0, 899.0])
    x, y = pixel_to_map(GT, rows, cols)
    assert x[1] == 592002.5 and y[1] == 5749995.0
    r2, c2 = map_to_pixel(GT, x, y)
    np.testing.assert_allclose(r2, rows)
    np.testing.assert_allclose(c2, cols)
    from sarfusion.io.raster import crs_to_wkt
    lon, lat = reproject_points(x, y, crs_to_wkt(32631), crs_to_wkt(4326))
    assert 4.0 < lon[0] < 4.5 and 51.8 < lat[0] < 51.9  # Rotterdam
    xb, yb = reproject_points(lon, lat, crs_to_wkt(4326), crs_to_wkt(32631))
    np.testing.assert_allclose(xb, x, atol=1e-6)
    np.testing.assert_allclose(yb, y, atol=1e-6)


def test_nodata_mask_accepts_zero_and_nan():
    a = np.ones((4, 2, 3), np.float32)
    a[:, 0, 0] = 0
    a[:, 1, 2] = np.nan
    a[0, 1, 1] = 0  # one band zero is still valid
    assert nodata_mask(a).tolist() == [[False, True, True], [True, True, False]]


def test_real_capella_sar_reads(real_samples):
    path = real_samples / "capella_rotterdam" / "sar_masked.tif"
    info = raster_info(path)
    assert info.shape == (4, 200, 200) and info.dtype == np.float32 and info.epsg == 32631
    sar = read_raster(path, expect_bands=4)
    valid = nodata_mask(sar)
    assert 0.5 < valid.mean() < 0.7  # the README says 61% valid
    hh = sar[0][valid]
    assert -14 < hh.mean() < -8  # calibrated dB, SPEC: mean HH -11.1


def test_real_capella_complex_slc_chip_reads(real_samples):
    """The Capella SLC chips are CFloat32: the info and the pixels come back as complex64 (the
    info once failed on GDAL's type name "cfloat32")."""
    path = real_samples / "capella_rotterdam" / "sar_hh.tif"
    info = raster_info(path)
    assert info.shape == (1, 200, 200) and info.dtype == np.complex64
    slc = read_raster(path)
    assert slc.dtype == np.complex64 and np.abs(slc).max() > 0


def test_raster_info_gives_numpy_dtypes_for_complex_and_integer_types(tmp_path):
    for gdal_type, np_type in ((gdal.GDT_CInt16, np.complex64), (gdal.GDT_CFloat64, np.complex128),
                               (gdal.GDT_Int16, np.int16), (gdal.GDT_Byte, np.uint8)):
        path = tmp_path / f"t{gdal_type}.tif"
        ds = gdal.GetDriverByName("GTiff").Create(str(path), 4, 3, 1, gdal_type)
        ds = None
        assert raster_info(path).dtype == np.dtype(np_type)  # CInt16: numpy has no complex int, GDAL reads complex64


def test_real_sn6_ps_rgb_tile_reads(real_samples):
    path = next((real_samples / "sn6").glob("*PS-RGB*.tif"))
    info = raster_info(path)
    assert info.shape == (3, 900, 900) and info.dtype == np.uint8
    assert info.epsg == 32631
    assert info.pixel_size == pytest.approx((0.5, -0.5), abs=1e-3)
    rgb = read_raster(path, window=(0, 0, 900, 900))
    assert rgb.dtype == np.uint8 and rgb.max() > 100


def test_cog_writer_layout_overviews_and_atomicity(tmp_path):
    """cog=True: GDAL's COG layout (its validator passes, gdalinfo's LAYOUT=COG), 512 px tiles,
    DEFLATE, averaged overviews down to one tile; windows written by the RasterWriter survive
    exactly; a crash leaves the earlier file and no staging file behind."""
    rng = np.random.default_rng(2)
    full = rng.random((2, 1500, 1100)).astype(np.float32)
    path = tmp_path / "off.tif"
    with RasterWriter(path, 1100, 1500, 2, np.float32, GT, 32631, cog=True) as w:
        for col, row, ww, hh in iter_windows(1100, 1500, 400):
            w.write(full[:, row:row + hh, col:col + ww], col, row)
    from sarfusion.io.raster import cog_errors
    assert cog_errors(path) == []
    ds = gdal.Open(str(path))
    meta = ds.GetMetadata("IMAGE_STRUCTURE")
    assert meta["LAYOUT"] == "COG" and meta["COMPRESSION"] == "DEFLATE"
    band = ds.GetRasterBand(1)
    assert band.GetBlockSize() == [512, 512]
    assert [(band.GetOverview(i).XSize, band.GetOverview(i).YSize) for i in range(band.GetOverviewCount())] == \
        [(550, 750), (275, 375)]
    np.testing.assert_allclose(band.GetOverview(1).ReadAsArray()[0, 0], full[0, :4, :4].mean(), rtol=1e-5)
    np.testing.assert_array_equal(read_raster(path), full)
    assert read_raster(path, out_shape=(375, 275)).shape == (2, 375, 275)
    ds = None
    assert cog_errors(write_raster(tmp_path / "plain.tif", full, GT, 32631))  # a plain tiled GeoTIFF is not one
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with RasterWriter(path, 1100, 1500, 2, np.float32, GT, 32631, cog=True) as w:
            w.write(np.zeros((2, 100, 100), np.float32))
            raise RuntimeError("crash mid-write")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["off.tif", "plain.tif"]

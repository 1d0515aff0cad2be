"""The aligned SAR product: the SAR resampled through an offset map onto the optical grid."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sarfusion.errors import InputError
from sarfusion.io.raster import cog_errors, raster_info, read_raster, write_raster
from sarfusion.registration.aligned import write_aligned_sar

OPT_GT = (600000.0, 0.3, 0.0, 5700000.0, 0.0, -0.3)
SAR_GT = (599990.0, 0.45, 0.0, 5700010.0, 0.0, -0.45)


def _ramp(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A SAR that is a linear function of map position: bilinear resampling reproduces it exactly."""
    return 20.0 + (x - 599990.0) * 0.2 + (5700010.0 - y) * 0.05


def _linear_pair(tmp_path, size: int = 600, sar_size: int = 420, dtype=np.float32, nodata=None):
    rows, cols = np.mgrid[0:sar_size, 0:sar_size]
    sar = _ramp(SAR_GT[0] + (cols + 0.5) * SAR_GT[1], SAR_GT[3] + (rows + 0.5) * SAR_GT[5])
    write_raster(tmp_path / "opt.tif", np.full((3, size, size), 9, np.uint8), OPT_GT, 32631)
    write_raster(tmp_path / "sar.tif", sar[None].astype(dtype), SAR_GT, 32631, nodata=nodata)
    return tmp_path / "opt.tif", tmp_path / "sar.tif"


def _offsets(tmp_path, dx: np.ndarray, dy: np.ndarray, name: str = "off.tif"):
    return write_raster(tmp_path / name, np.stack([dx, dy]).astype(np.float32), OPT_GT, 32631)


def test_samples_the_sar_where_the_offsets_point(tmp_path):
    """Optical pixel centre + (dx, dy) optical px -> map -> SAR pixel: on a linear SAR the product
    equals the ramp there, to cv2's 1/32 px interpolation grid; windows of 64 or 1024 px agree."""
    opt, sar = _linear_pair(tmp_path)
    r, c = np.mgrid[0:600, 0:600].astype(np.float64)
    dx, dy = 7.25 + 0.01 * r, -3.5 + 0.02 * c  # a smooth, non-constant field
    off = _offsets(tmp_path, dx, dy)
    dx, dy = (read_raster(off)[b].astype(np.float64) for b in (0, 1))  # as stored (float32)
    res = write_aligned_sar(opt, sar, off, tmp_path / "a.tif")
    write_aligned_sar(opt, sar, off, tmp_path / "a64.tif", window=64)
    out = read_raster(res["aligned_sar"])[0]
    x, y = OPT_GT[0] + (c + 0.5 + dx) * OPT_GT[1], OPT_GT[3] + (r + 0.5 + dy) * OPT_GT[5]
    sar_col, sar_row = (x - SAR_GT[0]) / SAR_GT[1], (y - SAR_GT[3]) / SAR_GT[5]
    inner = (sar_col > 1) & (sar_row > 1) & (sar_col < 419) & (sar_row < 419)  # a full bilinear neighbourhood
    assert inner.mean() > 0.85 and (out[inner] != 0).all()
    # the ramp rises 0.2 per m east, 0.05 north; cv2 rounds positions to 1/32 of a 0.45 m pixel
    assert np.abs(out[inner] - _ramp(x, y)[inner]).max() < (0.2 + 0.05) * 0.45 / 64 + 1e-4
    np.testing.assert_array_equal(read_raster(tmp_path / "a64.tif")[0], out)
    # off the SAR's footprint (420 SAR px wide): nodata
    outside = (sar_col > 420.5) | (sar_row > 420.5) | (sar_col < -0.5) | (sar_row < -0.5)
    assert outside.any() and (out[outside] == 0).all()
    info = raster_info(res["aligned_sar"])
    assert (info.width, info.height, info.geotransform, info.epsg, info.nodata) == (600, 600, OPT_GT, 32631, (0.0,))
    assert cog_errors(res["aligned_sar"]) == []


def test_windows_split_where_offsets_spread_and_garbage_offsets_fail(tmp_path, monkeypatch):
    """A window whose counterparts spread over more SAR pixels than MAX_BOX is split (same result);
    when even a 64 px window spreads that far the offsets are not a field: an InputError."""
    from sarfusion.registration import aligned

    opt, sar = _linear_pair(tmp_path)
    r, c = np.mgrid[0:600, 0:600].astype(np.float64)
    off = _offsets(tmp_path, 3 + 0.02 * r, -2 + 0.01 * c)
    whole = read_raster(write_aligned_sar(opt, sar, off, tmp_path / "a.tif")["aligned_sar"])
    monkeypatch.setattr(aligned, "MAX_BOX", 120)  # a 1024 px window needs ~400 SAR px: split to <= 128 px
    split = read_raster(write_aligned_sar(opt, sar, off, tmp_path / "split.tif")["aligned_sar"])
    np.testing.assert_array_equal(split, whole)
    monkeypatch.setattr(aligned, "MAX_BOX", 20)  # even 64 px windows need ~45 SAR px
    with pytest.raises(InputError, match="off.tif.*not a smooth offset field"):
        write_aligned_sar(opt, sar, off, tmp_path / "never.tif")
    assert not (tmp_path / "never.tif").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging file left


def test_sar_in_another_utm_zone_lands_in_the_same_place(tmp_path):
    """The SAR reprojected to the next UTM zone (its own geotransform there): the aligned product
    through the same offsets matches the one from the original SAR."""
    from osgeo import gdal

    opt, sar = _linear_pair(tmp_path)
    off = _offsets(tmp_path, np.full((600, 600), 4.0), np.full((600, 600), -6.0))
    same = read_raster(write_aligned_sar(opt, sar, off, tmp_path / "same.tif")["aligned_sar"])[0]
    other = tmp_path / "sar_32632.tif"
    gdal.Warp(str(other), str(sar), dstSRS="EPSG:32632", xRes=0.45, yRes=0.45, resampleAlg="bilinear", dstNodata=0)
    moved = read_raster(write_aligned_sar(opt, other, off, tmp_path / "moved.tif")["aligned_sar"])[0]
    both = (same != 0) & (moved != 0)
    assert both.mean() > 0.8
    # two bilinear resamplings of a ramp, through a rotated grid: equal to well under a pixel's rise
    assert np.abs(same[both] - moved[both]).max() < 0.2 * 0.45 / 4


def test_nodata_integer_sar_and_a_wrong_offset_map(tmp_path):
    """A uint8 SAR with nodata 0 in a block: the product is uint8, nodata 0 exactly there (and
    where bilinear would blend into it), data elsewhere; a wrong-size offset map is an InputError."""
    opt, _ = _linear_pair(tmp_path)
    sar = np.full((1, 420, 420), 120, np.uint8)
    sar[:, 100:200, 100:200] = 0
    write_raster(tmp_path / "sar8.tif", sar, SAR_GT, 32631, nodata=0)
    off = _offsets(tmp_path, np.zeros((600, 600)), np.zeros((600, 600)))
    out = read_raster(write_aligned_sar(opt, tmp_path / "sar8.tif", off, tmp_path / "a8.tif")["aligned_sar"])[0]
    assert out.dtype == np.uint8 and raster_info(tmp_path / "a8.tif").nodata == (0.0,)
    # optical pixel centres whose map point falls inside the SAR's nodata block, 1 SAR px in
    r, c = np.mgrid[0:600, 0:600]
    sc = (OPT_GT[0] + (c + 0.5) * 0.3 - SAR_GT[0]) / 0.45
    sr = (SAR_GT[3] - (OPT_GT[3] - (r + 0.5) * 0.3)) / 0.45
    hole = (sc > 101) & (sc < 199) & (sr > 101) & (sr < 199)
    data = ((sc < 99) | (sc > 201) | (sr < 99) | (sr > 201)) & (sc > 1) & (sr > 1) & (sc < 419) & (sr < 419)
    assert (out[hole] == 0).all() and (out[data] == 120).all()
    bad = write_raster(tmp_path / "bad.tif", np.zeros((2, 500, 600), np.float32), OPT_GT, 32631)
    with pytest.raises(InputError, match="bad.tif.*500"):
        write_aligned_sar(opt, tmp_path / "sar8.tif", bad, tmp_path / "a_bad.tif")
    assert not (tmp_path / "a_bad.tif").exists()


def test_register_cli_writes_the_aligned_sar(tmp_path, capsys):
    from sarfusion.cli import main

    opt, sar = _linear_pair(tmp_path)
    rc = main(["register", "--optical", str(opt), "--sar", str(sar), "--out", str(tmp_path / "o.tif"),
               "--mode", "none", "--aligned-sar", str(tmp_path / "al.tif"), "--confidence",
               str(tmp_path / "conf.tif"), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["aligned_sar"] == str(tmp_path / "al.tif")
    # zero offsets measured nothing: confidence 0 everywhere, no lattice to keep nodes of
    assert result["confidence"] == 0.0 and result["kept"] is None
    assert result["confidence_map"] == str(tmp_path / "conf.tif")
    assert (read_raster(tmp_path / "conf.tif") == 0).all() and cog_errors(tmp_path / "conf.tif") == []
    assert cog_errors(tmp_path / "o.tif") == [] and cog_errors(tmp_path / "al.tif") == []
    assert raster_info(tmp_path / "al.tif").geotransform == OPT_GT

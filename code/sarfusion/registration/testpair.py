"""A quick SN9-like pair with known offsets (tests, benchmarks): an urban-looking optical scene,
a SAR-like image of it (edges bright, speckled, coarser pixels), warped by a smooth field.

Much cheaper than the full SN9 generator (``sarfusion.synth.sn9``) and tileable to 13,000 px.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from sarfusion.io.raster import write_raster
from sarfusion.registration.warp import smooth_field, true_offsets, warp_by_field

EPSG = 32631


def urban_optical(size: int, seed: int) -> np.ndarray:
    """``(3, size, size)`` uint8: blocks of rectangular roofs, roads, vegetation texture."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 90, np.float32)
    img += cv2.GaussianBlur(rng.normal(0, 25, (size, size)).astype(np.float32), (0, 0), 6)
    n = int(size * size / 900)
    for _ in range(n):
        h, w = rng.integers(12, 60, 2)
        r, c = rng.integers(0, size, 2)
        val = float(rng.choice([40, 160, 210, 120]))
        cv2.rectangle(img, (int(c), int(r)), (int(c + w), int(r + h)), val, -1)
    for _ in range(max(2, size // 150)):
        if rng.random() < 0.5:
            r = int(rng.integers(0, size)); cv2.line(img, (0, r), (size, r + int(rng.integers(-50, 50))), 60, 8)
        else:
            c = int(rng.integers(0, size)); cv2.line(img, (c, 0), (c + int(rng.integers(-50, 50)), size), 60, 8)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    rgb = np.stack([img * 0.9, img, img * 1.1])
    return np.clip(rgb, 1, 255).astype(np.uint8)


def sar_like(optical_grey: np.ndarray, seed: int, looks: float = 3.0) -> np.ndarray:
    """Linear-intensity float32 SAR look-alike: edges bright (double bounce), flat roofs dark,
    multiplicative gamma speckle."""
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(optical_grey.astype(np.float32), (0, 0), 1.0)
    edges = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    sigma0 = 0.05 + 0.4 * (g / 255.0) ** 2 + 2.0 * (edges / (edges.max() + 1e-6))
    speckle = rng.gamma(looks, 1.0 / looks, g.shape).astype(np.float32)
    return (sigma0 * speckle * 1000).astype(np.float32)


def make_test_pair(out_dir: str | Path, size: int = 1024, seed: int = 0, amplitude_px: float = 40.0,
                   corr_px: float = 150.0, optical_m: float = 0.3, sar_m: float = 0.45,
                   n_tiepoints: int = 120, sar_epsg: int = EPSG) -> dict:
    """Write ``test_optical_<seed>.tif``, ``test_sar_<seed>.tif``, ``test_tiepoints_<seed>.csv`` and
    the true offset map ``test_offsets_<seed>.tif``; return their paths (SN9 generator keys).

    Offsets (optical px) = smooth field of max ``amplitude_px`` + an affine part (a few px / 1000 px).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opt = urban_optical(size, seed)
    field = smooth_field(size, size, amplitude_px, corr_px, seed=seed + 1,
                         affine=(0.3 * amplitude_px, -0.2 * amplitude_px, 0.004, 0.002, -0.003, 0.005))
    sar_opt_grid = warp_by_field(sar_like(opt.mean(0), seed + 2), field)
    truth = true_offsets(field)  # (dy, dx) optical px
    sar_size = int(round(size * optical_m / sar_m))
    sar = cv2.resize(sar_opt_grid, (sar_size, sar_size), interpolation=cv2.INTER_AREA)
    x0, y0 = 600000.0, 5700000.0
    opt_gt = (x0, optical_m, 0.0, y0, 0.0, -optical_m)
    sar_gt = (x0, sar_m, 0.0, y0, 0.0, -sar_m)
    paths = {k: out_dir / f"test_{k}_{seed}.{'csv' if k == 'tiepoints' else 'tif'}"
             for k in ("optical", "sar", "tiepoints", "offsets")}
    write_raster(paths["optical"], opt, opt_gt, EPSG)
    if sar_epsg != EPSG:
        from osgeo import gdal
        tmp = out_dir / f".tmp_sar_{seed}.tif"
        write_raster(tmp, sar[None], sar_gt, EPSG)
        gdal.Warp(str(paths["sar"]), str(tmp), dstSRS=f"EPSG:{sar_epsg}", xRes=sar_m, yRes=sar_m,
                  resampleAlg="bilinear", creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
        tmp.unlink()
    else:
        write_raster(paths["sar"], sar[None], sar_gt, EPSG)
    write_raster(paths["offsets"], np.stack([truth[1], truth[0]]), opt_gt, EPSG)
    rng = np.random.default_rng(seed + 3)
    margin = int(amplitude_px * 2) + 10
    rows = rng.integers(margin, size - margin, n_tiepoints)
    cols = rng.integers(margin, size - margin, n_tiepoints)
    # SAR pixel holding the optical pixel's counterpart (SAR grid may be reprojected).
    from sarfusion.io.raster import map_to_pixel, raster_info, reproject_points
    x = x0 + (cols + truth[1][rows, cols]) * optical_m
    y = y0 - (rows + truth[0][rows, cols]) * optical_m
    sinfo = raster_info(paths["sar"])
    x, y = reproject_points(x, y, _wkt(EPSG), sinfo.crs_wkt)
    s_r, s_c = map_to_pixel(sinfo.geotransform, x, y)
    pd.DataFrame({"sar_row": np.floor(s_r).astype(int), "sar_col": np.floor(s_c).astype(int),
                  "optical_row": rows, "optical_col": cols}).to_csv(paths["tiepoints"], index=False)
    return {k: str(v) for k, v in paths.items()}


def _wkt(epsg: int) -> str:
    from sarfusion.io.raster import crs_to_wkt
    return crs_to_wkt(epsg)

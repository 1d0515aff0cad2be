"""The SAR laid onto the optical grid through an offset map: the co-registered product an analyst
compares pixel by pixel with the optical (damage assessment, change detection).

For optical pixel (row, col) the offset map (SPEC section 4) puts the SAR counterpart at
optical-grid position (row + dy, col + dx); that position goes to map coordinates through the
optical geotransform, into the SAR's CRS when it differs, and to a fractional SAR pixel through
the SAR geotransform, where the SAR is sampled bilinearly. Pixel centres on both sides
(``i + 0.5``), so a zero offset map gives the plain georeferenced resampling of the SAR.
Windows of the optical grid are processed one at a time: each reads its part of the offset map
and only the SAR box its counterparts fall in, so a 13,000 px scene never sits in memory.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from sarfusion.errors import InputError
from sarfusion.io.raster import RasterWriter, iter_windows, nodata_mask, raster_info, read_raster, reproject_points
from sarfusion.registration.align import SceneGrid, scene_grid

log = logging.getLogger(__name__)

MIN_WINDOW = 64
MAX_BOX = 8192  # SAR px a side read for one window; wider means the offsets are not a smooth field
AFFINE_TOL_PX = 0.01  # largest error of the per-window affine standing in for a CRS change


def _optical_to_sar_affine(grid: SceneGrid, rows: tuple[float, float], cols: tuple[float, float]) -> np.ndarray:
    """2x3 matrix taking fractional optical-grid (col, row, 1) to fractional SAR (col, row), both in
    the top-left-corner convention, valid over the optical box ``rows`` x ``cols``.

    Exact when both scenes share a CRS (two geotransforms compose to an affine). Otherwise fitted
    to a 9 x 9 lattice of reprojected points over the box (a UTM zone change is affine to far
    below a pixel over a window); an ``InputError`` when even that misses by ``AFFINE_TOL_PX``.
    """
    r = np.linspace(rows[0], rows[1], 9)
    c = np.linspace(cols[0], cols[1], 9)
    rr, cc = (a.ravel() for a in np.meshgrid(r, c, indexing="ij"))
    go = grid.optical_gt
    x = go[0] + cc * go[1] + rr * go[2]
    y = go[3] + cc * go[4] + rr * go[5]
    if grid.reprojected:
        x, y = reproject_points(x, y, grid.crs_wkt, grid.sar.crs_wkt)
    gs = grid.sar_gt
    det = gs[1] * gs[5] - gs[2] * gs[4]
    sc = (gs[5] * (x - gs[0]) - gs[2] * (y - gs[3])) / det
    sr = (-gs[4] * (x - gs[0]) + gs[1] * (y - gs[3])) / det
    a = np.column_stack([cc, rr, np.ones_like(cc)])
    coef = np.linalg.lstsq(a, np.column_stack([sc, sr]), rcond=None)[0].T  # (2, 3)
    err = float(np.abs(a @ coef.T - np.column_stack([sc, sr])).max())
    if err > AFFINE_TOL_PX:
        raise InputError(f"the optical -> SAR reprojection is not affine over a window ({err:.3f} px off); "
                         "reproject the SAR into the optical CRS first", grid.sar.path)
    return coef


class _Resampler:
    """Samples the SAR at fractional pixels, one optical window at a time (bounded memory)."""

    def __init__(self, grid: SceneGrid, offsets_path: Path, nodata: float):
        self.grid, self.offsets_path, self.nodata = grid, offsets_path, nodata
        self.sar = grid.sar

    def block(self, col: int, row: int, w: int, h: int) -> np.ndarray:
        """``(bands, h, w)`` float32 aligned SAR for the optical window; ``nodata`` where the SAR has none."""
        off = read_raster(self.offsets_path, window=(col, row, w, h), dtype=np.float32)
        oc = (np.arange(col, col + w, dtype=np.float64) + 0.5)[None, :] + off[0]
        orow = (np.arange(row, row + h, dtype=np.float64) + 0.5)[:, None] + off[1]
        lo_r, hi_r = float(orow.min()), float(orow.max())
        lo_c, hi_c = float(oc.min()), float(oc.max())
        m = _optical_to_sar_affine(self.grid, (lo_r, hi_r), (lo_c, hi_c))
        # SAR array index = corner-convention coordinate - 0.5 (cv2 samples at pixel centres)
        sc = (m[0, 0] * oc + m[0, 1] * orow + (m[0, 2] - 0.5)).astype(np.float32)
        sr = (m[1, 0] * oc + m[1, 1] * orow + (m[1, 2] - 0.5)).astype(np.float32)
        c0 = max(int(math.floor(float(sc.min()))) - 1, 0)
        r0 = max(int(math.floor(float(sr.min()))) - 1, 0)
        c1 = min(int(math.ceil(float(sc.max()))) + 2, self.sar.width)
        r1 = min(int(math.ceil(float(sr.max()))) + 2, self.sar.height)
        out = np.full((self.sar.count, h, w), self.nodata, np.float32)
        if c1 <= c0 or r1 <= r0:
            return out  # the whole window's counterparts lie off the SAR
        if max(c1 - c0, r1 - r0) > MAX_BOX:
            if max(w, h) > MIN_WINDOW:  # offsets spread widely here: smaller windows need smaller boxes
                hw, hh = max(w // 2, 1), max(h // 2, 1)
                for cc, rr in ((0, 0), (hw, 0), (0, hh), (hw, hh)):
                    ww, wh = (hw if cc == 0 else w - hw), (hh if rr == 0 else h - hh)
                    if ww > 0 and wh > 0:
                        out[:, rr:rr + wh, cc:cc + ww] = self.block(col + cc, row + rr, ww, wh)
                return out
            raise InputError(f"offsets around optical pixel (row {row}, col {col}) spread over more than "
                             f"{MAX_BOX} SAR px within {MIN_WINDOW} px: not a smooth offset field", self.offsets_path)
        sar = read_raster(self.sar.path, window=(c0, r0, c1 - c0, r1 - r0), dtype=np.float32)
        valid = nodata_mask(sar, None if np.isnan(self.nodata) else self.nodata)
        weight = cv2.remap(valid.astype(np.float32), sc - c0, sr - r0, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        ok = weight >= 0.5  # at least half of the bilinear weight on SAR data
        for b in range(sar.shape[0]):
            band = np.where(valid & np.isfinite(sar[b]), sar[b], 0.0).astype(np.float32)
            num = cv2.remap(band, sc - c0, sr - r0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
            out[b][ok] = num[ok] / weight[ok]
        return out


def write_aligned_sar(optical_path: str | Path, sar_path: str | Path, offsets_path: str | Path,
                      out_path: str | Path, window: int = 1024) -> dict:
    """Resample the SAR through an offset map onto the optical grid and write it as a COG.

    Args:
        optical_path, sar_path: the registered pair (any GDAL rasters; each with its own
            geotransform and CRS, or both without: then they share one pixel grid, as in
            :func:`~sarfusion.registration.align.scene_grid`).
        offsets_path: the SPEC offset map (2 bands float32 dx, dy in optical pixels, the optical's size).
        out_path: the aligned SAR: the optical's width, height, geotransform and CRS, the SAR's
            bands and dtype (integers rounded), bilinear; nodata = the SAR's declared nodata, else 0,
            wherever the counterpart falls off the SAR or on its nodata (0 / NaN).
        window: optical pixels per window side.

    Returns ``{"aligned_sar", "seconds", "valid_fraction"}``.
    """
    from sarfusion.metrics.tiepoints import check_offset_raster

    t0 = time.time()
    grid = scene_grid(optical_path, sar_path)
    opt, sar = grid.optical, grid.sar
    check_offset_raster(raster_info(offsets_path), opt)
    declared = sar.nodata[0]
    nodata = float(declared) if declared is not None else 0.0
    resampler = _Resampler(grid, Path(offsets_path), nodata)
    dtype = sar.dtype
    gt = opt.geotransform if opt.georeferenced else None
    crs = opt.crs_wkt if opt.georeferenced else None
    windows = list(iter_windows(opt.width, opt.height, window))
    n_valid = 0
    with RasterWriter(out_path, opt.width, opt.height, sar.count, dtype, gt, crs, nodata=nodata, cog=True) as writer:
        for col, row, w, h in tqdm(windows, desc="aligned SAR", disable=len(windows) < 4, leave=False):
            block = resampler.block(col, row, w, h)
            invalid = np.isnan(block).all(axis=0) if np.isnan(nodata) else (block == nodata).all(axis=0)
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                block = np.clip(np.rint(block), info.min, info.max)
            # a valid pixel that lands exactly on the nodata value moves one step off it
            if not np.isnan(nodata):
                hit = (block == nodata) & ~invalid[None]
                if hit.any():
                    step = nodata + 1 if dtype.kind in "iu" else np.nextafter(np.float32(nodata), np.float32(np.inf))
                    block[hit] = step
            block[:, invalid] = nodata
            n_valid += int((~invalid).sum())
            writer.write(block.astype(dtype, copy=False), col, row)
    seconds = round(time.time() - t0, 2)
    log.info("aligned SAR %s: %dx%d px, %.1f %% with SAR data, %.1f s", out_path, opt.width, opt.height,
             100 * n_valid / (opt.width * opt.height), seconds)
    return {"aligned_sar": str(out_path), "seconds": seconds, "valid_fraction": n_valid / (opt.width * opt.height)}

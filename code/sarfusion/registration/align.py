"""Scene alignment: one common pixel grid for an optical / SAR pair, from their geotransforms.

The grid ("registration grid") is north-up, in the optical CRS, at the coarser of the two pixel
sizes, covering the optical footprint plus a margin where SAR counterparts may lie. Either scene
can be read on it (or on a ``factor``-times coarser version of it) for any window, resampled by
GDAL and zero-padded outside its footprint; a SAR scene in another CRS (another UTM zone) is
reprojected on the fly. Offsets measured on the grid map back to optical pixels linearly.

Non-georeferenced images (e.g. SEN1-2 PNGs) are taken to share one pixel grid: both get the
identity geotransform and no CRS.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from osgeo import gdal

from sarfusion.errors import InputError
from sarfusion.io.raster import IDENTITY_GT, RasterInfo, raster_info, reproject_points

gdal.UseExceptions()
log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
"""(col_off, row_off, width, height) in pixels of a (possibly downsampled) grid."""


def _bounds(info: RasterInfo, gt: tuple[float, ...]) -> np.ndarray:
    """Corner map coordinates ``(4, 2)`` of a raster under ``gt``."""
    cols = np.array([0, info.width, info.width, 0], dtype=np.float64)
    rows = np.array([0, 0, info.height, info.height], dtype=np.float64)
    return np.column_stack([gt[0] + cols * gt[1] + rows * gt[2], gt[3] + cols * gt[4] + rows * gt[5]])


@dataclass(frozen=True)
class SceneGrid:
    """The common grid of one optical / SAR pair.

    ``geotransform`` is ``(x0, res, 0, y0, 0, ±res)`` with the same y direction as the optical;
    ``width`` x ``height`` grid pixels. ``optical_gt`` / ``sar_gt`` are what each scene is read
    with (its own, or the identity for non-georeferenced pairs).
    """

    optical: RasterInfo
    sar: RasterInfo
    optical_gt: tuple[float, ...]
    sar_gt: tuple[float, ...]
    crs_wkt: str | None
    geotransform: tuple[float, ...]
    width: int
    height: int
    reprojected: bool

    @property
    def res(self) -> float:
        return abs(self.geotransform[1])

    @property
    def optical_scale(self) -> tuple[float, float]:
        """Optical pixels per grid pixel along (x, y)."""
        return (self.geotransform[1] / self.optical_gt[1], self.geotransform[5] / self.optical_gt[5])

    def optical_to_grid(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional grid (rows, cols) of optical pixel (rows, cols) (top-left-corner convention)."""
        gt, g = self.optical_gt, self.geotransform
        x = gt[0] + np.asarray(cols, np.float64) * gt[1]
        y = gt[3] + np.asarray(rows, np.float64) * gt[5]
        return (y - g[3]) / g[5], (x - g[0]) / g[1]

    def grid_to_optical(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional optical (rows, cols) of grid (rows, cols); inverse of :meth:`optical_to_grid`."""
        gt, g = self.optical_gt, self.geotransform
        x = g[0] + np.asarray(cols, np.float64) * g[1]
        y = g[3] + np.asarray(rows, np.float64) * g[5]
        return (y - gt[3]) / gt[5], (x - gt[0]) / gt[1]

    def sar_to_grid(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional grid (rows, cols) of SAR pixel (rows, cols), reprojected when CRSs differ."""
        gt, g = self.sar_gt, self.geotransform
        x = gt[0] + np.asarray(cols, np.float64) * gt[1] + np.asarray(rows, np.float64) * gt[2]
        y = gt[3] + np.asarray(cols, np.float64) * gt[4] + np.asarray(rows, np.float64) * gt[5]
        if self.reprojected:
            x, y = reproject_points(x, y, self.sar.crs_wkt, self.crs_wkt)
        return (y - g[3]) / g[5], (x - g[0]) / g[1]

    def optical_box(self, factor: int = 1) -> Box:
        """The optical footprint on the ``factor``-downsampled grid, as a pixel box."""
        r0, c0 = self.optical_to_grid(np.array([0.0]), np.array([0.0]))
        r1, c1 = self.optical_to_grid(np.array([float(self.optical.height)]), np.array([float(self.optical.width)]))
        rmin, rmax = sorted([r0[0], r1[0]])
        cmin, cmax = sorted([c0[0], c1[0]])
        col, row = int(math.floor(cmin / factor)), int(math.floor(rmin / factor))
        return (col, row, int(math.ceil(cmax / factor)) - col, int(math.ceil(rmax / factor)) - row)

    def level_size(self, factor: int) -> tuple[int, int]:
        """(width, height) of the ``factor``-downsampled grid."""
        return (int(math.ceil(self.width / factor)), int(math.ceil(self.height / factor)))

    def read(self, which: str, box: Box, factor: int = 1) -> np.ndarray:
        """One scene resampled onto ``box`` of the ``factor``-downsampled grid: float32 ``(bands, h, w)``.

        ``which`` is ``"optical"`` or ``"sar"``. Outside the scene's footprint (and for boxes that
        reach past the grid) the result is 0. Downsampling averages, upsampling is bilinear.
        """
        info, gt = (self.optical, self.optical_gt) if which == "optical" else (self.sar, self.sar_gt)
        col, row, w, h = box
        g = self.geotransform
        dst_gt = (g[0] + col * factor * g[1], g[1] * factor, 0.0, g[3] + row * factor * g[5], 0.0, g[5] * factor)
        dst = gdal.GetDriverByName("MEM").Create("", int(w), int(h), info.count, gdal.GDT_Float32)
        dst.SetGeoTransform(dst_gt)
        src = gdal.Open(info.path)
        if not self.crs_wkt:
            src = gdal.Translate("", src, format="VRT")
            src.SetGeoTransform(gt)
        else:
            dst.SetProjection(self.crs_wkt)
        src_res = math.hypot(gt[1], gt[2])
        alg = "average" if abs(dst_gt[1]) > 1.01 * src_res else "bilinear"
        nodata = [v for v in info.nodata if v is not None]
        try:
            gdal.Warp(dst, src, resampleAlg=alg, srcNodata=nodata[0] if nodata else None,
                      dstNodata=0, multithread=False)
        except RuntimeError as exc:
            raise InputError(f"cannot resample onto the registration grid ({exc})", info.path) from None
        arr = dst.ReadAsArray()
        arr = arr[None] if arr.ndim == 2 else arr
        return np.nan_to_num(arr.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)


def scene_grid(optical_path: str | Path, sar_path: str | Path, margin: float = 0.1,
               max_margin_px: int = 400) -> SceneGrid:
    """The common grid of a pair: optical CRS, the coarser pixel size, optical extent + margin.

    ``margin`` is a fraction of the optical size (capped at ``max_margin_px`` grid pixels) added on
    every side so SAR counterparts just outside the optical footprint can still be matched.
    Raises ``InputError`` (naming the SAR file) when the footprints do not overlap.
    """
    opt, sar = raster_info(optical_path), raster_info(sar_path)
    both_geo = opt.georeferenced and sar.georeferenced and bool(opt.crs_wkt) and bool(sar.crs_wkt)
    if not both_geo:
        if opt.georeferenced != sar.georeferenced:
            log.warning("only one of %s, %s is georeferenced: treating both as one pixel grid",
                        optical_path, sar_path)
        opt_gt, sar_gt, crs = IDENTITY_GT, IDENTITY_GT, None
    else:
        opt_gt, sar_gt, crs = opt.geotransform, sar.geotransform, opt.crs_wkt
    if opt_gt[2] != 0 or opt_gt[4] != 0:
        raise InputError("rotated geotransforms are not supported for the optical scene", optical_path)
    opt_corners = _bounds(opt, opt_gt)
    sar_corners = _bounds(sar, sar_gt)
    reprojected = False
    if crs:
        x, y = reproject_points(sar_corners[:, 0], sar_corners[:, 1], sar.crs_wkt, crs)
        moved = not np.allclose(np.column_stack([x, y]), sar_corners)
        reprojected = moved
        sar_corners = np.column_stack([x, y])
    ox0, ox1 = opt_corners[:, 0].min(), opt_corners[:, 0].max()
    oy0, oy1 = opt_corners[:, 1].min(), opt_corners[:, 1].max()
    sx0, sx1 = sar_corners[:, 0].min(), sar_corners[:, 0].max()
    sy0, sy1 = sar_corners[:, 1].min(), sar_corners[:, 1].max()
    overlap = max(0.0, min(ox1, sx1) - max(ox0, sx0)) * max(0.0, min(oy1, sy1) - max(oy0, sy0))
    if overlap <= 0:
        raise InputError(
            f"does not overlap the optical scene {optical_path} (optical x {ox0:.1f}..{ox1:.1f}, "
            f"y {oy0:.1f}..{oy1:.1f}; SAR x {sx0:.1f}..{sx1:.1f}, y {sy0:.1f}..{sy1:.1f})", sar_path)
    sar_res = math.sqrt(abs((sx1 - sx0) * (sy1 - sy0)) / (sar.width * sar.height))
    res = max(abs(opt_gt[1]), abs(opt_gt[5]), sar_res if crs else abs(sar_gt[1]))
    ysign = 1.0 if opt_gt[5] > 0 else -1.0
    pad = min(margin * max(ox1 - ox0, oy1 - oy0), max_margin_px * res)
    pad = math.ceil(pad / res) * res
    x0 = ox0 - pad
    y0 = (oy0 - pad) if ysign > 0 else (oy1 + pad)
    width = int(math.ceil((ox1 - ox0 + 2 * pad) / res))
    height = int(math.ceil((oy1 - oy0 + 2 * pad) / res))
    return SceneGrid(opt, sar, tuple(opt_gt), tuple(sar_gt), crs, (x0, res, 0.0, y0, 0.0, ysign * res),
                     width, height, reprojected)


def to_intensity(arr: np.ndarray, modality: str) -> np.ndarray:
    """One float32 channel ``(h, w)`` from a read ``(bands, h, w)`` array, on a log-like scale.

    Optical: the band mean. SAR: the first band; linear intensities (all >= 0 with a large range)
    go through log1p so speckle is additive; dB data (negative values) is used as it is.
    Pixels that are 0 in every band (padding / nodata) stay 0.
    """
    valid = np.any(arr != 0, axis=0)
    if modality == "optical":
        img = arr[: min(3, arr.shape[0])].mean(axis=0)
    else:
        img = arr[0].copy()
        if valid.any():
            vals = img[valid]
            if vals.min() >= 0 and np.percentile(vals, 99) > 50:
                img = np.log1p(np.maximum(img, 0))
    img = img.astype(np.float32, copy=False)
    img[~valid] = 0
    return img


def warped_sar(grid: SceneGrid, prior, f: int, row0: int, col0: int, height: int,
               width: int) -> tuple[np.ndarray, int, int]:
    """SAR intensity ``(height, width)`` float32 on the level-``f`` box at (row0, col0), resampled
    through ``prior``: pixel (i, j) shows the SAR at level position (i, j) + prior / f, i.e. where
    the prior says the optical pixel's counterpart is. 0 where that falls outside the SAR.
    Returned with origin (row0, col0), so windows index it like an unshifted SAR box."""
    rows = (np.arange(row0, row0 + height, dtype=np.float64) + 0.5)[:, None]
    cols = (np.arange(col0, col0 + width, dtype=np.float64) + 0.5)[None, :]
    off = prior.sample(np.broadcast_to(rows * f, (height, width)), np.broadcast_to(cols * f, (height, width)))
    src_r = (rows - 0.5 + off[0] / f).astype(np.float32)  # level pixel index (centre convention)
    src_c = (cols - 0.5 + off[1] / f).astype(np.float32)
    b_r0, b_c0 = int(math.floor(float(src_r.min()))) - 2, int(math.floor(float(src_c.min()))) - 2
    b_h = int(math.ceil(float(src_r.max()))) + 3 - b_r0
    b_w = int(math.ceil(float(src_c.max()))) + 3 - b_c0
    sar = to_intensity(grid.read("sar", (b_c0, b_r0, b_w, b_h), f), "sar")
    if not (sar != 0).any():
        return np.zeros((height, width), np.float32), row0, col0
    mr, mc = src_r - b_r0, src_c - b_c0
    out = cv2.remap(sar, mc, mr, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    valid = cv2.remap((sar != 0).astype(np.uint8), mc, mr, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=0) > 0
    valid &= cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out[~valid] = 0
    out[valid & (out == 0)] = np.float32(1e-6)  # keep exact 0 for "no data" only
    return out, row0, col0

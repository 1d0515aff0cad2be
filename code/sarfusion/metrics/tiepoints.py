"""SpaceNet 9 registration score: predicted offset map against tie points (SPEC section 4).

Only geotransforms and CRSs of the optical and SAR images are read (never their pixels), and of
the offset map only the pixels under the tie points, so 13,000 x 13,000 scenes cost nothing.

Stage 1, :func:`reference_offsets`: for each tie point the SAR pixel's top-left corner goes to map
coordinates (SAR geotransform), is reprojected into the optical CRS when the CRSs differ, and the
reference offset in optical pixels is ``dx = rint((X_sar - X_opt) / gt_opt[1])``,
``dy = rint((Y_sar - Y_opt) / gt_opt[5])``.
Stage 2, :func:`offset_errors`: the predicted (dx, dy) is read at the exact integer optical pixel
(band 1 = dx, band 2 = dy, no interpolation) and the error is the Euclidean distance in optical
pixels. Score = mean error; leaderboard = 100 / (1 + 0.01 x mean). Tie points that share an optical
pixel count once (the first row wins).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from osgeo import osr

from sarfusion.errors import InputError
from sarfusion.io.raster import RasterInfo, pixel_to_map, raster_info, read_points, reproject_points
from sarfusion.io.vector import read_csv_checked

log = logging.getLogger(__name__)

TIEPOINT_COLUMNS = ("sar_row", "sar_col", "optical_row", "optical_col")
METRES_PER_DEGREE = 111_320.0  # equatorial length of one degree, for geographic optical CRSs


def read_tiepoints(path: str | Path) -> pd.DataFrame:
    """Tie points as int64 columns ``sar_row, sar_col, optical_row, optical_col``, duplicates of an
    optical pixel removed (first occurrence kept)."""
    df = read_csv_checked(path, TIEPOINT_COLUMNS)
    out = {}
    for col in TIEPOINT_COLUMNS:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"column {col} row {i + 2} is not an integer pixel index ({df[col].iloc[i]!r})", path)
        out[col] = values.astype(np.int64)
    points = pd.DataFrame(out)
    unique = points.drop_duplicates(subset=["optical_row", "optical_col"], keep="first")
    if len(unique) < len(points):
        log.info("%s: %d tie point(s) repeat an optical pixel and count once", path, len(points) - len(unique))
    return unique.reset_index(drop=True)


def reference_offsets(points: pd.DataFrame, optical: RasterInfo, sar: RasterInfo) -> tuple[np.ndarray, np.ndarray]:
    """Reference (dx, dy) in optical pixels, float64 ``(n,)`` each, integers after ``rint``."""
    x_sar, y_sar = pixel_to_map(sar.geotransform, points["sar_row"], points["sar_col"])
    x_sar, y_sar = reproject_points(x_sar, y_sar, sar.crs_wkt, optical.crs_wkt)
    x_opt, y_opt = pixel_to_map(optical.geotransform, points["optical_row"], points["optical_col"])
    gt = optical.geotransform
    return np.rint((x_sar - x_opt) / gt[1]), np.rint((y_sar - y_opt) / gt[5])


def check_offset_raster(offsets: RasterInfo, optical: RasterInfo) -> None:
    """The offset map must be 2 bands on the optical image's pixel grid."""
    if offsets.count != 2:
        raise InputError(f"has {offsets.count} band(s), an offset map needs exactly 2 (dx, dy)", offsets.path)
    if (offsets.width, offsets.height) != (optical.width, optical.height):
        raise InputError(
            f"is {offsets.width}x{offsets.height} px but the optical image {optical.path} is "
            f"{optical.width}x{optical.height}", offsets.path)
    if offsets.georeferenced and not np.allclose(offsets.geotransform, optical.geotransform, rtol=0, atol=1e-6):
        log.warning("%s: geotransform differs from the optical image's; scoring by pixel index", offsets.path)


def offset_errors(points: pd.DataFrame, offsets_path: str | Path, ref_dx: np.ndarray,
                  ref_dy: np.ndarray) -> np.ndarray:
    """Euclidean error in optical pixels, float64 ``(n,)``, of the offsets read at each tie point."""
    rows, cols = points["optical_row"].to_numpy(), points["optical_col"].to_numpy()
    dx = read_points(offsets_path, 1, rows, cols)
    dy = read_points(offsets_path, 2, rows, cols)
    bad = ~(np.isfinite(dx) & np.isfinite(dy))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{int(bad.sum())} tie point pixel(s) hold NaN/inf offsets, e.g. optical "
                         f"(row {rows[i]}, col {cols[i]}) = ({dx[i]}, {dy[i]}); every pixel must be finite",
                         offsets_path)
    return np.hypot(dx - ref_dx, dy - ref_dy)


def optical_pixel_metres(optical: RasterInfo) -> float:
    """Optical pixel width in metres: |gt[1]| for projected CRSs (SN9 is UTM); for a geographic
    CRS, degrees x 111,320 m x cos(latitude of the image centre)."""
    size = abs(optical.geotransform[1])
    if optical.crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(optical.crs_wkt)
        if srs.IsGeographic():
            _, lat = pixel_to_map(optical.geotransform, optical.height / 2, optical.width / 2)
            return float(size * METRES_PER_DEGREE * np.cos(np.radians(lat)))
        return float(size * srs.GetLinearUnits())
    return float(size)


def score_from_mean(mean_px: float) -> float:
    """SN9 leaderboard score of a mean error in pixels."""
    return 100.0 / (1.0 + 0.01 * mean_px)


def score_tiepoints(optical_path: str | Path, sar_path: str | Path, tiepoints_path: str | Path,
                    offsets_path: str | Path) -> dict:
    """Score an offset map (SPEC section 4).

    Returns ``{mean_px, mean_m, score, n_points}``: mean Euclidean error in optical pixels, the same
    in metres (pixels x optical pixel width), 100 / (1 + 0.01 x mean_px), and the tie points used.
    """
    optical, sar, offsets = raster_info(optical_path), raster_info(sar_path), raster_info(offsets_path)
    check_offset_raster(offsets, optical)
    if bool(optical.crs_wkt) != bool(sar.crs_wkt):
        log.warning("only one of %s / %s has a CRS; SAR points are not reprojected", optical_path, sar_path)
    points = read_tiepoints(tiepoints_path)
    out = (points["optical_row"] < 0) | (points["optical_col"] < 0) | \
          (points["optical_row"] >= optical.height) | (points["optical_col"] >= optical.width)
    if out.any():
        i = int(np.argmax(out.to_numpy()))
        raise InputError(f"optical pixel (row {points['optical_row'][i]}, col {points['optical_col'][i]}) lies "
                         f"outside the {optical.width}x{optical.height} optical image", tiepoints_path)
    ref_dx, ref_dy = reference_offsets(points, optical, sar)
    errors = offset_errors(points, offsets_path, ref_dx, ref_dy)
    mean_px = float(errors.mean())
    return {"mean_px": mean_px, "mean_m": mean_px * optical_pixel_metres(optical),
            "score": score_from_mean(mean_px), "n_points": int(len(errors))}

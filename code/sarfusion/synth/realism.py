"""Image statistics that tell synthetic optical / SAR pairs from real ones (``sarfusion synth report``).

Every function takes one co-registered pair at one resolution: an optical image on any linear
scale and SAR backscatter in dB, with a validity mask. They are numpy (GDAL for the Capella chain); the report
(:mod:`sarfusion.synth.report`) applies them identically to the real samples and the generators.

- :func:`cross_ncc`: global normalised cross-correlation of optical brightness and SAR dB. Real
  pairs share scene structure but no pixel noise, so it stays small (MultiEarth S1 / S2: 0.05).
- :func:`gradient_feature_ncc`: NCC of oriented-gradient features (the registration features,
  :func:`sarfusion.registration.features.oriented_gradients`) in 64 px windows, averaged.
- :func:`orientation_agreement`: where both images have strong gradients, the mean of
  ``cos(2 * angle difference)`` (1 parallel edges, 0 unrelated, -1 perpendicular).
- :func:`enl`: equivalent number of looks, mean^2 / variance of linear power in 9 px windows,
  taken at the 90th percentile over windows (the most homogeneous tenth).
- :func:`db_tails`: dB histogram shape, ``(p99 - median, median - p1)``.

Bringing SAR to a real product's resolution: :func:`sar_db_downsample` averages (the 10 m
Sentinel-1 comparisons); :func:`capella_product_db` is the chain that rebuilds the Capella 4.5 m
crop from its own SLC chips, and :func:`capella_like` puts synthetic power through it
(docs/synthetic_data.md, "The Capella 4.5 m product").
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from osgeo import gdal, osr
from scipy import ndimage

from sarfusion.registration.features import oriented_gradients

ENL_WINDOW = 9
ENL_PERCENTILE = 90
FEATURE_WINDOW = 64
CAPELLA_SLC_SPACING_M = 2.5   # the Capella SLC chips: independent single-look samples on this grid
CAPELLA_MULTILOOK = 2         # boxcar in those samples; chosen on the crop's mean dB level (not a report row)
CAPELLA_PIXEL_M = 4.5


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally shaped arrays (NaN when one is constant)."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def brightness(optical: np.ndarray) -> np.ndarray:
    """(3, H, W) linear optical -> (H, W) float32 mean of the bands."""
    return np.asarray(optical, np.float32).mean(axis=0)


def cross_ncc(optical: np.ndarray, sar_db: np.ndarray, valid: np.ndarray) -> float:
    """Global NCC of optical brightness ((3, H, W) linear) and SAR (H, W) dB over ``valid`` (H, W)."""
    return ncc(brightness(optical)[valid], sar_db[valid])


def gradient_feature_ncc(optical: np.ndarray, sar_db: np.ndarray, valid: np.ndarray,
                         window: int = FEATURE_WINDOW) -> float:
    """Mean NCC of oriented-gradient features (8 orientations) of optical brightness and SAR dB
    over non-overlapping ``window`` px windows that are at least 90 % valid, each NCC over the
    window's valid pixels only (nodata zeros in both would correlate); NaN if no window is."""
    opt = np.where(valid, brightness(optical), 0).astype(np.float32)
    sar = np.where(valid, sar_db - np.float32(sar_db[valid].min()) + 1, 0).astype(np.float32)  # 0 = padding
    fo, fs = oriented_gradients(opt), oriented_gradients(sar)
    h, w = valid.shape
    scores = []
    for r in range(0, h - window + 1, window):
        for c in range(0, w - window + 1, window):
            win = (slice(r, r + window), slice(c, c + window))
            v = valid[win]
            if v.mean() < 0.9:
                continue
            scores.append(ncc(fo[(slice(None),) + win][:, v], fs[(slice(None),) + win][:, v]))
    scores = [s for s in scores if np.isfinite(s)]
    return float(np.mean(scores)) if scores else float("nan")


def _gradients(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.0)
    return cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)


def orientation_agreement(optical: np.ndarray, sar_db: np.ndarray, valid: np.ndarray,
                          quantile: float = 75.0) -> float:
    """Mean ``cos(2 dtheta)`` of the gradient orientations of optical brightness and SAR dB where
    both gradient magnitudes are above their ``quantile`` (valid pixels away from the mask edge)."""
    inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if inner.sum() < 100:
        return float("nan")
    gox, goy = _gradients(np.where(valid, brightness(optical), 0))
    med = np.float32(np.median(sar_db[valid]))
    gsx, gsy = _gradients(np.where(valid, sar_db, med))
    mo, ms = np.hypot(gox, goy), np.hypot(gsx, gsy)
    strong = inner & (mo > np.percentile(mo[inner], quantile)) & (ms > np.percentile(ms[inner], quantile))
    if strong.sum() < 20:
        return float("nan")
    d = np.arctan2(goy[strong], gox[strong]) - np.arctan2(gsy[strong], gsx[strong])
    return float(np.mean(np.cos(2 * d)))


def enl(sar_db: np.ndarray, valid: np.ndarray, window: int = ENL_WINDOW,
        percentile: float = ENL_PERCENTILE) -> float:
    """Equivalent number of looks of (H, W) SAR dB: mean^2 / var of linear power in non-overlapping
    ``window`` px windows that are wholly valid, at the ``percentile`` over windows."""
    power = np.power(10.0, np.where(valid, sar_db, 0) / 10.0)
    h, w = (s // window * window for s in sar_db.shape)
    blocks = power[:h, :w].reshape(h // window, window, w // window, window)
    ok = valid[:h, :w].reshape(blocks.shape).all(axis=(1, 3))
    mean = blocks.mean(axis=(1, 3))[ok]
    var = blocks.var(axis=(1, 3))[ok]
    keep = var > 0
    if keep.sum() < 10:
        return float("nan")
    return float(np.percentile(mean[keep] ** 2 / var[keep], percentile))


def db_tails(sar_db: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """``(p99 - median, median - p1)`` of the valid dB values: the bright and the dark tail."""
    p1, p50, p99 = np.percentile(sar_db[valid], [1, 50, 99])
    return float(p99 - p50), float(p50 - p1)


def downsample(image: np.ndarray, valid: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Area-average ``(B, H, W)`` linear values by ``factor`` (output pixel = factor x input pixel).

    Returns the averaged image and its validity: an output pixel is valid when every input pixel
    it covers is (a mean over nodata would be neither sensor's value).
    """
    h, w = valid.shape
    size = (max(1, int(w / factor)), max(1, int(h / factor)))
    bands = [cv2.resize(np.where(valid, b, 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
             for b in image]
    cover = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return np.stack(bands), cover > 0.999


def sar_db_downsample(sar_db: np.ndarray, valid: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(B, H, W) dB -> averaged in linear power by ``factor`` -> dB, with its validity."""
    power, ok = downsample(np.power(10.0, np.where(valid, sar_db, -30.0) / 10.0), valid, factor)
    return (10 * np.log10(np.maximum(power, 1e-9))).astype(np.float32), ok


def capella_product_db(intensity: np.ndarray, geotransform: Sequence[float], projection: str,
                       out_geotransform: Sequence[float], out_shape: tuple[int, int]) -> np.ndarray:
    """The way the Capella 4.5 m crop was made from its SLC (solaris' SAR chain): ``(H, W)``
    single-look linear intensity on its grid (``geotransform``, ``projection`` WKT) -> a
    ``CAPELLA_MULTILOOK`` x ``CAPELLA_MULTILOOK`` boxcar -> dB -> ``gdal.Warp`` Lanczos onto
    ``out_geotransform`` / ``out_shape`` (rows, cols). Returns ``(rows, cols)`` float32 dB, NaN where
    the input does not reach."""
    looked = ndimage.uniform_filter(intensity.astype(np.float64), size=CAPELLA_MULTILOOK, mode="reflect")
    positive = looked[looked > 0]
    floor = positive.min() if positive.size else 1e-12
    db = 10.0 * np.log10(np.maximum(looked, floor))
    src = gdal.GetDriverByName("MEM").Create("", db.shape[1], db.shape[0], 1, gdal.GDT_Float64)
    src.SetGeoTransform(tuple(geotransform))
    src.SetProjection(projection)
    src.GetRasterBand(1).WriteArray(db)
    rows, cols = out_shape
    x0, y0 = out_geotransform[0], out_geotransform[3]
    bounds = (x0, y0 + rows * out_geotransform[5], x0 + cols * out_geotransform[1], y0)
    out = gdal.Warp("", src, format="MEM", outputBounds=bounds, width=cols, height=rows,
                    dstSRS=projection, resampleAlg="lanczos", dstNodata=float("nan"))
    return out.ReadAsArray().astype(np.float32)


def capella_like(power: np.ndarray, valid: np.ndarray, pixel_m: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic SAR as a Capella 4.5 m product: ``(B, H, W)`` linear power at ``pixel_m`` metres
    -> area-averaged to the SLC grid (``CAPELLA_SLC_SPACING_M``; the scene's reflectivity, its own
    fine speckle averaged out) -> times unit-mean exponential speckle, one independent single-look
    draw per sample and band -> :func:`capella_product_db`. Returns ``(B, h, w)`` float32 dB at
    ``CAPELLA_PIXEL_M`` and its ``(h, w)`` validity (every covered input pixel valid, one pixel in
    from the edge of the valid area, where the Lanczos kernel reaches nodata)."""
    slc_m, out_m = CAPELLA_SLC_SPACING_M, CAPELLA_PIXEL_M
    reflectivity, ok_slc = downsample(power, valid, slc_m / pixel_m)
    if not ok_slc.any():
        raise ValueError("capella_like: no valid 2.5 m sample")
    # nodata filled with each band's mean, so that Lanczos near an edge does not ring on zeros
    fill = reflectivity[:, ok_slc].mean(axis=1)
    reflectivity = np.where(ok_slc, reflectivity, fill[:, None, None])
    slc = reflectivity * rng.exponential(1.0, reflectivity.shape)
    # the output grid and its validity by the same rule as every other downsampling here
    _, cover = downsample(ok_slc[None].astype(np.float32), ok_slc, out_m / slc_m)
    rows, cols = cover.shape
    srs = osr.SpatialReference()  # any metric CRS: the grids are local
    srs.ImportFromEPSG(32631)
    projection = srs.ExportToWkt()
    gt_slc, gt_out = (0.0, slc_m, 0.0, 0.0, 0.0, -slc_m), (0.0, out_m, 0.0, 0.0, 0.0, -out_m)
    db = np.stack([capella_product_db(b, gt_slc, projection, gt_out, (rows, cols)) for b in slc])
    ok = ndimage.binary_erosion(cover, iterations=1) & np.isfinite(db).all(axis=0)
    return np.nan_to_num(db, nan=0.0), ok


def pair_statistics(optical: np.ndarray, sar_db: dict[str, np.ndarray], valid: np.ndarray,
                    cross_band: str) -> dict[str, float]:
    """Every statistic of one pair: ``ncc``, ``feature_ncc``, ``orientation``, ``enl`` (on
    ``cross_band``) and ``<pol> p99-p50`` / ``<pol> p50-p1`` for each band of ``sar_db``."""
    x = sar_db[cross_band]
    out = {"ncc": cross_ncc(optical, x, valid), "feature_ncc": gradient_feature_ncc(optical, x, valid),
           "orientation": orientation_agreement(optical, x, valid), "enl": enl(x, valid)}
    for pol, band in sar_db.items():
        bright, dark = db_tails(band, valid)
        out[f"{pol} p99-p50"], out[f"{pol} p50-p1"] = bright, dark
    return out

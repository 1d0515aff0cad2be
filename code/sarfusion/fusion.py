"""HSV fusion of quad-pol SAR with optical RGB (the SpaceNet 6 blog recipe, SPEC section 3).

Pure numpy / OpenCV functions, one tile at a time:

1. :func:`span` reduces HH, HV, VH, VV to one channel, the total polarimetric power.
2. :func:`histogram_match` maps it onto the optical green band's distribution (valid pixels only),
   then :func:`lee_filter` removes speckle (3x3).
3. :func:`hsv_fuse` converts RGB to HSV, replaces V by the filtered SPAN and converts back.

Nodata: a SAR pixel is nodata when its bands are 0 (SpaceNet 6) or NaN (calibrated products such
as the Capella sample); an optical pixel is nodata when all three bands are 0. Nodata stays 0 in
every uint8 output, and valid pixels are kept >= 1 so that they never read as nodata.

The SPAN choice. SN6 ``SAR-Intensity`` values are dB-like (an offset dB scale, valid ~10-90), so
the textbook SPAN ``|HH|^2 + |HV|^2 + |VH|^2 + |VV|^2`` is computed on *linear power*: each band
``10 ** (dB / 10)`` is already ``|S|^2``, the four are summed and the sum is returned in dB. This
is the default (``mode="textbook"``) because it is the physical quantity and it does not depend on
the (unknown) dB offset except by a constant shift. The public SN6 notebook instead computed
``HH^2 + 2 |HV| + VV^2`` directly on the dB-like values; it is offered as ``mode="notebook"`` to
reproduce the blog images (it is not a power: it squares logarithms). After histogram matching the
two differ only by a monotone map where HH and VV move together.
"""
from __future__ import annotations

import cv2
import numpy as np

SPAN_MODES = ("textbook", "notebook")

# Fixed dB -> 0..255 scalings for :func:`span_to_uint8` (no optical reference, e.g. test tiles).
# SN6 offset-dB: band means 26-36, std ~8.5, maxima 64-93, so the textbook SPAN lies in ~15-95 dB.
SN6_SPAN_DB_RANGE = (10.0, 90.0)
# Calibrated dB (Capella sample): band 1st-99th percentiles -19..+8 dB, SPAN ~ -20..+12 dB.
CALIBRATED_SPAN_DB_RANGE = (-25.0, 15.0)


def _check_shape(name: str, arr: np.ndarray, ndim: int, first: int | None = None) -> None:
    if arr.ndim != ndim or (first is not None and arr.shape[0] != first):
        want = f"({first}, H, W)" if first is not None else ("(H, W)" if ndim == 2 else f"{ndim}-D")
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")


def sar_valid_mask(sar: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: True where every band is finite and not all four are 0."""
    _check_shape("sar", sar, 3)
    finite = np.isfinite(sar).all(axis=0)
    return finite & (np.where(np.isfinite(sar), sar, 0) != 0).any(axis=0)


def optical_valid_mask(rgb: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: True where the RGB pixel is not (0, 0, 0)."""
    _check_shape("rgb", rgb, 3, 3)
    return (rgb != 0).any(axis=0)


def span(sar: np.ndarray, mode: str = "textbook") -> np.ndarray:
    """Total polarimetric power of a quad-pol intensity tile.

    Args:
        sar: ``(4, H, W)`` float32 intensities HH, HV, VH, VV in dB (SN6 offset dB or calibrated
            dB); 0 or NaN = nodata.
        mode: ``"textbook"`` (default): ``10 log10(sum_b 10^(dB_b / 10))``, the SPAN in dB.
            ``"notebook"``: ``HH^2 + 2 |HV| + VV^2`` on the dB values (SN6 public notebook).

    Returns:
        ``(H, W)`` float32; NaN where nodata.
    """
    if mode not in SPAN_MODES:
        raise ValueError(f"unknown SPAN mode {mode!r}; choose one of {SPAN_MODES}")
    sar = np.asarray(sar, dtype=np.float32)
    _check_shape("sar", sar, 3, 4)
    valid = sar_valid_mask(sar)
    db = np.where(valid, sar, 0.0).astype(np.float32)
    if mode == "textbook":
        # log-sum-exp in base 10: exact, and no overflow for any dB offset in float32
        top = db.max(axis=0)
        out = top + 10.0 * np.log10(np.power(10.0, (db - top) / 10.0, dtype=np.float32).sum(axis=0))
    else:
        out = db[0] ** 2 + 2.0 * np.abs(db[1]) + db[3] ** 2
    return np.where(valid, out, np.nan).astype(np.float32)


def histogram_match(source: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Map ``source`` so its distribution over ``mask`` equals ``reference``'s over ``mask``.

    Quantile mapping: a source value at empirical quantile q (ties share their mean rank) gets the
    reference's q-quantile (linear interpolation). Monotone non-decreasing in the source.

    Args:
        source, reference: ``(H, W)`` any real dtype (e.g. SPAN dB and the optical green band).
        mask: ``(H, W)`` bool, the pixels valid in both.

    Returns:
        ``(H, W)`` float32 in the reference's value range; NaN outside ``mask``.
    """
    _check_shape("source", source, 2)
    if source.shape != reference.shape or source.shape != mask.shape:
        raise ValueError(f"shapes differ: source {source.shape}, reference {reference.shape}, mask {mask.shape}")
    out = np.full(source.shape, np.nan, dtype=np.float32)
    mask = mask & np.isfinite(source) & np.isfinite(reference)
    if not mask.any():
        return out
    src_vals, src_inv, src_counts = np.unique(source[mask], return_inverse=True, return_counts=True)
    ref_vals, ref_counts = np.unique(reference[mask], return_counts=True)
    n = float(src_counts.sum())
    # mid-rank quantile of each distinct source value; cumulative quantiles of the reference
    src_q = (np.cumsum(src_counts) - 0.5 * src_counts) / n
    ref_q = (np.cumsum(ref_counts) - 0.5 * ref_counts) / float(ref_counts.sum())
    out[mask] = np.interp(src_q, ref_q, ref_vals.astype(np.float64))[src_inv.ravel()].astype(np.float32)
    return out


def lee_filter(img: np.ndarray, size: int = 3) -> np.ndarray:
    """Lee speckle filter: ``mean + w (img - mean)``, ``w = var / (var + noise_var)``.

    ``mean``, ``var`` are local (``size`` x ``size`` box) statistics; ``noise_var`` is the image's
    overall variance (the form used in the SN6 notebook). NaN pixels are nodata: they are left out
    of every local statistic (normalised box filter) and stay NaN.

    Args:
        img: ``(H, W)`` float. Returns ``(H, W)`` float32.
    """
    _check_shape("img", img, 2)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Lee filter size must be an odd positive integer, got {size}")
    img = np.asarray(img, dtype=np.float32)
    valid = np.isfinite(img)
    if not valid.any():
        return img.copy()
    x = np.where(valid, img, 0.0).astype(np.float32)
    w = valid.astype(np.float32)
    k = (size, size)
    border = cv2.BORDER_REFLECT
    count = cv2.blur(w, k, borderType=border)
    safe = np.maximum(count, 1e-6)
    mean = cv2.blur(x, k, borderType=border) / safe
    sq_mean = cv2.blur(x * x, k, borderType=border) / safe
    var = np.maximum(sq_mean - mean * mean, 0.0)
    noise_var = float(np.var(img[valid]))
    weight = var / (var + noise_var) if noise_var > 0 else np.zeros_like(var)
    out = mean + weight * (x - mean)
    return np.where(valid, out, np.nan).astype(np.float32)


def hsv_fuse(rgb: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Replace the HSV value channel of an RGB image.

    Args:
        rgb: ``(3, H, W)`` uint8 RGB. value: ``(H, W)`` uint8, the new V.

    Returns:
        ``(3, H, W)`` uint8 RGB with the hue and saturation of ``rgb`` and V = ``value``.
    """
    _check_shape("rgb", rgb, 3, 3)
    if value.shape != rgb.shape[1:]:
        raise ValueError(f"value must have shape {rgb.shape[1:]}, got {value.shape}")
    hsv = cv2.cvtColor(np.ascontiguousarray(np.moveaxis(rgb.astype(np.uint8), 0, -1)), cv2.COLOR_RGB2HSV)
    hsv[..., 2] = value.astype(np.uint8)
    return np.moveaxis(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), -1, 0).copy()


def _to_u8(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Round to uint8 with valid pixels clipped to 1..255 and nodata 0."""
    out = np.clip(np.rint(np.nan_to_num(values, nan=1.0)), 1, 255).astype(np.uint8)
    out[~valid] = 0
    return out


def fuse_tile(sar: np.ndarray, rgb: np.ndarray, mode: str = "textbook"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full fusion recipe on one co-registered tile pair.

    Args:
        sar: ``(4, H, W)`` float32 HH, HV, VH, VV (dB-like; 0 / NaN = nodata).
        rgb: ``(3, H, W)`` uint8 optical on the same grid (0 = nodata).
        mode: SPAN definition, see :func:`span`.

    Returns:
        ``fused`` ``(3, H, W)`` uint8 RGB (0 where nodata), ``span_u8`` ``(H, W)`` uint8 (the
        histogram-matched, Lee-filtered SPAN: the fused image's V; 0 where nodata) and ``valid``
        ``(H, W)`` bool (SAR and optical both valid).
    """
    _check_shape("rgb", rgb, 3, 3)
    if sar.shape[1:] != rgb.shape[1:]:
        raise ValueError(f"SAR {sar.shape} and RGB {rgb.shape} are not on the same grid")
    s = span(sar, mode)
    valid = np.isfinite(s) & optical_valid_mask(rgb)
    matched = histogram_match(s, rgb[1].astype(np.float32), valid)
    filtered = lee_filter(matched, 3)
    span_u8 = _to_u8(filtered, valid)
    fused = hsv_fuse(rgb, span_u8)
    fused[:, ~valid] = 0
    return fused, span_u8, valid


def span_db_range(span_db: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """The fixed dB range for a textbook SPAN: calibrated dB (median of valid pixels < 0 dB) or the
    SN6 offset-dB scale (otherwise). The two conventions are ~40 dB apart, so the test is safe."""
    vals = span_db[valid & np.isfinite(span_db)]
    if vals.size and float(np.median(vals)) < 0.0:
        return CALIBRATED_SPAN_DB_RANGE
    return SN6_SPAN_DB_RANGE


def span_to_uint8(span_db: np.ndarray, valid: np.ndarray,
                  db_range: tuple[float, float] | None = None) -> np.ndarray:
    """A fixed linear dB -> 1..255 scaling of a textbook SPAN (no optical reference needed).

    ``db_range`` ``(lo, hi)`` maps lo -> 1 and hi -> 255, clipped. Default: ``SN6_SPAN_DB_RANGE``
    (10..90 dB) for SN6 offset-dB tiles, ``CALIBRATED_SPAN_DB_RANGE`` (-25..+15 dB) for calibrated
    dB (see :func:`span_db_range`). The same map on every tile, so brightness means the same
    thing in training and at test time (the colorization input).

    Args:
        span_db: ``(H, W)`` float SPAN in dB (NaN = nodata). valid: ``(H, W)`` bool.

    Returns:
        ``(H, W)`` uint8, 0 where nodata.
    """
    _check_shape("span", span_db, 2)
    valid = valid & np.isfinite(span_db)
    lo, hi = db_range if db_range is not None else span_db_range(span_db, valid)
    if not hi > lo:
        raise ValueError(f"db_range must have hi > lo, got {(lo, hi)}")
    scaled = 1.0 + (np.asarray(span_db, dtype=np.float32) - lo) * (254.0 / (hi - lo))
    return _to_u8(scaled, valid)

"""Cloud and cloud-shadow screening of optical images (Sentinel-2 B1-B4 tiffs or 8-bit RGB PNGs).

Why pixels and not only QA60: the Sentinel-2 QA60 band (bit 10 opaque, bit 11 cirrus) is a
60 m product that is often empty; on the real MultiEarth sample it is all zero while three of
six dates carry obvious cumulus. QA60 flags are used where they flag something, and a spectral
rule (below) finds the clouds QA60 misses.

The rule works on top-of-atmosphere reflectance (uint16 Sentinel-2 DN / 10000) of the visible
bands blue B2, green B3, red B4. It borrows three tests of Fmask (Zhu & Woodcock 2012) that need
only visible bands, and adds a scene-relative brightness test so that it adapts to each scene:

1. Whiteness: ``sum_b |b - mean| / mean < 0.7`` over (B2, B3, B4). Clouds scatter all visible
   wavelengths nearly equally (flat spectrum); soil, crops, roofs and water are coloured.
2. Haze-optimised transform ``B2 - 0.5 * B4 - 0.08 > 0`` (Zhang et al. 2002, Fmask): clouds and
   haze raise blue relative to red; bright bare soil, sand and most roofs are redder than blue.
   This is an absolute reflectance test (0.08 reflectance of blue excess).
3. Brightness: visible mean reflectance above the scene's clear-sky level by a wide margin,
   ``mean > median + 6 * sigma``, where the clear-surface spread ``sigma`` is the larger of
   1.4826 MAD and the darker half's ``(p50 - p10) / 1.2816`` (the scene's own robust statistics,
   so a dark forest and a bright savanna each get their own threshold), and at least ``0.06``
   absolute; OR above ``0.30`` absolute (an overcast scene whose median is itself cloud still
   counts). Saturated white in an 8-bit PNG reads as exactly 0.30, so PNGs rely on the
   scene-relative test: a PNG mostly covered by saturated cloud can be missed.
4. Shape and size: clouds are compact blobs hundreds of metres across. Candidates are opened
   with a disk of radius ``core_radius_px`` (2 px = 20 m at 10 m; removes roads, field margins and
   other thin bright lines), cores under ``min_cloud_px`` pixels (30 px = 0.3 ha) are discarded
   (single white roofs), and each candidate region that holds a surviving core is restored at its
   full extent, then dilated by ``buffer_px`` to take in the thin, hazy cloud margin.

Shadows: a cloud casts a dark, displaced copy of itself. Pixels darker than ``0.6 x`` the scene
median (visible mean) that lie within ``shadow_search_px`` of a detected cloud count as shadow.
Shadows are only searched near clouds, so dark water or burnt fields in a clear scene are not
flagged.

The cloud fraction is (cloud + shadow pixels) / valid pixels; an image is kept when it is at
most ``max_cloud``. Limits: snow and ice pass the cloud tests (they are also poor translation
targets); 8-bit PNGs carry no calibrated reflectance, so they are read as ``value / 255 *
PNG_FULL_SCALE`` reflectance, an assumption documented at the constant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from sarfusion.errors import InputError

S2_REFLECTANCE_SCALE = 1.0 / 10000.0  # Sentinel-2 L1C/L2A digital numbers -> reflectance
PNG_FULL_SCALE = 0.3
"""Reflectance taken for 255 in an 8-bit RGB PNG. SEN1-2 and most quick-look PNGs stretch land
(reflectance ~0.02-0.3) onto 0-255 and saturate clouds; 0.3 keeps clear land below the absolute
cloud tests while a saturated white region still reads as bright and flat."""
QA60_OPAQUE_BIT = 10
QA60_CIRRUS_BIT = 11
DEFAULT_MAX_CLOUD = 0.01


@dataclass(frozen=True)
class CloudRule:
    """Thresholds of the spectral rule (see the module docstring for the physics)."""

    whiteness_max: float = 0.7
    hot_offset: float = 0.08
    robust_sigmas: float = 6.0
    min_bright: float = 0.06
    always_bright: float = 0.30
    core_radius_px: int = 2
    min_cloud_px: int = 30
    buffer_px: int = 2
    shadow_ratio: float = 0.6
    shadow_search_px: int = 40


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx * xx + yy * yy <= radius * radius


def qa60_mask(qa60: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: QA60 bit 10 (opaque cloud) or bit 11 (cirrus) set."""
    qa = np.asarray(qa60).astype(np.uint32)
    return ((qa >> QA60_OPAQUE_BIT) & 1).astype(bool) | ((qa >> QA60_CIRRUS_BIT) & 1).astype(bool)


def cloud_shadow_masks(rgb: np.ndarray, valid: np.ndarray | None = None, qa60: np.ndarray | None = None,
                       rule: CloudRule = CloudRule()) -> tuple[np.ndarray, np.ndarray]:
    """Cloud and shadow masks of one scene.

    Args:
        rgb: ``(3, H, W)`` float top-of-atmosphere reflectance (0-1) of red, green, blue
            (Sentinel-2 B4, B3, B2), in that order.
        valid: ``(H, W)`` bool, pixels with data (default: all).
        qa60: optional ``(H, W)`` QA60 band; its cloud bits are added to the cloud mask.
    Returns:
        ``(cloud, shadow)``, two ``(H, W)`` bool masks (disjoint).
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"rgb must be (3, H, W) reflectance, got shape {rgb.shape}")
    valid = np.ones(rgb.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    red, green, blue = rgb
    mean = rgb.mean(0)
    whiteness = np.abs(rgb - mean).sum(0) / np.maximum(mean, 1e-4)
    hot = blue - 0.5 * red - rule.hot_offset
    vals = mean[valid]
    if vals.size == 0:
        return np.zeros_like(valid), np.zeros_like(valid)
    # The clear surface's spread: the larger of the MAD (robust, but inflated by a large cloud)
    # and the darker half's spread (p50 - p10) / z(0.9) (clouds only ever add brightness, so
    # this holds up to ~50 % cloud cover, but under-reads scenes that mix dark forest with
    # bright fields). Taking the larger keeps bright clear fields from reading as cloud.
    p10, median = (float(q) for q in np.percentile(vals, [10, 50]))
    sigma = max((median - p10) / 1.2816, 1.4826 * float(np.median(np.abs(vals - median))))
    bright = (mean > max(median + rule.robust_sigmas * sigma, rule.min_bright)) | (mean > rule.always_bright)
    cloud = (whiteness < rule.whiteness_max) & (hot > 0) & bright & valid
    # Clouds are compact blobs hundreds of metres wide: an opening removes thin bright lines
    # (roads, field margins, white roofs along streets); small cores are dropped; then every
    # candidate region that holds a surviving core is restored at full extent.
    disk = _disk(rule.core_radius_px)
    core = ndi.binary_opening(cloud, structure=disk) if rule.core_radius_px > 0 else cloud
    labels, n = ndi.label(core)
    if n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= rule.min_cloud_px
        keep[0] = False
        core = keep[labels]
    cand_labels, _ = ndi.label(cloud)
    hit = np.unique(cand_labels[core])
    cloud = np.isin(cand_labels, hit[hit > 0])
    if qa60 is not None:
        cloud |= qa60_mask(qa60) & valid
    if cloud.any() and rule.buffer_px > 0:
        cloud = ndi.binary_dilation(cloud, iterations=rule.buffer_px) & valid
    shadow = np.zeros_like(cloud)
    if cloud.any():
        near = ndi.distance_transform_edt(~cloud) <= rule.shadow_search_px
        shadow = (mean < rule.shadow_ratio * median) & near & ~cloud & valid
    return cloud, shadow


def cloud_fraction(rgb: np.ndarray, valid: np.ndarray | None = None, qa60: np.ndarray | None = None,
                   rule: CloudRule = CloudRule()) -> dict:
    """Cloud statistics of one scene (``rgb`` as in :func:`cloud_shadow_masks`).

    Returns ``{cloud_fraction, cloud, shadow, qa60}``: fractions of valid pixels that are cloud or
    shadow (together), cloud, shadow, and QA60-flagged (``None`` without QA60).
    """
    cloud, shadow = cloud_shadow_masks(rgb, valid, qa60, rule)
    n = max(int(np.count_nonzero(valid)) if valid is not None else cloud.size, 1)
    qa = None if qa60 is None else float(np.count_nonzero(qa60_mask(qa60))) / n
    return {"cloud_fraction": float(np.count_nonzero(cloud | shadow)) / n,
            "cloud": float(np.count_nonzero(cloud)) / n, "shadow": float(np.count_nonzero(shadow)) / n,
            "qa60": qa}


# ----------------------------------------------------------------------------- files

_S2_BAND = re.compile(r"^(?P<pre>.*Sentinel2_)(?P<band>B\d+|QA60)(?P<post>_.+)\.tiff?$", re.IGNORECASE)


def read_optical_reflectance(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """An optical image as ``(rgb (3, H, W) float32 reflectance, valid (H, W) bool, qa60 or None)``.

    Accepts a MultiEarth band file (any of ``Sentinel2_{B1..B4,QA60}_<site>_<date>.tiff``: its
    B2/B3/B4 siblings and QA60, when present, are read), a 3- or 4-band GeoTIFF (R, G, B[, ...],
    uint16 as Sentinel-2 DN) or an 8-bit RGB PNG.
    """
    from sarfusion.datasets.multiearth import read_s2_scene
    from sarfusion.datasets.sen12 import read_png

    path = Path(path)
    m = _S2_BAND.match(path.name)
    if m:
        bands, qa = read_s2_scene(path.parent, m.group("pre"), m.group("post"))
        rgb = bands[[3, 2, 1]].astype(np.float32) * S2_REFLECTANCE_SCALE  # B4, B3, B2
        return rgb, bands[1] > 0, qa
    if path.suffix.lower() == ".png":
        img = read_png(path, channels=3)
        return img.astype(np.float32) / 255.0 * PNG_FULL_SCALE, np.ones(img.shape[1:], bool), None
    from sarfusion.io.raster import read_raster

    arr = read_raster(path, bands=[1, 2, 3], expect_bands=(3, 4))
    scale = S2_REFLECTANCE_SCALE if arr.dtype.kind in "ui" and arr.dtype.itemsize > 1 else (
        PNG_FULL_SCALE / 255.0 if arr.dtype == np.uint8 else 1.0)
    return arr.astype(np.float32) * scale, arr.max(0) > 0, None


def scene_key(path: str | Path) -> str:
    """One key per optical scene: a MultiEarth band file maps to its scene (band dropped)."""
    path = Path(path)
    m = _S2_BAND.match(path.name)
    return str(path.parent / f"{m.group('pre')}*{m.group('post')}") if m else str(path)


def assess_clouds(paths: Sequence[str | Path], max_cloud: float = DEFAULT_MAX_CLOUD,
                  rule: CloudRule = CloudRule()) -> list[dict]:
    """Cloud fraction and keep/drop per optical image.

    ``paths`` may name files or folders (searched for ``*.png``, ``*.tif*``; MultiEarth band files
    are grouped into one scene, SAR files ``Sentinel1_*`` and ``*_s1_*`` are skipped). Returns one
    dict per scene: ``{path, cloud_fraction, cloud, shadow, qa60, keep}``.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".png", ".tif", ".tiff")
                            and not f.name.startswith("Sentinel1_") and "_s1_" not in f.name)
        elif p.exists():
            files.append(p)
        else:
            raise InputError("file not found", p)
    seen: dict[str, Path] = {}
    for f in files:
        seen.setdefault(scene_key(f), f)
    out = []
    for key, f in seen.items():
        rgb, valid, qa = read_optical_reflectance(f)
        stats = cloud_fraction(rgb, valid, qa, rule)
        out.append({"path": key, **stats, "keep": stats["cloud_fraction"] <= max_cloud})
    return out

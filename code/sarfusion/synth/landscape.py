"""Rural landscapes at 10 m on hills, rendered as Sentinel-2 and Sentinel-1, with clouds and their
shadows: farmland (fields, forest, rivers, roads) written in the SEN1-2 PNG layout, and Amazon
deforestation frontiers (forest cleared along unpaved roads) in the MultiEarth tiff layout.

Relief: each scene gets hills of 0-200 m (:func:`sarfusion.synth.city.make_terrain` on 10 m cells),
seen differently by the two sensors, as on the real pairs: the optical is hill-shaded by a
Sentinel-2 morning sun (azimuth 120-170 deg, elevation 25-65 deg, one per date) with cast shadows;
the SAR, terrain-corrected in geometry but not in radiometry (GRD as SEN1-2 and MultiEarth use it),
brightens on slopes facing the sensor and darkens on those facing away (foreshortening, one
orbit per scene: incidence 30-46 deg, looking east on ascending or west on descending passes), with
radar shadow where a slope faces away more steeply than the line of sight.

Everything is seeded (``numpy.random.Generator``). Units: optical values are top-of-atmosphere
reflectance (0-1, Sentinel-2 B1 coastal aerosol, B2 blue, B3 green, B4 red); SAR values are
sigma0 in dB (VV, VH) with multiplicative Gamma speckle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from sarfusion.synth import city as C
from sarfusion.synth import optical as O

FOREST, CROP, BARE, PASTURE, WATER, ROAD = range(6)
CLASS_NAMES = ("forest", "crop", "bare", "pasture", "water", "road")
# Mean reflectance (B1, B2, B3, B4) per class, typical Sentinel-2 TOA values.
REFLECTANCE = np.array([
    [0.022, 0.020, 0.040, 0.022],  # forest: dark, green peak
    [0.030, 0.035, 0.070, 0.045],  # green crop
    [0.080, 0.100, 0.130, 0.170],  # bare soil: bright, red
    [0.040, 0.045, 0.075, 0.065],  # pasture
    [0.050, 0.040, 0.035, 0.020],  # water: dark, bluish
    [0.100, 0.130, 0.140, 0.150],  # road: bright, grey
], dtype=np.float32)
# Mean sigma0 (VV, VH) in dB per class.
SIGMA0_DB = np.array([
    [-7.5, -13.0], [-10.0, -16.5], [-13.0, -21.0], [-11.5, -18.0], [-22.0, -29.0], [-14.0, -24.0],
], dtype=np.float32)
RELIEF_M = (0.0, 200.0)            # 1-99 % elevation range of one 10 m scene
# MultiEarth sites: an Amazon deforestation frontier (plan in docs/synthetic_data.md, fixed before measuring)
FRONTIER_RELIEF_M = (10.0, 80.0)            # terra firme plateaus cut by streams
FRONTIER_CLEARED_SHARE = (0.0, 0.30)        # of the patch, per site
FRONTIER_LOT_DEPTH_M = (200.0, 1000.0)      # lots along the roads
FRONTIER_LOT_WIDTH_M = (150.0, 500.0)
FRONTIER_CLEARING_USE = {PASTURE: 0.65, BARE: 0.20, CROP: 0.15}
S1_INCIDENCE_DEG = (30.0, 46.0)     # Sentinel-1 IW swath
S1_SENSOR_AZIMUTH_DEG = (260.0, 100.0)  # right-looking: ascending passes look east (sensor to the west), descending west
S2_SUN_AZIMUTH_DEG = (120.0, 170.0)  # Sentinel-2 crosses at 10:30 local time
S2_SUN_ELEVATION_DEG = (25.0, 65.0)
# cast shadows are lit by the sky only: darker, and darker still in the red (B1, B2, B3, B4)
TERRAIN_SHADOW_GAIN = np.array([0.55, 0.52, 0.42, 0.38], np.float32)
CLOUD_REFLECTANCE = np.array([0.55, 0.50, 0.50, 0.50], dtype=np.float32)  # flat and bright
QA60_OPAQUE = 1 << 10


@dataclass
class Landscape:
    """``classes`` ``(H, W)`` uint8 class ids; ``parcel`` ``(H, W)`` int parcel ids (per-parcel
    variation); ``pixel_m`` the ground sampling distance; ``terrain`` ``(H, W)`` float32 elevation
    (m, None = flat); the Sentinel-1 orbit that sees it: ``incidence_deg`` and ``sensor_azimuth_deg``
    (the sensor seen from the scene, clockwise from north, as :func:`sarfusion.synth.sar.sensor_unit`)."""

    classes: np.ndarray
    parcel: np.ndarray
    pixel_m: float = 10.0
    terrain: np.ndarray | None = None
    incidence_deg: float = 38.0
    sensor_azimuth_deg: float = 260.0


def smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise, standardised to mean 0, std 1, ``(H, W)`` float32."""
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return (n - n.mean()) / max(float(n.std()), 1e-6)


def make_landscape(size: int, rng: np.random.Generator, relief_m: float | None = None) -> Landscape:
    """A ``size x size`` farmland landscape (SEN1-2): rotated field parcels, forest blobs, a
    meandering river, roads, on hills of ``relief_m`` (default: drawn from ``RELIEF_M``; 0 = flat)
    seen from one orbit."""
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi / 2)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    pu, pv = rng.uniform(25, 70), rng.uniform(25, 70)  # parcel sizes, px (250-700 m)
    iu, iv = np.floor(u / pu).astype(np.int64), np.floor(v / pv).astype(np.int64)
    parcel = (iu - iu.min()) * 1000 + (iv - iv.min())
    ids, inv = np.unique(parcel, return_inverse=True)
    parcel = inv.reshape(h, w)
    parcel_class = rng.choice([CROP, BARE, PASTURE, FOREST], size=len(ids), p=[0.4, 0.15, 0.3, 0.15])
    classes = parcel_class[parcel].astype(np.uint8)
    cover = rng.uniform(0.1, 0.6)
    forest = smooth_noise((h, w), size / 10, rng)
    classes[forest > np.quantile(forest, 1 - cover)] = FOREST
    if rng.random() < 0.7:  # a meandering river
        classes[_meander(xx, rng, half_width_px=(2, 6))] = WATER
    for _ in range(rng.integers(1, 3)):  # straight roads, 1-2 px (10-20 m)
        a = rng.uniform(0, np.pi)
        d = xx * np.cos(a) + yy * np.sin(a) - rng.uniform(0, size)
        classes[np.abs(d) < rng.uniform(0.6, 1.2)] = ROAD
    return _on_hills(classes, parcel, rng, RELIEF_M, relief_m)


def _meander(xx: np.ndarray, rng: np.random.Generator, half_width_px: tuple[float, float]) -> np.ndarray:
    """``(H, W)`` bool: a river meandering from the top edge to the bottom one."""
    h, w = xx.shape
    t = np.linspace(0, 1, h)
    centre = w * rng.uniform(0.2, 0.8) + w * 0.1 * np.sin(2 * np.pi * (t * rng.uniform(1, 3) + rng.random()))
    return np.abs(xx - centre[:, None]) < rng.uniform(*half_width_px)


def _on_hills(classes: np.ndarray, parcel: np.ndarray, rng: np.random.Generator,
              relief_range_m: tuple[float, float], relief_m: float | None) -> Landscape:
    """Put a layout on hills (relief drawn from ``relief_range_m`` unless ``relief_m`` is given;
    0 = flat) and draw the Sentinel-1 orbit that sees it."""
    h, w = classes.shape
    geo = np.random.default_rng(int(rng.integers(2**31)))  # the layout stays what it was without relief
    relief = geo.uniform(*relief_range_m) if relief_m is None else float(relief_m)
    pixel_m = 10.0
    terrain = (C.make_terrain(w * pixel_m, h * pixel_m, geo, relief, cell_m=pixel_m)[:h, :w]
               if relief > 0 else None)
    return Landscape(classes, parcel, pixel_m, terrain, float(geo.uniform(*S1_INCIDENCE_DEG)),
                     float(geo.choice(S1_SENSOR_AZIMUTH_DEG) + geo.uniform(-5, 5)))


def make_forest_frontier(size: int, rng: np.random.Generator, relief_m: float | None = None) -> Landscape:
    """A ``size x size`` Amazon deforestation frontier at 10 m (MultiEarth sites): closed forest cut
    by unpaved roads (a main road on 80 % of sites, 0-2 side roads at right angles: the "fishbone"),
    lots along the roads cleared until the site's cleared share (uniform ``FRONTIER_CLEARED_SHARE``)
    is reached, each pasture, bare or crop (``FRONTIER_CLEARING_USE``); a stream on half of the
    sites; hills of ``FRONTIER_RELIEF_M`` unless ``relief_m`` is given. Forest is parcel 0, each
    lot a parcel of its own. The plan these figures come from: docs/synthetic_data.md."""
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    classes = np.full((h, w), FOREST, np.uint8)
    parcel = np.zeros((h, w), np.int64)
    roads = []  # (along-road coordinate, signed distance from the road), px
    if rng.random() < 0.8:
        a = rng.uniform(0, np.pi)
        x0, y0 = rng.uniform(0.2, 0.8, 2) * size
        along = (xx - x0) * np.cos(a) + (yy - y0) * np.sin(a)
        across = -(xx - x0) * np.sin(a) + (yy - y0) * np.cos(a)
        roads.append((along, across))
        on_road = along[np.abs(across) < 1]  # the main road's stretch inside the patch
        for _ in range(rng.integers(0, 3)):  # side roads leave it at right angles
            s = rng.uniform(on_road.min(), on_road.max())
            roads.append((across, along - s))
    lots = []  # (road, start, width, side, depth): masks are made only for the lots cleared
    for r, (along, _) in enumerate(roads):
        start = float(along.min())
        while start < along.max():
            width = rng.uniform(*FRONTIER_LOT_WIDTH_M) / 10.0
            for side in (-1.0, 1.0):
                lots.append((r, start, width, side, rng.uniform(*FRONTIER_LOT_DEPTH_M) / 10.0))
            start += width
    share = rng.uniform(*FRONTIER_CLEARED_SHARE)
    uses, use_p = zip(*FRONTIER_CLEARING_USE.items())
    for k in rng.permutation(len(lots)):
        if (classes != FOREST).mean() >= share:
            break
        r, start, width, side, depth = lots[k]
        along, across = roads[r]
        lot = ((along >= start) & (along < start + width) & (side * across > 0) & (side * across < depth)
               & (classes == FOREST))
        classes[lot] = rng.choice(uses, p=use_p)
        parcel[lot] = k + 1
    if rng.random() < 0.5:  # a stream, forest to its banks
        stream = _meander(xx, rng, half_width_px=(0.5, 2.0))
        classes[stream], parcel[stream] = WATER, len(lots) + 1
    for _, across in roads:  # unpaved: bare laterite, 10-20 m
        road = np.abs(across) < rng.uniform(0.5, 1.0)
        classes[road], parcel[road] = BARE, len(lots) + 2
    return _on_hills(classes, parcel, rng, FRONTIER_RELIEF_M, relief_m)


def terrain_backscatter_gain(land: Landscape) -> np.ndarray:
    """(H, W) float32 factor on sigma0 from the relief: foreshortening
    (:func:`sarfusion.synth.sar.foreshortening_gain`), 0 in radar shadow; all ones when flat."""
    from sarfusion.synth.sar import foreshortening_gain, slope_toward_sensor

    if land.terrain is None:
        return np.ones(land.classes.shape, np.float32)
    theta = np.deg2rad(land.incidence_deg)
    alpha = slope_toward_sensor(land.terrain, land.pixel_m, land.sensor_azimuth_deg)
    return np.where(theta - alpha >= np.pi / 2, np.float32(0), foreshortening_gain(alpha, theta))


def render_optical(land: Landscape, rng: np.random.Generator, season: float = 0.0) -> np.ndarray:
    """``(4, H, W)`` float32 reflectance B1-B4 of a clear scene; ``season`` in [0, 1] shifts crop
    greenness per parcel (so dates differ); the terrain is hill-shaded by a sun drawn for this date
    (with cast shadows); B1 is blurred to its 60 m resolution."""
    n_parcel = int(land.parcel.max()) + 1
    p_rng = np.random.default_rng(int(rng.integers(2**31)))
    gain = p_rng.uniform(0.8, 1.25, n_parcel)[land.parcel]
    phase = p_rng.uniform(0, 1, n_parcel)[land.parcel]
    refl = REFLECTANCE[land.classes].transpose(2, 0, 1).copy()
    crop = land.classes == CROP
    green_up = 0.5 + 0.5 * np.sin(2 * np.pi * (season + phase))  # 0 bare .. 1 full canopy
    bare_mix = REFLECTANCE[BARE][:, None] * (1 - green_up[crop]) + REFLECTANCE[CROP][:, None] * green_up[crop]
    refl[:, crop] = bare_mix
    texture = 1 + 0.08 * smooth_noise(land.classes.shape, 1.0, rng)
    refl *= gain[None] * texture[None]
    # drawn on flat scenes too, so that a date's later draws do not depend on the relief
    sun_azimuth, sun_elevation = rng.uniform(*S2_SUN_AZIMUTH_DEG), rng.uniform(*S2_SUN_ELEVATION_DEG)
    if land.terrain is not None:
        refl *= O.lambert_gain(land.terrain, land.pixel_m, O.sun_vector(sun_azimuth, sun_elevation))[None]
        shadow = O.cast_shadow(land.terrain, land.pixel_m, sun_azimuth, sun_elevation)
        refl[:, shadow] *= TERRAIN_SHADOW_GAIN[:, None]
    refl[0] = ndi.gaussian_filter(refl[0], 2.5)
    return np.clip(refl, 0.001, 1.0).astype(np.float32)


def speckle_db(sigma0_db: np.ndarray, looks: float, rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` sigma0 dB -> dB with unit-mean Gamma(looks) speckle applied in linear power
    (the SAR simulator's :func:`sarfusion.synth.sar.apply_speckle`)."""
    from sarfusion.synth.sar import apply_speckle, to_db

    power = 10 ** (np.asarray(sigma0_db, np.float32)[None] / 10)
    return to_db(apply_speckle(power, looks, rng))[0]


S1_NESZ_DB = (-25.0, -22.0)  # Sentinel-1 IW noise-equivalent sigma0: constant over one 2.5 km patch
S1_PSF_SIGMA_PX = 0.85       # ~20 m resolution on 10 m pixels (GRD): neighbouring pixels correlate


def render_sar(land: Landscape, rng: np.random.Generator, looks: float = 4.4) -> np.ndarray:
    """``(2, H, W)`` float32 sigma0 dB (VV, VH) with per-parcel offsets, the relief's
    foreshortening and radar shadow, the noise floor, and speckle of ``looks`` looks per pixel
    correlated by the ~20 m resolution (the SAR simulator's :func:`sarfusion.synth.sar.speckle_and_psf`)."""
    from sarfusion.synth.sar import speckle_and_psf, to_db

    n_parcel = int(land.parcel.max()) + 1
    offset = rng.normal(0, 1.0, n_parcel)[land.parcel].astype(np.float32)
    db = SIGMA0_DB[land.classes].transpose(2, 0, 1) + offset[None]
    db += 0.8 * smooth_noise(land.classes.shape, 2.0, rng)[None]
    floor = np.float32(10 ** (rng.uniform(*S1_NESZ_DB) / 10))
    relief = terrain_backscatter_gain(land)
    return np.stack([to_db(speckle_and_psf((10 ** (b / 10) * relief).astype(np.float32) + floor, 0.0, looks, rng,
                                           S1_PSF_SIGMA_PX)) for b in db])


def make_clouds(size: int, rng: np.random.Generator, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """Cloud opacity ``(H, W)`` float32 in [0, 1] (cumulus blobs with soft edges) covering about
    ``coverage`` of the scene, and the shadow strength: the opacity displaced by the sun-cloud
    geometry (20-50 px, one direction per scene)."""
    if coverage <= 0:
        z = np.zeros((size, size), np.float32)
        return z, z
    field = smooth_noise((size, size), size / 25, rng) + 0.4 * smooth_noise((size, size), size / 80, rng)
    thr = np.quantile(field, 1 - coverage)
    opacity = np.clip((field - thr) / 0.5, 0, 1).astype(np.float32)
    shift = rng.uniform(20, 50) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
    shadow = ndi.shift(opacity, shift, order=1, mode="constant")
    return opacity, np.clip(shadow, 0, 1).astype(np.float32)


def apply_clouds(refl: np.ndarray, opacity: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """Darken shadowed pixels (to ~30 %) then blend clouds over ``refl`` ``(4, H, W)``."""
    out = refl * (1 - 0.7 * shadow)[None]
    return (out * (1 - opacity)[None] + CLOUD_REFLECTANCE[:, None, None] * opacity[None]).astype(np.float32)


# ----------------------------------------------------------------------------- writers

SEN12_SEASON = "ROIs1158_spring"
SAR_PNG_DB_GAIN = 3.0  # 8-bit SAR PNG = 255 + 3 * dB, clipped (the real samples sit at 170-255)


def sar_db_to_png(vv_db: np.ndarray) -> np.ndarray:
    """VV dB -> 8-bit grey as the SEN1-2 PNGs (0 dB -> 255, -85 dB -> 0)."""
    return np.clip(np.round(255 + SAR_PNG_DB_GAIN * vv_db), 0, 255).astype(np.uint8)


def reflectance_to_png(rgb: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` reflectance -> uint8 with 0.3 reflectance at 255 (see clouds.PNG_FULL_SCALE)."""
    from sarfusion.clouds import PNG_FULL_SCALE

    return np.clip(np.round(rgb / PNG_FULL_SCALE * 255), 0, 255).astype(np.uint8)


def write_sen12(out: str | Path, pairs: int, seed: int = 0, size: int = 256, cloudy_share: float = 0.2,
                patches_per_scene: int = 4) -> dict:
    """Write ``pairs`` SEN1-2 patch pairs (``<season>/s1_<scene>/..._p<n>.png`` + ``s2_``).

    About ``cloudy_share`` of the optical patches get clouds (5-40 % cover) and shadows. Returns
    and writes ``sen12_truth.json``: ``{patch key: true cloud fraction}``.
    """
    from sarfusion.datasets.sen12 import write_png

    out = Path(out)
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(pairs):
        scene, patch = 100 + i // patches_per_scene, i
        land = make_landscape(size, rng)
        refl = render_optical(land, rng, season=rng.random())
        cover = rng.uniform(0.05, 0.4) if rng.random() < cloudy_share else 0.0
        opacity, shadow = make_clouds(size, rng, cover)
        refl = apply_clouds(refl, opacity, shadow)
        sar = render_sar(land, rng)
        s1 = out / SEN12_SEASON / f"s1_{scene}" / f"{SEN12_SEASON}_s1_{scene}_p{patch}.png"
        s2 = out / SEN12_SEASON / f"s2_{scene}" / f"{SEN12_SEASON}_s2_{scene}_p{patch}.png"
        write_png(s1, sar_db_to_png(sar[0])[None])
        write_png(s2, reflectance_to_png(refl[[3, 2, 1]]))
        truth[f"{SEN12_SEASON}_{scene}_p{patch}"] = float(((opacity > 0.1) | (shadow > 0.1)).mean())
    (out / "sen12_truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def write_multiearth(out: str | Path, seed: int = 0, sites: int = 2, sar_dates: int = 3, optical_dates: int = 5,
                     size: int = 256) -> dict:
    """Write MultiEarth-layout tiffs: per site ``sar_dates`` Sentinel-1 VV/VH (float32 dB) and
    ``optical_dates`` Sentinel-2 B1-B4 + QA60 (uint16) dates, georeferenced in EPSG:4326 at the
    site's lon/lat (10 m pixels).

    Some optical dates are cloudy; their QA60 has bit 10 set under opaque clouds for about half
    of them and is wrongly all zero for the rest (as on the real sample). Returns and writes
    ``multiearth_truth.json``: ``{scene name: {"cloud_fraction", "qa60_set"}}``.
    """
    from sarfusion.io.raster import write_raster

    out = Path(out)
    rng = np.random.default_rng(seed)
    deg = 10.0 / 111_320.0
    truth = {}
    for s in range(sites):
        lon, lat = rng.uniform(-70, -50), rng.uniform(-12, 2)
        site = f"{lon:.2f}_{lat:.2f}"
        gt = (lon, deg, 0.0, lat, 0.0, -deg)
        land = make_forest_frontier(size, rng)
        days = np.sort(rng.choice(np.arange(0, 365), size=sar_dates + optical_dates, replace=False))
        for k, day in enumerate(days[:sar_dates]):
            date = (np.datetime64("2019-01-01") + int(day)).astype(str).replace("-", "_")
            sar = render_sar(land, rng)
            for pol, band in zip(("VV", "VH"), sar):
                write_raster(out / "sent1" / f"Sentinel1_{pol}_{site}_{date}.tiff", band, gt, 4326)
        cloudy = rng.permutation(optical_dates) < max(1, optical_dates // 2)
        for k, day in enumerate(days[sar_dates:]):
            date = (np.datetime64("2019-01-01") + int(day)).astype(str).replace("-", "_")
            refl = render_optical(land, rng, season=day / 365)
            cover = rng.uniform(0.05, 0.35) if cloudy[k] else 0.0
            opacity, shadow = make_clouds(size, rng, cover)
            refl = apply_clouds(refl, opacity, shadow)
            qa_set = bool(cloudy[k] and rng.random() < 0.5)
            qa = np.zeros((size, size), np.uint16)
            if qa_set:  # QA60 is a 60 m product: blocky
                block = ndi.zoom(opacity[::6, ::6] > 0.5, 6, order=0)[:size, :size]
                qa[: block.shape[0], : block.shape[1]][block] = QA60_OPAQUE
            dn = np.clip(np.round(refl * 10000), 1, 65535).astype(np.uint16)
            for name, band in zip(("B1", "B2", "B3", "B4"), dn):
                write_raster(out / "sent2" / f"Sentinel2_{name}_{site}_{date}.tiff", band, gt, 4326)
            write_raster(out / "sent2" / f"Sentinel2_QA60_{site}_{date}.tiff", qa, gt, 4326)
            truth[f"Sentinel2_{site}_{date}"] = {
                "cloud_fraction": float(((opacity > 0.1) | (shadow > 0.1)).mean()), "qa60_set": qa_set}
    out.mkdir(parents=True, exist_ok=True)
    (out / "multiearth_truth.json").write_text(json.dumps(truth, indent=1))
    return truth


# ----------------------------------------------------------------------------- CLI

def _sen12_cmd(args) -> int:
    from sarfusion.cli import print_json

    truth = write_sen12(args.out, args.pairs, seed=args.seed, size=args.size)
    result = {"out": str(args.out), "pairs": len(truth), "cloudy": sum(v > 0 for v in truth.values())}
    print_json(result) if args.json else print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0


def _multiearth_cmd(args) -> int:
    from sarfusion.cli import print_json

    truth = write_multiearth(args.out, seed=args.seed, sites=args.sites, sar_dates=args.sar_dates,
                             optical_dates=args.optical_dates, size=args.size)
    result = {"out": str(args.out), "optical_scenes": len(truth),
              "cloudy": sum(t["cloud_fraction"] > 0 for t in truth.values()),
              "qa60_set": sum(t["qa60_set"] for t in truth.values())}
    print_json(result) if args.json else print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0


def register_sen12(sub) -> None:
    import argparse

    from sarfusion.cli import add_json_flag

    p = sub.add_parser(
        "sen12", help="synthetic SEN1-2 patch pairs (8-bit VV PNG + RGB PNG), some cloudy",
        description=("Write OUT/ROIs1158_spring/s1_<scene>/ROIs1158_spring_s1_<scene>_p<n>.png (8-bit grey "
                     "VV, 255 + 3 dB) and the matching s2_ RGB PNGs (0.3 reflectance = 255) of a 10 m rural "
                     "landscape (fields, forest, river, roads); ~20 %% of optical patches carry clouds with "
                     "displaced shadows. OUT/sen12_truth.json holds each patch's true cloud fraction."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output root folder")
    p.add_argument("--pairs", type=int, required=True, help="number of patch pairs (4 per scene)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--size", type=int, default=256, help="patch size in pixels")
    add_json_flag(p)
    p.set_defaults(func=_sen12_cmd)


def register_multiearth(sub) -> None:
    import argparse

    from sarfusion.cli import add_json_flag

    p = sub.add_parser(
        "multiearth", help="synthetic MultiEarth sites (Sentinel-1 VV/VH dB, Sentinel-2 B1-B4 + QA60 tiffs)",
        description=("Write OUT/sent1/Sentinel1_{VV,VH}_<lon>_<lat>_<date>.tiff (float32 dB) and "
                     "OUT/sent2/Sentinel2_{B1..B4,QA60}_<lon>_<lat>_<date>.tiff (uint16, DN = reflectance x "
                     "1e4), EPSG:4326, several dates per site, SAR and optical on different dates. A site is an "
                     "Amazon deforestation frontier: closed forest with pasture, bare and crop clearings "
                     "(0-30 %%) along unpaved roads, a stream on half of the sites, 10-80 m relief. About half "
                     "the optical dates are cloudy (blobs + displaced shadows); QA60 flags only some of them. "
                     "OUT/multiearth_truth.json holds the true cloud fraction and QA60 state per date."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output root folder")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--sites", type=int, default=2, help="number of sites")
    p.add_argument("--sar-dates", type=int, default=3, help="Sentinel-1 dates per site")
    p.add_argument("--optical-dates", type=int, default=5, help="Sentinel-2 dates per site")
    p.add_argument("--size", type=int, default=256, help="image size in pixels (10 m)")
    add_json_flag(p)
    p.set_defaults(func=_multiearth_cmd)


SUBCOMMANDS = [("sen12", register_sen12), ("multiearth", register_multiearth)]

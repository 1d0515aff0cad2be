"""Optical (pan-sharpened RGB) rendering of a rasterised city: materials, shading, cast shadows.

Colours are typical of a late-summer Maxar scene over Rotterdam (the real SN6 PS-RGB tile in
``real_samples/sn6`` has valid-area means ~94/97/90 and std ~40). Roofs are lit by a sun at
``sun_azimuth_deg`` (clockwise from north) and ``sun_elevation_deg``; buildings and trees cast
shadows along the sun direction (a running-maximum line-of-sight test on a rotated height map);
terrain is hill-shaded. Cars are drawn where the plan parks them. The texture and the sensor noise
are the optical's own position-keyed fields (its own salts): the SAR simulator shares the scene
(materials, heights, moisture, objects) with it, never a noise field.
"""
from __future__ import annotations

import cv2
import numpy as np

from sarfusion.synth import city as C

# Base RGB per material (uint8 scale) and the relative strength of its texture.
MATERIAL_RGB = {
    C.GRASS: (92, 118, 62),
    C.TREE: (52, 76, 44),
    C.SOIL: (138, 118, 92),
    C.WATER: (40, 54, 58),
    C.ROAD: (84, 86, 88),
    C.PAVED: (142, 138, 128),
    C.ROOF: (128, 120, 116),  # replaced per building by its roof colour
}
MATERIAL_TEXTURE = {C.GRASS: 0.16, C.TREE: 0.30, C.SOIL: 0.12, C.WATER: 0.05, C.ROAD: 0.06,
                    C.PAVED: 0.08, C.ROOF: 0.07}
# moist ground is darker; lawns that get water are greener (multiplicative RGB at wetness 1)
WET_RGB = {C.SOIL: (0.72, 0.74, 0.78), C.GRASS: (0.8, 1.05, 0.85)}
CAR_RGB = np.array([[200, 200, 205], [30, 32, 36], [120, 124, 130], [150, 30, 30], [40, 60, 120], [225, 225, 220]],
                   np.float32)
DEFAULT_SUN_AZIMUTH_DEG = 155.0
DEFAULT_SUN_ELEVATION_DEG = 48.0
HAZE_RGB = np.array([12.0, 12.0, 22.0], np.float32)
SHADOW_GAIN = np.array([0.38, 0.42, 0.52], np.float32)  # shadows are dim and bluish (sky light)
_SALT_LARGE, _SALT_MID, _SALT_FINE, _SALT_SENSOR = 101, 102, 103, 104


def cast_shadow(height: np.ndarray, pixel_size: float, sun_azimuth_deg: float, sun_elevation_deg: float) -> np.ndarray:
    """Boolean (rows, cols): True where the ground or roof is in the shadow of something taller.

    The height map is rotated so the sun shines from the top, then a point is shadowed when a
    point closer to the sun rises above its sun ray (running maximum of h + distance * tan(elev)).
    """
    rows, cols = height.shape
    diag = int(np.ceil(np.hypot(rows, cols))) + 2
    center = (cols / 2.0, rows / 2.0)
    m = cv2.getRotationMatrix2D(center, sun_azimuth_deg, 1.0)
    m[0, 2] += (diag - cols) / 2.0
    m[1, 2] += (diag - rows) / 2.0
    rotated = cv2.warpAffine(height, m, (diag, diag), flags=cv2.INTER_NEAREST, borderValue=0.0)
    rise = pixel_size * np.tan(np.deg2rad(sun_elevation_deg))
    q = rotated + (np.arange(diag, dtype=np.float32) * np.float32(rise))[:, None]
    shadow = (np.maximum.accumulate(q, axis=0) - q > 0.3).astype(np.uint8)
    back = cv2.warpAffine(shadow, m, (cols, rows), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    return back.astype(bool)


def sun_vector(sun_azimuth_deg: float, sun_elevation_deg: float) -> np.ndarray:
    """Unit vector (east, north, up) toward a sun at the azimuth (clockwise from north) and elevation."""
    az, el = np.deg2rad(sun_azimuth_deg), np.deg2rad(sun_elevation_deg)
    return np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)], np.float32)


def lambert_gain(height: np.ndarray, ps: float, sun: np.ndarray) -> np.ndarray:
    """(rows, cols) float32 brightness of a surface z = ``height`` (m, rows running south, ``ps`` m
    pixels) relative to flat ground under the unit ``sun`` vector (east, north, up), 0.25..1.6."""
    gy, gx = np.gradient(height, ps)
    norm = np.sqrt(gx * gx + gy * gy + 1)
    return np.clip((-gx * sun[0] + gy * sun[1] + sun[2]) / norm / sun[2], 0.25, 1.6).astype(np.float32)


def _car_index(plan: C.CityPlan, raster: C.CityRaster) -> np.ndarray:
    """(rows, cols) uint8: 1 + the CAR_RGB colour index where a parked car (4.4 x 1.8 m) is, else 0."""
    idx = np.zeros(raster.shape, np.uint8)
    px, obj = C.object_pixels(plan, raster, (C.CAR,))
    if not len(px):
        return idx
    ps = raster.pixel_size
    a = obj[:, 5] - raster.angle
    along = np.column_stack([np.cos(a), np.sin(a)]) * (2.2 / ps)
    across = np.column_stack([-np.sin(a), np.cos(a)]) * (0.9 / ps)
    corners = np.stack([px - along - across, px + along - across, px + along + across, px - along + across], axis=1)
    fixed = np.round((corners - 0.5) * 16).astype(np.int32)
    colour = 1 + (np.abs(obj[:, 0] * 7.31 + obj[:, 1] * 3.17).astype(np.int64)) % len(CAR_RGB)
    for poly, c in zip(fixed, colour):
        cv2.fillPoly(idx, [poly], int(c), lineType=cv2.LINE_8, shift=4)
    return idx


def render_optical(raster: C.CityRaster, plan: C.CityPlan,
                   sun_azimuth_deg: float = DEFAULT_SUN_AZIMUTH_DEG,
                   sun_elevation_deg: float = DEFAULT_SUN_ELEVATION_DEG) -> np.ndarray:
    """(3, rows, cols) uint8 RGB of an axis-aligned city window; valid pixels are never all zero (0 = nodata)."""
    classes, height = raster.classes, raster.height
    on_roof = (raster.building_id > 0) & (classes == C.ROOF)
    roof_id = np.where(on_roof, raster.building_id, 0)
    cars = _car_index(plan, raster)
    tex_lut = np.zeros(C.N_CLASSES, np.float32)
    for k, v in MATERIAL_TEXTURE.items():
        tex_lut[k] = v
    large = C.texture(raster, _SALT_LARGE, 30.0)
    texture = (0.45 * C.texture(raster, _SALT_MID, 3.0) + 0.35 * large
               + 0.2 * C.texture(raster, _SALT_FINE))
    gain = np.exp(tex_lut[classes] * texture * np.float32(1.6))
    del texture
    # sun shading of sloped surfaces (pitched roofs, crowns, hills): Lambert relative to flat ground
    ps = raster.pixel_size
    sun = sun_vector(sun_azimuth_deg, sun_elevation_deg)
    raised = height > 0.5
    if raised.any():
        gain = np.where(raised, gain * lambert_gain(height, ps, sun), gain)
    surface = height
    if raster.terrain is not None:
        gain *= lambert_gain(raster.terrain, ps, sun)
        surface = height + raster.terrain
    shadow = cast_shadow(surface, ps, sun_azimuth_deg, sun_elevation_deg)
    veg = ((classes == C.GRASS) | (classes == C.TREE)).astype(np.float32)
    noise = C.texture(raster, _SALT_SENSOR) * np.float32(2.0)
    out = np.empty((3,) + raster.shape, np.uint8)
    roof_rgb = np.concatenate([np.zeros((1, 3), np.uint8), plan.buildings.roof_rgb]).astype(np.float32)
    for c in range(3):
        lut = np.zeros(C.N_CLASSES, np.float32)
        wet = np.zeros(C.N_CLASSES, np.float32)
        for k, v in MATERIAL_RGB.items():
            lut[k] = v[c]
        for k, v in WET_RGB.items():
            wet[k] = v[c] - 1
        chan = np.where(on_roof, roof_rgb[roof_id, c], lut[classes])
        if cars.any():
            chan = np.where(cars > 0, np.concatenate([[0], CAR_RGB[:, c]]).astype(np.float32)[cars], chan)
        chan *= 1 + raster.wetness * wet[classes]   # moist soil darker, watered lawns greener
        if c == 0:  # lawns and crowns vary in hue too (dry patches are yellower)
            chan += veg * 14.0 * large
        chan *= gain
        chan[shadow] *= SHADOW_GAIN[c]
        chan = chan * np.float32(0.95) + HAZE_RGB[c]                        # atmospheric path radiance
        chan = cv2.GaussianBlur(chan, (0, 0), 0.6)                          # optics + pan-sharpening
        chan += noise                                                       # sensor noise
        out[c] = np.clip(np.rint(chan), 1, 255).astype(np.uint8)
    return out

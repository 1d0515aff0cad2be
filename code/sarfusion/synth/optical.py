"""Optical (pan-sharpened RGB) rendering of a rasterised city: materials, shading, cast shadows.

Colours are typical of a late-summer Maxar scene over Rotterdam (the real SN6 PS-RGB tile in
``real_samples/sn6`` has valid-area means ~94/97/90 and std ~40). Roofs are lit by a sun at
``sun_azimuth_deg`` (clockwise from north) and ``sun_elevation_deg``; buildings and trees cast
shadows along the sun direction (a running-maximum line-of-sight test on a rotated height map).
All texture comes from the city raster's position-keyed noise, so overlapping windows agree.
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
DEFAULT_SUN_AZIMUTH_DEG = 155.0
DEFAULT_SUN_ELEVATION_DEG = 48.0
HAZE_RGB = np.array([12.0, 12.0, 22.0], np.float32)
SHADOW_GAIN = np.array([0.38, 0.42, 0.52], np.float32)  # shadows are dim and bluish (sky light)


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
    rotated = cv2.warpAffine(height, m, (diag, diag), flags=cv2.INTER_LINEAR, borderValue=0.0)
    rise = pixel_size * np.tan(np.deg2rad(sun_elevation_deg))
    q = rotated + (np.arange(diag, dtype=np.float32) * np.float32(rise))[:, None]
    shadow = (np.maximum.accumulate(q, axis=0) - q > 0.3).astype(np.uint8)
    back = cv2.warpAffine(shadow, m, (cols, rows), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    return back.astype(bool)


def render_optical(raster: C.CityRaster, roof_rgb: np.ndarray,
                   sun_azimuth_deg: float = DEFAULT_SUN_AZIMUTH_DEG,
                   sun_elevation_deg: float = DEFAULT_SUN_ELEVATION_DEG) -> np.ndarray:
    """(3, rows, cols) uint8 RGB of a city window; valid pixels are never all zero (0 = nodata).

    ``roof_rgb``: (n_buildings, 3) uint8 roof colours of the plan's buildings.
    """
    classes, height = raster.classes, raster.height
    lut = np.zeros((C.N_CLASSES, 3), np.float32)
    for k, v in MATERIAL_RGB.items():
        lut[k] = v
    rgb = lut[classes]                                                  # (rows, cols, 3)
    on_roof = raster.building_id > 0
    if on_roof.any():
        rgb[on_roof] = roof_rgb[raster.building_id[on_roof] - 1].astype(np.float32)
    tex_lut = np.zeros(C.N_CLASSES, np.float32)
    for k, v in MATERIAL_TEXTURE.items():
        tex_lut[k] = v
    strength = tex_lut[classes]
    texture = (0.45 * raster.noise_mid + 0.35 * raster.noise_large + 0.2 * np.clip(raster.noise_fine, -2, 2))
    gain = np.exp(strength * texture * 1.6)
    # lawns and crowns vary in hue too (dry patches are yellower)
    veg = (classes == C.GRASS) | (classes == C.TREE)
    rgb[..., 0] += veg * 14.0 * raster.noise_large

    # sun shading of sloped surfaces (pitched roofs, crowns): Lambert relative to flat ground
    ps = raster.pixel_size
    gy, gx = np.gradient(height, ps)
    az, el = np.deg2rad(sun_azimuth_deg), np.deg2rad(sun_elevation_deg)
    sun = np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)], np.float32)  # east, north, up
    # normal of z = h(x, y) with x east (cols) and y north (= -rows): (-dh/dx, +dh/drow, 1)
    norm = np.sqrt(gx * gx + gy * gy + 1)
    lambert = np.clip((-gx * sun[0] + gy * sun[1] + sun[2]) / norm / sun[2], 0.25, 1.6)
    shade = np.where(height > 0.5, lambert, 1.0).astype(np.float32)

    img = rgb * (gain * shade)[..., None]
    shadow = cast_shadow(height, ps, sun_azimuth_deg, sun_elevation_deg)
    img[shadow] *= SHADOW_GAIN
    img = img * np.float32(0.95) + HAZE_RGB                               # atmospheric path radiance
    img = cv2.GaussianBlur(img, (0, 0), 0.6)                             # optics + pan-sharpening
    img += (raster.noise_fine[..., None] * np.float32(2.0))                # sensor noise
    out = np.clip(np.rint(img), 1, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(2, 0, 1))

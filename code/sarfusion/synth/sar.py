"""Side-looking SAR simulation of a rasterised city: layover, double bounce, radar shadow, speckle.

Geometry (ground-range image on the city's own grid, i.e. terrain-corrected but not
building-corrected, like SpaceNet 6 SAR-Intensity): a scatterer at height ``h`` appears displaced
toward the sensor by ``h / tan(incidence)`` metres. A ground point is in radar shadow when a
taller object between it and the sensor rises above its line of sight. The wall facing the sensor
is spread over the layover zone and the wall-ground dihedral returns a bright line at the wall's
foot (its true footprint edge). Everything is computed with the sensor "at the top" (north) and
the arrays rotated for the other look directions.

Radiometry: per-material backscatter (sigma0, dB) for HH, HV, VV; VH = HV (reciprocity). Smooth
surfaces (water, asphalt) are dark, vegetation is bright in cross-pol, slopes facing the sensor
brighten. A Gaussian point-spread function blurs the reflectivity, then multiplicative Gamma
speckle with ``looks`` looks is applied per channel (HV and VH share it, up to a small jitter).
"""
from __future__ import annotations

import cv2
import numpy as np

from sarfusion.synth import city as C

BANDS = ("HH", "HV", "VH", "VV")
DEFAULT_INCIDENCE_DEG = 35.0
NOISE_FLOOR_DB = -27.0  # noise-equivalent sigma0: what radar shadow and calm water sink to

# sigma0 in dB at ~35 deg incidence (HH, HV, VV) per material: literature-typical X-band values.
MATERIAL_SIGMA0_DB = {
    C.GRASS: (-12.0, -17.0, -11.0),
    C.TREE: (-8.5, -12.0, -8.5),
    C.SOIL: (-13.0, -19.0, -11.5),
    C.WATER: (-25.0, -31.0, -22.0),
    C.ROAD: (-19.0, -25.0, -17.5),
    C.PAVED: (-15.0, -21.0, -13.5),
    C.ROOF: (-10.0, -15.5, -9.5),
}
WALL_SIGMA_DB = (-7.0, -12.0, -8.0)       # per image pixel of a facade in layover
TREE_WALL_SIGMA_DB = (-11.0, -14.0, -11.0)  # the sensor-facing side of a crown: volume scattering
# Crowns are semi-transparent: their scattering centre sits lower and they shadow only partly.
TREE_GEOMETRIC_HEIGHT = 0.6
CANOPY_TRANSMISSION = 0.3
DOUBLE_BOUNCE_DB = (11.0, -2.0, 7.0)      # wall-ground dihedral facing the sensor squarely (HH > VV)
# spread of each material's sigma0 at field scale (dB): lawns and lots vary, asphalt less
MATERIAL_SPREAD_DB = {C.GRASS: 2.0, C.TREE: 1.5, C.SOIL: 2.5, C.WATER: 1.5, C.ROAD: 1.0,
                      C.PAVED: 1.5, C.ROOF: 2.5}

# Orientation -> number of np.rot90 turns that bring the sensor side to the top of the array.
_LOOK_TURNS = {"N": 0, "E": 1, "S": 2, "W": 3}


def look_from_orientation(orientation: int) -> str:
    """SpaceNet 6 ``SAR_orientations.txt`` value -> sensor side: 0 = from the north, 1 = from the south."""
    if orientation not in (0, 1):
        raise ValueError(f"SN6 orientation must be 0 or 1, got {orientation}")
    return "N" if orientation == 0 else "S"


def layover_px(height_m: np.ndarray | float, pixel_size: float,
               incidence_deg: float = DEFAULT_INCIDENCE_DEG) -> np.ndarray | float:
    """Ground displacement toward the sensor (pixels) of a point ``height_m`` above ground."""
    return np.asarray(height_m) / np.tan(np.deg2rad(incidence_deg)) / pixel_size


def layover_vector(look: str) -> tuple[int, int]:
    """(d_row, d_col) unit step toward the sensor for a look direction ('N', 'E', 'S', 'W')."""
    return {"N": (-1, 0), "S": (1, 0), "E": (0, 1), "W": (0, -1)}[look]


def _db(v: np.ndarray | float) -> np.ndarray:
    """dB -> linear power, float32 (exp is cheaper than a float power)."""
    v = np.asarray(v, np.float32)
    return np.exp(v * np.float32(np.log(10.0) / 10.0)).astype(np.float32, copy=False)


def _table(values: dict, classes: np.ndarray, col: int) -> np.ndarray:
    lut = np.zeros(C.N_CLASSES, np.float32)
    for k, v in values.items():
        lut[k] = v[col] if isinstance(v, tuple) else v
    return lut[classes]


def _splat(rows_f: np.ndarray, cols: np.ndarray, weights: list[np.ndarray], shape: tuple[int, int]) -> list[np.ndarray]:
    """Accumulate ``weights`` at fractional rows (linear split between the two nearest rows).

    One ``bincount`` serves all bands and both rows of the split (indices offset per band).
    """
    h, w = shape
    r0 = np.floor(rows_f).astype(np.int64)
    f = (rows_f - r0).astype(np.float32)
    rr = np.concatenate([r0, r0 + 1])
    ok = (rr >= 0) & (rr < h)
    idx = (rr * w + np.concatenate([cols, cols]))[ok]
    split = np.concatenate([1 - f, f])[ok]
    n = h * w
    all_idx = np.concatenate([idx + b * n for b in range(len(weights))])
    all_w = np.concatenate([np.concatenate([wt, wt])[ok] * split for wt in weights])
    acc = np.bincount(all_idx, weights=all_w, minlength=n * len(weights)).astype(np.float32)
    return [acc[b * n:(b + 1) * n].reshape(h, w) for b in range(len(weights))]


def _reflectivity_north(classes: np.ndarray, height: np.ndarray, aspect_deg: np.ndarray,
                        texture: np.ndarray, fine: np.ndarray, pixel_size: float,
                        incidence_deg: float) -> np.ndarray:
    """Noise-free linear reflectivity (3, rows, cols) = HH, HV, VV with the sensor at row 0 side.

    ``aspect_deg``: per pixel, the angle (0-45 deg) between a building's walls and the azimuth
    (column) axis, used for the dihedral strength; ``texture``: smooth field-scale noise ~[-1, 1];
    ``fine``: per-pixel noise ~N(0, 1) (roof furniture, facade details).
    """
    rows, cols = classes.shape
    ps = float(pixel_size)
    theta = np.deg2rad(incidence_deg)
    cot = 1.0 / np.tan(theta)
    rise_per_row = ps * cot  # metres a line of sight climbs per pixel toward the sensor

    # --- visibility (radar shadow): visible iff h + row*rise >= running max over closer rows
    # Tree crowns only attenuate what lies behind them (two-way loss through foliage).
    row_rise = (np.arange(rows, dtype=np.float32) * np.float32(rise_per_row))[:, None]
    is_tree = classes == C.TREE
    q_solid = np.where(is_tree, np.float32(0), height) + row_rise
    np.maximum.accumulate(q_solid, axis=0, out=q_solid)
    q = height + row_rise
    visible = q >= np.maximum(q_solid, q) - 1e-3  # a crown is visible unless a building hides it
    behind_crown = q < np.maximum.accumulate(q, axis=0) - 1e-3
    del q

    # --- local incidence on slopes along range (pitched roofs, crowns): facing slopes brighten
    elevated = height > 0
    er, ec = np.nonzero(elevated & visible)
    slope = np.zeros(len(er), np.float32)
    up, down = np.clip(er + 1, 0, rows - 1), np.clip(er - 1, 0, rows - 1)
    slope[:] = (height[up, ec] - height[down, ec]) / (2 * ps)
    local = np.float32(theta) - np.arctan(slope)  # a slope rising away from the sensor faces it
    facing = np.clip(np.cos(local) / np.float32(np.cos(theta)), 0.05, None) ** 3
    # near-specular return of roof planes tilted toward the sensor (Dutch pitched roofs glare)
    facing += (classes[er, ec] == C.ROOF) * 12.0 * np.exp(-(np.rad2deg(local) / 7.0) ** 2)

    roof = classes == C.ROOF
    variation_db = _table(MATERIAL_SPREAD_DB, classes, 0) * texture
    variation_db[roof] += 1.2 * np.clip(fine[roof], -2, 3)
    gain = np.where(behind_crown, np.float32(CANOPY_TRANSMISSION), np.float32(1.0))
    gain[~visible] = 0
    ground = visible & ~elevated
    elem_rows = er.astype(np.float32) - height[er, ec] * np.float32(cot / ps)
    # the ground under a crown still scatters, through the foliage, at its true position
    gr, gc = np.nonzero(is_tree & (row_rise >= q_solid - 1e-3))
    surface = []
    lifted = []
    for b in range(3):
        sigma = _db(_table(MATERIAL_SIGMA0_DB, classes, b) + variation_db)
        sigma *= gain
        lifted.append(sigma[er, ec] * facing)
        flat = np.where(ground, sigma, np.float32(0))
        flat[gr, gc] += _db(MATERIAL_SIGMA0_DB[C.GRASS][b] + variation_db[gr, gc]) * np.float32(CANOPY_TRANSMISSION)
        surface.append(flat)
    # elevated scatterers (roofs, crowns) land closer to the sensor: layover
    for b, acc in enumerate(_splat(elem_rows, ec.astype(np.int64), lifted, (rows, cols))):
        surface[b] += acc
    qmax = q_solid  # walls are hidden only by solid objects

    # --- sensor-facing walls (steps up in height going away from the sensor)
    prev = np.zeros_like(height)
    prev[1:] = height[:-1]
    prev_qmax = np.zeros_like(qmax)
    prev_qmax[1:] = qmax[:-1]
    lo = np.maximum(prev, prev_qmax - row_rise)  # lower part of the wall hidden by closer objects
    step = (height - lo) > 0.5
    step[0] = False
    wr, wc = np.nonzero(step)
    wall_out = [np.zeros((rows, cols), np.float32) for _ in range(3)]
    if len(wr):
        top = height[wr, wc]
        bottom = lo[wr, wc]
        r_top = wr - top * cot / ps
        r_bot = wr - bottom * cot / ps
        n = np.maximum(1, np.ceil(r_bot - r_top).astype(np.int64))
        rep = np.repeat(np.arange(len(wr)), n)
        offs = np.arange(rep.size) - np.repeat(np.cumsum(n) - n, n)
        elem = r_top[rep] + offs + 0.5
        is_tree = classes[wr, wc] == C.TREE
        facade = np.clip(fine[wr, wc], -2, 3)[rep] * 1.5  # windows, balconies
        ws = []
        for b in range(3):
            base = np.where(is_tree, TREE_WALL_SIGMA_DB[b], WALL_SIGMA_DB[b]).astype(np.float32)
            ws.append(_db(base[rep] + facade))
        wall_out = _splat(elem, wc[rep].astype(np.int64), ws, (rows, cols))

    # --- double bounce at the foot of building walls whose ground in front is visible
    foot = step & (classes == C.ROOF) & (prev < 0.5)
    foot[1:] &= visible[:-1]
    dr, dc = np.nonzero(foot)
    db_out = np.zeros((3, rows, cols), np.float32)
    if len(dr):
        phi = aspect_deg[dr, dc]
        wall_h = np.minimum(height[dr, dc], 20.0)
        copol_gain = (0.15 + 0.85 * np.exp(-(phi / 12.0) ** 2)) * np.sqrt(wall_h / 10.0)
        cross_gain = (0.1 + np.sin(np.deg2rad(2 * phi)) ** 2) * np.sqrt(wall_h / 10.0)
        for b, gain in ((0, copol_gain), (1, cross_gain), (2, copol_gain)):
            np.add.at(db_out[b], (dr, dc), _db(DOUBLE_BOUNCE_DB[b]) * gain.astype(np.float32))

    refl = np.stack(surface) + np.stack(wall_out) + db_out + _db(NOISE_FLOOR_DB)
    return refl.astype(np.float32)


def building_aspect_deg(raster: C.CityRaster, angles_rad: np.ndarray) -> np.ndarray:
    """Per pixel, the angle (0-45 deg) between the walls of the building there and the image axes.

    It does not depend on which of the four look directions is used, so it is computed once.
    """
    aspect = np.zeros(raster.shape, np.float32)
    on = raster.building_id > 0
    if on.any():
        deg = np.rad2deg(angles_rad.astype(np.float64)) % 90.0
        deg = np.minimum(deg, 90.0 - deg)
        aspect[on] = deg[raster.building_id[on] - 1]
    return aspect


def simulate_reflectivity(raster: C.CityRaster, building_angles_rad: np.ndarray, look: str = "N",
                          incidence_deg: float = DEFAULT_INCIDENCE_DEG, psf_sigma_px: float = 0.7) -> np.ndarray:
    """Noise-free SAR reflectivity of a city window seen from ``look`` ('N', 'E', 'S', 'W').

    Returns (4, rows, cols) float32 linear power HH, HV, VH, VV (VH == HV), on the window's own
    ground grid. Scatterers within ``max height / tan(incidence)`` of the window edge on the sensor
    side may come from outside it: render with a margin and crop.
    """
    if look not in _LOOK_TURNS:
        raise ValueError(f"look must be one of {sorted(_LOOK_TURNS)}, got {look!r}")
    k = _LOOK_TURNS[look]
    aspect = building_aspect_deg(raster, building_angles_rad)
    height = np.where(raster.classes == C.TREE, raster.height * np.float32(TREE_GEOMETRIC_HEIGHT),
                      raster.height).astype(np.float32)
    arrays = [raster.classes, height, aspect, raster.noise_large * 0.7 + raster.noise_mid * 0.3,
              raster.noise_fine]
    turned = [np.ascontiguousarray(np.rot90(a, k)) for a in arrays]
    refl = _reflectivity_north(*turned, pixel_size=raster.pixel_size, incidence_deg=incidence_deg)
    refl = np.ascontiguousarray(np.rot90(refl, -k, axes=(1, 2)))
    if psf_sigma_px > 0:
        for b in range(3):
            refl[b] = cv2.GaussianBlur(refl[b], (0, 0), psf_sigma_px)
    return np.concatenate([refl[:2], refl[1:2], refl[2:]]).astype(np.float32)


def apply_speckle(reflectivity: np.ndarray, looks: float, rng: np.random.Generator,
                  cross_jitter_looks: float = 40.0) -> np.ndarray:
    """Multiply (B, rows, cols) linear power by unit-mean Gamma(looks) speckle, one field per band.

    For 4-band HH, HV, VH, VV input, HV and VH share one field (same scatterers), VH getting an
    extra mild Gamma(``cross_jitter_looks``) jitter so the two are equal up to noise.
    """
    out = np.empty_like(reflectivity, dtype=np.float32)
    shape = reflectivity.shape[1:]
    scale = np.float32(1.0 / looks)
    fields: dict[int, np.ndarray] = {}
    for b in range(reflectivity.shape[0]):
        if reflectivity.shape[0] == 4 and b == 2:
            # Gamma(L) / L with large L is ~N(1, 1/L): cheaper to draw, clipped to stay positive
            jitter = rng.standard_normal(shape, dtype=np.float32)
            jitter *= np.float32(1.0 / np.sqrt(cross_jitter_looks))
            jitter += np.float32(1.0)
            np.maximum(jitter, np.float32(0.2), out=jitter)
            out[b] = reflectivity[b] * fields[1] * jitter
            continue
        fields[b] = rng.standard_gamma(looks, shape, dtype=np.float32) * scale
        out[b] = reflectivity[b] * fields[b]
    return out


def to_db(power: np.ndarray) -> np.ndarray:
    """10 log10 of linear power (float32), floored at -60 dB."""
    return (10.0 * np.log10(np.maximum(power, 1e-6))).astype(np.float32)


# SN6 SAR-Intensity is an offset dB-like scale (valid values ~10-90, 0 = nodata). The map
# value = SN6_GAIN[b] * dB + SN6_OFFSET[b] was fitted once on 40 synthetic 900 px tiles (seed 0)
# so that the synthetic city reproduces the real per-band valid-area statistics (SPEC: means
# HH 28.6, HV 36.1, VH 33.8, VV 26.2, std ~8.3-8.6). The real cross-pol bands spread as much as
# the co-pol ones, hence the larger cross-pol gain; HV and VH share a gain and, as in the real
# tiles, differ by a constant offset only.
SN6_GAIN = np.array([1.16, 1.36, 1.36, 1.22], np.float32)
SN6_OFFSET = np.array([44.9, 60.9, 58.7, 42.7], np.float32)
SN6_MIN_VALID = 0.01


def db_to_sn6_scale(db: np.ndarray) -> np.ndarray:
    """(4, rows, cols) calibrated dB -> SN6 SAR-Intensity scale; valid pixels stay > 0."""
    out = db * SN6_GAIN[:, None, None] + SN6_OFFSET[:, None, None]
    return np.maximum(out, SN6_MIN_VALID).astype(np.float32)


def sn6_scale_to_db(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`db_to_sn6_scale` (for valid pixels)."""
    return ((values - SN6_OFFSET[:, None, None]) / SN6_GAIN[:, None, None]).astype(np.float32)

"""Synthetic SpaceNet 9 scenes: an optical / SAR pair with a known, realistic misalignment.

Per scene ``<aoi>`` (``synth_aoi_<k>``) and split, written to ``out_dir``:

- ``<aoi>_optical_<split>.tif``: 3-band uint8 RGB at 0.3 m, ``size`` x ``size`` px.
- ``<aoi>_sar_<split>.tif``: 1-band uint8 intensity at 0.41 m (dB -30..+10 mapped to 1..255,
  0 = nodata), with its own extent and origin in the same UTM zone.
- ``<aoi>_tiepoints_<split>.csv``: ``sar_row,sar_col,optical_row,optical_col`` (integers; road
  crossings and building corners).
- ``<aoi>_offsets_<split>.tif``: the TRUE dense offset map in the submission format (2 bands
  float32 dx, dy in optical pixels, the optical's size, geotransform and CRS).
- ``<aoi>_groundfield_<split>.tif``: the ground misalignment alone (no layover), 2 bands float32
  dx, dy in optical pixels, sampled at the centres of ``GROUND_FIELD_STEP``-pixel optical blocks
  (its own geotransform): the label the learned dense descriptors train on.

Geometry: each scene is an earthquake-area town in hills (:func:`sarfusion.synth.city.make_terrain`,
30-120 m of relief) seen by a SAR at a random look azimuth (any direction) and incidence
(20-50 deg). The misalignment (SPEC section 4), in metres on the ground, scaled by ``difficulty``,
comes from how the two products were made:

- the SAR was terrain-corrected with a coarse, erroneous DEM (the terrain smoothed over 60-140 m,
  plus a smooth error of 2-7 m): a point ``e`` metres above that DEM appears ``e / tan(incidence)``
  closer to the sensor, so the offsets follow the hills and the look direction;
- the optical was orthorectified with another DEM of 2-6 m error, seen 5-30 deg off nadir from its
  own azimuth: it moves ``e tan(off-nadir)`` away from its satellite;
- a small affine part (~0.5 %) and a smooth residual (~2 m, correlation 45 m) of the processing,
- and a global shift in a random direction, sized so that the mean displacement over the optical
  footprint is 22-30 m (zero offsets score ~73-100 optical px, as on the real SN9 scenes);

plus the physical layover of roofs and crowns toward the sensor. The SAR image is rendered in
its own range / azimuth frame and resampled through that field: the SAR content at map point P is
the ground point Q with ``Q + field(Q) = P`` (layover comes from the SAR simulator itself), so the
offsets are recoverable from the pixels. At optical pixel G the true offset is
``layover(G) + field(G + layover(G))``; at each tie point the stored offset equals exactly the
scorer's reference value, so scoring the true map gives 0.0 px.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage

from sarfusion.errors import InputError
from sarfusion.io.raster import write_raster
from sarfusion.io.vector import write_csv_atomic
from sarfusion.synth import city as C
from sarfusion.synth import optical as O
from sarfusion import preview as P
from sarfusion.synth import sar as S

log = logging.getLogger(__name__)

EPSG = 32631
OPTICAL_M = 0.3
SAR_M = 0.41
FIELD_CELL_M = 2.0
CORRELATION_LENGTH_M = 45.0
GROUND_FIELD_STEP = 16  # optical px per ground-field cell (4.8 m; the field varies over ~45 m)
TIEPOINT_COLUMNS = ["sar_row", "sar_col", "optical_row", "optical_col"]
SAR_DB_RANGE = (-30.0, 10.0)
DEFAULT_LOOKS = 4.0
INCIDENCE_RANGE_DEG = (20.0, 50.0)


def sar_db_to_uint8(db: np.ndarray) -> np.ndarray:
    """dB -> 1..255 (0 stays free for nodata)."""
    lo, hi = SAR_DB_RANGE
    return np.clip(np.rint((db - lo) / (hi - lo) * 254 + 1), 1, 255).astype(np.uint8)


def _smooth_noise(rows: int, cols: int, correlation_m: float, rng: np.random.Generator) -> np.ndarray:
    """(rows, cols) float32 Gaussian-filtered white noise on FIELD_CELL_M cells, std 1, whose
    autocorrelation falls to 1/e at ``correlation_m`` (sigma = L / 2)."""
    n = ndimage.gaussian_filter(rng.standard_normal((rows, cols)).astype(np.float32),
                                correlation_m / 2 / FIELD_CELL_M, mode="reflect")
    return n / (n.std() + 1e-12)


@dataclass
class Geometry:
    """The draws that fix a scene's misalignment (see the module docstring)."""

    look_deg: float           # azimuth of the sensor seen from the scene, clockwise from north
    incidence_deg: float
    margin_m: float           # plan margin around the optical footprint
    terrain: np.ndarray       # (rows, cols) float32 elevation (m) on city.TERRAIN_CELL_M cells
    field: np.ndarray         # (2, rows, cols) float32 SAR-minus-optical ground displacement (m), FIELD_CELL_M cells


def misalignment_field(plan_m: float, terrain: np.ndarray, rng: np.random.Generator, difficulty: float,
                       look_deg: float, incidence_deg: float,
                       region: tuple[float, float, float, float]) -> np.ndarray:
    """(2, rows, cols) float32 ground displacement (m; x east, y south) on a FIELD_CELL_M grid
    over a ``plan_m`` square plan: DEM errors seen through the SAR's and the optical's viewing
    geometry, an affine part, a smooth residual, and a global shift that brings the mean
    displacement over ``region`` (x0, y0, x1, y1 m) to 22-30 m. All scaled by ``difficulty``."""
    n = int(np.ceil(plan_m / FIELD_CELL_M)) + 2
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) * FIELD_CELL_M
    h = cv2.resize(terrain, None, fx=C.TERRAIN_CELL_M / FIELD_CELL_M, fy=C.TERRAIN_CELL_M / FIELD_CELL_M,
                   interpolation=cv2.INTER_LINEAR)[:n, :n]
    h = np.pad(h, ((0, n - h.shape[0]), (0, n - h.shape[1])), mode="edge")
    # the SAR's DEM: the terrain smoothed (coarse posting) plus its own error
    dem = ndimage.gaussian_filter(h, rng.uniform(60, 140) / 2 / FIELD_CELL_M, mode="reflect")
    dem += rng.uniform(2.0, 7.0) * _smooth_noise(n, n, rng.uniform(120, 300), rng)
    sar_shift = (h - dem) / np.float32(np.tan(np.deg2rad(incidence_deg)))
    # the optical's DEM error, seen off nadir: displaced away from the optical satellite
    off_nadir = np.deg2rad(rng.uniform(5, 30))
    opt_az_deg = rng.uniform(0, 360)  # the optical satellite's azimuth seen from the scene
    opt_err = rng.uniform(2.0, 6.0) * _smooth_noise(n, n, rng.uniform(150, 350), rng) * np.float32(np.tan(off_nadir))
    u_sar = S.sensor_unit(look_deg).astype(np.float32)
    u_opt = S.sensor_unit(opt_az_deg).astype(np.float32)
    affine = rng.normal(0, 0.005, (2, 2))
    xc, yc = xx - plan_m / 2, yy - plan_m / 2
    rest = np.empty((2, n, n), np.float32)
    for k in range(2):
        rest[k] = (sar_shift * u_sar[k] + opt_err * u_opt[k] + affine[k, 0] * xc + affine[k, 1] * yc
                   + 2.0 * _smooth_noise(n, n, CORRELATION_LENGTH_M, rng))
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    target_m = rng.uniform(22.0, 30.0)
    x0, y0, x1, y1 = region
    inside = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    rx, ry = rest[0][inside], rest[1][inside]

    def mean_norm(shift: float) -> float:
        return float(np.mean(np.hypot(rx + shift * direction[0], ry + shift * direction[1])))

    lo, hi = 0.0, target_m + 3 * float(np.abs(rest).max())
    for _ in range(40):  # mean |shift u + rest| grows with the shift: bisect to the target
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_norm(mid) < target_m else (lo, mid)
    field = rest + (lo * direction).astype(np.float32)[:, None, None]
    return field * np.float32(difficulty)


def _sample_field(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of the (2, r, c) field at plan points x, y (any matching 2-D shapes)."""
    mx = (x / FIELD_CELL_M).astype(np.float32)
    my = (y / FIELD_CELL_M).astype(np.float32)
    fx = cv2.remap(field[0], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fy = cv2.remap(field[1], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return fx, fy


def _tiepoint_candidates(plan: C.CityPlan, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Plan points (m) of road crossings, and of building corners nudged 0.5 m onto the ground
    (the bright wall-foot corner) or onto the roof (where layover applies)."""
    crossings = plan.crossings
    corners = []
    b = plan.buildings
    for i in range(len(b)):
        poly = b.polygons[i]
        xy = np.asarray(poly.exterior.coords)[:-1]
        centroid = np.asarray(poly.centroid.coords[0])
        for j in rng.choice(len(xy), size=min(2, len(xy)), replace=False):
            outward = xy[j] - centroid
            outward /= np.linalg.norm(outward) + 1e-9
            step = -0.6 if rng.random() < 0.3 else 0.6  # some on the roof corner, most at the wall foot
            corners.append(xy[j] + outward * step)
    return crossings, np.array(corners).reshape(-1, 2)


def _draw_geometry(rng: np.random.Generator, size: int, difficulty: float) -> Geometry:
    """The first draws of a scene: look azimuth, incidence, plan margin, terrain and the ground
    misalignment field (see :func:`misalignment_field`)."""
    look = float(np.round(rng.uniform(0, 360), 1))
    incidence = float(rng.uniform(*INCIDENCE_RANGE_DEG))
    opt_m = size * OPTICAL_M
    margin = 90.0 * max(difficulty, 0.3) + 80.0
    plan_m = opt_m + 2 * margin
    terrain = C.make_terrain(plan_m, plan_m, rng, rng.uniform(30.0, 120.0))
    field = misalignment_field(plan_m, terrain, rng, difficulty, look, incidence,
                               region=(margin, margin, margin + opt_m, margin + opt_m))
    return Geometry(look, incidence, margin, terrain, field)


def scene_seed(seed: int, index: int = 0) -> int:
    """The generator seed of scene ``index`` of ``generate_sn9(..., seed=seed)``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def ground_offsets(seed: int, size: int, rows: np.ndarray, cols: np.ndarray, difficulty: float = 1.0,
                   index: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """The true offsets WITHOUT layover (the ground misalignment field alone) of a generated scene.

    The scene is ``index`` of ``generate_sn9(..., size=size, seed=seed, difficulty=difficulty)``;
    ``rows`` / ``cols``: fractional optical pixel coordinates (pixel centres at ``i + 0.5``).
    Returns ``(dx, dy)`` float32 in optical pixels (same shape as ``rows``) and the look azimuth
    (degrees clockwise from north, toward the sensor). At ground-level pixels this equals the
    written offset map; on roofs and trees the map adds the layover, which no smooth field can
    follow (diagnostics: how much of an error is layover).
    """
    geo = _draw_geometry(np.random.default_rng(scene_seed(seed, index)), size, difficulty)
    x = (geo.margin_m + np.asarray(cols, np.float64) * OPTICAL_M).astype(np.float32)
    y = (geo.margin_m + np.asarray(rows, np.float64) * OPTICAL_M).astype(np.float32)
    shape = np.broadcast(x, y).shape
    x, y = np.broadcast_to(x, shape).ravel(), np.broadcast_to(y, shape).ravel()
    fx, fy = np.empty(x.size, np.float32), np.empty(x.size, np.float32)
    for i in range(0, x.size, 30000):  # cv2.remap maps must stay under 32767 px a side
        part = _sample_field(geo.field, np.ascontiguousarray(x[None, i:i + 30000]), np.ascontiguousarray(y[None, i:i + 30000]))
        fx[i:i + 30000], fy[i:i + 30000] = part[0][0], part[1][0]
    return (fx / OPTICAL_M).reshape(shape), (fy / OPTICAL_M).reshape(shape), geo.look_deg


def _render_sar(plan: C.CityPlan, geo: Geometry, sx: float, sy: float, sar_px: int, plan_m: float,
                looks: float, rng: np.random.Generator) -> np.ndarray:
    """(sar_px, sar_px) float32 linear HH power on the SAR grid (top-left at plan point sx, sy; 0
    outside the rendered ground), simulated in the sensor's range / azimuth frame and resampled
    through the misalignment field."""
    sc = (sx + (np.arange(sar_px, dtype=np.float32) + 0.5) * SAR_M)[None, :]
    sr = (sy + (np.arange(sar_px, dtype=np.float32) + 0.5) * SAR_M)[:, None]
    px, py = np.broadcast_to(sc, (sar_px, sar_px)), np.broadcast_to(sr, (sar_px, sar_px))
    qx, qy = px.copy(), py.copy()
    for _ in range(6):  # fixed point Q + field(Q) = P: the field is smooth, so this converges fast
        fx, fy = _sample_field(geo.field, qx, qy)
        qx, qy = px - fx, py - fy
    del fx, fy
    # the sensor frame: columns along azimuth, rows away from the sensor (frame angle = look azimuth)
    a = np.deg2rad(geo.look_deg)
    ex, ey = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    reach = C.MAX_BUILDING_M / np.tan(np.deg2rad(geo.incidence_deg)) * 0.5 + 10.0
    corners = np.array([[qx.min(), qy.min()], [qx.max(), qy.min()], [qx.max(), qy.max()], [qx.min(), qy.max()]])
    u, v = corners @ ex, corners @ ey
    u0, u1 = u.min() - 10.0, u.max() + 10.0
    v0, v1 = v.min() - reach, v.max() + reach
    origin = u0 * ex + v0 * ey
    cols, rows = int(np.ceil((u1 - u0) / SAR_M)), int(np.ceil((v1 - v0) / SAR_M))
    raster = C.rasterize(plan, float(origin[0]), float(origin[1]), cols, rows, SAR_M, angle=float(a))
    floor = S.swath_noise_floor_db(rows, rng, base_db=S.draw_noise_floor_db(rng))
    refl = S.simulate(raster, plan, rng, "N", geo.incidence_deg, looks=looks, noise_floor_db=floor, bands=("HH",))[0]
    del raster
    mapx = (((qx - origin[0]) * ex[0] + (qy - origin[1]) * ex[1]) / SAR_M - 0.5).astype(np.float32)
    mapy = (((qx - origin[0]) * ey[0] + (qy - origin[1]) * ey[1]) / SAR_M - 0.5).astype(np.float32)
    on_plan = (qx >= 0) & (qy >= 0) & (qx <= plan_m) & (qy <= plan_m)
    del qx, qy
    sar = np.zeros((sar_px, sar_px), np.float32)
    for r0 in range(0, sar_px, 8192):  # cv2.remap maps must stay under 32767 px a side
        sl = slice(r0, min(sar_px, r0 + 8192))
        sar[sl] = cv2.remap(refl, mapx[sl], mapy[sl], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    sar[~on_plan] = 0
    return sar


def generate_scene(out_dir: Path, aoi: str, split: str, size: int, seed: int, difficulty: float,
                   preview_dir: Path | None, looks: float = DEFAULT_LOOKS) -> dict:
    """One SN9 scene; returns the paths written and summary numbers."""
    rng = np.random.default_rng(seed)
    geo = _draw_geometry(rng, size, difficulty)
    margin, field = geo.margin_m, geo.field
    opt_m = size * OPTICAL_M
    plan_m = opt_m + 2 * margin
    ox = oy = margin  # optical top-left in plan metres

    # SAR grid: the optical footprint displaced by the mean shift, resized a little, jittered
    mean_shift = field.reshape(2, -1).mean(axis=1)
    sar_m = opt_m * rng.uniform(0.92, 1.05)
    sx = ox + mean_shift[0] + (opt_m - sar_m) / 2 + rng.uniform(-25, 25)
    sy = oy + mean_shift[1] + (opt_m - sar_m) / 2 + rng.uniform(-25, 25)
    sar_px = int(round(sar_m / SAR_M))
    sx = float(np.clip(np.round(sx / SAR_M) * SAR_M, 5.0, plan_m - sar_m - 5.0))
    sy = float(np.clip(np.round(sy / SAR_M) * SAR_M, 5.0, plan_m - sar_m - 5.0))

    plan = C.plan_city(plan_m, plan_m, rng, terrain=geo.terrain)
    easting0 = 400000.0 + float(rng.integers(0, 200000))
    northing0 = 5600000.0 + float(rng.integers(0, 300000))
    gt_opt = (easting0 + ox, OPTICAL_M, 0.0, northing0 - oy, 0.0, -OPTICAL_M)
    gt_sar = (easting0 + sx, SAR_M, 0.0, northing0 - sy, 0.0, -SAR_M)

    # ---- optical and the true offset map (optical grid)
    raster = C.rasterize(plan, ox, oy, size, size, OPTICAL_M)
    optical = O.render_optical(raster, plan)
    geo_h = np.where(raster.classes == C.TREE, raster.height * np.float32(S.TREE_GEOMETRIC_HEIGHT), raster.height)
    del raster
    lay = (geo_h / np.float32(np.tan(np.deg2rad(geo.incidence_deg)))).astype(np.float32)
    unit = S.sensor_unit(geo.look_deg).astype(np.float32)
    cx = (ox + (np.arange(size, dtype=np.float32) + 0.5) * OPTICAL_M)[None, :]
    cy = (oy + (np.arange(size, dtype=np.float32) + 0.5) * OPTICAL_M)[:, None]
    gx = cx + lay * unit[0]
    gy = cy + lay * unit[1]
    fx, fy = _sample_field(field, np.broadcast_to(gx, (size, size)), np.broadcast_to(gy, (size, size)))
    offsets = np.stack([(gx - cx + fx) / OPTICAL_M, (gy - cy + fy) / OPTICAL_M]).astype(np.float32)
    del gx, gy, fx, fy, lay, geo_h
    n_cells = -(-size // GROUND_FIELD_STEP)
    cell = ((np.arange(n_cells, dtype=np.float32) + 0.5) * GROUND_FIELD_STEP * OPTICAL_M)
    gfx, gfy = _sample_field(field, np.broadcast_to(ox + cell[None, :], (n_cells, n_cells)),
                             np.broadcast_to(oy + cell[:, None], (n_cells, n_cells)))
    ground_field = np.stack([gfx, gfy]) / np.float32(OPTICAL_M)
    gt_ground = (gt_opt[0], OPTICAL_M * GROUND_FIELD_STEP, 0.0, gt_opt[3], 0.0, -OPTICAL_M * GROUND_FIELD_STEP)

    # ---- SAR: for each SAR pixel centre P find Q with Q + field(Q) = P, sample the sensor-frame render
    sar = _render_sar(plan, geo, sx, sy, sar_px, plan_m, looks, rng)
    inside = sar > 0
    sar_u8 = sar_db_to_uint8(S.to_db(sar))
    sar_u8[~inside] = 0
    del sar

    # ---- tie points from the true offsets, through exactly the scorer's relation
    crossings, corners = _tiepoint_candidates(plan, rng)
    n_points = int(rng.integers(100, 161))
    picks = []
    for pts in (crossings, corners):
        if len(pts):
            order = rng.permutation(len(pts))
            picks.append(pts[order])
    cand = np.concatenate(picks) if picks else np.zeros((0, 2))
    orow = np.floor((cand[:, 1] - oy) / OPTICAL_M).astype(np.int64)
    ocol = np.floor((cand[:, 0] - ox) / OPTICAL_M).astype(np.int64)
    edge = 16
    ok = (orow >= edge) & (ocol >= edge) & (orow < size - edge) & (ocol < size - edge)
    is_crossing = np.arange(len(cand)) < len(crossings)
    rows_out = []
    seen = set()
    n_cross = 0
    for i in np.nonzero(ok)[0]:
        r, c = int(orow[i]), int(ocol[i])
        if (r, c) in seen:
            continue
        if is_crossing[i] and n_cross >= int(0.6 * n_points):
            continue
        x_o = gt_opt[0] + c * gt_opt[1]
        y_o = gt_opt[3] + r * gt_opt[5]
        x_s = x_o + offsets[0, r, c] * gt_opt[1]
        y_s = y_o + offsets[1, r, c] * gt_opt[5]
        scol = int(np.round((x_s - gt_sar[0]) / gt_sar[1]))
        srow = int(np.round((y_s - gt_sar[3]) / gt_sar[5]))
        if not (edge <= scol < sar_px - edge and edge <= srow < sar_px - edge):
            continue
        # the reference the scorer will compute from these integer pixels
        offsets[0, r, c] = np.rint((gt_sar[0] + scol * gt_sar[1] - x_o) / gt_opt[1])
        offsets[1, r, c] = np.rint((gt_sar[3] + srow * gt_sar[5] - y_o) / gt_opt[5])
        seen.add((r, c))
        rows_out.append((srow, scol, r, c))
        n_cross += int(is_crossing[i])
        if len(rows_out) >= n_points:
            break
    ties = pd.DataFrame(rows_out, columns=TIEPOINT_COLUMNS).astype(np.int64)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "optical": out_dir / f"{aoi}_optical_{split}.tif",
        "sar": out_dir / f"{aoi}_sar_{split}.tif",
        "tiepoints": out_dir / f"{aoi}_tiepoints_{split}.csv",
        "offsets": out_dir / f"{aoi}_offsets_{split}.tif",
        "groundfield": out_dir / f"{aoi}_groundfield_{split}.tif",
    }
    write_raster(paths["optical"], optical, gt_opt, EPSG)
    write_raster(paths["sar"], sar_u8, gt_sar, EPSG, nodata=0)
    write_raster(paths["offsets"], offsets, gt_opt, EPSG)
    write_raster(paths["groundfield"], ground_field.astype(np.float32), gt_ground, EPSG)
    write_csv_atomic(paths["tiepoints"], ties)
    if preview_dir is not None:
        opt_bgr = P.rgb_to_bgr(optical)
        for _, t in ties.iterrows():
            cv2.circle(opt_bgr, (int(t.optical_col), int(t.optical_row)), 12, (0, 255, 255), 3)
        P.write_png(preview_dir / f"{aoi}_{split}_optical.png", opt_bgr)
        sar_bgr = cv2.cvtColor(sar_u8, cv2.COLOR_GRAY2BGR)
        for _, t in ties.iterrows():
            cv2.circle(sar_bgr, (int(t.sar_col), int(t.sar_row)), 9, (0, 255, 255), 3)
        P.write_png(preview_dir / f"{aoi}_{split}_sar.png", sar_bgr)
        P.write_png(preview_dir / f"{aoi}_{split}_offsets.png",
                    P.draw_offsets(opt_bgr, offsets[0], offsets[1], step=max(64, size // 16)))
    log.info("synthetic SN9 %s %s: look azimuth %.1f deg, incidence %.1f deg, %d tie points", aoi, split,
             geo.look_deg, geo.incidence_deg, len(ties))
    return {**paths, "aoi": aoi, "split": split, "look": geo.look_deg, "incidence_deg": round(geo.incidence_deg, 2),
            "n_tiepoints": len(ties)}


def generate_sn9(out_dir: str | Path, size: int = 4096, seed: int = 0, difficulty: float = 1.0,
                 scenes: int = 1, preview: bool | str | Path = False, split: str = "train") -> list[dict]:
    """Write ``scenes`` synthetic SN9 scenes (aoi ``synth_aoi_<k>``) into ``out_dir``.

    Args:
        size: optical width and height in pixels (0.3 m); the SAR covers about the same ground.
        difficulty: scales the misalignment (shift, affine and local field); layover is physical.
        preview: True (PNGs in ``out_dir/previews``) or a folder.
        split: the ``<split>`` token of the file names (e.g. ``train``, ``test``).

    Returns:
        one dict per scene with Paths ``optical``, ``sar``, ``tiepoints``, ``offsets``, ``groundfield``.
    """
    if size < 512:
        raise InputError(f"--size must be at least 512 optical pixels, got {size}")
    if scenes < 1:
        raise InputError(f"--scenes must be at least 1, got {scenes}")
    if not 0 <= difficulty <= 3:
        raise InputError(f"--difficulty must lie in [0, 3], got {difficulty}")
    out_dir = Path(out_dir)
    preview_dir = (out_dir / "previews" if preview is True else Path(preview)) if preview else None
    return [generate_scene(out_dir, f"synth_aoi_{k}", split, size, scene_seed(seed, k),
                           difficulty, preview_dir) for k in range(scenes)]

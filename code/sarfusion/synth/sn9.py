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

Misalignment (SPEC section 4), in metres on the ground, scaled by ``difficulty``: a global shift
(sized so the mean displacement is 22-28 m), an affine part (~1.5% scale/rotation) and a smooth
local field (correlation length ~45 m, ~6 m per component), plus the physical layover of roofs toward the sensor. The SAR image
is rendered through that field: the SAR content at map point P is the ground point Q with
``Q + field(Q) = P`` (layover comes from the SAR simulator itself), so the offsets are
recoverable from the pixels. At optical pixel G the true offset is
``layover(G) + field(G + layover(G))``; at each tie point the stored offset equals exactly the
scorer's reference value, so scoring the true map gives 0.0 px.
"""
from __future__ import annotations

import logging
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


def sar_db_to_uint8(db: np.ndarray) -> np.ndarray:
    """dB -> 1..255 (0 stays free for nodata)."""
    lo, hi = SAR_DB_RANGE
    return np.clip(np.rint((db - lo) / (hi - lo) * 254 + 1), 1, 255).astype(np.uint8)


def misalignment_field(width_m: float, height_m: float, rng: np.random.Generator, difficulty: float,
                       region: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """(2, rows, cols) float32 ground displacement (m; x east, y south) on a 2 m grid over the plan.

    An affine part (~1.5% scale/rotation/shear) + Gaussian-filtered noise (~6 m per component)
    whose autocorrelation falls to 1/e at ``CORRELATION_LENGTH_M`` (a Gaussian filter of sigma
    L/2 gives exp(-r^2 / (4 sigma^2))) + a global shift in a random direction, sized so that the
    mean displacement over ``region`` (x0, y0, x1, y1 in m; default the whole plan) is 22-28 m,
    i.e. "zero offsets" score ~75-95 optical pixels as on the real SN9 scenes. All scaled by
    ``difficulty``.
    """
    rows = int(np.ceil(height_m / FIELD_CELL_M)) + 2
    cols = int(np.ceil(width_m / FIELD_CELL_M)) + 2
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    target_m = rng.uniform(22.0, 28.0)
    affine = rng.normal(0, 0.015, (2, 2))
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32) * FIELD_CELL_M
    xc, yc = xx - width_m / 2, yy - height_m / 2
    sigma = CORRELATION_LENGTH_M / 2 / FIELD_CELL_M
    rest = np.empty((2, rows, cols), np.float32)
    for k in range(2):
        noise = ndimage.gaussian_filter(rng.standard_normal((rows, cols)).astype(np.float32), sigma, mode="wrap")
        noise /= noise.std() + 1e-12
        rest[k] = affine[k, 0] * xc + affine[k, 1] * yc + 6.0 * noise
    x0, y0, x1, y1 = region if region is not None else (0.0, 0.0, width_m, height_m)
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


def _sensor_unit(look: str) -> np.ndarray:
    """Plan-frame (x east, y south) unit vector pointing toward the sensor."""
    return {"N": np.array([0.0, -1.0]), "S": np.array([0.0, 1.0]),
            "E": np.array([1.0, 0.0]), "W": np.array([-1.0, 0.0])}[look]


def _tiepoint_candidates(plan: C.CityPlan, look: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def _draw_misalignment(rng: np.random.Generator, size: int, difficulty: float) -> tuple[str, float, np.ndarray]:
    """The first draws of a scene: SAR look direction, plan margin (m) around the optical
    footprint, and the ground misalignment field (see :func:`misalignment_field`)."""
    look = str(rng.choice(["N", "E", "S", "W"]))
    opt_m = size * OPTICAL_M
    margin = 90.0 * max(difficulty, 0.3) + 80.0
    plan_m = opt_m + 2 * margin
    field = misalignment_field(plan_m, plan_m, rng, difficulty, region=(margin, margin, margin + opt_m, margin + opt_m))
    return look, margin, field


def scene_seed(seed: int, index: int = 0) -> int:
    """The generator seed of scene ``index`` of ``generate_sn9(..., seed=seed)``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def ground_offsets(seed: int, size: int, rows: np.ndarray, cols: np.ndarray, difficulty: float = 1.0,
                   index: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """The true offsets WITHOUT layover (the ground misalignment field alone) of a generated scene.

    The scene is ``index`` of ``generate_sn9(..., size=size, seed=seed, difficulty=difficulty)``;
    ``rows`` / ``cols``: fractional optical pixel coordinates (pixel centres at ``i + 0.5``).
    Returns ``(dx, dy)`` float32 in optical pixels (same shape as ``rows``) and the look direction.
    At ground-level pixels this equals the written offset map; on roofs and trees the map adds the
    layover, which no smooth field can follow (diagnostics: how much of an error is layover).
    """
    look, margin, field = _draw_misalignment(np.random.default_rng(scene_seed(seed, index)), size, difficulty)
    x = (margin + np.asarray(cols, np.float64) * OPTICAL_M).astype(np.float32)
    y = (margin + np.asarray(rows, np.float64) * OPTICAL_M).astype(np.float32)
    shape = np.broadcast(x, y).shape
    x, y = np.broadcast_to(x, shape).ravel(), np.broadcast_to(y, shape).ravel()
    fx, fy = np.empty(x.size, np.float32), np.empty(x.size, np.float32)
    for i in range(0, x.size, 30000):  # cv2.remap maps must stay under 32767 px a side
        part = _sample_field(field, np.ascontiguousarray(x[None, i:i + 30000]), np.ascontiguousarray(y[None, i:i + 30000]))
        fx[i:i + 30000], fy[i:i + 30000] = part[0][0], part[1][0]
    return (fx / OPTICAL_M).reshape(shape), (fy / OPTICAL_M).reshape(shape), look


def generate_scene(out_dir: Path, aoi: str, split: str, size: int, seed: int, difficulty: float,
                   preview_dir: Path | None, looks: float = DEFAULT_LOOKS) -> dict:
    """One SN9 scene; returns the paths written and summary numbers."""
    rng = np.random.default_rng(seed)
    look, margin, field = _draw_misalignment(rng, size, difficulty)
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

    plan = C.plan_city(plan_m, plan_m, rng)
    easting0 = 400000.0 + float(rng.integers(0, 200000))
    northing0 = 5600000.0 + float(rng.integers(0, 300000))
    gt_opt = (easting0 + ox, OPTICAL_M, 0.0, northing0 - oy, 0.0, -OPTICAL_M)
    gt_sar = (easting0 + sx, SAR_M, 0.0, northing0 - sy, 0.0, -SAR_M)

    # ---- optical and the true offset map (optical grid)
    raster = C.rasterize(plan, ox, oy, size, size, OPTICAL_M)
    optical = O.render_optical(raster, plan.buildings.roof_rgb)
    geo_h = np.where(raster.classes == C.TREE, raster.height * np.float32(S.TREE_GEOMETRIC_HEIGHT), raster.height)
    del raster
    lay = (geo_h / np.float32(np.tan(np.deg2rad(S.DEFAULT_INCIDENCE_DEG)))).astype(np.float32)
    unit = _sensor_unit(look).astype(np.float32)
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

    # ---- SAR: for each SAR pixel centre P find Q with Q + field(Q) = P, sample the ground render
    sc = (sx + (np.arange(sar_px, dtype=np.float32) + 0.5) * SAR_M)[None, :]
    sr = (sy + (np.arange(sar_px, dtype=np.float32) + 0.5) * SAR_M)[:, None]
    px, py = np.broadcast_to(sc, (sar_px, sar_px)), np.broadcast_to(sr, (sar_px, sar_px))
    qx, qy = px.copy(), py.copy()
    for _ in range(4):  # fixed point: the field is smooth, so this converges fast
        fx, fy = _sample_field(field, qx, qy)
        qx, qy = px - fx, py - fy
    g0x = max(0.0, float(qx.min()) - 60.0)
    g0y = max(0.0, float(qy.min()) - 60.0)
    g1x = min(plan_m, float(qx.max()) + 60.0)
    g1y = min(plan_m, float(qy.max()) + 60.0)
    gcols, grows = int(np.ceil((g1x - g0x) / SAR_M)), int(np.ceil((g1y - g0y) / SAR_M))
    ground = C.rasterize(plan, g0x, g0y, gcols, grows, SAR_M)
    refl = S.simulate_reflectivity(ground, plan.buildings.angle, look)[0]  # HH
    del ground
    mapx = ((qx - g0x) / SAR_M - 0.5).astype(np.float32)
    mapy = ((qy - g0y) / SAR_M - 0.5).astype(np.float32)
    sar_lin = cv2.remap(refl, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    inside = cv2.remap(np.ones_like(refl, np.uint8), mapx, mapy, cv2.INTER_NEAREST,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    del refl, mapx, mapy, qx, qy
    sar = S.apply_speckle(sar_lin[None], looks, rng)[0]
    sar_u8 = sar_db_to_uint8(S.to_db(sar))
    sar_u8[~inside] = 0

    # ---- tie points from the true offsets, through exactly the scorer's relation
    crossings, corners = _tiepoint_candidates(plan, look, rng)
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
    log.info("synthetic SN9 %s %s: look %s, %d tie points", aoi, split, look, len(ties))
    return {**paths, "aoi": aoi, "split": split, "look": look, "n_tiepoints": len(ties)}


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

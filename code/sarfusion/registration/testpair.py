"""A quick SN9-like pair with known offsets (tests, benchmarks): an urban-looking optical scene,
a SAR-like image of it (edges bright, speckled, coarser pixels), warped by a smooth field.

Much cheaper than the full SN9 generator (``sarfusion.synth.sn9``) and tileable to 13,000 px.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from sarfusion.io.raster import read_raster, write_raster
from sarfusion.registration.warp import smooth_field, true_offsets, warp_by_field

EPSG = 32631


def urban_optical(size: int, seed: int) -> np.ndarray:
    """``(3, size, size)`` uint8: blocks of rectangular roofs, roads, vegetation texture."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 90, np.float32)
    img += cv2.GaussianBlur(rng.normal(0, 25, (size, size)).astype(np.float32), (0, 0), 6)
    n = int(size * size / 900)
    for _ in range(n):
        h, w = rng.integers(12, 60, 2)
        r, c = rng.integers(0, size, 2)
        val = float(rng.choice([40, 160, 210, 120]))
        cv2.rectangle(img, (int(c), int(r)), (int(c + w), int(r + h)), val, -1)
    for _ in range(max(2, size // 150)):
        if rng.random() < 0.5:
            r = int(rng.integers(0, size)); cv2.line(img, (0, r), (size, r + int(rng.integers(-50, 50))), 60, 8)
        else:
            c = int(rng.integers(0, size)); cv2.line(img, (c, 0), (c + int(rng.integers(-50, 50)), size), 60, 8)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    rgb = np.stack([img * 0.9, img, img * 1.1])
    return np.clip(rgb, 1, 255).astype(np.uint8)


def sar_like(optical_grey: np.ndarray, seed: int, looks: float = 3.0) -> np.ndarray:
    """Linear-intensity float32 SAR look-alike: edges bright (double bounce), flat roofs dark,
    multiplicative gamma speckle."""
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(optical_grey.astype(np.float32), (0, 0), 1.0)
    edges = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    sigma0 = 0.05 + 0.4 * (g / 255.0) ** 2 + 2.0 * (edges / (edges.max() + 1e-6))
    speckle = rng.gamma(looks, 1.0 / looks, g.shape).astype(np.float32)
    return (sigma0 * speckle * 1000).astype(np.float32)


def make_test_pair(out_dir: str | Path, size: int = 1024, seed: int = 0, amplitude_px: float = 40.0,
                   corr_px: float = 150.0, optical_m: float = 0.3, sar_m: float = 0.45,
                   n_tiepoints: int = 120, sar_epsg: int = EPSG) -> dict:
    """Write ``test_optical_<seed>.tif``, ``test_sar_<seed>.tif``, ``test_tiepoints_<seed>.csv`` and
    the true offset map ``test_offsets_<seed>.tif``; return their paths (SN9 generator keys).

    Offsets (optical px) = smooth field of max ``amplitude_px`` + an affine part (a few px / 1000 px).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opt = urban_optical(size, seed)
    field = smooth_field(size, size, amplitude_px, corr_px, seed=seed + 1,
                         affine=(0.3 * amplitude_px, -0.2 * amplitude_px, 0.004, 0.002, -0.003, 0.005))
    sar_opt_grid = warp_by_field(sar_like(opt.mean(0), seed + 2), field)
    truth = true_offsets(field)  # (dy, dx) optical px
    sar_size = int(round(size * optical_m / sar_m))
    sar = cv2.resize(sar_opt_grid, (sar_size, sar_size), interpolation=cv2.INTER_AREA)
    x0, y0 = 600000.0, 5700000.0
    opt_gt = (x0, optical_m, 0.0, y0, 0.0, -optical_m)
    sar_gt = (x0, sar_m, 0.0, y0, 0.0, -sar_m)
    paths = {k: out_dir / f"test_{k}_{seed}.{'csv' if k == 'tiepoints' else 'tif'}"
             for k in ("optical", "sar", "tiepoints", "offsets")}
    write_raster(paths["optical"], opt, opt_gt, EPSG)
    if sar_epsg != EPSG:
        from osgeo import gdal
        tmp = out_dir / f".tmp_sar_{seed}.tif"
        write_raster(tmp, sar[None], sar_gt, EPSG)
        gdal.Warp(str(paths["sar"]), str(tmp), dstSRS=f"EPSG:{sar_epsg}", xRes=sar_m, yRes=sar_m,
                  resampleAlg="bilinear", creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
        tmp.unlink()
    else:
        write_raster(paths["sar"], sar[None], sar_gt, EPSG)
    write_raster(paths["offsets"], np.stack([truth[1], truth[0]]), opt_gt, EPSG)
    rng = np.random.default_rng(seed + 3)
    margin = int(amplitude_px * 2) + 10
    rows = rng.integers(margin, size - margin, n_tiepoints)
    cols = rng.integers(margin, size - margin, n_tiepoints)
    # SAR pixel holding the optical pixel's counterpart (SAR grid may be reprojected).
    from sarfusion.io.raster import map_to_pixel, raster_info, reproject_points
    x = x0 + (cols + truth[1][rows, cols]) * optical_m
    y = y0 - (rows + truth[0][rows, cols]) * optical_m
    sinfo = raster_info(paths["sar"])
    x, y = reproject_points(x, y, _wkt(EPSG), sinfo.crs_wkt)
    s_r, s_c = map_to_pixel(sinfo.geotransform, x, y)
    pd.DataFrame({"sar_row": np.floor(s_r).astype(int), "sar_col": np.floor(s_c).astype(int),
                  "optical_row": rows, "optical_col": cols}).to_csv(paths["tiepoints"], index=False)
    return {k: str(v) for k, v in paths.items()}


def _wkt(epsg: int) -> str:
    from sarfusion.io.raster import crs_to_wkt
    return crs_to_wkt(epsg)


def known_warp(height: int, width: int, seed: int, shift_px: tuple[float, float] = (2.0, -2.0),
               amplitude_px: float = 4.0, corr_px: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
    """A known warp: a global shift ``shift_px`` (dy, dx) plus a smooth random field of max
    ``amplitude_px`` per component and correlation length ``corr_px`` (seeded by ``seed``).

    Returns ``(field, truth)``, both ``(2, height, width)`` float32 (dy, dx) px: ``field`` for
    :func:`warp_by_field`, ``truth`` the offsets that undo it (:func:`true_offsets`: where each
    pixel's content went). The defaults are the 2 px + 4 px warp of :func:`known_warp_errors`.
    """
    field = smooth_field(height, width, amplitude_px, corr_px, seed=seed,
                         affine=(float(shift_px[0]), float(shift_px[1]), 0.0, 0.0, 0.0, 0.0))
    return field, true_offsets(field)


def random_known_warp(height: int, width: int, seed: int, max_shift_px: float = 15.0,
                      amplitude_px: float = 8.0, corr_px: float | None = None
                      ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The issue-22 known warp: a seeded global shift uniform in +-``max_shift_px`` per axis plus
    a smooth field of max ``amplitude_px`` per component whose correlation length is a tenth of
    the image (``corr_px`` overrides it).

    Returns ``(field, truth, shift)``: the arrays as :func:`known_warp` (``(2, h, w)`` float32,
    (dy, dx) px), ``shift`` the global part (dy, dx) px. Every component of ``truth`` lies within
    ``max_shift_px + amplitude_px`` (the field's own bounds; :func:`true_offsets` only resamples it).
    """
    rng = np.random.default_rng([seed, 22])  # its own stream: the field below uses ``seed`` itself
    shift = tuple(float(v) for v in rng.uniform(-max_shift_px, max_shift_px, 2))
    corr = corr_px if corr_px is not None else max(height, width) / 10.0
    field, truth = known_warp(height, width, seed, shift, amplitude_px, corr)
    return field, truth, shift


def tiepoint_sample(height: int, width: int, n: int, margin: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded random optical pixels ``(rows, cols)`` (int arrays ``(n,)``) at least ``margin``
    px inside the image (keep ``margin`` above the largest warp: content moves out there)."""
    rng = np.random.default_rng([seed, 150])
    return rng.integers(margin, height - margin, n), rng.integers(margin, width - margin, n)


def warp_recovery(f0: np.ndarray, f1: np.ndarray, truth: np.ndarray, rows: np.ndarray,
                  cols: np.ndarray) -> dict[str, np.ndarray]:
    """Warp-recovery errors of one method at tie points (optical px).

    ``f0`` / ``f1``: the method's offsets ``(2, h, w)`` (dy, dx) px on the unwarped / warped pair;
    ``truth``: the known warp ``(2, h, w)`` (dy, dx) (:func:`known_warp`); ``rows`` / ``cols``:
    tie points ``(n,)``. Returns per-point ``(n,)`` arrays: ``recovery`` = |F1 - F0 - k|, with k
    taken where F0 puts the point (content of optical p sits at SAR p + F0(p) before the warp and
    at p + F0(p) + k(p + F0(p)) after; k(p) itself when F0 = 0), ``absolute`` = |F1 - k(p)| (the
    error if the pair were exactly co-registered) and ``unwarped`` = |F0|.
    """
    from scipy import ndimage
    d0 = f0[:, rows, cols].astype(np.float64)
    d1 = f1[:, rows, cols].astype(np.float64)
    k_at_p = truth[:, rows, cols].astype(np.float64)
    coords = np.stack([rows + d0[0], cols + d0[1]])
    k_moved = np.stack([ndimage.map_coordinates(truth[b].astype(np.float64), coords, order=1, mode="nearest")
                        for b in range(2)])
    return {"recovery": np.hypot(*(d1 - d0 - k_moved)), "absolute": np.hypot(*(d1 - k_at_p)),
            "unwarped": np.hypot(*d0)}


def write_array_pair(work: str | Path, optical: np.ndarray, sar: np.ndarray, tag: str = "") -> tuple[Path, Path]:
    """``optical`` ``(C, h, w)`` / ``sar`` ``(h, w)`` (0 = no data) written as float32 GeoTIFFs
    without georeferencing, ``o_<tag>.tif`` / ``s_<tag>.tif`` under ``work``; returns their paths."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    paths = work / f"o_{tag}.tif", work / f"s_{tag}.tif"
    write_raster(paths[0], optical.astype(np.float32))
    write_raster(paths[1], sar[None].astype(np.float32))
    return paths


def array_pair_grid(work: str | Path, optical: np.ndarray, sar: np.ndarray, tag: str = ""):
    """The registration grid (:func:`~sarfusion.registration.align.scene_grid`) of an array pair
    written by :func:`write_array_pair`."""
    from sarfusion.registration.align import scene_grid
    return scene_grid(*write_array_pair(work, optical, sar, tag))


def dense_offsets(work: str | Path, optical: np.ndarray, sar: np.ndarray, tag: str,
                  config=None, weights: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """The dense mode (``register_scene``; training-free, or with the descriptors in ``weights``)
    on ``optical`` ``(C, h, w)`` / ``sar`` ``(h, w)`` (0 = no data) written by
    :func:`write_array_pair` under ``work``: offsets ``(2, h, w)`` float32 (dy, dx) px and the
    ``register_scene`` result."""
    from sarfusion.io.raster import read_raster
    from sarfusion.registration.api import register_scene
    opt_path, sar_path = write_array_pair(work, optical, sar, tag)
    res = register_scene(opt_path, sar_path, Path(work) / f"d_{tag}.tif", weights_dir=weights, config=config)
    off = read_raster(res["offsets"])  # the offset map holds (dx, dy)
    return np.stack([off[1], off[0]]), res


def warp_recovery_errors(work: str | Path, optical: np.ndarray, sar: np.ndarray, seed: int,
                         config=None, corr_px: float | None = None, n_tie: int = 150,
                         max_shift_px: float = 15.0, amplitude_px: float = 8.0,
                         matcher=None, weights: str | Path | None = None) -> dict:
    """The issue-22 protocol for one real pair: warp ``sar`` ``(h, w)`` by
    :func:`random_known_warp` (``corr_px``: its correlation length, default a tenth of the image),
    register the unwarped (F0) and the warped (F1) SAR against ``optical`` ``(C, h, w)`` and
    score :func:`warp_recovery` at ``n_tie`` seeded tie points kept clear of the border by the
    largest warp + 8 px.

    ``matcher``: ``f(optical, sar) -> (2, h, w)`` (dy, dx) offsets of another method; None: the
    dense mode with ``config`` and the descriptors in ``weights`` (through ``register_scene``). Returns mean px ``recovery`` /
    ``absolute`` / ``unwarped``, ``zero`` (mean |k|, what zero offsets score), the known ``shift``
    and ``seconds``; for the dense mode also both runs' ``confidence`` / ``kept`` (F0, F1).
    """
    import time
    h, w = sar.shape
    field, truth, shift = random_known_warp(h, w, seed, max_shift_px, amplitude_px, corr_px)
    rows, cols = tiepoint_sample(h, w, n_tie, int(max_shift_px + amplitude_px) + 8, seed)
    warped = warp_by_field(sar, field)
    t0 = time.time()
    extra = {}
    if matcher is None:
        (f0, r0), (f1, r1) = (dense_offsets(work, optical, sar, f"{seed}u", config, weights),
                              dense_offsets(work, optical, warped, f"{seed}w", config, weights))
        extra = {"confidence": (r0["confidence"], r1["confidence"]), "kept": (r0["kept"], r1["kept"])}
    else:
        f0, f1 = matcher(optical, sar), matcher(optical, warped)
    errs = {k: float(v.mean()) for k, v in warp_recovery(f0, f1, truth, rows, cols).items()}
    return errs | {"zero": float(np.hypot(*truth[:, rows, cols]).mean()), "shift": shift,
                   "seconds": time.time() - t0} | extra


def known_warp_errors(work: str | Path, optical: np.ndarray, sar: np.ndarray, seed: int,
                      config=None) -> dict[str, float]:
    """Warp a co-registered pair's SAR ``(h, w)`` by a known smooth field (a 2 px shift + a 4 px
    field of 80 px correlation), register it against ``optical`` ``(C, h, w)`` with the dense mode,
    and score the result against the field.

    Returns mean errors in px over the inner pixels (24 px border dropped: the warp moves content
    out there): ``dense``, ``zero`` (no registration), ``translation`` / ``affine`` (the true
    field's per-component median translation / its least-squares affine: about what a global model
    could at best reach), and
    ``mean_dy`` / ``mean_dx``, the dense field's mean minus the true field's mean (its bias).
    """
    h, w = sar.shape
    field, truth = known_warp(h, w, seed)
    off, _ = dense_offsets(work, optical, warp_by_field(sar, field), str(seed), config)  # (dy, dx)
    inner = (slice(24, h - 24), slice(24, w - 24))
    t = truth[(slice(None),) + inner].reshape(2, -1).astype(np.float64)  # (dy, dx)
    est = np.stack([off[0][inner].ravel(), off[1][inner].ravel()]).astype(np.float64)
    rows, cols = np.mgrid[inner]
    a = np.column_stack([rows.ravel(), cols.ravel(), np.ones(rows.size)])
    affine_res = [t[b] - a @ np.linalg.lstsq(a, t[b], rcond=None)[0] for b in range(2)]
    bias = est.mean(axis=1) - t.mean(axis=1)
    return {"dense": float(np.hypot(*(est - t)).mean()), "zero": float(np.hypot(*t).mean()),
            "translation": float(np.hypot(*(t - np.median(t, axis=1, keepdims=True))).mean()),
            "affine": float(np.hypot(*affine_res).mean()),
            "mean_dy": float(bias[0]), "mean_dx": float(bias[1])}


def sen12_pairs(root: str | Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The SEN1-2 patch pairs under ``root`` (as :func:`sarfusion.datasets.sen12.find_pairs` finds
    them): ``(name, optical (3, h, w) float32, sar (h, w) float32)``, both shifted by +1 so 0 stays
    "no data". Sorted by SAR path."""
    from sarfusion.datasets.sen12 import find_pairs, read_png
    return [(p.sar.stem, read_png(p.optical, 3).astype(np.float32) + 1, read_png(p.sar, 1)[0].astype(np.float32) + 1)
            for p in find_pairs(root)]


def capella_pair(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The Capella / Maxar Rotterdam sample (``real_samples/capella_rotterdam``; both files share
    one grid) as arrays: optical ``(3, 200, 200)`` float32 + 1 and the SAR's HH band ``(200, 200)``
    float32, dB shifted to >= 1, with its masked part (NaN in the file) at 0 = no data."""
    folder = Path(folder)
    opt = read_raster(folder / "rgb_unmasked.tif").astype(np.float32)[:3] + 1
    hh = read_raster(folder / "sar_masked.tif", bands=[1]).astype(np.float32)[0]
    valid = np.isfinite(hh)
    return opt, np.where(valid, np.nan_to_num(hh) - hh[valid].min() + 1, 0).astype(np.float32)


def multiearth_pair(site: str | Path, sar_date: str = "2019_06_08", optical_date: str = "2019_07_26",
                    polarisation: str = "VV") -> tuple[np.ndarray, np.ndarray]:
    """One MultiEarth S1 / S2 pair of a sample site folder, as
    :func:`sarfusion.datasets.multiearth.find_pairs` finds it: ``optical`` (3, h, w) float32
    (B4, B3, B2) and ``sar`` (h, w) float32 dB shifted positive (so 0 stays "no data")."""
    from sarfusion.datasets.multiearth import SAR_POLS, find_pairs, read_optical, read_sar
    from sarfusion.errors import InputError
    for scene in find_pairs(site):
        if scene.date != sar_date:
            continue
        for opt_scene in scene.optical:
            if opt_scene.date == optical_date:
                sar = read_sar(scene)[SAR_POLS.index(polarisation)]
                opt = read_optical(opt_scene)[0][[3, 2, 1]].astype(np.float32)  # B1..B4 -> B4, B3, B2
                return opt, sar - sar.min() + 1
    raise InputError(f"no Sentinel-1 {sar_date} / Sentinel-2 {optical_date} pair", site)

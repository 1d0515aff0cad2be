"""SN9 registration benchmark: the error table (zero / oracle affine / baseline / dense) on generated
scenes whose seeds were not used for training, and time + peak memory of the dense mode on a
4096 px scene and a 13,000 px one (tiled from a smaller generated pair, cheap to make).

    .venv/bin/python bench/bench_registration.py [--what table,real,speed4096,speed13k] [--size 2048]
    .venv/bin/python bench/bench_registration.py --what diagnose --size 4096 --test-seeds 200
    .venv/bin/python bench/bench_registration.py --what real

``diagnose`` splits the dense mode's error on generated scenes into what no smooth field can
follow (roof / tree tie points carry their layover) and what the matching gets wrong, and shows
where the fine levels settle when started from the TRUE ground field (their own fixed point).

``real`` (needs ``../shared/real_samples``; 15 s) scores the known-warp recovery on the real SEN1-2
and MultiEarth pairs beside the best translation / affine of the known field, with the dense
field's bias, and measures how far the UNWARPED MultiEarth pair is from co-registered on every
S1 date / polarisation and clear S2 date, and how much S1 and S2 share there (the global NCC
peak between two dates of one modality vs across the modalities).

``real26`` (needs ``../shared/real_samples``; about 45 s a pair on 2 cores) is the issue-22
protocol on the 26 real Sentinel-1 VH / Sentinel-2 RGB pairs (1024 px, 10 m): a seeded known warp
per pair (global shift up to +-15 px per axis + a smooth field up to +-8 px, correlation length a
tenth of the image), 150 seeded tie points, scored as warp recovery |F1 - F0 - k| (the pairs are
not aligned to the pixel, so an absolute error has a floor) for zero offsets, a plain CFOG
reference matcher (written here, not the project's code) and the training-free dense mode, with
the even-index pairs (which chose the dense mode's medium-resolution settings) and the odd-index
ones (held out) summarised apart; then the same protocol on the 256 px SEN1-2 patches and the
MultiEarth pair (4 warps; correlation length 102 px, that of the 1024 px pairs), and the Capella /
Maxar Rotterdam crop (200 px at 4.5 m, another sensor; 6 warps, correlation a tenth of the image).
``--pairs N``
runs the first N S1/S2 pairs only (and skips the other sets). The ``learned`` column: descriptors
trained by ``register-train --pairs`` (demo preset) on the even-index pairs only, then scored on the
odd-index ones (an area split: every pair is its own area); ``--no-learned`` skips it,
``--learned-weights DIR`` reuses a folder with ``descriptors_medium.pt``.

    .venv/bin/python bench/bench_registration.py --what real26 [--pairs 2] [--no-learned]
    .venv/bin/python bench/bench_registration.py --what small-tune

``small-tune`` (about 10 min on 2 cores) shows how the 256 px route's wide global search was chosen, on crops
of the 26 pairs, not on the SEN1-2 / MultiEarth patches it is reported on.

    .venv/bin/python bench/bench_registration.py --what route-tune

``route-tune`` (about 13 min on 2 cores) shows where the medium-resolution route takes over from the
small-image one (``DenseConfig.medium_min_side``): central crops of 256 / 288 / 320 / 384 px of the 26
pairs through both routes, even-index pairs choosing, odd ones held out.

    .venv/bin/python bench/bench_registration.py --what peak-evidence

``peak-evidence`` (about 2 min) asks whether each unwarped SEN1-2 patch shows its own alignment at
all: the best similarity near zero offsets against the best far from it, for mutual information of
blurred intensities and the dense mode's oriented-gradient NCC (sen12_6 loses on all four).

Each timing runs in a fresh subprocess and reports its peak resident memory (ru_maxrss).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sarfusion.io.raster import RasterWriter, raster_info, read_raster
from sarfusion.metrics.tiepoints import read_tiepoints, reference_offsets, score_tiepoints


def scenes(out: Path, size: int, seed: int, split: str) -> list[dict]:
    try:
        from sarfusion.synth.sn9 import generate_sn9
        return [{k: str(v) for k, v in s.items()} for s in generate_sn9(out / f"seed{seed}", size=size, seed=seed, split=split)]
    except ImportError:
        from sarfusion.registration.testpair import make_test_pair
        return [make_test_pair(out, size=size, seed=seed)]


def oracle_affine(scene: dict, out_path: Path) -> Path:
    """The best affine fitted (least squares) to the true tie-point offsets, as an offset map."""
    opt = raster_info(scene["optical"])
    pts = read_tiepoints(scene["tiepoints"])
    dx, dy = reference_offsets(pts, opt, raster_info(scene["sar"]))
    a = np.column_stack([pts["optical_col"], pts["optical_row"], np.ones(len(pts))])
    cx, cy = (np.linalg.lstsq(a, d, rcond=None)[0] for d in (dx, dy))
    with RasterWriter(out_path, opt.width, opt.height, 2, np.float32, opt.geotransform, opt.crs_wkt) as w:
        for r0 in range(0, opt.height, 1024):
            rows = np.arange(r0, min(r0 + 1024, opt.height))[:, None]
            cols = np.arange(opt.width)[None, :]
            w.write(np.stack([cx[0] * cols + cx[1] * rows + cx[2], cy[0] * cols + cy[1] * rows + cy[2]]),
                    0, r0)
    return out_path


def table(work: Path, size: int, train_seeds: list[int], test_seeds: list[int], preset: str = "demo",
          descriptor_steps: int | None = None, weights_dir: str | None = None,
          descriptor_batch: int | None = None) -> None:
    """The error table; trains the keypoint nets and the descriptors on ``train_seeds`` unless
    ``weights_dir`` already holds both (then ``train_seeds`` only labels the table)."""
    from sarfusion.registration.api import register_scene
    from sarfusion.config import choose_preset
    from sarfusion.registration.descriptors import PRESETS, train_descriptors
    from sarfusion.registration.keypoints import train_keypoints
    wdir = Path(weights_dir) if weights_dir else work / "weights"
    if not ((wdir / "keypoints.pt").is_file() and (wdir / "descriptors.pt").is_file()):
        for s in train_seeds:
            scenes(work / "train", size, s, "train")
        t0 = time.time()
        train_keypoints(work / "train", wdir, "demo")
        print(f"keypoint baseline (demo preset) trained in {time.time() - t0:.1f} s")
        t0 = time.time()
        cfg = choose_preset(PRESETS, preset)
        if descriptor_steps:
            cfg.engine.max_steps = descriptor_steps
        if descriptor_batch:
            cfg.engine.batch_size = descriptor_batch
        train_descriptors(work / "train", wdir, config=cfg)
        print(f"dense descriptors ({preset} preset, {cfg.engine.max_steps} steps of {cfg.engine.batch_size}) trained in {time.time() - t0:.1f} s")
    rows = {k: [] for k in ("zero", "oracle affine", "baseline", "dense (training-free)", "dense (learned)")}
    secs = {k: [] for k in rows}
    runs = (("zero", "none", None), ("baseline", "baseline", wdir),
            ("dense (training-free)", "dense", None), ("dense (learned)", "dense", wdir))
    for s in test_seeds:
        for sc in scenes(work / "test", size, s, "test"):
            for name, mode, run_weights in runs:
                r = register_scene(sc["optical"], sc["sar"], work / f"{name.split()[0]}_{s}_{len(rows[name])}.tif",
                                   mode, run_weights)
                rows[name].append(score_tiepoints(sc["optical"], sc["sar"], sc["tiepoints"], r["offsets"]))
                secs[name].append(r["seconds"])
                print(f"  seed {s} {name}: {rows[name][-1]['mean_px']:.2f} px", flush=True)
            rows["oracle affine"].append(score_tiepoints(sc["optical"], sc["sar"], sc["tiepoints"],
                                                         oracle_affine(sc, work / f"affine_{s}.tif")))
    print(f"\nSN9 synthetic scenes {size} px, test seeds {test_seeds} (train seeds {train_seeds})")
    print(f"| method | mean error (px) | mean error (m) | SN9 score | seconds/scene |")
    print(f"|---|---|---|---|---|")
    for name, res in rows.items():
        px = np.mean([r["mean_px"] for r in res])
        m = np.mean([r["mean_m"] for r in res])
        sc = np.mean([r["score"] for r in res])
        t = f"{np.mean(secs[name]):.1f}" if secs[name] else "-"
        print(f"| {name} | {px:.2f} | {m:.2f} | {sc:.2f} | {t} |")
    zero = np.mean([r["mean_px"] for r in rows["zero"]])
    for name in ("dense (training-free)", "dense (learned)"):
        print(f"{name} / zero = {np.mean([r['mean_px'] for r in rows[name]]) / zero:.3f} (target <= 0.25)")


def _tile_raster(src: str, dst: Path, size: int) -> None:
    """A ``size`` x ``size`` raster made by mirroring-tiling ``src`` (same georef origin / pixel)."""
    info = raster_info(src)
    base = read_raster(src)
    with RasterWriter(dst, size, size, info.count, info.dtype, info.geotransform, info.crs_wkt) as w:
        for r0 in range(0, size, info.height):
            for c0 in range(0, size, info.width):
                blk = base
                if (r0 // info.height) % 2:
                    blk = blk[:, ::-1]
                if (c0 // info.width) % 2:
                    blk = blk[:, :, ::-1]
                w.write(blk[:, :min(info.height, size - r0), :min(info.width, size - c0)], c0, r0)


def timed(optical: str, sar: str, out: Path, weights: str | None = None) -> dict:
    code = (f"import time, resource, json; from sarfusion.registration.api import register_scene; "
            f"t=time.time(); register_scene({optical!r}, {sar!r}, {str(out)!r}, weights_dir={weights!r}); "
            f"print(json.dumps({{'seconds': time.time()-t, "
            f"'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024}}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def speed(work: Path, size: int, base: int, weights: str | None = None) -> None:
    """Dense registration time and peak memory of a ``size`` px scene (tiled from a ``base`` px
    one), training-free and, with ``weights``, with the learned descriptors in that folder."""
    sc = scenes(work / f"speed{size}", base, 99, "test")[0]
    if size != base:
        sar_info, opt_info = raster_info(sc["sar"]), raster_info(sc["optical"])
        opt, sar = work / f"big_optical_{size}.tif", work / f"big_sar_{size}.tif"
        _tile_raster(sc["optical"], opt, size)
        _tile_raster(sc["sar"], sar, int(round(size * opt_info.pixel_size[0] / sar_info.pixel_size[0])))
        sc = {"optical": str(opt), "sar": str(sar)}
    for w in [None] + ([weights] if weights else []):
        r = timed(sc["optical"], sc["sar"], work / f"speed_{size}.tif", w)
        print(f"dense registration of a {size} x {size} scene on CPU "
              f"({'learned descriptors from ' + w if w else 'training-free'}): {r['seconds']:.1f} s, "
              f"peak memory {r['peak_rss_mb']:.0f} MB", flush=True)


def _tie_errors(grid, field, pts, ref_dx: np.ndarray, ref_dy: np.ndarray) -> np.ndarray:
    """Scorer-equivalent error (optical px) of a grid offset field at the tie points."""
    sx, sy = grid.optical_scale
    gr, gc = grid.optical_to_grid(pts["optical_row"].to_numpy() + 0.5, pts["optical_col"].to_numpy() + 0.5)
    off = field.sample(gr, gc)
    return np.hypot(off[1] * sx - ref_dx, off[0] * sy - ref_dy)


def diagnose(work: Path, size: int, test_seeds: list[int], weights: str | None = None) -> None:
    from sarfusion.engine import select_device
    from sarfusion.registration.align import scene_grid
    from sarfusion.registration.dense import dense_field
    from sarfusion.registration.descriptors import load_descriptors
    from sarfusion.registration.field import NodeField
    from sarfusion.synth.sn9 import ground_offsets
    descriptors = load_descriptors(weights, select_device())
    for seed in test_seeds:
        sc = scenes(work / "diagnose", size, seed, "test")[0]
        opt = raster_info(sc["optical"])
        pts = read_tiepoints(sc["tiepoints"])
        ref_dx, ref_dy = reference_offsets(pts, opt, raster_info(sc["sar"]))
        rows, cols = pts["optical_row"].to_numpy() + 0.5, pts["optical_col"].to_numpy() + 0.5
        g_dx, g_dy, look = ground_offsets(seed, size, rows, cols)
        layover = np.hypot(ref_dx - g_dx, ref_dy - g_dy)
        on_roof = layover > 3
        grid = scene_grid(sc["optical"], sc["sar"])
        t0 = time.time()
        field, _ = dense_field(grid, descriptors=descriptors)
        seconds = time.time() - t0
        err = _tie_errors(grid, field, pts, ref_dx, ref_dy)
        # The true ground field as a lattice prior (every 32 optical px), in grid px.
        sx, sy = grid.optical_scale
        step = 32
        lr, lc = np.mgrid[step // 2:size:step, step // 2:size:step].astype(np.float64) + 0.5
        t_dx, t_dy, _ = ground_offsets(seed, size, lr, lc)
        r0, c0 = grid.optical_to_grid(np.array([lr[0, 0]]), np.array([lc[0, 0]]))
        truth = NodeField(float(r0[0]), float(c0[0]), step / sx, np.stack([t_dy / sy, t_dx / sx]).astype(np.float32))
        settled, _ = dense_field(grid, prior=truth, descriptors=descriptors)
        err_fixed = _tie_errors(grid, settled, pts, ref_dx, ref_dy)
        grid_r, grid_c = grid.optical_to_grid(lr, lc)
        dev = np.hypot(*(field.sample(grid_r, grid_c) - truth.sample(grid_r, grid_c)) * np.array([sy, sx])[:, None, None])
        n = len(pts)
        zero = float(np.hypot(ref_dx, ref_dy).mean())
        print(f"seed {seed} ({size} px, look {look}, {n} tie points): zero {zero:.2f} px, dense {err.mean():.2f} px "
              f"({err.mean() / zero:.3f} x zero, {seconds:.0f} s)")
        print(f"  {on_roof.sum()} tie points on roofs / trees (layover {layover[on_roof].mean():.1f} px): "
              f"the true ground field alone scores {layover.mean():.2f} px overall; dense error "
              f"{err[on_roof].sum() / n:.2f} px of the mean comes from them, {err[~on_roof].sum() / n:.2f} px "
              f"from the {(~on_roof).sum()} ground points")
        print(f"  dense field vs the true ground field over the scene: mean {dev.mean():.2f} px, "
              f"median {np.median(dev):.2f}, p90 {np.percentile(dev, 90):.2f}")
        drift = (settled.sample(grid_r, grid_c) - truth.sample(grid_r, grid_c)) * np.array([sy, sx])[:, None, None]
        print(f"  fine levels started from the true ground field settle at {err_fixed.mean():.2f} px "
              f"(their matching bias / noise; the rest of the dense error is where the coarse levels "
              f"leave them); their field's mean drift from it (dy, dx) ({drift[0].mean():+.2f}, "
              f"{drift[1].mean():+.2f}) px (sensor to the {look})")


def real(work: Path, root: Path) -> None:
    """Known-warp errors on the real co-registered pairs, beside what a global model could reach,
    and the MultiEarth pair's own alignment: the scene-wide translation measured on the UNWARPED
    pairs of every S1 date / polarisation against every clear S2 date (0 if truly co-registered)."""
    import torch
    from sarfusion.clouds import assess_clouds
    from sarfusion.registration.dense import DenseConfig, global_shift
    from sarfusion.registration.testpair import array_pair_grid, known_warp_errors, multiearth_pair, sen12_pairs
    if not root.is_dir():
        print(f"real samples not found at {root}; skipped")
        return
    print("\nreal pairs, known warp (2 px shift + 4 px smooth field), mean px over inner pixels")
    print(f"{'pair':28s} {'zero':>6s} {'best transl.':>12s} {'best affine':>11s} {'dense':>6s}  dense bias (dy, dx)")
    rows = [(name, opt, sar, i) for i, (name, opt, sar) in enumerate(sen12_pairs(root / "sen1-2" / "ROIs1158_spring"))]
    me = root / "multiearth"
    rows.append(("multiearth VV 06-08 / S2 07-26", *multiearth_pair(me), 0))
    dense = []
    for name, opt, sar, seed in rows:
        r = known_warp_errors(work / "real", opt, sar, seed)
        dense.append(r["dense"])
        print(f"{name[-28:]:28s} {r['zero']:6.2f} {r['translation']:12.2f} {r['affine']:11.2f} {r['dense']:6.2f}  "
              f"({r['mean_dy']:+.2f}, {r['mean_dx']:+.2f})")
    print(f"SEN1-2 mean {np.mean(dense[:-1]):.2f} px; MultiEarth {dense[-1]:.2f} px")
    print("\nMultiEarth unwarped pairs: scene-wide translation (dy, dx) px [NCC] per S1 date (rows) and S2 date")
    cfg, dev = DenseConfig(), torch.device("cpu")
    s1_dates = sorted(p.name[-15:-5] for p in (me / "sent1").glob("Sentinel1_VV_*.tiff"))
    s2_dates = sorted(r["path"][-10:] for r in assess_clouds([me / "sent2"]) if r["keep"])  # clear dates
    shifts = []
    for pol in ("VV", "VH"):
        for d1 in s1_dates:
            cells = []
            for d2 in s2_dates:
                opt, sar = multiearth_pair(me, d1, d2, pol)
                shift, st = global_shift(array_pair_grid(work, opt, sar, "me"), cfg, dev)
                shifts.append(shift)
                cells.append(f"({shift[0]:+5.1f},{shift[1]:+5.1f}) [{st['global_score']:.2f}]")
            print(f"  {pol} {d1}: " + "  ".join(cells))
    med = np.median(shifts, axis=0)
    print(f"  median over {len(shifts)} pairs: dy {med[0]:+.2f} dx {med[1]:+.2f} px")
    # How much the two modalities share, beside what one shares with itself: the same global
    # matcher between two S2 dates and between two S1 dates (log intensities, single band).
    print("\nMultiEarth global NCC peak: within one modality vs across (same matcher, unwarped)")
    s1 = {d: multiearth_pair(me, d, s2_dates[-1])[1] for d in s1_dates}
    s2 = {d: np.log(multiearth_pair(me, s1_dates[0], d)[0].mean(axis=0)) for d in s2_dates}
    for name, images_a, images_b in (("S2 vs S2", s2, s2), ("S1 VV vs S1 VV", s1, s1),
                                     ("S2 vs S1 VV", s2, s1)):
        out = []
        for da, a in images_a.items():
            for db, b in images_b.items():
                if images_a is images_b and da >= db:
                    continue
                shift, st = global_shift(array_pair_grid(work, a[None], b, "me"), cfg, dev)
                out.append((*shift, st["global_score"]))
        out = np.array(out)
        print(f"  {name:15s} {len(out):2d} pairs: NCC median {np.median(out[:, 2]):.2f}, shift (dy, dx) median "
              f"({np.median(out[:, 0]):+.1f}, {np.median(out[:, 1]):+.1f}), spread (std) "
              f"({out[:, 0].std():.1f}, {out[:, 1].std():.1f}) px")



def _mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 16) -> float:
    """Mutual information (nats) of two equally shaped float arrays, from a bins x bins joint
    histogram."""
    joint, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins)
    p = joint / joint.sum()
    outer = p.sum(axis=1, keepdims=True) @ p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / outer[nz])).sum())


def peak_evidence(root: Path, radius: int = 24, near: int = 4, far: int = 8) -> list[dict] | None:
    """Is there a similarity peak at the alignment at all? For every UNWARPED SEN1-2 patch (co-registered
    to a few px), the best similarity within +-``near`` px of zero offsets against the best beyond
    +-``far`` px, over a +-``radius`` px search of the central template, for four measures: mutual
    information of the intensities blurred by 2 and 4 px (optical band mean, log SAR), and the dense
    mode's own oriented-gradient NCC at its two scene-wide scales. A patch whose near peak loses to a
    far one on every measure holds no evidence of its alignment that these measures can see."""
    import cv2
    import torch
    from sarfusion.registration.align import to_intensity
    from sarfusion.registration.dense import DenseConfig
    from sarfusion.registration.features import oriented_gradients
    from sarfusion.registration.matching import ncc_maps
    from sarfusion.registration.testpair import sen12_pairs
    folder = root / "sen1-2" / "ROIs1158_spring"
    if not folder.is_dir():
        print(f"SEN1-2 sample not found at {folder}; skipped")
        return None
    cfg = DenseConfig()
    shifts = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    dist = np.abs(shifts).max(axis=0)
    print(f"\nSEN1-2 unwarped patches: best similarity within +-{near} px of zero / beyond +-{far} px "
          f"(search +-{radius} px); '<' where the alignment loses")
    rows = []
    for i, (name, opt, sar) in enumerate(sen12_pairs(folder)):
        side = min(sar.shape) - 2 * radius
        row: dict = {"patch": f"sen12_{i}", "name": name, "near_far": {}}
        for sigma in (2, 4):
            o = cv2.GaussianBlur(opt.mean(axis=0), (0, 0), sigma)[radius:radius + side, radius:radius + side]
            s = cv2.GaussianBlur(np.log(sar), (0, 0), sigma)
            surface = np.array([[_mutual_information(o, s[radius + dy:radius + dy + side, radius + dx:radius + dx + side])
                                 for dx in range(-radius, radius + 1)] for dy in range(-radius, radius + 1)])
            row["near_far"][f"mi{sigma}"] = (float(surface[dist <= near].max()), float(surface[dist > far].max()))
        oi, si = to_intensity(opt, "optical"), to_intensity(sar[None], "sar")
        for pre, sigma in cfg.small_global_scales:
            fo = oriented_gradients(oi, cfg.n_orient, pre, sigma)[:, radius:radius + side, radius:radius + side]
            surface = ncc_maps(fo[None], oriented_gradients(si, cfg.n_orient, pre, sigma)[None], torch.device("cpu"))[0]
            row["near_far"][f"ncc{sigma:g}"] = (float(surface[dist <= near].max()), float(surface[dist > far].max()))
        rows.append(row)
        cells = [f"{k} {a:.3f}{'<' if a < b else '>'}{b:.3f}" for k, (a, b) in row["near_far"].items()]
        print(f"  {row['patch']:9s} {name[-9:]:>9s}  " + "  ".join(cells))
    lost = [r["patch"] for r in rows if all(a < b for a, b in r["near_far"].values())]
    print(f"  alignment loses on every measure: {', '.join(lost) or 'none'}")
    return rows

# --- issue 22: the real S1/S2 pairs, warp recovery ------------------------------------------------

def cfog_features(image: np.ndarray, n_orient: int = 9, sigma: float = 1.5) -> np.ndarray:
    """CFOG-style channel features of a grey image ``(h, w)``: ``(n_orient, h, w)`` float32.

    Per orientation theta in [0, pi), |gradient . (cos theta, sin theta)| (absolute: optical and
    SAR often invert contrast across an edge), Gaussian-smoothed in space (``sigma`` px) and by
    [1, 2, 1] across neighbouring orientations (circular), then L2-normalised across channels
    per pixel so that only the local edge pattern, not its strength, is compared.
    """
    import cv2
    g = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)  # tame speckle / noise first
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    th = np.arange(n_orient) * np.pi / n_orient
    ch = np.stack([cv2.GaussianBlur(np.abs(np.cos(t) * gx + np.sin(t) * gy), (0, 0), sigma) for t in th])
    ch = 0.5 * ch + 0.25 * (np.roll(ch, 1, 0) + np.roll(ch, -1, 0))
    return (ch / (np.sqrt((ch ** 2).sum(0, keepdims=True)) + 1e-6)).astype(np.float32)


def cfog_field(optical: np.ndarray, sar: np.ndarray, template: int = 64, step: int = 32,
               search: int = 24, chunk: int = 64) -> np.ndarray:
    """Reference CFOG matcher: dense offsets ``(2, h, w)`` float32 (dy, dx) px such that optical
    pixel p sits at SAR p + offset. ``optical`` ``(C, h, w)`` or ``(h, w)``, ``sar`` ``(h, w)``,
    same grid.

    A ``template`` px optical patch on a node grid (every ``step`` px) is matched by FFT
    sum-of-squared-differences of the CFOG features within +-``search`` px of the SAR, with a
    parabolic sub-pixel peak; a 3x3 median of the node offsets removes outliers and bilinear
    interpolation (constant beyond the outer nodes) gives the dense field.
    """
    import scipy.fft
    from scipy import ndimage
    grey = optical.mean(0) if optical.ndim == 3 else optical
    fo, fs = cfog_features(grey), cfog_features(sar)
    h, w = sar.shape
    half, win = template // 2, template + 2 * search
    reach = half + search  # a node's search window must lie inside the image
    nr = np.arange(reach, h - reach + 1, step)
    nc = np.arange(reach, w - reach + 1, step)
    nodes = [(r, c) for r in nr for c in nc]
    off = np.zeros((2, len(nodes)), np.float64)
    n_pos = 2 * search + 1
    for i0 in range(0, len(nodes), chunk):
        batch = nodes[i0:i0 + chunk]
        t = np.stack([fo[:, r - half:r + half, c - half:c + half] for r, c in batch])
        s = np.stack([fs[:, r - reach:r + reach, c - reach:c + reach] for r, c in batch])
        # corr[u] = sum_x T(x) S(x + u): exact (no wrap-around) for u in [0, 2 * search].
        ft = scipy.fft.rfft2(t, s=(win, win), workers=1)
        fsr = scipy.fft.rfft2(s, workers=1)
        corr = scipy.fft.irfft2(fsr * np.conj(ft), s=(win, win), workers=1).sum(1)[:, :n_pos, :n_pos]
        # SSD = sum T^2 - 2 corr + (sum of S^2 under the template), the last by an integral image.
        ii = np.pad(np.cumsum(np.cumsum((s ** 2).sum(1), 1), 2), ((0, 0), (1, 0), (1, 0)))
        s2 = (ii[:, template:template + n_pos, template:template + n_pos] - ii[:, :n_pos, template:template + n_pos]
              - ii[:, template:template + n_pos, :n_pos] + ii[:, :n_pos, :n_pos])
        ssd = s2 - 2 * corr  # sum T^2 is constant per node
        for j, e in enumerate(ssd):
            u, v = np.unravel_index(np.argmin(e), e.shape)
            du = _parabola(e[u - 1, v], e[u, v], e[u + 1, v]) if 0 < u < n_pos - 1 else 0.0
            dv = _parabola(e[u, v - 1], e[u, v], e[u, v + 1]) if 0 < v < n_pos - 1 else 0.0
            off[:, i0 + j] = (u + du - search, v + dv - search)
    grid = off.reshape(2, len(nr), len(nc))
    grid = np.stack([ndimage.median_filter(g, size=3, mode="nearest") for g in grid])
    rows = np.clip((np.arange(h) - nr[0]) / step, 0, len(nr) - 1)
    cols = np.clip((np.arange(w) - nc[0]) / step, 0, len(nc) - 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([ndimage.map_coordinates(g, [rr, cc], order=1) for g in grid]).astype(np.float32)


def _parabola(a: float, b: float, c: float) -> float:
    """Sub-pixel position of the extremum of a parabola through (-1, a), (0, b), (1, c)."""
    den = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den > 0 else 0.0


R26_METHODS = ("zero", "cfog", "dense")


def real26_pair(work: Path, optical: np.ndarray, sar: np.ndarray, seed: int, n_tie: int = 150,
                methods: tuple[str, ...] = R26_METHODS, corr_px: float | None = None,
                weights: Path | None = None) -> dict:
    """One pair of the issue-22 protocol (:func:`~sarfusion.registration.testpair.warp_recovery_errors`):
    ``optical`` ``(3, h, w)`` float32, ``sar`` ``(h, w)`` float32, both > 0 (0 is no data). Returns
    the known shift, the mean |k| at the tie points and per method the mean ``recovery`` /
    ``absolute`` / ``unwarped`` errors (px) and seconds (dense: also confidence / kept).
    ``learned`` among ``methods``: the dense mode with the descriptors in ``weights``."""
    from sarfusion.registration.testpair import warp_recovery_errors
    matchers = {"zero": lambda o, s: np.zeros((2,) + s.shape, np.float32), "cfog": cfog_field, "dense": None,
                "learned": None}
    out = {}
    for m in methods:
        r = warp_recovery_errors(work, optical, sar, seed, corr_px=corr_px, n_tie=n_tie, matcher=matchers[m],
                                 weights=weights if m == "learned" else None)
        out |= {"shift": r.pop("shift"), "k_mean": r.pop("zero")}
        out[m] = r
    return out


def recovery_table(work: Path, title: str, cases: list, split: bool = False,
                   learned_weights: Path | None = None) -> dict:
    """Print the warp-recovery table of ``cases`` (``(name, optical, sar, seed, corr_px)``) for
    every method of :data:`R26_METHODS`; ``split``: also summarise the even- / odd-index cases
    apart (the dense mode's medium-resolution settings were chosen on the even ones).
    ``learned_weights``: also the dense mode with those descriptors (trained on the even-index
    cases), on the odd-index cases only."""
    print(f"\n{title}")
    print(f"{'pair':8s} {'shift (dy, dx)':>15s} {'|k|':>6s}  " + "  ".join(f"{m + ' rec/abs/|F0|':>22s}" for m in R26_METHODS)
          + ("  learned rec/abs/|F0|" if learned_weights else "") + "  dense conf (F0, F1)  seconds (cfog, dense)")
    res = {}
    for i, (name, opt, sar, seed, corr) in enumerate(cases):
        with_learned = learned_weights is not None and i % 2 == 1
        methods = R26_METHODS + (("learned",) if with_learned else ())
        r = real26_pair(work, opt, sar, seed, corr_px=corr, methods=methods, weights=learned_weights)
        res[name] = r
        conf = r["dense"].get("confidence", (None, None))
        learned = ""
        if learned_weights is not None:
            learned = (f"  {r['learned']['recovery']:8.2f}/{r['learned']['absolute']:5.2f}/{r['learned']['unwarped']:5.2f}"
                       if with_learned else f"  {'(trained on it)':>21s}")
        print(f"{name:8s} ({r['shift'][0]:+6.2f},{r['shift'][1]:+6.2f}) {r['k_mean']:6.2f}  "
              + "  ".join(f"{r[m]['recovery']:8.2f}/{r[m]['absolute']:5.2f}/{r[m]['unwarped']:5.2f}" for m in R26_METHODS)
              + learned + f"  ({conf[0]:.2f}, {conf[1]:.2f})  ({r['cfog']['seconds']:.0f}, {r['dense']['seconds']:.0f})",
              flush=True)
    names = list(res)
    parts = {"all": names}
    if split:
        parts |= {"even (chose)": names[0::2], "odd (held out)": names[1::2]}
    summary = {"pairs": len(res), "methods": {}}
    print("\n| pairs | method | mean recovery (px) | worst pair (px) | worse than zero | mean abs |F1 - k| (px) | mean unwarped |F0| (px) |")
    print("|---|---|---|---|---|---|---|")
    for part, sel in parts.items():
        for m in R26_METHODS + ("learned",):
            if not all(m in res[n] for n in sel):
                continue  # learned: the held-out (odd) cases only
            rec = {n: res[n][m]["recovery"] for n in sel}
            worst = max(rec, key=rec.get)
            st = {"mean": float(np.mean(list(rec.values()))), "worst": rec[worst], "worst_pair": worst,
                  "worse_than_zero": int(sum(rec[n] > res[n]["k_mean"] + 1e-3 for n in sel)),  # float32 vs 64 rounding
                  "abs": float(np.mean([res[n][m]["absolute"] for n in sel])),
                  "unwarped": float(np.mean([res[n][m]["unwarped"] for n in sel]))}
            summary["methods"].setdefault(part, {})[m] = {k: round(v, 3) if isinstance(v, float) else v for k, v in st.items()}
            print(f"| {part} ({len(sel)}) | {m} | {st['mean']:.2f} | {st['worst']:.2f} ({worst}) | {st['worse_than_zero']} | "
                  f"{st['abs']:.2f} | {st['unwarped']:.2f} |")
    print(json.dumps(summary))
    return summary


def real26(work: Path, root: Path, n_pairs: int | None = None, learned: bool = True,
           learned_weights: Path | None = None) -> dict | None:
    """The issue-22 warp-recovery tables: the real S1/S2 pairs under ``root / s1s2_pairs`` (1024 px;
    the known warp's correlation length a tenth of the image, 102 px), then the SEN1-2 patches and
    the MultiEarth pair (256 px; the same physical warp: 102 px correlation, not a tenth of the
    patch, which would strain it by ~30%). Sets that are absent are skipped. ``learned``: also the
    dense mode with descriptors trained (demo preset) on the even-index pairs, scored on the odd
    ones (``learned_weights``: a folder holding them already)."""
    from sarfusion.datasets.pairs import find_pairs
    from sarfusion.registration.testpair import capella_pair, multiearth_pair, sen12_pairs
    out = {}
    pairs_root = root / "s1s2_pairs"
    found = s1s2_pairs(root, n_pairs)
    if found is not None:
        # seed = the pair's index in name order
        cases = [(name, opt, sar, seed, None) for seed, (name, opt, sar) in enumerate(found)]
        if learned and learned_weights is None and len(found) >= 2:
            from sarfusion.registration.descriptors import train_pair_descriptors
            learned_weights = work / "real26_learned_even"
            t0 = time.time()
            train_pair_descriptors([pairs_root], learned_weights, "demo",  # the even cases of the table only
                                   exclude={p.name for p in find_pairs(pairs_root)} - {c[0] for c in cases[0::2]})
            print(f"learned descriptors: trained on the {len(cases[0::2])} even-index pairs in {time.time() - t0:.0f} s "
                  f"({learned_weights})")
        out["s1s2"] = recovery_table(
            work / "real26", f"real S1/S2 pairs ({len(cases)}), issue-22 warp recovery |F1 - F0 - k| at 150 tie "
            "points, mean px (known warp: shift <= 15 px/axis + smooth field <= 8 px, corr. length h/10); "
            "abs = |F1 - k|, |F0| = offset on the unwarped pair", cases, split=True,
            learned_weights=learned_weights if learned else None)
    sen12 = root / "sen1-2" / "ROIs1158_spring"
    if sen12.is_dir() and n_pairs is None:
        cases = [(f"sen12_{i}", opt, sar, i, 102.4) for i, (_, opt, sar) in enumerate(sen12_pairs(sen12))]
        out["sen12"] = recovery_table(work / "sen12", "SEN1-2 patches (10, 256 px), the same protocol", cases)
    me = root / "multiearth"
    if me.is_dir() and n_pairs is None:
        opt, sar = multiearth_pair(me)
        cases = [(f"me_{i}", opt, sar, i, 102.4) for i in range(4)]
        out["multiearth"] = recovery_table(work / "multiearth", "MultiEarth S1 VV / S2 pair (256 px), the same "
                                           "protocol, 4 warps (seeds 0-3)", cases)
    capella = root / "capella_rotterdam"
    if capella.is_dir() and n_pairs is None:
        opt, sar = capella_pair(capella)
        cases = [(f"capella_{i}", opt, sar, i, None) for i in range(6)]
        out["capella"] = recovery_table(work / "capella", "Capella HH / Maxar RGB, Rotterdam (200 px, 4.5 m, the SAR's "
                                        "top 39% masked), the same protocol (correlation a tenth of the image), "
                                        "6 warps (seeds 0-5)", cases)
    return out


def s1s2_pairs(root: Path, n: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]] | None:
    """The real S1/S2 pairs under ``root / s1s2_pairs`` (the first ``n`` by name; all by default)
    as ``(name, optical (3, h, w), sar (h, w))`` float32 shifted by +1 so that 0 stays "no data"
    for the dense mode; None (and a line saying so) when absent."""
    from sarfusion.datasets.pairs import find_pairs, read_optical, read_sar
    pairs_root = root / "s1s2_pairs"
    if not pairs_root.is_dir():
        print(f"real S1/S2 pairs not found at {pairs_root}; skipped")
        return None
    return [(p.name, read_optical(p.optical).pixels.astype(np.float32) + 1,
             read_sar(p.sar).pixels[0].astype(np.float32) + 1) for p in find_pairs(pairs_root)[:n]]


def small_tune(work: Path, root: Path) -> dict | None:
    """How the small-image route's wide global search was chosen (DenseConfig.small_wide_radius /
    small_wide_ratio), on data it is not reported on: two 256 px crops of each of the 26 real
    S1/S2 pairs (offsets (128, 128) and (640, 640)), never the SEN1-2 / MultiEarth patches.
    Prints the distinctiveness ratio of the +-24 px global peak on the matched crops (unwarped and
    warped) and on chance crops (the optical crop of pair i against the SAR crop of pair i + 7),
    then the issue-22 warp recovery (seeds 1000 + 2i + j, 102 px correlation) on the matched crops,
    the absolute error of the older known-warp test there (it sees what the unwarped and warped runs
    share; the crops' own few-px misalignment puts a floor under it) and the mean offset written for
    the chance crops, for +-12 only, +-24 always and the package's choice (+-24 when its peak ratio
    reaches the chance crops' 95th percentile and the peak lies beyond the +-12 px reach)."""
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from sarfusion.registration.dense import DenseConfig, global_shift
    from sarfusion.registration.testpair import (array_pair_grid, dense_offsets, known_warp_errors, random_known_warp,
                                                 warp_by_field, warp_recovery_errors)
    data = s1s2_pairs(root)
    if data is None:
        return None
    matched, chance = [], []
    for i, (name, opt, sar) in enumerate(data):
        for j, r0 in enumerate((128, 640)):
            box = (slice(r0, r0 + 256), slice(r0, r0 + 256))
            matched.append((f"{name}_{j}", opt[(slice(None), *box)].copy(), sar[box].copy(), 1000 + 2 * i + j))
            chance.append((f"{name}_{j}", opt[(slice(None), *box)].copy(), data[(i + 7) % len(data)][2][box].copy()))
    base = DenseConfig()

    def wide_ratio(opt: np.ndarray, sar: np.ndarray) -> float:
        grid = array_pair_grid(work, opt, sar, "tune")
        return global_shift(grid, base, torch.device("cpu"), base.small_wide_radius)[1]["global_ratio"]

    ratios = {"matched": [], "chance": [wide_ratio(o, s) for _, o, s in chance]}
    for _, opt, sar, seed in matched:
        field = random_known_warp(256, 256, seed, 15.0, 8.0, 102.4)[0]
        ratios["matched"] += [wide_ratio(opt, sar), wide_ratio(opt, warp_by_field(sar, field))]
    out = {"ratio": {}}
    for kind, v in ratios.items():
        v = np.array(v)
        out["ratio"][kind] = {"p5": float(np.percentile(v, 5)), "p50": float(np.median(v)),
                              "p95": float(np.percentile(v, 95)), "max": float(v.max()),
                              "passing": float((v >= base.small_wide_ratio).mean())}
        print(f"+-{base.small_wide_radius} px peak ratio, {kind} ({len(v)}): p5 {out['ratio'][kind]['p5']:.4f} "
              f"median {out['ratio'][kind]['p50']:.4f} p95 {out['ratio'][kind]['p95']:.4f} max {v.max():.4f}; "
              f"at or above {base.small_wide_ratio}: {out['ratio'][kind]['passing']:.1%}")
    print("| small route | matched crops: mean / median / worst recovery (px), over 5 px | matched crops: older "
          "known-warp test, mean absolute (px) | chance crops: mean / worst |F| (px) |")
    print("|---|---|---|---|")
    for label, cfg in (("+-12 only", replace(base, small_wide_radius=0)),
                       ("+-24 always", replace(base, small_global_radius=base.small_wide_radius, small_wide_radius=0)),
                       (f"+-24 when ratio >= {base.small_wide_ratio}, beyond +-{base.small_global_radius - 1} px "
                        "(the package)", base)):
        rec = np.array([warp_recovery_errors(work / "tune", o, s, seed, config=cfg, corr_px=102.4)["recovery"]
                        for _, o, s, seed in tqdm(matched, desc=label, leave=False)])
        absolute = np.mean([known_warp_errors(work / "tune", o, s, seed, config=cfg)["dense"] for _, o, s, seed in matched])
        harm = np.array([np.hypot(*dense_offsets(work / "tune", o, s, "chance", cfg)[0][:, 32:-32, 32:-32]).mean()
                         for _, o, s in chance])
        out[label] = {"mean": float(rec.mean()), "median": float(np.median(rec)), "worst": float(rec.max()),
                      "over5": int((rec > 5).sum()), "absolute": float(absolute), "chance_mean": float(harm.mean()),
                      "chance_worst": float(harm.max())}
        print(f"| {label} | {rec.mean():.2f} / {np.median(rec):.2f} / {rec.max():.2f}, {(rec > 5).sum()} | "
              f"{absolute:.2f} | {harm.mean():.2f} / {harm.max():.2f} |", flush=True)
    print(json.dumps(out))
    return out


def route_tune(work: Path, root: Path, sides: tuple[int, ...] = (256, 288, 320, 384)) -> dict | None:
    """How ``DenseConfig.medium_min_side`` was chosen: central crops of side S of the 26 real S1/S2
    pairs, run through the medium route (``medium_min_side = S``) and the small-image route
    (``medium_min_side`` above S). Per route: issue-22 warp recovery (seeds 5000 + i, 102 px
    correlation), absolute error |F1 - k|, offset on the unwarped crop, and the mean offset written
    for chance crops (the optical crop of pair i against the SAR crop of pair i + 7), summarised
    over the even-index pairs (which chose) and the odd ones (held out)."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    from sarfusion.registration.dense import DenseConfig
    from sarfusion.registration.testpair import dense_offsets, warp_recovery_errors
    full = s1s2_pairs(root)
    if full is None:
        return None
    out = {}
    print("| crop side | route | part | mean recovery (px) | worst (px) | mean abs |F1 - k| (px) | "
          "mean unwarped |F0| (px) | chance crops: mean / worst |F| (px) |")
    print("|---|---|---|---|---|---|---|---|")
    for side in sides:
        r0 = (full[0][1].shape[1] - side) // 2
        box = (slice(r0, r0 + side), slice(r0, r0 + side))
        data = [(n, np.ascontiguousarray(o[(slice(None), *box)]), np.ascontiguousarray(s[box])) for n, o, s in full]
        for route, mms in (("medium", side), ("small", side + 1)):
            cfg = replace(DenseConfig(), medium_min_side=mms)
            rows = []
            for i, (name, o, s) in enumerate(tqdm(data, desc=f"{side} px {route}", leave=False)):
                r = warp_recovery_errors(work / f"route{side}", o, s, 5000 + i, config=cfg, corr_px=102.4)
                f = dense_offsets(work / f"route{side}", o, data[(i + 7) % len(data)][2], "chance", cfg)[0]
                rows.append((r["recovery"], r["absolute"], r["unwarped"], float(np.hypot(*f[:, 32:-32, 32:-32]).mean())))
            rows = np.array(rows)
            for part, sel in (("even (chose)", slice(0, None, 2)), ("odd (held out)", slice(1, None, 2))):
                v = rows[sel]
                st = {"mean": float(v[:, 0].mean()), "worst": float(v[:, 0].max()), "abs": float(v[:, 1].mean()),
                      "unwarped": float(v[:, 2].mean()), "chance_mean": float(v[:, 3].mean()),
                      "chance_worst": float(v[:, 3].max())}
                out.setdefault(str(side), {}).setdefault(route, {})[part] = st
                print(f"| {side} | {route} | {part} | {st['mean']:.2f} | {st['worst']:.2f} | {st['abs']:.2f} | "
                      f"{st['unwarped']:.2f} | {st['chance_mean']:.2f} / {st['chance_worst']:.2f} |", flush=True)
    print(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", default="table,real,speed4096,speed13k",
                    help="comma list of: table, real, real26, small-tune, route-tune, peak-evidence, diagnose, speed4096, speed13k")
    ap.add_argument("--pairs", type=int, default=None, help="real26: only the first N pairs (by name)")
    ap.add_argument("--no-learned", action="store_true",
                    help="real26: skip the learned column (descriptors trained on the even pairs, ~9 min)")
    ap.add_argument("--learned-weights", default=None,
                    help="real26: a folder with descriptors_medium.pt trained on the even pairs (skips training)")
    ap.add_argument("--size", type=int, default=2048, help="scene size for the error table")
    ap.add_argument("--train-seeds", default=",".join(str(s) for s in range(100, 116)),
                    help="scenes the keypoint nets and the dense descriptors train on")
    ap.add_argument("--preset", default="demo", help="descriptor training preset (demo: CPU minutes)")
    ap.add_argument("--descriptor-steps", type=int, default=1200,
                    help="descriptor training steps (overrides the preset's; 0: the preset's own)")
    ap.add_argument("--descriptor-batch", type=int, default=32,
                    help="descriptor batch size (overrides the preset's; 0: the preset's own); the README's "
                         "learned column was trained with 1200 steps of 32")
    ap.add_argument("--speed-weights", default=None,
                    help="speed4096 / speed13k: also time the dense mode with the learned descriptors "
                         "of this folder (descriptors.pt, as train.sh writes it)")
    ap.add_argument("--table-weights", default=None,
                    help="table: a folder with keypoints.pt and descriptors.pt to use instead of training")
    ap.add_argument("--test-seeds", default="200,201")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--weights", default=None,
                    help="diagnose: a folder with descriptors.pt, to diagnose the dense mode with learned descriptors")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        what = args.what.split(",")
        if "table" in what:
            table(work, args.size, [int(s) for s in args.train_seeds.split(",")],
                  [int(s) for s in args.test_seeds.split(",")], args.preset, args.descriptor_steps,
                  args.table_weights, args.descriptor_batch)
        if "real" in what:
            real(work, Path(__file__).resolve().parents[2] / "shared" / "real_samples")
        if "real26" in what:
            real26(work, Path(__file__).resolve().parents[2] / "shared" / "real_samples", args.pairs,
                   learned=not args.no_learned,
                   learned_weights=Path(args.learned_weights) if args.learned_weights else None)
        if "small-tune" in what:
            small_tune(work, Path(__file__).resolve().parents[2] / "shared" / "real_samples")
        if "route-tune" in what:
            route_tune(work, Path(__file__).resolve().parents[2] / "shared" / "real_samples")
        if "peak-evidence" in what:
            peak_evidence(Path(__file__).resolve().parents[2] / "shared" / "real_samples")
        if "diagnose" in what:
            diagnose(work, args.size, [int(s) for s in args.test_seeds.split(",")], args.weights)
        if "speed4096" in what:
            speed(work, 4096, 4096, args.speed_weights)
        if "speed13k" in what:
            speed(work, 13000, 2048, args.speed_weights)


if __name__ == "__main__":
    main()

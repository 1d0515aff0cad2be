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


def timed(optical: str, sar: str, out: Path) -> dict:
    code = (f"import time, resource, json; from sarfusion.registration.api import register_scene; "
            f"t=time.time(); register_scene({optical!r}, {sar!r}, {str(out)!r}); "
            f"print(json.dumps({{'seconds': time.time()-t, "
            f"'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024}}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def speed(work: Path, size: int, base: int) -> None:
    sc = scenes(work / f"speed{size}", base, 99, "test")[0]
    if size != base:
        sar_info, opt_info = raster_info(sc["sar"]), raster_info(sc["optical"])
        opt, sar = work / f"big_optical_{size}.tif", work / f"big_sar_{size}.tif"
        _tile_raster(sc["optical"], opt, size)
        _tile_raster(sc["sar"], sar, int(round(size * opt_info.pixel_size[0] / sar_info.pixel_size[0])))
        sc = {"optical": str(opt), "sar": str(sar)}
    r = timed(sc["optical"], sc["sar"], work / f"speed_{size}.tif")
    print(f"dense registration of a {size} x {size} scene on CPU: {r['seconds']:.1f} s, "
          f"peak memory {r['peak_rss_mb']:.0f} MB")


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
    from sarfusion.io.raster import write_raster
    from sarfusion.registration.align import scene_grid
    from sarfusion.registration.dense import DenseConfig, global_shift
    from sarfusion.registration.testpair import known_warp_errors, multiearth_pair, sen12_pairs
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
                write_raster(work / "me_o.tif", opt)
                write_raster(work / "me_s.tif", sar)
                shift, st = global_shift(scene_grid(work / "me_o.tif", work / "me_s.tif"), cfg, dev)
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
                write_raster(work / "me_o.tif", a[None].astype(np.float32))
                write_raster(work / "me_s.tif", b[None].astype(np.float32))
                shift, st = global_shift(scene_grid(work / "me_o.tif", work / "me_s.tif"), cfg, dev)
                out.append((*shift, st["global_score"]))
        out = np.array(out)
        print(f"  {name:15s} {len(out):2d} pairs: NCC median {np.median(out[:, 2]):.2f}, shift (dy, dx) median "
              f"({np.median(out[:, 0]):+.1f}, {np.median(out[:, 1]):+.1f}), spread (std) "
              f"({out[:, 0].std():.1f}, {out[:, 1].std():.1f}) px")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", default="table,real,speed4096,speed13k", help="comma list of: table, real, diagnose, speed4096, speed13k")
    ap.add_argument("--size", type=int, default=2048, help="scene size for the error table")
    ap.add_argument("--train-seeds", default=",".join(str(s) for s in range(100, 116)),
                    help="scenes the keypoint nets and the dense descriptors train on")
    ap.add_argument("--preset", default="demo", help="descriptor training preset (demo: CPU minutes)")
    ap.add_argument("--descriptor-steps", type=int, default=1200,
                    help="descriptor training steps (overrides the preset's; 0: the preset's own)")
    ap.add_argument("--descriptor-batch", type=int, default=32,
                    help="descriptor batch size (overrides the preset's; 0: the preset's own); the README's "
                         "learned column was trained with 1200 steps of 32")
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
        if "diagnose" in what:
            diagnose(work, args.size, [int(s) for s in args.test_seeds.split(",")], args.weights)
        if "speed4096" in what:
            speed(work, 4096, 4096)
        if "speed13k" in what:
            speed(work, 13000, 2048)


if __name__ == "__main__":
    main()

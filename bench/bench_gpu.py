#!/usr/bin/env python
"""GPU check and timing of every network at its ``full`` preset size, through the project's own
training engine, step functions and inference code.

What it runs, on CUDA when there is one (``--tiny`` shrinks everything so it also runs on a CPU):
- buildings: the ``full`` preset (EfficientNet-B5 U-Net, 4-band SAR, 512 px crops, batch 8, AMP,
  gradient clipping, the winner's loss weights) through ``train_model``; the step rate is timed
  between two runs of different length, so start-up and cuDNN autotuning drop out. Then the saved
  model is loaded back (the device the loader picks is checked) and one 900 px tile is predicted
  with 8 fold models and the full TTA (scales 0.8 / 1 / 1.5, flips), as ``test.sh`` does.
- translation and colorization: the Pix2Pix step at the ``full`` presets' sizes, and
  ``generate`` on a 1024 px image;
- keypoint and descriptor nets: their ``full`` presets' training steps, then their loaders;
- dense matching: ``ncc_maps`` on the device against the CPU (same maps within 1e-4).

Data are random arrays with the shapes, dtypes and keys the real datasets yield (the readers,
augmentation and post-processing are CPU work, timed elsewhere), so the numbers are GPU compute
per step, not a whole run's wall time. Where GDAL's Python bindings are missing (a GPU machine
with only PyTorch), a stand-in ``osgeo`` module lets the package import; nothing here reads or
writes a raster.

Prints one line per measurement and writes them all as JSON (``--out``).

    python bench/bench_gpu.py [--out gpu.json] [--tiny] [--steps 60] [--only buildings,pix2pix,registration]
    python bench/bench_gpu.py --only cpu     # the CPU work beside the GPU (needs GDAL)

Without CUDA it runs at ``--tiny`` sizes. Measured on one H200 (2026-12-04): README, "Measured
on a GPU".
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np


def _install_gdal_stand_in(force: bool = False) -> bool:
    """A placeholder ``osgeo`` package when the real one is missing (or ``force``): imports
    succeed, any use fails. True when installed."""
    if not force:
        try:
            import osgeo.gdal  # noqa: F401
            return False
        except ImportError:
            pass

    class _Missing(types.ModuleType):
        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            if name in ("UseExceptions", "SetCacheMax"):
                return lambda *a, **k: None
            if name.startswith(("GDT_", "GA_", "GRIORA_", "OAMS_", "wkb", "OFST")):
                return 0

            def missing(*a, **k):
                raise RuntimeError(f"GDAL is not installed here ({self.__name__}.{name})")
            return missing

    pkg = types.ModuleType("osgeo")
    pkg.__path__ = []
    for sub in ("gdal", "osr", "ogr"):
        mod = _Missing(f"osgeo.{sub}")
        setattr(pkg, sub, mod)
        sys.modules[f"osgeo.{sub}"] = mod
    sys.modules["osgeo"] = pkg
    return True


FAKE_GDAL = _install_gdal_stand_in(force="--fake-gdal" in sys.argv)

import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

log = logging.getLogger("bench_gpu")
RESULTS: dict[str, dict] = {}


def report(name: str, **values) -> None:
    RESULTS[name] = values
    print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in values.items()), flush=True)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class RandomSamples(Dataset):
    """``length`` samples of fixed random tensors (one draw per key, so the loader costs nothing);
    ``make()`` returns the dict of one sample."""

    def __init__(self, make, length: int = 100_000):
        self.sample = make()
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return self.sample


def timed_runs(run, short: int, long: int) -> tuple[float, float]:
    """``(seconds per step, seconds of the long run)`` from two fresh runs of ``short`` and
    ``long`` steps (the difference drops start-up and saving), after an untimed 2-step run (the
    first CUDA kernels' loading)."""
    run(2)
    t0 = time.perf_counter(); run(short); sync(); t_short = time.perf_counter() - t0
    t0 = time.perf_counter(); run(long); sync(); t_long = time.perf_counter() - t0
    return (t_long - t_short) / (long - short), t_long


def peak_gib() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else float("nan")


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


# ------------------------------------------------------------------------------------ buildings
def bench_buildings(work: Path, tiny: bool, steps: int) -> None:
    import sarfusion.datasets.sn6_buildings as sn6b
    import sarfusion.tasks.buildings as b
    from sarfusion.datasets.sn6_buildings import NormStats
    from sarfusion.engine import select_device

    cfg = b.PRESETS["full"]
    crop = cfg.augment.crop
    eng = dataclasses.replace(cfg.engine, num_workers=0, checkpoint_every=10**9)
    # The random samples below come from no tiles, so no strips: the strip inputs (one linear layer
    # at the bottleneck) are left out of the timing.
    cfg = dataclasses.replace(cfg, encoder_weights="none", engine=eng, calibrate_tiles=0, strip_context=False)
    if tiny:
        crop = 64
        cfg = dataclasses.replace(cfg, encoder="efficientnet-b0", engine=dataclasses.replace(eng, batch_size=2))
    bands = 4

    def make() -> dict:
        g = torch.Generator().manual_seed(0)
        target = torch.zeros(3, crop, crop)
        for _ in range(12):  # a few rectangular "buildings"
            r, c = torch.randint(0, crop - 24, (2,), generator=g).tolist()
            target[0, r:r + 20, c:c + 16] = 1
            target[1, r, c:c + 16] = 1
        return {"image": torch.randn(bands, crop, crop, generator=g), "target": target,
                "valid": torch.ones(1, crop, crop), "buildings": torch.tensor(12.0), "meta": {"image_id": "x"}}

    class FakeTiles(RandomSamples):
        def __init__(self, *a, **k):
            super().__init__(make)

        def set_epoch(self, epoch: int, start: int = 0) -> None:
            pass

    real_dataset, real_stats = sn6b.BuildingTileDataset, b._norm_stats
    sn6b.BuildingTileDataset = FakeTiles
    b._norm_stats = lambda *a, **k: NormStats([0.0] * bands, [1.0] * bands)
    try:
        out_path = work / "buildings_fold0.pt"

        def run(n: int, amp: bool = True) -> dict:
            c = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, max_steps=n, amp=amp))
            return b.train_model([], {}, {}, c, work / f"run_{n}_{amp}", out_path)

        reset_peak()
        per_step, _ = timed_runs(run, max(3, steps // 6), steps)
        full_steps = b.PRESETS["full"].engine.max_steps
        report("buildings_train_amp", encoder=cfg.encoder, crop=crop, batch=cfg.engine.batch_size,
               s_per_step=round(per_step, 4), peak_gib=peak_gib(),
               fold_hours_at_full_steps=round(per_step * full_steps / 3600, 2), full_steps=full_steps)
        per_step32, _ = timed_runs(lambda n: run(n, amp=False), 3, max(8, steps // 3))
        report("buildings_train_fp32", s_per_step=round(per_step32, 4), amp_speedup=round(per_step32 / per_step, 2))
    finally:
        sn6b.BuildingTileDataset, b._norm_stats = real_dataset, real_stats

    model = b._load_model(out_path)
    device = next(model.net.parameters()).device
    assert device.type == select_device().type, f"building model loaded on {device}, expected {select_device()}"
    size = 96 if tiny else 900
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(bands, size, size)).astype(np.float32)
    valid = np.ones((size, size), bool)
    folds = 2 if tiny else 8
    models = [model] * folds
    for label, scales, flip in (("buildings_predict_tile_1model_noTTA", (1.0,), False),
                                ("buildings_predict_tile_8folds_TTA", b.PRESETS["full"].tta_scales, True)):
        ms = models if flip else [model]
        b.predict_probabilities(ms, raw, valid, 0, scales, flip)  # warm-up
        sync()
        reps = 3
        t0 = time.perf_counter()
        for _ in range(reps):
            prob = b.predict_probabilities(ms, raw, valid, 0, scales, flip)
        sync()
        sec = (time.perf_counter() - t0) / reps
        assert prob.shape == (3, size, size) and np.isfinite(prob).all()
        report(label, device=str(device), tile_px=size, models=len(ms), scales=list(scales), flip=flip,
               s_per_tile=round(sec, 3), hours_per_1000_tiles=round(sec * 1000 / 3600, 3))


# ------------------------------------------------------------------------------------ pix2pix
def bench_pix2pix(work: Path, tiny: bool, steps: int) -> None:
    from sarfusion.engine import Engine, save_torch_atomic, select_device
    from sarfusion.tasks import colorize, translate
    from sarfusion.tasks.pix2pix_train import build_pix2pix, make_pix2pix_step

    for name, cfg, cin, cout in (("translate", translate.PRESETS["full"], 1, 3),
                                 ("colorize", colorize.PRESETS["full"], 1, 2)):
        net = cfg.net
        crop, batch = cfg.crop, cfg.engine.batch_size
        if tiny:
            net = dataclasses.replace(net, num_downs=5, ngf=8, ndf=8)
            crop = 64
        g = torch.Generator().manual_seed(0)

        def make() -> dict:
            return {"input": torch.rand(cin, crop, crop, generator=g) * 2 - 1,
                    "target": torch.rand(cout, crop, crop, generator=g) * 2 - 1,
                    "weight": torch.ones(1, crop, crop)}

        last = {}

        def run(n: int) -> None:
            models, optims = build_pix2pix(cin, cout, net, seed=0)
            ec = dataclasses.replace(cfg.engine, max_steps=n, num_workers=0, checkpoint_every=10**9)
            engine = Engine(work / f"{name}_{n}", ec, models, optims)
            loader = engine.make_loader(RandomSamples(make), shuffle=True)
            last.update(engine.fit(loader, make_pix2pix_step(net), desc=name))
            last["gen"] = engine.models["G"]

        reset_peak()
        per_step, _ = timed_runs(run, max(3, steps // 6), steps)
        full = cfg.engine.max_steps
        # colorize's full preset is epochs over the training tiles (batch 1): per 1000 tiles
        extra = ({"hours_at_full_steps": round(per_step * full / 3600, 2)} if full else
                 {"hours_per_1000_tiles_x_epochs": round(per_step * 1000 * cfg.epochs / batch / 3600, 2),
                  "epochs": cfg.epochs})
        report(f"{name}_train_amp", crop=crop, batch=batch, s_per_step=round(per_step, 4), peak_gib=peak_gib(), **extra,
               loss_finite=all(math.isfinite(v) for k, v in last.items() if k.startswith("loss")))
        gen = last["gen"].eval()
        assert next(gen.parameters()).device.type == select_device().type
        side = 128 if tiny else 1024
        sar = np.random.default_rng(0).uniform(-1, 1, (cin, side, side)).astype(np.float32)
        translate.generate(gen, sar)
        sync()
        t0 = time.perf_counter()
        out = translate.generate(gen, sar)[0]
        sync()
        assert out.shape == (3 if name == "translate" else 2, side, side) and np.isfinite(out).all()
        report(f"{name}_generate", image_px=side, s_per_image=round(time.perf_counter() - t0, 3))
        if name == "translate":  # the weights loader picks the device
            save_torch_atomic({"state_dict": gen.state_dict()}, work / "gen.pt")


# ------------------------------------------------------------------------------------ registration nets
def bench_registration_nets(work: Path, tiny: bool, steps: int) -> None:
    import sarfusion.registration.descriptors as d
    import sarfusion.registration.keypoints as k
    from sarfusion.engine import select_device
    from sarfusion.registration.matching import ncc_maps

    dev = select_device()
    kcfg = k.PRESETS["full"]
    if tiny:
        kcfg = dataclasses.replace(kcfg, crop=64, base_channels=4, depth=3,
                                   engine=dataclasses.replace(kcfg.engine, batch_size=2))
    s = kcfg.crop

    def kmake() -> dict:
        g = torch.Generator().manual_seed(0)
        heat = torch.from_numpy(k.gaussian_heatmap(s, s / 2, s / 2, kcfg.sigma))[None].float()
        return {"optical": torch.rand(3, s, s, generator=g), "sar": torch.rand(1, s, s, generator=g),
                "heat_sar": heat, "optical_j": torch.rand(3, s, s, generator=g),
                "sar_j": torch.rand(1, s, s, generator=g), "heat_opt": heat}

    real = k.KeypointCrops, k.find_triples
    k.KeypointCrops = lambda *a, **kw: RandomSamples(kmake)
    k.find_triples = lambda *a, **kw: []
    try:
        def krun(n: int) -> None:
            c = dataclasses.replace(kcfg, engine=dataclasses.replace(kcfg.engine, max_steps=n, num_workers=0,
                                                                      checkpoint_every=10**9))
            k.train_keypoints(work, work / f"kp_{n}", config=c)

        per_step, _ = timed_runs(krun, max(3, steps // 6), steps)
    finally:
        k.KeypointCrops, k.find_triples = real
    models, _ = k.load_keypoint_models(work / f"kp_{steps}", dev)
    assert all(next(m.parameters()).device.type == dev.type for m in models.values())
    report("keypoints_train_amp", crop=s, batch=kcfg.engine.batch_size, s_per_step=round(per_step, 4),
           hours_at_full_steps=round(per_step * k.PRESETS["full"].engine.max_steps / 3600, 2),
           loader_device=dev.type)

    for preset_name, presets in (("vhr", d.PRESETS), ("medium", d.PAIR_PRESETS)):
        dcfg = presets["full"]
        if tiny:
            dcfg = dataclasses.replace(dcfg, engine=dataclasses.replace(dcfg.engine, batch_size=4))
        c = dcfg.context

        def dmake() -> dict:
            g = torch.Generator().manual_seed(0)
            out = {}
            for f, t, r in dcfg.levels:
                out[f"opt{f}"] = torch.rand(dcfg.n_orient + d.OPTICAL_INPUTS, t + 2 * c, t + 2 * c, generator=g)
                out[f"sar{f}"] = torch.rand(dcfg.n_orient + d.SAR_INPUTS, t + 2 * r + 2 * c, t + 2 * r + 2 * c,
                                            generator=g)
                out[f"target{f}"] = torch.tensor(r * (2 * r + 1) + r)
            return out

        real_crops = d.DescriptorCrops
        d.DescriptorCrops = lambda *a, **kw: RandomSamples(dmake)
        try:
            def drun(n: int) -> None:
                cc = dataclasses.replace(dcfg, engine=dataclasses.replace(dcfg.engine, max_steps=n, num_workers=0,
                                                                           checkpoint_every=10**9))
                d._fit([], cc, work / f"desc_{preset_name}_{n}")

            per_step, _ = timed_runs(drun, max(3, steps // 6), steps)
        finally:
            d.DescriptorCrops = real_crops
        nets = d.load_descriptors(work / f"desc_{preset_name}_{steps}", dev)
        assert nets and all(next(v.models.parameters()).device.type == dev.type for v in nets.values()), nets
        report(f"descriptors_{preset_name}_train_amp", batch=dcfg.engine.batch_size, s_per_step=round(per_step, 4),
               hours_at_full_steps=round(per_step * dcfg.engine.max_steps / 3600, 2), loaded=sorted(nets))

    rng = np.random.default_rng(0)
    n, ch, t, sw = (64, 8, 32, 48) if tiny else (4096, 8, 64, 96)
    temps = rng.normal(size=(n, ch, t, t)).astype(np.float32)
    searches = rng.normal(size=(n, ch, sw, sw)).astype(np.float32)
    searches[:, :, 10:10 + t, 12:12 + t] += temps  # each template sits at (10, 12)
    ncc_maps(temps[:8], searches[:8], dev)
    sync()
    t0 = time.perf_counter()
    on_dev = ncc_maps(temps, searches, dev)
    sync()
    sec = time.perf_counter() - t0
    on_cpu = ncc_maps(temps[:64], searches[:64], "cpu")
    peak = np.unravel_index(on_dev.reshape(n, -1).argmax(1), on_dev.shape[1:])
    report("ncc_maps", device=dev.type, templates=n, template_px=t, search_px=sw, seconds=round(sec, 3),
           max_abs_diff_vs_cpu=float(np.abs(on_dev[:64] - on_cpu).max()),
           peaks_right=float(np.mean((peak[0] == 10) & (peak[1] == 12))))


# ------------------------------------------------------------------------------------ translation end to end
def bench_translate_e2e(work: Path, tiny: bool, steps: int) -> None:
    """``translate-train`` + held-out scoring + ``translate`` through the package's own functions
    on generated SEN1-2 PNG pairs (no GDAL needed): the whole path, data loading, checkpoints,
    evaluation and writing included, at the ``full`` preset's network size with fewer steps."""
    from sarfusion.engine import select_device
    from sarfusion.synth.landscape import write_sen12
    from sarfusion.tasks import translate as T

    data = work / "sen12"
    write_sen12(data, pairs=12 if tiny else 40, seed=0)
    cfg = T.PRESETS["cpu" if tiny else "full"]
    n = 20 if tiny else 30 * steps
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, max_steps=n, checkpoint_every=max(1, n // 2)))
    t0 = time.perf_counter()
    res = T.evaluate_translation(data, work / "weights", work / "eval", holdout=4, config=cfg)
    sec = time.perf_counter() - t0
    kind = next(iter(res))
    r = res[kind]
    t0 = time.perf_counter()
    written = T.translate(data, work / "out", work / "weights")
    sec_translate = time.perf_counter() - t0
    assert written and all(p.is_file() for p in written)
    report("translate_e2e", device=select_device().type, kind=kind, steps=n, batch=cfg.engine.batch_size,
           train_and_eval_s=round(sec, 1), train_s=r.get("train_seconds"),
           held_out_psnr_model=round(r["model"]["psnr"], 2), held_out_psnr_mean=round(r["mean"]["psnr"], 2),
           translate_images=len(written), translate_s=round(sec_translate, 2))


# ------------------------------------------------------------------------------------ CPU work beside the GPU
def bench_cpu_side(work: Path, tiny: bool, steps: int, gpu_step_s: float = 0.109) -> None:
    """What the GPU waits on: one training sample of the ``full`` buildings preset (tile read,
    targets, 512 px augmented crop; ``cache_tiles`` off as in ``full``) and one tile's
    post-processing (``full`` watershed: seeds >= 110 px, dividing lines, 0.5 px outlines), on one
    core, from generated SN6 tiles (needs GDAL)."""
    import sarfusion.tasks.buildings as b
    from sarfusion.datasets.sn6 import find_tiles
    from sarfusion.datasets.sn6_buildings import building_targets, rasterize_instances
    from sarfusion.postproc import probabilities_to_polygons
    from sarfusion.synth.sn6 import generate_sn6
    from scipy.ndimage import gaussian_filter

    torch.set_num_threads(1)
    size = 256 if tiny else 900
    out = generate_sn6(work / "sn6", tiles=4 if tiny else 8, size=size, seed=0)
    tiles = find_tiles(out["train_aoi"])
    polygons = b._load_labels(out["train_aoi"])
    tiles = b._labelled(tiles, polygons, out["train_aoi"])
    cfg = b.PRESETS["full"]
    if tiny:
        cfg = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, crop=128))
    stats = b._norm_stats(tiles, cfg.input_mode, {}, cfg.stats_max_tiles)
    data = b.training_dataset(tiles, polygons, {}, stats, cfg)
    data[0]
    n = 8 if tiny else 40
    t0 = time.perf_counter()
    for i in range(n):
        data[i % len(data)]
    per_sample = (time.perf_counter() - t0) / n
    batch = cfg.engine.batch_size
    report("buildings_loader_cpu", tile_px=size, crop=cfg.augment.crop, s_per_sample_one_core=round(per_sample, 4),
           workers_to_feed_gpu_step=math.ceil(batch * per_sample / gpu_step_s), gpu_step_s=gpu_step_s,
           preset_workers=cfg.engine.num_workers,
           s_per_step_with_preset_workers=round(max(gpu_step_s, batch * per_sample / cfg.engine.num_workers), 4))
    secs, counts = [], []
    for tile in tiles:
        inst = rasterize_instances(polygons.get(tile.image_id, []), (size, size))
        target = building_targets(inst, cfg.edge_width, cfg.contact_width, cfg.contact_inside_width).astype(np.float32)
        prob = np.stack([gaussian_filter(t, 1.5) for t in target]).clip(0, 1)  # a soft, realistic output
        t0 = time.perf_counter()
        polys, _ = probabilities_to_polygons(prob, cfg.watershed)
        secs.append(time.perf_counter() - t0)
        counts.append(len(polys))
    report("buildings_postproc_cpu", tile_px=size, tiles=len(tiles), s_per_tile=round(float(np.mean(secs)), 4),
           buildings_per_tile=round(float(np.mean(counts)), 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU check of this script)")
    ap.add_argument("--steps", type=int, default=60, help="training steps of the longer timed run (default 60)")
    ap.add_argument("--only", default="buildings,pix2pix,registration",
                    help="comma-separated parts to run (default: buildings,pix2pix,registration; "
                         "'translate_e2e': translation trained, scored and run end to end on generated "
                         "SEN1-2 pairs; 'cpu': the loader and post-processing beside the GPU, needs GDAL)")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="let cuDNN pick its fastest convolution algorithms (torch.backends.cudnn.benchmark)")
    ap.add_argument("--fake-gdal", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if not torch.cuda.is_available() and not args.tiny and "cpu" not in args.only:
        print("no CUDA device: running at --tiny sizes (a check of this script, not GPU numbers)", flush=True)
        args.tiny = True
    info = {"cudnn_benchmark": args.cudnn_benchmark, "torch": torch.__version__, "cuda": torch.cuda.is_available(), "gdal_stand_in": FAKE_GDAL}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    report("environment", **info)
    parts = {"buildings": bench_buildings, "pix2pix": bench_pix2pix, "registration": bench_registration_nets,
             "translate_e2e": bench_translate_e2e, "cpu": bench_cpu_side}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            t0 = time.perf_counter()
            try:
                parts[name](Path(tmp) / name, args.tiny, args.steps)
            except Exception as exc:  # keep going: one broken part must not hide the others' numbers
                import traceback
                traceback.print_exc()
                failed.append(name)
                report(f"{name}_FAILED", error=f"{type(exc).__name__}: {exc}")
            print(f"[{name} took {time.perf_counter() - t0:.1f} s]", flush=True)
    if args.out:
        args.out.write_text(json.dumps(RESULTS, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

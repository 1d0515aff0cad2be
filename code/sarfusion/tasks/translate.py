"""SAR -> optical translation (MultiEarth 2022 / SEN1-2) with Pix2Pix.

The MultiEarth 2nd-place recipe (SPEC section 5): cloudy targets filtered first
(:mod:`sarfusion.clouds`), U-Net generator + PatchGAN, reconstruction loss a weighted
MSE + MAE, the discriminator updated every other step, inputs and targets in [-1, 1], uint16
optical stretched with a 2 %-98 % cumulative count cut per band.

Two layouts, one model each (``<weights_dir>/sen12`` and ``<weights_dir>/multiearth``):

* SEN1-2: input 1 channel (8-bit VV PNG / 127.5 - 1), target RGB PNG / 127.5 - 1; outputs PNG.
* MultiEarth: input 2 channels (VV, VH dB clipped to ``sar_db_range`` and scaled to [-1, 1]),
  targets every cloud-free optical date of the site (B4, B3, B2 count-cut); outputs 3-band uint8
  RGB GeoTIFF (display-stretched) with the SAR file's georeferencing, named as the VV file.

``samples > 1`` draws several outputs per input with test-time dropout (``<name>_s<k>``), for
the MultiEarth min-over-outputs score.
"""
from __future__ import annotations

import glob
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sarfusion.config import choose_preset, describe
from sarfusion.engine import EngineConfig
from sarfusion.errors import InputError
from sarfusion.tasks.pix2pix_train import Pix2PixNetConfig

log = logging.getLogger(__name__)
WEIGHTS_NAME = "generator.pt"
KINDS = ("sen12", "multiearth")


@dataclass
class TranslateConfig:
    """Everything a translation run depends on (saved beside the weights)."""

    preset: str = "demo"
    net: Pix2PixNetConfig = field(default_factory=lambda: Pix2PixNetConfig(
        num_downs=6, ngf=16, ndf=16, n_layers=2, lambda_l1=50.0, lambda_mse=50.0, d_every=2))
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(
        max_steps=300, batch_size=4, checkpoint_every=100, log_every=20))
    crop: int = 64                  # training crop, px (multiple of 2**num_downs)
    sar_db_range: tuple = (-30.0, 0.0)  # MultiEarth dB clip -> [-1, 1]
    count_cut: tuple = (2.0, 98.0)  # per-band cumulative count cut of uint16 optical, percent
    max_cloud: float = 0.01         # drop optical targets with more cloud + shadow than this
    synth_pairs: int = 16           # generated SEN1-2 pairs added to the real ones (0 = none)
    real_repeat: int = 4            # real pairs appear this many times per epoch
    decay_fraction: float = 0.5     # linear learning-rate decay over the last part


PRESETS = {
    "demo": TranslateConfig(),
    "full": TranslateConfig(
        preset="full",
        net=Pix2PixNetConfig(num_downs=8, ngf=64, ndf=64, n_layers=3, lambda_l1=50.0, lambda_mse=50.0, d_every=2),
        engine=EngineConfig(max_steps=40000, batch_size=8, checkpoint_every=1000, log_every=50, num_workers=4),
        crop=256, synth_pairs=0, real_repeat=1),
}


# ----------------------------------------------------------------------------- preprocessing

def sar_db_to_unit(db: np.ndarray, db_range: Sequence[float]) -> np.ndarray:
    """``(C, H, W)`` float dB -> float32 in [-1, 1] after clipping to ``db_range``; NaN -> -1."""
    lo, hi = float(db_range[0]), float(db_range[1])
    x = (np.nan_to_num(np.asarray(db, np.float32), nan=lo) - lo) / (hi - lo)
    return (np.clip(x, 0, 1) * 2 - 1).astype(np.float32)


def count_cut(bands: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Cumulative count cut per band: ``(C, H, W)`` any numeric -> float32 in [-1, 1], the
    ``low``/``high`` percentiles of each band's non-zero pixels mapped to -1 / 1 (clipped)."""
    bands = np.asarray(bands, np.float32)
    out = np.empty_like(bands)
    for i, b in enumerate(bands):
        vals = b[b > 0]
        lo, hi = np.percentile(vals, [low, high]) if vals.size else (0.0, 1.0)
        out[i] = np.clip((b - lo) / max(hi - lo, 1e-6), 0, 1) * 2 - 1
    return out


def u8_to_unit(img: np.ndarray) -> np.ndarray:
    return (np.asarray(img, np.float32) / 127.5 - 1.0).astype(np.float32)


def unit_to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round((np.asarray(x, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- samples

@dataclass
class Example:
    """One training/eval pair in model space: ``sar`` (Cin, H, W) and ``optical`` (3, H, W),
    float32 in [-1, 1]; ``key`` names the input; ``real`` says it is not generated."""

    key: str
    sar: np.ndarray
    optical: np.ndarray
    real: bool = True


def detect_kind(path: str | Path) -> str:
    """``sen12`` when ``path`` holds SEN1-2 ``s1_*`` PNGs, ``multiearth`` for Sentinel1_* tiffs."""
    path = Path(path)
    if not path.exists():
        raise InputError("not found", path)
    if path.is_file():
        if path.suffix.lower() == ".png":
            return "sen12"
        if path.suffix.lower() in (".tif", ".tiff"):
            return "multiearth"
        raise InputError("expected a SEN1-2 PNG or a MultiEarth Sentinel1_*.tiff", path)
    if any(path.rglob("Sentinel1_*.tif*")):
        return "multiearth"
    if any(path.rglob("*.png")):
        return "sen12"
    raise InputError("holds neither SEN1-2 PNGs nor MultiEarth Sentinel1_*.tiff files", path)


def load_sen12_examples(root: str | Path, max_cloud: float) -> tuple[list[Example], int]:
    """Cloud-screened SEN1-2 examples under ``root`` and how many pairs were dropped."""
    from sarfusion.clouds import assess_clouds
    from sarfusion.datasets.sen12 import find_pairs, read_png

    pairs = find_pairs(root)
    if not pairs:
        raise InputError("no SEN1-2 pairs (<season>/s1_<scene>/<season>_s1_<scene>_p<n>.png) found", root)
    verdicts = {Path(r["path"]): r for r in assess_clouds([p.optical for p in pairs], max_cloud)}
    out, dropped = [], 0
    for p in pairs:
        if not verdicts[p.optical]["keep"]:
            dropped += 1
            log.info("dropped cloudy pair %s (cloud+shadow %.1f %%)", p.key, 100 * verdicts[p.optical]["cloud_fraction"])
            continue
        sar, opt = read_png(p.sar, 1), read_png(p.optical, 3)
        if sar.shape[1:] != opt.shape[1:]:
            raise InputError(f"size {sar.shape[1:]} differs from its optical partner's {opt.shape[1:]}", p.sar)
        out.append(Example(p.key, u8_to_unit(sar), u8_to_unit(opt)))
    return out, dropped


def multiearth_target(scene, cfg: TranslateConfig) -> np.ndarray:
    """``(3, H, W)`` float32 [-1, 1]: B4, B3, B2 count-cut."""
    from sarfusion.datasets.multiearth import read_optical

    bands, _ = read_optical(scene)
    return count_cut(bands[[3, 2, 1]], *cfg.count_cut)


def load_multiearth_examples(root: str | Path, cfg: TranslateConfig) -> tuple[list[Example], int]:
    """One example per (SAR scene, cloud-free optical date of its site); returns the examples and
    the number of (SAR, optical) pairs dropped as cloudy."""
    from sarfusion.clouds import assess_clouds
    from sarfusion.datasets.multiearth import find_pairs, read_sar

    scenes = find_pairs(root)
    optical = {o.name: o for s in scenes for o in s.optical}
    verdict = {}
    for o in optical.values():
        verdict[o.name] = assess_clouds([o.bands["B2"]], cfg.max_cloud)[0]
        log.info("%s: cloud+shadow %.1f %% -> %s", o.name, 100 * verdict[o.name]["cloud_fraction"],
                 "keep" if verdict[o.name]["keep"] else "drop")
    targets = {k: multiearth_target(o, cfg) for k, o in optical.items() if verdict[k]["keep"]}
    out, dropped = [], 0
    for s in scenes:
        sar = sar_db_to_unit(read_sar(s), cfg.sar_db_range)
        for o in s.optical:
            if o.name not in targets:
                dropped += 1
                continue
            if targets[o.name].shape[1:] != sar.shape[1:]:
                raise InputError(f"size {sar.shape[1:]} differs from optical {o.name}'s {targets[o.name].shape[1:]}", s.vv)
            out.append(Example(f"{s.name}|{o.date}", sar, targets[o.name]))
    return out, dropped


def load_examples(root: str | Path, kind: str, cfg: TranslateConfig) -> tuple[list[Example], int]:
    return load_sen12_examples(root, cfg.max_cloud) if kind == "sen12" else load_multiearth_examples(root, cfg)


def split_holdout(examples: Sequence[Example], holdout: int) -> tuple[list[Example], list[Example]]:
    """The last ``holdout`` distinct real inputs (by sorted key; all their targets) are held out."""
    inputs = sorted({e.key.split("|")[0] for e in examples if e.real})
    held = set(inputs[len(inputs) - holdout:]) if holdout > 0 else set()
    return ([e for e in examples if e.key.split("|")[0] not in held],
            [e for e in examples if e.key.split("|")[0] in held])


class CropDataset:
    """Random ``crop`` windows with flips / 90-degree turns; items ``{input, target}`` tensors."""

    def __init__(self, examples: Sequence[Example], crop: int, real_repeat: int, seed: int):
        self.items = [e for e in examples for _ in range(real_repeat if e.real else 1)]
        self.crop, self.seed, self.epoch = crop, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the engine: each epoch draws new crops, reproducibly (also after a resume)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        import torch

        e = self.items[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        h, w = e.sar.shape[1:]
        c = min(self.crop, h, w)
        r0, c0 = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
        x, y = e.sar[:, r0:r0 + c, c0:c0 + c], e.optical[:, r0:r0 + c, c0:c0 + c]
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, (1, 2)), np.rot90(y, k, (1, 2))
        if rng.random() < 0.5:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        return {"input": torch.from_numpy(np.ascontiguousarray(x)), "target": torch.from_numpy(np.ascontiguousarray(y))}


# ----------------------------------------------------------------------------- training

def _synth_examples(work_dir: Path, n: int, seed: int, cfg: TranslateConfig) -> list[Example]:
    from sarfusion.synth.landscape import write_sen12

    root = work_dir / "synth_sen12"
    if not (root / "sen12_truth.json").exists():
        write_sen12(root, n, seed=seed + 1000)
    examples, dropped = load_sen12_examples(root, cfg.max_cloud)
    log.info("%d generated SEN1-2 pairs (%d cloudy dropped)", len(examples), dropped)
    return [Example("synth_" + e.key, e.sar, e.optical, real=False) for e in examples]


def train_on_examples(train: Sequence[Example], kind: str, weights_dir: str | Path, cfg: TranslateConfig,
                      run_dir: str | Path, extra: dict | None = None) -> Path:
    """Train the Pix2Pix on ``train`` and save ``<weights_dir>/<kind>/generator.pt``."""
    import torch

    from sarfusion.engine import Engine, save_config, save_torch_atomic
    from sarfusion.tasks.pix2pix_train import build_pix2pix, make_pix2pix_step

    if not train:
        raise InputError("no training pairs left after cloud filtering", run_dir)
    in_ch = train[0].sar.shape[0]
    old = Path(run_dir) / "config.json"
    if old.exists() and json.loads(old.read_text()) != json.loads(json.dumps(asdict(cfg), default=str)):
        raise InputError("holds a run with a different config (it would be resumed); remove it or pass "
                         "another work dir", run_dir)
    models, optimizers = build_pix2pix(in_ch, 3, cfg.net, seed=cfg.engine.seed)
    decay_start = int(cfg.engine.max_steps * (1 - cfg.decay_fraction))

    def lr_factor(step: int) -> float:
        return 1.0 if step < decay_start else max(0.0, (cfg.engine.max_steps - step) / max(1, cfg.engine.max_steps - decay_start))

    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lr_factor) for k, o in optimizers.items()}
    engine = Engine(run_dir, cfg.engine, models, optimizers, schedulers, task_config=cfg)
    loader = engine.make_loader(CropDataset(train, cfg.crop, cfg.real_repeat, cfg.engine.seed), shuffle=True)
    t0 = time.time()
    last = engine.fit(loader, make_pix2pix_step(cfg.net), desc=f"translate {kind}")
    log.info("trained %d steps in %.1f s: %s", engine.step, time.time() - t0, last)
    out_dir = Path(weights_dir) / kind
    state = {"config": asdict(cfg), "kind": kind, "in_channels": in_ch, "out_channels": 3,
             "generator": engine.unwrap("G").state_dict(), "train_keys": sorted({e.key for e in train}),
             "train_seconds": round(time.time() - t0, 2), "last_losses": last, **(extra or {})}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.json")
    return save_torch_atomic(state, out_dir / WEIGHTS_NAME)


def train_translation(data_dir: str | Path, weights_dir: str | Path, preset: str = "demo",
                      work_dir: str | Path | None = None, holdout: int = 0,
                      config: TranslateConfig | None = None) -> Path:
    """Train one translator per layout found in ``data_dir`` (SEN1-2 and/or MultiEarth).

    Cloudy optical targets are dropped first (count logged). The last ``holdout`` real inputs
    are kept out of training (see :func:`evaluate_translation`). Checkpoints go to ``work_dir``
    (default ``<weights_dir>/runs``) and resume. Returns ``weights_dir``; the models are
    ``<weights_dir>/{sen12,multiearth}/generator.pt``.
    """
    data_dir, weights_dir = Path(data_dir), Path(weights_dir)
    cfg = config if config is not None else choose_preset(PRESETS, preset)
    work = Path(work_dir) if work_dir is not None else weights_dir / "runs"
    log.info("translate config:\n%s", describe(cfg))
    kinds = [k for k, pat in (("sen12", "*_s1_*_p*.png"), ("multiearth", "Sentinel1_*.tif*")) if any(data_dir.rglob(pat))]
    if not kinds:
        raise InputError("holds neither SEN1-2 pairs nor MultiEarth Sentinel1_*.tiff files", data_dir)
    for kind in kinds:
        examples, dropped = load_examples(data_dir, kind, cfg)
        train, held = split_holdout(examples, holdout)
        log.info("%s: %d pairs, %d dropped as cloudy, %d held out", kind, len(examples), dropped, len(held))
        if kind == "sen12" and cfg.synth_pairs > 0:
            train += _synth_examples(work, cfg.synth_pairs, cfg.engine.seed, cfg)
        train_on_examples(train, kind, weights_dir, cfg, work / f"{kind}_{cfg.preset}",
                          extra={"dropped_cloudy": dropped, "holdout_keys": sorted({e.key for e in held})})
    return weights_dir


# ----------------------------------------------------------------------------- inference

def translator_state(weights_dir: str | Path, kind: str) -> dict:
    """The saved state of layout ``kind``'s translator (config, ``train_keys``, generator weights)
    from ``<weights_dir>/<kind>/generator.pt`` (``weights_dir`` may also be that folder itself)."""
    import torch

    weights_dir = Path(weights_dir)
    path = next((p for p in (weights_dir / kind / WEIGHTS_NAME, weights_dir / WEIGHTS_NAME) if p.is_file()), None)
    if path is None:
        raise InputError(f"no {kind}/{WEIGHTS_NAME} here; run 'sarfusion translate-train' first", weights_dir)
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("kind") != kind:
        raise InputError(f"holds a {state.get('kind')} translator, the input is {kind}", path)
    return state


def load_translator(weights_dir: str | Path, kind: str, device: Any = None):
    """``(generator, state)`` for layout ``kind`` from ``<weights_dir>/<kind>/generator.pt``
    (``weights_dir`` may also be that folder itself)."""
    from sarfusion.engine import select_device
    from sarfusion.models.pix2pix import UNetGenerator

    state = translator_state(weights_dir, kind)
    net = state["config"]["net"]
    gen = UNetGenerator(state["in_channels"], state["out_channels"], net["num_downs"], net["ngf"], net["dropout"])
    gen.load_state_dict(state["generator"])
    return gen.to(select_device(device)).eval(), state


def generate(gen, sar: np.ndarray, samples: int = 1, seed: int = 0) -> list[np.ndarray]:
    """``samples`` outputs ``(3, H, W)`` float32 [-1, 1] for one input ``(Cin, H, W)`` [-1, 1].

    One sample: deterministic (dropout off). Several: test-time dropout, seeded. The input is
    reflect-padded to a multiple of ``2**num_downs`` and the output cropped back.
    """
    import torch

    from sarfusion.models.pix2pix import enable_dropout_sampling

    m = 2 ** gen.num_downs
    h, w = sar.shape[1:]
    ph, pw = (-h) % m, (-w) % m
    x = np.pad(sar, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > max(ph, pw) else "edge")
    dev = next(gen.parameters()).device
    xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(dev)
    outs = []
    with torch.no_grad():
        if samples <= 1:
            gen.eval()
            outs.append(gen(xt)[0, :, :h, :w].float().cpu().numpy())
        else:
            enable_dropout_sampling(gen)
            torch.manual_seed(seed)
            for _ in range(samples):
                outs.append(gen(xt)[0, :, :h, :w].float().cpu().numpy())
            gen.eval()
    return outs


@dataclass
class TranslationInput:
    """One SAR input: model-space array, where to write, and georeferencing to copy."""

    name: str
    sar: np.ndarray
    path: Path
    geotransform: tuple | None = None
    crs: str | None = None


def list_inputs(input_path: str | Path, kind: str, cfg: dict) -> list[TranslationInput]:
    """SAR inputs of ``kind`` under ``input_path`` (a file or folder), read and normalised."""
    input_path = Path(input_path)
    out = []
    if kind == "sen12":
        from sarfusion.datasets.sen12 import read_png

        files = [input_path] if input_path.is_file() else sorted(
            p for p in input_path.rglob("*.png") if "_s2_" not in p.name and not p.parent.name.startswith("s2_"))
        for p in files:
            out.append(TranslationInput(p.stem, u8_to_unit(read_png(p, 1)), p))
    else:
        from sarfusion.datasets.multiearth import read_sar, sar_scenes
        from sarfusion.io.raster import raster_info

        for s in sar_scenes(input_path):
            info = raster_info(s.vv)
            out.append(TranslationInput(s.name, sar_db_to_unit(read_sar(s), cfg["sar_db_range"]), s.vv,
                                        info.geotransform if info.georeferenced else None, info.crs_wkt))
    if not out:
        raise InputError(f"no {kind} SAR inputs found", input_path)
    return out


def write_output(out_dir: Path, item: TranslationInput, image: np.ndarray, kind: str, suffix: str = "") -> Path:
    """Write one generated ``(3, H, W)`` [-1, 1] image: PNG (SEN1-2) or RGB uint8 Cloud-Optimized GeoTIFF."""
    rgb = unit_to_u8(image)
    if kind == "sen12":
        from sarfusion.datasets.sen12 import write_png

        return write_png(out_dir / f"{item.name}{suffix}.png", rgb)
    from sarfusion.io.raster import write_raster

    return write_raster(out_dir / f"{item.name}{suffix}.tiff", rgb, item.geotransform, item.crs, cog=True)


@dataclass
class TruthSet:
    """The optical truth of one SAR input, where its layout puts one."""

    name: str                 # the input's name = its output's stem
    key: str                  # its training key (``train_keys`` of the weights, before any ``|``)
    group: str                # the ground it shares with other inputs (SEN1-2 scene, MultiEarth site)
    truths: list[np.ndarray]  # cloud-free truth images, uint8 RGB (3, H, W); several valid dates
    cloudy: int = 0           # truth images left out as cloudy


def sen12_truths(input_path: str | Path, cfg: dict) -> list[TruthSet]:
    """SEN1-2: each SAR patch's ``s2`` partner, unless the cloud filter drops it."""
    from sarfusion.clouds import assess_clouds
    from sarfusion.datasets.sen12 import S1_NAME, optical_partner, read_png

    input_path = Path(input_path)
    sars = [input_path] if input_path.is_file() else sorted(
        p for p in input_path.rglob("*.png") if S1_NAME.match(p.name) and p.parent.name.lower().startswith("s1_"))
    partners = {sar: optical_partner(sar) for sar in sars}
    present = [o for o in partners.values() if o.is_file()]
    keep = {Path(r["path"]): r["keep"] for r in assess_clouds(present, cfg["max_cloud"])} if present else {}
    out = []
    for sar, opt in partners.items():
        m = S1_NAME.match(sar.name)
        clear = opt.is_file() and keep.get(opt, False)
        scene = f"{m.group('season')}_{m.group('scene')}"
        out.append(TruthSet(sar.stem, f"{scene}_p{m.group('patch')}", scene,
                            [read_png(opt, 3)] if clear else [], int(opt.is_file() and not clear)))
    return out


def multiearth_truths(input_path: str | Path, cfg: dict) -> list[TruthSet]:
    """MultiEarth: every cloud-free Sentinel-2 date of each SAR scene's site (``sent2/`` beside its
    ``sent1/``), B4, B3, B2 count-cut as the model's targets."""
    from sarfusion.clouds import assess_clouds
    from sarfusion.datasets.multiearth import find_pairs, sar_scenes

    tc = TranslateConfig(count_cut=tuple(cfg["count_cut"]))
    sites: dict[Path, dict] = {}
    out = []
    for scene in sar_scenes(input_path):
        root = scene.vv.parent.parent
        if root not in sites:
            try:
                sites[root] = {s.name: s for s in find_pairs(root)}
            except InputError:  # no Sentinel-2 beside this Sentinel-1: nothing to score against
                sites[root] = {}
        paired = sites[root].get(scene.name)
        truths, cloudy = [], 0
        for opt in (paired.optical if paired is not None else ()):
            if assess_clouds([opt.bands["B2"]], cfg["max_cloud"])[0]["keep"]:
                truths.append(unit_to_u8(multiearth_target(opt, tc)))
            else:
                cloudy += 1
        out.append(TruthSet(scene.name, scene.name, scene.site, truths, cloudy))
    return out


# One line per layout: how to find the truth of a layout's inputs (``detect_kind`` names them).
TRUTH_FINDERS = {"sen12": sen12_truths, "multiearth": multiearth_truths}


def score_translated(input_path: str | Path, out_dir: str | Path, weights_dir: str | Path) -> dict | None:
    """Score what :func:`translate` wrote to ``out_dir`` for ``input_path`` against the optical
    truth its layout holds (:data:`TRUTH_FINDERS`); ``None`` where there is none.

    Returns ``{"kind", "all": {psnr, ssim, multiearth, n_images}, "held_out": the same over the
    inputs whose ground the model never trained on (no input of their SEN1-2 scene / MultiEarth
    site was in its training set; None when there are none), "held_out_inputs": their names,
    "trained_on": inputs in the training set, "cloudy_truths_dropped", "without_output": counts}``.
    PSNR / SSIM / MultiEarth as :func:`sarfusion.metrics.image_quality.score_translation` (images
    scaled to [0, 1]).
    """
    from sarfusion.metrics.image_quality import read_image_unit, score_image_sets

    kind = detect_kind(input_path)
    finder = TRUTH_FINDERS.get(kind)
    if finder is None:
        return None
    state = translator_state(weights_dir, kind)
    trained = {k.split("|")[0] for k in state.get("train_keys", [])}
    out_dir = Path(out_dir)
    found = finder(input_path, state["config"])
    seen_ground = {t.group for t in found if t.key in trained}  # patches of one scene overlap
    sets, held, held_names, n_trained, missing, cloudy = [], [], [], 0, 0, 0
    for t in found:
        cloudy += t.cloudy
        if not t.truths:
            continue
        stem = re.compile(re.escape(t.name) + r"(_s\d+)?")  # one output, or samples _s<k>
        outputs = sorted(p for p in out_dir.glob(glob.escape(t.name) + "*") if stem.fullmatch(p.stem))
        if not outputs:
            missing += 1
            continue
        pair = ([read_image_unit(p) for p in outputs], [truth.astype(np.float64) / 255.0 for truth in t.truths])
        sets.append(pair)
        n_trained += t.key in trained
        if t.group not in seen_ground:
            held.append(pair)
            held_names.append(t.name)
    if not sets:
        return None
    result = {"kind": kind, "all": score_image_sets(sets), "held_out": score_image_sets(held) if held else None,
              "held_out_inputs": held_names, "trained_on": n_trained, "cloudy_truths_dropped": cloudy,
              "without_output": missing}
    log.info("translation %s (%s): PSNR %.2f dB, SSIM %.3f over %d inputs (%d trained on)%s", input_path, kind,
             result["all"]["psnr"], result["all"]["ssim"], len(sets), n_trained,
             f"; held out: PSNR {result['held_out']['psnr']:.2f} dB, SSIM {result['held_out']['ssim']:.3f}"
             if held else "")
    return result


def translate(input_path: str | Path, out_dir: str | Path, weights_dir: str | Path, samples: int = 1,
              preview_dir: str | Path | None = None, device: Any = None,
              max_previews: int | None = None) -> list[Path]:
    """Translate every SAR input under ``input_path`` into ``out_dir``; returns the written files.

    One image per input, named as the input (``<name>_s<k>`` for ``samples > 1``): PNG for
    SEN1-2, a 3-band uint8 RGB GeoTIFF with the input's georeferencing for MultiEarth tiffs.
    With ``preview_dir``: side-by-side PNG panels (SAR, truth when found, generated), for the
    first ``max_previews`` inputs (default: all).
    """
    from tqdm import tqdm

    kind = detect_kind(input_path)
    gen, state = load_translator(weights_dir, kind, device)
    cfg = state["config"]
    inputs = list_inputs(input_path, kind, cfg)
    out_dir = Path(out_dir)
    written = []
    truth_sets = None
    for i, item in enumerate(tqdm(inputs, desc="translate", unit="image", disable=None)):
        if item.sar.shape[0] != state["in_channels"]:
            raise InputError(f"has {item.sar.shape[0]} SAR channel(s), the model takes {state['in_channels']}", item.path)
        outs = generate(gen, item.sar, samples, seed=cfg["engine"]["seed"])
        for k, img in enumerate(outs):
            written.append(write_output(out_dir, item, img, kind, f"_s{k}" if samples > 1 else ""))
        if preview_dir is not None and (max_previews is None or i < max_previews):
            from sarfusion.preview import write_panel

            if truth_sets is None:
                truth_sets = {t.name: t for t in TRUTH_FINDERS[kind](input_path, cfg)}
            found = truth_sets.get(item.name)
            truth = found.truths[0] if found is not None and found.truths else None
            sar_u8 = unit_to_u8(item.sar[0])
            imgs = [sar_u8] + ([truth] if truth is not None else []) + [unit_to_u8(outs[0])]
            labels = ["SAR"] + (["truth"] if truth is not None else []) + ["generated"]
            write_panel(Path(preview_dir) / f"{item.name}.png", imgs, labels)
    return written


# ----------------------------------------------------------------------------- evaluation

def baseline_images(train: Sequence[Example], held: Sequence[Example]) -> dict[str, dict[str, np.ndarray]]:
    """Two simple baselines per held-out input, as uint8 RGB ``(3, H, W)``:

    * ``mean``: the per-pixel mean of the training targets (resized if sizes differ);
    * ``histmatch``: the SAR (first channel) histogram-matched, per band, to the pooled training
      targets' distribution of that band (:func:`sarfusion.fusion.histogram_match`).
    """
    import cv2

    from sarfusion.fusion import histogram_match

    size = held[0].optical.shape[1:]
    targets = [e.optical if e.optical.shape[1:] == size else
               np.stack([cv2.resize(b, size[::-1]) for b in e.optical]) for e in train]
    mean = np.mean(targets, axis=0)
    rng = np.random.default_rng(0)
    pooled = np.stack(targets)  # (N, 3, H, W)
    out: dict[str, dict[str, np.ndarray]] = {"mean": {}, "histmatch": {}}
    for e in held:
        out["mean"][e.key] = unit_to_u8(mean)
        hm = []
        for b in range(3):
            ref = rng.choice(pooled[:, b].ravel(), size=e.sar[0].size, replace=False).reshape(e.sar[0].shape)
            hm.append(histogram_match(e.sar[0], ref, np.ones(e.sar[0].shape, bool)))
        out["histmatch"][e.key] = unit_to_u8(np.stack(hm))
    return out


def evaluate_translation(data_dir: str | Path, weights_dir: str | Path, work_dir: str | Path, holdout: int = 3,
                         preset: str = "demo", train: bool = True, samples: int = 1,
                         config: TranslateConfig | None = None) -> dict:
    """Hold out the last ``holdout`` real inputs, train (unless ``train=False``), and score the
    model and the two baselines on them with :func:`sarfusion.metrics.image_quality.score_translation`.

    Returns ``{kind: {"model"|"mean"|"histmatch": {psnr, ssim, multiearth, n_images}, "dropped_cloudy": n}}``.
    """
    from sarfusion.metrics.image_quality import score_translation

    data_dir, work_dir = Path(data_dir), Path(work_dir)
    cfg = config if config is not None else choose_preset(PRESETS, preset)
    if train:
        train_translation(data_dir, weights_dir, preset, work_dir / "runs", holdout=holdout, config=cfg)
    results = {}
    for kind in KINDS:
        wpath = Path(weights_dir) / kind / WEIGHTS_NAME
        if not wpath.is_file():
            continue
        gen, state = load_translator(weights_dir, kind)
        examples, dropped = load_examples(data_dir, kind, cfg)
        tr, held = split_holdout(examples, holdout)
        if not held:
            raise InputError(f"nothing held out for {kind} (holdout={holdout})", data_dir)
        base = baseline_images(tr, held)
        root = work_dir / f"eval_{kind}"
        scores = {}
        for name in ("model", "mean", "histmatch"):
            pred_dir, truth_dir = root / name, root / "truth"
            for e in held:
                stem, _, date = e.key.partition("|")
                tpath = truth_dir / stem / f"{date}.png" if kind == "multiearth" else truth_dir / f"{stem}.png"
                from sarfusion.datasets.sen12 import write_png

                write_png(tpath, unit_to_u8(e.optical))
                if name == "model":
                    outs = generate(gen, e.sar, samples, seed=0)
                    for k, o in enumerate(outs):
                        write_png(pred_dir / f"{stem}{f'_s{k}' if samples > 1 else ''}.png", unit_to_u8(o))
                else:
                    write_png(pred_dir / f"{stem}.png", base[name][e.key])
            scores[name] = score_translation(pred_dir, truth_dir)
        scores["dropped_cloudy"] = dropped
        scores["train_seconds"] = state.get("train_seconds")
        results[kind] = scores
    (work_dir / "translation_eval.json").write_text(json.dumps(results, indent=1, default=float))
    return results


def format_table(results: dict) -> str:
    """The evaluation as a plain-text table."""
    lines = [f"{'data':<11} {'method':<10} {'PSNR dB':>8} {'SSIM':>7} {'MultiEarth':>11} {'n':>3}"]
    for kind, scores in results.items():
        for name in ("model", "mean", "histmatch"):
            s = scores[name]
            lines.append(f"{kind:<11} {name:<10} {s['psnr']:8.2f} {s['ssim']:7.4f} {s['multiearth']:11.4f} {s['n_images']:3d}")
    return "\n".join(lines)

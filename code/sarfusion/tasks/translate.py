"""SAR -> optical translation (MultiEarth 2022 / SEN1-2) with Pix2Pix.

The MultiEarth 2nd-place recipe (SPEC section 5): cloudy targets filtered first
(:mod:`sarfusion.clouds`), U-Net generator + PatchGAN, reconstruction loss a weighted
MSE + MAE, the discriminator updated every other step, inputs and targets in [-1, 1], uint16
optical stretched with a 2 %-98 % cumulative count cut per band.

Three layouts, one model each (``<weights_dir>/{sen12,multiearth,pairs}``):

* SEN1-2: input 1 channel (8-bit VV PNG), target RGB PNG / 127.5 - 1; outputs PNG.
* MultiEarth: input 2 channels (VV, VH dB), targets every cloud-free optical date of the site
  (B4, B3, B2 count-cut); outputs 3-band uint8 RGB GeoTIFF (display-stretched) with the SAR
  file's georeferencing, named as the VV file.
* Pair folders (:mod:`sarfusion.datasets.pairs`, ``DIR/sar/NAME`` + ``DIR/opt/NAME``): input 1
  channel in any scale, target RGB (uint8 / 127.5 - 1, other types count-cut); images of any
  size (random crops in training, whole images at inference); cloudy pixels are left out of the
  loss; outputs ``NAME.png``, or a GeoTIFF with the input's georeferencing.

SAR normalisation (``sar_norm``): ``fixed`` maps a known scale to [-1, 1] (8-bit / 127.5 - 1, dB
clipped to ``sar_db_range``); ``per_image`` (:func:`sar_per_image`) maps each image by its own
pixel ranks, so a model does not depend on how an archive scaled or encoded its SAR (linear,
amplitude, dB, 8-bit stretches by the 99th percentile...). The mode is saved with the model and
applied to whatever input it is given.

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
KINDS = ("sen12", "multiearth", "pairs")
SAR_NORMS = ("fixed", "per_image")


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
    max_cloud_pairs: float = 0.5    # pair layout: drop a pair above this; cloudy pixels are masked
    synth_pairs: int = 16           # generated SEN1-2 pairs added to the real ones (0 = none)
    real_repeat: int = 4            # real pairs appear this many times per epoch
    decay_fraction: float = 0.5     # linear learning-rate decay over the last part
    sar_norm: str = "fixed"         # "fixed" (known scale) or "per_image" (see sar_per_image)


PRESETS = {
    "demo": TranslateConfig(),
    # Real Sentinel pairs on a CPU (<= 15 min on 2 cores), chosen on fold 0 of the shared S1/S2
    # pairs only (README, "SAR -> optical on real pairs"). The adversarial weight is 0.1: at the
    # reference's 1 the PatchGAN's texture cost 1.2 dB PSNR and 0.06 SSIM on that fold (0.1 is
    # level with no GAN). An SSIM loss term, multi-scale context channels, a ResNet-18 U-Net and
    # half-resolution training were tried there too and gave nothing (docs/translation_notes.md).
    "cpu": TranslateConfig(
        preset="cpu",
        net=Pix2PixNetConfig(num_downs=7, ngf=32, ndf=32, n_layers=3, lambda_l1=50.0, lambda_mse=50.0,
                             lambda_gan=0.1, d_every=2),
        engine=EngineConfig(max_steps=1000, batch_size=4, checkpoint_every=100, log_every=20),
        crop=256, synth_pairs=0, real_repeat=1, sar_norm="per_image"),
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


def sar_per_image(raw: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` SAR in any monotone scale -> float32 in (-1, 1), each band by its own ranks.

    A pixel's value is its mid-rank quantile in its band (ties share it), mapped linearly to
    (-1, 1). Any increasing transform of the input (linear power, amplitude, dB, an 8-bit stretch
    by the 99th percentile, a calibration offset) gives the same output, so a model trained on one
    archive reads another's encoding the same way; NaN and 0 (nodata) map to -1.
    """
    raw = np.asarray(raw)
    out = np.full(raw.shape, -1.0, np.float32)
    for i, band in enumerate(raw):
        valid = np.isfinite(band) & (band != 0)
        vals = band[valid]
        if vals.size == 0:
            continue
        uniq, inv, counts = np.unique(vals, return_inverse=True, return_counts=True)
        mid_rank = (np.cumsum(counts) - 0.5 * counts) / vals.size
        out[i][valid] = (mid_rank[inv.ravel()] * 2 - 1).astype(np.float32)
    return out


def normalize_sar(raw: np.ndarray, sar_norm: str, sar_db_range: Sequence[float]) -> np.ndarray:
    """Raw SAR ``(C, H, W)`` as read from any layout -> model space (float32 in [-1, 1]).

    ``per_image``: :func:`sar_per_image`. ``fixed``: uint8 -> ``/ 127.5 - 1``; float -> dB clipped
    to ``sar_db_range`` (MultiEarth); any other type has no known fixed scale (an ``InputError``).
    """
    raw = np.asarray(raw)
    if sar_norm == "per_image":
        return sar_per_image(raw)
    if sar_norm != "fixed":
        raise InputError(f"unknown sar_norm {sar_norm!r}; choose one of {', '.join(SAR_NORMS)}")
    if raw.dtype == np.uint8:
        return u8_to_unit(raw)
    if raw.dtype.kind == "f":
        return sar_db_to_unit(raw, sar_db_range)
    raise InputError(f"SAR of type {raw.dtype} has no fixed scale; train with sar_norm 'per_image'")


def optical_to_unit(pixels: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Optical ``(3, H, W)`` -> float32 [-1, 1]: uint8 as is (``/ 127.5 - 1``), any other type by
    the per-band cumulative count cut :func:`count_cut`."""
    return u8_to_unit(pixels) if np.asarray(pixels).dtype == np.uint8 else count_cut(pixels, low, high)


def u8_to_unit(img: np.ndarray) -> np.ndarray:
    return (np.asarray(img, np.float32) / 127.5 - 1.0).astype(np.float32)


def unit_to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round((np.asarray(x, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- samples

@dataclass
class Example:
    """One training/eval pair in model space: ``sar`` (Cin, H, W) and ``optical`` (3, H, W),
    float32 in [-1, 1]; ``key`` names the input; ``real`` says it is not generated; ``weight``
    (H, W) float32, 1 where the target is usable and 0 under cloud or shadow (None: all usable)."""

    key: str
    sar: np.ndarray
    optical: np.ndarray
    real: bool = True
    weight: np.ndarray | None = None


def detect_kind(path: str | Path) -> str:
    """The layout of ``path``: ``pairs`` for a pair folder (or its ``sar/`` folder, or a file in
    it), ``multiearth`` for Sentinel1_* tiffs, ``sen12`` for SEN1-2 ``s1`` PNGs; any other image
    file or folder of images is read as ``pairs`` (SAR only, for inference)."""
    from sarfusion.datasets import pairs as pair_layout
    from sarfusion.datasets.sen12 import S1_NAME
    from sarfusion.datasets.multiearth import SAR_NAME

    path = Path(path)
    if not path.exists():
        raise InputError("not found", path)
    if pair_layout.pair_root(path) is not None:
        return "pairs"
    if path.is_file():
        if S1_NAME.match(path.name):
            return "sen12"
        if SAR_NAME.match(path.name):
            return "multiearth"
        if path.suffix.lower() in pair_layout.SUFFIXES:
            return "pairs"
        raise InputError("expected a SAR image (PNG or GeoTIFF)", path)
    if any(path.rglob("Sentinel1_*.tif*")):
        return "multiearth"
    if any(S1_NAME.match(p.name) for p in path.rglob("*.png")):
        return "sen12"
    if pair_layout.find_pair_folders(path) or any(p.suffix.lower() in pair_layout.SUFFIXES for p in path.iterdir()):
        return "pairs"
    raise InputError("holds no SAR images (SEN1-2 PNGs, MultiEarth Sentinel1_*.tiff, or a sar/ + opt/ pair "
                     "folder)", path)


def load_sen12_examples(root: str | Path, cfg: TranslateConfig) -> tuple[list[Example], int]:
    """Cloud-screened SEN1-2 examples under ``root`` and how many pairs were dropped."""
    from sarfusion.clouds import assess_clouds
    from sarfusion.datasets.sen12 import find_pairs, read_png

    pairs = find_pairs(root)
    if not pairs:
        raise InputError("no SEN1-2 pairs (<season>/s1_<scene>/<season>_s1_<scene>_p<n>.png) found", root)
    verdicts = {Path(r["path"]): r for r in assess_clouds([p.optical for p in pairs], cfg.max_cloud)}
    out, dropped = [], 0
    for p in pairs:
        if not verdicts[p.optical]["keep"]:
            dropped += 1
            log.info("dropped cloudy pair %s (cloud+shadow %.1f %%)", p.key, 100 * verdicts[p.optical]["cloud_fraction"])
            continue
        sar, opt = read_png(p.sar, 1), read_png(p.optical, 3)
        if sar.shape[1:] != opt.shape[1:]:
            raise InputError(f"size {sar.shape[1:]} differs from its optical partner's {opt.shape[1:]}", p.sar)
        out.append(Example(p.key, normalize_sar(sar, cfg.sar_norm, cfg.sar_db_range), u8_to_unit(opt)))
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
        sar = normalize_sar(read_sar(s), cfg.sar_norm, cfg.sar_db_range)
        for o in s.optical:
            if o.name not in targets:
                dropped += 1
                continue
            if targets[o.name].shape[1:] != sar.shape[1:]:
                raise InputError(f"size {sar.shape[1:]} differs from optical {o.name}'s {targets[o.name].shape[1:]}", s.vv)
            out.append(Example(f"{s.name}|{o.date}", sar, targets[o.name]))
    return out, dropped


def load_pair_examples(root: str | Path, cfg: TranslateConfig) -> tuple[list[Example], int]:
    """Examples of every pair folder under ``root`` (keyed by image name; by ``<folder>/<name>``
    when there are several folders) and how many pairs were dropped as cloudy.

    Large images are kept whole (training crops them). Cloud and shadow pixels of the optical
    target (:func:`sarfusion.clouds.cloud_shadow_masks`) get weight 0; a pair whose cloud +
    shadow fraction exceeds ``cfg.max_cloud_pairs`` is dropped.
    """
    from sarfusion.clouds import cloud_shadow_masks, read_optical_reflectance
    from sarfusion.datasets import pairs as pair_layout

    folders = pair_layout.find_pair_folders(root)
    if not folders:
        raise InputError("no pair folder (sar/ + opt/ with images paired by name) found", root)
    out, dropped = [], 0
    for folder in folders:
        for p in pair_layout.find_pairs(folder):
            key = p.name if len(folders) == 1 else f"{folder.name}/{p.name}"
            sar, opt = pair_layout.read_sar(p.sar).pixels, pair_layout.read_optical(p.optical).pixels
            if sar.shape[1:] != opt.shape[1:]:
                raise InputError(f"size {sar.shape[1:]} differs from its optical partner's {opt.shape[1:]}", p.sar)
            rgb, valid, qa = read_optical_reflectance(p.optical)
            cloud, shadow = cloud_shadow_masks(rgb, valid, qa)
            usable = valid & ~cloud & ~shadow
            cloudy = 1.0 - float(usable.sum()) / max(int(valid.sum()), 1)
            if cloudy > cfg.max_cloud_pairs:
                dropped += 1
                log.info("dropped cloudy pair %s (cloud+shadow %.1f %%)", key, 100 * cloudy)
                continue
            out.append(Example(key, normalize_sar(sar, cfg.sar_norm, cfg.sar_db_range), optical_to_unit(opt, *cfg.count_cut),
                               weight=None if usable.all() else usable.astype(np.float32)))
    return out, dropped


def load_examples(root: str | Path, kind: str, cfg: TranslateConfig) -> tuple[list[Example], int]:
    loaders = {"sen12": load_sen12_examples, "multiearth": load_multiearth_examples, "pairs": load_pair_examples}
    return loaders[kind](root, cfg)


def held_out_inputs(inputs: Sequence[str], holdout: int = 0, fold: int | None = None, folds: int = 4) -> set[str]:
    """Which input names to hold out: the last ``holdout`` of the sorted names, or, with ``fold``,
    block ``fold`` (0-based) of ``folds`` contiguous blocks of the sorted names. Neighbouring
    names are often neighbouring areas (tiles cut from one scene), so blocks keep areas apart."""
    names = sorted(set(inputs))
    if fold is not None:
        if not 0 <= fold < folds or folds > len(names):
            raise InputError(f"fold {fold} of {folds} is impossible with {len(names)} inputs")
        return set(np.array_split(np.array(names, dtype=object), folds)[fold].tolist())
    return set(names[len(names) - holdout:]) if holdout > 0 else set()


def split_holdout(examples: Sequence[Example], holdout: int = 0, fold: int | None = None, folds: int = 4
                  ) -> tuple[list[Example], list[Example]]:
    """``(train, held)``: real inputs chosen by :func:`held_out_inputs` (with all their targets)
    are held out; generated examples always train."""
    held = held_out_inputs([e.key.split("|")[0] for e in examples if e.real], holdout, fold, folds)
    return ([e for e in examples if e.key.split("|")[0] not in held],
            [e for e in examples if e.key.split("|")[0] in held])


class CropDataset:
    """Random ``crop`` windows with flips / 90-degree turns of SAR and optical together; items
    ``{input, target, weight}`` tensors (weight ``(1, c, c)``, 0 under cloud).

    An image of N crops' area appears ``max(1, round(N))`` times per epoch (times ``real_repeat``
    for real pairs), so a 1024 px image is sampled as often as the 256 px patches it holds.
    """

    def __init__(self, examples: Sequence[Example], crop: int, real_repeat: int, seed: int):
        def copies(e: Example) -> int:
            h, w = e.sar.shape[1:]
            return max(1, round(h * w / crop ** 2)) * (real_repeat if e.real else 1)

        self.items = [e for e in examples for _ in range(copies(e))]
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
        win = (slice(None), slice(r0, r0 + c), slice(c0, c0 + c))
        wt = np.ones((1, c, c), np.float32) if e.weight is None else e.weight[None][win]
        arrays = [e.sar[win], e.optical[win], wt]
        k, flip = int(rng.integers(4)), rng.random() < 0.5
        arrays = [np.rot90(a, k, (1, 2)) for a in arrays]
        if flip:
            arrays = [a[:, :, ::-1] for a in arrays]
        x, y, wt = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        return {"input": x, "target": y, "weight": wt}


# ----------------------------------------------------------------------------- training

def _synth_examples(work_dir: Path, n: int, seed: int, cfg: TranslateConfig) -> list[Example]:
    from sarfusion.synth.landscape import write_sen12

    root = work_dir / "synth_sen12"
    if not (root / "sen12_truth.json").exists():
        write_sen12(root, n, seed=seed + 1000)
    examples, dropped = load_sen12_examples(root, cfg)
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


def translation_kinds(data_dir: str | Path) -> list[str]:
    """The layouts present under ``data_dir``, in :data:`KINDS` order."""
    from sarfusion.datasets.pairs import find_pair_folders

    data_dir = Path(data_dir)
    found = {"sen12": any(data_dir.rglob("*_s1_*_p*.png")), "multiearth": any(data_dir.rglob("Sentinel1_*.tif*")),
             "pairs": bool(find_pair_folders(data_dir))}
    return [k for k in KINDS if found[k]]


def holdout_tag(holdout: int = 0, fold: int | None = None, folds: int = 4) -> str:
    """A run-folder suffix naming the held-out part, so runs of different splits never resume each other."""
    return f"_fold{fold}of{folds}" if fold is not None else (f"_holdout{holdout}" if holdout else "")


def train_translation(data_dir: str | Path, weights_dir: str | Path, preset: str = "demo",
                      work_dir: str | Path | None = None, holdout: int = 0,
                      config: TranslateConfig | None = None, fold: int | None = None, folds: int = 4) -> Path:
    """Train one translator per layout found in ``data_dir`` (SEN1-2, MultiEarth, pair folders).

    Cloudy optical targets are dropped first (count logged). Real inputs chosen by
    :func:`held_out_inputs` (the last ``holdout`` names, or block ``fold`` of ``folds``) are kept
    out of training (see :func:`evaluate_translation`). Checkpoints go to ``work_dir`` (default
    ``<weights_dir>/runs``) and resume. Returns ``weights_dir``; the models are
    ``<weights_dir>/{sen12,multiearth,pairs}/generator.pt``.
    """
    data_dir, weights_dir = Path(data_dir), Path(weights_dir)
    cfg = config if config is not None else choose_preset(PRESETS, preset)
    work = Path(work_dir) if work_dir is not None else weights_dir / "runs"
    log.info("translate config:\n%s", describe(cfg))
    kinds = translation_kinds(data_dir)
    if not kinds:
        raise InputError("holds no SEN1-2 pairs, MultiEarth Sentinel1_*.tiff files or sar/ + opt/ pair folders",
                         data_dir)
    for kind in kinds:
        examples, dropped = load_examples(data_dir, kind, cfg)
        train, held = split_holdout(examples, holdout, fold, folds)
        log.info("%s: %d pairs, %d dropped as cloudy, %d held out", kind, len(examples), dropped, len(held))
        if kind == "sen12" and cfg.synth_pairs > 0:
            train += _synth_examples(work, cfg.synth_pairs, cfg.engine.seed, cfg)
        train_on_examples(train, kind, weights_dir, cfg, work / f"{kind}_{cfg.preset}{holdout_tag(holdout, fold, folds)}",
                          extra={"dropped_cloudy": dropped, "holdout_keys": sorted({e.key for e in held})})
    return weights_dir


# ----------------------------------------------------------------------------- inference

def translator_state(weights_dir: str | Path, kind: str) -> dict:
    """The saved state (config, ``train_keys``, generator weights) of the translator for layout
    ``kind``: ``<weights_dir>/<kind>/generator.pt`` or, when the folder holds exactly one model (in
    ``<weights_dir>/*/`` or ``weights_dir`` itself), that model for any layout (it normalises the
    input as it was trained to)."""
    import torch

    weights_dir = Path(weights_dir)
    path = weights_dir / kind / WEIGHTS_NAME
    if not path.is_file():
        models = sorted(p for p in [weights_dir / WEIGHTS_NAME, *weights_dir.glob(f"*/{WEIGHTS_NAME}")] if p.is_file())
        if len(models) != 1:
            have = f"; it holds {', '.join(str(m.relative_to(weights_dir)) for m in models)}" if models else ""
            raise InputError(f"no {kind}/{WEIGHTS_NAME} here{have}; run 'sarfusion translate-train' first", weights_dir)
        path = models[0]
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("kind") != kind:
        log.info("%s: the only model here (trained on %s) translates this %s input", path, state.get("kind"), kind)
    return state


def load_translator(weights_dir: str | Path, kind: str, device: Any = None):
    """``(generator, state)`` for layout ``kind`` (which model: :func:`translator_state`)."""
    from sarfusion.engine import select_device
    from sarfusion.models.pix2pix import UNetGenerator

    state = translator_state(weights_dir, kind)
    net = state["config"]["net"]
    gen = UNetGenerator(state["in_channels"], state["out_channels"], net["num_downs"], net["ngf"], net["dropout"])
    gen.load_state_dict(state["generator"])
    return gen.to(select_device(device)).eval(), state


GENERATE_TILE = 1024
GENERATE_OVERLAP = 128


def _blend_ramp(n: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """1-D tile weight: a linear ramp over ``overlap`` px on the sides that meet another tile."""
    w = np.ones(n, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    if not first:
        w[:overlap] = ramp
    if not last:
        w[n - overlap:] = ramp[::-1]
    return w


def generate(gen, sar: np.ndarray, samples: int = 1, seed: int = 0, tile: int = GENERATE_TILE,
             overlap: int = GENERATE_OVERLAP) -> list[np.ndarray]:
    """``samples`` outputs ``(3, H, W)`` float32 [-1, 1] for one input ``(Cin, H, W)`` [-1, 1].

    One sample: deterministic (dropout off). Several: test-time dropout, seeded. Images larger
    than ``tile`` px go through in overlapping tiles blended by linear ramps (bounded memory on
    any image size); each tile is reflect-padded to a multiple of ``2**num_downs`` and cropped back.
    """
    import torch

    from sarfusion.engine import inference_autocast
    from sarfusion.models.pix2pix import enable_dropout_sampling

    m = 2 ** gen.num_downs
    dev = next(gen.parameters()).device
    h, w = sar.shape[1:]

    def run(x: np.ndarray) -> np.ndarray:
        th, tw = x.shape[1:]
        ph, pw = (-th) % m, (-tw) % m
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(th, tw) > max(ph, pw) else "edge")
        with inference_autocast(dev):
            out = gen(torch.from_numpy(np.ascontiguousarray(x))[None].to(dev))
        return out[0, :, :th, :tw].float().cpu().numpy()

    def one() -> np.ndarray:
        if max(h, w) <= tile:
            return run(sar)
        def starts(n: int) -> list[int]:
            return sorted({min(i, max(n - tile, 0)) for i in range(0, max(n - overlap, 1), tile - overlap)})

        out, norm = None, np.zeros((h, w), np.float32)
        rows, cols = starts(h), starts(w)
        for r in rows:
            for c in cols:
                th, tw = min(tile, h - r), min(tile, w - c)
                wt = np.outer(_blend_ramp(th, min(overlap, th), r == rows[0], r == rows[-1]),
                              _blend_ramp(tw, min(overlap, tw), c == cols[0], c == cols[-1]))
                y = run(sar[:, r:r + th, c:c + tw])
                if out is None:
                    out = np.zeros((y.shape[0], h, w), np.float32)
                out[:, r:r + th, c:c + tw] += y * wt
                norm[r:r + th, c:c + tw] += wt
        return out / norm

    outs = []
    with torch.no_grad():
        if samples <= 1:
            gen.eval()
            outs.append(one())
        else:
            enable_dropout_sampling(gen)
            torch.manual_seed(seed)
            for _ in range(samples):
                outs.append(one())
            gen.eval()
    return outs


@dataclass
class TranslationInput:
    """One SAR input: its name, the file to read, and the georeferencing to copy onto outputs."""

    name: str
    path: Path
    kind: str
    geotransform: tuple | None = None
    crs: str | None = None
    scene: Any = None  # the MultiEarth SarScene (VV + VH files)

    def read_raw(self) -> np.ndarray:
        """The SAR as read, ``(C, H, W)``: uint8 (SEN1-2), dB float32 VV + VH (MultiEarth), or the
        file's own type (pair layout)."""
        if self.kind == "sen12":
            from sarfusion.datasets.sen12 import read_png

            return read_png(self.path, 1)
        if self.kind == "multiearth":
            from sarfusion.datasets.multiearth import read_sar

            return read_sar(self.scene)
        from sarfusion.datasets.pairs import read_sar

        return read_sar(self.path).pixels


def list_inputs(input_path: str | Path, kind: str) -> list[TranslationInput]:
    """SAR inputs of ``kind`` under ``input_path`` (a file or folder); pixels are read later."""
    from sarfusion.io.raster import raster_info

    input_path = Path(input_path)
    out = []
    if kind == "sen12":
        files = [input_path] if input_path.is_file() else sorted(
            p for p in input_path.rglob("*.png") if "_s2_" not in p.name and not p.parent.name.startswith("s2_"))
        out = [TranslationInput(p.stem, p, kind) for p in files]
    elif kind == "multiearth":
        from sarfusion.datasets.multiearth import sar_scenes

        for s in sar_scenes(input_path):
            info = raster_info(s.vv)
            out.append(TranslationInput(s.name, s.vv, kind, info.geotransform if info.georeferenced else None,
                                        info.crs_wkt, scene=s))
    else:
        from sarfusion.datasets import pairs as pair_layout

        roots = pair_layout.find_pair_folders(input_path) if input_path.is_dir() and \
            pair_layout.pair_root(input_path) is None else [input_path]
        for root in roots or [input_path]:
            for p in pair_layout.find_pairs(root, require_optical=False):
                geo = p.sar.suffix.lower() != ".png" and raster_info(p.sar).georeferenced
                info = raster_info(p.sar) if geo else None
                out.append(TranslationInput(p.name, p.sar, kind, info.geotransform if info else None,
                                            info.crs_wkt if info else None))
    if not out:
        raise InputError(f"no {kind} SAR inputs found", input_path)
    return out


def write_output(out_dir: Path, item: TranslationInput, image: np.ndarray, suffix: str = "") -> Path:
    """Write one generated ``(3, H, W)`` [-1, 1] image: a 3-band uint8 RGB Cloud-Optimized GeoTIFF
    with the input's georeferencing for MultiEarth and georeferenced pair inputs, else a PNG."""
    rgb = unit_to_u8(image)
    if item.kind == "multiearth" or item.geotransform is not None:
        from sarfusion.io.raster import write_raster

        ext = item.path.suffix if item.kind == "multiearth" else ".tif"
        return write_raster(out_dir / f"{item.name}{suffix}{ext}", rgb, item.geotransform, item.crs, cog=True)
    from sarfusion.datasets.sen12 import write_png

    return write_png(out_dir / f"{item.name}{suffix}.png", rgb)


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


def pairs_truths(input_path: str | Path, cfg: dict) -> list[TruthSet]:
    """Pair folders: each SAR image's optical partner (as the model's target), unless its cloud +
    shadow fraction is over ``max_cloud_pairs``. Each pair is its own ground."""
    from sarfusion.clouds import cloud_fraction, read_optical_reflectance
    from sarfusion.datasets import pairs as pair_layout

    out = []
    for item in list_inputs(input_path, "pairs"):
        root = pair_layout.pair_root(item.path)
        opt = next((p.optical for p in pair_layout.find_pairs(root, require_optical=False)
                    if p.name == item.name), None) if root is not None else None
        clear = opt is not None and cloud_fraction(*read_optical_reflectance(opt))["cloud_fraction"] <= \
            cfg.get("max_cloud_pairs", TranslateConfig.max_cloud_pairs)
        truth = [unit_to_u8(optical_to_unit(pair_layout.read_optical(opt).pixels, *cfg["count_cut"]))] if clear else []
        out.append(TruthSet(item.name, item.name, item.name, truth, int(opt is not None and not clear)))
    return out


# One line per layout: how to find the truth of a layout's inputs (``detect_kind`` names them).
TRUTH_FINDERS = {"sen12": sen12_truths, "multiearth": multiearth_truths, "pairs": pairs_truths}


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
    trained |= {k.rsplit("/", 1)[-1] for k in trained}  # pairs from several folders train as <folder>/<name>
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


def model_input(raw: np.ndarray, state: dict, path: Path) -> np.ndarray:
    """Raw SAR -> the model's input: normalised as the model was trained (its ``sar_norm``); a
    one-channel model given several channels takes the first (logged)."""
    cfg = state["config"]
    x = normalize_sar(raw, cfg.get("sar_norm", "fixed"), cfg["sar_db_range"])
    want = state["in_channels"]
    if x.shape[0] != want:
        if want != 1:
            raise InputError(f"has {x.shape[0]} SAR channel(s), the model takes {want}", path)
        log.warning("%s: %d SAR channels, the model takes one: using the first", path, x.shape[0])
        x = x[:1]
    return x


def translate(input_path: str | Path, out_dir: str | Path, weights_dir: str | Path, samples: int = 1,
              preview_dir: str | Path | None = None, device: Any = None,
              max_previews: int | None = None) -> list[Path]:
    """Translate every SAR input under ``input_path`` into ``out_dir``; returns the written files.

    One image per input, named as the input (``<name>_s<k>`` for ``samples > 1``): PNG for
    SEN1-2 and non-georeferenced pair images, a 3-band uint8 RGB COG with the input's
    georeferencing for MultiEarth tiffs and georeferenced pair images. With ``preview_dir``:
    side-by-side PNG panels (SAR, generated, truth when found) for the first ``max_previews``
    inputs (default: all).
    """
    from tqdm import tqdm

    kind = detect_kind(input_path)
    gen, state = load_translator(weights_dir, kind, device)
    cfg = state["config"]
    inputs = list_inputs(input_path, kind)
    out_dir = Path(out_dir)
    written = []
    truth_sets = None
    for i, item in enumerate(tqdm(inputs, desc="translate", unit="image", disable=None)):
        sar = model_input(item.read_raw(), state, item.path)
        outs = generate(gen, sar, samples, seed=cfg["engine"]["seed"])
        for k, img in enumerate(outs):
            written.append(write_output(out_dir, item, img, f"_s{k}" if samples > 1 else ""))
        if preview_dir is not None and (max_previews is None or i < max_previews):
            if truth_sets is None:
                truth_sets = {t.name: t for t in TRUTH_FINDERS[kind](input_path, cfg)}
            found = truth_sets.get(item.name)
            write_translation_panel(Path(preview_dir) / f"{item.name}.png", sar, outs[0],
                                    found.truths[0] if found is not None and found.truths else None)
    return written


def write_translation_panel(path: Path, sar: np.ndarray, generated: np.ndarray, truth_u8: np.ndarray | None,
                            max_side: int = 512) -> Path:
    """A PNG panel SAR | generated | truth (when known); ``sar`` and ``generated`` in model space."""
    from sarfusion.preview import write_panel

    imgs = [unit_to_u8(sar[0]), unit_to_u8(generated)] + ([truth_u8] if truth_u8 is not None else [])
    labels = ["SAR", "generated"] + (["truth"] if truth_u8 is not None else [])
    return write_panel(path, imgs, labels, max_side=max_side)


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
                         config: TranslateConfig | None = None, fold: int | None = None, folds: int = 4) -> dict:
    """Hold out real inputs (the last ``holdout`` names, or block ``fold`` of ``folds``; see
    :func:`held_out_inputs`), train on the rest (unless ``train=False``), and score the model and
    the two baselines on the held-out inputs, whole images, with
    :func:`sarfusion.metrics.image_quality.score_translation`. Writes the images scored and a
    full-size PNG panel per held-out input (SAR | generated | truth) under
    ``<work_dir>/eval_<kind>/``.

    Returns ``{kind: {"model"|"mean"|"histmatch": {psnr, ssim, multiearth, n_images},
    "dropped_cloudy": n, "held_out": [names], "train_seconds": s}}``.
    """
    import shutil

    from sarfusion.datasets.sen12 import write_png
    from sarfusion.metrics.image_quality import score_translation

    data_dir, work_dir = Path(data_dir), Path(work_dir)
    cfg = config if config is not None else choose_preset(PRESETS, preset)
    if train:
        train_translation(data_dir, weights_dir, preset, work_dir / "runs", holdout=holdout, config=cfg,
                          fold=fold, folds=folds)
    results = {}
    for kind in KINDS:
        if not (Path(weights_dir) / kind / WEIGHTS_NAME).is_file() or kind not in translation_kinds(data_dir):
            continue
        gen, state = load_translator(weights_dir, kind)
        examples, dropped = load_examples(data_dir, kind, cfg)
        tr, held = split_holdout(examples, holdout, fold, folds)
        if not held:
            raise InputError(f"nothing held out for {kind} (holdout={holdout}, fold={fold})", data_dir)
        base = baseline_images(tr, held)
        root = work_dir / f"eval_{kind}"
        shutil.rmtree(root, ignore_errors=True)  # a folder of an earlier split would be scored too
        truth_dir = root / "truth"
        generated: dict[str, np.ndarray] = {}
        for e in held:
            stem, _, date = e.key.partition("|")
            write_png(truth_dir / stem / f"{date}.png" if kind == "multiearth" else truth_dir / f"{stem}.png",
                      unit_to_u8(e.optical))
            if stem not in generated:
                outs = generate(gen, e.sar, samples, seed=0)
                generated[stem] = outs[0]
                for k, o in enumerate(outs):
                    write_png(root / "model" / f"{stem}{f'_s{k}' if samples > 1 else ''}.png", unit_to_u8(o))
                write_translation_panel(root / "panels" / f"{stem}.png", e.sar, outs[0], unit_to_u8(e.optical),
                                        max_side=max(e.sar.shape[1:]))
            for name in ("mean", "histmatch"):
                write_png(root / name / f"{stem}.png", base[name][e.key])
        scores: dict[str, Any] = {name: score_translation(root / name, truth_dir) for name in ("model", "mean", "histmatch")}
        scores["dropped_cloudy"] = dropped
        scores["held_out"] = sorted(generated)
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

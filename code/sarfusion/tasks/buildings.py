"""SpaceNet 6 building footprints: train (folds by easting), predict (TTA, fold ensemble,
watershed), write the submission CSV and previews, and the input-mode experiment.

Weights layout (``weights_dir``, may be shared with ``colorizer.pt``)::

    buildings_config.json        the BuildingsConfig used
    buildings_fold<k>.pt         {"state_dict", "stats", "input_mode", "encoder", ...} per fold

Input modes: ``sar4`` (HH, HV, VH, VV), ``span`` (textbook SPAN in dB), ``fused`` (HSV fusion of
PS-RGB with the SPAN; needs optical, so it cannot run on the SAR-only test AOI), ``colorized``
(the Pix2Pix colorizer's RGB from SAR; the colorizer is trained into the same ``weights_dir``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import shapely

from sarfusion.config import choose_preset, describe
from sarfusion.datasets.sn6 import SN6Tile, find_label_csv, find_orientations, find_tiles, read_sar
from sarfusion.datasets.sn6_buildings import (AugmentParams, NormStats, StripContext, compute_norm_stats,
                                              easting_folds, orient, rasterize_instances, read_building_polygons,
                                              read_model_input)
from sarfusion.engine import EngineConfig, map_processes
from sarfusion.errors import InputError
from sarfusion.io.atomic import atomic_path
from sarfusion.io.raster import raster_info, write_raster
from sarfusion.io.vector import geometries_to_wkt, write_submission_csv
from sarfusion.models.segmentation import INPUT_CHANNELS, TARGET_NAMES
from sarfusion.postproc import (WatershedParams, distance_to_nodata, finish_instances, fit_row_counts,
                                flood_instances, log_area_channel, merge_footprints, polygonize_instances,
                                probabilities_to_polygons, touches_nodata)

log = logging.getLogger(__name__)

INPUT_MODES = tuple(INPUT_CHANNELS)
CONFIG_NAME = "buildings_config.json"


@dataclass
class BuildingsConfig:
    """Everything the building model needs; ``demo`` trains in minutes on 2 CPU cores."""

    preset: str = "demo"
    input_mode: str = "sar4"
    encoder: str = "efficientnet-b0"
    # "none" (random), "imagenet" or a local state-dict file (models.segmentation.resolve_encoder_weights)
    encoder_weights: str = "none"
    decoder_channels: tuple[int, ...] | None = (64, 48, 32, 24, 16)  # None = smp default (256..16)
    # The network sees tiles resized by this factor (0.5: 1 m pixels for SN6's 0.5 m tiles), in
    # training and at prediction, where the probabilities are resized back to the tile.
    input_scale: float = 1.0
    # The SN6 winner's extra inputs at the bottleneck (datasets.sn6_buildings.StripContext): a
    # one-hot of the tile's strip, its look direction and the strip's northing, added to the
    # deepest feature map (models.segmentation.ContextUnet). The strip list is the training tiles'.
    strip_context: bool = False
    engine: EngineConfig = field(default_factory=EngineConfig)
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 20
    # Stepped learning rate (the SN6 winner's): after the warm-up the lr stays at ``lr`` and is
    # multiplied by ``lr_gamma`` at each of these fractions of ``engine.max_steps``. Empty: cosine
    # decay to 5 % of ``lr`` instead.
    lr_milestones: tuple[float, ...] = ()
    lr_gamma: float = 0.5
    augment: AugmentParams = field(default_factory=AugmentParams)
    edge_width: int = 2  # px, target "edge" band inside each footprint
    contact_width: int = 3  # px, target "contact": pixels this close to two different buildings
    contact_inside_width: int | None = None  # px, the same inside a building (None: contact_width)
    channel_weights: tuple[float, float, float] = (1.0, 0.5, 0.5)  # footprint, edge, contact
    focal_weight: float = 1.0
    dice_weight: float = 1.0
    # The winner's loss weights (models.segmentation.loss_pixel_weights), on the per-pixel (focal)
    # term: building pixels x positive_pixel_weight, each crop x (image_weight_base +
    # image_weight_per_building x its building count). Neutral: 1, 1, 0.
    positive_pixel_weight: float = 1.0
    image_weight_base: float = 1.0
    image_weight_per_building: float = 0.0
    watershed: WatershedParams = field(default_factory=WatershedParams)
    tta_scales: tuple[float, ...] = (1.0,)
    tta_flip: bool = False  # left-right flip TTA (predict --tta turns it and the scales on)
    # Test-time augmentation (flips and tta_scales) at prediction AND in the threshold calibration,
    # so thresholds are chosen on the probabilities test.sh will threshold.
    tta: bool = False
    folds: int = 1  # easting-band folds: K > 1 trains K models (an ensemble) with out-of-fold validation
    # With validation tiles (folds > 1): F1 on them at every checkpoint, and the weights of the best
    # checkpoint are the fold's model (not the last step's). The watershed as configured, no TTA.
    select_best: bool = True
    fold_gap_m: float | None = None  # exclusion around a validation band; None = one tile width
    stats_max_tiles: int = 64  # tiles read to compute the normalisation statistics
    cache_tiles: bool = True  # keep decoded training tiles in memory (demo-sized sets)
    max_previews: int = 50
    experiment_test_fraction: float = 0.25  # east-most easting band held out by the experiment
    # After training, the watershed thresholds are chosen by F1 on this many labelled tiles
    # (validation tiles when folds > 1, else training tiles): a fixed 0.75 seed threshold finds
    # nothing with a briefly trained demo model. 0 keeps ``watershed`` as configured.
    calibrate_tiles: int = 6
    calibrate_seed_thresholds: tuple[float, ...] = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75)
    calibrate_mask_thresholds: tuple[float, ...] = (0.15, 0.2, 0.3, 0.4, 0.5)
    # Row splitting (postproc.split_rows; not in the winner's recipe): the row-count table is fitted
    # on the labels of up to ``row_count_tiles`` training tiles, and the calibration then scores every
    # threshold pair with and without splitting, so it is used only where it raises F1 there. With
    # folds the table is fitted once on all training tiles, validation bands included: no model saw
    # those tiles, but their labels vote in the table (one of ~15 neighbours per bin).
    row_split: bool = True
    row_count_tiles: int = 400
    # Edge and contact targets around rows of touching buildings instead of around each building
    # (datasets.sn6_buildings.building_targets ``rows``; ours, not the winner's): where the SAR shows
    # no wall between terraced houses, per-house targets teach the network to guess walls, and its
    # guesses break rows into pieces that the row splitting then cuts wrongly.
    row_targets: bool = False
    # A second network per fold (ours): at every footprint pixel, the log of the area of the label
    # building holding it (models.segmentation.area_loss). The row splitting can then count a blob's
    # buildings from the areas its pixels predict (the SAR shows a building's height and kind, a
    # blob's outline does not); the calibration chooses between that, the label table and no
    # splitting. A network of its own: as a 4th output of the footprint network it cost that
    # network's footprints more than the counts gained. Same encoder and decoder as the footprint
    # network; its own input scale, crop, batch and steps (coarse pixels suffice: counts take the
    # median over a whole blob), no scale augmentation (it would change the areas).
    area_model: bool = False
    area_input_scale: float = 0.5
    area_crop: int = 64
    area_batch_size: int = 8
    area_steps: int = 1500


PRESETS = {
    # 3300 steps of 4 crops of 128 px at the tiles' own 0.5 m (each crop covers 64 m): ~0.18 s/step
    # on 2 CPU cores with efficientnet-b0 and a slim decoder (64..16 channels), ~10 minutes. Chosen
    # on the issue-21 scenes' validation band (`experiment sn6-inputs --modes sar4`: the east band of
    # the demo's TRAINING AOI, never its test part): 650 steps F1 0.183 (187 s), 1600 steps F1 0.258
    # (410 s), both at 1 m pixels (input_scale 0.5). Re-chosen there after the watershed and contact
    # fixes: 1 m pixels F1 0.216 (433 s), 0.5 m 0.352 (380 s: no resize, so no slower), 0.5 m with
    # edge and contact weighted as the footprint 0.352 (not taken). At 1 m a 4.8 m terraced house is
    # 5 px, too few for its walls. On the old scenes 650 steps at 1 m gave the demo's test part F1 0.658.
    # With row splitting in the calibration (2026-12-05), same band: 1600 steps F1 0.501 (358 s),
    # 2600 steps 0.564 (557 s), so 2600. With channels-last weights (a step 0.145 instead of 0.175 s)
    # the same time buys more steps; chosen on the validation city below (seed 3, training part):
    # 2600 steps F1 0.427 (468 s), 3300 0.462 (610 s), 4000 0.455 (775 s), so 3300. The same 2600
    # steps in the NCHW layout had scored 0.455 there: one run's F1 moves by a few hundredths with
    # nothing but the order of floating-point sums changed.
    "demo": BuildingsConfig(
        preset="demo",
        encoder="efficientnet-b0",
        decoder_channels=(64, 48, 32, 24, 16),
        input_scale=1.0,
        engine=EngineConfig(max_steps=3300, batch_size=4, num_workers=0, checkpoint_every=50, log_every=20),
        lr=1e-3,
        # Rotations up to 45 deg: a short run on one area (a few street-grid angles) otherwise never
        # sees buildings at other angles; on a synthetic test city with another grid angle this
        # took test F1 from 0.06 to 0.26 (400 steps) and 0.41 (800 steps), measured at 0.5 m.
        augment=AugmentParams(crop=128, scale=(0.8, 1.25), rotate_deg=45.0, affine_p=0.8),
        # The winner's contact inside buildings (1 px): with 3 px everywhere (2 px at a 1 m
        # input) a 4-5 m terraced house is contact through and through, and perfect targets at
        # that resolution scored F1 0.625 on the demo's TRAINING labels; 1 px: 0.998.
        contact_inside_width=1,
        watershed=WatershedParams(seed_threshold=0.75, mask_threshold=0.5, min_seed_area=10),
        # The default grid's corner (seed 0.75, mask 0.5) was the best pair for the demo's weights
        # on every city scored, so this grid goes higher (the low seeds stay for short runs). Chosen
        # on the seed-3 validation city, the thresholds calibrated on the 6 training tiles as
        # always: F1 0.462 -> 0.473 (seed 0.9 / mask 0.6 picked). 45 pairs instead of 35.
        calibrate_seed_thresholds=(0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 0.85, 0.9, 0.95),
        calibrate_mask_thresholds=(0.3, 0.4, 0.5, 0.6, 0.7),
        tta_scales=(1.0,),
        # Chosen on a validation city (the training part of a seed-3 city, never reported): trained on
        # the demo's training part, row targets F1 0.455 (P 0.485, R 0.429) against 0.426 (P 0.455,
        # R 0.401) with per-building targets. Not taken there: a second training city, an exponential
        # moving average of the weights, other seed sizes or connectivity; nor flip / scale TTA on the
        # training area's validation band (table in the README).
        row_targets=True,
        # Row counts from a second network (the area network, ~3 more minutes of training): chosen on
        # the same seed-3 validation city with the demo's footprint weights at seed 0.9 / mask 0.6:
        # counts from the label table F1 0.473, from the area network 0.524 (1 m pixels, 64 px crops
        # x 8, 1500 steps; 0.5 m crops of 128 x 4 for 2500 steps 0.513 in 490 s, 1000 steps 0.417),
        # from the true areas 0.587. The calibration still chooses between table, area and none.
        area_model=True,
    ),
    # The SN6 winner's recipe (../shared/SN6_WINNER_RECIPE.md), element by element where this code has the
    # piece: EfficientNet-B5 U-Net from ImageNet, AdamW 2e-4 / 1e-2, 512 px crops, scale 0.5-2, rotation
    # +-5 deg (p 0.7), left-right flips; targets edge 1 px, contact 1 px inside a building and 3 px
    # between buildings; focal + dice with channel weights 1 / 0.25 / 0.1; gradient clipping 1.2; 8
    # easting folds, each fold's best checkpoint by validation F1; TTA scales 0.8 / 1 / 1.5 with flips;
    # watershed on footprint x (1 - contact), 8-connected seeds of >= 110 px, dividing lines, outlines
    # grown 0.5 px, simplify 0.5; building pixels weighted 0.5 and each crop 0.5 + 0.5 x buildings / 8 in
    # the per-pixel loss; saturation / brightness / contrast; lr halved at 80, 100 and 120 / 140 of the
    # run; the strip one-hot / direction / northing inputs at the bottleneck.
    "full": BuildingsConfig(
        preset="full",
        encoder="efficientnet-b5",
        strip_context=True,
        encoder_weights="imagenet",  # every top-5 SN6 solution fine-tuned ImageNet encoders
        decoder_channels=None,
        # 10 loader processes (fewer where the cores are fewer: engine.usable_workers): a 512 px
        # training crop costs 0.13 s of one CPU core (tile read, targets, augmentation) and an
        # H200 takes a step of 8 in 0.11 s (bench/bench_gpu.py); 6 processes left it waiting
        # (0.18 s a step).
        engine=EngineConfig(max_steps=20000, batch_size=8, num_workers=10, checkpoint_every=1000, log_every=50,
                            grad_clip=1.2),
        lr=2e-4,
        warmup_steps=500,
        lr_milestones=(80 / 140, 100 / 140, 120 / 140),  # the winner's epochs 80, 100, 120 of 140
        lr_gamma=0.5,
        # Colour strengths and probability: the recipe names the transforms, not their ranges;
        # 0.2 is albumentations' ColorJitter default, brightness in std units of the normalised SAR.
        augment=AugmentParams(crop=512, scale=(0.5, 2.0), rotate_deg=5.0, affine_p=0.7,
                              color_p=0.5, brightness=0.2, contrast=0.2, saturation=0.2),
        # The winner's targets (his preprocessing): contact is a background pixel with two buildings
        # within 3 px, or a building pixel with another building within 1 px. (The "9" of his
        # recipe is the size of the square that only bounds where contact is looked for; read
        # as a 9 px radius everywhere it swallowed whole terraced houses: perfect targets then
        # scored F1 0.20 on the demo's test labels, 0.47 with 4 px; 1 / 3 px: below.)
        edge_width=1,
        contact_width=3,
        contact_inside_width=1,
        channel_weights=(1.0, 0.25, 0.1),
        positive_pixel_weight=0.5,
        image_weight_base=0.5,
        image_weight_per_building=0.5 / 8,
        watershed=WatershedParams(seed_threshold=0.75, mask_threshold=0.5, min_seed_area=110, min_area=80.0,
                                  simplify_tolerance=0.5, mask_minus_contact=True, seed_connectivity=8,
                                  dividing_lines=True, outline_buffer=0.5),
        tta_scales=(0.8, 1.0, 1.5),
        tta=True,
        folds=8,
        cache_tiles=False,
    ),
}


def _config_from_dict(data: dict) -> BuildingsConfig:
    data = dict(data)
    data["engine"] = EngineConfig(**data["engine"])
    data["augment"] = AugmentParams(**{**data["augment"], "scale": tuple(data["augment"]["scale"])})
    data["watershed"] = WatershedParams(**{**data["watershed"],
                                           "row_counts": tuple(data["watershed"].get("row_counts") or ())})
    for key in ("decoder_channels", "channel_weights", "tta_scales", "calibrate_seed_thresholds",
                "calibrate_mask_thresholds", "lr_milestones"):
        if data.get(key) is not None:
            data[key] = tuple(data[key])
    known = {f.name for f in dataclasses.fields(BuildingsConfig)}
    return BuildingsConfig(**{k: v for k, v in data.items() if k in known})


def _check_mode(mode: str) -> None:
    if mode not in INPUT_MODES:
        raise InputError(f"unknown input mode {mode!r}; choose one of: {', '.join(INPUT_MODES)}")


# --- inputs ------------------------------------------------------------------------------------------
def prepare_inputs(tiles: Sequence[SN6Tile], input_mode: str, work_dir: str | Path,
                   colorizer_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the per-tile model inputs that are not read straight from the SAR tile.

    ``fused``: ``work_dir/inputs/fused/<ImageId>.tif`` (3-band uint8, :func:`sarfusion.fusion.fuse_tile`;
    every tile needs a PS-RGB partner). ``colorized``: the colorizer's RGB tiles under
    ``work_dir/inputs/colorized`` (``colorizer_dir`` holds ``colorizer.pt``). ``sar4`` / ``span``:
    nothing to write (``{}``). Returns ``{ImageId: path}``.
    """
    _check_mode(input_mode)
    if input_mode in ("sar4", "span"):
        return {}
    out_dir = Path(work_dir) / "inputs" / input_mode
    out_dir.mkdir(parents=True, exist_ok=True)
    if input_mode == "fused":
        from tqdm.auto import tqdm

        from sarfusion.datasets.sn6 import read_rgb
        from sarfusion.fusion import fuse_tile

        missing = [t for t in tiles if t.rgb_path is None]
        if missing:
            raise InputError("fused input needs a PS-RGB tile (the test AOI has none: use sar4, span or "
                             "colorized there)", missing[0].sar_path)
        out = {}
        for tile in tqdm(tiles, desc="fuse", mininterval=1.0):
            path = out_dir / f"{tile.image_id}.tif"
            if not path.exists():
                sar, rgb = read_sar(tile.sar_path), read_rgb(tile.rgb_path)
                if sar.shape[1:] != rgb.shape[1:]:
                    raise InputError(f"is {rgb.shape[2]}x{rgb.shape[1]} px, its SAR tile "
                                     f"{sar.shape[2]}x{sar.shape[1]}", tile.rgb_path)
                fused, _, _ = fuse_tile(sar, rgb)
                info = raster_info(tile.sar_path)
                write_raster(path, fused, info.geotransform, info.crs_wkt, 0)
            out[tile.image_id] = path
        return out
    from sarfusion.tasks.colorize import colorize_tiles

    if colorizer_dir is None or not (Path(colorizer_dir) / "colorizer.pt").is_file():
        raise InputError("colorized input needs a trained colorizer (colorizer.pt)", colorizer_dir)
    paths = colorize_tiles([t.sar_path for t in tiles], colorizer_dir, out_dir, num_workers=0)
    return {t.image_id: p for t, p in zip(tiles, paths)}


def _subset_aoi(aoi_dir: Path, tiles: Sequence[SN6Tile], out_dir: Path) -> Path:
    """An AOI folder of symlinks holding only ``tiles`` (so the colorizer never sees held-out optical)."""
    for sub in ("SAR-Intensity", "PS-RGB", "SummaryData"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for tile in tiles:
        for path, sub in ((tile.sar_path, "SAR-Intensity"), (tile.rgb_path, "PS-RGB")):
            if path is not None and not (out_dir / sub / path.name).exists():
                os.symlink(Path(path).resolve(), out_dir / sub / path.name)
    orient_file = find_orientations(aoi_dir)
    if orient_file and not (out_dir / "SummaryData" / orient_file.name).exists():
        os.symlink(orient_file.resolve(), out_dir / "SummaryData" / orient_file.name)
    return out_dir


# --- training ----------------------------------------------------------------------------------------
def _lr_lambda(warmup: int, total: int, milestones: Sequence[float] = (), gamma: float = 0.5
               ) -> Callable[[int], float]:
    """The lr factor (of the configured lr) for optimiser step ``step`` (0-based) of ``total``.

    A linear warm-up over ``warmup`` steps, then either cosine decay to 0.05 (``milestones``
    empty) or a constant 1 multiplied by ``gamma`` from each step ``round(m * total)``, ``m`` in
    ``milestones`` (fractions of the run). A pure function of the step, so the scheduler's saved
    ``last_epoch`` alone restores it on resume.
    """
    if any(not 0 < m < 1 for m in milestones):
        raise InputError(f"lr_milestones are fractions of the run in (0, 1), got {tuple(milestones)}")
    starts = sorted(int(round(m * total)) for m in milestones)

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        if starts:
            return gamma ** sum(step >= s for s in starts)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return fn


def make_scheduler(opt: Any, cfg: BuildingsConfig) -> Any:
    """The building model's lr schedule on ``opt`` (a ``LambdaLR`` over :func:`_lr_lambda`), stepped
    once per optimiser step by the engine, which saves and restores its state with checkpoints."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(cfg.warmup_steps, cfg.engine.max_steps, cfg.lr_milestones, cfg.lr_gamma))


def _norm_stats(tiles: Sequence[SN6Tile], mode: str, prepared: dict[str, Path], max_tiles: int) -> NormStats:
    step = max(1, len(tiles) // max_tiles)
    return compute_norm_stats(read_model_input(t, mode, prepared.get(t.image_id)) for t in list(tiles)[::step])


def training_dataset(tiles: Sequence[SN6Tile], polygons: dict, prepared: dict[str, Path], stats: NormStats,
                     cfg: BuildingsConfig, context: StripContext | None = None,
                     area: bool = False) -> "BuildingTileDataset":
    """The training samples of ``cfg``: its input mode, augmentation, targets, scale and caching
    (and each tile's strip-context vector with ``context``; each pixel's building area with
    ``area``, the target of the area network)."""
    from sarfusion.datasets.sn6_buildings import BuildingTileDataset
    return BuildingTileDataset(tiles, prepared, cfg.input_mode, polygons, stats, cfg.augment,
                               cfg.edge_width, cfg.contact_width, cache=cfg.cache_tiles, seed=cfg.engine.seed,
                               contact_inside=cfg.contact_inside_width, input_scale=cfg.input_scale,
                               count_buildings=cfg.image_weight_per_building != 0, context=context,
                               row_targets=cfg.row_targets, area_target=area)


def area_config(cfg: BuildingsConfig) -> BuildingsConfig:
    """The training config of the area network of ``cfg`` (``cfg.area_*``): its input scale, crop,
    batch and steps, no scale augmentation; everything else as ``cfg``."""
    return dataclasses.replace(
        cfg, input_scale=cfg.area_input_scale,
        augment=dataclasses.replace(cfg.augment, crop=cfg.area_crop, scale=(1.0, 1.0)),
        engine=dataclasses.replace(cfg.engine, max_steps=cfg.area_steps, batch_size=cfg.area_batch_size))


def train_model(tiles: Sequence[SN6Tile], polygons: dict, prepared: dict[str, Path], cfg: BuildingsConfig,
                run_dir: Path, out_path: Path, encoder_state: dict | None = None,
                val_tiles: Sequence[SN6Tile] = (), output: str = "buildings",
                stats: NormStats | None = None) -> dict[str, Any]:
    """Train one U-Net on ``tiles`` with the shared engine; save ``out_path`` (weights + stats).
    ``output``: "buildings" (footprint, edge, contact; focal + dice) or "area" (one channel, the log
    building area; :func:`~sarfusion.models.segmentation.area_loss`, with :func:`area_config`).
    ``encoder_state``: pretrained 3-band encoder weights to start from (None: random init).
    ``val_tiles`` (with ``cfg.select_best``): validated at every checkpoint; the best F1's weights
    are saved (kept in ``run_dir/best.pt`` across a resume). ``stats``: the input normalisation of
    ``tiles`` when the caller already has it (the area network shares its footprint network's);
    None computes it.

    Returns ``{"path", "steps", "seconds", "steps_per_s", "loss"}`` (+ ``best_step``,
    ``best_val_f1`` and ``val_f1`` per checkpoint step when validating).
    """
    import torch

    from sarfusion.engine import Engine, gather_objects, save_torch_atomic, seed_everything
    from sarfusion.models.segmentation import (area_loss, build_segmentation_model, focal_dice_loss,
                                               freeze_unused_parameters, loss_pixel_weights)

    if output not in ("buildings", "area"):
        raise ValueError(f"output must be 'buildings' or 'area', got {output!r}")
    area = output == "area"
    if stats is None:
        stats = _norm_stats(tiles, cfg.input_mode, prepared, cfg.stats_max_tiles)
    log.info("normalisation (%s): mean %s std %s", cfg.input_mode,
             np.round(stats.mean, 2).tolist(), np.round(stats.std, 2).tolist())
    context = StripContext.from_tiles(tiles) if cfg.strip_context else None
    if context is not None:
        log.info("strip context: %d strips, direction and northing at the bottleneck", len(context.strips))
    dataset = training_dataset(tiles, polygons, prepared, stats, cfg, context, area=area)
    seed_everything(cfg.engine.seed)  # initial weights from the seed (torch's own start seed varies)
    classes = 1 if area else len(TARGET_NAMES)
    model = build_segmentation_model(cfg.encoder, cfg.input_mode, classes=classes, decoder_channels=cfg.decoder_channels,
                                     encoder_weights=encoder_state, context_size=context.size if context else 0)
    freeze_unused_parameters(model, INPUT_CHANNELS[cfg.input_mode])  # DDP waits for every trainable one
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = make_scheduler(opt, cfg)
    engine = Engine(run_dir, cfg.engine, {"model": model}, {"opt": opt}, {"opt": sched}, task_config=cfg)
    loader = engine.make_loader(dataset, shuffle=True)
    weighted = (cfg.positive_pixel_weight, cfg.image_weight_base, cfg.image_weight_per_building) != (1.0, 1.0, 0.0)

    def step_fn(ctx, batch) -> dict[str, float]:
        net = ctx.models["model"]
        with ctx.autocast():
            logits = net(batch["image"], batch["context"]) if context is not None else net(batch["image"])
        if area:
            loss = area_loss(logits[:, 0], batch["area"], batch["valid"][:, 0])
            ctx.backward(loss, "opt")
            return {"loss": float(loss.detach())}
        pixel_weight = None
        if weighted:  # neutral weights skip this: the unweighted loss stays bit for bit as before
            pixel_weight = loss_pixel_weights(batch["target"][:, :1], batch.get("buildings"),
                                              cfg.positive_pixel_weight, cfg.image_weight_base,
                                              cfg.image_weight_per_building)
        loss, parts = focal_dice_loss(logits.float(), batch["target"], cfg.channel_weights,
                                      cfg.focal_weight, cfg.dice_weight, valid=batch["valid"],
                                      pixel_weight=pixel_weight)
        ctx.backward(loss, "opt")
        return {"loss": float(loss.detach()), **parts}

    best_path = run_dir / "best.pt"
    best = torch.load(best_path, map_location="cpu", weights_only=False) if best_path.exists() else None
    curve: dict[int, float] = dict(best["curve"]) if best else {}
    validate = bool(val_tiles) and cfg.select_best and not area

    def on_checkpoint(step: int) -> None:
        nonlocal best
        net = engine.unwrap("model")
        net.eval()
        f1 = validation_f1([LoadedModel(net, stats, cfg.input_mode, cfg.input_scale, context)], val_tiles,
                           polygons, prepared, cfg)
        net.train()
        curve[step] = f1
        log.info("step %d: validation F1 %.4f on %d tiles%s", step, f1, len(val_tiles),
                 " (best so far)" if best is None or f1 > best["f1"] else "")
        if best is None or f1 > best["f1"]:
            best = {"step": step, "f1": f1, "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
        if engine.is_main:
            save_torch_atomic({**best, "curve": curve}, best_path)

    start_step = 0
    t0 = time.time()
    if engine.checkpoint_path.exists():
        start_step = int(torch.load(engine.checkpoint_path, map_location="cpu", weights_only=False)["step"])
    last = engine.fit(loader, step_fn, desc=f"{'building areas' if area else 'buildings'} {cfg.input_mode}", on_checkpoint=on_checkpoint if validate else None)
    seconds = time.time() - t0
    steps = engine.step - start_step
    state_dict = best["state_dict"] if validate and best is not None else engine.unwrap("model").state_dict()
    if engine.is_main:
        save_torch_atomic({"state_dict": state_dict, "stats": dataclasses.asdict(stats),
                           "input_mode": cfg.input_mode, "encoder": cfg.encoder,
                           "decoder_channels": cfg.decoder_channels, "input_scale": cfg.input_scale,
                           "context": context.to_dict() if context else None, "output": output,
                           "train_ids": [t.image_id for t in tiles]},
                          out_path)
    gather_objects(None)  # the other ranks load this file next: wait until rank 0 has written it
    rate = steps / seconds if seconds > 0 else float("nan")
    log.info("trained %d steps in %.1f s (%.2f steps/s) -> %s", steps, seconds, rate, out_path)
    out = {"path": str(out_path), "steps": steps, "seconds": round(seconds, 1),
           "steps_per_s": round(rate, 3), "loss": last.get("loss")}
    if validate and best is not None:
        log.info("kept the weights of step %d (validation F1 %.4f; last step %d)", best["step"], best["f1"], engine.step)
        out.update(best_step=best["step"], best_val_f1=best["f1"], val_f1={str(k): v for k, v in sorted(curve.items())})
    return out


def validation_f1(models: Sequence["LoadedModel"], tiles: Sequence[SN6Tile], polygons: dict,
                  prepared: dict[str, Path], cfg: BuildingsConfig) -> float:
    """SpaceNet F1 of ``models`` on labelled ``tiles`` with the configured watershed, no TTA."""
    from sarfusion.metrics.buildings import score_buildings

    ids = [t.image_id for t in tiles]
    rows = predict_rows_sharded(models, tiles, prepared, cfg)
    return float(score_buildings(_truth_frame(polygons, ids), _with_empty_rows(rows, ids))["f1"])


def _load_labels(aoi_dir: Path) -> dict:
    csv = find_label_csv(aoi_dir)
    if csv is None:
        raise InputError("no building label CSV (SummaryData/*Buildings*.csv)", aoi_dir)
    return read_building_polygons(csv)


def _labelled(tiles: Sequence[SN6Tile], polygons: dict, where: Path) -> list[SN6Tile]:
    kept = [t for t in tiles if t.image_id in polygons]
    if len(kept) < len(tiles):
        log.warning("%d of %d tiles in %s have no rows in the label CSV; skipped", len(tiles) - len(kept),
                    len(tiles), where)
    if not kept:
        raise InputError("no SAR tile has rows in the label CSV (ImageIds do not match)", where)
    return kept


def _check_sar_tiles(tiles: Sequence[SN6Tile]) -> None:
    """Every SAR tile has 4 bands (header reads only), before anything is computed or written."""
    for tile in tiles:
        info = raster_info(tile.sar_path)
        if info.count != 4:
            raise InputError(f"has {info.count} bands, expected 4 (HH, HV, VH, VV)", tile.sar_path)


def _x_origins(tiles: Sequence[SN6Tile]) -> tuple[dict[str, float], float]:
    infos = {t.image_id: raster_info(t.sar_path) for t in tiles}
    width_m = max(abs(i.geotransform[1]) * i.width for i in infos.values())
    return {k: i.geotransform[0] for k, i in infos.items()}, width_m


def train_buildings(aoi_dir: str | Path, weights_dir: str | Path, preset: str = "demo",
                    input_mode: str = "sar4", folds: int | None = None, work_dir: str | Path | None = None,
                    config: BuildingsConfig | None = None) -> Path:
    """Train the building U-Net(s) on an SN6 training AOI; one model per easting fold.

    ``folds`` (default: the config's) ``== 1`` trains one model on every tile; ``== K > 1`` trains
    K models, model k without easting band k and its neighbours (``fold_gap_m``), and reports its
    validation F1. The watershed thresholds are then calibrated on out-of-fold predictions (each
    validation tile by the one model that never saw it, with the config's TTA); with one fold, on
    training tiles, the only labelled ones there are.
    Checkpoints go to ``work_dir`` (default ``<weights_dir>/runs/buildings_<mode>``) and resume.
    Returns ``weights_dir``.
    """
    _check_mode(input_mode)
    aoi_dir, weights_dir = Path(aoi_dir), Path(weights_dir)
    cfg = config if config is not None else choose_preset(PRESETS, preset)
    cfg.input_mode = input_mode
    if folds is not None:
        cfg.folds = int(folds)
    folds = cfg.folds
    log.info("buildings config:\n%s", describe(cfg))
    from sarfusion.models.segmentation import resolve_encoder_weights

    encoder_state = resolve_encoder_weights(cfg.encoder, cfg.encoder_weights)  # fails here, before any work
    log.info("encoder %s: %s", cfg.encoder, "random init" if encoder_state is None else
             f"initialised from {cfg.encoder_weights} ({len(encoder_state)} tensors)")
    tiles = find_tiles(aoi_dir, require_optical=input_mode == "fused")
    polygons = _load_labels(aoi_dir)
    tiles = _labelled(tiles, polygons, aoi_dir)
    _check_sar_tiles(tiles)
    if cfg.row_split:
        cfg.watershed = dataclasses.replace(cfg.watershed, row_counts=label_row_counts(tiles, polygons,
                                                                                      cfg.row_count_tiles))
    work = Path(work_dir) if work_dir else weights_dir / "runs" / f"buildings_{input_mode}"
    weights_dir.mkdir(parents=True, exist_ok=True)
    if input_mode == "colorized" and not (weights_dir / "colorizer.pt").is_file():
        from sarfusion.tasks.colorize import train_colorizer

        train_colorizer(aoi_dir, weights_dir, preset=cfg.preset, work_dir=work / "colorizer")
    prepared = prepare_inputs(tiles, input_mode, work, weights_dir)
    x_origin, width_m = _x_origins(tiles)
    gap = cfg.fold_gap_m if cfg.fold_gap_m is not None else width_m
    splits = easting_folds(x_origin, folds, gap)
    by_id = {t.image_id: t for t in tiles}
    from sarfusion.engine import is_main_process, save_config

    main = is_main_process()  # under torchrun only rank 0 writes files; every rank trains and predicts
    if main:
        for stale in [*weights_dir.glob("buildings_fold*.pt"), *weights_dir.glob("buildings_area_fold*.pt")]:
            fold = int(stale.stem.rpartition("fold")[2])
            if fold >= len(splits) or (not cfg.area_model and stale.stem.startswith("buildings_area")):
                stale.unlink()  # an older run with more folds must not join this ensemble
        save_config(cfg, weights_dir / CONFIG_NAME)
        orient_file = find_orientations(aoi_dir)
        if orient_file:  # the real file lists test strips too: predict falls back to this copy
            shutil.copyfile(orient_file, weights_dir / orient_file.name)
    report = []
    out_of_fold: list[tuple[SN6Tile, list[LoadedModel]]] = []
    for k, (train_ids, val_ids) in enumerate(splits):
        log.info("fold %d/%d: %d training tiles, %d validation tiles", k + 1, len(splits), len(train_ids), len(val_ids))
        fold_tiles = [by_id[i] for i in train_ids]
        stats = _norm_stats(fold_tiles, cfg.input_mode, prepared, cfg.stats_max_tiles)
        info = train_model(fold_tiles, polygons, prepared, cfg, work / f"fold{k}",
                           weights_dir / f"buildings_fold{k}.pt", encoder_state,
                           val_tiles=[by_id[i] for i in val_ids], stats=stats)
        area_path = weights_dir / f"buildings_area_fold{k}.pt"
        if cfg.area_model:
            info["area"] = train_model(fold_tiles, polygons, prepared, area_config(cfg), work / f"area_fold{k}",
                                       area_path, encoder_state, output="area", stats=stats)
        if val_ids:
            models = [_load_model(Path(info["path"]))] + ([_load_model(area_path)] if cfg.area_model else [])
            out_of_fold += [(by_id[i], models) for i in val_ids]
            rows = predict_rows_sharded(models, [by_id[i] for i in val_ids], prepared, cfg, tta=cfg.tta)
            truth = _truth_frame(polygons, val_ids)
            from sarfusion.metrics.buildings import score_buildings

            info["val"] = score_buildings(truth, _with_empty_rows(rows, val_ids))
            log.info("fold %d validation: F1 %.3f (P %.3f, R %.3f)", k, info["val"]["f1"],
                     info["val"]["precision"], info["val"]["recall"])
        report.append(info)
    if not out_of_fold:
        ensemble = load_models(weights_dir)[0]
        out_of_fold = [(t, ensemble) for t in tiles]
    calibration = calibrate_watershed(out_of_fold, polygons, prepared, cfg)
    if main:
        save_config(cfg, weights_dir / CONFIG_NAME)
        with atomic_path(weights_dir / "buildings_train_report.json") as tmp:
            tmp.write_text(json.dumps({"folds": report, "calibration": calibration}, indent=2, default=float))
    return weights_dir


def label_row_counts(tiles: Sequence[SN6Tile], polygons: dict, max_tiles: int) -> tuple[str, ...]:
    """The row-count table (:func:`~sarfusion.postproc.fit_row_counts`) of the labels of up to
    ``max_tiles`` of ``tiles``, evenly spread, rasterised on each tile's own pixel grid."""
    chosen = list(tiles)[::max(1, len(tiles) // max(1, max_tiles))][:max_tiles]

    def label_images():
        for tile in chosen:
            info = raster_info(tile.sar_path)
            yield rasterize_instances(polygons.get(tile.image_id, []), (info.height, info.width))

    t0 = time.time()
    table = fit_row_counts(label_images())
    log.info("row-count table fitted on the labels of %d tiles in %.1f s", len(chosen), time.time() - t0)
    return table


# What a worker process of :func:`calibrate_watershed` scores (:func:`_set_calibration`, once per
# worker): the tiles' probabilities, ids, truth, the splitting choices and the base watershed.
_CALIBRATION: dict[str, Any] = {}


def _set_calibration(state: dict[str, Any]) -> None:
    _CALIBRATION.clear()
    _CALIBRATION.update(state)


def _score_threshold_pair(pair: tuple[float, float]) -> list[float]:
    """F1 of each splitting choice of ``_CALIBRATION["splits"]`` at one ``(seed, mask)`` threshold
    pair, on the calibration tiles' probabilities. Floods once for all choices."""
    from sarfusion.metrics.buildings import score_buildings

    c = _CALIBRATION
    params = dataclasses.replace(c["watershed"], seed_threshold=pair[0], mask_threshold=pair[1])
    flooded = [flood_instances(prob, params) for prob in c["probs"]]
    f1s = []
    polygon_caches = [{} for _ in flooded]  # the blobs no choice splits are polygonized once
    shape_caches = [{} for _ in flooded]  # and each blob's shape is measured once for both counts
    for split, source in c["splits"]:
        split_params = dataclasses.replace(params, split_rows=split, row_counts_from=source)
        rows = []
        for image_id, prob, labels, cache, shapes in zip(c["ids"], c["probs"], flooded, polygon_caches, shape_caches):
            instances = finish_instances(labels, split_params, log_area_channel(prob), shapes)
            polys, conf = polygonize_instances(instances, prob[0], split_params, cache)
            rows += [(image_id, w, conf_) for w, conf_ in zip(geometries_to_wkt(polys), conf)]
        pred = _with_empty_rows(pd.DataFrame(rows, columns=["ImageId", "PolygonWKT_Pix", "Confidence"]), c["ids"])
        f1s.append(score_buildings(c["truth"], pred)["f1"])
    return f1s


def calibrate_watershed(tiles: Sequence[tuple[SN6Tile, Sequence["LoadedModel"]]], polygons: dict,
                        prepared: dict[str, Path], cfg: BuildingsConfig) -> dict:
    """Choose ``cfg.watershed`` seed/mask thresholds, and whether rows are split (when the config
    offers it) with counts from the row-count table (when there is one) or from the area
    networks (when there are some), by F1 on labelled tiles (never test tiles).

    ``tiles``: ``(tile, models)`` pairs, each tile with the models that predict it (out of fold:
    the one that did not train on it); up to ``cfg.calibrate_tiles`` of them, evenly spread, are
    used, with the test-time augmentation the config applies at prediction (``cfg.tta``). The
    probabilities are computed once per tile; each setting re-runs only the watershed.
    Updates ``cfg.watershed`` in place and returns the grid of F1 values.
    """
    if cfg.calibrate_tiles <= 0 or not tiles:
        return {}
    step = max(1, len(tiles) // cfg.calibrate_tiles)
    chosen = list(tiles)[::step][: cfg.calibrate_tiles]
    from sarfusion.engine import current_shard, gather_objects

    scales, flip = tta_settings(cfg, cfg.tta)
    rank, world = current_shard()  # under torchrun each rank predicts its share; all choose alike
    mine = {}
    for i in range(rank, len(chosen), world):
        tile, models = chosen[i]
        raw, valid = read_model_input(tile, models[0].input_mode, prepared.get(tile.image_id))
        mine[i] = predict_probabilities(models, raw, valid, tile.orientation, scales, flip, tile)
    gathered = {i: p for part in gather_objects(mine) for i, p in part.items()}
    probs = [gathered[i] for i in range(len(chosen))]
    ids = [t.image_id for t, _ in chosen]
    truth = _truth_frame(polygons, ids)
    # (split, counts from): no splitting; counts from the label table; from the area networks' channel
    splits = [(False, "table")]
    if cfg.row_split and cfg.watershed.row_counts:
        splits.append((True, "table"))
    if cfg.row_split and all(log_area_channel(p) is not None for p in probs):
        splits.append((True, "area"))
    pairs = [(seed_t, mask_t) for seed_t in cfg.calibrate_seed_thresholds for mask_t in cfg.calibrate_mask_thresholds]
    state = {"probs": probs, "ids": ids, "truth": truth, "splits": splits, "watershed": cfg.watershed}
    try:
        f1s = map_processes(_score_threshold_pair, pairs, _set_calibration, (state,), desc="calibrating watershed")
    finally:
        _CALIBRATION.clear()
    scores = {(*pair, *choice): f1 for pair, row in zip(pairs, f1s) for choice, f1 in zip(splits, row)}
    # in the order of ``splits`` (a stable sort): max() keeps the first of equal scores, so ties keep
    # the watershed alone, then the table
    grid = dict(sorted(scores.items(), key=lambda kv: splits.index(kv[0][2:])))
    (seed_t, mask_t, split, source), best = max(grid.items(), key=lambda kv: kv[1])
    cfg.watershed = dataclasses.replace(cfg.watershed, seed_threshold=seed_t, mask_threshold=mask_t, split_rows=split,
                                        row_counts_from=source)
    unsplit = max(v for k, v in grid.items() if not k[2])
    log.info("watershed thresholds calibrated on %d labelled tiles: seed %.2f, mask %.2f, rows %s (F1 %.3f "
             "there; %.3f without row splitting)", len(chosen), seed_t, mask_t,
             f"split, counts from the {'area network' if source == 'area' else 'label table'}" if split else "not split",
             best, unsplit)
    return {"tiles": ids, "seed_threshold": seed_t, "mask_threshold": mask_t, "split_rows": split,
            "row_counts_from": source, "f1": best, "f1_without_row_split": unsplit,
            "grid": {f"{k[0]},{k[1]}" + ((",split" if k[3] == "table" else ",split-area") if k[2] else ""): v
                     for k, v in grid.items()}}


# --- prediction --------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    net: Any
    stats: NormStats
    input_mode: str
    input_scale: float = 1.0  # the tile resize the network was trained at
    context: StripContext | None = None  # the strip inputs of a ContextUnet
    output: str = "buildings"  # "buildings": footprint, edge, contact logits; "area": log building area


def _load_model(path: Path, device: Any = None) -> LoadedModel:
    import torch

    from sarfusion.engine import select_device
    from sarfusion.models.segmentation import build_segmentation_model

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        context = StripContext.from_dict(state["context"]) if state.get("context") else None
        output = state.get("output", "buildings")
        net = build_segmentation_model(state["encoder"], state["input_mode"],
                                       classes=1 if output == "area" else len(TARGET_NAMES),
                                       decoder_channels=state["decoder_channels"],
                                       context_size=context.size if context else 0)
        net.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, EOFError) as exc:
        raise InputError(f"not a building model checkpoint ({exc})", path) from None
    net.eval().to(select_device(None if device is None else str(device)))
    return LoadedModel(net, NormStats(**state["stats"]), state["input_mode"], float(state.get("input_scale", 1.0)),
                       context, output)


def load_models(weights_dir: str | Path, device: Any = None) -> tuple[list[LoadedModel], BuildingsConfig]:
    """The fold ensemble and config saved by :func:`train_buildings`: the footprint networks, then
    (with ``area_model``) the area networks."""
    weights_dir = Path(weights_dir)
    cfg_path = weights_dir / CONFIG_NAME
    if not cfg_path.is_file():
        raise InputError(f"no {CONFIG_NAME} (train with 'sarfusion buildings train' first)", weights_dir)
    cfg = _config_from_dict(json.loads(cfg_path.read_text()))
    paths = sorted(weights_dir.glob("buildings_fold*.pt"))
    if not paths:
        raise InputError("no buildings_fold*.pt weights", weights_dir)
    if cfg.area_model:
        area_paths = sorted(weights_dir.glob("buildings_area_fold*.pt"))
        if not area_paths:
            raise InputError("the config has an area network but there is no buildings_area_fold*.pt", weights_dir)
        paths += area_paths
    return [_load_model(p, device) for p in paths], cfg


def predict_probabilities(models: Sequence[LoadedModel], raw: np.ndarray, valid: np.ndarray,
                          orientation: int | None, scales: Sequence[float] = (1.0,), flip: bool = False,
                          tile: SN6Tile | None = None) -> np.ndarray:
    """Fold- and TTA-averaged ``(3, H, W)`` float32 probabilities (footprint, edge, contact) of one
    tile by the ``output == "buildings"`` models; ``(4, H, W)`` when ``models`` also holds area
    networks, whose average is the 4th channel: the predicted natural log of the building area in
    the tile's own px (0 where nodata, like the rest).

    The tile is rotated 180 degrees for direction-1 strips before the network and the
    probabilities are rotated back, so they line up with the tile's own pixels. Each TTA scale is
    applied on top of the model's own ``input_scale``; probabilities are resized back to the tile.
    ``tile`` gives a model with strip inputs (``LoadedModel.context``) its strip, direction and
    northing; such a model without ``tile`` is an error.
    """
    import torch
    import torch.nn.functional as F

    from sarfusion.engine import inference_autocast

    h, w = valid.shape
    acc = {"buildings": np.zeros((len(TARGET_NAMES), h, w), np.float32), "area": np.zeros((1, h, w), np.float32)}
    n = {"buildings": 0, "area": 0}
    for m in models:
        device = next(m.net.parameters()).device
        x = torch.from_numpy(orient(m.stats.apply(raw, valid), orientation))[None].to(device)
        extra: tuple = ()
        if m.context is not None:
            if tile is None:
                raise ValueError("this building model takes strip inputs: pass the tile")
            extra = (torch.from_numpy(m.context.vector(tile))[None].to(device),)
        for s in (t * m.input_scale for t in scales):
            sh, sw = (max(32, int(math.ceil(h * s / 32)) * 32), max(32, int(math.ceil(w * s / 32)) * 32))
            # Resize so the content is scaled by s, then pad to a multiple of 32.
            th, tw = int(round(h * s)), int(round(w * s))
            # antialias when shrinking: the area average the training tiles were resized with
            xs = x if s == 1.0 else F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False,
                                                  antialias=s < 1)
            xs = F.pad(xs, (0, sw - tw, 0, sh - th))
            for flipped in ((False, True) if flip else (False,)):
                inp = torch.flip(xs, dims=[3]) if flipped else xs
                with torch.no_grad(), inference_autocast(device):
                    out = m.net(inp, *extra).float()
                # an area network's log area is in network px, s^2 of them per tile px
                prob = out - 2 * math.log(s) if m.output == "area" else torch.sigmoid(out)
                if flipped:
                    prob = torch.flip(prob, dims=[3])
                prob = prob[:, :, :th, :tw]
                if s != 1.0:
                    prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
                acc[m.output] += orient(prob[0].float().cpu().numpy(), orientation)
                n[m.output] += 1
    out = acc["buildings"] / max(n["buildings"], 1)
    if n["area"]:
        out = np.concatenate([out, acc["area"] / n["area"]])
    out[:, ~valid] = 0.0
    return out


def tta_settings(cfg: BuildingsConfig, tta: bool) -> tuple[tuple[float, ...], bool]:
    """``(scales, flip)`` of :func:`predict_probabilities`: with ``tta`` the config's scales and
    left-right flips, else the model's own scale (flipped only when ``cfg.tta_flip``)."""
    return (tuple(cfg.tta_scales), True) if tta else ((1.0,), cfg.tta_flip)


def _predict_rows(models: Sequence[LoadedModel], tiles: Sequence[SN6Tile], prepared: dict[str, Path],
                  cfg: BuildingsConfig, tta: bool = False, preview_dir: Path | None = None,
                  preview_ids: set[str] | None = None) -> pd.DataFrame:
    """Submission rows ``ImageId, PolygonWKT_Pix, Confidence`` plus ``Cut`` (the polygon comes
    within 2 px of its tile's border or nodata: :func:`~sarfusion.postproc.touches_nodata`).
    Previews (with ``preview_dir``) of the tiles in ``preview_ids``, else of the first
    ``cfg.max_previews``."""
    from tqdm.auto import tqdm

    if preview_ids is None:
        preview_ids = {t.image_id for t in tiles[:cfg.max_previews]}
    scales, flip = tta_settings(cfg, tta)
    rows: list[tuple[str, str, float, bool]] = []
    for tile in tqdm(tiles, desc="predict buildings", mininterval=1.0):
        raw, valid = read_model_input(tile, models[0].input_mode, prepared.get(tile.image_id))
        prob = predict_probabilities(models, raw, valid, tile.orientation, scales, flip, tile)
        polys, conf = probabilities_to_polygons(prob, cfg.watershed)
        cut = touches_nodata(polys, distance_to_nodata(valid))
        for wkt, c, k in zip(geometries_to_wkt(polys), conf, cut):
            rows.append((tile.image_id, wkt, round(c, 4), k))
        if preview_dir is not None and tile.image_id in preview_ids:
            write_building_preview(Path(preview_dir) / f"buildings_{tile.image_id}.png", tile, polys, prob)
    return pd.DataFrame(rows, columns=["ImageId", "PolygonWKT_Pix", "Confidence", "Cut"])


def predict_rows_sharded(models: Sequence[LoadedModel], tiles: Sequence[SN6Tile], prepared: dict[str, Path],
                         cfg: BuildingsConfig, tta: bool = False, preview_dir: Path | None = None,
                         shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """:func:`_predict_rows` of tiles ``rank::world`` (``shard``, default: the running process
    group's), gathered on every rank in tile order: the rows one process would make. Previews of
    the first ``cfg.max_previews`` tiles overall, each by the rank that predicts it."""
    from sarfusion.engine import current_shard, gather_objects

    rank, world = shard or current_shard()
    rows = _predict_rows(models, list(tiles)[rank::world], prepared, cfg, tta=tta, preview_dir=preview_dir,
                         preview_ids={t.image_id for t in list(tiles)[:cfg.max_previews]})
    if world == 1:
        return rows
    order = {t.image_id: i for i, t in enumerate(tiles)}
    rows = pd.concat(gather_objects(rows), ignore_index=True)
    return rows.iloc[np.argsort([order[i] for i in rows["ImageId"]], kind="stable")].reset_index(drop=True)


def _with_empty_rows(rows: pd.DataFrame, image_ids: Sequence[str]) -> pd.DataFrame:
    """Add a ``POLYGON EMPTY`` row for every id without detections (the scorer only scores ids present)."""
    missing = sorted(set(image_ids) - set(rows["ImageId"]))
    empty = pd.DataFrame({"ImageId": missing, "PolygonWKT_Pix": "POLYGON EMPTY", "Confidence": 0.0})
    return pd.concat([rows, empty], ignore_index=True) if len(rows) else empty


def write_building_preview(path: Path, tile: SN6Tile, polygons: Sequence, prob: np.ndarray) -> Path:
    """PNG: the SAR tile (VV, 2-98 % stretch) with predicted footprints in green, and the footprint
    probability beside it."""
    import cv2

    from sarfusion.preview import draw_polygons, stretch_u8, to_bgr, write_png

    vv = read_sar(tile.sar_path)[3]
    left = draw_polygons(to_bgr(stretch_u8(vv)), polygons, color=(0, 255, 0))
    right = cv2.applyColorMap((np.clip(prob[0], 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    return write_png(path, np.concatenate([left, right], axis=1), max_side=10_000)


def footprints_summary(submission_csv: str | Path, footprints_path: str | Path) -> dict[str, Any]:
    """What the map layer made of the submission: ``{"footprints", "crs_epsg", "tile_polygons",
    "buildings", "merged"}`` (``merged``: buildings seen by more than one tile)."""
    from sarfusion.io.raster import crs_epsg
    from sarfusion.io.vector import SUBMISSION_COLUMNS, read_csv_checked, read_features

    sub = read_csv_checked(submission_csv, SUBMISSION_COLUMNS, allow_empty=True)
    geoms, props, crs = read_features(footprints_path)
    return {"footprints": str(footprints_path), "crs_epsg": crs_epsg(crs),
            "tile_polygons": int(sum(1 for w in sub["PolygonWKT_Pix"] if w != "POLYGON EMPTY")),
            "buildings": len(geoms), "merged": int(sum(p["n_tiles"] > 1 for p in props))}


def write_footprint_map(tiles: Sequence[SN6Tile], footprints_path: str | Path, path: str | Path,
                        max_side: int = 1400) -> Path:
    """PNG: the tiles' SAR (VV) mosaicked in map space under the map-coordinate footprints of
    :func:`write_map_footprints`: green where one tile saw the building, orange where overlapping
    tiles saw it and their copies were merged into one polygon."""
    import cv2

    from sarfusion.io.raster import map_to_pixel, read_mosaic
    from sarfusion.io.vector import read_features
    from sarfusion.preview import draw_polygons, stretch_u8, to_bgr, write_png

    vv, gt, _ = read_mosaic([t.sar_path for t in tiles], band=4, max_side=max_side)
    geoms, props, _ = read_features(footprints_path)

    def to_pixels(xy: np.ndarray) -> np.ndarray:
        rows, cols = map_to_pixel(gt, xy[:, 0], xy[:, 1])
        return np.column_stack([cols, rows])

    img = to_bgr(stretch_u8(vv))
    pixel_geoms = shapely.transform(geoms, to_pixels) if len(geoms) else geoms
    merged = np.array([p["n_tiles"] > 1 for p in props], bool)
    img = draw_polygons(img, list(pixel_geoms[~merged]), color=(0, 255, 0))
    img = draw_polygons(img, list(pixel_geoms[merged]), color=(0, 165, 255))
    if img.shape[1] >= 600:  # room for the legend
        cv2.putText(img, f"{len(geoms)} buildings; orange: {int(merged.sum())} seen by overlapping tiles, merged",
                    (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return write_png(path, img, max_side=max_side)


def _truth_frame(polygons: dict, image_ids: Sequence[str]) -> pd.DataFrame:
    rows = []
    for image_id in image_ids:
        wkts = geometries_to_wkt(polygons.get(image_id, [])) or ["POLYGON EMPTY"]
        rows += [(image_id, w) for w in wkts]
    return pd.DataFrame(rows, columns=["ImageId", "PolygonWKT_Pix"])


def predict_buildings(aoi_dir: str | Path, weights_dir: str | Path, out_csv: str | Path,
                      preview_dir: str | Path | None = None, tta: bool = False,
                      orientations: str | Path | None = None, work_dir: str | Path | None = None,
                      geo_path: str | Path | None = None, shard: tuple[int, int] = (0, 1)) -> Path:
    """Predict building footprints for every SAR tile of an AOI and write the submission CSV.

    ``ImageId,PolygonWKT_Pix,Confidence``; a tile without detections gets a ``POLYGON EMPTY`` row.
    The test AOI has no ``SAR_orientations.txt``: pass the training AOI's file as ``orientations``
    (default: the AOI's own, else a sibling ``train/AOI_*/SummaryData`` file, else the copy saved
    in ``weights_dir`` at training time). ``geo_path`` (``.gpkg`` or ``.geojson``): also the
    footprints in map coordinates, one polygon per building (:func:`write_map_footprints`).
    Written atomically: a failure leaves any earlier ``out_csv`` untouched. ``shard`` ``(rank,
    world)`` (under torchrun, :func:`sarfusion.engine.process_group`): this process predicts tiles
    ``rank::world``; rank 0 gathers them and writes the same files a single process writes.
    """
    aoi_dir = Path(aoi_dir)
    models, cfg = load_models(weights_dir)
    tta = tta or cfg.tta  # a model trained with TTA in its recipe is tested with it
    mode = models[0].input_mode
    tiles = find_tiles(aoi_dir, orientations=orientations or _guess_orientations(aoi_dir, Path(weights_dir)))
    if any(t.orientation is None for t in tiles):
        log.warning("no orientation for %d tile(s): treated as direction 0",
                    sum(t.orientation is None for t in tiles))
    _check_sar_tiles(tiles)
    work = Path(work_dir) if work_dir else Path(out_csv).parent / f".buildings_inputs_{mode}"
    prepared = prepare_inputs(tiles, mode, work, weights_dir)
    rows = predict_rows_sharded(models, tiles, prepared, cfg, tta=tta,
                                preview_dir=Path(preview_dir) if preview_dir else None, shard=shard)
    if shard[0] != 0:  # every rank predicted its share of the tiles; rank 0 writes them all
        return Path(out_csv)
    out = write_submission_csv(out_csv, rows, all_image_ids=[t.image_id for t in tiles])
    log.info("wrote %d polygons for %d tiles to %s", len(rows), len(tiles), out)
    if geo_path is not None:
        write_map_footprints(rows, tiles, geo_path, min_area_px=cfg.watershed.min_area)
    return out


FOOTPRINT_FIELDS = {"confidence": float, "image_id": str, "tiles": str, "n_tiles": int, "area_m2": float}


def write_map_footprints(rows: pd.DataFrame, tiles: Sequence[SN6Tile], geo_path: str | Path,
                         min_area_px: float = 80.0) -> dict[str, Any]:
    """The tiles' pixel-space footprints as one GIS layer in map coordinates (GeoPackage or GeoJSON).

    Each polygon goes through its tile's geotransform (and into the first tile's CRS where a tile
    has another); duplicates where tiles overlap are merged, so one building is one polygon and
    none overlap (:func:`~sarfusion.postproc.merge_footprints`; ``min_area_px`` in tile pixels).
    ``rows``: ``ImageId, PolygonWKT_Pix, Confidence`` (+ ``Cut``); a polygon is also taken as cut
    (possibly part of a building) within a pixel of its tile's edge. Fields:
    ``confidence``, ``image_id`` (the source tile), ``tiles``, ``n_tiles``, ``area_m2``.
    Returns ``{"footprints", "crs_epsg", "tile_polygons", "buildings"}``.
    """
    from sarfusion.io.raster import pixel_to_map, reproject_points
    from sarfusion.io.vector import parse_wkt, write_features

    infos = {t.image_id: raster_info(t.sar_path) for t in tiles}
    crs = next(iter(infos.values())).crs_wkt if infos else None
    if any(not i.georeferenced or not i.crs_wkt for i in infos.values()):
        bad = next(i for i in infos.values() if not i.georeferenced or not i.crs_wkt)
        raise InputError("has no georeferencing: footprints cannot be placed on a map", bad.path)
    rows = rows[rows["ImageId"].isin(infos.keys())]
    geoms = parse_wkt(rows["PolygonWKT_Pix"])
    keep = np.array([g is not None and not g.is_empty for g in geoms], bool)
    rows, geoms = rows[keep], geoms[keep]
    mapped = np.empty(len(geoms), dtype=object)
    views = np.empty(len(geoms), dtype=object)  # each polygon's tile extent, in map coordinates
    ids = rows["ImageId"].to_numpy()
    for image_id in np.unique(ids):
        info = infos[image_id]
        sel = np.nonzero(ids == image_id)[0]

        def to_map(xy: np.ndarray, info=info) -> np.ndarray:
            x, y = pixel_to_map(info.geotransform, xy[:, 1], xy[:, 0])  # WKT x = col, y = row
            return np.column_stack(reproject_points(x, y, info.crs_wkt, crs))

        mapped[sel] = shapely.transform(geoms[sel], to_map)
        extent = shapely.box(0, 0, info.width, info.height)  # (col, row) = WKT (x, y)
        views[sel] = [shapely.transform(extent, to_map)] * len(sel)
    px_area = min(abs(i.geotransform[1] * i.geotransform[5]) for i in infos.values()) if infos else 1.0
    cut = rows["Cut"].to_numpy(bool) if "Cut" in rows.columns else np.zeros(len(rows), bool)
    # a polygon within a pixel of its tile's edge is a building the tile may hold only in part
    bounds = shapely.bounds(geoms)  # pixel space: (col, row) min / max
    size = np.array([[infos[i].width, infos[i].height] for i in ids], np.float64).reshape(-1, 2)
    cut = cut | (bounds[:, 0] <= 1) | (bounds[:, 1] <= 1) | (bounds[:, 2] >= size[:, 0] - 1) | (bounds[:, 3] >= size[:, 1] - 1)
    merged = merge_footprints(mapped, rows["Confidence"].to_numpy(np.float64), ids, cut,
                              min_area=min_area_px * px_area, views=views)
    path = write_features(geo_path, [m.pop("geometry") for m in merged], merged, crs, layer="buildings",
                          geometry_type="Polygon", fields=FOOTPRINT_FIELDS)
    epsg = next(iter(infos.values())).epsg if infos else None
    log.info("wrote %d buildings (from %d tile polygons) in EPSG:%s to %s", len(merged), len(rows), epsg, path)
    return {"footprints": str(path), "crs_epsg": epsg, "tile_polygons": int(len(rows)), "buildings": len(merged)}


def _guess_orientations(aoi_dir: Path, weights_dir: Path) -> Path | None:
    """The AOI's own orientation file, else a sibling ``*/AOI_*/SummaryData`` one (the training
    AOI beside ``test_public``), else the copy saved with the weights at training time."""
    own = find_orientations(aoi_dir)
    if own:
        return own
    for cand in sorted(aoi_dir.parent.parent.glob(f"*/{aoi_dir.name}/SummaryData/SAR_orientations.txt")):
        return cand
    saved = weights_dir / "SAR_orientations.txt"
    return saved if saved.is_file() else None


# --- experiment --------------------------------------------------------------------------------------
def _train_aoi(data_dir: Path) -> Path:
    if (data_dir / "SAR-Intensity").is_dir():
        return data_dir
    found = sorted(data_dir.glob("train/AOI_*")) + sorted(data_dir.glob("AOI_*"))
    found = [p for p in found if (p / "SAR-Intensity").is_dir()]
    if not found:
        raise InputError("no SN6 training AOI (expected train/AOI_*/SAR-Intensity)", data_dir)
    return found[0]


def run_input_experiment(data_dir: str | Path, preset: str = "demo", work_dir: str | Path | None = None,
                         modes: Sequence[str] = INPUT_MODES, config: BuildingsConfig | None = None) -> dict:
    """Train and score one model per input mode on the same easting split of the training AOI.

    The east-most ``experiment_test_fraction`` easting band is the test part; training tiles
    within one tile width of it are dropped. The colorizer (for ``colorized``) is trained on the
    training part only. Returns ``{"split": {...}, "modes": {mode: {f1, precision, recall, tp, fp,
    fn, train_seconds, steps_per_s, seed_threshold, mask_threshold, split_rows}}}``; each mode's
    watershed thresholds (and row splitting, with the training tiles' row-count table) are
    calibrated on its training tiles, never on the test band.
    """
    from sarfusion.metrics.buildings import score_buildings

    for m in modes:
        _check_mode(m)
    aoi = _train_aoi(Path(data_dir))
    base = choose_preset(PRESETS, preset) if config is None else config
    work = Path(work_dir) if work_dir else Path(data_dir) / "experiment_sn6_inputs"
    tiles = find_tiles(aoi, require_optical=True)
    polygons = _load_labels(aoi)
    tiles = _labelled(tiles, polygons, aoi)
    _check_sar_tiles(tiles)
    x_origin, width_m = _x_origins(tiles)
    n_bands = max(2, int(round(1 / base.experiment_test_fraction)))
    train_ids, test_ids = easting_folds(x_origin, n_bands, base.fold_gap_m if base.fold_gap_m is not None
                                        else width_m)[-1]
    by_id = {t.image_id: t for t in tiles}
    train_tiles, test_tiles = [by_id[i] for i in train_ids], [by_id[i] for i in test_ids]
    if base.row_split:  # from the training tiles' labels only, as train does
        base = dataclasses.replace(base, watershed=dataclasses.replace(
            base.watershed, row_counts=label_row_counts(train_tiles, polygons, base.row_count_tiles)))
    log.info("experiment split: %d training tiles, %d test tiles (east band), %d excluded",
             len(train_tiles), len(test_tiles), len(tiles) - len(train_tiles) - len(test_tiles))
    truth = _truth_frame(polygons, test_ids)
    result: dict = {"split": {"train": len(train_tiles), "test": len(test_tiles),
                              "excluded": len(tiles) - len(train_tiles) - len(test_tiles)}, "modes": {}}
    for mode in modes:
        cfg = dataclasses.replace(base, input_mode=mode)
        mode_dir = work / mode
        colorizer_dir = work / "colorizer"
        if mode == "colorized" and not (colorizer_dir / "colorizer.pt").is_file():
            from sarfusion.tasks.colorize import train_colorizer

            subset = _subset_aoi(aoi, train_tiles, work / "colorizer_train_aoi")
            train_colorizer(subset, colorizer_dir, preset=preset, work_dir=work / "colorizer_run")
        prepared = prepare_inputs(train_tiles + test_tiles, mode, work, colorizer_dir)
        info = train_model(train_tiles, polygons, prepared, cfg, mode_dir / "run", mode_dir / "buildings_fold0.pt")
        models = [_load_model(Path(info["path"]))]
        # Each mode gets its own watershed thresholds, chosen on its training tiles (as train does).
        calibration = calibrate_watershed([(t, models) for t in train_tiles], polygons, prepared, cfg)
        rows = _predict_rows(models, test_tiles, prepared, cfg, tta=cfg.tta)
        score = score_buildings(truth, _with_empty_rows(rows, test_ids))
        result["modes"][mode] = {**{k: score[k] for k in ("f1", "precision", "recall", "tp", "fp", "fn")},
                                 "train_seconds": info["seconds"], "steps_per_s": info["steps_per_s"],
                                 "seed_threshold": calibration.get("seed_threshold"),
                                 "mask_threshold": calibration.get("mask_threshold"),
                                 "split_rows": calibration.get("split_rows"),
                                 "row_counts_from": calibration.get("row_counts_from")}
        log.info("%s: F1 %.3f P %.3f R %.3f", mode, score["f1"], score["precision"], score["recall"])
    (work / "results.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def experiment_markdown(result: dict) -> str:
    """The blog-style comparison table (F1 x 100, precision, recall per input mode)."""
    lines = ["| input | F1 x 100 | precision | recall |", "|---|---:|---:|---:|"]
    for mode, r in result["modes"].items():
        lines.append(f"| {mode} | {100 * r['f1']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(lines)

"""Learned dense descriptors for the dense mode: the oriented-gradient features, refined by small CNNs
trained so that template NCC peaks at the GROUND match.

Why: the hand-made features (:mod:`~sarfusion.registration.features`) respond as strongly to
elevated clutter as to the ground, and in SAR that clutter is displaced toward the sensor by its
layover (and followed by radar shadow). On SN9-like scenes the features' own NCC optimum is
therefore not the ground field the tie points are scored on (the true field scores a LOWER local
NCC than the estimate). A net that sees a few metres of context can learn which structure moves
with the ground and which does not.

One pair of nets per pyramid factor (optical: oriented gradients + intensity + RGB, 12 channels in;
SAR: oriented gradients + intensity, 9 in; both ``n_orient`` out, added to the input gradients so
an untrained net is the plain features). Training mimics one dense level: an optical template
and a SAR search window that holds the true match at a random shift, the SAR resampled first
through the label field or a smoothed copy of it (as the dense mode's warped search resamples it
through the coarser level's field, which leaves local strain); the loss is the cross entropy of
the softmax of ``tau * NCC`` over the window against the true shift.

Label field: a scene's ``<aoi>_groundfield_<split>.tif`` when present (the synthetic scenes write
the ground misalignment without layover), otherwise a smooth field through its tie points.

Co-registered pairs (``register-train --pairs``: a pair folder ``opt/`` + ``sar/``, or SEN1-2
patches) train a second set, for the medium-resolution route of the dense mode (10 m Sentinel
grids): the label is the pair's own training-free dense field (``pair_label``; real pairs are a few
px off), and the SAR is also resampled through random smooth fields (``pair_warps``), whose
inverse, added to the label, is then where the match sits: self-supervised, no tie points.
The two sets live side by side in one weights folder (``descriptors.pt`` for VHR grids,
``descriptors_medium.pt`` for the rest); the dense mode takes the one that fits the grid.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field as dc_field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sarfusion.config import choose_preset, describe
from sarfusion.engine import Engine, EngineConfig, inference_autocast, save_config, save_torch_atomic, seed_everything
from sarfusion.errors import InputError
from sarfusion.registration.align import SceneGrid, scene_grid, to_intensity, warped_sar
from sarfusion.registration.features import normalise_intensity, oriented_gradients
from sarfusion.registration.field import AffineField, NodeField, ZeroField
from sarfusion.registration.matching import ncc_map

log = logging.getLogger(__name__)
# one file per kind of grid the nets apply to (DescriptorConfig.grid)
WEIGHTS_NAMES = {"vhr": "descriptors.pt", "medium": "descriptors_medium.pt"}
OPTICAL_INPUTS = 4   # + n_orient: intensity, R, G, B
SAR_INPUTS = 1       # + n_orient: intensity


@dataclass
class DescriptorConfig:
    """Descriptor training settings (presets ``demo`` and ``full``)."""

    engine: EngineConfig = dc_field(default_factory=EngineConfig)
    # (factor, template, radius) in level px: the levels the nets are trained for, one pair each
    levels: tuple[tuple[int, int, int], ...] = ((2, 48, 8), (4, 32, 10))
    n_orient: int = 8
    pre_sigma: float = 0.0       # level px: the oriented gradients the nets refine (the dense
    feature_sigma: float = 1.0   # mode's VHR settings; the nets are used on VHR grids only)
    hidden: int = 24
    context: int = 8             # level px of input around each crop (the nets' receptive radius)
    tau: float = 20.0            # initial NCC -> logit scale (learned)
    lr: float = 1e-3
    crops_per_scene: int = 512   # dataset length per scene (an epoch)
    max_side: int = 1024         # level px: the central window of a scene that is held in memory
    min_valid: float = 0.98      # fraction of a crop inside both scenes
    label_spacing_m: float = 4.0   # tie-point label field: lattice spacing (no ground-field file)
    # level px: Gaussian sigmas of smoothed label fields the SAR is also resampled through (one SAR
    # copy each, a crop picks one at random; 0 = the label field itself). The dense mode warps each
    # level through the coarser level's field, which is right on average but smoother than the
    # ground: trained on the label field alone the nets only ever see a pure shift, never the
    # strain they meet there (at x4, plain features peak within 1 px of the truth for 44% of
    # label-warped crops, 20% at sigma 24: the 19% measured in the dense mode). Learned, 2048 px
    # seeds 200 / 201: 17.67 / 23.49 -> 14.63 / 18.23 px; 401-403, 501-502: 17.32 -> 14.56 px.
    # Wider sigmas (0, 16, 32, 48): 14.27 / 17.83 and 14.63 px, a wash.
    prior_blur: tuple[float, ...] = (0.0, 12.0, 24.0, 36.0)
    # The grids the nets apply to: "vhr" (georeferenced, finer than DenseConfig.vhr_m: SN9; trained
    # from scene triples) or "medium" (the dense mode's medium-resolution route, 10 m Sentinel
    # pairs; trained from co-registered pairs).
    grid: str = "vhr"
    # Co-registered pairs: the SAR is resampled through the zero field and through this many random
    # smooth fields (max pair_warp_px per component, correlation length pair_warp_corr px), one
    # copy each; where the match then sits is their inverse (a generic smooth strain around the
    # random window shift each crop draws, set before any measurement, not fitted to a benchmark).
    pair_warps: int = 3
    # Where a pair's ground match is: "zero" (taken as co-registered) or "dense" (the training-free
    # dense field of the pair itself: real pairs are a few px off, e.g. Sentinel-1 GRD without
    # terrain correction, and a label that far off blurs a +-8 px target)
    pair_label: str = "dense"
    pair_warp_px: float = 4.0
    pair_warp_corr: float = 64.0


PRESETS = {
    # demo: ~3 minutes on 2 CPU cores (make demo's 2 scenes: its 4096 px test scene 11.20 px, against
    # 11.1 with batch 32, 11.75 with 150 steps of 32, 19.68 training-free); full: on a GPU
    "demo": DescriptorConfig(engine=EngineConfig(max_steps=300, batch_size=16, checkpoint_every=100, log_every=25)),
    "full": DescriptorConfig(engine=EngineConfig(max_steps=6000, batch_size=64, checkpoint_every=500, log_every=50)),
}


# Co-registered 10 m pairs: one pair of nets at the medium route's full resolution, on the medium
# route's features (DenseConfig.pre_sigma / feature_sigma: an untrained net is exactly them); the
# 64 px templates searched +-8 px sit between its 128 / +-8 and 64 / +-4 lattices.
_PAIRS = DescriptorConfig(levels=((1, 64, 8),), pre_sigma=2.0, feature_sigma=1.5, prior_blur=(0.0,),
                          grid="medium")
PAIR_PRESETS = {
    # demo: 600 steps of 16 (chosen on the even-index real S1 / S2 pairs: trained on half of them,
    # warp recovery on the other half 1.63 px training-free -> 1.36 px; 1200 steps 1.44): ~3 min
    # on 2 CPU cores, plus ~25 s a 1024 px pair for its dense label
    "demo": replace(_PAIRS, engine=EngineConfig(max_steps=600, batch_size=16, checkpoint_every=200, log_every=50)),
    "full": replace(_PAIRS, engine=EngineConfig(max_steps=6000, batch_size=64, checkpoint_every=500, log_every=50)),
}


class DescriptorNet(nn.Module):
    """``(B, n_orient + extra, H, W)`` -> ``(B, n_orient, H, W)``: the first ``n_orient`` input
    channels (oriented gradients) plus a learned correction from a dilated-conv context of
    ~15 px (the last layer starts at zero, so an untrained net returns its input features)."""

    def __init__(self, in_channels: int, n_orient: int = 8, hidden: int = 24):
        super().__init__()
        self.n_orient = n_orient
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, n_orient, 1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :self.n_orient] + self.body(x)


class DescriptorModels(nn.Module):
    """The nets of every trained factor (``opt<f>``, ``sar<f>``) and the learned logit scale."""

    def __init__(self, cfg: DescriptorConfig):
        super().__init__()
        self.nets = nn.ModuleDict()
        for f, _, _ in cfg.levels:
            self.nets[f"opt{f}"] = DescriptorNet(cfg.n_orient + OPTICAL_INPUTS, cfg.n_orient, cfg.hidden)
            self.nets[f"sar{f}"] = DescriptorNet(cfg.n_orient + SAR_INPUTS, cfg.n_orient, cfg.hidden)
        self.log_tau = nn.Parameter(torch.tensor(math.log(cfg.tau)))

    def forward(self, batch: dict[str, torch.Tensor], factor: int, context: int) -> torch.Tensor:
        """``(B, (2r + 1)^2)`` logits ``tau * NCC`` of a batch's templates (``opt<f>``) over their
        search windows (``sar<f>``), both cut by ``context`` px after the nets."""
        c = context
        fo = self.nets[f"opt{factor}"](batch[f"opt{factor}"])[:, :, c:-c, c:-c]
        fs = self.nets[f"sar{factor}"](batch[f"sar{factor}"])[:, :, c:-c, c:-c]
        return ncc_map(fo, fs).flatten(1) * self.log_tau.exp()


def descriptor_inputs(image: np.ndarray, modality: str, cfg: DescriptorConfig) -> np.ndarray:
    """Net input ``(n_orient + extra, h, w)`` float32 of one level image.

    ``image``: optical ``(bands, h, w)`` as read (RGB 0-255; fewer bands are repeated), or the SAR
    intensity ``(h, w)`` float32 of :func:`~sarfusion.registration.align.to_intensity` (0 = nodata).
    """
    if modality == "optical":
        rgb = np.asarray(image, np.float32)[:3]
        if rgb.shape[0] < 3:
            rgb = np.repeat(rgb[:1], 3, axis=0)
        intensity = to_intensity(rgb, "optical")
        extra = [np.where(intensity != 0, rgb / 127.5 - 1.0, 0.0).astype(np.float32)]
    else:
        intensity = np.asarray(image, np.float32)
        extra = []
    valid = intensity != 0
    grads = oriented_gradients(intensity, cfg.n_orient, cfg.pre_sigma, cfg.feature_sigma)
    return np.concatenate([grads, normalise_intensity(intensity, valid)[None]] + extra).astype(np.float32)


class Descriptors:
    """Trained descriptor nets, ready for the dense mode (:func:`load_descriptors`)."""

    def __init__(self, models: DescriptorModels, cfg: DescriptorConfig, device: torch.device):
        self.models = models.to(device).eval()
        self.cfg = cfg
        self.device = device
        self.factors = {f for f, _, _ in cfg.levels}

    @torch.no_grad()
    def features(self, image: np.ndarray, modality: str, factor: int) -> np.ndarray:
        """Descriptors ``(n_orient, h, w)`` float32 of one level image (see :func:`descriptor_inputs`);
        0 where the image is nodata, like the oriented gradients."""
        x = descriptor_inputs(image, modality, self.cfg)
        net = self.models.nets[f"{'opt' if modality == 'optical' else 'sar'}{factor}"]
        with inference_autocast(self.device):
            out = net(torch.from_numpy(x)[None].to(self.device))[0].float().cpu().numpy()
        image = np.asarray(image)
        valid = np.any(image != 0, axis=0) if image.ndim == 3 else image != 0
        out[:, ~valid] = 0  # nodata stays 0, as in the plain features
        return out


def load_descriptors(weights_dir: str | Path | None, device: torch.device) -> dict[str, Descriptors] | None:
    """The descriptor nets in ``weights_dir`` by the grids they apply to (``{"vhr": ...}`` from
    ``descriptors.pt``, ``{"medium": ...}`` from ``descriptors_medium.pt``), or None when there are none."""
    if weights_dir is None:
        return None
    out = {}
    for kind, name in WEIGHTS_NAMES.items():
        path = Path(weights_dir) / name
        if not path.is_file():
            continue
        state = torch.load(path, map_location=device, weights_only=False)
        cfg = state["config"]
        models = DescriptorModels(cfg)
        models.load_state_dict(state["models"])
        log.info("dense mode: learned descriptors for %s grids from %s (factors %s)", kind, path,
                 sorted(f for f, _, _ in cfg.levels))
        out[kind] = Descriptors(models, cfg, device)
    return out or None


# ---- label fields ------------------------------------------------------------------------------

def ground_field_path(optical_path: str | Path) -> Path:
    """``<aoi>_groundfield_<split>.tif`` beside ``<aoi>_optical_<split>.tif``."""
    p = Path(optical_path)
    return p.with_name(p.name.replace("_optical_", "_groundfield_"))


def label_field(grid: SceneGrid, optical_path: str | Path, tiepoints_path: str | Path,
                spacing_m: float = 4.0) -> NodeField:
    """The field (grid px) the descriptors learn to find: the ground-field file when the scene has
    one (a lattice of dx, dy in optical px, its own geotransform), otherwise a smooth field through
    the tie points (affine + a thin-plate spline of the residuals, on a ``spacing_m`` lattice)."""
    from sarfusion.io.raster import raster_info, read_raster
    sx, sy = grid.optical_scale
    gpath = ground_field_path(optical_path)
    if gpath.is_file():
        info, opt = raster_info(gpath), raster_info(optical_path)
        values = read_raster(gpath).astype(np.float32)
        if values.shape[0] != 2:
            raise InputError(f"ground field must have 2 bands (dx, dy), has {values.shape[0]}", gpath)
        gt, ogt = info.geotransform, opt.geotransform
        # lattice cell centres -> optical pixel coordinates -> grid coordinates
        col0 = (gt[0] + 0.5 * gt[1] - ogt[0]) / ogt[1]
        row0 = (gt[3] + 0.5 * gt[5] - ogt[3]) / ogt[5]
        r, c = grid.optical_to_grid(np.array([row0]), np.array([col0]))
        step = gt[1] / ogt[1] / sx
        return NodeField(float(r[0]), float(c[0]), float(step), np.stack([values[1] / sy, values[0] / sx]))
    from scipy.interpolate import RBFInterpolator
    from sarfusion.registration.keypoints import read_tiepoints_grid
    pts = read_tiepoints_grid(grid, tiepoints_path)
    if len(pts) < 3:
        raise InputError("needs at least 3 tie points for a label field", tiepoints_path)
    a = np.column_stack([pts[:, 1], pts[:, 0], np.ones(len(pts))])
    affine = np.linalg.lstsq(a, pts[:, [3, 2]], rcond=None)[0].T  # SAR (x, y) from optical (col, row, 1)
    base = AffineField(affine)
    resid = np.stack([pts[:, 2] - pts[:, 0], pts[:, 3] - pts[:, 1]]) - base.sample(pts[:, 0], pts[:, 1])
    # thin-plate spline through the residuals: the ground tie points are matched exactly, and the
    # field bends smoothly in between (a few px of smoothing absorbs the integer rounding)
    spline = RBFInterpolator(pts[:, :2], resid.T, kernel="thin_plate_spline", smoothing=float(len(pts)))
    step = spacing_m / grid.res if grid.crs_wkt else 32.0
    n_r, n_c = int(grid.height / step) + 1, int(grid.width / step) + 1
    lr, lc = np.meshgrid(np.arange(n_r) * step, np.arange(n_c) * step, indexing="ij")
    values = spline(np.column_stack([lr.ravel(), lc.ravel()])).T.reshape(2, n_r, n_c)
    return NodeField(0.0, 0.0, float(step), (values + base.sample(lr, lc)).astype(np.float32))


# ---- training data -----------------------------------------------------------------------------

def smoothed_field(labels: NodeField, sigma: float) -> NodeField:
    """``labels`` smoothed by a Gaussian of ``sigma`` grid px."""
    s = sigma / labels.step
    return NodeField(labels.row0, labels.col0, labels.step,
                     np.stack([cv2.GaussianBlur(v, (0, 0), s, borderType=cv2.BORDER_REFLECT)
                               for v in labels.values.astype(np.float32)]))


def level_residual(labels, prior, f: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
    """``(2, height, width)`` float16 (dy, dx) in level px, ``labels`` minus ``prior`` (both
    fields in grid px) on the level-``f`` box at (row0, col0): where the ground match sits once
    the SAR is resampled through ``prior`` (:func:`~sarfusion.registration.align.warped_sar`)."""
    rows = (np.arange(row0, row0 + height) + 0.5)[:, None] * f
    cols = (np.arange(col0, col0 + width) + 0.5)[None, :] * f
    rows, cols = np.broadcast_to(rows, (height, width)), np.broadcast_to(cols, (height, width))
    return ((labels.sample(rows, cols) - prior.sample(rows, cols)) / f).astype(np.float16)


@dataclass
class TrainingScene:
    """One scene the nets train on: its grid, ``labels`` (the field, grid px, where each optical
    pixel's ground match is), ``priors`` (level factor -> the fields the SAR is resampled through,
    one SAR copy each; ``labels`` itself among them means "aligned"), ``centres`` (grid px crop
    centres ``(n, 2)``, None: anywhere) and the ``source`` file named in errors."""

    grid: SceneGrid
    labels: NodeField | ZeroField
    priors: Callable[[int], list]
    centres: np.ndarray | None
    source: Path


def triple_scenes(triples: list[tuple[Path, Path, Path]], cfg: DescriptorConfig) -> list[TrainingScene]:
    """Scenes with tie points (``find_triples``): labels from :func:`label_field`, priors the
    labels and their ``prior_blur`` smoothings (the strain the dense mode's coarse levels leave)."""
    from sarfusion.registration.keypoints import read_tiepoints_grid
    out = []
    for opt, sar, tp in triples:
        grid = scene_grid(opt, sar)
        labels = label_field(grid, opt, tp, cfg.label_spacing_m)
        # Without a ground field the label is exact only at the tie points (a spline between
        # them is ~20 px off on SN9-like fields): crops are then centred on tie points.
        ties = None if ground_field_path(opt).is_file() else read_tiepoints_grid(grid, tp)[:, :2]
        priors = (lambda f, labels=labels: [labels if sigma <= 0 else smoothed_field(labels, sigma * f)
                                            for sigma in cfg.prior_blur])
        out.append(TrainingScene(grid, labels, priors, ties, opt))
    return out


def _pair_label_path(cache_dir: Path, optical: Path, sar: Path) -> Path:
    """Where a pair's dense label is cached: named by both files' paths, sizes and times."""
    import hashlib
    stats = [(Path(p).resolve(), Path(p).stat()) for p in (optical, sar)]
    key = "|".join(f"{p}:{st.st_size}:{st.st_mtime_ns}" for p, st in stats)
    return cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"


def dense_pair_label(grid: SceneGrid, optical: Path, sar: Path,
                     cache_dir: Path | None = None) -> NodeField | ZeroField:
    """The pair's own training-free dense field (the label of ``pair_label="dense"``), read from
    ``cache_dir`` when an earlier run computed it for the same files (a resumed run then skips
    ~25 s a 1024 px pair); delete the folder to recompute (e.g. after a code change)."""
    from sarfusion.io.atomic import atomic_path
    from sarfusion.registration.dense import dense_field
    path = _pair_label_path(cache_dir, optical, sar) if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            if "values" not in z.files:  # nothing matched in this pair: zero offsets
                return ZeroField()
            return NodeField(*(float(v) for v in z["origin"]), z["values"],
                             z["confidence"] if "confidence" in z.files else None)
    field, _ = dense_field(grid)
    if path is not None:
        arrays = {}
        if isinstance(field, NodeField):
            arrays = {"origin": np.array([field.row0, field.col0, field.step]), "values": field.values}
            if field.confidence is not None:
                arrays["confidence"] = field.confidence
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)  # empty for zero offsets
    return field


def pair_scenes(pairs: list[tuple[str, Path, Path]], cfg: DescriptorConfig, seed: int = 0,
                label_cache: Path | None = None) -> list[TrainingScene]:
    """Co-registered pairs ``(name, optical, sar)``: labels zero offsets or the pair's own
    training-free dense field (``pair_label``; cached in ``label_cache``), priors zero and
    ``pair_warps`` random smooth fields (seeded by ``seed`` and the pair's name)."""
    import zlib
    from tqdm.auto import tqdm
    from sarfusion.registration.warp import smooth_field
    if cfg.pair_label not in ("zero", "dense"):
        raise InputError(f"unknown pair_label {cfg.pair_label!r}; choose 'zero' or 'dense'")
    out = []
    for name, opt, sar in tqdm(pairs, desc=f"pairs ({cfg.pair_label} labels)", leave=False):
        grid = scene_grid(opt, sar)
        zero = ZeroField()
        labels = zero
        if cfg.pair_label == "dense":
            labels = dense_pair_label(grid, opt, sar, label_cache)
        step = 8.0  # grid px between the random fields' lattice nodes (they vary over pair_warp_corr)
        n_r, n_c = int(grid.height / step) + 2, int(grid.width / step) + 2
        fields = [zero] + [NodeField(0.0, 0.0, step, smooth_field(n_r, n_c, cfg.pair_warp_px, cfg.pair_warp_corr / step,
                                                                  seed=zlib.crc32(f"{seed}/{name}/{k}".encode())))
                           for k in range(cfg.pair_warps)]
        out.append(TrainingScene(grid, labels, lambda f, fields=fields: fields, None, opt))
    return out


class DescriptorCrops(Dataset):
    """Aligned optical / SAR crop pairs of every trained level, read once into memory.

    Each scene's central ``max_side`` level px are read at every factor, the SAR resampled through
    each of the scene's priors (the label field itself: the ground matches at zero offset; its
    smoothed copies or random warps: the ground then matches at the residual), and turned into net
    inputs. Crops are centred anywhere, or on the scene's centres (tie points). A sample
    is, per factor ``f``: ``opt<f>`` ``(C_o, t + 2c, t + 2c)``, ``sar<f>`` ``(C_s, t + 2r + 2c, ...)``
    (float32; ``c`` the context) and ``target<f>``, the flat index of the true shift in the
    ``(2r + 1)^2`` NCC map. Crops are drawn from (seed, epoch, index): resumable, deterministic.
    """

    def __init__(self, scenes: list[TrainingScene], cfg: DescriptorConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        self.epoch = 0
        # per scene and factor: optical inputs, SAR inputs and residuals (one per prior), the
        # valid mask, the crop centres (None: anywhere)
        self.scenes: list[dict[int, tuple]] = []
        from tqdm.auto import tqdm
        for scene in tqdm(scenes, desc="descriptor scenes", leave=False):
            grid = scene.grid
            levels = {}
            for f, t, r in cfg.levels:
                c0, r0, bw, bh = grid.optical_box(f)
                w, h = min(bw, cfg.max_side), min(bh, cfg.max_side)
                if min(w, h) <= 2 * self.margin(t, r):
                    continue  # too small for this level's crops
                c0, r0 = c0 + (bw - w) // 2, r0 + (bh - h) // 2
                rgb = grid.read("optical", (c0, r0, w, h), f)
                sars, residuals = [], []
                valid = np.any(rgb != 0, axis=0)
                for prior in scene.priors(f):
                    sar_img, _, _ = warped_sar(grid, prior, f, r0, c0, h, w)
                    valid &= sar_img != 0
                    sars.append(descriptor_inputs(sar_img, "sar", cfg).astype(np.float16))
                    residuals.append(None if prior is scene.labels else
                                     level_residual(scene.labels, prior, f, r0, c0, h, w))
                centres = None
                if scene.centres is not None:
                    centres = np.rint(scene.centres / f - [r0, c0]).astype(np.int64)
                    m = self.margin(t, r)
                    centres = centres[((centres >= m) & (centres < [h - m, w - m])).all(axis=1)]
                    if not len(centres):
                        continue
                levels[f] = (descriptor_inputs(rgb, "optical", cfg).astype(np.float16), sars, residuals,
                             valid, centres)
            self.scenes.append(levels)
        # per factor, the scenes large enough for it
        self.scenes_with = {f: [i for i, lv in enumerate(self.scenes) if f in lv] for f, _, _ in cfg.levels}
        for f, t, r in cfg.levels:
            if not self.scenes_with[f]:
                raise InputError(f"no scene is large enough for descriptor training at x{f} (its level "
                                 f"image must exceed {2 * self.margin(t, r)} px a side, i.e. "
                                 f"{2 * self.margin(t, r) * f} registration-grid px)", scenes[0].source.parent)
        log.info("descriptor training: %d scenes, factors %s", len(self.scenes), [f for f, _, _ in cfg.levels])

    def margin(self, template: int, radius: int) -> int:
        """Level px a crop centre keeps from the image border (template, shifted window, context)."""
        return template // 2 + 2 * radius + self.cfg.context + 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.scenes) * self.cfg.crops_per_scene

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        scene = index // self.cfg.crops_per_scene
        c = self.cfg.context
        out = {}
        for f, t, r in self.cfg.levels:
            have = self.scenes_with[f]
            xo, sars, residuals, valid, centres = self.scenes[scene if scene in have else
                                                              have[int(rng.integers(len(have)))]][f]
            h, w = valid.shape
            margin = self.margin(t, r)
            so, ss = t + 2 * c, t + 2 * r + 2 * c
            for _ in range(50):  # a placement inside both scenes (nearly always the first one)
                if centres is None:
                    cy, cx = rng.integers(margin, h - margin), rng.integers(margin, w - margin)
                else:
                    cy, cx = centres[rng.integers(len(centres))]
                v = int(rng.integers(len(sars)))
                # where the ground match sits relative to the template: the label minus the prior
                # the SAR was resampled through (0 for the label itself)
                e = np.zeros(2) if residuals[v] is None else residuals[v][:, cy, cx].astype(np.float64)
                k = rng.integers(0, 2 * r + 1, size=2)  # the target cell of the NCC map
                oy, ox = cy - t // 2 - c, cx - t // 2 - c
                # the window's offset that puts the match there, kept inside the image
                d = np.clip(np.rint(r + e - k), [r - oy, r - ox],
                            [h - ss - oy + r, w - ss - ox + r]).astype(np.int64)
                k = np.clip(np.rint(r - d + e), 0, 2 * r).astype(np.int64)
                sy, sx = oy - r + d[0], ox - r + d[1]
                if (np.abs(r - d + e - k) <= 0.5 + 1e-6).all() and \
                        valid[oy:oy + so, ox:ox + so].mean() >= self.cfg.min_valid and \
                        valid[sy:sy + ss, sx:sx + ss].mean() >= self.cfg.min_valid:
                    break
            out[f"opt{f}"] = torch.from_numpy(xo[:, oy:oy + so, ox:ox + so].astype(np.float32))
            out[f"sar{f}"] = torch.from_numpy(sars[v][:, sy:sy + ss, sx:sx + ss].astype(np.float32))
            # the template lines up with the window placed at top-left k = r - d + e
            out[f"target{f}"] = torch.tensor(int(k[0] * (2 * r + 1) + k[1]))
        return out


def train_descriptors(data_dir: str | Path, weights_dir: str | Path, preset: str = "demo",
                      config: DescriptorConfig | None = None) -> Path:
    """Train the VHR descriptor nets on every scene triple under ``data_dir``; returns
    ``weights_dir/descriptors.pt`` (state dict + config), with ``descriptors_config.json`` beside it.
    Resumes from ``weights_dir/descriptors_run`` when interrupted."""
    from sarfusion.registration.keypoints import find_triples
    cfg = config or choose_preset(PRESETS, preset)
    weights_name(cfg)  # a bad config fails before the scenes are read
    return _fit(triple_scenes(find_triples(data_dir), cfg), cfg, weights_dir)


def training_pairs(root: str | Path) -> list[tuple[str, Path, Path]]:
    """``(name, optical, sar)`` of every co-registered pair under ``root``: a pair folder
    (``sar/`` + ``opt/``, :mod:`sarfusion.datasets.pairs`) or a SEN1-2 folder (names
    ``<season>/<s1 patch stem>``)."""
    from sarfusion.datasets import pairs as pair_folder, sen12
    root = Path(root)
    if not root.is_dir():
        raise InputError("not a folder", root)
    if pair_folder.is_pair_folder(root):
        return [(p.name, p.optical, p.sar) for p in pair_folder.find_pairs(root)]
    found = sen12.find_pairs(root)
    if not found:
        raise InputError("holds neither a pair folder (sar/ + opt/, images paired by name) nor SEN1-2 "
                         "patches (s1_*/..._s1_..._p*.png with their s2_ partners)", root)
    return [(f"{p.sar.parent.parent.name}/{p.sar.stem}", p.optical, p.sar) for p in found]


def train_pair_descriptors(pair_roots: list[str | Path], weights_dir: str | Path, preset: str = "demo",
                           config: DescriptorConfig | None = None,
                           exclude: set[str] | None = None) -> Path:
    """Train the medium-grid descriptor nets, self-supervised, on the co-registered pairs of
    ``pair_roots`` (:func:`training_pairs`) except those named in ``exclude`` (an area split);
    returns ``weights_dir/descriptors_medium.pt``. Resumes from ``descriptors_medium_run``."""
    cfg = config or choose_preset(PAIR_PRESETS, preset)
    name = weights_name(cfg)  # a bad config fails before the pairs' labels are computed
    pairs = [p for root in pair_roots for p in training_pairs(root) if p[0] not in (exclude or set())]
    if not pairs:
        raise InputError("no training pairs left after --exclude", pair_roots[0])
    log.info("descriptor training on %d co-registered pairs%s", len(pairs),
             f" ({len(exclude)} names excluded)" if exclude else "")
    label_cache = Path(weights_dir) / f"{Path(name).stem}_run" / "pair_labels"
    return _fit(pair_scenes(pairs, cfg, cfg.engine.seed, label_cache), cfg, weights_dir)


def weights_name(cfg: DescriptorConfig) -> str:
    """The weights file of ``cfg``'s grid kind (:data:`WEIGHTS_NAMES`); InputError for another kind."""
    if cfg.grid not in WEIGHTS_NAMES:
        raise InputError(f"unknown descriptor grid kind {cfg.grid!r}; choose one of {sorted(WEIGHTS_NAMES)}")
    return WEIGHTS_NAMES[cfg.grid]


def _fit(scenes: list[TrainingScene], cfg: DescriptorConfig, weights_dir: str | Path) -> Path:
    """Train :class:`DescriptorModels` on ``scenes``; writes :func:`weights_name` (state dict +
    config) and its ``*_config.json`` into ``weights_dir``; resumable from ``*_run``."""
    log.info("descriptor config:\n%s", describe(cfg))
    weights_dir = Path(weights_dir)
    name = weights_name(cfg)
    stem = Path(name).stem
    dataset = DescriptorCrops(scenes, cfg, seed=cfg.engine.seed)
    seed_everything(cfg.engine.seed)
    models = DescriptorModels(cfg)
    optim = torch.optim.Adam(models.parameters(), lr=cfg.lr)
    engine = Engine(weights_dir / f"{stem}_run", cfg.engine, {"descriptors": models},
                    {"descriptors": optim}, task_config=cfg)
    loader = engine.make_loader(dataset, shuffle=True)

    def step(ctx, batch) -> dict:
        out, total = {}, 0.0
        with ctx.autocast():
            for f, _, _ in cfg.levels:
                logits = ctx.models["descriptors"](batch, f, cfg.context).float()
                loss = nn.functional.cross_entropy(logits, batch[f"target{f}"])
                hit = (logits.argmax(1) == batch[f"target{f}"]).float().mean()
                out[f"loss_x{f}"], out[f"exact_x{f}"] = loss.item(), hit.item()
                total = total + loss
        ctx.backward(total, "descriptors")
        return out

    metrics = engine.fit(loader, step, desc=stem)
    log.info("descriptor training done: %s", metrics)
    path = weights_dir / name
    save_torch_atomic({"config": cfg, "models": engine.models["descriptors"].state_dict()}, path)
    save_config(cfg, weights_dir / f"{stem}_config.json")
    return path

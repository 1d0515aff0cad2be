"""Dense registration: coarse-to-fine local matching of oriented-gradient (or learned) features.

For each pyramid level (a ``factor``-downsampled registration grid) a lattice of nodes covers the
optical footprint. Each node's optical feature template is matched by FFT NCC inside a SAR search
window centred at the node plus the offset predicted by the previous level; on levels after the
first the SAR is resampled through that prediction first (warped search), so the local strain the
previous levels already explain does not smear the templates. Templates and windows that
reach past a scene footprint are scored by masked NCC (over pixels valid in both), so the
footprint border adds no false structure; on the fine levels of VHR pairs the SAR's brightest
(layover) and darkest (radar shadow) pixels are left out the same way, as both sit off the
ground the scene is registered on. Matches are kept when distinctive (NCC, peak ratio,
not on the search border) and consistent with their neighbours; a rejected node takes its second
or third NCC peak when that one agrees with its neighbours. Survivors are interpolated into a
smooth field that seeds the next level. The scene is processed
in tiles of ``tile`` level pixels, so memory stays bounded for 13,000 px scenes.

Grids that are not VHR (no CRS, or 1 m and coarser: 10 m Sentinel pairs), 320 px and larger, take a
medium-resolution recipe instead (``DenseConfig.medium_levels``): a scene-wide translation, then one lattice of large
templates around it and a finer pass, and a do-no-harm gate that scales the field toward zero
offsets unless the scene-wide translation's NCC shows it is not chance.
Every node carries a confidence in [0, 1] (how much local matching evidence of the last level backs
its offset, rather than a fallback), written by ``sarfusion register --confidence``.

With trained descriptor nets (:mod:`~sarfusion.registration.descriptors`, from ``--weights``) the
levels they were trained for match learned features instead of the oriented gradients: on VHR
grids the nets trained on scenes with tie points (and without the SAR layover / shadow masks: the
nets learned what does not move with the ground), on the medium route those trained on
co-registered pairs. The scene-wide translation and the small-image route stay training-free.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field as dc_field, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from sarfusion.registration.align import SceneGrid, to_intensity, warped_sar
from sarfusion.registration.features import oriented_gradients
from sarfusion.registration.field import (NodeField, ZeroField, fill_smooth, node_confidence,
                                          reject_far_from_affine, reject_inconsistent,
                                          rescue_with_candidates)
from sarfusion.registration.matching import aggregate_maps, candidate_peaks, find_peaks, ncc_maps

if TYPE_CHECKING:  # the training stack loads only when descriptors are actually used
    from sarfusion.registration.descriptors import Descriptors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenseLevel:
    """One pyramid level, in pixels of that level: template side, search radius, node spacing."""

    factor: int
    template: int
    radius: int
    spacing: int
    offset: float = 0.0  # node lattice shifted by this fraction of the spacing (both axes)


@dataclass
class DenseConfig:
    """Settings of the dense mode (no presets: one recipe, with or without learned descriptors).

    Defaults suit SN9-like pairs (registration grid ~0.45 m, offsets up to ~70 m, smooth over
    ~40-50 m). Small images get a global translation first (:func:`global_shift`), then use
    ``small_levels`` / ``small_consistency`` / ``small_min_score`` and no pooling; levels
    too coarse for them are dropped and finer ones appended (see :func:`plan_levels`), so the
    same defaults work on 256 px patches.
    """

    levels: tuple[DenseLevel, ...] = dc_field(default_factory=lambda: (
        DenseLevel(8, 48, 24, 12),
        DenseLevel(8, 40, 10, 8),
        DenseLevel(4, 32, 10, 8),
        DenseLevel(2, 64, 12, 16),
        DenseLevel(2, 64, 8, 16, offset=0.5),
        DenseLevel(2, 48, 6, 12),
        DenseLevel(2, 48, 6, 12, offset=0.5),
    ))
    # x8 runs twice: the first pass (384 grid px templates) is right on average (90% of its peaks
    # within 1.5 level px of the template-averaged truth, SN9 2048 px seed 201) but far smoother
    # than SN9 fields (local strain ~30%), and x4 templates matched through so smooth a field are
    # smeared by the strain it leaves: only 19% of x4 peaks fell within 1.5 level px of the truth
    # (96% from the true field; 86% / 25% from the true field blurred by 48 / 144 optical px).
    # A second x8 pass with smaller templates, warped through the first, leaves x4 less strain.
    # Learned descriptors, 2048 px seeds 200 / 201: 20.18 / 27.43 -> 17.67 / 23.49 px (t32 r8:
    # 18.18 / 25.66; t48 r10: 18.95 / 24.14; t24 r6: 18.81 / 28.09). x4 then searches +-10 level
    # px (was 18, for the single x8 pass: 18.18 / 25.66 -> 17.34 / 25.18 with t32 r8). Seeds
    # 401-403, 501-502 learned: 18.53 -> 17.32. Training-free it is a wash (200 / 201 25.18 ->
    # 26.43, 401-403, 501-502 19.69 -> 20.11, 4096 px 200 / 201 20.03 -> 20.04 px).
    # Each x2 level runs twice, the second time on a lattice shifted by half a node spacing, so
    # the second pass refines the field in between the first one's nodes (SN9 seeds 401-403:
    # 21.76 -> 21.18 px, 501-502: 21.59 -> 21.17 px; repeating x4 the same way hurt: 22.0 px).
    # Small images (finest configured level's footprint under ``fine_side``, e.g. 256 px S1/S2
    # patches) start from this recipe instead: fewer, larger-template levels suit their weak,
    # speckled structure (the SN9 levels above regress the SEN1-2 known-warp test 2.9 -> 3.9 px).
    small_levels: tuple[DenseLevel, ...] = dc_field(default_factory=lambda: (
        DenseLevel(8, 48, 24, 12),
        DenseLevel(4, 48, 10, 12),
        DenseLevel(2, 64, 6, 16),
    ))
    small_consistency: float = 2.5  # level px: ``consistency`` for small images (no pooling there)
    # Small images first get one scene-wide translation (see :func:`global_shift`): on real 10 m
    # S1 / S2 patches local templates are too weak (their NCC peaks are mostly noise: 64 px
    # templates put <10% of peaks within 1.5 px of the truth), while the whole footprint gives a
    # usable peak (known-warp tests: SEN1-2 2.70 -> 1.94 px, MultiEarth forest 5.55 -> 3.29 px).
    # The levels then refine it with strong matches only (synthetic 512 px UTM pair: 2.25 -> 2.21).
    small_global_radius: int = 12   # grid px searched around zero by the global translation
    # The issue-22 warps reach 23 px, beyond that search. A second search over +-small_wide_radius
    # replaces the first when its peak is distinct and beyond the first search's reach (within it,
    # the first search's larger template is the better estimate): best / second-best NCC (+1 each,
    # outside +-global_peak_exclude px, the coarse features' width) at least small_wide_ratio, the
    # 95th percentile of that ratio on chance pairs (border peaks included). Chosen on 256 px crops
    # of the 26 real S1/S2 pairs (2 per pair, never SEN1-2 / MultiEarth): as a border peak is never
    # taken, 1 of 52 chance searches (optical of one pair, SAR of another) passes, and 80% of the
    # 104 matched ones. Warp recovery on the 52 matched crops / absolute error of the older
    # known-warp test there (which sees an error the unwarped and warped runs share): +-12 only
    # 3.54 px (9 crops over 5 px) / 4.69; +-24 always 1.75 / - (chance pairs then move by 23.9 px);
    # +-24 when distinct 2.45 / 4.85; this rule 2.49 / 4.72 (3.78 / 2.73 / 4.84 for +-12 only /
    # this rule / its absolute since nodata stays out of the NCC: the old NCC was steered by the
    # known warp's empty border). ``bench_registration.py --what small-tune`` reproduces it.
    small_wide_radius: int = 24
    small_wide_ratio: float = 1.017
    global_peak_exclude: int = 6
    small_global_scales: tuple[tuple[float, float], ...] = ((2.0, 3.0), (6.0, 6.0))
    # (pre_sigma, feature_sigma) px of the feature sets whose NCC maps are summed: the coarse set
    # keeps the peak in the right basin, the fine one localises it. Either alone: SEN1-2 2.70 /
    # 3.15 px; (2, 1.5) + (6, 6): 2.13 px but forest 3.8 px. The choice is sensitive (one SEN1-2
    # pair has no usable peak and lands 1-12 px off depending on it).
    small_min_score: float = 0.5    # ``min_score`` of the small-image levels after the global shift:
                                    # real S1/S2 local matches score 0.1-0.3 and pull the field off
                                    # (0.08: SEN1-2 2.51 px, forest 4.74; 0.3: 2.30; 0.4: 2.08),
                                    # synthetic / strongly structured pairs score ~0.8
    # Grids that are not VHR (no CRS, or a CRS grid at vhr_m or coarser: 10 m Sentinel pairs) and at
    # least medium_min_side px take the medium-resolution recipe instead of the levels above: a
    # scene-wide translation (searched over +-medium_global_radius px), then a lattice of large
    # templates around it and a finer pass, strict neighbour consistency and wide smoothing. On real 10 m S1 / S2 pairs local peaks are weak and
    # noisy (speckle; NCC 0.1-0.3), a 128 px template is the smallest that localises reliably, and
    # the field is smooth over far more than that (a 128 / 192 px box blur of the issue-22 warp
    # leaves 0.3 / 0.6 px), so averaging wins over resolution. Chosen on the even-index real S1 /
    # S2 pairs (warp recovery, docs/registration_notes.md): the SN9 levels there gave 11.5 px mean
    # (fine levels search +-192 px and lock onto wrong basins; 52 px on one pair), the small-image
    # levels with a +-32 px global shift 3.4 px, this recipe 1.41 px (held-out odd pairs: 1.63).
    medium_levels: tuple[DenseLevel, ...] = dc_field(default_factory=lambda: (
        DenseLevel(1, 128, 8, 16),
        DenseLevel(1, 64, 4, 16),  # a second pass, smaller templates around the first: 1.68 -> 1.48 px
    ))
    medium_consistency: float = 2.0   # px: neighbour-median tolerance (10 m fields are smooth)
    medium_smooth_nodes: float = 2.0  # nodes: smoothing sigma (32 px at spacing 16)
    medium_global_radius: int = 32    # px: the issue-22 warps reach 23 px, plus the pairs' own offset
    medium_tile: int = 256            # px per processing tile: 128 px templates every 16 px make
                                      # large stacks (1024 px pair: 768 px tiles 53 s, 256 px 28 s)
    global_max_side: int = 2048       # global translation on a downsampled grid above this side (px)
    # Do no harm (medium recipe): the field counts in proportion to the evidence that the
    # scene-wide translation is not chance: its NCC peak x sqrt(template side px) (the chance
    # level of the peak falls with the template's size) through global_score_ramp; under the
    # ramp's start the lattice searches around zero offsets instead, and the whole field is scaled
    # toward zero offsets by that confidence. Measured against pairs of an optical image and the
    # SAR of ANOTHER area (every match chance; real26 pairs i and i + 7): global NCC <= 0.046 on
    # 1024 px (x sqrt(960) <= 1.43), 0.036 on a 512 px crop (0.76), <= 0.12 on 256 px SEN1-2
    # (<= 1.66); real pairs 0.21-0.46 (6.5-14) and 0.11-0.44 (1.5-6.0). The lattice's own
    # self-consistency was tried as a second signal (kept fraction) but its chance level depends on
    # the lattice size (0.15-0.29 on 1024 px, 0.39 on 512 px), so it is only reported.
    global_score_ramp: tuple[float, float] = (1.7, 3.4)
    medium_min_side: int = 320        # px: smaller images (SEN1-2 / MultiEarth 256 px patches) keep the
                                      # small-image route. Chosen on central crops of the EVEN-index
                                      # real S1/S2 pairs (issue-22 warp recovery, medium vs small
                                      # route): 256 / 288 px 2.11 / 1.96 vs 1.87 / 1.78 (small kept),
                                      # 320 px 1.84 vs 2.91,
                                      # 384 px 1.29 vs 3.27; held-out odd crops 320 px 1.82 vs 2.98,
                                      # 384 px 1.77 vs 2.98 (docs/registration_notes.md). Was 512,
                                      # set from the 256 px patches alone
    confidence_half: float = 0.05     # NCC weight density at which the local support counts half
                                      # in the confidence (field.node_confidence)
    n_orient: int = 8
    pre_sigma: float = 2.0      # level px, before gradients (speckle; 10 m S1 / S2 pairs need it)
    pre_sigma_vhr: float = 0.0  # level px, instead, on georeferenced grids finer than vhr_m: sharp
    vhr_m: float = 1.0          # edges keep roads apart from building / tree blobs, whose layover
                                # and shadows bias blurred features (SN9: 27.5 -> 21.8 px with 0.5)
    feature_sigma: float = 1.5  # level px, descriptor support
    feature_sigma_vhr: float = 1.0  # level px, instead, on those VHR grids: sharper features
                                # localise better. Started from the TRUE ground field, the x4 level
                                # alone moved it 10.8 optical px with (pre 0.5, 1.5), 9.2 with (0,
                                # 1.0) (SN9 2048 px seed 200). SN9 2048 px seeds 200 / 201: 25.09 /
                                # 27.87 -> 23.49 / 26.89; 401-403, 501-502: 19.84 -> 19.69 mean; 4096
                                # px 200 / 201 / 404-407: 20.32 / 21.55 / 14.61 / 18.17 / 15.96 /
                                # 12.83 -> 19.09 / 20.98 / 14.70 / 18.01 / 16.04 / 12.15. 0.75 was
                                # a little better on SN9 (23.29 / 26.53; 19.64) but breaks the
                                # speckled test pair of test_registration_dense (1.97 -> 3.41 px;
                                # 1.0: 1.95): too sharp for heavier speckle. 0.5: 22.28 / 26.58 but
                                # 19.88; 0: 28.65 / 35.32; 12 orientations at 0.75: 23.69 / 26.30
    min_score: float = 0.08     # NCC (real S1 vs S2 peaks are often only 0.1-0.3)
    min_ratio: float = 1.01     # best / second-best (NCC + 1)
    min_valid: float = 0.6      # fraction of a template inside both scenes
    consistency: float = 8.0    # level px: max deviation from the neighbour median (SN9 fields
                                # strain ~20% locally: 2.5 rejected true matches; 23.6 -> 23.1 px)
    smooth_nodes: float = 1.0   # sigma, in nodes, of the normalised-convolution smoothing
    max_local_m: float = 20.0  # m: drop matches this far from the scene-wide robust affine
                                # (georeferenced pairs only; 0: off) ...
    max_local_rel: float = 1.75 # ... or this many times the matches' median distance from that
                                # affine where larger: real SN9 fields stray 20-50 px (6-15 m) from
                                # any affine (SPEC), where a fixed 20 m drops true matches. Inactive
                                # on the synthetic scenes (medians 4-8 m). A 14 m gate was tried:
                                # 4096 px seeds 200 / 404-407 23.02 / 17.72 / 18.62 / 16.78 / 14.31
                                # -> 22.76 / 17.03 / 18.38 / 16.52 / 13.58, but 2048 px seeds 401-403 /
                                # 501-502 21.17 -> 21.29 / 21.17 -> 21.60 mean: a wash, not adopted
    first_fill_free: bool = False  # first level: fill gaps from matches only (no pull to 0);
                                   # off: real S1/S2 pairs with small offsets regress with it
    pool_radius: int = 2        # nodes: first-level NCC maps pooled over this neighbourhood (0: off;
                                # helps SN9 ~0.3 px; off for small images, where it hurt SEN1-2)
    pool_sigma: float = 1.0     # nodes: Gaussian weight of the pooling
    pool_warped: int = 0        # nodes: NCC maps of warped levels pooled over this neighbourhood
                                # (0: off; 1-2 did not help SN9)
    warp_search: bool = True    # levels after the first match against the SAR resampled through
                                # the previous estimate (undoes its local distortion)
    tile: int = 768             # level px per processing tile (bounds memory)
    min_level_side: int = 96    # a level whose optical footprint is smaller is skipped
    fine_side: int = 512        # add finer levels until the finest footprint is this large
    device: str | None = None   # None: CUDA when available
    masked_ncc: bool = True     # templates / windows that reach past a scene footprint are scored
                                # over the pixels valid in both only (matching.masked_ncc_map), so
                                # the footprint border is no structure: SN9 seed 200 tie points
                                # within 300 px of the edge 27.7 -> 21.9 px (all 23.01 -> 22.38)
    sar_bright_quantile: float = 80.0  # VHR grids, levels up to sar_bright_max_factor: SAR pixels
    sar_bright_sigma: float = 2.0      # brighter than this percentile of the SAR smoothed by
    sar_bright_dilate: int = 1         # sar_bright_sigma level px (dilated sar_bright_dilate px) are
    sar_bright_max_factor: int = 2     # left out of the (masked) NCC: building / tree returns,
                                       # displaced toward the sensor by their layover, pull the fine
                                       # matches off the ground, whose tie points are scored. SN9
                                       # 4096 px seeds 200 / 404-407: 21.58 / 16.69 / 18.91 / 16.70 /
                                       # 13.77 -> 20.99 / 15.68 / 18.97 / 16.88 / 12.89 (mean 17.53 ->
                                       # 17.08); 2048 px 401-403: 21.68 -> 20.88. Percentile 70:
                                       # 21.21 / 15.95; 90: 21.73 / 15.85; 95: 21.63 / 16.14
    sar_dark_quantile: float = 10.0    # ... and SAR pixels darker than this percentile: radar
                                       # shadow, cast away from the sensor behind buildings / trees.
                                       # With the bright mask alone, the fine levels started from the
                                       # TRUE ground field drift to a field biased ~5 px (optical)
                                       # away from the sensor (seeds 405 / 200: 6.6 / 4.1 -> 14.0 /
                                       # 13.3 px; 20%: 12.9 / 12.4, bias 0 / 2 px). SN9 4096 px
                                       # 200 / 404-407: 20.99 / 15.68 / 18.97 / 16.88 / 12.89 -> 20.30
                                       # / 14.61 / 18.16 / 15.96 / 12.83 (mean 17.08 -> 16.37); 2048
                                       # px 401-403, 501-502: 20.78 -> 19.96. 6%: 20.63 at 2048, 14%:
                                       # 19.83; 20%: 16.72 at 4096; 30%: 405 / 200 19.30 / 22.92; also
                                       # at x4 (max factor 4): 20.72 at 2048. Masking dark OPTICAL
                                       # pixels (cast shadows, 15%) as well changed nothing (fixed
                                       # point 12.83 / 12.06 vs 12.86 / 12.43). Dilating the mask 2 px
                                       # instead of 1: 4096 px 200 / 201 / 404-407 17.24 -> 17.12 mean,
                                       # but 2048 px 19.96 -> 20.30: a wash, not adopted
    min_overlap: float = 0.4    # masked NCC: placements comparing fewer than this fraction of the
                                # template's pixels score -1 (the SAR mask takes about half of them)
    mask_erode: int = 3         # level px: masks eroded past the features' padding guard
    candidates: int = 3         # NCC peaks kept per node; a rejected / ambiguous node takes the one
    rescue_tol: float = 3.0     # ... within this many level px of its neighbours' median
                                # (field.rescue_with_candidates; PIV's secondary-peak replacement).
                                # Seeds 200 / 404: 22.01 / 16.75 -> 21.58 / 16.69; 5 candidates
                                # 21.30 / 17.21; tolerance 5: 21.63 / 16.51


def is_small(grid: SceneGrid, cfg: DenseConfig) -> bool:
    """True when the finest configured level's optical footprint is under ``cfg.fine_side``."""
    _, _, w, h = grid.optical_box(1)
    return min(w, h) / cfg.levels[-1].factor < cfg.fine_side


def plan_levels(grid: SceneGrid, cfg: DenseConfig, carry_reach: bool = True) -> list[DenseLevel]:
    """The levels actually run for this grid: too-coarse ones dropped, templates / radii capped to
    the image, finer levels appended for small images (e.g. 256 px SEN1-2 patches).
    ``carry_reach``: the first kept level searches as far as the dropped coarse ones would have
    (off when a prior, e.g. the global shift, already covers that range)."""
    _, _, w, h = grid.optical_box(1)
    side = min(w, h)
    levels = list(cfg.levels)
    finest = levels[-1]
    f = finest.factor
    while f > 1 and side / f < cfg.fine_side:
        f //= 2
        # Same ground extent as the finest configured template (capped below), half the radius.
        levels.append(DenseLevel(f, finest.template * finest.factor // f, max(4, finest.radius // 2),
                                 finest.spacing))
    out = []
    reach = 0.0  # search range (grid px) of dropped coarse levels, handed to the first kept one
    for lv in levels:
        lside = side // lv.factor
        if lside < cfg.min_level_side:
            reach = max(reach, lv.radius * lv.factor)
            continue
        t = min(lv.template, 2 * (lside // 4))
        want = max(lv.radius, int(math.ceil(reach / lv.factor))) if (not out and carry_reach) else lv.radius
        r = max(2, min(want, max(lv.radius, lside // 6) if not out else lside // 16))
        s = max(4, min(lv.spacing, t // 2))
        out.append(replace(lv, template=t, radius=r, spacing=s))
    if not out:
        lside = side
        out.append(DenseLevel(1, max(8, 2 * (lside // 6)), max(2, lside // 8), max(4, lside // 12)))
    return out


def _features(img: np.ndarray, cfg: DenseConfig, vhr: bool) -> np.ndarray:
    if vhr:
        return oriented_gradients(img, cfg.n_orient, cfg.pre_sigma_vhr, cfg.feature_sigma_vhr)
    return oriented_gradients(img, cfg.n_orient, cfg.pre_sigma, cfg.feature_sigma)


def _layover_shadow_mask(sar: np.ndarray, valid: np.ndarray, cfg: DenseConfig) -> np.ndarray:
    """Bool ``(h, w)``: where the SAR intensity ``(h, w)`` float32, smoothed by ``sar_bright_sigma``
    px, is above its ``sar_bright_quantile`` percentile (layover, double bounce) or below its
    ``sar_dark_quantile`` one (radar shadow) over the ``valid`` pixels, dilated by
    ``sar_bright_dilate`` px. Smoothed first so speckle does not pepper the mask. Both are
    displaced from the ground the tie points lie on, toward / away from the sensor."""
    smooth = cv2.GaussianBlur(sar, (0, 0), cfg.sar_bright_sigma)
    lo, hi = np.percentile(smooth[valid], [cfg.sar_dark_quantile, cfg.sar_bright_quantile])
    mask = np.zeros(smooth.shape, bool)
    if cfg.sar_bright_quantile > 0:
        mask |= smooth > hi
    if cfg.sar_dark_quantile > 0:
        mask |= smooth < lo
    if cfg.sar_bright_dilate > 0:
        k = np.ones((2 * cfg.sar_bright_dilate + 1,) * 2, np.uint8)
        mask = cv2.dilate(mask.astype(np.uint8), k).astype(bool)
    return mask


def eroded_valid(valid: np.ndarray, px: int) -> np.ndarray:
    """A validity mask ``(h, w)`` bool eroded by ``px`` px (a square of side 2 px + 1), so that
    features fading at a nodata border are not compared; beyond the array's edge counts as valid."""
    return cv2.erode(np.ascontiguousarray(valid, np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)).astype(bool)


def global_shift(grid: SceneGrid, cfg: DenseConfig, device: torch.device,
                 radius: int | None = None) -> tuple[np.ndarray, dict]:
    """One scene-wide translation (dy, dx) float32 in grid px, and its statistics.

    The optical footprint minus a ``radius`` border (default ``small_global_radius``) is one
    template, matched by FFT NCC in the SAR over +-``radius`` px; the NCC maps of the feature sets
    of ``small_global_scales`` are averaged before the (sub-pixel) peak is taken. Footprints wider
    than ``global_max_side`` are matched on a downsampled grid. Stats: ``global_shift``,
    ``global_score`` (mean NCC of the peak), ``global_ratio`` (its distinctiveness: (best + 1) /
    (second best + 1) outside +-``global_peak_exclude`` px; 1 on the search border or where the map
    is too small to hold a second peak),
    ``global_radius`` (grid px searched), ``global_confidence`` (the score times the square
    root of the template side, through ``global_score_ramp``; 0 for a peak on the search border,
    i.e. possibly beyond the range) and ``global_on_edge`` (that border case). Nodata (0) inside
    the compared windows is left out of the NCC (masked NCC).
    """
    col0, row0, bw, bh = grid.optical_box(1)
    f = 1
    while min(bw, bh) / f > cfg.global_max_side:
        f *= 2
    col0, row0, bw, bh = grid.optical_box(f)
    r = int(math.ceil((cfg.small_global_radius if radius is None else radius) / f))
    side = min(bh, bw) - 2 * r  # square template: the footprint's centre part
    if side < 16:
        return np.zeros(2, np.float32), {"global_shift": [0.0, 0.0], "global_score": 0.0,
                                         "global_strength": 0.0, "global_ratio": 1.0, "global_radius": r * f,
                                         "global_confidence": 0.0, "global_on_edge": False}
    # Features on the whole footprint (optical) / footprint + radius (SAR), cropped afterwards,
    # so the template and search edges are not feature-border artefacts.
    opt = to_intensity(grid.read("optical", (col0, row0, bw, bh), f), "optical")
    sar = to_intensity(grid.read("sar", (col0 - r, row0 - r, bw + 2 * r, bh + 2 * r), f), "sar")
    # Nodata inside the footprints (masked SAR strips, a SAR smaller than the optical) is left out
    # of the NCC (masked NCC over the pixels valid in both, eroded past the features' smoothing):
    # scored as feature-free ground it pulls the peak toward placements that see more valid SAR
    # (the Capella Rotterdam crop, 39% masked: +12 px on the search edge, 1.9 px on its valid part
    # alone). Windows without nodata take the plain NCC, bit for bit as before.
    # (eroded within the compared windows: what lies beyond a window's edge counts as valid)
    erode = int(math.ceil(max(s for _, s in cfg.small_global_scales)))
    mo = eroded_valid(opt[r:r + side, r:r + side] != 0, erode)
    ms = eroded_valid(sar[r:r + side + 2 * r, r:r + side + 2 * r] != 0, erode)
    masks = {} if mo.all() and ms.all() else {"template_masks": mo[None], "search_masks": ms[None],
                                              "min_overlap": cfg.min_overlap}
    total = None
    for pre_sigma, sigma in cfg.small_global_scales:
        fo = oriented_gradients(opt, cfg.n_orient, pre_sigma, sigma)[:, r:r + side, r:r + side]
        fs = oriented_gradients(sar, cfg.n_orient, pre_sigma, sigma)[:, r:r + side + 2 * r, r:r + side + 2 * r]
        m = ncc_maps(fo[None], fs[None], device, **masks)
        total = m if total is None else total + m
    res = find_peaks(torch.from_numpy(total / len(cfg.small_global_scales)), exclude=cfg.global_peak_exclude)
    shift = (res.shift[0] * f).astype(np.float32)
    score = float(res.score[0])
    lo, hi = cfg.global_score_ramp
    strength = score * math.sqrt(side)
    confidence = 0.0 if res.on_edge[0] else float(np.clip((strength - lo) / max(hi - lo, 1e-9), 0.0, 1.0))
    return shift, {"global_shift": [round(float(v), 3) for v in shift], "global_score": score,
                   "global_strength": 0.0 if res.on_edge[0] else strength,
                   "global_ratio": round(float(res.ratio[0]), 4) if not res.on_edge[0] and np.isfinite(res.ratio[0])
                   else 1.0,
                   "global_radius": r * f, "global_confidence": round(confidence, 4),
                   "global_on_edge": bool(res.on_edge[0])}


def match_level(grid: SceneGrid, level: DenseLevel, prior, cfg: DenseConfig,
                device: torch.device, descriptors: Descriptors | None = None) -> tuple[NodeField, dict]:
    """Match one level's node lattice; returns the cleaned, filled field and statistics.
    ``descriptors``: nets for this grid's kind (see :func:`dense_field`); their learned features
    replace the oriented gradients on the factors they were trained for."""
    f, t, r, s = level.factor, level.template, level.radius, level.spacing
    col0, row0, bw, bh = grid.optical_box(f)
    n_r = max(1, (bh - t) // s + 1)
    n_c = max(1, (bw - t) // s + 1)
    # Node centres (level px, corner convention) centred in the footprint.
    r_start = row0 + (bh - (n_r - 1) * s) / 2.0 + level.offset * s
    c_start = col0 + (bw - (n_c - 1) * s) / 2.0 + level.offset * s
    node_r = np.round(r_start + s * np.arange(n_r)).astype(np.int64)
    node_c = np.round(c_start + s * np.arange(n_c)).astype(np.int64)
    nr_grid, nc_grid = np.meshgrid(node_r * f, node_c * f, indexing="ij")
    prior_grid = prior.sample(nr_grid.astype(np.float64), nc_grid.astype(np.float64))  # (2, n_r, n_c)
    prior_lvl = np.round(prior_grid / f).astype(np.int64)
    warped = cfg.warp_search and not isinstance(prior, ZeroField)
    vhr = bool(grid.crs_wkt) and grid.res < cfg.vhr_m
    learned = descriptors is not None and f in descriptors.factors
    # Offsets are measured relative to the prior at the node (warped search) or to its rounding.
    base = prior_grid if warped else (prior_lvl * f).astype(np.float32)
    values = np.full((2, n_r, n_c), np.nan, np.float32)
    weight = np.zeros((n_r, n_c), np.float32)
    k_alt = max(1, cfg.candidates)
    cands = np.full((2, k_alt, n_r, n_c), np.nan, np.float32)
    cand_scores = np.full((k_alt, n_r, n_c), np.nan, np.float32)
    half = t // 2
    tile_nodes = max(1, cfg.tile // s)
    rejects = {"low_score": 0, "ambiguous": 0, "on_edge": 0}
    tiles = [(i, j) for i in range(0, n_r, tile_nodes) for j in range(0, n_c, tile_nodes)]
    for i0, j0 in tqdm(tiles, desc=f"match x{f}", disable=len(tiles) < 4, leave=False):
        i1, j1 = min(i0 + tile_nodes, n_r), min(j0 + tile_nodes, n_c)
        rr, cc = node_r[i0:i1], node_c[j0:j1]
        pr = prior_lvl[:, i0:i1, j0:j1]
        # Optical box: all templates of these nodes.
        o_r0, o_c0 = int(rr[0] - half), int(cc[0] - half)
        o_box = (o_c0, o_r0, int(cc[-1] + half - o_c0), int(rr[-1] + half - o_r0))
        opt_arr = grid.read("optical", o_box, f)
        opt_img = to_intensity(opt_arr, "optical")
        if not (opt_img != 0).any():
            continue
        if warped:
            # The SAR resampled through the prior field onto the optical tile (+ radius): the
            # local distortion the prior already explains is undone, so templates match the
            # residual only (sharper peaks than shifting a rigid window, whose content the
            # ~20% local strain of SN9-like fields smears). Windows are then centred on nodes.
            sar_img, s_r0, s_c0 = warped_sar(grid, prior, f, o_r0 - r, o_c0 - r,
                                              o_box[3] + 2 * r, o_box[2] + 2 * r)
            shift_r = np.zeros((len(rr), len(cc)), np.int64)
            shift_c = np.zeros((len(rr), len(cc)), np.int64)
        else:
            # SAR box: all search windows (template + radius, shifted by the rounded prior).
            sr = rr[:, None] + pr[0]
            sc = cc[None, :] + pr[1]
            s_r0, s_c0 = int(sr.min() - half - r), int(sc.min() - half - r)
            s_box = (s_c0, s_r0, int(sc.max() + half + r - s_c0), int(sr.max() + half + r - s_r0))
            sar_img = to_intensity(grid.read("sar", s_box, f), "sar")
            shift_r, shift_c = pr[0], pr[1]
        if not (sar_img != 0).any():
            continue
        if learned:
            fo = descriptors.features(opt_arr, "optical", f)
            fs = descriptors.features(sar_img, "sar", f)
        else:
            fo = _features(opt_img, cfg, vhr)
            fs = _features(sar_img, cfg, vhr)
        vo, vs = opt_img != 0, sar_img != 0
        if cfg.masked_ncc:
            # Feature support near the footprint border is cut by the gradient's padding guard:
            # erode the masks past it, so the border's fading features are not compared either.
            mo, ms = eroded_valid(vo, cfg.mask_erode), eroded_valid(vs, cfg.mask_erode)
            # (not with learned descriptors: they learned what moves with the ground, and the
            # masks cost them: SN9 2048 px seeds 200 / 201 21.76 / 23.06 -> 21.51 / 21.00 px)
            if vhr and not learned and (cfg.sar_bright_quantile > 0 or cfg.sar_dark_quantile > 0) \
                    and f <= cfg.sar_bright_max_factor and vs.any():
                ms &= ~_layover_shadow_mask(sar_img, vs, cfg)
        temps, searches, idx, tmasks, smasks = [], [], [], [], []
        for a, row in enumerate(rr):
            for b, col in enumerate(cc):
                tr, tc = row - half - o_r0, col - half - o_c0
                srow = row + shift_r[a, b] - half - r - s_r0
                scol = col + shift_c[a, b] - half - r - s_c0
                frac_o = vo[tr:tr + t, tc:tc + t].mean()
                frac_s = vs[srow + r:srow + r + t, scol + r:scol + r + t].mean()
                if min(frac_o, frac_s) < cfg.min_valid:
                    continue
                tmpl = fo[:, tr:tr + t, tc:tc + t]
                srch = fs[:, srow:srow + t + 2 * r, scol:scol + t + 2 * r]
                temps.append(tmpl)
                searches.append(srch)
                idx.append((i0 + a, j0 + b))
                if cfg.masked_ncc:
                    tmasks.append(mo[tr:tr + t, tc:tc + t])
                    smasks.append(ms[srow:srow + t + 2 * r, scol:scol + t + 2 * r])
        if not idx:
            continue
        maps = ncc_maps(np.stack(temps), np.stack(searches), device,
                        template_masks=np.stack(tmasks) if tmasks else None,
                        search_masks=np.stack(smasks) if smasks else None, min_overlap=cfg.min_overlap)
        pool = cfg.pool_warped if warped else (cfg.pool_radius if isinstance(prior, ZeroField) else 0)
        if pool > 0:
            # Pool NCC evidence over neighbouring nodes before picking peaks (see aggregate_maps).
            # Warped levels: every map already scores the residual to the prior, which is
            # smooth, so neighbours' maps align as they are (zero shifts).
            lattice = np.full((len(rr), len(cc)) + maps.shape[1:], np.nan, np.float32)
            for k, (i, j) in enumerate(idx):
                lattice[i - i0, j - j0] = maps[k]
            pooled = aggregate_maps(lattice, np.zeros_like(pr) if warped else pr, pool, cfg.pool_sigma)
            maps = np.stack([pooled[i - i0, j - j0] for i, j in idx])
        res = find_peaks(torch.from_numpy(maps))
        ok = (res.score >= cfg.min_score) & (res.ratio >= cfg.min_ratio) & ~res.on_edge
        rejects["low_score"] += int((res.score < cfg.min_score).sum())
        rejects["ambiguous"] += int((res.ratio < cfg.min_ratio).sum())
        rejects["on_edge"] += int(res.on_edge.sum())
        if k_alt > 1:
            alt, alt_score = candidate_peaks(torch.from_numpy(maps), k_alt)
            for k, (i, j) in enumerate(idx):
                good = alt_score[k] >= cfg.min_score
                cands[0, good, i, j] = base[0, i, j] + alt[k, good, 0] * f
                cands[1, good, i, j] = base[1, i, j] + alt[k, good, 1] * f
                cand_scores[good, i, j] = alt_score[k, good]
        for k, (i, j) in enumerate(idx):
            if not ok[k]:
                continue
            values[0, i, j] = base[0, i, j] + res.shift[k, 0] * f
            values[1, i, j] = base[1, i, j] + res.shift[k, 1] * f
            weight[i, j] = float(res.score[k])
    matched = np.isfinite(values).all(axis=0)
    valid = reject_inconsistent(values, matched, cfg.consistency * f) if matched.sum() >= 3 else matched
    if cfg.max_local_m > 0 and grid.crs_wkt:
        valid = reject_far_from_affine(values, valid, cfg.max_local_m / grid.res, rel=cfg.max_local_rel)
    rescued = 0
    if k_alt > 1 and valid.sum() >= 3:
        values, new_valid, picked = rescue_with_candidates(values, valid, cands, cand_scores,
                                                           cfg.rescue_tol * f)
        rescued = int(new_valid.sum() - valid.sum())
        weight = np.where(new_valid & ~valid, np.nan_to_num(picked), weight).astype(np.float32)
        valid = new_valid
    stats = {"factor": f, "nodes": int(n_r * n_c), "matched": int(matched.sum()), "kept": int(valid.sum()),
             "rescued": rescued, "mean_score": float(weight[valid].mean()) if valid.any() else 0.0,
             "learned": learned, **rejects}
    prior_conf = prior.sample_confidence(nr_grid.astype(np.float64), nc_grid.astype(np.float64)) \
        if isinstance(prior, NodeField) else np.zeros((n_r, n_c), np.float32)
    if valid.sum() < 3:
        log.warning("level x%d: only %d consistent matches; keeping the previous estimate", f, valid.sum())
        return NodeField(float(node_r[0] * f), float(node_c[0] * f), float(s * f), prior_grid, prior_conf), stats
    w_valid = np.where(valid, weight, 0.0)
    if isinstance(prior, ZeroField) and cfg.first_fill_free:
        # First level: nothing to fall back to, so gaps are filled from the matches themselves
        # (widening neighbourhoods), never pulled toward a zero offset.
        smooth = fill_smooth(np.where(valid, values, np.nan), w_valid, cfg.smooth_nodes)
    else:
        # Finer levels refine the previous estimate: smooth the corrections, which fall back to
        # 0 (the prior itself) far from any match.
        resid = np.where(valid, values - prior_grid, np.nan)
        smooth = prior_grid + fill_smooth(resid, w_valid, cfg.smooth_nodes, prior=np.zeros_like(prior_grid))
    conf = node_confidence(w_valid, cfg.smooth_nodes, cfg.confidence_half)
    return NodeField(float(node_r[0] * f), float(node_c[0] * f), float(s * f), smooth, conf), stats


def dense_field(grid: SceneGrid, cfg: DenseConfig | None = None, prior: NodeField | None = None,
                descriptors: dict[str, Descriptors] | None = None) -> tuple[NodeField | ZeroField, list[dict]]:
    """Coarse-to-fine dense offsets on the registration grid (dy, dx in grid px) and per-level stats.

    ``prior``: start from this field instead of zero offsets, running only the levels at the
    finest configured factor (e.g. to refine another estimate, or, in the registration
    diagnostics, to see where the matching settles when started from the true field).
    ``descriptors``: trained descriptor nets by grid kind (:func:`~sarfusion.registration.descriptors.load_descriptors`):
    ``"vhr"`` ones on VHR grids, ``"medium"`` ones on the medium route, used instead of the
    oriented gradients on the factors they were trained for; None (or no nets of the grid's
    kind): training-free.
    Routes: VHR grids (a CRS, finer than ``vhr_m``) run ``levels`` (``small_levels`` after a global
    translation when small); other grids of at least ``medium_min_side`` px the medium-resolution
    recipe (``medium_levels``) and its do-no-harm gate (stats: ``field_confidence``,
    ``kept_fraction``); smaller ones the small-image route (a scene-wide translation searched over
    +-``small_global_radius`` px, or over +-``small_wide_radius`` when that peak is distinct, then
    ``small_levels``).
    """
    cfg = cfg or DenseConfig()
    from sarfusion.engine import select_device
    device = select_device(cfg.device)
    current: NodeField | ZeroField = ZeroField() if prior is None else prior
    stats = []
    vhr = bool(grid.crs_wkt) and grid.res < cfg.vhr_m
    small = is_small(grid, cfg)
    _, _, bw, bh = grid.optical_box(1)
    medium = not vhr and min(bw, bh) >= cfg.medium_min_side
    nets = (descriptors or {}).get("vhr" if vhr else "medium" if medium else "")
    if prior is not None:
        finest = cfg.levels[-1].factor
        cfg = replace(cfg, levels=tuple(lv for lv in cfg.levels if lv.factor == finest))
    elif medium or small:
        radius = cfg.small_global_radius
        if medium:  # the medium-resolution recipe (see DenseConfig.medium_levels)
            cfg = replace(cfg, levels=cfg.medium_levels, consistency=cfg.medium_consistency,
                          smooth_nodes=cfg.medium_smooth_nodes, min_score=0.0, min_ratio=1.0,
                          candidates=1, warp_search=False, max_local_m=0.0, pool_radius=0, pool_warped=0,
                          tile=cfg.medium_tile)
            radius = cfg.medium_global_radius
        else:
            cfg = replace(cfg, levels=cfg.small_levels, consistency=cfg.small_consistency, pool_radius=0,
                          pool_warped=0, min_score=cfg.small_min_score)
        shift, st = global_shift(grid, cfg, device, radius)
        if not medium and cfg.small_wide_radius > radius:
            wide_shift, wide = global_shift(grid, cfg, device, cfg.small_wide_radius)
            # only beyond the first search's reach: within it, its larger template is the better estimate
            if wide["global_ratio"] >= cfg.small_wide_ratio and np.abs(wide_shift).max() > radius - 1:
                shift, st = wide_shift, wide
        log.info("dense global shift: dy %.2f dx %.2f px (searched +-%d px, NCC %.3f, confidence %.2f)",
                 shift[0], shift[1], st["global_radius"], st["global_score"], st["global_confidence"])
        stats.append(st)
        conf = st["global_confidence"]
        if medium and st["global_strength"] < cfg.global_score_ramp[0]:
            # A chance-level peak: the lattice searches around zero offsets instead (searched
            # around such a peak, a textureless scene's lattice agrees with itself: MultiEarth
            # forest kept 74% of its nodes around a peak on the search border, 37 px off).
            shift = np.zeros(2, np.float32)
        current = NodeField(0.0, 0.0, float(max(grid.width, grid.height)),
                            np.broadcast_to(shift[:, None, None], (2, 2, 2)).astype(np.float32).copy(),
                            np.full((2, 2), conf, np.float32))
    # the global shift already covers the range the dropped coarse levels would have searched
    for level in plan_levels(grid, cfg, carry_reach=not (medium or small)):
        current, st = match_level(grid, level, current, cfg, device, nets)
        st.update(template=level.template, radius=level.radius, spacing=level.spacing)
        log.info("dense level x%d: %d nodes, %d matched, %d kept", st["factor"], st["nodes"],
                 st["matched"], st["kept"])
        stats.append(st)
    if prior is None and medium and isinstance(current, NodeField):
        current, st = _no_harm(current, stats, cfg)
        log.info("dense field confidence %.2f (scene-wide %.2f, kept %.2f)", st["field_confidence"],
                 stats[0]["global_confidence"], st["kept_fraction"])
        stats.append(st)
    return current, stats


def _no_harm(field: NodeField, stats: list[dict], cfg: DenseConfig) -> tuple[NodeField, dict]:
    """The medium recipe's field scaled toward zero offsets by the scene-wide translation's
    confidence (``DenseConfig.global_score_ramp``); the node confidences are scaled alike.
    Also reports the first lattice's kept fraction (informational: its chance level depends
    on the lattice size, 0.15-0.29 on 1024 px pairs, 0.39 on a 512 px one)."""
    level = next((st for st in stats if "kept" in st), {})
    kept = level["kept"] / max(1, level["nodes"]) if "kept" in level else 0.0
    c = float(stats[0]["global_confidence"])
    out = NodeField(field.row0, field.col0, field.step, (field.values * c).astype(np.float32),
                    (field.confidence * c).astype(np.float32))
    return out, {"field_confidence": round(c, 4), "kept_fraction": round(kept, 4)}

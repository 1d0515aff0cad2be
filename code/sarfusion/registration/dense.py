"""Dense, training-free registration: coarse-to-fine local matching of oriented-gradient features.

For each pyramid level (a ``factor``-downsampled registration grid) a lattice of nodes covers the
optical footprint. Each node's optical feature template is matched by FFT NCC inside a SAR search
window centred at the node plus the offset predicted by the previous level. Matches are kept when
distinctive (NCC, peak ratio, not on the search border) and consistent with their neighbours;
survivors are interpolated into a smooth field that seeds the next level. The scene is processed
in tiles of ``tile`` level pixels, so memory stays bounded for 13,000 px scenes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field as dc_field

import numpy as np
import torch
from tqdm.auto import tqdm

from sarfusion.registration.align import SceneGrid, to_intensity
from sarfusion.registration.features import oriented_gradients
from sarfusion.registration.field import (NodeField, ZeroField, fill_smooth, reject_far_from_affine,
                                          reject_inconsistent)
from sarfusion.registration.matching import aggregate_maps, find_peaks, ncc_maps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenseLevel:
    """One pyramid level, in pixels of that level: template side, search radius, node spacing."""

    factor: int
    template: int
    radius: int
    spacing: int


@dataclass
class DenseConfig:
    """Settings of the dense mode (no training, no presets needed: one recipe).

    Defaults suit SN9-like pairs (registration grid ~0.45 m, offsets up to ~70 m, smooth over
    ~40-50 m). Levels too coarse for a small image are dropped and finer ones appended (see
    :func:`plan_levels`), so the same defaults work on 256 px patches.
    """

    levels: tuple[DenseLevel, ...] = dc_field(default_factory=lambda: (
        DenseLevel(8, 48, 24, 12),
        DenseLevel(4, 48, 10, 12),
        DenseLevel(2, 64, 6, 16),
    ))
    n_orient: int = 8
    pre_sigma: float = 2.0      # level px, before gradients
    feature_sigma: float = 1.5  # level px, descriptor support
    min_score: float = 0.08     # NCC (real S1 vs S2 peaks are often only 0.1-0.3)
    min_ratio: float = 1.01     # best / second-best (NCC + 1)
    min_valid: float = 0.6      # fraction of a template inside both scenes
    consistency: float = 2.5    # level px: max deviation from the neighbour median
    smooth_nodes: float = 1.0   # sigma, in nodes, of the normalised-convolution smoothing
    max_local_m: float = 20.0  # m: drop matches this far from the scene-wide robust affine
                                # (georeferenced pairs only; 0: off)
    first_fill_free: bool = False  # first level: fill gaps from matches only (no pull to 0);
                                   # off: real S1/S2 pairs with small offsets regress with it
    neutral_fill: bool = False  # off-footprint template/search pixels set to their valid mean
                                # (stops footprint-border locking; regressed the MultiEarth pair)
    pool_radius: int = 0        # nodes: first-level NCC maps pooled over this neighbourhood (0: off;
                                # 2 helps SN9 ~1 px but nudges the SEN1-2 test over its bound)
    pool_sigma: float = 1.0     # nodes: Gaussian weight of the pooling
    tile: int = 768             # level px per processing tile (bounds memory)
    min_level_side: int = 96    # a level whose optical footprint is smaller is skipped
    fine_side: int = 512        # add finer levels until the finest footprint is this large
    device: str | None = None   # None: CUDA when available


def plan_levels(grid: SceneGrid, cfg: DenseConfig) -> list[DenseLevel]:
    """The levels actually run for this grid: too-coarse ones dropped, templates / radii capped to
    the image, finer levels appended for small images (e.g. 256 px SEN1-2 patches)."""
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
        want = max(lv.radius, int(math.ceil(reach / lv.factor))) if not out else lv.radius
        r = max(2, min(want, max(lv.radius, lside // 6) if not out else lside // 16))
        s = max(4, min(lv.spacing, t // 2))
        out.append(DenseLevel(lv.factor, t, r, s))
    if not out:
        lside = side
        out.append(DenseLevel(1, max(8, 2 * (lside // 6)), max(2, lside // 8), max(4, lside // 12)))
    return out


def _features(img: np.ndarray, cfg: DenseConfig) -> np.ndarray:
    return oriented_gradients(img, cfg.n_orient, cfg.pre_sigma, cfg.feature_sigma)


def _neutral_fill(feats: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``feats`` ``(C, h, w)`` with pixels outside the scene footprint set to the mean of the valid
    ones, so they carry no structure: left at 0, the footprint border of the optical template
    correlates with the SAR one and pulls patches near the scene edges onto the shift that
    aligns the two borders instead of the content."""
    if valid.all() or not valid.any():
        return feats
    out = feats.copy()
    out[:, ~valid] = float(feats[:, valid].mean())
    return out


def match_level(grid: SceneGrid, level: DenseLevel, prior, cfg: DenseConfig,
                device: torch.device) -> tuple[NodeField, dict]:
    """Match one level's node lattice; returns the cleaned, filled field and statistics."""
    f, t, r, s = level.factor, level.template, level.radius, level.spacing
    col0, row0, bw, bh = grid.optical_box(f)
    n_r = max(1, (bh - t) // s + 1)
    n_c = max(1, (bw - t) // s + 1)
    # Node centres (level px, corner convention) centred in the footprint.
    r_start = row0 + (bh - (n_r - 1) * s) / 2.0
    c_start = col0 + (bw - (n_c - 1) * s) / 2.0
    node_r = np.round(r_start + s * np.arange(n_r)).astype(np.int64)
    node_c = np.round(c_start + s * np.arange(n_c)).astype(np.int64)
    nr_grid, nc_grid = np.meshgrid(node_r * f, node_c * f, indexing="ij")
    prior_grid = prior.sample(nr_grid.astype(np.float64), nc_grid.astype(np.float64))  # (2, n_r, n_c)
    prior_lvl = np.round(prior_grid / f).astype(np.int64)
    values = np.full((2, n_r, n_c), np.nan, np.float32)
    weight = np.zeros((n_r, n_c), np.float32)
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
        # SAR box: all search windows (template + radius, shifted by the prior).
        sr = rr[:, None] + pr[0]
        sc = cc[None, :] + pr[1]
        s_r0, s_c0 = int(sr.min() - half - r), int(sc.min() - half - r)
        s_box = (s_c0, s_r0, int(sc.max() + half + r - s_c0), int(sr.max() + half + r - s_r0))
        opt_img = to_intensity(grid.read("optical", o_box, f), "optical")
        sar_img = to_intensity(grid.read("sar", s_box, f), "sar")
        if not (opt_img != 0).any() or not (sar_img != 0).any():
            continue
        fo = _features(opt_img, cfg)
        fs = _features(sar_img, cfg)
        vo, vs = opt_img != 0, sar_img != 0
        temps, searches, idx = [], [], []
        for a, row in enumerate(rr):
            for b, col in enumerate(cc):
                tr, tc = row - half - o_r0, col - half - o_c0
                srow = row + pr[0, a, b] - half - r - s_r0
                scol = col + pr[1, a, b] - half - r - s_c0
                frac_o = vo[tr:tr + t, tc:tc + t].mean()
                frac_s = vs[srow + r:srow + r + t, scol + r:scol + r + t].mean()
                if min(frac_o, frac_s) < cfg.min_valid:
                    continue
                tmpl = fo[:, tr:tr + t, tc:tc + t]
                srch = fs[:, srow:srow + t + 2 * r, scol:scol + t + 2 * r]
                if cfg.neutral_fill:
                    tmpl = _neutral_fill(tmpl, vo[tr:tr + t, tc:tc + t])
                    srch = _neutral_fill(srch, vs[srow:srow + t + 2 * r, scol:scol + t + 2 * r])
                temps.append(tmpl)
                searches.append(srch)
                idx.append((i0 + a, j0 + b))
        if not idx:
            continue
        maps = ncc_maps(np.stack(temps), np.stack(searches), device)
        if cfg.pool_radius > 0 and isinstance(prior, ZeroField):
            # Pool NCC evidence over neighbouring nodes before picking peaks (see aggregate_maps).
            lattice = np.full((len(rr), len(cc)) + maps.shape[1:], np.nan, np.float32)
            for k, (i, j) in enumerate(idx):
                lattice[i - i0, j - j0] = maps[k]
            pooled = aggregate_maps(lattice, pr, cfg.pool_radius, cfg.pool_sigma)
            maps = np.stack([pooled[i - i0, j - j0] for i, j in idx])
        res = find_peaks(torch.from_numpy(maps))
        ok = (res.score >= cfg.min_score) & (res.ratio >= cfg.min_ratio) & ~res.on_edge
        rejects["low_score"] += int((res.score < cfg.min_score).sum())
        rejects["ambiguous"] += int((res.ratio < cfg.min_ratio).sum())
        rejects["on_edge"] += int(res.on_edge.sum())
        for k, (i, j) in enumerate(idx):
            if not ok[k]:
                continue
            values[0, i, j] = (prior_lvl[0, i, j] + res.shift[k, 0]) * f
            values[1, i, j] = (prior_lvl[1, i, j] + res.shift[k, 1]) * f
            weight[i, j] = float(res.score[k])
    matched = np.isfinite(values).all(axis=0)
    valid = reject_inconsistent(values, matched, cfg.consistency * f) if matched.sum() >= 3 else matched
    if cfg.max_local_m > 0 and grid.crs_wkt:
        valid = reject_far_from_affine(values, valid, cfg.max_local_m / grid.res)
    stats = {"factor": f, "nodes": int(n_r * n_c), "matched": int(matched.sum()), "kept": int(valid.sum()), **rejects}
    if valid.sum() < 3:
        log.warning("level x%d: only %d consistent matches; keeping the previous estimate", f, valid.sum())
        return NodeField(float(node_r[0] * f), float(node_c[0] * f), float(s * f), prior_grid), stats
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
    return NodeField(float(node_r[0] * f), float(node_c[0] * f), float(s * f), smooth), stats


def dense_field(grid: SceneGrid, cfg: DenseConfig | None = None) -> tuple[NodeField | ZeroField, list[dict]]:
    """Coarse-to-fine dense offsets on the registration grid (dy, dx in grid px) and per-level stats."""
    cfg = cfg or DenseConfig()
    from sarfusion.engine import select_device
    device = select_device(cfg.device)
    current = ZeroField()
    stats = []
    for level in plan_levels(grid, cfg):
        current, st = match_level(grid, level, current, cfg, device)
        st.update(template=level.template, radius=level.radius, spacing=level.spacing)
        log.info("dense level x%d: %d nodes, %d matched, %d kept", st["factor"], st["nodes"],
                 st["matched"], st["kept"])
        stats.append(st)
    return current, stats

"""The SN9 keypoint baseline: heatmap U-Nets, their crop dataset, training and affine inference.

Recipe (the SpaceNet 9 paper's baseline): 256 x 256 crops on the registration grid around tie
points, 2-D Gaussian heatmap labels (sigma 13 px). Two networks, each with an optical and a SAR
encoder and one decoder (sigmoid output), trained with a pixel-weighted MSE that balances the few
keypoint pixels against the background:
- the optical-keypoint net sees a crop jittered around a tie point and marks the optical tie point;
- the SAR-keypoint net sees the crop centred on the optical tie point and marks its SAR counterpart.
Inference: optical keypoints on a uniform 100 m grid, SAR keypoint per crop (argmax + sub-pixel),
affine by RANSAC, offsets from the affine.

Scene alignment comes first (``KeypointConfig.align_radius_m``): one scene-wide translation
(:func:`~sarfusion.registration.dense.global_shift`, training-free), and every SAR crop is centred
on the optical point plus it, in training as at inference. Without it the SAR counterpart of a
tie point lies outside a 128 px crop for 16-54 % of the SN9-like tie points (offsets of 60-110
grid px) and beyond the demo net's ~44 px receptive field for most of the rest, so the nets can
only learn a mean position (docs/registration_notes.md). RANSAC then fits the affine to the
residual matches; with fewer than ``min_inliers`` (or ``min_inlier_fraction`` of the detected
keypoints, or no more than agree with the translation itself) the translation alone is kept.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sarfusion.config import choose_preset, describe
from sarfusion.engine import (Engine, EngineConfig, inference_autocast, save_config, save_torch_atomic, seed_everything,
                              select_device)
from sarfusion.errors import InputError
from sarfusion.registration.align import SceneGrid, scene_grid, to_intensity
from sarfusion.registration.field import AffineField

log = logging.getLogger(__name__)
WEIGHTS_NAME = "keypoints.pt"


@dataclass
class KeypointConfig:
    """Keypoint baseline settings (presets ``demo`` and ``full``)."""

    engine: EngineConfig = dc_field(default_factory=EngineConfig)
    crop: int = 256
    sigma: float = 13.0          # heatmap Gaussian, grid px
    jitter: int = 64             # optical-net crop jitter, grid px
    base_channels: int = 16
    depth: int = 4
    lr: float = 1e-3
    grid_spacing_m: float = 100.0  # inference keypoint spacing (px when not georeferenced)
    ransac_px: float = 12.0      # RANSAC inlier threshold, grid px
    min_peak: float = 0.1        # heat peaks below this are not used
    align_radius_m: float = 64.0  # scene alignment: translation searched over +- this (px when not
                                  # georeferenced); 0: no alignment (SAR crops on the optical point)
    min_inliers: int = 6         # fewer RANSAC inliers ...
    min_inlier_fraction: float = 0.25  # ... or under this fraction of the detected keypoints: no
                                       # consensus, keep the scene translation alone (set a priori)


PRESETS = {
    # demo: 128 px crops and tiny nets so CPU training fits in ~3-5 minutes (200 steps: 288 s on 2
    # busy cores; 40 steps left nets whose consistent but wrong peaks RANSAC fitted: 1.29 x zero);
    # full: the paper's 256 px.
    "demo": KeypointConfig(engine=EngineConfig(max_steps=200, batch_size=4, checkpoint_every=100, log_every=20),
                           crop=128, jitter=32, base_channels=4, depth=3),
    "full": KeypointConfig(engine=EngineConfig(max_steps=20000, batch_size=16, num_workers=4,
                                               checkpoint_every=1000, log_every=50),
                           base_channels=32, depth=4),
}


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DualEncoderUNet(nn.Module):
    """U-Net with one encoder per modality (optical ``(B, 3, H, W)``, SAR ``(B, 1, H, W)``), skip
    features concatenated, one decoder; output ``(B, 1, H, W)`` heatmap in [0, 1]."""

    def __init__(self, optical_channels: int = 3, sar_channels: int = 1, base: int = 16, depth: int = 4):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth)]
        self.enc_o = nn.ModuleList()
        self.enc_s = nn.ModuleList()
        co, cs = optical_channels, sar_channels
        for w in widths:
            self.enc_o.append(_block(co, w))
            self.enc_s.append(_block(cs, w))
            co = cs = w
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c = 2 * widths[-1]
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.dec.append(_block(w + 2 * w, w))
            c = w
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        skips = []
        o, s = optical, sar
        for i, (eo, es) in enumerate(zip(self.enc_o, self.enc_s)):
            if i:
                o, s = nn.functional.max_pool2d(o, 2), nn.functional.max_pool2d(s, 2)
            o, s = eo(o), es(s)
            skips.append(torch.cat([o, s], 1))
        x = skips[-1]
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], 1))
        return torch.sigmoid(self.head(x))


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """MSE where keypoint pixels (target > threshold) weigh as much in total as all the others."""
    pos = (target > threshold).float()
    n_pos = pos.sum().clamp_min(1.0)
    n_neg = (1 - pos).sum().clamp_min(1.0)
    weights = pos * (n_neg / n_pos) + (1 - pos)
    return (weights * (pred - target) ** 2).sum() / (2 * n_neg)


def gaussian_heatmap(size: int, row: float, col: float, sigma: float) -> np.ndarray:
    """``(size, size)`` float32 Gaussian peak (1 at (row, col)); all zero if it is far outside."""
    r = np.arange(size, dtype=np.float32)[:, None]
    c = np.arange(size, dtype=np.float32)[None, :]
    return np.exp(-((r - row) ** 2 + (c - col) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def _normalise(img: np.ndarray) -> np.ndarray:
    """Per-crop standardisation of ``(C, h, w)`` (zero padding stays 0)."""
    out = np.zeros_like(img, dtype=np.float32)
    for b in range(img.shape[0]):
        valid = img[b] != 0
        if valid.sum() > 16:
            v = img[b][valid]
            out[b][valid] = (v - v.mean()) / (v.std() + 1e-6)
    return out


def crop_origin(center_row: float, center_col: float, size: int) -> tuple[int, int]:
    """Grid (row, col) of the top-left pixel of the ``size`` px crop centred at (row, col)."""
    return int(round(center_row)) - size // 2, int(round(center_col)) - size // 2


def read_crop(grid: SceneGrid, center_row: float, center_col: float, size: int,
              sar_shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Optical ``(3, size, size)`` and SAR ``(1, size, size)`` crops of the grid, normalised,
    centred at grid (row, col); the SAR crop at (row, col) + ``sar_shift`` (dy, dx) grid px."""
    r0, c0 = crop_origin(center_row, center_col, size)
    opt = grid.read("optical", (c0, r0, size, size))
    if opt.shape[0] == 1:
        opt = np.repeat(opt, 3, axis=0)
    opt = opt[:3]
    sr0, sc0 = crop_origin(center_row + sar_shift[0], center_col + sar_shift[1], size)
    sar = to_intensity(grid.read("sar", (sc0, sr0, size, size)), "sar")[None]
    return _normalise(opt), _normalise(sar)


def scene_translation(grid: SceneGrid, cfg: KeypointConfig,
                      device: torch.device | None = None) -> tuple[float, float]:
    """The scene alignment: one translation (dy, dx) grid px from optical to SAR
    (:func:`~sarfusion.registration.dense.global_shift` over +-``align_radius_m``); zeros when
    alignment is off or the peak is at chance level (its confidence 0)."""
    if cfg.align_radius_m <= 0:
        return 0.0, 0.0
    from sarfusion.registration.dense import DenseConfig, global_shift
    radius = int(round(cfg.align_radius_m / grid.res)) if grid.crs_wkt else int(cfg.align_radius_m)
    shift, st = global_shift(grid, DenseConfig(), device or select_device(None), radius)
    log.info("keypoint baseline scene alignment: dy %.1f dx %.1f grid px (confidence %.2f)", shift[0], shift[1],
             st["global_confidence"])
    return (float(shift[0]), float(shift[1])) if st["global_confidence"] > 0 else (0.0, 0.0)


def find_triples(data_dir: str | Path) -> list[tuple[Path, Path, Path]]:
    """``(optical, sar, tiepoints)`` for every ``<aoi>_optical_<split>.tif`` with both partners."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError("not a folder", data_dir)
    out = []
    for opt in sorted(data_dir.rglob("*_optical_*.tif")):
        sar = opt.with_name(opt.name.replace("_optical_", "_sar_"))
        tp = opt.with_name(opt.name.replace("_optical_", "_tiepoints_")).with_suffix(".csv")
        if sar.exists() and tp.exists():
            out.append((opt, sar, tp))
    if not out:
        raise InputError("holds no <aoi>_optical_<split>.tif / _sar_ / _tiepoints_ .csv triples", data_dir)
    return out


def read_tiepoints_grid(grid: SceneGrid, tiepoints_path: str | Path) -> np.ndarray:
    """Tie points as grid coordinates ``(N, 4)``: optical row, col, SAR row, col (pixel centres)."""
    from sarfusion.metrics.tiepoints import read_tiepoints
    df = read_tiepoints(tiepoints_path)
    o_r, o_c = grid.optical_to_grid(df["optical_row"].to_numpy() + 0.5, df["optical_col"].to_numpy() + 0.5)
    s_r, s_c = grid.sar_to_grid(df["sar_row"].to_numpy() + 0.5, df["sar_col"].to_numpy() + 0.5)
    return np.column_stack([o_r, o_c, s_r, s_c])


class KeypointCrops(Dataset):
    """Crops around every tie point of every scene, read once into memory.

    Sample: ``{"optical": (3, S, S), "sar": (1, S, S), "heat_sar": (1, S, S)`` (SAR tie point, crop
    centred on the optical tie point), ``"optical_j", "sar_j", "heat_opt"`` (the jittered crop and
    the optical tie point in it)}, float32.
    """

    def __init__(self, triples: list[tuple[Path, Path, Path]], cfg: KeypointConfig, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.samples = []
        size = cfg.crop
        for opt, sar, tp in triples:
            grid = scene_grid(opt, sar)
            pts = read_tiepoints_grid(grid, tp)
            shift = scene_translation(grid, cfg)
            for o_r, o_c, s_r, s_c in pts:
                opt_c, sar_c = read_crop(grid, o_r, o_c, size, shift)
                cr, cc = crop_origin(o_r + shift[0], o_c + shift[1], size)  # the SAR crop's origin
                heat_sar = gaussian_heatmap(size, s_r - 0.5 - cr, s_c - 0.5 - cc, cfg.sigma)
                jr, jc = rng.integers(-cfg.jitter, cfg.jitter + 1, 2)
                opt_j, sar_j = read_crop(grid, o_r + jr, o_c + jc, size, shift)
                jr0, jc0 = crop_origin(o_r + jr, o_c + jc, size)
                heat_opt = gaussian_heatmap(size, o_r - 0.5 - jr0, o_c - 0.5 - jc0, cfg.sigma)
                self.samples.append({k: torch.from_numpy(v.astype(np.float32)) for k, v in {
                    "optical": opt_c, "sar": sar_c, "heat_sar": heat_sar[None],
                    "optical_j": opt_j, "sar_j": sar_j, "heat_opt": heat_opt[None]}.items()})
        log.info("keypoint dataset: %d crops from %d scenes", len(self.samples), len(triples))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = dict(self.samples[i])
        if torch.rand(1).item() < 0.5:  # flips keep heatmaps consistent with their crops
            s = {k: v.flip(-1) for k, v in s.items()}
        return s


def build_models(cfg: KeypointConfig) -> dict[str, nn.Module]:
    return {name: DualEncoderUNet(3, 1, cfg.base_channels, cfg.depth) for name in ("optical_kp", "sar_kp")}


def train_keypoints(data_dir: str | Path, weights_dir: str | Path, preset: str = "demo",
                    config: KeypointConfig | None = None) -> Path:
    """Train both keypoint U-Nets on every tie-point triple under ``data_dir``; returns the weights file
    ``weights_dir/keypoints.pt`` (state dicts + config), with ``config.json`` beside it."""
    cfg = config or choose_preset(PRESETS, preset)
    log.info("keypoint config:\n%s", describe(cfg))
    weights_dir = Path(weights_dir)
    dataset = KeypointCrops(find_triples(data_dir), cfg, seed=cfg.engine.seed)
    seed_everything(cfg.engine.seed)  # initial weights from the seed (torch's own start seed varies)
    models = build_models(cfg)
    optims = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr) for k, m in models.items()}
    engine = Engine(weights_dir / "keypoints_run", cfg.engine, models, optims, task_config=cfg)
    loader = engine.make_loader(dataset, shuffle=True)

    def step(ctx, batch) -> dict:
        out = {}
        with ctx.autocast():
            pred_s = ctx.models["sar_kp"](batch["optical"], batch["sar"])
            loss_s = weighted_mse(pred_s.float(), batch["heat_sar"])
        ctx.backward(loss_s, "sar_kp")
        with ctx.autocast():
            pred_o = ctx.models["optical_kp"](batch["optical_j"], batch["sar_j"])
            loss_o = weighted_mse(pred_o.float(), batch["heat_opt"])
        ctx.backward(loss_o, "optical_kp")
        out["loss_sar"], out["loss_optical"] = loss_s.item(), loss_o.item()
        return out

    metrics = engine.fit(loader, step, desc="keypoints")
    log.info("keypoint training done: %s", metrics)
    path = weights_dir / WEIGHTS_NAME
    save_torch_atomic({"config": cfg, "models": {k: m.state_dict() for k, m in engine.models.items()}}, path)
    save_config(cfg, weights_dir / "keypoints_config.json")
    return path


def load_keypoint_models(weights_dir: str | Path, device: torch.device) -> tuple[dict[str, nn.Module], KeypointConfig]:
    path = Path(weights_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise InputError(f"no keypoint weights ({WEIGHTS_NAME}); train them with 'sarfusion register-train'",
                         weights_dir)
    state = torch.load(path, map_location=device, weights_only=False)
    cfg: KeypointConfig = state["config"]
    models = build_models(cfg)
    for k, m in models.items():
        m.load_state_dict(state["models"][k])
        m.to(device).eval()
    return models, cfg


def _subpixel_peak(heat: np.ndarray) -> tuple[float, float, float]:
    """Argmax of ``(h, w)`` refined by a 3x3 centroid: (row, col, peak value)."""
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    r0, r1, c0, c1 = max(r - 1, 0), min(r + 2, heat.shape[0]), max(c - 1, 0), min(c + 2, heat.shape[1])
    patch = heat[r0:r1, c0:c1].astype(np.float64)
    w = patch.sum()
    rr, cc = np.mgrid[r0:r1, c0:c1]
    return float((patch * rr).sum() / w), float((patch * cc).sum() / w), float(heat[r, c])


def keypoint_affine(grid: SceneGrid, weights_dir: str | Path, device: str | None = None,
                    batch: int = 8) -> tuple[AffineField, dict]:
    """Baseline inference: SAR keypoints for a 100 m grid of optical keypoints, RANSAC affine."""
    dev = select_device(device)
    models, cfg = load_keypoint_models(weights_dir, dev)
    spacing = cfg.grid_spacing_m / grid.res if grid.crs_wkt else cfg.grid_spacing_m
    col0, row0, w, h = grid.optical_box(1)
    n_r, n_c = max(1, int(h // spacing)), max(1, int(w // spacing))
    rows = row0 + (np.arange(n_r) + 0.5) * h / n_r
    cols = col0 + (np.arange(n_c) + 0.5) * w / n_c
    kps = [(r, c) for r in rows for c in cols]
    shift = scene_translation(grid, cfg, dev)
    src, dst, peaks = [], [], []
    with torch.no_grad():
        for i in range(0, len(kps), batch):
            chunk = kps[i:i + batch]
            crops = [read_crop(grid, r, c, cfg.crop, shift) for r, c in chunk]
            o = torch.from_numpy(np.stack([a for a, _ in crops])).to(dev)
            s = torch.from_numpy(np.stack([b for _, b in crops])).to(dev)
            with inference_autocast(dev):
                heat = models["sar_kp"](o, s)[:, 0].float().cpu().numpy()
            for (r, c), hm in zip(chunk, heat):
                pr, pc, peak = _subpixel_peak(hm)
                if peak < cfg.min_peak:
                    continue
                sr0, sc0 = crop_origin(r + shift[0], c + shift[1], cfg.crop)
                src.append((c, r))
                dst.append((sc0 + pc + 0.5, sr0 + pr + 0.5))
                peaks.append(peak)
    translation = np.array([[1.0, 0, shift[1]], [0, 1.0, shift[0]]])
    stats = {"keypoints": len(kps), "detected": len(src), "inliers": 0, "translation": [round(v, 3) for v in shift]}
    if len(src) < 3:
        log.warning("keypoint baseline: only %d SAR keypoints found; using the scene translation", len(src))
        return AffineField(translation), stats
    src_a, dst_a = np.asarray(src, np.float32), np.asarray(dst, np.float32)
    matrix, inliers = cv2.estimateAffine2D(src_a, dst_a, method=cv2.RANSAC,
                                           ransacReprojThreshold=cfg.ransac_px, maxIters=5000,
                                           confidence=0.999, refineIters=10)
    if matrix is not None:
        stats["inliers"] = int(inliers.sum())
    # The scene translation's own support among the keypoints: an affine that no more of them
    # agree with than with the translation is not kept (the simpler model wins ties)
    stats["translation_support"] = int((np.hypot(*(dst_a - src_a - [shift[1], shift[0]]).T) <= cfg.ransac_px).sum())
    if matrix is None or stats["inliers"] < max(cfg.min_inliers, cfg.min_inlier_fraction * len(src),
                                                stats["translation_support"] + 1):
        log.warning("keypoint baseline: %d RANSAC inliers of %d keypoints; keeping the scene translation",
                    stats["inliers"], len(src))
        matrix = translation
        stats["fallback"] = "translation"
    stats["matrix"] = np.asarray(matrix).round(5).tolist()
    return AffineField(np.asarray(matrix, np.float64)), stats

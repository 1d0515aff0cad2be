"""SN6 fused tiles and Pix2Pix colorization of SAR in HSV (SPEC sections 3 and 5).

Fused tiles: :func:`build_fused_tiles` runs :func:`sarfusion.fusion.fuse_tile` over an AOI.

Colorization: the generator sees one channel, the SAR SPAN (textbook, fixed dB -> uint8 scaling of
:func:`sarfusion.fusion.span_to_uint8`, then the 3x3 Lee filter), and predicts the optical
colour. Hue is circular, so it is never regressed as an angle: the two output channels are the
chroma vector ``(S cos H, S sin H)`` (S in [0, 1], H in radians), both in [-1, 1] like the tanh
output. L1 on this vector has no wrap-around at 0/360 deg, and hue errors are automatically
weighted by saturation (a grey pixel's hue does not matter). Decoding: ``S = |v|`` (clipped to
1), ``H = atan2``; the colorized RGB is HSV -> RGB with V = the SPAN input. The Pix2Pix step,
networks and loss come from :mod:`sarfusion.tasks.pix2pix_train` (L1 weight 100, 70x70 PatchGAN).

Weights: ``<weights_dir>/colorizer.pt`` (generator, config, baseline colour, held-out ImageIds)
and ``colorizer_config.json``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from sarfusion.config import choose_preset, describe
from sarfusion.datasets.sn6 import SN6Tile, find_tiles, read_rgb, read_sar
from sarfusion.engine import EngineConfig, inference_autocast
from sarfusion.errors import InputError
from sarfusion.fusion import fuse_tile, lee_filter, optical_valid_mask, span, span_to_uint8
from sarfusion.io.raster import raster_info, write_raster
from sarfusion.preview import write_panel
from sarfusion.tasks.pix2pix_train import Pix2PixNetConfig

log = logging.getLogger(__name__)

WEIGHTS_NAME = "colorizer.pt"
FUSED_DIR = "Fused-RGB-SAR"
SPAN_DIR = "SPAN"
CHROMA_ENCODING = "S*cos(H), S*sin(H)"


@dataclass
class ColorizeConfig:
    """Colorization recipe. ``full`` = the Pix2Pix reference (SPEC section 5); ``demo`` = CPU minutes."""

    preset: str = "demo"
    net: Pix2PixNetConfig = field(default_factory=Pix2PixNetConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    crop: int = 256  # random training crop (px); the reference resizes to 286 and crops 256
    epochs: int | None = None  # when set, max_steps = epochs * batches per epoch
    decay_fraction: float = 0.5  # lr constant, then linear to 0 over this last fraction (100 + 100)
    hflip: bool = True
    min_valid: float = 0.25  # a crop must have this fraction of valid pixels (up to 10 tries)
    holdout_fraction: float = 0.2  # last ImageIds held out for evaluation
    baseline_max_tiles: int = 200  # tiles read to compute the constant mean-colour baseline


PRESETS = {
    "demo": ColorizeConfig(
        preset="demo",
        # measured on 2 shared CPU cores: 64 px crops beat 128 px ones at the same CPU time
        net=Pix2PixNetConfig(num_downs=6, ngf=16, ndf=16, dropout=0.5, lr=2e-4),
        engine=EngineConfig(max_steps=400, batch_size=4, num_workers=0, checkpoint_every=200, log_every=20),
        crop=64,
    ),
    "full": ColorizeConfig(
        preset="full",
        net=Pix2PixNetConfig(),  # U-Net 256 (8 levels, 64 filters), 70x70 PatchGAN, Adam 2e-4, L1 100
        engine=EngineConfig(max_steps=0, batch_size=1, num_workers=4, checkpoint_every=2000, log_every=100),
        crop=256,
        epochs=200,
    ),
}


# ------------------------------------------------------------------------------------------
# tile preparation: pure numpy
# ------------------------------------------------------------------------------------------
def colorizer_input(sar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The generator input of a SAR tile: ``(H, W)`` uint8 (fixed-scaled textbook SPAN, Lee 3x3;
    0 = nodata) and its ``(H, W)`` bool valid mask. Needs no optical tile."""
    s = span(sar, "textbook")
    valid = np.isfinite(s)
    u8 = span_to_uint8(s, valid)
    filtered = lee_filter(np.where(valid, u8.astype(np.float32), np.nan), 3)
    out = np.clip(np.rint(np.nan_to_num(filtered, nan=1.0)), 1, 255).astype(np.uint8)
    out[~valid] = 0
    return out, valid


def rgb_to_chroma(rgb: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` uint8 RGB -> ``(2, H, W)`` float32 chroma ``(S cos H, S sin H)``, S in [0, 1]."""
    hsv = cv2.cvtColor(np.ascontiguousarray(np.moveaxis(rgb, 0, -1)), cv2.COLOR_RGB2HSV).astype(np.float32)
    hue = hsv[..., 0] * (np.pi / 90.0)  # OpenCV hue is 0..179 for 0..358 deg
    sat = hsv[..., 1] / 255.0
    return np.stack([sat * np.cos(hue), sat * np.sin(hue)]).astype(np.float32)


def chroma_to_hs(chroma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(2, H, W)`` chroma -> hue in degrees [0, 360) and saturation in [0, 1], both ``(H, W)``."""
    sat = np.clip(np.hypot(chroma[0], chroma[1]), 0.0, 1.0)
    hue = np.degrees(np.arctan2(chroma[1], chroma[0])) % 360.0
    return hue.astype(np.float32), sat.astype(np.float32)


def chroma_to_rgb(chroma: np.ndarray, value: np.ndarray) -> np.ndarray:
    """HSV -> RGB with H, S from ``(2, H, W)`` chroma and V = ``(H, W)`` uint8 ``value``.

    Returns ``(3, H, W)`` uint8; pixels with ``value == 0`` (nodata) are 0.
    """
    hue, sat = chroma_to_hs(chroma)
    hsv = np.stack([np.rint(hue / 2.0) % 180, np.rint(sat * 255.0), value], axis=-1).astype(np.uint8)
    return np.moveaxis(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), -1, 0).copy()


def prepare_pair(sar: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Training arrays of one tile: ``input`` (H, W) uint8, ``target`` (2, H, W) float32 chroma,
    ``valid`` (H, W) bool (SAR and optical valid)."""
    inp, sar_valid = colorizer_input(sar)
    valid = sar_valid & optical_valid_mask(rgb)
    return {"input": inp, "target": rgb_to_chroma(rgb), "valid": valid}


def colour_error_sums(pred: np.ndarray, true: np.ndarray, value: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Sums for :func:`finish_colour_errors` over the valid pixels of one tile.

    ``pred``, ``true``: ``(2, H, W)`` chroma; ``value``: ``(H, W)`` uint8 V used to render both
    (the fused truth's V, so only hue and saturation differ).
    """
    hue_p, sat_p = chroma_to_hs(pred)
    hue_t, sat_t = chroma_to_hs(true)
    dh = np.abs(hue_p - hue_t) % 360.0
    dh = np.minimum(dh, 360.0 - dh)
    rgb_p = chroma_to_rgb(pred, value).astype(np.int16)
    rgb_t = chroma_to_rgb(true, value).astype(np.int16)
    v = valid
    return {
        "n": float(v.sum()),
        "chroma_l1": float(np.abs(pred - true)[:, v].sum() / 2.0),
        "rgb_abs": float(np.abs(rgb_p - rgb_t)[:, v].sum() / 3.0),
        "sat_abs": float(np.abs(sat_p - sat_t)[v].sum()),
        "hue_w": float((dh * sat_t)[v].sum()),
        "sat_w": float(sat_t[v].sum()),
    }


def finish_colour_errors(sums: dict[str, float]) -> dict[str, float]:
    """Means: ``chroma_l1`` (training loss scale), ``rgb_mae`` (0..255, V shared), ``sat_mae``,
    ``hue_err_deg`` (circular hue error weighted by the true saturation)."""
    n = max(sums.get("n", 0.0), 1.0)
    return {
        "chroma_l1": sums.get("chroma_l1", 0.0) / n,
        "rgb_mae": sums.get("rgb_abs", 0.0) / n,
        "sat_mae": sums.get("sat_abs", 0.0) / n,
        "hue_err_deg": sums.get("hue_w", 0.0) / max(sums.get("sat_w", 0.0), 1e-9),
    }


def _add(acc: dict[str, float], new: dict[str, float]) -> None:
    for k, v in new.items():
        acc[k] = acc.get(k, 0.0) + v


# ------------------------------------------------------------------------------------------
# fused tiles
# ------------------------------------------------------------------------------------------
def _check_pair(tile: SN6Tile) -> tuple[np.ndarray, np.ndarray]:
    sar = read_sar(tile.sar_path)
    rgb = read_rgb(tile.rgb_path)
    if sar.shape[1:] != rgb.shape[1:]:
        raise InputError(f"is {rgb.shape[2]}x{rgb.shape[1]} px but its SAR tile is {sar.shape[2]}x{sar.shape[1]}",
                         tile.rgb_path)
    return sar, rgb


def build_fused_tiles(aoi_dir: str | Path, out_dir: str | Path, mode: str = "textbook",
                      preview_dir: str | Path | None = None) -> dict[str, Any]:
    """Fuse every SAR/PS-RGB pair of an SN6 AOI.

    Writes ``out_dir/Fused-RGB-SAR/<name>.tif`` (3-band uint8 RGB) and ``out_dir/SPAN/<name>.tif``
    (1-band uint8, the fused V), ``<name>`` being the SAR name with ``SAR-Intensity`` replaced by
    ``Fused-RGB-SAR`` / ``SPAN``; georeferenced like the SAR tile, nodata 0. Every tile is checked
    (4 SAR bands, a PS-RGB partner, same size) before anything is written; files are written
    atomically, so existing outputs are never half-overwritten.

    Returns ``{"tiles", "fused_dir", "span_dir", "valid_fraction", "seconds"}``.
    """
    from tqdm.auto import tqdm

    tiles = find_tiles(aoi_dir, require_optical=True)
    for tile in tiles:  # validate all inputs before writing anything
        sar_info, rgb_info = raster_info(tile.sar_path), raster_info(tile.rgb_path)
        if sar_info.count != 4:
            raise InputError(f"has {sar_info.count} bands, expected 4 (HH, HV, VH, VV)", tile.sar_path)
        if rgb_info.count != 3:
            raise InputError(f"has {rgb_info.count} bands, expected 3 (R, G, B)", tile.rgb_path)
    out_dir = Path(out_dir)
    fused_dir, span_dir = out_dir / FUSED_DIR, out_dir / SPAN_DIR
    fused_dir.mkdir(parents=True, exist_ok=True)
    span_dir.mkdir(parents=True, exist_ok=True)
    t0, valid_px, total_px = time.time(), 0, 0
    for tile in tqdm(tiles, desc="fuse", mininterval=1.0):
        sar, rgb = _check_pair(tile)
        fused, span_u8, valid = fuse_tile(sar, rgb, mode)
        info = raster_info(tile.sar_path)
        name = tile.sar_path.name
        write_raster(fused_dir / name.replace("SAR-Intensity", FUSED_DIR), fused, info.geotransform, info.crs_wkt, 0,
                     cog=True)
        write_raster(span_dir / name.replace("SAR-Intensity", SPAN_DIR), span_u8, info.geotransform, info.crs_wkt, 0,
                     cog=True)
        valid_px += int(valid.sum())
        total_px += valid.size
        if preview_dir is not None:
            write_panel(Path(preview_dir) / f"fused_{tile.image_id}.png", [rgb, span_u8, fused],
                        ["optical", "SPAN (matched, Lee)", "fused"])
    return {"tiles": len(tiles), "fused_dir": str(fused_dir), "span_dir": str(span_dir),
            "valid_fraction": valid_px / max(total_px, 1), "seconds": round(time.time() - t0, 2)}


# ------------------------------------------------------------------------------------------
# torch parts (imported lazily so `sarfusion --help` stays fast)
# ------------------------------------------------------------------------------------------
def split_holdout(tiles: Sequence[SN6Tile], fraction: float) -> tuple[list[SN6Tile], list[SN6Tile]]:
    """Deterministic split: the last ``ceil(fraction * n)`` tiles by ImageId are held out (at
    least one when there are two or more tiles)."""
    tiles = sorted(tiles, key=lambda t: t.image_id)
    n_hold = min(len(tiles) - 1, max(1, math.ceil(fraction * len(tiles)))) if len(tiles) > 1 else 0
    return tiles[: len(tiles) - n_hold], tiles[len(tiles) - n_hold:]


def _padded(size: int, multiple: int) -> int:
    return int(math.ceil(size / multiple) * multiple)


def _make_crop_dataset(tiles: Sequence[SN6Tile], cfg: ColorizeConfig):
    import torch
    from torch.utils.data import Dataset

    class CropDataset(Dataset):
        """Random ``crop`` px crops (input, target, weight in the Pix2Pix batch format).

        Small AOIs are prepared once and kept in memory (per loader process); large ones are read
        by window, ``crop`` px at a time, so a 900 px tile is never prepared whole for one crop.
        """

        def __init__(self) -> None:
            self.tiles = list(tiles)
            self.sizes = []
            for t in self.tiles:
                si, ri = raster_info(t.sar_path), raster_info(t.rgb_path)
                if (si.height, si.width) != (ri.height, ri.width):
                    raise InputError(f"is {ri.width}x{ri.height} px but its SAR tile is {si.width}x{si.height}",
                                     t.rgb_path)
                self.sizes.append((si.height, si.width))
            self.cache: dict[int, dict[str, np.ndarray]] = {}
            self.use_cache = sum(h * w for h, w in self.sizes) <= 64 * 900 * 900

        def __len__(self) -> int:
            return len(self.tiles)

        def _whole(self, i: int) -> dict[str, np.ndarray]:
            if i in self.cache:
                return self.cache[i]
            arrays = prepare_pair(*_check_pair(self.tiles[i]))
            if self.use_cache:
                self.cache[i] = arrays
            return arrays

        def _crop(self, i: int) -> dict[str, np.ndarray]:
            """A ``crop`` px window with >= ``min_valid`` valid pixels (the last of 10 tries otherwise);
            torch RNG, seeded per loader process by the DataLoader, so reproducible."""
            c = cfg.crop
            h, w = self.sizes[i]
            by_window = not self.use_cache and h >= c and w >= c
            whole = None if by_window else self._whole(i)
            for _ in range(10):
                r = int(torch.randint(0, max(h - c, 0) + 1, ()).item())
                q = int(torch.randint(0, max(w - c, 0) + 1, ()).item())
                if by_window:
                    tile = self.tiles[i]
                    a = prepare_pair(read_sar(tile.sar_path, (q, r, c, c)), read_rgb(tile.rgb_path, (q, r, c, c)))
                else:
                    a = {"input": whole["input"][r:r + c, q:q + c], "target": whole["target"][:, r:r + c, q:q + c],
                         "valid": whole["valid"][r:r + c, q:q + c]}
                if a["valid"].mean() * a["valid"].size >= cfg.min_valid * c * c:
                    break
            return a

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            a = self._crop(i)
            c = cfg.crop
            h, w = a["valid"].shape  # smaller than crop only when the tile is: pad as nodata
            x = torch.full((1, c, c), -1.0)
            y = torch.zeros((2, c, c))
            m = torch.zeros((1, c, c))
            x[0, :h, :w] = torch.from_numpy(a["input"].astype(np.float32) / 127.5 - 1.0)
            y[:, :h, :w] = torch.from_numpy(np.ascontiguousarray(a["target"]))
            m[0, :h, :w] = torch.from_numpy(a["valid"].astype(np.float32))
            if cfg.hflip and bool(torch.rand(()) < 0.5):
                x, y, m = x.flip(-1), y.flip(-1), m.flip(-1)
            return {"input": x, "target": y * m, "weight": m}

    return CropDataset()


def _baseline_chroma(tiles: Sequence[SN6Tile], max_tiles: int) -> list[float]:
    """The training set's mean chroma ``(S cos H, S sin H)`` over valid pixels: the constant colour."""
    step = max(1, len(tiles) // max_tiles)
    total, n = np.zeros(2, np.float64), 0
    for tile in list(tiles)[::step]:
        a = prepare_pair(*_check_pair(tile))
        total += a["target"][:, a["valid"]].sum(axis=1)
        n += int(a["valid"].sum())
    if n == 0:
        raise InputError("the training tiles have no valid (SAR and optical) pixels", tiles[0].sar_path.parent)
    return (total / n).tolist()


def train_colorizer(aoi_dir: str | Path, weights_dir: str | Path, preset: str = "demo",
                    work_dir: str | Path | None = None, config: ColorizeConfig | None = None) -> Path:
    """Train the SPAN -> chroma Pix2Pix on an SN6 training AOI (SAR-Intensity + PS-RGB).

    The last ``holdout_fraction`` of tiles (by ImageId) are held out for
    :func:`evaluate_colorizer`. Checkpoints go to ``work_dir`` (default
    ``<weights_dir>/runs/colorize_<preset>``) and resume automatically. Returns the path of
    ``<weights_dir>/colorizer.pt``.
    """
    import torch

    from sarfusion.engine import Engine, save_config, save_torch_atomic
    from sarfusion.tasks.pix2pix_train import build_pix2pix, make_pix2pix_step

    cfg = config if config is not None else choose_preset(PRESETS, preset)
    if cfg.crop % 2 ** cfg.net.num_downs:
        raise ValueError(f"crop {cfg.crop} must be a multiple of 2**num_downs = {2 ** cfg.net.num_downs}")
    tiles = find_tiles(aoi_dir, require_optical=True)
    train, holdout = split_holdout(tiles, cfg.holdout_fraction)
    if not train:
        raise InputError("needs at least one training tile", aoi_dir)
    if cfg.epochs:
        per_epoch = max(1, len(train) // cfg.engine.batch_size)
        cfg.engine.max_steps = cfg.epochs * per_epoch
    log.info("colorize config:\n%s", describe(cfg))
    log.info("%d training tiles, %d held out", len(train), len(holdout))

    weights_dir = Path(weights_dir)
    run_dir = Path(work_dir) if work_dir is not None else weights_dir / "runs" / f"colorize_{cfg.preset}"
    old = run_dir / "config.json"
    if old.exists() and json.loads(old.read_text()) != json.loads(json.dumps(asdict(cfg), default=str)):
        raise InputError("holds a run with a different config; remove it or pass another work dir", run_dir)

    models, optimizers = build_pix2pix(1, 2, cfg.net, seed=cfg.engine.seed)
    decay_start = int(cfg.engine.max_steps * (1.0 - cfg.decay_fraction))
    decay_len = max(1, cfg.engine.max_steps - decay_start)

    def lr_factor(step: int) -> float:
        return 1.0 if step < decay_start else max(0.0, (cfg.engine.max_steps - step) / decay_len)

    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lr_factor) for k, o in optimizers.items()}
    engine = Engine(run_dir, cfg.engine, models, optimizers, schedulers, task_config=cfg)
    loader = engine.make_loader(_make_crop_dataset(train, cfg), shuffle=True)
    t0 = time.time()
    last = engine.fit(loader, make_pix2pix_step(cfg.net), desc="colorize")
    log.info("trained %d steps in %.1f s: %s", engine.step, time.time() - t0, last)
    if not engine.is_main:
        return weights_dir / WEIGHTS_NAME

    state = {
        "config": asdict(cfg),
        "in_channels": 1,
        "out_channels": 2,
        "encoding": CHROMA_ENCODING,
        "generator": engine.unwrap("G").state_dict(),
        "baseline_chroma": _baseline_chroma(train, cfg.baseline_max_tiles),
        "train_ids": [t.image_id for t in train],
        "holdout_ids": [t.image_id for t in holdout],
        "train_seconds": round(time.time() - t0, 2),
        "last_losses": last,
    }
    weights_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, weights_dir / "colorizer_config.json")
    return save_torch_atomic(state, weights_dir / WEIGHTS_NAME)


def load_colorizer(weights_dir: str | Path, device: Any = None):
    """``(generator in eval mode, state dict of colorizer.pt)``."""
    import torch

    from sarfusion.engine import select_device
    from sarfusion.models.pix2pix import UNetGenerator

    path = Path(weights_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise InputError(f"no {WEIGHTS_NAME} here; run 'sarfusion colorize train' first", weights_dir)
    state = torch.load(path, map_location="cpu", weights_only=False)
    net = state["config"]["net"]
    gen = UNetGenerator(state["in_channels"], state["out_channels"], net["num_downs"], net["ngf"], net["dropout"])
    gen.load_state_dict(state["generator"])
    gen.to(select_device(device if device is None else str(device))).eval()
    return gen, state


def _make_inference_dataset(paths: Sequence[Path]):
    import torch
    from torch.utils.data import Dataset

    class InferenceTiles(Dataset):
        """Whole SAR tiles -> generator input in [-1, 1], with the meta needed to write back."""

        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> dict[str, Any]:
            inp, valid = colorizer_input(read_sar(paths[i]))
            return {"input": torch.from_numpy(inp), "meta": {"index": i}}

    return InferenceTiles()


def _collate_padded(multiple: int):
    import torch

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        h = _padded(max(it["input"].shape[0] for it in items), multiple)
        w = _padded(max(it["input"].shape[1] for it in items), multiple)
        batch = torch.full((len(items), 1, h, w), -1.0)  # -1 = nodata
        for k, it in enumerate(items):
            x = it["input"]
            batch[k, 0, : x.shape[0], : x.shape[1]] = x.float() / 127.5 - 1.0
        return {"input": batch, "inputs_u8": [it["input"].numpy() for it in items],
                "meta": [it["meta"] for it in items]}

    return collate


def _predict_batches(gen, paths: Sequence[Path], batch_size: int, num_workers: int):
    """Yield ``(index, input_u8 (H, W), chroma (2, H, W) float32)`` per tile, batched on the device."""
    import torch
    from torch.utils.data import DataLoader

    device = next(gen.parameters()).device
    loader = DataLoader(_make_inference_dataset(paths), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate_padded(2 ** gen.num_downs),
                        pin_memory=device.type == "cuda", persistent_workers=False)
    with torch.inference_mode():
        for batch in loader:
            x = batch["input"].to(device, non_blocking=True)
            with inference_autocast(device):
                out = gen(x)
            out = out.float().cpu().numpy()
            for k, meta in enumerate(batch["meta"]):
                u8 = batch["inputs_u8"][k]
                yield meta["index"], u8, out[k, :, : u8.shape[0], : u8.shape[1]]


def _check_sar_paths(sar_paths: Sequence[str | Path]) -> list[Path]:
    paths = [Path(p) for p in sar_paths]
    if not paths:
        raise InputError("no SAR tiles given")
    for p in paths:
        info = raster_info(p)
        if info.count != 4:
            raise InputError(f"has {info.count} bands, expected 4 (HH, HV, VH, VV)", p)
    return paths


def colorized_name(sar_path: Path) -> str:
    """Output name: ``SAR-Intensity`` -> ``Colorized`` (or a ``_Colorized`` suffix)."""
    name = sar_path.name
    return name.replace("SAR-Intensity", "Colorized") if "SAR-Intensity" in name else f"{sar_path.stem}_Colorized.tif"


def colorize_tiles(sar_paths: Sequence[str | Path], weights_dir: str | Path, out_dir: str | Path,
                   batch_size: int = 8, num_workers: int = 2, preview_dir: str | Path | None = None,
                   device: str | None = None, max_previews: int | None = None) -> list[Path]:
    """Colorize SAR-Intensity tiles: georeferenced 3-band uint8 RGB Cloud-Optimized GeoTIFFs in ``out_dir``.
    ``max_previews``: panels for the first tiles only (default: every tile).

    Batched inference, tiles read and prepared by ``num_workers`` loader processes. Output names
    replace ``SAR-Intensity`` by ``Colorized``; nodata 0; same geotransform and CRS as the input.
    """
    from tqdm.auto import tqdm

    paths = _check_sar_paths(sar_paths)
    gen, _ = load_colorizer(weights_dir, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = [Path()] * len(paths)
    for i, u8, chroma in tqdm(_predict_batches(gen, paths, batch_size, num_workers), total=len(paths),
                              desc="colorize", mininterval=1.0):
        rgb = chroma_to_rgb(chroma, u8)
        info = raster_info(paths[i])
        written[i] = write_raster(out_dir / colorized_name(paths[i]), rgb, info.geotransform, info.crs_wkt, 0,
                                  cog=True)
        if preview_dir is not None and (max_previews is None or i < max_previews):
            write_panel(Path(preview_dir) / f"colorized_{paths[i].stem}.png", [u8, rgb], ["SPAN input", "colorized"])
    return written


def evaluate_colorizer(aoi_dir: str | Path, weights_dir: str | Path, image_ids: Sequence[str] | None = None,
                       batch_size: int = 8, num_workers: int = 0, preview_dir: str | Path | None = None,
                       device: str | None = None, max_previews: int = 8) -> dict[str, Any]:
    """Model vs the constant mean-colour baseline on held-out tiles (default: those saved at training).

    Both are rendered with V = the fused truth's V, so only hue and saturation are compared.
    Returns ``{"tiles", "pixels", "model": {...}, "baseline": {...}, "beats_baseline"}`` with
    ``chroma_l1``, ``rgb_mae`` (0..255), ``sat_mae`` and ``hue_err_deg`` (saturation-weighted
    circular hue error) each; ``beats_baseline``: lower RGB MAE and lower hue error.
    """
    gen, state = load_colorizer(weights_dir, device)
    ids = list(image_ids) if image_ids is not None else list(state["holdout_ids"])
    by_id = {t.image_id: t for t in find_tiles(aoi_dir, require_optical=True)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InputError(f"has no tile {missing[0]} (of {len(missing)} held-out ImageIds)", aoi_dir)
    if not ids:
        raise InputError("no held-out tiles to evaluate", aoi_dir)
    tiles = [by_id[i] for i in ids]
    base = np.asarray(state["baseline_chroma"], np.float32)[:, None, None]
    model_sums: dict[str, float] = {}
    base_sums: dict[str, float] = {}
    for i, _, chroma in _predict_batches(gen, [t.sar_path for t in tiles], batch_size, num_workers):
        sar, rgb = _check_pair(tiles[i])
        fused, fused_v, valid = fuse_tile(sar, rgb)
        true = rgb_to_chroma(rgb)
        valid &= np.isfinite(chroma).all(axis=0)
        _add(model_sums, colour_error_sums(chroma, true, fused_v, valid))
        _add(base_sums, colour_error_sums(np.broadcast_to(base, true.shape), true, fused_v, valid))
        if preview_dir is not None and i < max_previews:
            colorized = chroma_to_rgb(chroma, fused_v)
            write_panel(Path(preview_dir) / f"colorized_vs_fused_{tiles[i].image_id}.png",
                        [fused_v, colorized, fused, chroma_to_rgb(np.broadcast_to(base, true.shape), fused_v)],
                        ["SPAN (V)", "colorized", "fused truth", "mean-colour baseline"])
    model, baseline = finish_colour_errors(model_sums), finish_colour_errors(base_sums)
    return {"tiles": len(tiles), "pixels": int(model_sums.get("n", 0)), "model": model, "baseline": baseline,
            "beats_baseline": bool(model["rgb_mae"] < baseline["rgb_mae"]
                                   and model["hue_err_deg"] < baseline["hue_err_deg"])}

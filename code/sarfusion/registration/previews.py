"""Registration previews: offset vectors over the optical scene, and optical / SAR checkerboards
before and after warping the SAR by the offsets (a good result makes edges continue across
the checker squares)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sarfusion.io.raster import read_raster
from sarfusion.preview import draw_offsets, stretch_u8, write_png
from sarfusion.registration.align import SceneGrid, to_intensity

PREVIEW_SIDE = 1024


def write_previews(grid: SceneGrid, offsets_path: str | Path, preview_dir: str | Path, name: str) -> list[Path]:
    """Write ``<name>_offsets.png`` and ``<name>_checker.png`` (before | after) into ``preview_dir``."""
    preview_dir = Path(preview_dir)
    preview_dir.mkdir(parents=True, exist_ok=True)
    col0, row0, w, h = grid.optical_box(1)
    factor = max(1, int(np.ceil(max(w, h) / PREVIEW_SIDE)))
    box = grid.optical_box(factor)
    opt_i = to_intensity(grid.read("optical", box, factor), "optical")
    sar_i = to_intensity(grid.read("sar", box, factor), "sar")
    opt, sar = stretch_u8(opt_i, opt_i != 0), stretch_u8(sar_i, sar_i != 0)
    ph, pw = opt.shape
    # Offsets at the preview pixels, converted to preview pixels.
    info = grid.optical
    rows = np.clip(((np.arange(ph) + 0.5) * factor + box[1] * factor - row0) * info.height / h, 0, info.height - 1)
    cols = np.clip(((np.arange(pw) + 0.5) * factor + box[0] * factor - col0) * info.width / w, 0, info.width - 1)
    step_r, step_c = max(1, int(info.height // ph)), max(1, int(info.width // pw))
    off = read_raster(offsets_path, out_shape=(-(-info.height // step_r), -(-info.width // step_c)))
    ri = np.clip((rows / step_r).astype(int), 0, off.shape[1] - 1)
    ci = np.clip((cols / step_c).astype(int), 0, off.shape[2] - 1)
    dx = off[0][np.ix_(ri, ci)] / grid.optical_scale[0] / factor
    dy = off[1][np.ix_(ri, ci)] / grid.optical_scale[1] / factor
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    warped = cv2.remap(sar, xx + dx.astype(np.float32), yy + dy.astype(np.float32), cv2.INTER_LINEAR)
    cell = max(16, min(ph, pw) // 8)
    checker = ((yy // cell + xx // cell) % 2).astype(bool)
    before = np.where(checker, opt, sar).astype(np.uint8)
    after = np.where(checker, opt, warped).astype(np.uint8)
    sep = np.full((ph, 8), 255, np.uint8)
    checker_png = write_png(preview_dir / f"{name}_checker.png", np.hstack([before, sep, after]), max_side=10_000)
    step = max(8, min(ph, pw) // 24)
    mag = np.hypot(dx, dy)
    # Tiny offsets are magnified so the arrows stay visible; the label says by how much.
    scale = 1.0 if mag.max() > step / 4 else step / 4 / max(mag.max(), 1e-6)
    vec = draw_offsets(cv2.cvtColor(opt, cv2.COLOR_GRAY2BGR), dx * scale, dy * scale, step,
                       thickness=1, tip_length=0.3)
    cv2.putText(vec, f"offsets x{scale:.2g} (max {mag.max() * factor:.1f} grid px)", (5, 15),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
    vec_png = write_png(preview_dir / f"{name}_offsets.png", vec, max_side=10_000)
    return [vec_png, checker_png]


def _optical_at_preview_size(optical_path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
    """The optical scene read at preview size (at most ``PREVIEW_SIDE`` px a side, from its
    overviews where it has them), stretched to uint8 ``(h, w)``, and that ``(h, w)``."""
    from sarfusion.io.raster import raster_info

    info = raster_info(optical_path)
    scale = min(1.0, PREVIEW_SIDE / max(info.width, info.height))
    shape = (max(1, round(info.height * scale)), max(1, round(info.width * scale)))
    opt_i = to_intensity(read_raster(optical_path, out_shape=shape, dtype=np.float32), "optical")
    return stretch_u8(opt_i, opt_i != 0), shape


def write_aligned_preview(optical_path: str | Path, aligned_path: str | Path, preview_dir: str | Path,
                          name: str) -> Path:
    """``<name>_aligned.png``: the optical, the aligned SAR product and their checkerboard, read at
    preview size from the files themselves (the COG's overviews), so it shows what was written."""
    from sarfusion.preview import write_panel

    opt, shape = _optical_at_preview_size(optical_path)
    sar_i = to_intensity(read_raster(aligned_path, out_shape=shape, dtype=np.float32), "sar")
    sar = stretch_u8(sar_i, sar_i != 0)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    cell = max(16, min(shape) // 8)
    checker = np.where(((yy // cell + xx // cell) % 2).astype(bool), opt, sar).astype(np.uint8)
    return write_panel(Path(preview_dir) / f"{name}_aligned.png", [opt, sar, checker],
                       ["optical", "aligned SAR (product)", "checkerboard"], max_side=PREVIEW_SIDE // 2)


def write_confidence_preview(optical_path: str | Path, confidence_path: str | Path, preview_dir: str | Path,
                             name: str) -> Path:
    """``<name>_confidence.png``: the optical, the confidence map (0 black .. 1 white) and the optical
    tinted by it (green where local matches decided the offsets, red where they fell back toward
    the scene-wide translation or zero), read at preview size from the files themselves."""
    from sarfusion.preview import write_panel

    opt, shape = _optical_at_preview_size(optical_path)
    conf = np.clip(read_raster(confidence_path, out_shape=shape, dtype=np.float32)[0], 0.0, 1.0)
    grey = opt.astype(np.float32)
    tint = np.stack([grey * 0.5, grey * 0.5 + 127 * conf, grey * 0.5 + 127 * (1 - conf)], axis=-1)  # BGR
    return write_panel(Path(preview_dir) / f"{name}_confidence.png",
                       [opt, (conf * 255).astype(np.uint8), np.clip(tint, 0, 255).astype(np.uint8)],
                       ["optical", f"confidence (mean {conf.mean():.2f})", "optical tinted by confidence"],
                       max_side=PREVIEW_SIDE // 2)

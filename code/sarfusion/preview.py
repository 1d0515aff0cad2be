"""PNG previews for every stage: SAR composites, footprints over SAR, offset vectors, side-by-side
panels. All images here are cv2-ready ``(rows, cols, 3)`` uint8 BGR unless stated."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import shapely

from sarfusion.io.atomic import atomic_path


def stretch_u8(band: np.ndarray, valid: np.ndarray | None = None, low: float = 2, high: float = 98) -> np.ndarray:
    """(rows, cols) float on any scale -> uint8, linear between the valid ``low``/``high`` percentiles;
    invalid pixels (default: NaN and 0) become 0."""
    band = np.asarray(band, dtype=np.float32)
    if valid is None:
        valid = np.isfinite(band) & (band != 0)
    v = band[valid]
    lo, hi = (np.percentile(v, [low, high]) if v.size else (0.0, 1.0))
    out = np.clip((np.nan_to_num(band) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    out[~valid] = 0
    return out


def sar_composite(sar: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(B, rows, cols) SAR on any dB-like scale -> (rows, cols, 3) uint8 BGR (R=HH, G=HV, B=VV for
    4 bands; grey for 1 band), each band stretched between its valid 2nd and 98th percentiles."""
    bands = [0, 1, 3] if sar.shape[0] == 4 else [0, 0, 0]
    if valid is None:
        valid = np.ones(sar.shape[1:], bool)
    out = np.zeros(sar.shape[1:] + (3,), np.uint8)
    for i, b in enumerate(bands):
        out[..., 2 - i] = stretch_u8(sar[b], valid)
    return out


def rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    """(3, rows, cols) uint8 RGB -> (rows, cols, 3) BGR for cv2."""
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)[..., ::-1])


def draw_polygons(image_bgr: np.ndarray, polygons: Sequence[shapely.Geometry], color=(0, 255, 255)) -> np.ndarray:
    """Outline pixel-space polygons on a copy of ``image_bgr``."""
    out = image_bgr.copy()
    for g in polygons:
        if g is None or g.is_empty:
            continue
        for part in getattr(g, "geoms", [g]):
            pts = np.round((np.asarray(part.exterior.coords) - 0.5) * 16).astype(np.int32)
            cv2.polylines(out, [pts], True, color, 1, lineType=cv2.LINE_AA, shift=4)
    return out


def draw_offsets(image_bgr: np.ndarray, dx: np.ndarray, dy: np.ndarray, step: int = 128,
                 color=(0, 0, 255), thickness: int = 2, tip_length: float = 0.15) -> np.ndarray:
    """Arrows from optical pixels to their SAR counterparts (offsets in pixels), every ``step`` px."""
    out = image_bgr.copy()
    for r in range(step // 2, dx.shape[0], step):
        for c in range(step // 2, dx.shape[1], step):
            tip = (int(round(c + dx[r, c])), int(round(r + dy[r, c])))
            cv2.arrowedLine(out, (c, r), tip, color, thickness, tipLength=tip_length)
    return out


def write_png(path: str | Path, image_bgr: np.ndarray, max_side: int = 1600) -> Path:
    """Write a PNG, downscaled so its longer side is at most ``max_side``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = image_bgr.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        image_bgr = cv2.resize(image_bgr, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image_bgr):
            raise OSError(f"{path}: PNG could not be written")
    return path


def to_bgr(img: np.ndarray) -> np.ndarray:
    """(3, rows, cols) RGB or (rows, cols) grey uint8 -> (rows, cols, 3) BGR."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return rgb_to_bgr(img)


def write_panel(path: str | Path, images: Sequence[np.ndarray], labels: Sequence[str], max_side: int = 512) -> Path:
    """A labelled side-by-side PNG of uint8 images (RGB ``(3, H, W)``, grey ``(H, W)`` or BGR ``(H, W, 3)``)."""
    tiles = []
    for img, label in zip(images, labels):
        bgr = img if (img.ndim == 3 and img.shape[2] == 3) else to_bgr(img)
        scale = min(1.0, max_side / max(bgr.shape[:2]))
        if scale < 1.0:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        bgr = cv2.copyMakeBorder(bgr, 22, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(bgr, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(bgr)
    height = max(t.shape[0] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
             for t in tiles]
    return write_png(path, cv2.hconcat(tiles), max_side=10_000)

"""PNG previews of synthetic scenes: optical, SAR composite, label overlay, offset vectors."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import shapely


def sar_composite(sar: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(B, rows, cols) SAR on any dB-like scale -> (rows, cols, 3) uint8 BGR (R=HH, G=HV, B=VV for
    4 bands; grey for 1 band), each band stretched between its valid 2nd and 98th percentiles."""
    bands = [0, 1, 3] if sar.shape[0] == 4 else [0, 0, 0]
    if valid is None:
        valid = np.ones(sar.shape[1:], bool)
    out = np.zeros(sar.shape[1:] + (3,), np.uint8)
    for i, b in enumerate(bands):
        v = sar[b][valid]
        lo, hi = (np.percentile(v, [2, 98]) if v.size else (0.0, 1.0))
        out[..., 2 - i] = np.clip((sar[b] - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    out[~valid] = 0
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
                 color=(0, 0, 255)) -> np.ndarray:
    """Arrows from optical pixels to their SAR counterparts (offsets in pixels), every ``step`` px."""
    out = image_bgr.copy()
    for r in range(step // 2, dx.shape[0], step):
        for c in range(step // 2, dx.shape[1], step):
            tip = (int(round(c + dx[r, c])), int(round(r + dy[r, c])))
            cv2.arrowedLine(out, (c, r), tip, color, 2, tipLength=0.15)
    return out


def write_png(path: str | Path, image_bgr: np.ndarray, max_side: int = 1600) -> Path:
    """Write a PNG, downscaled so its longer side is at most ``max_side``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = image_bgr.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        image_bgr = cv2.resize(image_bgr, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), image_bgr)
    return path

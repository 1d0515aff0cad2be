"""Known smooth warps, for tests and benchmarks: a random smooth offset field, an image warped by
it, and the exact offsets (in the SPEC convention) that undo it."""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def smooth_field(height: int, width: int, amplitude: float, corr_px: float, seed: int = 0,
                 affine: tuple[float, float, float, float, float, float] | None = None) -> np.ndarray:
    """A smooth random offset field ``(2, height, width)`` float32 (dy, dx) in pixels.

    Gaussian-filtered white noise with correlation length ``corr_px``, scaled so the largest
    component magnitude is ``amplitude``; plus an optional affine part
    ``(ty, tx, a_yy, a_yx, a_xy, a_xx)`` (offset = t + A @ (row - h/2, col - w/2)).
    """
    rng = np.random.default_rng(seed)
    # Build coarse then upsample: cheap for big fields, same smoothness.
    step = max(1, int(corr_px // 4))
    ch, cw = height // step + 3, width // step + 3
    noise = rng.standard_normal((2, ch, cw))
    coarse = np.stack([ndimage.gaussian_filter(n, corr_px / step, mode="wrap") for n in noise])
    coarse *= amplitude / max(np.abs(coarse).max(), 1e-9)
    field = np.stack([cv2.resize(c.astype(np.float32), (cw * step, ch * step), interpolation=cv2.INTER_LINEAR)
                      [:height, :width] for c in coarse])
    if affine is not None:
        ty, tx, ayy, ayx, axy, axx = affine
        rows = np.arange(height, dtype=np.float32)[:, None] - height / 2
        cols = np.arange(width, dtype=np.float32)[None, :] - width / 2
        field[0] += ty + ayy * rows + ayx * cols
        field[1] += tx + axy * rows + axx * cols
    return field.astype(np.float32)


def warp_by_field(image: np.ndarray, field: np.ndarray, border_value: float = 0.0) -> np.ndarray:
    """Resample ``image`` ``(C, h, w)`` (or ``(h, w)``) so that its content moves by ``field``.

    Output pixel q takes the input at q - field(q) (bilinear): content at input p appears near
    p + field(p). Outside the input: ``border_value``.
    """
    squeeze = image.ndim == 2
    img = image[None] if squeeze else image
    h, w = img.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    map_r = rows - field[0]
    map_c = cols - field[1]
    out = np.stack([cv2.remap(b.astype(np.float32), map_c, map_r, cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border_value) for b in img])
    return out[0] if squeeze else out


def true_offsets(field: np.ndarray, iterations: int = 6) -> np.ndarray:
    """Offsets ``(2, h, w)`` (dy, dx) at source pixels p such that p + d(p) is where
    :func:`warp_by_field` put p's content: the fixed point of d = field(p + d)."""
    h, w = field.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    d = field.copy()
    for _ in range(iterations):
        d = np.stack([cv2.remap(field[b], cols + d[1], rows + d[0], cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE) for b in range(2)])
    return d

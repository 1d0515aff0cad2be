"""Modality-robust dense features: channels of oriented gradients (in the spirit of CFOG / HOPC).

Optical and SAR intensities differ (speckle, layover, contrast reversals), but the *orientation*
of edges is shared. Each pixel gets ``n_orient`` channels: the absolute gradient projected on
``n_orient`` directions in [0, pi) (absolute, so a bright-on-dark edge in one modality matches a
dark-on-bright one in the other), smoothed in space and across orientation, then L2-normalised
per pixel so that strong SAR scatterers do not dominate.
"""
from __future__ import annotations

import cv2
import numpy as np


def normalise_intensity(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Robustly standardise an intensity image (median / IQR of valid pixels)."""
    out = img.astype(np.float32, copy=True)
    if valid.any():
        lo, med, hi = np.percentile(out[valid], [2, 50, 98])
        out = (out - med) / max(hi - lo, 1e-6)
        out = np.clip(out, -1.5, 1.5)
    out[~valid] = 0
    return out


def oriented_gradients(img: np.ndarray, n_orient: int = 8, pre_sigma: float = 1.0,
                       sigma: float = 2.0, eps: float = 0.05) -> np.ndarray:
    """CFOG-like features of one intensity image.

    Args:
        img: float32 ``(h, w)`` intensity on a log-like scale; exact 0 marks padding / nodata.
        n_orient: orientation channels over [0, pi).
        pre_sigma: Gaussian smoothing (px) before the gradient (speckle suppression).
        sigma: Gaussian smoothing (px) of every channel (the descriptor's spatial support).
        eps: regulariser of the per-pixel L2 normalisation (relative to the mean magnitude), so
            flat areas stay near 0 instead of amplifying noise.

    Returns:
        float32 ``(n_orient, h, w)``; 0 where the input is padding.
    """
    valid = img != 0
    x = normalise_intensity(img, valid)
    if pre_sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), pre_sigma)
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)
    # No gradient across the padding border: it is not scene structure.
    inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    gx[~inner] = 0
    gy[~inner] = 0
    feats = np.empty((n_orient,) + img.shape, np.float32)
    for k in range(n_orient):
        theta = np.pi * k / n_orient
        ch = np.abs(np.cos(theta) * gx + np.sin(theta) * gy)
        feats[k] = cv2.GaussianBlur(ch, (0, 0), sigma) if sigma > 0 else ch
    # Smooth across orientation (circular [1, 2, 1]/4): tolerance to small rotations.
    feats = 0.25 * np.roll(feats, 1, axis=0) + 0.5 * feats + 0.25 * np.roll(feats, -1, axis=0)
    norm = np.sqrt((feats ** 2).sum(axis=0))
    ref = float(norm[inner].mean()) if inner.any() else 1.0
    feats /= norm + eps * max(ref, 1e-6)
    feats[:, ~valid] = 0
    return feats

"""Image-quality metrics for SAR -> optical translation: PSNR, SSIM, the MultiEarth error score.

Pure functions on float arrays shaped ``(C, H, W)`` or ``(H, W)``; :func:`score_translation`
pairs files of two folders and averages them.

MultiEarth error (SPEC section 5): for one SAR input with generated outputs ``f(x)_i`` and truth
images ``y_j``, ``sum_j min_i ||f(x)_i - y_j||``. The norm used here is the normalised L2: both
images scaled to [0, 1] (integer images divided by their dtype's maximum, float images taken as
already in [0, 1]) and ``||a - b|| = sqrt(mean((a - b)^2))`` over all pixels and channels (the RMS
difference), so the numbers are on the scale of the 2nd-place 0.0412. The folder score is the mean
of the per-input scores.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from sarfusion.errors import InputError

log = logging.getLogger(__name__)

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
SAMPLE_SUFFIX = re.compile(r"^(?P<stem>.+)_s(?P<k>\d+)$")


def _as_chw(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (C, H, W) or (H, W), got shape {a.shape}")
    return a


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_chw(a, "a"), _as_chw(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: a {a.shape} vs b {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)`` over all pixels and
    channels of ``a`` and ``b`` (same shape, (C, H, W) or (H, W)); ``inf`` for identical images."""
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Structural similarity (Wang et al. 2004), averaged over channels.

    Gaussian-weighted statistics in an 11 x 11 window (sigma 1.5), C1 = (0.01 L)^2,
    C2 = (0.03 L)^2 with L = ``data_range``, population (not sample) covariances, averaged over the
    pixels whose window lies fully inside the image. Images need H, W >= 11. Returns 1.0 for
    identical images.
    """
    a, b = _pair(a, b)
    if min(a.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images at least {SSIM_WINDOW} px a side, got {a.shape[1:]}")
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    radius = SSIM_WINDOW // 2
    crop = (slice(radius, -radius), slice(radius, -radius))

    def smooth(x: np.ndarray) -> np.ndarray:  # the window never crosses the border inside `crop`
        return gaussian_filter(x, SSIM_SIGMA, truncate=radius / SSIM_SIGMA)[crop]

    values = []
    for x, y in zip(a, b):
        mx, my = smooth(x), smooth(y)
        vx = smooth(x * x) - mx * mx
        vy = smooth(y * y) - my * my
        cxy = smooth(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        values.append(float(s.mean()))
    return float(np.mean(values))


def rms_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The MultiEarth norm: ``sqrt(mean((a - b)^2))`` of two images scaled to [0, 1]."""
    a, b = _pair(a, b)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def multiearth_score(outputs: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> float:
    """MultiEarth error of one SAR input: ``sum_j min_i rms_distance(outputs[i], truths[j])``.

    ``outputs`` (the generated images f(x)_i) and ``truths`` (the valid targets y_j) are float
    arrays scaled to [0, 1], all the same shape. Lower is better; 0 when every truth is generated.
    """
    if not len(outputs) or not len(truths):
        raise ValueError("multiearth_score needs at least one output and one truth image")
    return float(sum(min(rms_distance(o, t) for o in outputs) for t in truths))


# ----------------------------------------------------------------------------- files


def dtype_range(dtype: np.dtype) -> float:
    """Data range assumed for a dtype: its maximum for unsigned integers (255 for uint8, 65535
    for uint16), max - min for signed integers, 1.0 for floats (taken as scaled to [0, 1])."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return float(np.iinfo(dtype).max)
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        return float(info.max) - float(info.min)
    return 1.0


def read_image_unit(path: Path) -> np.ndarray:
    """An image file (PNG or GeoTIFF) as float64 ``(C, H, W)`` scaled to [0, 1] by its dtype range;
    PNG channels in RGB order."""
    if path.suffix.lower() == ".png":
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError("not a readable PNG", path)
        if img.ndim == 3:
            img = img[..., :3][..., ::-1] if img.shape[2] >= 3 else img
            img = np.moveaxis(img, -1, 0)
    else:
        from sarfusion.io.raster import read_raster

        img = read_raster(path)
    dtype = img.dtype
    out = _as_chw(img, str(path)) / dtype_range(dtype)
    if dtype.kind == "f" and np.isfinite(out).all() and (out.min() < 0 or out.max() > 1):
        log.warning("%s: float image outside [0, 1]; scores assume [0, 1]", path)
    return out


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def pair_translation_files(pred_dir: str | Path, truth_dir: str | Path) -> dict[str, tuple[list[Path], list[Path]]]:
    """Group prediction and truth files by input: ``{key: (outputs, truths)}``.

    The key of a file is its path relative to its folder without the suffix. A prediction named
    ``<stem>_s<k>.<ext>`` is sample k of input ``<stem>`` (unless the truth has ``<stem>_s<k>``
    itself). The truth of an input is the file ``<key>.<ext>`` or, for several valid targets,
    every image in the folder ``<key>/``. Every truth image must have a prediction.
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    for d in (pred_dir, truth_dir):
        if not d.is_dir():
            raise InputError("folder not found", d)
    truth_files = _images(truth_dir)
    truth_by_key = {p.relative_to(truth_dir).with_suffix("").as_posix(): p for p in truth_files}
    truth_dirs = {p.parent.relative_to(truth_dir).as_posix() for p in truth_files}
    outputs: dict[str, list[Path]] = defaultdict(list)
    for p in _images(pred_dir):
        key = p.relative_to(pred_dir).with_suffix("").as_posix()
        m = SAMPLE_SUFFIX.match(key)
        if m and key not in truth_by_key and key not in truth_dirs:
            key = m.group("stem")
        outputs[key].append(p)
    groups: dict[str, tuple[list[Path], list[Path]]] = {}
    used: set[Path] = set()
    for key, outs in sorted(outputs.items()):
        if key in truth_by_key:
            truths = [truth_by_key[key]]
        elif key in truth_dirs:
            truths = [p for p in truth_files if p.parent == truth_dir / key]
        else:
            log.warning("%s: prediction has no truth image, skipped", outs[0])
            continue
        used.update(truths)
        groups[key] = (outs, truths)
    missing = [p for p in truth_files if p not in used]
    if missing:
        raise InputError(f"{len(missing)} truth image(s) have no prediction in {pred_dir}, e.g. "
                         f"{missing[0].relative_to(truth_dir)}", truth_dir)
    if not groups:
        raise InputError(f"no prediction matches a truth image in {truth_dir}", pred_dir)
    return groups


def score_translation(pred_dir: str | Path, truth_dir: str | Path) -> dict:
    """Score translated images against truth images (see :func:`pair_translation_files`).

    Returns ``{psnr, ssim, multiearth, n_images}``: PSNR (dB, data range 1 after scaling to
    [0, 1]) and SSIM averaged over every (output, truth) pair of an input and then over inputs
    (``inf`` PSNR when all are identical); the MultiEarth error averaged over inputs; the input
    count.
    """
    from tqdm import tqdm

    sets = []
    for key, (out_paths, truth_paths) in tqdm(sorted(pair_translation_files(pred_dir, truth_dir).items()),
                                              desc="translation", unit="input", disable=None):
        outs = [read_image_unit(p) for p in out_paths]
        truths = [read_image_unit(p) for p in truth_paths]
        for p, o in zip(out_paths, outs):
            if o.shape != truths[0].shape:
                raise InputError(f"shape {o.shape} differs from the truth's {truths[0].shape} ({truth_paths[0]})", p)
        for p, t in zip(truth_paths, truths):
            if t.shape != truths[0].shape:
                raise InputError(f"shape {t.shape} differs from {truth_paths[0]}'s {truths[0].shape}", p)
        if min(truths[0].shape[1:]) < SSIM_WINDOW:
            raise InputError(f"is smaller than the {SSIM_WINDOW} px SSIM window", truth_paths[0])
        sets.append((outs, truths))
    return score_image_sets(sets)


def score_image_sets(sets: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]]) -> dict:
    """The scores of :func:`score_translation` for ``(outputs, truths)`` per input, each image a
    float ``(C, H, W)`` array scaled to [0, 1], all of one input the same shape.

    Returns ``{psnr, ssim, multiearth, n_images}`` (``n_images``: the number of inputs).
    """
    if not sets:
        raise ValueError("score_image_sets needs at least one (outputs, truths) pair")
    psnrs = [np.mean([psnr(o, t, 1.0) for o in outs for t in truths]) for outs, truths in sets]
    ssims = [np.mean([ssim(o, t, 1.0) for o in outs for t in truths]) for outs, truths in sets]
    errors = [multiearth_score(outs, truths) for outs, truths in sets]
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "multiearth": float(np.mean(errors)), "n_images": len(errors)}

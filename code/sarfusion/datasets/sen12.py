"""SEN1-2 (Schmitt et al. 2018): co-registered Sentinel-1 / Sentinel-2 PNG patch pairs.

Layout (SPEC section 5)::

    ROIs1158_spring/s1_<scene>/ROIs1158_spring_s1_<scene>_p<patch>.png   8-bit grey SAR (VV)
    ROIs1158_spring/s2_<scene>/ROIs1158_spring_s2_<scene>_p<patch>.png   8-bit RGB optical

The optical partner is the same path with ``s1`` replaced by ``s2`` in the folder and file name.
Pixels are 10 m; patches 256 x 256. Scenes are the split unit (patches of one scene overlap).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarfusion.errors import InputError

S1_NAME = re.compile(r"^(?P<season>.+)_s1_(?P<scene>[^_]+)_p(?P<patch>\d+)\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class Sen12Pair:
    """One SAR patch and its optical partner."""

    sar: Path
    optical: Path
    season: str
    scene: str
    patch: str

    @property
    def key(self) -> str:
        return f"{self.season}_{self.scene}_p{self.patch}"


def optical_partner(sar_path: str | Path) -> Path:
    """``.../<season>/s1_<scene>/<season>_s1_<scene>_p<n>.png`` -> the ``s2`` path (may not exist)."""
    sar_path = Path(sar_path)
    m = S1_NAME.match(sar_path.name)
    if not m or not sar_path.parent.name.lower().startswith("s1_"):
        raise InputError("not a SEN1-2 SAR patch name (<season>_s1_<scene>_p<n>.png in s1_<scene>/)", sar_path)
    folder = sar_path.parent.parent / ("s2_" + sar_path.parent.name[3:])
    return folder / f"{m.group('season')}_s2_{m.group('scene')}_p{m.group('patch')}.png"


def find_pairs(root: str | Path, require_optical: bool = True) -> list[Sen12Pair]:
    """Every SEN1-2 pair under ``root`` (searched recursively for ``s1_*/..._s1_..._p*.png``).

    A SAR patch whose optical partner is missing is an :class:`InputError` naming it when
    ``require_optical`` (training); otherwise its ``optical`` path is returned anyway (inference).
    """
    root = Path(root)
    if not root.exists():
        raise InputError("folder not found", root)
    pairs = []
    for sar in sorted(root.rglob("*.png")):
        m = S1_NAME.match(sar.name)
        if not m or not sar.parent.name.lower().startswith("s1_"):
            continue
        opt = optical_partner(sar)
        if require_optical and not opt.is_file():
            raise InputError(f"SAR patch has no optical partner (expected {opt})", sar)
        pairs.append(Sen12Pair(sar, opt, m.group("season"), m.group("scene"), m.group("patch")))
    return pairs


def read_png(path: str | Path, channels: int) -> np.ndarray:
    """An 8-bit PNG as ``(channels, H, W)`` uint8 (RGB order for 3 channels).

    Raises :class:`InputError` naming the file for an unreadable file, a bit depth other than 8
    or a channel count other than ``channels`` (a grey PNG stored as 3 equal channels is accepted
    for ``channels=1``).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError("not a readable PNG", path)
    if img.dtype != np.uint8:
        raise InputError(f"is a {img.dtype.itemsize * 8}-bit PNG ({img.dtype}); SEN1-2 patches are 8-bit", path)
    if img.ndim == 2:
        img = img[None]
    else:
        img = np.moveaxis(img[..., :3][..., ::-1] if img.shape[2] >= 3 else img, -1, 0)
    if channels == 1 and img.shape[0] == 3 and np.array_equal(img[0], img[1]) and np.array_equal(img[1], img[2]):
        img = img[:1]
    if img.shape[0] != channels:
        raise InputError(f"has {img.shape[0]} channel(s), expected {channels}", path)
    return np.ascontiguousarray(img)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write ``(C, H, W)`` uint8 (C = 1 or 3, RGB) as a PNG, atomically."""
    import cv2

    from sarfusion.io.atomic import atomic_path

    image = np.asarray(image)
    arr = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)[..., ::-1]
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(arr)):
            raise OSError(f"could not write {path}")
    return Path(path)

"""Co-registered SAR / optical pair folders: the plainest layout a user's own archive comes in.

Layout::

    DIR/sar/NAME.{png,tif,tiff}        SAR, one band (a grey PNG stored as 3 equal bands is accepted)
    DIR/opt/NAME.{png,tif,tiff}        optical RGB, same size (``optical/`` is accepted for ``opt/``)

Files are paired by name (the stem; the suffixes may differ). PNGs are 8-bit; GeoTIFFs may be any
numeric type (uint8 / uint16 optical, float or integer SAR in any scale: dB, linear power or
amplitude) and may carry georeferencing, which translated outputs copy. This is the layout of the
real Sentinel-1/2 pairs in ``real_samples/s1s2_pairs/`` (1024 px, 10 m, VH + RGB PNGs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarfusion.errors import InputError

SAR_DIR = "sar"
OPTICAL_DIRS = ("opt", "optical")
SUFFIXES = (".png", ".tif", ".tiff")


@dataclass(frozen=True)
class ImagePair:
    """One SAR image and its optical partner (``None`` when the folder has none, at inference)."""

    name: str
    sar: Path
    optical: Path | None


@dataclass
class PairImage:
    """Pixels of one image of a pair: ``pixels`` ``(C, H, W)`` in the file's dtype, and the
    georeferencing to copy onto outputs (``None`` for PNGs and non-georeferenced TIFFs)."""

    pixels: np.ndarray
    geotransform: tuple | None = None
    crs: str | None = None


def optical_dir(folder: str | Path) -> Path | None:
    """``folder/opt`` or ``folder/optical``, whichever exists (``None`` if neither)."""
    return next((Path(folder) / d for d in OPTICAL_DIRS if (Path(folder) / d).is_dir()), None)


def is_pair_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds ``sar/`` and ``opt/`` (or ``optical/``) with images in ``sar/``."""
    folder = Path(folder)
    return (folder / SAR_DIR).is_dir() and optical_dir(folder) is not None and bool(_images(folder / SAR_DIR))


def pair_root(path: str | Path) -> Path | None:
    """The pair folder that ``path`` (the folder itself, its ``sar/`` folder or a file in it) belongs to."""
    path = Path(path)
    for cand in (path, path.parent, path.parent.parent):
        if cand.name != SAR_DIR and is_pair_folder(cand):
            return cand
    return None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def _by_stem(files: list[Path], folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise InputError(f"two images named {p.stem!r} ({out[p.stem].name}, {p.name})", folder)
        out[p.stem] = p
    return out


def find_pairs(root: str | Path, require_optical: bool = True) -> list[ImagePair]:
    """Every pair of the pair folder ``root``, sorted by name.

    ``root`` may also be its ``sar/`` folder or one SAR file (inference). A SAR image without an
    optical partner is an :class:`InputError` naming it when ``require_optical`` (training).
    """
    root = Path(root)
    if not root.exists():
        raise InputError("not found", root)
    folder = pair_root(root)
    if root.is_file():
        if root.suffix.lower() not in SUFFIXES:
            raise InputError(f"not an image ({', '.join(SUFFIXES)})", root)
        sar_files = [root]
    elif folder is not None:
        sar_files = _images(folder / SAR_DIR)
    elif root.is_dir() and _images(root):  # a plain folder of SAR images (inference only)
        sar_files = _images(root)
    else:
        raise InputError(f"expected a pair folder ({SAR_DIR}/ + {' or '.join(OPTICAL_DIRS)}/, images paired by "
                         "name) or a folder of SAR images", root)
    optical = _by_stem(_images(optical_dir(folder)), optical_dir(folder)) if folder is not None else {}
    _by_stem(sar_files, root)  # duplicate stems in sar/ are an error too
    pairs = []
    for sar in sar_files:
        opt = optical.get(sar.stem)
        if opt is None and require_optical:
            raise InputError(f"SAR image has no optical partner named {sar.stem}.* in "
                             f"{' or '.join(OPTICAL_DIRS)}/", sar)
        pairs.append(ImagePair(sar.stem, sar, opt))
    if not pairs:
        raise InputError("no SAR images found", root)
    return pairs


def read_image(path: str | Path) -> PairImage:
    """A PNG (8-bit, RGB order) or GeoTIFF (any dtype, with georeferencing) as ``(C, H, W)``."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError("not a readable PNG", path)
        if img.ndim == 2:
            return PairImage(img[None])
        return PairImage(np.ascontiguousarray(np.moveaxis(img[..., :3][..., ::-1] if img.shape[2] >= 3 else img, -1, 0)))
    from sarfusion.io.raster import raster_info, read_raster

    info = raster_info(path)
    return PairImage(read_raster(path), info.geotransform if info.georeferenced else None, info.crs_wkt)


def read_sar(path: str | Path) -> PairImage:
    """The SAR image as ``(1, H, W)`` in its file's dtype; a grey image stored as equal bands is
    reduced to one band, any other multi-band SAR is an error (say which band to use by
    writing it alone)."""
    img = read_image(path)
    px = img.pixels
    if px.shape[0] > 1:
        if all(np.array_equal(px[0], b) for b in px[1:]):
            px = px[:1]
        else:
            raise InputError(f"SAR has {px.shape[0]} different bands; the pair layout takes one (e.g. VH)", path)
    img.pixels = px
    return img


def read_optical(path: str | Path) -> PairImage:
    """The optical image as ``(3, H, W)`` RGB in its file's dtype (the first three bands)."""
    img = read_image(path)
    if img.pixels.shape[0] < 3:
        raise InputError(f"optical image has {img.pixels.shape[0]} band(s), expected RGB", path)
    img.pixels = img.pixels[:3]
    return img


def find_pair_folders(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Every pair folder at ``root`` or up to ``max_depth`` levels below it, sorted (a pair
    folder's own subfolders are not searched)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found, frontier = [], [root]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            if is_pair_folder(d):
                found.append(d)
            else:
                nxt += [c for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
        frontier = nxt
    return sorted(found)

"""MultiEarth 2022 SAR -> optical: per-band tiffs by site and date.

Layout (SPEC section 5)::

    sent1/Sentinel1_{VV,VH}_<lon>_<lat>_<YYYY_MM_DD>.tiff        float32 dB, 256 x 256
    sent2/Sentinel2_{B1,B2,B3,B4,QA60}_<lon>_<lat>_<YYYY_MM_DD>.tiff   uint16 (DN = reflectance x 1e4)

SAR and optical are not co-collected: each SAR scene is paired with every optical date of the
same site (several valid targets per input, the MultiEarth min-over-outputs score).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sarfusion.errors import InputError
from sarfusion.io.raster import read_raster

SAR_NAME = re.compile(r"^Sentinel1_(?P<pol>VV|VH)_(?P<site>-?\d+(?:\.\d+)?_-?\d+(?:\.\d+)?)_(?P<date>\d{4}_\d{2}_\d{2})\.tiff?$")
OPT_NAME = re.compile(r"^Sentinel2_(?P<band>B\d+|QA60)_(?P<site>-?\d+(?:\.\d+)?_-?\d+(?:\.\d+)?)_(?P<date>\d{4}_\d{2}_\d{2})\.tiff?$")
OPTICAL_BANDS = ("B1", "B2", "B3", "B4")
SAR_POLS = ("VV", "VH")


@dataclass(frozen=True)
class OpticalScene:
    """One Sentinel-2 acquisition: ``bands`` maps B1..B4 (and QA60 when present) to files."""

    site: str
    date: str
    bands: dict = field(hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"Sentinel2_{self.site}_{self.date}"


@dataclass(frozen=True)
class SarScene:
    """One Sentinel-1 acquisition: VV and VH files and every optical scene of the same site."""

    site: str
    date: str
    vv: Path
    vh: Path
    optical: tuple = ()

    @property
    def name(self) -> str:
        return self.vv.stem  # outputs keep the VV file's name


def _scan(folder: Path, pattern: re.Pattern) -> dict[tuple[str, str], dict[str, Path]]:
    groups: dict[tuple[str, str], dict[str, Path]] = defaultdict(dict)
    for p in sorted(folder.rglob("*.tif*")):
        m = pattern.match(p.name)
        if m:
            groups[(m.group("site"), m.group("date"))][m.group(1)] = p
    return groups


def sar_scenes(root: str | Path) -> list[SarScene]:
    """SAR scenes (VV + VH) under ``root`` without optical partners; a lone VV or VH file is an
    :class:`InputError` naming it."""
    root = Path(root)
    if not root.exists():
        raise InputError("not found", root)
    if root.is_file():
        m = SAR_NAME.match(root.name)
        if not m:
            raise InputError("not a MultiEarth Sentinel-1 file name (Sentinel1_{VV,VH}_<lon>_<lat>_<date>.tiff)", root)
        groups = {(m.group("site"), m.group("date")): {
            pol: root.with_name(root.name.replace(f"Sentinel1_{m.group('pol')}_", f"Sentinel1_{pol}_"))
            for pol in SAR_POLS}}
        groups = {k: {pol: p for pol, p in v.items() if p.is_file()} for k, v in groups.items()}
    else:
        groups = _scan(root, SAR_NAME)
    out = []
    for (site, date), pols in sorted(groups.items()):
        for need in SAR_POLS:
            if need not in pols:
                have = next(iter(pols.values()))
                raise InputError(f"Sentinel-1 {need} partner missing for this {'/'.join(pols)} file", have)
        out.append(SarScene(site, date, pols["VV"], pols["VH"]))
    return out


def find_pairs(root: str | Path) -> list[SarScene]:
    """SAR scenes under ``root`` (``sent1/`` or anywhere below) each with the optical scenes of
    its site (``sent2/``). A SAR scene whose site has no optical image, or an optical date missing
    one of B2-B4, is an :class:`InputError` naming the file."""
    root = Path(root)
    sar = sar_scenes(root)
    optical: dict[str, list[OpticalScene]] = defaultdict(list)
    for (site, date), bands in sorted(_scan(root, OPT_NAME).items()):
        for need in ("B2", "B3", "B4"):
            if need not in bands:
                raise InputError(f"Sentinel-2 band {need} missing for this date", next(iter(bands.values())))
        optical[site].append(OpticalScene(site, date, dict(bands)))
    out = []
    for s in sar:
        if not optical.get(s.site):
            raise InputError(f"SAR image has no optical partner (no Sentinel2_*_{s.site}_*.tiff under {root})", s.vv)
        out.append(SarScene(s.site, s.date, s.vv, s.vh, tuple(optical[s.site])))
    if not out:
        raise InputError("no MultiEarth Sentinel1_{VV,VH}_<lon>_<lat>_<date>.tiff files found", root)
    return out


def read_band(path: str | Path, dtype: str) -> np.ndarray:
    """One single-band tiff as ``(H, W)``; a multi-band file or a wrong dtype is an InputError."""
    arr = read_raster(path, expect_bands=1)[0]
    if np.dtype(dtype).kind == "f" and arr.dtype.kind != "f":
        raise InputError(f"is {arr.dtype}, expected float dB backscatter", path)
    if np.dtype(dtype).kind == "u" and arr.dtype.kind not in "ui":
        raise InputError(f"is {arr.dtype}, expected integer Sentinel-2 digital numbers", path)
    return arr.astype(dtype, copy=False)


def read_sar(scene: SarScene) -> np.ndarray:
    """``(2, H, W)`` float32 dB: VV, VH."""
    vv, vh = read_band(scene.vv, "float32"), read_band(scene.vh, "float32")
    if vv.shape != vh.shape:
        raise InputError(f"VH size {vh.shape} differs from VV {vv.shape} ({scene.vv})", scene.vh)
    return np.stack([vv, vh])


def read_optical(scene: OpticalScene) -> tuple[np.ndarray, np.ndarray | None]:
    """``((4, H, W) uint16 B1..B4, QA60 (H, W) or None)``; a missing B1 is filled from B2."""
    bands = [read_band(scene.bands.get(b, scene.bands["B2"]), "uint16") for b in OPTICAL_BANDS]
    for b, arr in zip(OPTICAL_BANDS, bands):
        if arr.shape != bands[1].shape:
            raise InputError(f"size {arr.shape} differs from B2 {bands[1].shape}", scene.bands[b])
    qa = read_band(scene.bands["QA60"], "uint16") if "QA60" in scene.bands else None
    return np.stack(bands), qa


def read_s2_scene(folder: str | Path, prefix: str, suffix: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Bands of the scene whose files are ``<folder>/<prefix><band><suffix>.tiff`` (used by the
    cloud screen given any one band file)."""
    folder = Path(folder)
    files = {}
    for b in OPTICAL_BANDS + ("QA60",):
        for ext in (".tiff", ".tif"):
            p = folder / f"{prefix}{b}{suffix}{ext}"
            if p.is_file():
                files[b] = p
                break
    for need in ("B2", "B3", "B4"):
        if need not in files:
            raise InputError(f"Sentinel-2 band {need} missing for this scene", folder / f"{prefix}{need}{suffix}.tiff")
    m = OPT_NAME.match(files["B2"].name)
    return read_optical(OpticalScene(m.group("site") if m else "", m.group("date") if m else "", files))

"""SpaceNet 6 AOI discovery: find tiles by ImageId, pair SAR with PS-RGB, read the summary files.

Layout (SPEC section 1)::

    AOI_11_Rotterdam/
      SAR-Intensity/SN6_<split>_AOI_11_Rotterdam_SAR-Intensity_<stripStart>_<stripEnd>_tile_<n>.tif
      PS-RGB/SN6_<split>_AOI_11_Rotterdam_PS-RGB_<stripStart>_<stripEnd>_tile_<n>.tif   (train only)
      SummaryData/SAR_orientations.txt           ``<stripStart>_<stripEnd> <0|1>`` per line
      SummaryData/SN6_Train_AOI_11_Rotterdam_Buildings.csv

This module only finds, pairs and reads; it holds no model logic. Every bad input is an
:class:`~sarfusion.errors.InputError` naming the file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sarfusion.errors import InputError
from sarfusion.io.raster import Window, read_raster
from sarfusion.io.vector import image_id_from_name, read_csv_checked, strip_key

log = logging.getLogger(__name__)

SAR_DIR = "SAR-Intensity"
RGB_DIR = "PS-RGB"
SUMMARY_DIR = "SummaryData"
ORIENTATIONS_FILE = "SAR_orientations.txt"
SAR_BANDS = ("HH", "HV", "VH", "VV")
LABEL_COLUMNS = ("ImageId", "PolygonWKT_Pix")
_TIF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class SN6Tile:
    """One SN6 tile.

    ``orientation``: 0 = imaged from the north, 1 = from the south (``SAR_orientations.txt``);
    ``None`` when the AOI has no orientation file or its strip is not listed.
    ``rgb_path`` is ``None`` for SAR-only (test) tiles.
    """

    image_id: str
    sar_path: Path
    rgb_path: Path | None = None
    orientation: int | None = None

    @property
    def strip(self) -> str:
        """``<stripStart>_<stripEnd>`` of the tile."""
        return strip_key(self.image_id)


def _tifs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _TIF_SUFFIXES)


def _index_by_id(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in _tifs(folder):
        image_id = image_id_from_name(path)
        if image_id in out:
            raise InputError(f"duplicate ImageId {image_id} (also in {out[image_id].name})", path)
        out[image_id] = path
    return out


def read_orientations(path: str | Path) -> dict[str, int]:
    """``SAR_orientations.txt`` -> ``{strip_key: 0 | 1}``; one ``<key> <0|1>`` line per strip, no header."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    out: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1") or parts[0].count("_") != 1:
            raise InputError(f"line {lineno} is {line.strip()!r}, expected '<stripStart>_<stripEnd> <0|1>'", path)
        out[parts[0]] = int(parts[1])
    if not out:
        raise InputError("has no orientation lines", path)
    return out


def find_orientations(aoi_dir: str | Path) -> Path | None:
    """``AOI/SummaryData/SAR_orientations.txt`` when present."""
    path = Path(aoi_dir) / SUMMARY_DIR / ORIENTATIONS_FILE
    return path if path.is_file() else None


def find_label_csv(aoi_dir: str | Path) -> Path | None:
    """The building label CSV in ``AOI/SummaryData`` (``*Buildings*.csv``), or ``None`` if absent.

    Several candidates: the official name ``SN6_Train_AOI_11_Rotterdam_Buildings.csv`` wins; other
    ties are an error naming the folder.
    """
    folder = Path(aoi_dir) / SUMMARY_DIR
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.glob("*.csv") if "buildings" in p.name.lower())
    if not found:
        return None
    if len(found) > 1:
        official = [p for p in found if p.name == "SN6_Train_AOI_11_Rotterdam_Buildings.csv"]
        if len(official) != 1:
            raise InputError(f"several building CSVs ({', '.join(p.name for p in found)}); keep one", folder)
        return official[0]
    return found[0]


def read_label_csv(path: str | Path) -> pd.DataFrame:
    """The SN6 label CSV with at least ``ImageId, PolygonWKT_Pix`` (``POLYGON EMPTY`` rows kept)."""
    return read_csv_checked(path, LABEL_COLUMNS)


def find_tiles(
    aoi_dir: str | Path,
    require_optical: bool = False,
    orientations: str | Path | dict[str, int] | None = None,
) -> list[SN6Tile]:
    """All SAR tiles of an SN6 AOI, sorted by ImageId, each paired with its PS-RGB tile.

    Args:
        aoi_dir: the AOI folder (holds ``SAR-Intensity/``).
        require_optical: every SAR tile must have a PS-RGB partner with the same ImageId;
            a missing one is an ``InputError`` naming the SAR file.
        orientations: a ``{strip: 0|1}`` dict or a path to ``SAR_orientations.txt``; default
            ``AOI/SummaryData/SAR_orientations.txt`` when present (test AOIs have none: pass the
            training AOI's file).
    """
    aoi_dir = Path(aoi_dir)
    if not aoi_dir.is_dir():
        raise InputError("SN6 AOI folder not found", aoi_dir)
    sar_dir = aoi_dir / SAR_DIR
    if not sar_dir.is_dir():
        raise InputError(f"no {SAR_DIR}/ folder in this SN6 AOI", aoi_dir)
    sar = _index_by_id(sar_dir)
    if not sar:
        raise InputError("no .tif tiles", sar_dir)
    rgb_dir = aoi_dir / RGB_DIR
    rgb = _index_by_id(rgb_dir) if rgb_dir.is_dir() else {}
    if require_optical and not rgb_dir.is_dir():
        raise InputError(f"no {RGB_DIR}/ folder (optical tiles are required here)", aoi_dir)

    if orientations is None:
        found = find_orientations(aoi_dir)
        orient = read_orientations(found) if found else {}
    elif isinstance(orientations, dict):
        orient = dict(orientations)
    else:
        orient = read_orientations(orientations)

    tiles = []
    for image_id in sorted(sar):
        rgb_path = rgb.get(image_id)
        if require_optical and rgb_path is None:
            raise InputError(f"has no {RGB_DIR} partner (expected {rgb_dir}/..._{image_id}.tif)", sar[image_id])
        tiles.append(SN6Tile(image_id, sar[image_id], rgb_path, orient.get(strip_key(image_id))))
    unknown = sorted({t.strip for t in tiles if t.orientation is None})
    if orient and unknown:
        log.warning("%d strip(s) of %s missing from the orientation file (e.g. %s)", len(unknown), aoi_dir, unknown[0])
    return tiles


def read_sar(path: str | Path, window: Window | None = None) -> np.ndarray:
    """A SAR-Intensity tile as ``(4, H, W)`` float32, bands HH, HV, VH, VV.

    Nodata is left as stored (0 for SN6, NaN for the Capella sample); see
    :func:`sarfusion.io.raster.nodata_mask`. Anything but 4 bands is an ``InputError``.
    """
    return read_raster(path, window=window, dtype=np.float32, expect_bands=4)


def read_rgb(path: str | Path, window: Window | None = None) -> np.ndarray:
    """A PS-RGB tile as ``(3, H, W)`` uint8 (0 = nodata). Other band counts or dtypes are an ``InputError``."""
    arr = read_raster(path, window=window, expect_bands=3)
    if arr.dtype != np.uint8:
        raise InputError(f"is {arr.dtype}, expected uint8 PS-RGB", path)
    return arr

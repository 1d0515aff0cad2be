"""What a ``/data`` folder holds: SN6 AOIs, SN9 scene pairs, SEN1-2 and MultiEarth folders.

Accepted layouts (any depth up to 4 below the root):
- SpaceNet 6: a folder with ``SAR-Intensity/`` (an AOI). It is a *training* AOI when it has
  ``SummaryData/*Buildings.csv`` or ``geojson_buildings/``, otherwise a *test* AOI. A test
  truth CSV (``*Test*Buildings.csv``) anywhere under the root is used for scoring.
- SpaceNet 9: ``<aoi>_optical_<split>.tif`` beside ``<aoi>_sar_<split>.tif``, optionally
  ``<aoi>_tiepoints_<split>.csv``. Scenes whose split is ``train`` train the keypoint models.
- SEN1-2: ``ROIs*/s1_<scene>/*.png`` with ``s2_<scene>`` partners.
- MultiEarth: a folder holding ``sent1/`` and ``sent2/``.
- Co-registered pairs: a folder holding ``sar/`` and ``opt/`` (or ``optical/``) with images
  paired by file name (:mod:`sarfusion.datasets.pairs`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sarfusion.datasets.pairs import is_pair_folder
from sarfusion.errors import InputError

_SN9_OPTICAL = re.compile(r"^(?P<aoi>.+)_optical_(?P<split>[^_]+)\.tif$")
MAX_DEPTH = 4

EXPECTED = """expected at least one of:
  SpaceNet 6:  <AOI>/SAR-Intensity/*.tif  (+ PS-RGB/, SummaryData/*Buildings.csv to train)
  SpaceNet 9:  <aoi>_optical_<split>.tif + <aoi>_sar_<split>.tif (+ <aoi>_tiepoints_<split>.csv)
  SEN1-2:      ROIs*/s1_<scene>/*.png + ROIs*/s2_<scene>/*.png
  MultiEarth:  <site>/sent1/Sentinel1_*.tiff + <site>/sent2/Sentinel2_*.tiff
  SAR/optical pairs: <dir>/sar/NAME + <dir>/opt/NAME (or optical/), PNG or GeoTIFF, paired by name"""


@dataclass
class SN9Scene:
    name: str
    split: str
    optical: Path
    sar: Path
    tiepoints: Path | None


@dataclass
class DataInventory:
    root: Path
    sn6_train: list[Path] = field(default_factory=list)
    sn6_test: list[Path] = field(default_factory=list)
    sn6_test_truth: Path | None = None
    sn9: list[SN9Scene] = field(default_factory=list)
    sen12: list[Path] = field(default_factory=list)  # the ROIs* season folders
    multiearth: list[Path] = field(default_factory=list)  # folders holding sent1/ and sent2/
    pairs: list[Path] = field(default_factory=list)  # folders holding sar/ and opt/ (or optical/)

    @property
    def empty(self) -> bool:
        return not (self.sn6_train or self.sn6_test or self.sn9 or self.sen12 or self.multiearth or self.pairs)

    def summary(self) -> str:
        parts = [f"SN6 train AOIs {len(self.sn6_train)}", f"SN6 test AOIs {len(self.sn6_test)}",
                 f"SN9 scenes {len(self.sn9)} ({sum(s.split == 'train' for s in self.sn9)} train)",
                 f"SEN1-2 folders {len(self.sen12)}", f"MultiEarth sites {len(self.multiearth)}",
                 f"SAR/optical pair folders {len(self.pairs)}"]
        return ", ".join(parts)


def _walk_dirs(root: Path) -> list[Path]:
    out, frontier = [root], [root]
    for _ in range(MAX_DEPTH):
        nxt = [d for f in frontier for d in sorted(f.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        out += nxt
        frontier = nxt
    return out


def detect_data(root: str | Path) -> DataInventory:
    """Inventory of ``root``; an unreadable or unrecognisable root is an :class:`InputError`."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"not a folder; {EXPECTED}", root)
    inv = DataInventory(root)
    for d in _walk_dirs(root):
        if (d / "SAR-Intensity").is_dir():
            summary = d / "SummaryData"
            has_labels = (summary.is_dir() and any(summary.glob("*Buildings.csv"))) or (d / "geojson_buildings").is_dir()
            (inv.sn6_train if has_labels else inv.sn6_test).append(d)
        if (d / "sent1").is_dir() and (d / "sent2").is_dir():
            inv.multiearth.append(d)
        if is_pair_folder(d):
            inv.pairs.append(d)
        if d.name.startswith("ROIs") and any(c.is_dir() and c.name.startswith("s1_") for c in d.iterdir()):
            inv.sen12.append(d)
        for opt in sorted(d.glob("*_optical_*.tif")):
            m = _SN9_OPTICAL.match(opt.name)
            if not m:
                continue
            aoi, split = m["aoi"], m["split"]
            sar = d / f"{aoi}_sar_{split}.tif"
            if sar.exists():
                tp = d / f"{aoi}_tiepoints_{split}.csv"
                inv.sn9.append(SN9Scene(f"{aoi}_{split}", split, opt, sar, tp if tp.exists() else None))
    # a test truth never lives inside a training AOI (whose label CSV trains, not scores)
    truths = sorted(p for p in root.rglob("*Test*Buildings.csv")
                    if not any(aoi in p.parents for aoi in inv.sn6_train))
    inv.sn6_test_truth = truths[0] if truths else None
    if inv.empty:
        raise InputError(f"nothing recognisable found; {EXPECTED}", root)
    return inv

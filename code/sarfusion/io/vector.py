"""SpaceNet CSVs, GeoJSON footprints and pixel-space WKT."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import shapely

from sarfusion.errors import InputError
from sarfusion.io.atomic import atomic_path

SUBMISSION_COLUMNS = ("ImageId", "PolygonWKT_Pix", "Confidence")
EMPTY_WKT = "POLYGON EMPTY"


def image_id_from_name(name: str | Path) -> str:
    """SN6 ImageId from a file name: the last four ``_`` tokens of the stem,
    ``<stripStart>_<stripEnd>_tile_<n>``."""
    stem = Path(name).name.split(".")[0]
    tokens = stem.split("_")
    if len(tokens) < 4 or tokens[-2] != "tile":
        raise InputError("not a SpaceNet 6 tile name (expected ..._<stripStart>_<stripEnd>_tile_<n>)", name)
    return "_".join(tokens[-4:])


def strip_key(image_id: str) -> str:
    """``<stripStart>_<stripEnd>`` of an SN6 ImageId."""
    return "_".join(image_id.split("_")[:2])


def read_csv_checked(path: str | Path, required: Sequence[str], allow_empty: bool = False) -> pd.DataFrame:
    """Read a CSV and insist on ``required`` columns; errors name the file and what is missing."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        df = pd.read_csv(path, dtype={"ImageId": str}, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise InputError("is empty (no header, no rows)", path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"is not a readable CSV ({exc})", path) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; has {', '.join(map(str, df.columns))}", path)
    if not allow_empty and len(df) == 0:
        raise InputError("has a header but no rows", path)
    return df


def parse_wkt(wkts: Iterable[str]) -> np.ndarray:
    """Parse WKT strings to a shapely geometry array; unparseable entries become ``None``.

    ``POLYGON EMPTY`` parses to an empty polygon (callers drop it by area).
    """
    values = np.asarray([w if isinstance(w, str) else "" for w in wkts], dtype=object)
    out = np.empty(len(values), dtype=object)
    ok = np.array([bool(v.strip()) for v in values], dtype=bool)
    if ok.any():
        out[ok] = shapely.from_wkt(values[ok], on_invalid="ignore")
    out[~ok] = None
    return out


def geometries_to_wkt(geoms: Sequence[shapely.Geometry], precision: int = 2) -> list[str]:
    """Pixel-space WKT, rounded to ``precision`` decimals; empty/None -> ``POLYGON EMPTY``."""
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = list(geoms)
    wkt = shapely.to_wkt(arr, rounding_precision=precision, trim=True)  # one call: vectorised
    empty = shapely.is_missing(arr) | shapely.is_empty(arr)
    return [EMPTY_WKT if e else w for w, e in zip(wkt, empty)]


def write_csv_atomic(path: str | Path, df: pd.DataFrame) -> Path:
    """Write a DataFrame as CSV through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def write_submission_csv(
    path: str | Path, rows: pd.DataFrame, all_image_ids: Iterable[str] | None = None
) -> Path:
    """Write a SpaceNet submission ``ImageId,PolygonWKT_Pix,Confidence``.

    ``rows`` needs those three columns. Every id in ``all_image_ids`` without a row gets a
    ``POLYGON EMPTY,0`` row: the official scorer only counts images present in the submission.
    """
    missing = [c for c in SUBMISSION_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"submission rows lack columns {missing}")
    rows = rows.loc[:, list(SUBMISSION_COLUMNS)]
    if all_image_ids is not None:
        present = set(rows["ImageId"])
        extra = sorted(set(all_image_ids) - present)
        if extra:
            rows = pd.concat(
                [rows, pd.DataFrame({"ImageId": extra, "PolygonWKT_Pix": EMPTY_WKT, "Confidence": 0.0})],
                ignore_index=True,
            )
    return write_csv_atomic(path, rows)


def read_geojson(path: str | Path) -> tuple[np.ndarray, list[dict]]:
    """Geometries (shapely array) and property dicts of a GeoJSON FeatureCollection."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"is not valid GeoJSON ({exc})", path) from None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if feats is None:
        raise InputError("is not a GeoJSON FeatureCollection (no 'features')", path)
    geoms = np.empty(len(feats), dtype=object)
    for i, f in enumerate(feats):
        geoms[i] = shapely.geometry.shape(f["geometry"]) if f.get("geometry") else None
    return geoms, [f.get("properties") or {} for f in feats]


def write_geojson(path: str | Path, geoms: Sequence[shapely.Geometry], properties: Sequence[dict],
                  crs_epsg: int | None = None) -> Path:
    """Write a FeatureCollection (atomic). ``crs_epsg`` adds the legacy named-CRS member."""
    return write_features(path, geoms, properties, crs_epsg)


OGR_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
_OGR_FIELD_TYPES = {bool: "OFTInteger", int: "OFTInteger64", float: "OFTReal", str: "OFTString"}


def _field_types(properties: Sequence[dict]) -> dict[str, type]:
    """Field name -> Python type over every feature (first appearance order); ints mixed with
    floats are floats, anything else mixed is text."""
    types: dict[str, type] = {}
    for props in properties:
        for key, value in props.items():
            if value is None:
                continue
            t = type(value.item()) if isinstance(value, np.generic) else type(value)
            t = t if t in _OGR_FIELD_TYPES else str
            old = types.get(key)
            types[key] = t if old in (None, t) else (float if {old, t} <= {int, float} else str)
    return types


def write_features(path: str | Path, geoms: Sequence[shapely.Geometry | None], properties: Sequence[dict],
                   crs: str | int | None = None, layer: str | None = None,
                   geometry_type: str | None = None, fields: dict[str, type] | None = None) -> Path:
    """Write features through OGR, atomically: a GeoPackage (``.gpkg``) or GeoJSON (``.geojson``).

    ``properties``: one dict per geometry (field types from the values: int, float, str, bool);
    ``crs``: WKT, ``"EPSG:n"`` or an int (``None``: coordinates without a CRS, e.g. pixels).
    GeoJSON in a projected CRS keeps GDAL's legacy ``crs`` member, as the SpaceNet files do.
    ``layer`` defaults to the file stem; ``geometry_type`` (e.g. ``"Polygon"``) to the one type
    all geometries share (Unknown when they differ or there are none); ``fields`` (name -> int,
    float, str or bool) fixes the schema, so an empty layer still has its columns.
    """
    from osgeo import ogr, osr

    from sarfusion.io.raster import crs_to_wkt

    ogr.UseExceptions()
    path = Path(path)
    driver_name = OGR_DRIVERS.get(path.suffix.lower())
    if driver_name is None:
        raise InputError(f"unknown vector format; use one of {', '.join(sorted(OGR_DRIVERS))}", path)
    if len(geoms) != len(properties):
        raise ValueError(f"{len(geoms)} geometries but {len(properties)} property dicts")
    srs = None
    wkt = crs_to_wkt(crs)
    if wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    kinds = {geometry_type} if geometry_type else {g.geom_type for g in geoms if g is not None and not g.is_empty}
    geom_type = getattr(ogr, f"wkb{kinds.pop()}", ogr.wkbUnknown) if len(kinds) == 1 else ogr.wkbUnknown
    types = {**(fields or {}), **_field_types(properties)}
    with atomic_path(path) as tmp:
        ds = ogr.GetDriverByName(driver_name).CreateDataSource(str(tmp))
        lyr = ds.CreateLayer(layer or path.stem, srs, geom_type)
        for name, t in types.items():
            field = ogr.FieldDefn(name, getattr(ogr, _OGR_FIELD_TYPES[t]))
            if t is bool:
                field.SetSubType(ogr.OFSTBoolean)
            lyr.CreateField(field)
        defn = lyr.GetLayerDefn()
        lyr.StartTransaction()
        for g, props in zip(geoms, properties):
            feat = ogr.Feature(defn)
            for key, value in props.items():
                if value is not None:
                    value = value.item() if isinstance(value, np.generic) else value
                    feat.SetField(key, value if types[key] is not str else str(value))
            if g is not None:
                feat.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(g)))
            lyr.CreateFeature(feat)
        lyr.CommitTransaction()
        ds = None  # closes (and for GPKG finalises) the file before the rename
    return path


def read_features(path: str | Path) -> tuple[np.ndarray, list[dict], str | None]:
    """Geometries (shapely array), property dicts and CRS WKT of the first layer of any OGR vector file."""
    from osgeo import ogr

    ogr.UseExceptions()
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise InputError(f"not a readable vector file ({str(exc).strip().splitlines()[0]})", path) from None
    lyr = ds.GetLayer(0)
    srs = lyr.GetSpatialRef()
    geoms, props = [], []
    for feat in lyr:
        g = feat.GetGeometryRef()
        geoms.append(None if g is None else shapely.from_wkb(bytes(g.ExportToWkb())))
        props.append(feat.items())
    out = np.empty(len(geoms), dtype=object)
    out[:] = geoms
    return out, props, srs.ExportToWkt() if srs is not None else None

"""SpaceNet building-footprint F1 (SN6 official rules and the solaris variant), vectorised.

Two stages, as everywhere in :mod:`sarfusion.metrics`: :func:`match_buildings` turns polygons into
per-image TP / FP / FN counts; :func:`scores_from_counts` turns summed counts into scores.

Rules (SPEC section 2):

* ``sn6`` (default, the official SpaceNet 6 scorer): polygons with area < 80 px^2 are dropped on
  both sides; predictions are taken by descending ``Confidence`` (ties keep file order) and each
  is matched, one-to-one, to the still-unmatched truth polygon of its ImageId with the highest
  IoU; a match needs IoU > 0.5 (strict). Unparseable prediction WKT counts as one FP. Only the
  ImageIds present in the prediction are scored (as the official scorer does; a tile given only
  as ``POLYGON EMPTY`` is present, so its truth buildings are FN).
* ``solaris`` (the older ``solaris.eval`` evaluator): ``min_area`` default 20, truth kept at
  area >= min_area, proposals at area > min_area, a match at IoU >= the threshold, and the union
  of truth and prediction ImageIds is scored.

Matching is vectorised: every polygon's bounding box is shifted by ``image index x stride`` so
that tiles (which all share pixel coordinates) never meet, one STRtree over the truth boxes finds
candidate pairs, shapely 2 array functions give their IoU, and only pairs above the threshold go
through the greedy one-to-one assignment. With disjoint footprints each prediction has at most one
truth over IoU 0.5, so nearly all pairs are matched at once; only conflicting pairs are walked.
"""
from __future__ import annotations

import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from sarfusion.errors import InputError
from sarfusion.io.raster import crs_to_wkt, map_to_pixel, raster_info, reproject_points
from sarfusion.io.vector import image_id_from_name, parse_wkt, read_csv_checked, read_geojson

log = logging.getLogger(__name__)

COUNT_KEYS = ("tp", "fp", "fn")
SCORE_KEYS = ("tp", "fp", "fn", "precision", "recall", "f1", "score", "n_images")
GEOJSON_SUFFIXES = (".geojson", ".json")
RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class BuildingRules:
    """One scorer's rule set. Areas in px^2, IoU in [0, 1]."""

    name: str
    min_area: float
    pred_area_strict: bool  # proposals kept at area > min_area (else >=)
    iou_strict: bool  # a match needs IoU > threshold (else >=)
    all_images: bool  # score truth-only ImageIds too (else only those in the prediction)

    def keep_truth(self, area: np.ndarray, min_area: float) -> np.ndarray:
        return (area >= min_area) & (area > 0)

    def keep_pred(self, area: np.ndarray, min_area: float) -> np.ndarray:
        return ((area > min_area) if self.pred_area_strict else (area >= min_area)) & (area > 0)

    def is_match(self, iou: np.ndarray, threshold: float) -> np.ndarray:
        return iou > threshold if self.iou_strict else iou >= threshold


RULES: dict[str, BuildingRules] = {
    "sn6": BuildingRules("sn6", min_area=80.0, pred_area_strict=False, iou_strict=True, all_images=False),
    "solaris": BuildingRules("solaris", min_area=20.0, pred_area_strict=True, iou_strict=False, all_images=True),
}


# ----------------------------------------------------------------------------- loading


def _confidence(values: pd.Series, path: str | Path | None) -> np.ndarray:
    conf = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(conf).any():
        i = int(np.argmax(np.isnan(conf)))
        raise InputError(f"Confidence of row {i + 2} is not a number ({values.iloc[i]!r})", path)
    return conf


def _frame_from_table(df: pd.DataFrame, path: str | Path | None) -> pd.DataFrame:
    """Normalise a SpaceNet CSV table to columns ImageId, geometry, Confidence."""
    missing = [c for c in ("ImageId",) if c not in df.columns]
    if "PolygonWKT_Pix" not in df.columns and "geometry" not in df.columns:
        missing.append("PolygonWKT_Pix")
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; has {', '.join(map(str, df.columns))}", path)
    geoms = df["geometry"].to_numpy(dtype=object) if "geometry" in df.columns else parse_wkt(df["PolygonWKT_Pix"])
    conf = _confidence(df["Confidence"], path) if "Confidence" in df.columns else np.ones(len(df))
    return pd.DataFrame({"ImageId": df["ImageId"].astype(str).to_numpy(), "geometry": geoms, "Confidence": conf})


def _geojson_crs_wkt(path: Path, geoms: np.ndarray) -> str | None:
    """CRS of a GeoJSON's coordinates, or ``None`` for pixel coordinates.

    A legacy ``crs`` member names it; without one, coordinates that fit inside lon/lat bounds and
    span under one degree are taken as EPSG:4326 (RFC 7946); anything else is pixel coordinates.
    """
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):  # read_geojson already reported it
        return None
    name = ((doc.get("crs") or {}).get("properties") or {}).get("name") if isinstance(doc, dict) else None
    if name:
        if "CRS84" in name.upper():
            return crs_to_wkt(4326)
        match = re.search(r"EPSG:{1,2}(\d+)", name.upper())
        try:
            return crs_to_wkt(int(match.group(1))) if match else crs_to_wkt(name)
        except RuntimeError:
            raise InputError(f"unknown GeoJSON crs {name!r}", path) from None
    present = np.array([g is not None and not g.is_empty for g in geoms], dtype=bool)
    if not present.any():
        return None
    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms[present])
    lonlat = -180 <= xmin and xmax <= 180 and -90 <= ymin and ymax <= 90 and max(xmax - xmin, ymax - ymin) < 1
    return crs_to_wkt(4326) if lonlat else None


def index_rasters(folder: str | Path | None) -> dict[str, Path]:
    """ImageId -> GeoTIFF path for every SN6-named tile in ``folder`` (recursive)."""
    if folder is None:
        return {}
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("raster folder not found", folder)
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in RASTER_SUFFIXES:
            try:
                out.setdefault(image_id_from_name(p), p)
            except InputError:
                continue
    return out


def _to_pixels(geoms: np.ndarray, src_wkt: str, raster: Path) -> np.ndarray:
    """Map-coordinate geometries -> pixel (col, row) geometries of ``raster``."""
    info = raster_info(raster)
    dst_wkt = info.crs_wkt or src_wkt

    def transform(coords: np.ndarray) -> np.ndarray:
        x, y = reproject_points(coords[:, 0], coords[:, 1], src_wkt, dst_wkt)
        rows, cols = map_to_pixel(info.geotransform, x, y)
        return np.column_stack([cols, rows])

    out = geoms.copy()
    present = np.array([g is not None for g in geoms], dtype=bool)
    if present.any():
        out[present] = shapely.transform(geoms[present], transform)
    return out


def _frame_from_geojson(path: Path, rasters: dict[str, Path]) -> pd.DataFrame:
    geoms, props = read_geojson(path)
    crs_wkt = _geojson_crs_wkt(path, geoms)
    ids = [p.get("ImageId") for p in props]
    if any(i is None for i in ids):
        file_id = image_id_from_name(path)
        ids = [file_id if i is None else str(i) for i in ids]
    if not len(geoms):  # a tile without buildings is still a scored tile
        file_id = image_id_from_name(path)
        return pd.DataFrame({"ImageId": [file_id], "geometry": [shapely.Polygon()], "Confidence": [0.0]})
    if crs_wkt is not None:
        for image_id in sorted(set(ids)):
            if image_id not in rasters:
                raise InputError(
                    f"has map coordinates but no raster for ImageId {image_id} was given "
                    "(pass --truth-rasters DIR with the matching tiles, or use pixel-coordinate GeoJSON)", path)
        id_arr = np.asarray(ids, dtype=object)
        for image_id in sorted(set(ids)):
            sel = id_arr == image_id
            geoms[sel] = _to_pixels(geoms[sel], crs_wkt, rasters[image_id])
    conf = [p.get("Confidence", p.get("confidence", 1.0)) for p in props]
    return pd.DataFrame({"ImageId": ids, "geometry": geoms,
                         "Confidence": _confidence(pd.Series(conf, dtype=object), path)})


def load_polygons(source: pd.DataFrame | str | Path, raster_dir: str | Path | None = None) -> pd.DataFrame:
    """Read footprints from any accepted form into ``ImageId, geometry, Confidence`` columns.

    Accepts a DataFrame (``ImageId`` + ``PolygonWKT_Pix`` or ``geometry``, optional ``Confidence``),
    a SpaceNet CSV (SN6 labels, SpaceNet ``BuildingId`` CSVs, 3- or 4-column submissions), one
    GeoJSON file, or a folder of per-tile GeoJSONs. GeoJSON ImageIds come from an ``ImageId``
    property or the file name (:func:`image_id_from_name`). Pixel-coordinate GeoJSON is used as is;
    map-coordinate GeoJSON (a ``crs`` member, or lon/lat) is converted to pixels with the
    geotransform of the same-ImageId GeoTIFF in ``raster_dir``. Unparseable WKT gives ``None``.
    """
    if isinstance(source, pd.DataFrame):
        return _frame_from_table(source, None)
    path = Path(source)
    rasters = index_rasters(raster_dir)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in GEOJSON_SUFFIXES)
        if not files:
            raise InputError("folder holds no .geojson files", path)
        return pd.concat([_frame_from_geojson(p, rasters) for p in files], ignore_index=True)
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        return _frame_from_geojson(path, rasters)
    df = read_csv_checked(path, ["ImageId", "PolygonWKT_Pix"], allow_empty=True)
    return _frame_from_table(df, path)


# ----------------------------------------------------------------------------- matching


def _areas(geoms: np.ndarray, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Valid geometries (invalid ones repaired with make_valid) and their areas (NaN for None)."""
    geoms = geoms.copy()
    present = np.array([g is not None for g in geoms], dtype=bool)
    invalid = np.zeros(len(geoms), dtype=bool)
    invalid[present] = ~shapely.is_valid(geoms[present])
    if invalid.any():
        log.warning("%d invalid %s polygon(s) repaired with make_valid", int(invalid.sum()), role)
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    area = np.full(len(geoms), np.nan)
    area[present] = shapely.area(geoms[present])
    degenerate = present & (area <= 0) & ~shapely.is_empty(geoms)
    if degenerate.any():
        log.warning("%d %s polygon(s) with zero area dropped", int(degenerate.sum()), role)
    return geoms, area


def _intersection_areas(a: np.ndarray, b: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    """Element-wise ``area(a & b)``; shapely releases the GIL, so chunks run on all cores."""
    if len(a) <= chunk:
        return shapely.area(shapely.intersection(a, b))
    starts = range(0, len(a), chunk)
    workers = max(1, min(len(os.sched_getaffinity(0)), 8))
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(lambda i: shapely.area(shapely.intersection(a[i:i + chunk], b[i:i + chunk])), starts)
        return np.concatenate(list(parts))


def candidate_pairs(truth_img: np.ndarray, truth_geoms: np.ndarray,
                    pred_img: np.ndarray, pred_geoms: np.ndarray,
                    min_iou: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pred, truth) pairs of one image whose polygons overlap, with their IoU.

    Args:
        truth_img, pred_img: integer image codes, ``(n_truth,)`` / ``(n_pred,)``.
        truth_geoms, pred_geoms: shapely polygons (non-empty, valid) in pixel coordinates.
        min_iou: pairs whose IoU cannot reach this value (an upper bound from areas and bounding
            boxes) are skipped before the exact, costly intersection.
    Returns:
        ``(pred_index, truth_index, iou)`` arrays of equal length, IoU float64 in (0, 1]; every
        pair with IoU >= ``min_iou`` (and > 0) is included, others may be.
    """
    if not len(truth_geoms) or not len(pred_geoms):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    tb, pb = shapely.bounds(truth_geoms), shapely.bounds(pred_geoms)
    lo = min(tb[:, 0].min(), pb[:, 0].min())
    stride = max(tb[:, 2].max(), pb[:, 2].max()) - lo + 10.0  # tiles side by side along x, 10 px apart
    t_shift = truth_img.astype(np.float64) * stride - lo
    p_shift = pred_img.astype(np.float64) * stride - lo
    t_boxes = shapely.box(tb[:, 0] + t_shift, tb[:, 1], tb[:, 2] + t_shift, tb[:, 3])
    p_boxes = shapely.box(pb[:, 0] + p_shift, pb[:, 1], pb[:, 2] + p_shift, pb[:, 3])
    pi, ti = shapely.STRtree(t_boxes).query(p_boxes, predicate="intersects")
    p_area, t_area = shapely.area(pred_geoms), shapely.area(truth_geoms)
    if min_iou > 0 and len(pi):
        # IoU rises with the intersection, which is at most min(areas, bounding-box overlap)
        box_w = np.minimum(pb[pi, 2], tb[ti, 2]) - np.maximum(pb[pi, 0], tb[ti, 0])
        box_h = np.minimum(pb[pi, 3], tb[ti, 3]) - np.maximum(pb[pi, 1], tb[ti, 1])
        bound = np.minimum(np.minimum(p_area[pi], t_area[ti]), np.clip(box_w, 0, None) * np.clip(box_h, 0, None))
        possible = bound >= min_iou * (p_area[pi] + t_area[ti] - bound) * (1 - 1e-9)
        pi, ti = pi[possible], ti[possible]
    inter = _intersection_areas(pred_geoms[pi], truth_geoms[ti])
    union = p_area[pi] + t_area[ti] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    keep = iou > 0
    return pi[keep], ti[keep], iou[keep]


def greedy_match(pred_rank: np.ndarray, pi: np.ndarray, ti: np.ndarray, iou: np.ndarray,
                 n_pred: int, n_truth: int) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching: predictions in ``pred_rank`` order (0 first) each take the unmatched
    truth with the highest IoU among the given (already thresholded) pairs.

    Returns boolean ``(matched_pred (n_pred,), matched_truth (n_truth,))``.
    """
    matched_p = np.zeros(n_pred, dtype=bool)
    matched_t = np.zeros(n_truth, dtype=bool)
    if not len(pi):
        return matched_p, matched_t
    # Pairs whose prediction and truth appear in no other pair are isolated: matched outright.
    alone = (np.bincount(pi, minlength=n_pred)[pi] == 1) & (np.bincount(ti, minlength=n_truth)[ti] == 1)
    matched_p[pi[alone]] = True
    matched_t[ti[alone]] = True
    rest = np.nonzero(~alone)[0]
    order = rest[np.lexsort((-iou[rest], pred_rank[pi[rest]]))]  # by rank, then IoU descending
    for p, t in zip(pi[order].tolist(), ti[order].tolist()):
        if not matched_p[p] and not matched_t[t]:
            matched_p[p] = matched_t[t] = True
    return matched_p, matched_t


def match_buildings(truth: pd.DataFrame, pred: pd.DataFrame, rules: str | BuildingRules = "sn6",
                    min_area: float | None = None, iou: float = 0.5,
                    all_images: bool | None = None) -> pd.DataFrame:
    """Per-image TP / FP / FN of predicted against true footprints.

    Args:
        truth, pred: frames from :func:`load_polygons` (``ImageId``, ``geometry``, ``Confidence``).
        rules: ``"sn6"`` or ``"solaris"`` (see the module docstring).
        min_area: area cut in px^2 (default: the rule set's, 80 for sn6, 20 for solaris).
        iou: IoU threshold (strict for sn6, inclusive for solaris).
        all_images: also score ImageIds that only the truth has (their buildings become FN);
            default: the rule set's (False for sn6, as the official scorer).
    Returns:
        DataFrame indexed by ImageId (sorted) with integer columns ``tp, fp, fn``.
    """
    rule = rules if isinstance(rules, BuildingRules) else _rules(rules)
    min_area = rule.min_area if min_area is None else float(min_area)
    all_images = rule.all_images if all_images is None else all_images
    pred_ids = pd.unique(pred["ImageId"].astype(str))
    truth_ids = pd.unique(truth["ImageId"].astype(str))
    if all_images:
        image_ids = np.union1d(pred_ids, truth_ids)
    else:
        image_ids = np.sort(pred_ids)
        dropped = np.setdiff1d(truth_ids, pred_ids)
        if len(dropped):
            log.warning("%d truth image(s) are absent from the prediction and not scored (official SN6 "
                        "behaviour; e.g. %s)", len(dropped), dropped[0])
    codes = {k: i for i, k in enumerate(image_ids)}
    n_img = len(image_ids)

    t_img = truth["ImageId"].astype(str).map(codes).to_numpy()
    t_in = ~pd.isna(t_img)
    t_geoms, t_area = _areas(truth["geometry"].to_numpy(dtype=object)[t_in], "truth")
    t_img = t_img[t_in].astype(np.int64)
    unparsed_truth = np.isnan(t_area)
    if unparsed_truth.any():
        log.warning("%d unparseable truth polygon(s) ignored", int(unparsed_truth.sum()))
    t_keep = ~unparsed_truth & rule.keep_truth(np.nan_to_num(t_area), min_area)

    p_img = pred["ImageId"].astype(str).map(codes).to_numpy().astype(np.int64)
    p_geoms, p_area = _areas(pred["geometry"].to_numpy(dtype=object), "prediction")
    unparsed = np.isnan(p_area)
    p_keep = ~unparsed & rule.keep_pred(np.nan_to_num(p_area), min_area)

    t_sel, p_sel = np.nonzero(t_keep)[0], np.nonzero(p_keep)[0]
    conf = pred["Confidence"].to_numpy(dtype=np.float64)[p_sel]
    rank = np.empty(len(p_sel), dtype=np.int64)
    rank[np.argsort(-conf, kind="stable")] = np.arange(len(p_sel))
    pi, ti, pair_iou = candidate_pairs(t_img[t_sel], t_geoms[t_sel], p_img[p_sel], p_geoms[p_sel], min_iou=iou)
    ok = rule.is_match(pair_iou, iou)
    matched_p, _ = greedy_match(rank, pi[ok], ti[ok], pair_iou[ok], len(p_sel), len(t_sel))

    tp = np.bincount(p_img[p_sel][matched_p], minlength=n_img)
    n_pred = np.bincount(p_img[p_sel], minlength=n_img) + np.bincount(p_img[unparsed], minlength=n_img)
    n_truth = np.bincount(t_img[t_sel], minlength=n_img)
    table = pd.DataFrame({"tp": tp, "fp": n_pred - tp, "fn": n_truth - tp}, index=pd.Index(image_ids, name="ImageId"))
    return table.astype(np.int64)


def _rules(name: str) -> BuildingRules:
    if name not in RULES:
        raise ValueError(f"unknown building rules {name!r}; choose from {', '.join(RULES)}")
    return RULES[name]


# ----------------------------------------------------------------------------- scores


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def scores_from_counts(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1 (0 when undefined) and the leaderboard score 100 x F1."""
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "precision": precision, "recall": recall,
            "f1": f1, "score": 100.0 * f1}


def per_image_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Add precision, recall, f1 columns to a per-image ``tp, fp, fn`` table."""
    rows = [scores_from_counts(*r) for r in table[list(COUNT_KEYS)].itertuples(index=False)]
    out = pd.DataFrame(rows, index=table.index).drop(columns="score")
    return out


def score_buildings(truth_df_or_path: pd.DataFrame | str | Path, pred_df_or_path: pd.DataFrame | str | Path,
                    rules: str = "sn6", min_area: float | None = None, iou: float = 0.5,
                    all_images: bool | None = None, raster_dir: str | Path | None = None,
                    per_image: bool = False) -> dict:
    """Score predicted building footprints against the truth (see :func:`match_buildings`).

    Returns ``{tp, fp, fn, precision, recall, f1, score, n_images}`` (score = 100 x F1), plus
    ``per_image`` (DataFrame indexed by ImageId: tp, fp, fn, precision, recall, f1) when asked.
    """
    rule = _rules(rules)
    truth = load_polygons(truth_df_or_path, raster_dir)
    pred = load_polygons(pred_df_or_path, raster_dir)
    table = match_buildings(truth, pred, rule, min_area=min_area, iou=iou, all_images=all_images)
    result: dict = scores_from_counts(*(int(table[k].sum()) for k in COUNT_KEYS))
    result["n_images"] = int(len(table))
    if per_image:
        result["per_image"] = per_image_scores(table)
    return result


"""Building post-processing: seeded watershed on the (footprint, edge, contact) maps, then polygons.

The SN6 winner's recipe (SPEC section 2): seeds are the pixels where
``footprint * (1 - contact) * (1 - edge) > seed_threshold`` (0.75), each seed blob grows over the
footprint mask (``footprint > mask_threshold``) by watershed, and buildings under 80 px^2 are
dropped. Polygons are in SpaceNet pixel coordinates: pixel ``(row, col)`` covers the square
``[col, col + 1] x [row, row + 1]``.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.ndimage as ndi
import shapely
from shapely.geometry import Polygon


@dataclass
class WatershedParams:
    """Thresholds of :func:`watershed_instances` and :func:`polygonize_instances` (tuned in config)."""

    seed_threshold: float = 0.75
    mask_threshold: float = 0.5
    min_seed_area: int = 10  # px; smaller seed blobs are noise
    min_area: float = 80.0  # px^2; SN6 scorer drops smaller polygons anyway
    simplify_tolerance: float = 0.75  # px
    # The SN6 winner's variants (all on in the full preset): the mask is footprint x (1 - contact),
    # so contact pixels between buildings belong to none; seeds join diagonally (8-connected);
    # touching buildings are parted by a 1 px background line (skimage's watershed_line), and each
    # outline is then grown by ``outline_buffer`` px beyond its pixel squares (0.5 closes that line).
    mask_minus_contact: bool = False
    seed_connectivity: int = 4
    dividing_lines: bool = False
    outline_buffer: float = 0.0
    # Row splitting (ours, not the winner's): each building the watershed finds is cut along its
    # skeleton into as many equal parts as blobs of its area and depth held buildings in the
    # training labels (``row_counts``, from :func:`fit_row_counts`). On by calibration only.
    split_rows: bool = False
    row_counts: tuple[str, ...] = ()
    # Where each building's count comes from: "table" (above) or "area": the blob's area divided by
    # the median building area its pixels predict (the 4th channel of the probabilities, log px, from
    # the area network of ``BuildingsConfig.area_model``). Chosen by the calibration.
    row_counts_from: str = "table"


def watershed_instances(prob: np.ndarray, params: WatershedParams | None = None) -> np.ndarray:
    """Instance labels from probability maps.

    Args:
        prob: ``(3, H, W)`` float in [0, 1]: footprint, edge, contact; or ``(4, H, W)`` with the
            predicted log building area (natural log of px) as the 4th channel (:func:`split_rows`).
    Returns:
        ``(H, W)`` int32 labels, 0 = background, 1..n = buildings. A footprint blob without a seed
        gets no label (as skimage's ``watershed(..., mask=mask)``).
    """
    p = params or WatershedParams()
    return finish_instances(flood_instances(prob, p), p, log_area_channel(prob))


def log_area_channel(prob: np.ndarray) -> np.ndarray | None:
    """The ``(H, W)`` predicted log building area of ``(4, H, W)`` probabilities (the area
    networks' 4th channel); None for ``(3, H, W)`` ones, which have no area networks' output."""
    return prob[3] if len(prob) > 3 else None


def flood_instances(prob: np.ndarray, params: WatershedParams | None = None) -> np.ndarray:
    """The first steps of :func:`watershed_instances`: seeds, mask and the flood, without the row
    splitting and the dividing lines (:func:`finish_instances`). ``(3 or 4, H, W)`` float
    probabilities (a 4th channel, the building area, is not used here) -> ``(H, W)`` int32 labels."""
    p = params or WatershedParams()
    if prob.ndim != 3 or prob.shape[0] not in (3, 4):
        raise ValueError(f"prob must be (3, H, W) footprint/edge/contact (+ log area), got {prob.shape}")
    fp, edge, contact = (np.asarray(c, dtype=np.float32) for c in prob[:3])
    seeds_mask = fp * (1 - contact) * (1 - edge) > p.seed_threshold
    mask = (fp * (1 - contact) if p.mask_minus_contact else fp) > p.mask_threshold
    if p.seed_connectivity not in (4, 8):
        raise ValueError(f"seed_connectivity must be 4 or 8, got {p.seed_connectivity}")
    seeds, n = ndi.label(seeds_mask & mask, structure=np.ones((3, 3)) if p.seed_connectivity == 8 else None)
    if n == 0:
        return np.zeros(fp.shape, np.int32)
    sizes = np.bincount(seeds.ravel(), minlength=n + 1)
    keep = sizes >= p.min_seed_area
    keep[0] = False
    remap = np.zeros(n + 1, np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1)
    seeds = remap[seeds]
    return _flood(seeds, mask, fp)


def finish_instances(flooded: np.ndarray, params: WatershedParams | None = None,
                     log_area: np.ndarray | None = None, shapes: dict | None = None) -> np.ndarray:
    """The last steps of :func:`watershed_instances` on the labels of :func:`flood_instances`: the
    row splitting (``split_rows``) and the dividing lines. Apart so that the calibration floods
    once per threshold pair and tries it with and without splitting. ``log_area``: the ``(H, W)``
    predicted log building area (needed when ``row_counts_from`` is "area"). ``shapes``: a cache of
    the blobs' shapes for :func:`split_rows`, valid for this ``flooded`` only (the calibration splits
    the same flood with counts from the table and from the areas). Returns ``(H, W)`` int32 labels
    (``flooded`` is left as it is)."""
    p = params or WatershedParams()
    labels = flooded
    if p.split_rows and p.row_counts_from == "area":
        if log_area is None:
            raise ValueError("row_counts_from='area' needs the predicted building area (a 4-channel prob)")
        labels = split_rows(labels, log_area=log_area, shapes=shapes)
    elif p.split_rows and p.row_counts:
        labels = split_rows(labels, p.row_counts, shapes=shapes)
    if p.dividing_lines:
        labels = _part_touching(labels)
    return labels.astype(np.int32)


# --- row splitting ------------------------------------------------------------------------------------
# Terraced houses share walls that SAR rarely shows, so a footprint model finds whole rows. How many
# buildings a blob of a given area and depth holds is learned from the training labels (each
# connected blob of the label mask, i.e. a row of touching buildings or one building alone) and
# stored as a table over log area x log depth, ROW_LOG_STEP wide bins, one base-36 digit per bin.
ROW_AREA_LOG0, ROW_DEPTH_LOG0, ROW_LOG_STEP = float(np.log(40.0)), float(np.log(4.0)), 0.15
ROW_AREA_BINS, ROW_DEPTH_BINS = 52, 23  # areas 40 .. ~100,000 px, depths 4 .. ~120 px
ROW_NEIGHBOURS = 15  # blobs of the training labels voting (median) for each bin's count


def blob_shape(blob: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(area px, depth px, skeleton)`` of a bool blob ``(h, w)``: depth is twice the median
    distance from the skeleton to the background (a row's width across), the skeleton a bool
    ``(h, w)`` (scikit-image's thinning)."""
    from skimage.morphology import skeletonize

    skeleton = skeletonize(blob)
    if not skeleton.any():
        return float(blob.sum()), 1.0, skeleton
    inside = ndi.distance_transform_edt(np.pad(blob, 1))[1:-1, 1:-1]
    return float(blob.sum()), float(2 * np.median(inside[skeleton])), skeleton


def fit_row_counts(label_images: Iterable[np.ndarray],
                   min_area: float = WatershedParams.min_area) -> tuple[str, ...]:
    """The row-count table from instance label images ``(H, W)`` int (0 = background): for every
    connected blob of the label mask of at least ``min_area`` px (default: the smallest polygon the
    watershed keeps), its area, depth and the number of
    labels covering at least half of ``min_area`` px of it; each table bin holds the median count
    of the ``ROW_NEIGHBOURS`` blobs nearest in (log area, log depth). ``()`` without blobs."""
    samples = []
    for labels in label_images:
        blobs, _ = ndi.label(labels > 0)
        for k, sl in enumerate(ndi.find_objects(blobs), start=1):
            blob = blobs[sl] == k
            if blob.sum() < min_area:
                continue
            _, counts = np.unique(labels[sl][blob], return_counts=True)
            area, depth, _ = blob_shape(blob)
            samples.append((np.log(area), np.log(depth), max(1, int((counts >= min_area / 2).sum()))))
    if not samples:
        return ()
    from scipy.spatial import cKDTree

    x = np.asarray(samples)
    scale = x[:, :2].std(0) + 1e-6  # neighbours in standardised log area / log depth
    area_c = ROW_AREA_LOG0 + ROW_LOG_STEP * (np.arange(ROW_AREA_BINS) + 0.5)
    depth_c = ROW_DEPTH_LOG0 + ROW_LOG_STEP * (np.arange(ROW_DEPTH_BINS) + 0.5)
    grid = np.stack(np.meshgrid(area_c, depth_c, indexing="ij"), -1).reshape(-1, 2)
    k = min(ROW_NEIGHBOURS, len(x))
    _, nearest = cKDTree(x[:, :2] / scale).query(grid / scale, k=k)
    votes = x[np.asarray(nearest).reshape(len(grid), k), 2]
    table = np.clip(np.rint(np.median(votes, axis=1)), 1, 35).astype(int).reshape(ROW_AREA_BINS, ROW_DEPTH_BINS)
    return tuple("".join(np.base_repr(v, 36) for v in row) for row in table)


def row_count(table: tuple[str, ...], area: float, depth: float) -> int:
    """Buildings a blob of ``area`` px and ``depth`` px holds, by the :func:`fit_row_counts` table."""
    i = int(np.clip((np.log(max(area, 1.0)) - ROW_AREA_LOG0) // ROW_LOG_STEP, 0, ROW_AREA_BINS - 1))
    j = int(np.clip((np.log(max(depth, 1.0)) - ROW_DEPTH_LOG0) // ROW_LOG_STEP, 0, ROW_DEPTH_BINS - 1))
    return int(table[i][j], 36)


def _skeleton_arc(skeleton: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(points (n, 2) int, arc (n,) float px)``: the skeleton's pixels and their distance along it
    from one end of its longest path (pixels joined 8-connected, diagonals sqrt 2 long)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    pts = np.argwhere(skeleton)
    index = np.full(skeleton.shape, -1, np.int64)
    index[pts[:, 0], pts[:, 1]] = np.arange(len(pts))
    padded = np.pad(index, 1, constant_values=-1)
    src, dst, length = [], [], []
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbour pair once
        other = padded[1 + pts[:, 0] + dr, 1 + pts[:, 1] + dc]
        ok = other >= 0
        src.append(np.nonzero(ok)[0])
        dst.append(other[ok])
        length.append(np.full(int(ok.sum()), np.hypot(dr, dc)))
    src, dst, length = np.concatenate(src), np.concatenate(dst), np.concatenate(length)
    graph = coo_matrix((length, (src, dst)), shape=(len(pts), len(pts))).tocsr()
    first = dijkstra(graph, directed=False, indices=0)
    end = int(np.argmax(np.where(np.isfinite(first), first, -1)))
    arc = dijkstra(graph, directed=False, indices=end)
    return pts, np.where(np.isfinite(arc), arc, 0.0)


def split_blob(blob: np.ndarray, n: int, depth: float, skeleton: np.ndarray) -> np.ndarray:
    """``(h, w)`` int32 labels 1..n of a bool ``blob`` cut into ``n`` parts of equal length along
    its skeleton: one marker per part centre, every pixel to its nearest marker. The skeleton
    stops about half a depth short of each end, so the row's length is its arc + one depth."""
    if n <= 1 or skeleton.sum() < 2:
        return blob.astype(np.int32)
    pts, arc = _skeleton_arc(skeleton)
    total = arc.max()
    centres = np.clip((np.arange(n) + 0.5) * (total + depth) / n - depth / 2, 0, total)
    markers = np.zeros(blob.shape, np.int32)
    for i, c in enumerate(centres):
        r, col = pts[int(np.argmin(np.abs(arc - c)))]
        if markers[r, col] == 0:
            markers[r, col] = i + 1
    _, (rows, cols) = ndi.distance_transform_edt(markers == 0, return_indices=True)
    return np.where(blob, markers[rows, cols], 0).astype(np.int32)


def area_count(area: float, log_areas: np.ndarray) -> int:
    """Buildings in a blob of ``area`` px whose pixels predict building areas ``exp(log_areas)`` px
    (any shape): the area over their median, rounded, at least 1."""
    if log_areas.size == 0:
        return 1
    return max(1, int(np.rint(area / np.exp(float(np.median(log_areas))))))


def split_rows(labels: np.ndarray, table: tuple[str, ...] = (), log_area: np.ndarray | None = None,
               shapes: dict | None = None) -> np.ndarray:
    """Instance labels ``(H, W)`` int32 with every building cut into equal parts along its
    skeleton (numbered from 1 again): as many as the row-count ``table`` gives for its area and
    depth, or, with ``log_area`` (``(H, W)`` float, the predicted log building area in px), as
    :func:`area_count` gives from its pixels' predictions. ``shapes``: a dict filled with each
    label's :func:`blob_shape` and read on the next call with the same ``labels``."""
    if log_area is None and not table:
        raise ValueError("split_rows needs a row-count table or a predicted log area")
    shapes = {} if shapes is None else shapes
    out = np.zeros(labels.shape, np.int32)
    count = 0
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        blob = labels[sl] == k
        if k not in shapes:
            shapes[k] = blob_shape(blob)
        area, depth, skeleton = shapes[k]
        n = row_count(table, area, depth) if log_area is None else area_count(area, log_area[sl][blob])
        parts = split_blob(blob, n, depth, skeleton)
        out[sl][parts > 0] = parts[parts > 0] + count
        count += int(parts.max())
    return out


FLOOD_LEVELS = 16  # footprint-probability steps of the flood (1 - footprint, quantised)


def _flood(seeds: np.ndarray, mask: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Grow ``seeds`` ``(H, W)`` int32 over ``mask``: a priority flood (scikit-image's watershed,
    as the SN6 winner's) in order of falling footprint probability, quantised to
    ``FLOOD_LEVELS`` steps, 4-connected. Within a step the flood is breadth first from every seed
    at once, so neighbours split a plateau between them at mid-distance. Mask pixels no seed
    reaches stay 0.

    scipy's ``watershed_ift`` (used before) scores a path by its largest step: on a plateau, such
    as the edge band around a terraced row, whichever seed is flooded first takes the band around
    its neighbours too (a row of 20 x 15 px houses: the first 475 px, the others 204 and 191).
    """
    from skimage.segmentation import watershed

    level = np.clip(np.rint(FLOOD_LEVELS * (1 - fp)), 0, FLOOD_LEVELS).astype(np.uint8)
    return watershed(level, markers=seeds, mask=mask, connectivity=1).astype(np.int32)


def _part_touching(labels: np.ndarray) -> np.ndarray:
    """``labels`` with a 1 px background line wherever two buildings touch (4-neighbours): of
    each touching pair of pixels, the one of the higher label is cleared."""
    out = labels.copy()
    for axis in (0, 1):
        a = labels
        b = np.roll(labels, -1, axis=axis)  # the neighbour below / to the right
        touch = (a > 0) & (b > 0) & (a != b)
        edge = [slice(None)] * 2
        edge[axis] = -1
        touch[tuple(edge)] = False  # np.roll wraps around: the last row / column has no neighbour
        clear_self = touch & (a > b)
        clear_next = np.roll(touch & (b > a), 1, axis=axis)
        out[clear_self | clear_next] = 0
    return out


def _largest_polygon(geom: shapely.Geometry) -> Polygon | None:
    """The largest Polygon in ``geom`` (itself, or a part of a (nested) collection); None if none."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type == "Polygon":
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon" and not g.is_empty]
    polys += [p for g in getattr(geom, "geoms", []) if g.geom_type == "MultiPolygon" for p in g.geoms]
    return max(polys, key=lambda g: g.area) if polys else None


def _region_polygon(region: np.ndarray, offset: np.ndarray, p: WatershedParams) -> Polygon | None:
    """The polygon of one label's ``(h, w)`` uint8 mask padded by 1 px (see
    :func:`polygonize_instances`), ``offset`` ``(x, y)`` px added to its contour; None when too small."""
    contours, hierarchy = cv2.findContours(region, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    shells, holes = [], []
    for contour, h in zip(contours, hierarchy[0]):
        if len(contour) < 3:  # a one- or two-pixel line: no area worth keeping
            continue
        pts = contour[:, 0, :].astype(np.float64) + offset
        (holes if h[3] >= 0 else shells).append(pts)
    if not shells:
        return None
    geom = shapely.union_all([Polygon(s).buffer(0) for s in shells])
    if holes:
        geom = geom.difference(shapely.union_all([Polygon(h).buffer(0) for h in holes]))
    geom = geom.buffer(0.5 + p.outline_buffer, join_style="mitre", mitre_limit=2.0)
    if p.simplify_tolerance > 0:
        geom = geom.simplify(p.simplify_tolerance, preserve_topology=True)
    poly = _largest_polygon(geom.buffer(0) if not geom.is_valid else geom)
    return None if poly is None or poly.area < p.min_area else poly


def polygonize_instances(labels: np.ndarray, footprint: np.ndarray | None = None,
                         params: WatershedParams | None = None, cache: dict | None = None
                         ) -> tuple[list[Polygon], list[float]]:
    """Polygons (pixel coordinates) and confidences of the labelled buildings.

    Each label's outer contour (``cv2.findContours`` on pixel centres) is shifted by half a pixel
    and grown by half a pixel with mitred corners, so a polygon covers its pixels' squares (plus
    ``outline_buffer`` px); holes are kept; it is simplified and dropped when its area is under ``min_area``.
    Confidence = mean footprint probability over the building (1.0 without ``footprint``).
    ``cache``: a dict shared by calls on the same ``footprint`` with the same ``params`` (e.g. one
    flood with and without row splitting): a label whose pixels an earlier call polygonized reuses
    that result, whatever its number.
    """
    p = params or WatershedParams()
    polys: list[Polygon] = []
    scores: list[float] = []
    n = int(labels.max()) if labels.size else 0
    mean_fp = (np.asarray(ndi.mean(footprint, labels, np.arange(1, n + 1))) if footprint is not None and n
               else np.ones(n))
    for label, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        r0, c0 = sl[0].start, sl[1].start
        region = np.pad((labels[sl] == label).astype(np.uint8), 1)
        key = (r0, c0, region.shape, region.tobytes()) if cache is not None else None
        if key is not None and key in cache:
            poly, score = cache[key]
        else:
            poly = _region_polygon(region, np.array([c0 - 1 + 0.5, r0 - 1 + 0.5]), p)
            score = float(mean_fp[label - 1])
            if key is not None:
                cache[key] = (poly, score)
        if poly is not None:
            polys.append(poly)
            scores.append(score)
    return polys, scores


def probabilities_to_polygons(prob: np.ndarray, params: WatershedParams | None = None
                              ) -> tuple[list[Polygon], list[float]]:
    """``(3, H, W)`` probabilities -> building polygons and confidences (watershed + polygonize)."""
    labels = watershed_instances(prob, params)
    return polygonize_instances(labels, prob[0], params)


def distance_to_nodata(valid: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 distance (px) from each pixel to the nearest invalid pixel or the tile's
    border (pixels outside the tile count as invalid), for a ``(H, W)`` bool validity mask."""
    padded = np.pad(valid.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]


def touches_nodata(polygons: list[Polygon], distance: np.ndarray, margin_px: float = 2.0) -> list[bool]:
    """Whether each pixel-space polygon comes within ``margin_px`` of its tile's border or nodata
    (``distance`` from :func:`distance_to_nodata`): such a building may be cut, and the same
    building seen whole in an overlapping tile is the better copy."""
    h, w = distance.shape
    out = []
    for poly in polygons:
        xy = np.asarray(poly.exterior.coords)
        cols = np.clip(np.floor(xy[:, 0]).astype(int), 0, w - 1)
        rows = np.clip(np.floor(xy[:, 1]).astype(int), 0, h - 1)
        out.append(bool(distance[rows, cols].min() < margin_px))
    return out


def merge_footprints(polygons: np.ndarray, confidence: np.ndarray, sources: np.ndarray, cut: np.ndarray,
                     duplicate_share: float = 0.5, min_area: float = 0.0, views: np.ndarray | None = None
                     ) -> list[dict]:
    """One polygon per building from the footprints of overlapping tiles, in map coordinates.

    Polygons are taken in priority order: whole before ``cut`` (near their tile's border or
    nodata), then by confidence, then by area. One that overlaps an already kept polygon by at
    least ``duplicate_share`` is the same building seen again: it adds its tile to the kept one's
    ``tiles`` and, where the kept one is itself cut, the part of the building only it saw (the
    union, less every other kept polygon), so a building that no tile holds whole is put back
    together. Otherwise the kept polygons are cut out of it (its largest remaining part is kept
    when at least ``min_area``), so no two outputs overlap.

    The share is the overlap over the smaller of the two polygons, each restricted to what the
    OTHER one's tile sees (``views``: the tiles' extents in map units; without them, the whole
    polygons): a building cut by one tile's border is compared only where both tiles see it.

    Args:
        polygons: ``(n,)`` shapely Polygons in map units (metres for UTM).
        confidence, sources, cut: ``(n,)`` float scores, str source tile ids, bool flags.
        views: optional ``(n,)`` shapely Polygons, the extent of each polygon's tile.
    Returns:
        one dict per building: ``geometry``, ``confidence`` (the kept copy's), ``image_id`` (its
        tile), ``tiles`` (every tile that saw it, comma-separated), ``n_tiles``, ``area_m2``.
    """
    polygons = np.asarray(polygons, dtype=object)
    n = len(polygons)
    if n == 0:
        return []
    fixed = np.empty(n, dtype=object)
    fixed[:] = [None if g is None or g.is_empty else _largest_polygon(g if g.is_valid else shapely.make_valid(g))
                for g in polygons]
    present = np.array([g is not None for g in fixed])
    areas = np.where(present, shapely.area(np.where(present, fixed, shapely.Polygon())), 0.0)
    order = np.lexsort((-areas, -np.asarray(confidence, np.float64), np.asarray(cut, bool)))
    tree = shapely.STRtree(np.where(present, fixed, shapely.Polygon()))
    kept: dict[int, Polygon] = {}
    kept_view: dict[int, Polygon | None] = {}
    kept_cut: dict[int, bool] = {}
    owner: dict[int, int] = {}  # input copy -> the kept polygon it became or joined
    seen_by: dict[int, list[str]] = {}

    def seen(geom: Polygon, view: Polygon | None) -> float:
        return float(geom.area if view is None else geom.intersection(view).area)

    for i in order:
        geom = fixed[i]
        if geom is None:
            continue
        view = None if views is None else views[i]
        # a kept polygon is the union of its copies (less others): it meets geom only where a copy does
        neighbours = sorted({owner[c] for c in tree.query(geom) if c in owner})
        overlaps = [(float(geom.intersection(kept[j]).area), j) for j in neighbours if kept[j].intersects(geom)]
        overlaps = [(a, j) for a, j in overlaps if a > 0]
        shares = [(a / max(min(seen(geom, kept_view[j]), seen(kept[j], view)), 1e-12), j) for a, j in overlaps]
        best = max(shares) if shares else None
        if best is not None and best[0] >= duplicate_share:
            j = best[1]
            seen_by[j].append(str(sources[i]))
            owner[i] = j
            if kept_cut[j] and not geom.within(kept[j]):
                grown = kept[j].union(geom)
                for _, k in overlaps:
                    if k != j:
                        grown = grown.difference(kept[k])
                kept[j] = _largest_polygon(grown) or kept[j]
                kept_view[j] = None if view is None or kept_view[j] is None else kept_view[j].union(view)
                kept_cut[j] = kept_cut[j] and bool(cut[i])
            continue
        for _, j in overlaps:
            geom = geom.difference(kept[j])
        geom = _largest_polygon(geom)
        if geom is None or geom.area < min_area or geom.area <= 0:
            continue
        kept[i], kept_view[i], kept_cut[i] = geom, view, bool(cut[i])
        owner[i] = i
        seen_by[i] = [str(sources[i])]
    out = []
    for i, geom in kept.items():
        tiles = sorted(set(seen_by[i]))
        out.append({"geometry": geom, "confidence": float(confidence[i]), "image_id": str(sources[i]),
                    "tiles": ",".join(tiles), "n_tiles": len(tiles), "area_m2": round(float(geom.area), 2)})
    return out

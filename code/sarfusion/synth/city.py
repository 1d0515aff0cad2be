"""A procedural city: a vector plan in metres, rasterised on demand for any window and pixel size.

The plan (:class:`CityPlan`) holds a slightly irregular street grid, blocks with a land use
(terraced houses, apartment slabs, industrial sheds, parks, bare lots, plazas, ponds), an optional
river or canal, building footprints with heights and roof shapes, and trees. It is generated once
per scene; :func:`rasterize` then draws any window of it at any resolution, so overlapping SAR
strips, the optical image and the labels all see exactly the same ground.

Plan frame: metres, ``x`` to the east, ``y`` to the SOUTH (like image rows), origin at the plan's
top-left corner. A georeferenced product places the plan with its own geotransform.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

# Material classes of the raster city (0 is unused so that "no class" can never look valid).
GRASS, TREE, SOIL, WATER, ROAD, PAVED, ROOF = 1, 2, 3, 4, 5, 6, 7
CLASS_NAMES = {GRASS: "grass", TREE: "tree", SOIL: "bare soil", WATER: "water", ROAD: "road",
               PAVED: "paved", ROOF: "roof"}
N_CLASSES = 8

HOUSE, APARTMENT, INDUSTRIAL = 0, 1, 2
_SIDEWALK_M = 2.5

# Roof colours (RGB) by building kind: Dutch red/brown tiles, dark and light flat roofs.
_ROOF_PALETTE = {
    HOUSE: np.array([[150, 78, 60], [120, 64, 52], [92, 86, 84], [165, 98, 70], [70, 70, 74]], np.float32),
    APARTMENT: np.array([[160, 158, 152], [118, 118, 116], [190, 188, 180], [88, 90, 92]], np.float32),
    INDUSTRIAL: np.array([[175, 178, 180], [140, 146, 150], [200, 200, 196], [110, 118, 122]], np.float32),
}


@dataclass
class Buildings:
    """Building footprints and roof shapes, all in plan metres. ``n`` buildings.

    Height of a roof point: ``eave + rise * (1 - |d| / half_depth)`` clipped to ``[eave, eave+rise]``,
    where ``d`` is its distance to the ridge line through ``center`` along ``angle``
    (flat roofs have ``rise == 0``).
    """

    polygons: np.ndarray      # (n,) object array of shapely Polygons (plan metres)
    eave: np.ndarray          # (n,) float32 metres
    rise: np.ndarray          # (n,) float32 metres (0 = flat roof)
    angle: np.ndarray         # (n,) float32 radians, main axis / ridge direction from +x
    center: np.ndarray        # (n, 2) float64 plan metres (x, y)
    half_depth: np.ndarray    # (n,) float32 metres, ridge to eave distance
    roof_rgb: np.ndarray      # (n, 3) uint8
    kind: np.ndarray          # (n,) uint8 HOUSE / APARTMENT / INDUSTRIAL

    def __len__(self) -> int:
        return len(self.polygons)

    @property
    def mean_height(self) -> np.ndarray:
        """Mean roof height over the footprint (m): a linear ramp averages to eave + rise / 2."""
        return self.eave + self.rise / 2

    @property
    def median_height(self) -> np.ndarray:
        return self.eave + self.rise / 2

    @property
    def std_height(self) -> np.ndarray:
        """Std of roof height over the footprint (m): uniform on [eave, eave + rise]."""
        return self.rise / np.sqrt(12.0)

    @property
    def bounds(self) -> np.ndarray:
        """(n, 4) xmin, ymin, xmax, ymax in plan metres."""
        return shapely.bounds(self.polygons) if len(self) else np.zeros((0, 4))


@dataclass
class CityPlan:
    """Vector city in plan metres (x east, y south)."""

    width_m: float
    height_m: float
    seed: int
    road_lines: np.ndarray    # (k, 5): x0, y0, x1, y1, width_m (long centre lines)
    blocks: list              # [(corners (4, 2) float64, ground class int)]
    river: Polygon | None     # water polygon (bank drawn 6 m wider as grass)
    buildings: Buildings
    trees: np.ndarray         # (t, 4): x, y, radius_m, height_m
    crossings: np.ndarray     # (c, 2): x, y of road centre-line crossings


@dataclass
class CityRaster:
    """One rasterised window of a plan. All arrays ``(rows, cols)``."""

    pixel_size: float
    x0: float                 # plan metres of the window's top-left corner
    y0: float
    classes: np.ndarray       # uint8 material class (GRASS..ROOF)
    height: np.ndarray        # float32 metres above ground (roofs and tree canopy; 0 elsewhere)
    building_id: np.ndarray   # int32, 0 = none, i + 1 = plan.buildings index i
    noise_fine: np.ndarray    # float32 ~N(0, 1) per pixel, fixed by ground position
    noise_mid: np.ndarray     # float32 in ~[-1, 1], value noise with a 3 m lattice
    noise_large: np.ndarray   # float32 in ~[-1, 1], value noise with a 30 m lattice

    @property
    def shape(self) -> tuple[int, int]:
        return self.classes.shape


# --------------------------------------------------------------------------------------------
# plan generation


def _intersect(n1: np.ndarray, d1: float, n2: np.ndarray, d2: float) -> np.ndarray:
    """Point p with n1.p = d1 and n2.p = d2."""
    return np.linalg.solve(np.array([n1, n2]), np.array([d1, d2]))


def _grid_family(rng: np.random.Generator, base_angle: float, center: np.ndarray, half: float,
                 spacing: tuple[float, float]) -> list[tuple[np.ndarray, float, float]]:
    """Parallel-ish road lines as (unit normal, offset, width) along ``base_angle``'s normal."""
    lines = []
    pos = -half - rng.uniform(0, spacing[1])
    count = 0
    while pos < half + spacing[1]:
        jitter = rng.normal(0, 0.03)  # ~2 deg: streets are not perfectly parallel
        normal = np.array([np.cos(base_angle + jitter), np.sin(base_angle + jitter)])
        axis = np.array([np.cos(base_angle), np.sin(base_angle)])
        point = center + pos * axis
        major = count % 4 == 0 and rng.random() < 0.8
        width = rng.uniform(15, 21) if major else rng.uniform(7, 11)
        lines.append((normal, float(normal @ point), float(width)))
        pos += rng.uniform(*spacing)
        count += 1
    return lines


def _rect(origin: np.ndarray, along: np.ndarray, inward: np.ndarray, length: float, depth: float) -> np.ndarray:
    return np.array([origin, origin + along * length, origin + along * length + inward * depth,
                     origin + inward * depth])


def _inside_convex(quad: np.ndarray, pts: np.ndarray) -> bool:
    """True when every point of ``pts`` (k, 2) lies inside the convex quad (4, 2) (either winding)."""
    edges = quad[[1, 2, 3, 0]] - quad                                      # (4, 2)
    rel = pts[:, None, :] - quad[None, :, :]                                # (k, 4, 2)
    cross = edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0]
    return bool((cross >= 0).all() or (cross <= 0).all())


def _rects_overlap(rect: np.ndarray, others: np.ndarray, margin: float) -> bool:
    """Separating-axis test of one rectangle (4, 2) against many (m, 4, 2), with a clearance margin."""
    lo, hi = rect.min(axis=0) - margin, rect.max(axis=0) + margin
    near = (others.max(axis=1) >= lo).all(axis=1) & (others.min(axis=1) <= hi).all(axis=1)
    others = others[near]
    if len(others) == 0:
        return False
    polys = np.concatenate([rect[None], others])                          # (m+1, 4, 2)
    e = polys[:, [1, 2], :] - polys[:, [0, 1], :]                          # two edge directions each
    axes = np.stack([-e[..., 1], e[..., 0]], axis=-1)
    axes = axes / np.linalg.norm(axes, axis=-1, keepdims=True)              # (m+1, 2, 2)
    m = len(others)
    pair_axes = np.concatenate([np.repeat(axes[:1], m, axis=0), axes[1:]], axis=1)  # (m, 4, 2)
    pa = np.einsum("kd,mad->mak", rect, pair_axes)                          # (m, 4 axes, 4 corners)
    pb = np.einsum("mkd,mad->mak", others, pair_axes)
    separated = (pa.max(-1) + margin < pb.min(-1)) | (pb.max(-1) + margin < pa.min(-1))
    return bool((~separated.any(axis=1)).any())


def _place_along_edges(rng, corners: np.ndarray, kind: int, placed: list, out: list) -> None:
    """Place buildings of ``kind`` along the inside of each block edge, rejecting overlaps.

    ``placed`` collects the rectangles (4, 2) already used in this block (an L-shape adds two).
    """
    centroid = corners.mean(axis=0)
    for e in range(4):
        pa, pb = corners[e], corners[(e + 1) % 4]
        edge_len = float(np.hypot(*(pb - pa)))
        if edge_len < 12:
            continue
        along = (pb - pa) / edge_len
        inward = np.array([-along[1], along[0]])
        if inward @ (centroid - pa) < 0:
            inward = -inward
        setback = {HOUSE: (1.0, 5.0), APARTMENT: (3.0, 9.0), INDUSTRIAL: (4.0, 12.0)}[kind]
        setback = rng.uniform(*setback)
        s = rng.uniform(1.0, 4.0)
        while s < edge_len - 5:
            if kind == HOUSE:
                length, depth, gap = rng.uniform(6.5, 12), rng.uniform(8, 13), rng.uniform(1.8, 4.5)
            elif kind == APARTMENT:
                depth = rng.uniform(10, 14)
                length, gap = min(rng.uniform(22, 45), 480 / depth), rng.uniform(8, 16)
            else:
                depth = rng.uniform(14, 22)
                length, gap = min(rng.uniform(15, 30), 490 / depth), rng.uniform(6, 14)
            if rng.random() < (0.12 if kind == HOUSE else 0.08):  # an empty plot
                s += rng.uniform(5, 14)
                continue
            origin = pa + along * s + inward * setback
            rects = [_rect(origin, along, inward, length, depth)]
            area = length * depth
            if rng.random() < (0.15 if kind == HOUSE else 0.3):  # L-shape: a wing reaching further in
                wing_len = length * rng.uniform(0.35, 0.5)
                wing_depth = rng.uniform(4, 9 if kind == HOUSE else 14)
                start = 0.0 if rng.random() < 0.5 else length - wing_len
                wing_area = wing_len * wing_depth
                if area + wing_area <= 500:
                    rects.append(_rect(origin + along * start + inward * depth, along, inward, wing_len, wing_depth))
                    area += wing_area
            ok = 37.5 <= area <= 500 and all(_inside_convex(corners, r) for r in rects)
            if ok and placed:
                stack = np.asarray(placed)
                ok = not any(_rects_overlap(r, stack, 1.5) for r in rects)
            if ok:
                placed.extend(rects)
                l_shape = len(rects) > 1
                if kind == HOUSE:
                    pitched = (not l_shape) and rng.random() < 0.65
                    eave = rng.uniform(5.0, 9.0) if pitched else rng.uniform(3.5, 10.0)
                    rise = rng.uniform(2.5, 5.0) if pitched else 0.0
                elif kind == APARTMENT:
                    eave, rise = 12.0 + 28.0 * rng.beta(1.3, 3.0), 0.0
                else:
                    eave, rise = rng.uniform(6.0, 14.0), 0.0
                # the ridge runs along the street; the half depth is measured across it
                out.append((rects, eave, rise, float(np.arctan2(along[1], along[0])),
                            origin + along * length / 2 + inward * depth / 2, depth / 2, kind))
            s += length + gap


def _footprint(rects: list) -> Polygon:
    """One simple polygon from a rectangle or a rectangle plus a wing sharing an edge."""
    if len(rects) == 1:
        return Polygon(rects[0])
    merged = shapely.union(Polygon(rects[0]), Polygon(rects[1]), grid_size=0.001)
    if merged.geom_type != "Polygon":  # touching only at a point: keep the main body
        return Polygon(rects[0])
    return Polygon(merged.exterior.coords)


def _river(rng: np.random.Generator, w: float, h: float) -> Polygon:
    """A meandering canal/river polygon crossing the plan."""
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    center = np.array([w, h]) / 2 + rng.uniform(-0.3, 0.3, 2) * np.array([w, h])
    half = np.hypot(w, h)
    t = np.linspace(-half, half, 80)
    wobble = (rng.uniform(20, 60) * np.sin(t / rng.uniform(150, 400) + rng.uniform(0, 6))
              + rng.uniform(5, 20) * np.sin(t / rng.uniform(40, 90)))
    pts = center + t[:, None] * direction + wobble[:, None] * normal
    return LineString(pts).buffer(rng.uniform(12, 30), cap_style="flat")


def plan_city(width_m: float, height_m: float, rng: np.random.Generator, river: bool | None = None) -> CityPlan:
    """Generate a city covering ``width_m`` x ``height_m`` metres (plan frame).

    Args:
        river: force (True) or forbid (False) a canal/river; None = random (70%).
    """
    seed = int(rng.integers(0, 2**31 - 1))
    center = np.array([width_m, height_m]) / 2
    half = float(np.hypot(width_m, height_m)) / 2 + 60
    alpha = rng.uniform(-0.45, 0.45)
    u_lines = _grid_family(rng, alpha, center, half, (55, 115))
    v_lines = _grid_family(rng, alpha + np.pi / 2, center, half, (75, 150))

    road_lines = []
    for normal, d, width in u_lines + v_lines:
        point = normal * d
        along = np.array([-normal[1], normal[0]])
        p0, p1 = point - along * 3 * half, point + along * 3 * half
        road_lines.append([p0[0], p0[1], p1[0], p1[1], width])

    crossings = []
    for nu, du, _ in u_lines:
        for nv, dv, _ in v_lines:
            p = _intersect(nu, du, nv, dv)
            if 0 <= p[0] <= width_m and 0 <= p[1] <= height_m:
                crossings.append(p)

    river_poly = _river(rng, width_m, height_m) if (rng.random() < 0.7 if river is None else river) else None
    keep_out = river_poly.buffer(8) if river_poly is not None else None

    land_uses = np.array(["house", "apartment", "industrial", "park", "lot", "plaza", "pond"])
    land_p = np.array([0.56, 0.14, 0.08, 0.10, 0.05, 0.04, 0.03])
    ground_of = {"house": GRASS, "apartment": GRASS, "industrial": PAVED, "park": GRASS,
                 "lot": SOIL, "plaza": PAVED, "pond": WATER}
    kind_of = {"house": HOUSE, "apartment": APARTMENT, "industrial": INDUSTRIAL}

    blocks, raw_buildings, trees = [], [], []
    bbox = shapely.box(-50, -50, width_m + 50, height_m + 50)
    for i in range(len(u_lines) - 1):
        for j in range(len(v_lines) - 1):
            (n1, d1, w1), (n2, d2, w2) = u_lines[i], u_lines[i + 1]
            (m1, e1, v1), (m2, e2, v2) = v_lines[j], v_lines[j + 1]
            o1, o2 = w1 / 2 + _SIDEWALK_M, w2 / 2 + _SIDEWALK_M
            q1, q2 = v1 / 2 + _SIDEWALK_M, v2 / 2 + _SIDEWALK_M
            corners = np.array([
                _intersect(n1, d1 + o1, m1, e1 + q1), _intersect(n2, d2 - o2, m1, e1 + q1),
                _intersect(n2, d2 - o2, m2, e2 - q2), _intersect(n1, d1 + o1, m2, e2 - q2),
            ])
            quad = Polygon(corners)
            if not quad.is_valid or quad.area < 300 or not quad.intersects(bbox):
                continue
            use = str(rng.choice(land_uses, p=land_p))
            blocks.append((corners, ground_of[use]))
            placed: list = []
            if use in kind_of:
                _place_along_edges(rng, corners, kind_of[use], placed, raw_buildings)
            # trees: dense in parks, scattered in gardens and around apartment slabs
            density = {"park": 1 / 70, "house": 1 / 300, "apartment": 1 / 220, "pond": 0.0,
                       "lot": 1 / 2000, "plaza": 1 / 600, "industrial": 1 / 1500}[use]
            n_trees = rng.poisson(quad.area * density)
            if n_trees:
                lo, hi = corners.min(axis=0), corners.max(axis=0)
                pts = rng.uniform(lo, hi, size=(n_trees * 2, 2))
                inside = shapely.contains_xy(quad.buffer(-2), pts[:, 0], pts[:, 1])
                pts = pts[inside][:n_trees]
                if len(pts):
                    r = rng.uniform(2.0, 5.0 if use == "park" else 3.5, len(pts))
                    hgt = rng.uniform(7, 18 if use == "park" else 12, len(pts))
                    trees.append(np.column_stack([pts, r, hgt]))
    # street trees along some roads, on the sidewalks
    for normal, d, width in u_lines + v_lines:
        if rng.random() < 0.35:
            along = np.array([-normal[1], normal[0]])
            t = np.arange(-half, half, rng.uniform(8, 13))
            for side in (-1, 1):
                pts = (normal * (d + side * (width / 2 + 1.5)))[None] + t[:, None] * along[None]
                r = rng.uniform(2.0, 3.5, len(t))
                trees.append(np.column_stack([pts, r, rng.uniform(6, 12, len(t))]))
    trees_arr = np.concatenate(trees) if trees else np.zeros((0, 4))
    trees_arr = trees_arr[(trees_arr[:, 0] > -20) & (trees_arr[:, 0] < width_m + 20)
                          & (trees_arr[:, 1] > -20) & (trees_arr[:, 1] < height_m + 20)]

    raw_buildings = [(_footprint(b[0]),) + b[1:] for b in raw_buildings]
    if raw_buildings:
        polys = np.array([b[0] for b in raw_buildings], dtype=object)
        keep = np.ones(len(polys), bool)
        if keep_out is not None:
            keep &= ~shapely.intersects(polys, keep_out)
            trees_arr = trees_arr[~shapely.contains_xy(keep_out, trees_arr[:, 0], trees_arr[:, 1])]
        b = shapely.bounds(polys)
        keep &= (b[:, 2] > -60) & (b[:, 0] < width_m + 60) & (b[:, 3] > -60) & (b[:, 1] < height_m + 60)
        raw_buildings = [rb for rb, k in zip(raw_buildings, keep) if k]
    n = len(raw_buildings)
    kinds = np.array([b[6] for b in raw_buildings], np.uint8)
    roof_rgb = np.zeros((n, 3), np.uint8)
    for k, palette in _ROOF_PALETTE.items():
        sel = np.nonzero(kinds == k)[0]
        if len(sel):
            base = palette[rng.integers(0, len(palette), len(sel))]
            roof_rgb[sel] = np.clip(base * rng.uniform(0.85, 1.15, (len(sel), 1)), 1, 255).astype(np.uint8)
    buildings = Buildings(
        polygons=np.array([b[0] for b in raw_buildings], dtype=object),
        eave=np.array([b[1] for b in raw_buildings], np.float32),
        rise=np.array([b[2] for b in raw_buildings], np.float32),
        angle=np.array([b[3] for b in raw_buildings], np.float32),
        center=np.array([b[4] for b in raw_buildings], np.float64).reshape(n, 2),
        half_depth=np.array([b[5] for b in raw_buildings], np.float32),
        roof_rgb=roof_rgb,
        kind=kinds,
    )
    return CityPlan(width_m=float(width_m), height_m=float(height_m), seed=seed,
                    road_lines=np.array(road_lines, np.float64), blocks=blocks, river=river_poly,
                    buildings=buildings, trees=trees_arr,
                    crossings=np.array(crossings, np.float64).reshape(-1, 2))


# --------------------------------------------------------------------------------------------
# deterministic position-keyed noise (overlapping windows see identical texture)


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) float32 from integer lattice coordinates (a multiply-xorshift hash)."""
    h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= np.uint64(seed * 0x165667B19E3779F9 % (1 << 64))
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return ((h >> np.uint64(40)).astype(np.float32)) / np.float32(1 << 24)


def _value_noise(x_m: np.ndarray, y_m: np.ndarray, lattice_m: float, seed: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] at pixel-centre coordinates ``x_m`` (cols,) and ``y_m`` (rows,)."""
    gx, gy = x_m / lattice_m, y_m / lattice_m
    ix0, iy0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    fx, fy = gx - ix0, gy - iy0
    fx, fy = (fx * fx * (3 - 2 * fx)).astype(np.float32), (fy * fy * (3 - 2 * fy)).astype(np.float32)
    lx = np.arange(ix0.min(), ix0.max() + 2)
    ly = np.arange(iy0.min(), iy0.max() + 2)
    lat = _hash01(lx[None, :] + (1 << 30), ly[:, None] + (1 << 30), seed) * 2 - 1  # (ny, nx)
    cx0, cy0 = ix0 - lx[0], iy0 - ly[0]
    along_x = lat[:, cx0] * (1 - fx) + lat[:, cx0 + 1] * fx            # (ny, cols)
    return along_x[cy0] * (1 - fy)[:, None] + along_x[cy0 + 1] * fy[:, None]


# --------------------------------------------------------------------------------------------
# rasterisation


def _to_px(xy: np.ndarray, x0: float, y0: float, ps: float) -> np.ndarray:
    """Plan metres -> cv2 fixed-point (shift 4) coordinates; pixel (r, c) spans [c, c+1) x [r, r+1)."""
    return np.round(((xy - (x0, y0)) / ps - 0.5) * 16).astype(np.int32)


def rasterize(plan: CityPlan, x0: float, y0: float, cols: int, rows: int, pixel_size: float) -> CityRaster:
    """Draw the window whose top-left corner is plan point (x0, y0), ``rows`` x ``cols`` pixels."""
    ps = float(pixel_size)
    x1, y1 = x0 + cols * ps, y0 + rows * ps
    classes = np.full((rows, cols), PAVED, np.uint8)  # sidewalks and anything between blocks
    for corners, ground in plan.blocks:
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        if hi[0] < x0 or lo[0] > x1 or hi[1] < y0 or lo[1] > y1:
            continue
        cv2.fillPoly(classes, [_to_px(corners, x0, y0, ps)], int(ground), lineType=cv2.LINE_8, shift=4)
    if plan.river is not None:
        for poly, cls in ((plan.river.buffer(6), GRASS), (plan.river, WATER)):
            parts = getattr(poly, "geoms", [poly])
            for part in parts:
                cv2.fillPoly(classes, [_to_px(np.asarray(part.exterior.coords), x0, y0, ps)], int(cls), shift=4)
    for xa, ya, xb, yb, width in plan.road_lines:  # roads last: bridges cross the river
        pa, pb = _to_px(np.array([[xa, ya], [xb, yb]]), x0, y0, ps)
        cv2.line(classes, tuple(int(v) for v in pa), tuple(int(v) for v in pb), int(ROAD),
                 thickness=max(1, int(round(width / ps))), lineType=cv2.LINE_8, shift=4)

    building_id = np.zeros((rows, cols), np.int32)
    b = plan.buildings
    if len(b):
        bb = b.bounds
        sel = np.nonzero((bb[:, 2] >= x0) & (bb[:, 0] <= x1) & (bb[:, 3] >= y0) & (bb[:, 1] <= y1))[0]
        for i in sel:
            pts = _to_px(np.asarray(b.polygons[i].exterior.coords), x0, y0, ps)
            cv2.fillPoly(building_id, [pts], int(i) + 1, lineType=cv2.LINE_8, shift=4)
    on_roof = building_id > 0
    classes[on_roof] = ROOF

    height = np.zeros((rows, cols), np.float32)
    if on_roof.any():
        rr, cc = np.nonzero(on_roof)
        idx = building_id[rr, cc] - 1
        dx = x0 + (cc + 0.5) * ps - b.center[idx, 0]
        dy = y0 + (rr + 0.5) * ps - b.center[idx, 1]
        across = np.abs(-dx * np.sin(b.angle[idx]) + dy * np.cos(b.angle[idx]))
        ramp = np.clip(1 - across / b.half_depth[idx], 0, 1)
        height[rr, cc] = b.eave[idx] + b.rise[idx] * ramp

    t = plan.trees
    if len(t):
        sel = (t[:, 0] + t[:, 2] >= x0) & (t[:, 0] - t[:, 2] <= x1) & (t[:, 1] + t[:, 2] >= y0) & (t[:, 1] - t[:, 2] <= y1)
        tree_h = np.zeros((rows, cols), np.float32)
        for x, y, r, h in t[sel]:
            c = _to_px(np.array([[x, y]]), x0, y0, ps)[0]
            cv2.circle(tree_h, (int(c[0]), int(c[1])), max(1, int(round(r / ps * 16))), float(h),
                       thickness=-1, lineType=cv2.LINE_8, shift=4)
        tree_h[(classes == ROOF) | (classes == WATER)] = 0
        mask = tree_h > 0
        if mask.any():
            # dome-shaped crowns: lower towards the crown edge
            edge = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3) * ps
            height[mask] = tree_h[mask] * (0.55 + 0.45 * np.clip(edge[mask] / 2.0, 0, 1))
            classes[mask] = TREE

    gx = np.round(x0 / ps).astype(np.int64) + np.arange(cols, dtype=np.int64)
    gy = np.round(y0 / ps).astype(np.int64) + np.arange(rows, dtype=np.int64)
    u1 = _hash01(gx[None, :] + (1 << 32), gy[:, None] + (1 << 32), plan.seed)
    u2 = _hash01(gx[None, :] + (1 << 33), gy[:, None] + (1 << 33), plan.seed + 1)
    noise_fine = (u1 + u2 - 1.0) * np.float32(np.sqrt(6.0))  # triangular, unit variance
    xc = x0 + (np.arange(cols) + 0.5) * ps
    yc = y0 + (np.arange(rows) + 0.5) * ps
    noise_mid = _value_noise(xc, yc, 3.0, plan.seed + 2)
    noise_large = _value_noise(xc, yc, 30.0, plan.seed + 3)
    return CityRaster(pixel_size=ps, x0=float(x0), y0=float(y0), classes=classes, height=height,
                      building_id=building_id, noise_fine=noise_fine.astype(np.float32),
                      noise_mid=noise_mid.astype(np.float32), noise_large=noise_large.astype(np.float32))

"""A procedural city: a vector plan in metres, rasterised on demand for any window, pixel size and
orientation.

The plan (:class:`CityPlan`) is a patchwork of districts (Voronoi cells of the plan), each with its
own street layout and grid angle: straight grids, curved suburban streets with cul-de-sacs,
organic old towns (irregular lanes), industrial estates and tower clusters. Blocks are what the
streets leave of a district; each block gets a land use: terraced rows and courtyard blocks whose
buildings share walls (adjoining buildings stay separate polygons, as in SpaceNet), detached
houses, apartment slabs, industrial halls, towers, parks, lots, plazas, ponds. Buildings never
overlap (checked once more over the whole plan). Trees stand in gardens, parks and along streets,
and their crowns may overhang roofs; cars, street furniture and roof equipment are small
objects both sensors see. Roof colours can match the ground around them. Optional terrain
(:attr:`CityPlan.terrain`) lifts everything.

Plan frame: metres, ``x`` to the east, ``y`` to the SOUTH (like image rows), origin at the plan's
top-left corner. :func:`rasterize` draws a window whose axes may be rotated (a SAR simulated in
its own range / azimuth frame); textures are NOT part of the raster: each sensor draws its own
position-keyed fields with :func:`texture` and its own salt, so the sensors share the scene
(materials, geometry, heights, moisture), never a noise field.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import LineString, Polygon

# Material classes of the raster city (0 is unused so that "no class" can never look valid).
GRASS, TREE, SOIL, WATER, ROAD, PAVED, ROOF = 1, 2, 3, 4, 5, 6, 7
CLASS_NAMES = {GRASS: "grass", TREE: "tree", SOIL: "bare soil", WATER: "water", ROAD: "road",
               PAVED: "paved", ROOF: "roof"}
N_CLASSES = 8

HOUSE, APARTMENT, INDUSTRIAL, TOWER = 0, 1, 2, 3
# Port structures: in the plan and in both sensors' images, never in the labels (storage tanks,
# container stacks and ships are not BAG buildings, so SpaceNet 6 does not label them).
TANK, CONTAINER, SHIP = 4, 5, 6
LABELLED_KINDS = (HOUSE, APARTMENT, INDUSTRIAL, TOWER)
# Roof materials: what a roof is made of decides both its colour and its radar return.
TILE, BITUMEN, GRAVEL, METAL, GREEN_ROOF = 0, 1, 2, 3, 4
N_ROOF_MATERIALS = 5
# Small objects (CityPlan.objects[:, 4]).
CAR, POLE, ROOF_UNIT = 0, 1, 2
# Port only (plan_city(port=True)): a gantry crane's structure, the foot of one of its legs (a
# leg-ground dihedral) and one metre of rail (glints near broadside; its angle column is the rail's
# direction).
CRANE, CRANE_FOOT, RAIL = 3, 4, 5
PORT_OBJECT_KINDS = (CRANE, CRANE_FOOT, RAIL)
DIHEDRAL_OBJECT_KINDS = (CRANE_FOOT, RAIL)

SIDEWALK_M = 2.5
TERRAIN_CELL_M = 4.0

_ROOF_RGB = {  # per roof material, several colours each (RGB)
    TILE: np.array([[150, 78, 60], [120, 64, 52], [165, 98, 70], [92, 86, 84], [70, 70, 74]], np.float32),
    BITUMEN: np.array([[70, 72, 74], [96, 96, 94], [58, 60, 62], [110, 108, 104]], np.float32),
    GRAVEL: np.array([[160, 158, 152], [130, 128, 122], [182, 178, 170]], np.float32),
    METAL: np.array([[175, 178, 180], [140, 146, 150], [200, 200, 196], [110, 118, 122], [120, 60, 50]], np.float32),
    GREEN_ROOF: np.array([[88, 112, 60], [104, 120, 72]], np.float32),
}
# Ground colour a roof may copy (a roof that looks like the street or the lawn next to it).
GROUND_LIKE_RGB = {ROAD: (84, 86, 88), PAVED: (142, 138, 128), GRASS: (92, 118, 62), SOIL: (138, 118, 92)}

# District styles: street layout, block spacing (u, v in m), street width range, land-use mix.
STYLES = {
    "terraced": dict(layout="grid", spacing=((45, 80), (90, 170)), width=(8, 12),
                     uses={"terraced": 0.74, "courtyard": 0.08, "park": 0.08, "lot": 0.04, "plaza": 0.03, "pond": 0.03}),
    "courtyard": dict(layout="grid", spacing=((70, 120), (80, 150)), width=(10, 16),
                      uses={"courtyard": 0.68, "slabs": 0.1, "park": 0.1, "plaza": 0.08, "lot": 0.04}),
    "suburb": dict(layout="curved", spacing=((55, 80), (160, 320)), width=(7, 10),
                   uses={"detached": 0.8, "park": 0.1, "pond": 0.04, "lot": 0.06}),
    "old_town": dict(layout="organic", spacing=((32, 60), (32, 60)), width=(4.5, 8),
                     uses={"terraced": 0.84, "plaza": 0.1, "park": 0.06}),
    "industrial": dict(layout="grid", spacing=((120, 260), (140, 300)), width=(12, 20),
                       uses={"halls": 0.74, "lot": 0.14, "plaza": 0.12}),
    "towers": dict(layout="grid", spacing=((80, 150), (90, 160)), width=(14, 22),
                   uses={"towers": 0.45, "slabs": 0.25, "plaza": 0.15, "park": 0.15}),
    "slabs": dict(layout="grid", spacing=((90, 160), (110, 180)), width=(10, 16),
                  uses={"slabs": 0.68, "park": 0.2, "plaza": 0.06, "lot": 0.06}),
}
# The port district (plan in docs/synthetic_data.md) is never drawn at random (it is not in
# STYLE_P): ``plan_city(port=True)`` gives it to the district with the most river frontage and cuts
# dock basins into it.
STYLES["port"] = dict(layout="grid", spacing=((150, 300), (150, 300)), width=(14, 22),
                      uses={"containers": 0.35, "tanks": 0.25, "halls": 0.3, "lot": 0.1})
PORT_BASIN_WIDTH_M = (150.0, 400.0)
PORT_BASIN_LENGTH_M = (400.0, 1200.0)
PORT_PIER_M = (150.0, 300.0)     # land between two basins
PORT_QUAY_M = (20.0, 40.0)
# Ship-to-shore gantry cranes and rails on container-terminal quays (plan in docs/synthetic_data.md).
PORT_TERMINAL_P = 0.5             # each long side of a basin
CRANE_SPACING_M = (60.0, 150.0)   # between crane centres along the quay
CRANE_LEG_SPACING_M = 18.0        # along the quay
CRANE_GAUGE_M = 30.5              # across the quay, at most quay width - 6
CRANE_RAIL_OFFSET_M = 3.0         # water-side rail from the quay edge
CRANE_HEIGHT_M = (40.0, 50.0)     # portal and boom above the quay
CRANE_BACKREACH_M = 15.0
CRANE_OUTREACH_M = (45.0, 65.0)
CRANE_FOOT_RCS_M2 = 50.0          # medians, HH; log-normal with 0.5 decades spread
CRANE_LEG_RCS_M2 = 1.0            # per metre of leg height
CRANE_BOOM_RCS_M2 = 2.0           # per metre of boom and portal
RAIL_RCS_M2 = 10.0                # per metre of rail at broadside (see sar.RAIL_GLINT_DEG)
RAIL_GAUGE_M = 1.435
STYLE_P = {"terraced": 0.22, "courtyard": 0.14, "suburb": 0.18, "old_town": 0.09, "industrial": 0.14,
           "towers": 0.07, "slabs": 0.16}
_GROUND_OF_USE = {"terraced": GRASS, "courtyard": GRASS, "detached": GRASS, "slabs": GRASS, "halls": PAVED,
                  "towers": PAVED, "park": GRASS, "lot": SOIL, "plaza": PAVED, "pond": WATER,
                  "containers": PAVED, "tanks": SOIL}
MAX_BUILDING_M = 90.0


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
    kind: np.ndarray          # (n,) uint8 HOUSE / APARTMENT / INDUSTRIAL / TOWER
    roof_material: np.ndarray  # (n,) uint8 TILE / BITUMEN / GRAVEL / METAL / GREEN_ROOF

    def __len__(self) -> int:
        return len(self.polygons)

    @property
    def labelled(self) -> np.ndarray:
        """(n,) bool: a building SpaceNet would label (not a tank, container stack or ship)."""
        return np.isin(self.kind, LABELLED_KINDS)

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
    districts: list           # [(Polygon, style name, grid angle rad)]
    blocks: np.ndarray        # (b,) object array of block Polygons (ground inside the sidewalks)
    block_ground: np.ndarray  # (b,) uint8 ground class
    block_wetness: np.ndarray  # (b,) float32 0 (dry) .. 1 (wet): soil moisture / lawn vigour
    sidewalks: np.ndarray     # (b,) object array: each block grown by the sidewalk
    bridges: list             # [(coords (k, 2), width_m)] street pieces drawn over the river
    river: Polygon | None     # water polygon (bank drawn 6 m wider as grass)
    buildings: Buildings
    trees: np.ndarray         # (t, 4): x, y, radius_m, height_m
    objects: np.ndarray       # (o, 6): x, y, height above ground (m), radar cross-section HH (m^2), kind, angle
    crossings: np.ndarray     # (c, 2): x, y of street crossings
    terrain: np.ndarray | None = None  # (rows, cols) float32 ground elevation (m) on TERRAIN_CELL_M cells
    basins: shapely.Geometry | None = None  # port dock basins (water), None without a port
    quays: shapely.Geometry | None = None   # paved quays around the basins
    port: Polygon | None = None             # the port district


@dataclass
class CityRaster:
    """One rasterised window of a plan. All arrays ``(rows, cols)``.

    Pixel ``(r, c)`` has its centre at plan point ``origin + (c + 0.5) ps * ex + (r + 0.5) ps * ey``
    with ``ex = (cos angle, sin angle)`` and ``ey = (-sin angle, cos angle)`` (``angle`` 0: the
    plan's own axes).
    """

    pixel_size: float
    x0: float                 # plan metres of the window's top-left corner
    y0: float
    classes: np.ndarray       # uint8 material class (GRASS..ROOF)
    height: np.ndarray        # float32 metres above the local ground (roofs and tree canopy; 0 elsewhere)
    building_id: np.ndarray   # int32, 0 = none, i + 1 = plan.buildings index i
    wetness: np.ndarray       # float32 0..1, the block's moisture (0 on streets)
    seed: int = 0             # the plan's seed (keys the position-keyed textures)
    angle: float = 0.0
    terrain: np.ndarray | None = None  # float32 ground elevation (m), None = flat

    @property
    def shape(self) -> tuple[int, int]:
        return self.classes.shape

    def crop(self, rows: slice, cols: slice) -> "CityRaster":
        """The sub-window ``[rows, cols]`` (unit-step slices with explicit bounds) of an axis-aligned raster."""
        if self.angle != 0.0:
            raise ValueError("crop is for axis-aligned rasters")
        sub = (rows, cols)
        return CityRaster(self.pixel_size, self.x0 + cols.start * self.pixel_size, self.y0 + rows.start * self.pixel_size,
                          self.classes[sub], self.height[sub], self.building_id[sub], self.wetness[sub], self.seed,
                          0.0, None if self.terrain is None else self.terrain[sub])

    def plan_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Plan coordinates (m) of the pixel centres: two (rows, cols) float64 arrays, or (cols,) and
        (rows, 1) broadcastable vectors when the window is axis-aligned."""
        rows, cols = self.shape
        u = (np.arange(cols) + 0.5) * self.pixel_size
        v = (np.arange(rows) + 0.5) * self.pixel_size
        if self.angle == 0.0:
            return self.x0 + u[None, :], self.y0 + v[:, None]
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        return (self.x0 + u[None, :] * ca - v[:, None] * sa, self.y0 + u[None, :] * sa + v[:, None] * ca)


# --------------------------------------------------------------------------------------------
# deterministic position-keyed textures (overlapping windows see identical texture)


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) float32 from integer lattice coordinates (a multiply-xorshift hash)."""
    h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= np.uint64(seed * 0x165667B19E3779F9 % (1 << 64))
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return ((h >> np.uint64(40)).astype(np.float32)) / np.float32(1 << 24)


def _value_noise(x_m: np.ndarray, y_m: np.ndarray, lattice_m: float, seed: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] at plan points: ``x_m`` (cols,) and ``y_m`` (rows,) of an
    axis-aligned window, or two broadcastable 2-D arrays."""
    if x_m.ndim == 1 or (x_m.shape[0] == 1 and y_m.shape[-1] == 1):
        x1, y1 = np.ravel(x_m), np.ravel(y_m)
        gx, gy = x1 / lattice_m, y1 / lattice_m
        ix0, iy0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        fx, fy = gx - ix0, gy - iy0
        fx, fy = (fx * fx * (3 - 2 * fx)).astype(np.float32), (fy * fy * (3 - 2 * fy)).astype(np.float32)
        lx = np.arange(ix0.min(), ix0.max() + 2)
        ly = np.arange(iy0.min(), iy0.max() + 2)
        lat = _hash01(lx[None, :] + (1 << 30), ly[:, None] + (1 << 30), seed) * 2 - 1  # (ny, nx)
        cx0, cy0 = ix0 - lx[0], iy0 - ly[0]
        along_x = lat[:, cx0] * (1 - fx) + lat[:, cx0 + 1] * fx            # (ny, cols)
        return along_x[cy0] * (1 - fy)[:, None] + along_x[cy0 + 1] * fy[:, None]
    gx, gy = np.broadcast_arrays(x_m / lattice_m, y_m / lattice_m)
    lx0, ly0 = int(np.floor(gx.min())), int(np.floor(gy.min()))
    lat = _hash01(np.arange(lx0, int(np.floor(gx.max())) + 2)[None, :] + (1 << 30),
                  np.arange(ly0, int(np.floor(gy.max())) + 2)[:, None] + (1 << 30), seed) * 2 - 1
    mx, my = (gx - lx0).astype(np.float32), (gy - ly0).astype(np.float32)
    # bicubic-ish smoothstep interpolation == bilinear of smoothstepped fractions
    ix, iy = np.floor(mx), np.floor(my)
    fx, fy = mx - ix, my - iy
    mx, my = ix + fx * fx * (3 - 2 * fx), iy + fy * fy * (3 - 2 * fy)
    return cv2.remap(lat.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def texture(raster: CityRaster, salt: int, lattice_m: float | None = None) -> np.ndarray:
    """A position-keyed texture field of ``raster``'s window, float32 (rows, cols).

    ``lattice_m`` None: per-pixel noise, uniform with unit variance (within +-1.73), fixed by the
    pixel's ground position; else smooth value noise in ~[-1, 1] with that lattice spacing.
    ``salt`` separates independent fields: each sensor uses its own salts, so optical and SAR never
    share one.
    """
    xs, ys = raster.plan_xy()
    seed = (raster.seed * 7919 + salt * 104729) % (2**31 - 1)
    if lattice_m is not None:
        return _value_noise(xs, ys, lattice_m, seed).astype(np.float32)
    ps = raster.pixel_size
    ix, iy = np.round(xs / ps).astype(np.int64), np.round(ys / ps).astype(np.int64)
    u = _hash01(ix + (1 << 32), iy + (1 << 32), seed)
    return np.broadcast_to((u - np.float32(0.5)) * np.float32(np.sqrt(12.0)), raster.shape).astype(np.float32)


# --------------------------------------------------------------------------------------------
# plan generation: districts and streets


def _districts(rng: np.random.Generator, w: float, h: float) -> list:
    """Voronoi cells of a few random centres over the plan (+100 m), each with a style and angle."""
    n = int(np.clip(round(w * h / 650_000 * rng.uniform(0.8, 1.25)), 2, 14))
    pts = rng.uniform((0, 0), (w, h), size=(n, 2))
    box = shapely.box(-100, -100, w + 100, h + 100)
    cells = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=box)
    styles = list(STYLE_P)
    p = np.array([STYLE_P[s] for s in styles])
    out = []
    for cell in getattr(cells, "geoms", [cells]):
        cell = cell.intersection(box)
        if cell.is_empty or cell.geom_type != "Polygon":
            continue
        out.append((cell, str(rng.choice(styles, p=p)), float(rng.uniform(0, np.pi / 2))))
    return out


def _local_frame(angle: float, center: np.ndarray):
    ca, sa = np.cos(angle), np.sin(angle)

    def to_world(u, v):
        return np.column_stack([center[0] + u * ca - v * sa, center[1] + u * sa + v * ca])
    return to_world


def _positions(rng, lo: float, hi: float, spacing: tuple[float, float]) -> np.ndarray:
    out, pos = [], lo - rng.uniform(0, spacing[1])
    while pos < hi + spacing[1]:
        out.append(pos)
        pos += rng.uniform(*spacing)
    return np.array(out)


def _grid_streets(rng, district: Polygon, angle: float, style: dict) -> tuple[list, list]:
    """Straight streets of two perpendicular families in the district's frame; some segments of
    the second family are left out (T junctions, long blocks). Returns (streets, crossings)."""
    c = np.asarray(district.centroid.coords[0])
    to_world = _local_frame(angle, c)
    half = float(np.hypot(*(np.array(district.bounds[2:]) - district.bounds[:2]))) / 2 + 30
    us = _positions(rng, -half, half, style["spacing"][0])
    vs = _positions(rng, -half, half, style["spacing"][1])
    streets, crossings = [], []
    wlo, whi = style["width"]
    for k, u in enumerate(us):  # first family: continuous
        width = rng.uniform(wlo, whi) * (1.5 if k % 5 == 0 else 1.0)
        streets.append((to_world(np.array([u, u]), np.array([vs[0], vs[-1]])), width))
    for v in vs:
        width = rng.uniform(wlo, whi)
        keep = rng.random(len(us) - 1) > 0.12
        for i in np.nonzero(keep)[0]:
            streets.append((to_world(np.array([us[i], us[i + 1]]), np.array([v, v])), width))
            crossings += [to_world(np.array([us[i]]), np.array([v]))[0], to_world(np.array([us[i + 1]]), np.array([v]))[0]]
    return streets, crossings


def _curved_streets(rng, district: Polygon, angle: float, style: dict) -> tuple[list, list]:
    """Suburban layout: gently curving parallel streets, a few straight cross streets, and dead-end
    cul-de-sacs with a turning circle reaching into the blocks."""
    c = np.asarray(district.centroid.coords[0])
    to_world = _local_frame(angle, c)
    half = float(np.hypot(*(np.array(district.bounds[2:]) - district.bounds[:2]))) / 2 + 30
    us = _positions(rng, -half, half, style["spacing"][0])
    vs = _positions(rng, -half, half, style["spacing"][1])
    amp, wave = rng.uniform(8, 25), rng.uniform(150, 420)
    t = np.linspace(-half, half, 120)
    streets, crossings = [], []
    wlo, whi = style["width"]
    phase = rng.uniform(0, 2 * np.pi)
    for u in us:
        bend = u + amp * np.sin(2 * np.pi * t / wave + phase + 0.002 * u)
        streets.append((to_world(bend, t), rng.uniform(wlo, whi)))
        for v in vs:
            crossings.append(to_world(np.array([u + amp * np.sin(2 * np.pi * v / wave + phase + 0.002 * u)]),
                                      np.array([v]))[0])
        # cul-de-sacs into the block on one side: a stub and its turning circle
        for v in _positions(rng, -half, half, (45, 90)):
            if rng.random() < 0.5:
                continue
            u0 = u + amp * np.sin(2 * np.pi * v / wave + phase + 0.002 * u)
            length = rng.uniform(20, 38)
            side = 1 if rng.random() < 0.5 else -1
            streets.append((to_world(np.array([u0, u0 + side * length]), np.array([v, v])), rng.uniform(5.5, 7)))
            end = u0 + side * length
            streets.append((to_world(np.array([end, end + side * 0.1]), np.array([v, v])), rng.uniform(15, 19)))  # circle
    for v in vs:
        streets.append((to_world(np.array([us[0], us[-1]]), np.array([v, v])), rng.uniform(wlo, whi) * 1.3))
    return streets, crossings


def _organic_blocks(rng, district: Polygon, style: dict) -> tuple[list, list]:
    """Old town: irregular blocks = Voronoi cells of scattered points, lanes between them.
    Returns (blocks already shrunk to lane edges, crossings = cell vertices)."""
    minx, miny, maxx, maxy = district.bounds
    spacing = rng.uniform(*style["spacing"][0])
    n = max(4, int((maxx - minx) * (maxy - miny) / spacing**2))
    pts = rng.uniform((minx, miny), (maxx, maxy), size=(n, 2))
    cells = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=district)
    blocks, crossings = [], []
    for cell in getattr(cells, "geoms", [cells]):
        lane = rng.uniform(*style["width"])
        piece = cell.intersection(district).buffer(-(lane / 2 + SIDEWALK_M), join_style="mitre")
        for part in getattr(piece, "geoms", [piece]):
            if part.geom_type == "Polygon" and part.area > 150:
                blocks.append(part)
        crossings.append(np.asarray(cell.exterior.coords)[:-1])
    crossings = np.unique(np.round(np.concatenate(crossings), 3), axis=0) if crossings else np.zeros((0, 2))
    crossings = crossings[shapely.contains_xy(district.buffer(-5), crossings[:, 0], crossings[:, 1])]
    return blocks, list(crossings)


# --------------------------------------------------------------------------------------------
# plan generation: buildings in blocks


class _Placer:
    """Places non-overlapping rectangles inside one block.

    Rectangles are (4, 2) corner arrays. The separating-axis test allows touching (shared walls)
    but no overlap deeper than ``TOUCH_M``; corners and edge midpoints must lie inside the block."""

    TOUCH_M = 0.001

    def __init__(self, block: Polygon):
        self.block = block
        shapely.prepare(block)
        self.rects = np.zeros((16, 4, 2))
        self.lo = np.zeros((16, 2))
        self.hi = np.zeros((16, 2))
        self.n = 0

    def fits(self, rects: list[np.ndarray], clearance: float = 0.0, skip_last: int = 0) -> bool:
        """``skip_last``: the last k placed rectangles are known not to overlap (row neighbours)."""
        pts = np.concatenate([np.concatenate([r, (r + r[[1, 2, 3, 0]]) / 2]) for r in rects])
        if not shapely.contains_xy(self.block, pts[:, 0], pts[:, 1]).all():
            return False
        n = self.n - skip_last
        if n <= 0:
            return True
        margin = clearance if clearance > 0 else -self.TOUCH_M
        for r in rects:
            lo, hi = r.min(axis=0) - margin, r.max(axis=0) + margin
            near = np.nonzero((self.hi[:n] >= lo).all(axis=1) & (self.lo[:n] <= hi).all(axis=1))[0]
            if len(near) and _rects_overlap(r, self.rects[near], margin):
                return False
        return True

    def fits_many(self, rects: np.ndarray) -> np.ndarray:
        """(k,) bool for (k, 4, 2) candidates of one row, each tested against the rectangles placed
        before the call (row neighbours touch by construction and are not tested together)."""
        mids = (rects + rects[:, [1, 2, 3, 0]]) / 2
        pts = np.concatenate([rects, mids], axis=1).reshape(-1, 2)
        ok = shapely.contains_xy(self.block, pts[:, 0], pts[:, 1]).reshape(len(rects), 8).all(axis=1)
        n = self.n
        if n == 0 or not ok.any():
            return ok
        margin = -self.TOUCH_M
        lo, hi = rects.min(axis=1) - margin, rects.max(axis=1) + margin          # (k, 2)
        near = ((self.hi[None, :n] >= lo[:, None]).all(-1) & (self.lo[None, :n] <= hi[:, None]).all(-1))
        for k in np.nonzero(ok & near.any(axis=1))[0]:
            if _rects_overlap(rects[k], self.rects[:n][near[k]], margin):
                ok[k] = False
        return ok

    def add(self, rects: list[np.ndarray]) -> None:
        for r in rects:
            if self.n == len(self.rects):
                self.rects = np.concatenate([self.rects, np.zeros_like(self.rects)])
                self.lo = np.concatenate([self.lo, np.zeros_like(self.lo)])
                self.hi = np.concatenate([self.hi, np.zeros_like(self.hi)])
            self.rects[self.n], self.lo[self.n], self.hi[self.n] = r, r.min(axis=0), r.max(axis=0)
            self.n += 1


def _rects_overlap(rect: np.ndarray, others: np.ndarray, margin: float) -> bool:
    """Separating-axis test of one rectangle (4, 2) against many (m, 4, 2): True when they overlap
    (closer than ``margin``; a negative margin lets them touch and overlap by up to -margin)."""
    polys = np.concatenate([rect[None], others])                          # (m+1, 4, 2)
    e = polys[:, [1, 2], :] - polys[:, [0, 1], :]                          # two edge directions each
    axes = np.stack([-e[..., 1], e[..., 0]], axis=-1)
    axes = axes / np.sqrt((axes ** 2).sum(axis=-1, keepdims=True))        # (m+1, 2, 2)
    m = len(others)
    pair_axes = np.concatenate([np.repeat(axes[:1], m, axis=0), axes[1:]], axis=1)  # (m, 4, 2)
    pa = np.einsum("kd,mad->mak", rect, pair_axes)                          # (m, 4 axes, 4 corners)
    pb = np.einsum("mkd,mad->mak", others, pair_axes)
    separated = (pa.max(-1) + margin < pb.min(-1)) | (pb.max(-1) + margin < pa.min(-1))
    return bool((~separated.any(axis=1)).any())


def _rect(origin: np.ndarray, along: np.ndarray, inward: np.ndarray, length: float, depth: float) -> np.ndarray:
    return np.array([origin, origin + along * length, origin + along * length + inward * depth,
                     origin + inward * depth])


def _roof(rng, kind: int, pitched_p: float = 0.7) -> tuple[float, float, int]:
    """(eave m, ridge rise m, roof material) of a new building of ``kind``."""
    if kind == HOUSE:
        if rng.random() < pitched_p:
            return rng.uniform(5.0, 9.5), rng.uniform(2.5, 5.5), TILE
        return rng.uniform(3.5, 10.0), 0.0, int(rng.choice([BITUMEN, GRAVEL, GREEN_ROOF], p=[0.55, 0.3, 0.15]))
    if kind == APARTMENT:
        if rng.random() < 0.25:
            return 9.0 + 14.0 * rng.beta(1.5, 2.5), rng.uniform(3.0, 6.0), TILE
        return 10.0 + 28.0 * rng.beta(1.3, 3.0), 0.0, int(rng.choice([BITUMEN, GRAVEL, GREEN_ROOF], p=[0.5, 0.4, 0.1]))
    if kind == INDUSTRIAL:
        return rng.uniform(6.0, 16.0), 0.0, int(rng.choice([METAL, BITUMEN, GRAVEL], p=[0.6, 0.25, 0.15]))
    return rng.uniform(35.0, MAX_BUILDING_M), 0.0, int(rng.choice([GRAVEL, BITUMEN, METAL], p=[0.5, 0.3, 0.2]))


def _rows_along_edges(rng, placer: _Placer, kind: int, frontage: tuple, depth: tuple, gap: tuple,
                      setback: tuple, run: tuple, out: list) -> None:
    """Rows of buildings along every block edge, frontage on the street and depth inward.

    Within a run of ``run`` buildings neighbours share walls (gap 0); runs are separated by a
    ``gap``. A run keeps one depth and roof style (apartment heights still differ per building). Shared corners are the same floats in both
    polygons, so the labels touch without overlapping. At a square-ish corner the next edge's row
    starts behind the previous edge's row. Each edge is placed in one vectorised pass."""
    ring = shapely.orient_polygons(placer.block).exterior.simplify(0.8)
    xy = np.asarray(ring.coords)
    prev_along, prev_reach = None, 0.0
    for e in range(len(xy) - 1):
        pa, pb = xy[e], xy[e + 1]
        edge_len = float(np.hypot(*(pb - pa)))
        along = (pb - pa) / max(edge_len, 1e-9)
        if edge_len < frontage[0] + 2:
            prev_along, prev_reach = along, 0.0
            continue
        inward = np.array([-along[1], along[0]])  # exterior is counter-clockwise: the inside is on the left
        sb = rng.uniform(*setback)
        square = prev_along is not None and abs(float(prev_along @ along)) < 0.5 and float(np.cross(prev_along, along)) > 0
        s = prev_reach if square and prev_reach > 0 else (0.0 if gap[1] == 0 else rng.uniform(0.5, 3.0))
        n_max = int((edge_len - s) / frontage[0]) + 2
        lengths = rng.uniform(*frontage, n_max)
        starts, ends, run_of = [], [], []
        run_id, left = -1, 0
        for k in range(n_max):
            if s + frontage[0] > edge_len:
                break
            if left == 0:
                run_id, left = run_id + 1, int(rng.integers(run[0], run[1] + 1))
                if run_id > 0:
                    s += rng.uniform(*gap)
                    if s + frontage[0] > edge_len:
                        break
            end = min(s + lengths[k], edge_len)
            starts.append(s)
            ends.append(end)
            run_of.append(run_id)
            s = end  # the next building of the run starts exactly where this one ends
            left -= 1
        if not starts:
            prev_along, prev_reach = along, 0.0
            continue
        starts, ends, run_of = np.array(starts), np.array(ends), np.array(run_of)
        n_runs = run_of.max() + 1
        run_depth = rng.uniform(*depth, n_runs)
        d = run_depth[run_of]  # one depth per run: neighbours share the whole wall, corner to corner
        f0 = pa + along * starts[:, None] + inward * sb
        f1 = pa + along * ends[:, None] + inward * sb
        rects = np.stack([f0, f1, f1 + inward * d[:, None], f0 + inward * d[:, None]], axis=1)  # (k, 4, 2)
        ok = placer.fits_many(rects)
        if ok.any():
            roofs = [_roof(rng, kind) for _ in range(n_runs)]
            jitter = rng.uniform(0.97, 1.03, len(starts)) if kind == HOUSE else rng.uniform(0.8, 1.2, len(starts))
            angle = float(np.arctan2(along[1], along[0]))
            for k in np.nonzero(ok)[0]:
                eave, rise, material = roofs[run_of[k]]
                out.append((rects[k], eave * jitter[k], rise, angle, (f0[k] + f1[k]) / 2 + inward * d[k] / 2,
                            d[k] / 2, kind, material))
            placer.add(list(rects[ok]))
        reach_end = ok[-1] and ends[-1] > edge_len - 0.5
        prev_along, prev_reach = along, (float(d[-1] + sb) if reach_end else 0.0)


def _free_standing(rng, placer: _Placer, kind: int, size: tuple, count: int, angle: float,
                   clearance: float, out: list, aspect: tuple = (1.0, 4.0)) -> None:
    """Up to ``count`` rectangles of area ``size`` (m^2) at random spots, aligned to ``angle``."""
    minx, miny, maxx, maxy = placer.block.bounds
    along = np.array([np.cos(angle), np.sin(angle)])
    inward = np.array([-along[1], along[0]])
    for _ in range(count * 4):
        if count <= 0:
            break
        area, ratio = rng.uniform(*size), rng.uniform(*aspect)
        length, depth = np.sqrt(area * ratio), np.sqrt(area / ratio)
        c = rng.uniform((minx, miny), (maxx, maxy))
        rect = _rect(c - along * length / 2 - inward * depth / 2, along, inward, length, depth)
        if placer.fits([rect], clearance):
            placer.add([rect])
            eave, rise, material = _roof(rng, kind)
            out.append((rect, eave, rise, float(angle), c, depth / 2, kind, material))
            count -= 1


def _block_angle(block: Polygon) -> float:
    """Direction of the block's longest edge (radians)."""
    xy = np.asarray(shapely.oriented_envelope(block).exterior.coords)
    d = np.diff(xy[:3], axis=0)
    k = int(np.argmax(np.hypot(d[:, 0], d[:, 1])))
    return float(np.arctan2(d[k, 1], d[k, 0]))


def _fill_block(rng, block: Polygon, use: str, out: list) -> None:
    placer = _Placer(block)
    angle = _block_angle(block)
    if use == "terraced":
        _rows_along_edges(rng, placer, HOUSE, (4.8, 7.5), (8.0, 12.0), (1.0, 5.0), (0.0, 3.5), (4, 14), out)
    elif use == "courtyard":
        _rows_along_edges(rng, placer, APARTMENT, (12.0, 30.0), (10.0, 14.0), (0.0, 8.0), (0.0, 1.0), (2, 8), out)
    elif use == "detached":
        _rows_along_edges(rng, placer, HOUSE, (7.0, 13.0), (8.0, 13.0), (2.0, 7.0), (3.0, 8.0), (1, 2), out)
    elif use == "slabs":
        _free_standing(rng, placer, APARTMENT, (250.0, 480.0), max(1, int(block.area / 1500)), angle, 8.0, out,
                       aspect=(2.5, 6.0))
    elif use == "halls":
        _free_standing(rng, placer, INDUSTRIAL, (600.0, 4500.0), max(1, int(block.area / 5000)), angle, 6.0, out,
                       aspect=(1.0, 3.0))
        _free_standing(rng, placer, INDUSTRIAL, (60.0, 300.0), int(block.area / 4000), angle, 4.0, out)
    elif use == "towers":
        _free_standing(rng, placer, TOWER, (300.0, 1200.0), max(1, int(block.area / 6000)), angle, 15.0, out,
                       aspect=(1.0, 1.8))
        _free_standing(rng, placer, APARTMENT, (200.0, 450.0), int(block.area / 3000), angle, 8.0, out)
    elif use == "containers":
        _container_stacks(rng, placer, angle, out)
    elif use == "tanks":
        _tank_farm(rng, placer, angle, out)


def _block_lattice(placer: _Placer, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The block's centre, its along / inward unit vectors at ``angle`` and the half diagonal (m)."""
    minx, miny, maxx, maxy = placer.block.bounds
    along = np.array([np.cos(angle), np.sin(angle)])
    return (np.array([(minx + maxx) / 2, (miny + maxy) / 2]), along, np.array([-along[1], along[0]]),
            float(np.hypot(maxx - minx, maxy - miny) / 2))


def _container_stacks(rng, placer: _Placer, angle: float, out: list) -> None:
    """Rows of container stacks: 12.2 m boxes side by side (4-10 across, 2.44 m each), 1-5 high
    (2.6 m a box), 3-5 m apart along a row, 8-14 m lanes between rows. Not labelled."""
    centre, along, inward, half = _block_lattice(placer, angle)
    gap, lane = rng.uniform(3.0, 5.0), rng.uniform(8.0, 14.0)
    v = -half
    while v < half:
        depth = 2.44 * int(rng.integers(4, 11))
        u = -half + rng.uniform(0.0, 12.2)
        while u < half:
            origin = centre + along * u + inward * v
            rect = _rect(origin, along, inward, 12.2, depth)
            if placer.fits([rect], 0.5):
                placer.add([rect])
                out.append((rect, 2.6 * int(rng.integers(1, 6)), 0.0, float(angle),
                            origin + along * 6.1 + inward * depth / 2, depth / 2, CONTAINER, METAL))
            u += 12.2 + gap
        v += depth + lane


def _tank_farm(rng, placer: _Placer, angle: float, out: list) -> None:
    """Storage tanks in rows: cylinders 15-60 m across (one size per block), 10-25 m high, 10-20 m
    apart. The footprint is a 24-gon; its bounding square is what the placer keeps free. Not labelled."""
    centre, along, inward, half = _block_lattice(placer, angle)
    d = rng.uniform(15.0, 60.0)
    step = d + rng.uniform(10.0, 20.0)
    ring = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    unit = np.column_stack([np.cos(ring), np.sin(ring)])
    for v in np.arange(-half, half, step):
        for u in np.arange(-half, half, step):
            c = centre + along * u + inward * v
            square = _rect(c - along * d / 2 - inward * d / 2, along, inward, d, d)
            if placer.fits([square], 0.0):
                placer.add([square])
                out.append((c + unit * d / 2, rng.uniform(10.0, 25.0), 0.0, float(angle), c, d / 2, TANK, METAL))


def _dock_basins(rng, district: Polygon, river: Polygon) -> tuple[list, float]:
    """Dock basins cut into ``district`` from the river: rectangles at right angles to the river's
    local direction, ``PORT_BASIN_WIDTH_M`` wide and ``PORT_BASIN_LENGTH_M`` long (clipped to the
    district), ``PORT_PIER_M`` apart. Returns ``[(basin polygon, origin, length dir, width dir,
    width m)]`` and the river's local direction (radians)."""
    reach = river.intersection(district.buffer(300))
    env = np.asarray(shapely.oriented_envelope(reach).exterior.coords)[:3]
    sides = np.diff(env, axis=0)
    t_dir = sides[int(np.argmax(np.hypot(sides[:, 0], sides[:, 1])))]
    t_dir = t_dir / np.hypot(*t_dir)
    n_dir = np.array([-t_dir[1], t_dir[0]])
    c = np.asarray(reach.centroid.coords[0])
    if float((np.asarray(district.centroid.coords[0]) - c) @ n_dir) < 0:
        n_dir = -n_dir
    span = float(np.ptp(np.asarray(district.exterior.coords) @ t_dir))
    lo = float(((np.asarray(district.exterior.coords) - c) @ t_dir).min())
    basins, s = [], lo + rng.uniform(*PORT_PIER_M) / 2
    while s < lo + span:
        width, length = rng.uniform(*PORT_BASIN_WIDTH_M), rng.uniform(*PORT_BASIN_LENGTH_M)
        origin = c + t_dir * s
        rect = Polygon(_rect(origin, n_dir, t_dir, length, width))
        basin = rect.intersection(district)
        if basin.geom_type == "Polygon" and basin.area > 0.3 * rect.area:
            basins.append((basin, origin, n_dir, t_dir, width))
        s += width + rng.uniform(*PORT_PIER_M)
    return basins, float(np.arctan2(t_dir[1], t_dir[0]))


def _berthed_ships(rng, basins: list, out: list) -> None:
    """Ships along both long quays of each basin, 2-5 m off the quay: 60-300 m long, beam a
    sixth to a seventh of that (10-40 m), 10-30 m above the water, on 60 % of the berths. Not labelled."""
    for basin, origin, n_dir, t_dir, width in basins:
        length = float(np.ptp(np.asarray(basin.exterior.coords) @ n_dir))
        for side in (0, 1):
            s = rng.uniform(10.0, 60.0)
            while s < length - 60.0:
                ship_len = min(rng.uniform(60.0, 300.0), length - s - 5.0)
                beam = float(np.clip(ship_len / rng.uniform(6.0, 7.0), 10.0, 40.0))
                berth = rng.random() < 0.6
                off = rng.uniform(2.0, 5.0)
                if ship_len >= 60.0 and berth and beam < width / 2 - off:
                    base = origin + n_dir * s + t_dir * (off if side == 0 else width - off - beam)
                    rect = _rect(base, n_dir, t_dir, ship_len, beam)
                    if basin.contains(Polygon(rect)):
                        out.append((rect, rng.uniform(10.0, 30.0), 0.0, float(np.arctan2(n_dir[1], n_dir[0])),
                                    base + n_dir * ship_len / 2 + t_dir * beam / 2, beam / 2, SHIP, METAL))
                s += max(ship_len, 60.0) + rng.uniform(10.0, 60.0)


def _terminal_scatterers(rng, basins: list, quay_m: float, quays: shapely.Geometry) -> np.ndarray:
    """(k, 6) :attr:`CityPlan.objects` rows of the container terminals: each long side of a basin is
    one with probability ``PORT_TERMINAL_P``. A terminal has ship-to-shore gantry cranes (leg feet,
    a point per metre of leg, boom and portal) and rails (the cranes' two and one track 3 m inside
    the landward edge of the quay), a point per metre, kept where they stand on the quay. A track
    rail that falls on a crane rail (quays narrower than 36.5 m) is that rail, not a second one."""
    gauge = min(CRANE_GAUGE_M, quay_m - 6.0)
    water_rail, land_rail = CRANE_RAIL_OFFSET_M, CRANE_RAIL_OFFSET_M + gauge
    track = [d for d in (quay_m - 3.0, quay_m - 3.0 - RAIL_GAUGE_M) if min(abs(d - water_rail), abs(d - land_rail)) > 0.1]
    d_rails = (water_rail, land_rail, *track)
    rows = []

    def lognormal(median: float, n: int) -> np.ndarray:
        return median * 10 ** rng.normal(0.0, 0.5, n)

    def add(points: np.ndarray, height: np.ndarray | float, rcs: np.ndarray, kind: int, angle: float) -> None:
        n = len(points)
        rows.append(np.column_stack([points, np.broadcast_to(height, (n,)), rcs, np.full(n, kind),
                                     np.full(n, angle)]))

    for basin, origin, n_dir, t_dir, width in basins:
        reach = (np.asarray(basin.exterior.coords) - origin) @ n_dir
        along_angle = float(np.arctan2(n_dir[1], n_dir[0]))
        for side in (0, 1):
            if rng.random() >= PORT_TERMINAL_P:
                continue
            # d: metres from the quay edge inland; the quay of side 0 lies at t < 0, of side 1 at t > width
            inland = -t_dir if side == 0 else t_dir
            edge = origin + (t_dir * width if side == 1 else 0.0)

            def at(s: np.ndarray, d: np.ndarray) -> np.ndarray:
                return edge + np.multiply.outer(s, n_dir) + np.multiply.outer(d, inland)

            s = np.arange(reach.min(), reach.max(), 1.0)
            for d in d_rails:
                pts = at(s, np.full(len(s), d))
                pts = pts[shapely.contains_xy(quays, pts[:, 0], pts[:, 1])]
                add(pts, 0.0, lognormal(RAIL_RCS_M2, len(pts)), RAIL, along_angle)
            centre = reach.min() + rng.uniform(*CRANE_SPACING_M) / 2
            while centre < reach.max():
                legs = at(centre + np.array([-1, 1, -1, 1]) * CRANE_LEG_SPACING_M / 2,
                          np.array([water_rail, water_rail, land_rail, land_rail]))
                top = rng.uniform(*CRANE_HEIGHT_M)
                outreach = rng.uniform(*CRANE_OUTREACH_M)
                if shapely.contains_xy(quays, legs[:, 0], legs[:, 1]).all():
                    add(legs, 0.0, lognormal(CRANE_FOOT_RCS_M2, 4), CRANE_FOOT, along_angle)
                    h = np.arange(1.0, top, 1.0)
                    add(np.repeat(legs, len(h), axis=0), np.tile(h, 4), lognormal(CRANE_LEG_RCS_M2, 4 * len(h)),
                        CRANE, along_angle)
                    boom_d = np.arange(water_rail - outreach, land_rail + CRANE_BACKREACH_M, 1.0)
                    portal_s = centre + np.arange(-CRANE_LEG_SPACING_M / 2, CRANE_LEG_SPACING_M / 2, 1.0)
                    structure = np.concatenate([at(np.full(len(boom_d), centre), boom_d),
                                                at(portal_s, np.full(len(portal_s), water_rail)),
                                                at(portal_s, np.full(len(portal_s), land_rail))])
                    add(structure, top, lognormal(CRANE_BOOM_RCS_M2, len(structure)), CRANE, along_angle)
                centre += rng.uniform(*CRANE_SPACING_M)
    return np.concatenate(rows) if rows else np.zeros((0, 6))


def _roof_colours(rng, kinds: np.ndarray, materials: np.ndarray, ground_near: np.ndarray) -> np.ndarray:
    """(n, 3) uint8: a colour of the roof material, or (1 in 6) the colour of the ground around it."""
    n = len(kinds)
    rgb = np.zeros((n, 3), np.float32)
    for m, palette in _ROOF_RGB.items():
        sel = np.nonzero(materials == m)[0]
        if len(sel):
            rgb[sel] = palette[rng.integers(0, len(palette), len(sel))]
    like = (rng.random(n) < 1 / 6) & (materials != TILE)
    for i in np.nonzero(like)[0]:
        rgb[i] = GROUND_LIKE_RGB.get(int(ground_near[i]), GROUND_LIKE_RGB[ROAD])
    return np.clip(rgb * rng.uniform(0.85, 1.15, (n, 1)), 1, 255).astype(np.uint8)


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


def _points_along(lines: list, step: tuple[float, float], offset: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step`` m along each (coords, width) line, ``offset`` m (+ half the street
    width) to each side, and the line direction there (radians)."""
    pts, ang = [], []
    for coords, width in lines:
        if len(coords) < 2:
            continue
        seg = np.diff(coords, axis=0)
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        total = seg_len.sum()
        if total < 5:
            continue
        t = np.arange(rng.uniform(0, step[1]), total, rng.uniform(*step))
        cum = np.concatenate([[0], np.cumsum(seg_len)])
        k = np.clip(np.searchsorted(cum, t, side="right") - 1, 0, len(seg) - 1)
        f = ((t - cum[k]) / np.maximum(seg_len[k], 1e-9))[:, None]
        p = coords[k] + seg[k] * f
        d = seg[k] / np.maximum(seg_len[k], 1e-9)[:, None]
        n = np.column_stack([-d[:, 1], d[:, 0]])
        for side in (-1, 1):
            pts.append(p + side * n * (width / 2 + offset))
            ang.append(np.arctan2(d[:, 1], d[:, 0]))
    if not pts:
        return np.zeros((0, 2)), np.zeros(0)
    return np.concatenate(pts), np.concatenate(ang)


def make_terrain(width_m: float, height_m: float, rng: np.random.Generator, relief_m: float,
                 cell_m: float = TERRAIN_CELL_M) -> np.ndarray:
    """(rows, cols) float32 ground elevation (m) on ``cell_m`` cells (3 cells more than the area
    needs): hills of several scales (420, 160 and 60 m correlation) whose 1-99 % range is about ``relief_m``."""
    rows = int(np.ceil(height_m / cell_m)) + 3
    cols = int(np.ceil(width_m / cell_m)) + 3
    h = np.zeros((rows, cols), np.float32)
    for scale_m, weight in ((420.0, 1.0), (160.0, 0.45), (60.0, 0.15)):
        n = ndimage.gaussian_filter(rng.standard_normal((rows, cols)).astype(np.float32),
                                    scale_m / cell_m / 2, mode="reflect")
        h += weight * n / (n.std() + 1e-9)
    lo, hi = np.percentile(h, [1, 99])
    return ((h - lo) / max(hi - lo, 1e-6) * relief_m).astype(np.float32)


def plan_city(width_m: float, height_m: float, rng: np.random.Generator, river: bool | None = None,
              terrain: np.ndarray | None = None, port: bool = False) -> CityPlan:
    """Generate a city covering ``width_m`` x ``height_m`` metres (plan frame).

    Args:
        river: force (True) or forbid (False) a canal/river; None = random (70%).
        terrain: None = flat ground (Rotterdam); else the elevation grid (m) on ``TERRAIN_CELL_M``
            cells from the plan's origin (:func:`make_terrain`); buildings stand on it.
        port: give the district with the most river frontage to a port (forces a river; flat
            plans only): dock basins with quays, tank farms, container yards, warehouses,
            berthed ships, and on container-terminal quays gantry cranes and rails (point
            targets in ``objects``). Without it a plan is what it always was.
    """
    if port:
        if terrain is not None:
            raise ValueError("a port needs a flat plan (terrain=None)")
        river = True
    seed = int(rng.integers(0, 2**31 - 1))
    districts = _districts(rng, width_m, height_m)
    river_poly = _river(rng, width_m, height_m) if (rng.random() < 0.7 if river is None else river) else None
    keep_out = river_poly.buffer(8) if river_poly is not None else None
    box = shapely.box(-60, -60, width_m + 60, height_m + 60)
    basins = port_water = quays = port_district = None
    if port:
        frontage = [d.intersection(river_poly.buffer(200)).area for d, _, _ in districts]
        k = int(np.argmax(frontage))
        port_district = districts[k][0]
        dock, port_angle = _dock_basins(rng, port_district, river_poly)
        districts[k] = (port_district, "port", port_angle)
        if dock:
            basins = shapely.union_all([b for b, *_ in dock])
            quay_m = float(rng.uniform(*PORT_QUAY_M))
            port_water = basins.buffer(quay_m, join_style="mitre")
            quays = port_water.difference(basins).difference(river_poly)
            keep_out = keep_out.union(port_water)
    plan_edge = box.exterior.buffer(1.0)

    # district borders are main roads: every shared border once
    borders = shapely.line_merge(shapely.union_all([d.exterior for d, _, _ in districts]).difference(plan_edge))
    border_lines = [(np.asarray(g.coords), float(rng.uniform(14, 20))) for g in getattr(borders, "geoms", [borders])
                    if g.geom_type == "LineString" and g.length > 1]
    border_geoms = np.array([LineString(c) for c, _ in border_lines], dtype=object)
    streets, crossings, block_list, block_use = list(border_lines), [], [], []
    for district, style_name, angle in districts:
        style = STYLES[style_name]
        area = district.intersection(box)
        near = [border_lines[i] for i in np.nonzero(shapely.intersects(border_geoms, district.buffer(1)))[0]]
        if style["layout"] == "organic":
            pieces, cross = _organic_blocks(rng, area, style)
            inner = []
        else:
            maker = _grid_streets if style["layout"] == "grid" else _curved_streets
            inner, cross = maker(rng, district, angle, style)
            inner = _clip_lines(inner, district if basins is None else district.difference(basins))
            pieces = [area]
        cut = _street_area(inner + near) if inner or near else None
        blocks = []
        for piece in pieces:
            rest = piece.difference(cut) if cut is not None else piece
            if keep_out is not None:
                rest = rest.difference(keep_out)
            blocks += [g for g in getattr(rest, "geoms", [rest]) if g.geom_type == "Polygon" and g.area > 150]
        streets += inner
        cross = np.asarray(cross, np.float64).reshape(-1, 2)
        crossings.append(cross[shapely.contains_xy(district, cross[:, 0], cross[:, 1])])
        uses = list(style["uses"])
        p = np.array([style["uses"][u] for u in uses])
        for b in blocks:
            block_list.append(b)
            block_use.append(str(rng.choice(uses, p=p / p.sum())))

    raw = []
    trees = []
    for b, use in zip(block_list, block_use):
        _fill_block(rng, b, use, raw)
        density = {"park": 1 / 80, "terraced": 1 / 260, "detached": 1 / 200, "courtyard": 1 / 250,
                   "slabs": 1 / 220, "pond": 0.0, "lot": 1 / 2500, "plaza": 1 / 700, "halls": 1 / 3000,
                   "towers": 1 / 900, "containers": 0.0, "tanks": 1 / 3000}[use]
        n_trees = rng.poisson(b.area * density)
        if n_trees:
            lo, hi = np.array(b.bounds[:2]), np.array(b.bounds[2:])
            pts = rng.uniform(lo, hi, size=(n_trees * 2, 2))
            pts = pts[shapely.contains_xy(b.buffer(-1.5), pts[:, 0], pts[:, 1])][:n_trees]
            if len(pts):
                big = use == "park"
                trees.append(np.column_stack([pts, rng.uniform(2.0, 6.0 if big else 4.5, len(pts)),
                                              rng.uniform(6, 20 if big else 15, len(pts))]))
    street_trees, _ = _points_along([s for s in streets if rng.random() < 0.4], (8, 13), 1.3, rng)
    if len(street_trees):
        trees.append(np.column_stack([street_trees, rng.uniform(2.0, 3.8, len(street_trees)),
                                      rng.uniform(6, 13, len(street_trees))]))
    trees_arr = np.concatenate(trees) if trees else np.zeros((0, 4))
    if basins is not None:
        _berthed_ships(rng, dock, raw)

    # buildings: one last global overlap check (blocks are disjoint, so this should find nothing)
    if raw and all(len(r[0]) == 4 for r in raw):
        polys = shapely.polygons(np.stack([r[0] for r in raw]))
    else:  # tanks are 24-gons
        polys = np.array([shapely.Polygon(r[0]) for r in raw], dtype=object)
    if len(polys):
        keep = _non_overlapping(polys)
        raw = [r for r, k in zip(raw, keep) if k]
        polys = _share_wall_vertices(polys[keep])
        if len(trees_arr):  # no trunk inside a building (crowns may overhang roofs)
            tree_in = shapely.STRtree(polys).query(shapely.points(trees_arr[:, :2]), predicate="within")
            trees_arr = np.delete(trees_arr, np.unique(tree_in[0]), axis=0)
    if keep_out is not None and len(trees_arr):
        trees_arr = trees_arr[~shapely.contains_xy(keep_out, trees_arr[:, 0], trees_arr[:, 1])]
    trees_arr = trees_arr[(trees_arr[:, 0] > -40) & (trees_arr[:, 0] < width_m + 40)
                          & (trees_arr[:, 1] > -40) & (trees_arr[:, 1] < height_m + 40)]

    n = len(raw)
    kinds = np.array([r[6] for r in raw], np.uint8)
    materials = np.array([r[7] for r in raw], np.uint8)
    block_ground = np.array([_GROUND_OF_USE[u] for u in block_use], np.uint8)
    ground_near = _ground_near(polys, block_list, block_ground)
    buildings = Buildings(
        polygons=polys,
        eave=np.array([r[1] for r in raw], np.float32),
        rise=np.array([r[2] for r in raw], np.float32),
        angle=np.array([r[3] for r in raw], np.float32),
        center=np.array([r[4] for r in raw], np.float64).reshape(n, 2),
        half_depth=np.array([r[5] for r in raw], np.float32),
        roof_rgb=_roof_colours(rng, kinds, materials, ground_near),
        kind=kinds, roof_material=materials)
    objects = _objects(rng, streets, block_list, block_use, buildings)
    if basins is not None:  # drawn last, so that plans without a port keep their bytes
        objects = np.concatenate([objects, _terminal_scatterers(rng, dock, quay_m, quays)])
    blocks = np.array(block_list, dtype=object)
    bridges = []
    if river_poly is not None:
        span = river_poly.buffer(12)
        for coords, width in streets:
            piece = LineString(coords).intersection(span) if len(coords) > 1 else None
            for g in getattr(piece, "geoms", [piece]) if piece is not None else []:
                if g.geom_type == "LineString" and g.length > 1:
                    bridges.append((np.asarray(g.coords), width))
    crossings_arr = np.concatenate(crossings) if crossings else np.zeros((0, 2))
    if keep_out is not None and len(crossings_arr):  # no crossing in the river
        crossings_arr = crossings_arr[~shapely.contains_xy(keep_out, crossings_arr[:, 0], crossings_arr[:, 1])]
    inside = (crossings_arr[:, 0] >= 0) & (crossings_arr[:, 0] <= width_m) & (crossings_arr[:, 1] >= 0) & (crossings_arr[:, 1] <= height_m)
    return CityPlan(width_m=float(width_m), height_m=float(height_m), seed=seed, districts=districts,
                    blocks=blocks, block_ground=block_ground,
                    block_wetness=rng.beta(2.0, 2.5, len(blocks)).astype(np.float32),
                    sidewalks=shapely.buffer(blocks, SIDEWALK_M, join_style="mitre") if len(blocks) else blocks,
                    bridges=bridges, river=river_poly, buildings=buildings, trees=trees_arr,
                    objects=objects, crossings=crossings_arr[inside], terrain=terrain,
                    basins=basins, quays=quays, port=port_district)


def _clip_lines(lines: list, region: Polygon) -> list:
    """(coords, width) lines cut to ``region`` (pieces shorter than 1 m dropped)."""
    geoms = shapely.intersection(np.array([LineString(c) for c, _ in lines], dtype=object), region)
    out = []
    for g, (_, width) in zip(geoms, lines):
        for part in getattr(g, "geoms", [g]):
            if part.geom_type == "LineString" and part.length > 1:
                out.append((np.asarray(part.coords), width))
    return out


def _street_area(lines: list) -> shapely.Geometry:
    """Union of the streets (coords, width) grown to their sidewalks' outer edge."""
    geoms = np.array([LineString(c) for c, _ in lines], dtype=object)
    return shapely.union_all(shapely.buffer(geoms, np.array([w / 2 + SIDEWALK_M for _, w in lines]), quad_segs=4))


def _non_overlapping(polys: np.ndarray, tolerance_m2: float = 1e-4) -> np.ndarray:
    """Boolean keep mask: drops the later of any two polygons that overlap by more than ``tolerance_m2``."""
    keep = np.ones(len(polys), bool)
    a, b = shapely.STRtree(polys).query(polys, predicate="intersects")
    pairs = a < b
    a, b = a[pairs], b[pairs]
    if len(a):
        area = shapely.area(shapely.intersection(polys[a], polys[b]))
        for i, j in zip(a[area > tolerance_m2], b[area > tolerance_m2]):
            if keep[i]:
                keep[j] = False
    return keep


def _share_wall_vertices(polys: np.ndarray) -> np.ndarray:
    """Adjoining polygons get each other's vertices where one ends on the other's wall (a row's
    end meeting a wall, rows of two block edges at a corner): then a shared wall has the same
    vertices in both labels, and rounding the pixel coordinates cannot make them overlap."""
    a, b = shapely.STRtree(polys).query(polys, predicate="dwithin", distance=1e-5)
    keep = a != b
    a, b = a[keep], b[keep]
    if not len(a):
        return polys
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    owners, starts = np.unique(a, return_index=True)
    refs = [shapely.multipolygons(polys[nb]) for nb in np.split(b, starts[1:])]
    out = polys.copy()
    out[owners] = shapely.snap(polys[owners], np.array(refs, dtype=object), 1e-5)
    return out


def _ground_near(polys: np.ndarray, blocks: list, ground: np.ndarray) -> np.ndarray:
    """Ground class of the block holding each building (ROAD when none does)."""
    out = np.full(len(polys), ROAD, np.uint8)
    if len(polys) and blocks:
        centers = shapely.centroid(polys)
        idx_building, idx_block = shapely.STRtree(np.array(blocks, dtype=object)).query(centers, predicate="within")
        out[idx_building] = ground[idx_block]
    return out


def _objects(rng, streets: list, blocks: list, uses: list, buildings: Buildings) -> np.ndarray:
    """Cars parked along streets and on lots / plazas, street lights, and equipment on flat roofs.

    Radar cross-sections (HH, m^2) are log-normal: cars ~10 m^2 median (their dihedral and
    trihedral corners), poles ~3 m^2 (pole-ground dihedral), roof units ~6 m^2: literature-typical
    X-band magnitudes, the strong scatterers that make real urban SAR's bright tail."""
    out = []
    cars, car_angle = _points_along(streets, (5.5, 9.0), -1.3, rng)
    if len(cars):
        keep = rng.random(len(cars)) < 0.45
        cars, car_angle = cars[keep], car_angle[keep]
        out.append(np.column_stack([cars, np.full(len(cars), 0.8), 10 ** rng.normal(1.0, 0.5, len(cars)),
                                    np.full(len(cars), CAR), car_angle]))
    for b, use in zip(blocks, uses):
        if use not in ("plaza", "lot", "halls", "towers"):
            continue
        n = rng.poisson(b.area / (90 if use in ("plaza", "halls") else 250))
        if n:
            lo, hi = np.array(b.bounds[:2]), np.array(b.bounds[2:])
            pts = rng.uniform(lo, hi, (n, 2))
            pts = pts[shapely.contains_xy(b, pts[:, 0], pts[:, 1])]
            a = _block_angle(b)
            out.append(np.column_stack([pts, np.full(len(pts), 0.8), 10 ** rng.normal(1.0, 0.5, len(pts)),
                                        np.full(len(pts), CAR), np.full(len(pts), a)]))
    if out and len(buildings):  # no car on a roof
        cars_all = np.concatenate(out)
        hit = shapely.STRtree(buildings.polygons).query(shapely.points(cars_all[:, :2]), predicate="within")[0]
        out = [np.delete(cars_all, np.unique(hit), axis=0)]
    poles, pole_angle = _points_along([s for s in streets if s[1] >= 12], (25, 40), 0.8, rng)
    if len(poles):
        out.append(np.column_stack([poles, np.zeros(len(poles)), 10 ** rng.normal(0.5, 0.5, len(poles)),
                                    np.full(len(poles), POLE), pole_angle]))
    flat = np.nonzero((buildings.rise == 0) & np.isin(buildings.kind, (APARTMENT, INDUSTRIAL, TOWER)))[0]
    if len(flat):
        counts = rng.poisson(shapely.area(buildings.polygons[flat]) / 60)
        owner = np.repeat(flat, counts)
        if len(owner):
            bb = buildings.bounds[owner]
            pts = rng.uniform(bb[:, :2], bb[:, 2:])
            inner = shapely.buffer(buildings.polygons[flat], -1.5)
            keep = shapely.contains(np.repeat(inner, counts), shapely.points(pts))
            owner, pts = owner[keep], pts[keep]
            out.append(np.column_stack([pts, buildings.eave[owner] + 1.0, 10 ** rng.normal(0.8, 0.5, len(pts)),
                                        np.full(len(pts), ROOF_UNIT), buildings.angle[owner]]))
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 6))


# --------------------------------------------------------------------------------------------
# rasterisation


class _Frame:
    """Plan metres -> pixel coordinates of a (possibly rotated) window."""

    def __init__(self, x0: float, y0: float, ps: float, angle: float):
        self.o = np.array([x0, y0])
        self.ps = ps
        self.ex = np.array([np.cos(angle), np.sin(angle)])
        self.ey = np.array([-np.sin(angle), np.cos(angle)])

    def px(self, xy: np.ndarray) -> np.ndarray:
        """(k, 2) plan metres -> (k, 2) float pixel (col, row) with pixel (r, c) spanning [c, c+1)."""
        d = np.asarray(xy, np.float64) - self.o
        return np.column_stack([d @ self.ex, d @ self.ey]) / self.ps

    def fixed(self, xy: np.ndarray) -> np.ndarray:
        """cv2 fixed-point (shift 4) coordinates: pixel centres at integers."""
        return np.round((self.px(xy) - 0.5) * 16).astype(np.int32)

    def window_poly(self, cols: int, rows: int) -> Polygon:
        c = np.array([[0, 0], [cols, 0], [cols, rows], [0, rows]], np.float64) * self.ps
        return Polygon(self.o + c[:, :1] * self.ex + c[:, 1:] * self.ey)


def _fill(target: np.ndarray, frame: _Frame, polys, values) -> None:
    contours = [frame.fixed(np.asarray(p.exterior.coords)) for p in polys]
    for c, v in zip(contours, values):
        cv2.fillPoly(target, [c], int(v), lineType=cv2.LINE_8, shift=4)


def _fill_area(target: np.ndarray, frame: _Frame, area: shapely.Geometry, value: int) -> None:
    """Fill every part of a (multi)polygon, outer rings only, with one value."""
    parts = shapely.get_parts(area)
    _fill(target, frame, parts, [value] * len(parts))


def rasterize(plan: CityPlan, x0: float, y0: float, cols: int, rows: int, pixel_size: float,
              angle: float = 0.0) -> CityRaster:
    """Draw the window whose top-left corner is plan point (x0, y0), ``rows`` x ``cols`` pixels,
    its column axis at ``angle`` (radians, from plan +x toward +y) from the plan's x axis."""
    ps = float(pixel_size)
    frame = _Frame(x0, y0, ps, angle)
    window = frame.window_poly(cols, rows)
    classes = np.full((rows, cols), ROAD, np.uint8)  # the street surface between sidewalks
    block_id = np.zeros((rows, cols), np.int32)
    if len(plan.blocks):
        sel = shapely.intersects(plan.sidewalks, window)
        idx = np.nonzero(sel)[0]
        _fill(classes, frame, plan.sidewalks[idx], [PAVED] * len(idx))
        _fill(classes, frame, plan.blocks[idx], plan.block_ground[idx])
        _fill(block_id, frame, plan.blocks[idx], idx + 1)
    if plan.river is not None and plan.river.buffer(8).intersects(window):
        _fill_area(classes, frame, plan.river.buffer(6), GRASS)
        _fill_area(classes, frame, plan.river, WATER)
        block_id[classes == WATER] = 0
        for coords, width in plan.bridges:
            pts = frame.fixed(coords)
            cv2.polylines(classes, [pts], False, int(ROAD), thickness=max(1, int(round(width / ps))),
                          lineType=cv2.LINE_8, shift=4)
    if plan.basins is not None and plan.quays.intersects(window):
        _fill_area(classes, frame, plan.quays, PAVED)
        _fill_area(classes, frame, plan.basins, WATER)
        block_id[classes == WATER] = 0

    building_id = np.zeros((rows, cols), np.int32)
    b = plan.buildings
    if len(b):
        wb = window.bounds
        bb = b.bounds
        sel = np.nonzero((bb[:, 2] >= wb[0]) & (bb[:, 0] <= wb[2]) & (bb[:, 3] >= wb[1]) & (bb[:, 1] <= wb[3]))[0]
        if angle != 0.0 and len(sel):
            sel = sel[shapely.intersects(b.polygons[sel], window)]
        _fill(building_id, frame, b.polygons[sel], sel + 1)
    on_roof = building_id > 0
    classes[on_roof] = ROOF

    height = np.zeros((rows, cols), np.float32)
    if on_roof.any():
        rr, cc = np.nonzero(on_roof)
        idx = building_id[rr, cc] - 1
        px = x0 + (cc + 0.5) * ps * frame.ex[0] + (rr + 0.5) * ps * frame.ey[0]
        py = y0 + (cc + 0.5) * ps * frame.ex[1] + (rr + 0.5) * ps * frame.ey[1]
        dx, dy = px - b.center[idx, 0], py - b.center[idx, 1]
        across = np.abs(-dx * np.sin(b.angle[idx]) + dy * np.cos(b.angle[idx]))
        ramp = np.clip(1 - across / b.half_depth[idx], 0, 1)
        height[rr, cc] = b.eave[idx] + b.rise[idx] * ramp

    t = plan.trees
    if len(t):
        wb = window.bounds
        sel = (t[:, 0] + t[:, 2] >= wb[0]) & (t[:, 0] - t[:, 2] <= wb[2]) & (t[:, 1] + t[:, 2] >= wb[1]) & (t[:, 1] - t[:, 2] <= wb[3])
        tree_h = np.zeros((rows, cols), np.float32)
        centres = frame.fixed(t[sel, :2])
        for (cx, cy), (r, h) in zip(centres, t[sel, 2:4]):
            cv2.circle(tree_h, (int(cx), int(cy)), max(1, int(round(r / ps * 16))), float(h),
                       thickness=-1, lineType=cv2.LINE_8, shift=4)
        tree_h[classes == WATER] = 0
        mask = tree_h > 0
        if mask.any():
            # dome-shaped crowns, lower toward the crown edge; a crown hides a roof only where it
            # is higher than the roof (trees overhang low houses, not apartment blocks)
            edge = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3) * ps
            crown = np.zeros_like(tree_h)
            crown[mask] = tree_h[mask] * (0.55 + 0.45 * np.clip(edge[mask] / 2.0, 0, 1))
            over = mask & (crown > height)
            height[over] = crown[over]
            classes[over] = TREE

    terrain = None
    if plan.terrain is not None:
        xs, ys = CityRaster(ps, x0, y0, classes, height, building_id, block_id, angle=angle).plan_xy()
        xs, ys = np.broadcast_arrays(xs, ys)
        terrain = cv2.remap(plan.terrain, (xs / TERRAIN_CELL_M).astype(np.float32),
                            (ys / TERRAIN_CELL_M).astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    wet_lut = np.concatenate([[0.0], plan.block_wetness]).astype(np.float32)
    return CityRaster(pixel_size=ps, x0=float(x0), y0=float(y0), classes=classes, height=height,
                      building_id=building_id, wetness=wet_lut[block_id], seed=plan.seed,
                      angle=float(angle), terrain=terrain)


def object_pixels(plan: CityPlan, raster: CityRaster, kinds: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Plan objects inside ``raster``'s window: (k, 2) float pixel (col, row) positions and their
    (k, 6) rows of :attr:`CityPlan.objects`."""
    o = plan.objects
    if kinds is not None and len(o):
        o = o[np.isin(o[:, 4], kinds)]
    if not len(o):
        return np.zeros((0, 2)), o
    frame = _Frame(raster.x0, raster.y0, raster.pixel_size, raster.angle)
    p = frame.px(o[:, :2])
    rows, cols = raster.shape
    inside = (p[:, 0] >= 0) & (p[:, 0] < cols) & (p[:, 1] >= 0) & (p[:, 1] < rows)
    return p[inside], o[inside]

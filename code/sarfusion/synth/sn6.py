"""Synthetic SpaceNet 6 AOI (train + test_public) in the exact real layout and formats.

Layout written under ``out_dir`` (SPEC section 1)::

    train/AOI_11_Rotterdam/SAR-Intensity/SN6_Train_AOI_11_Rotterdam_SAR-Intensity_<strip>_tile_<n>.tif
    train/AOI_11_Rotterdam/PS-RGB/SN6_Train_AOI_11_Rotterdam_PS-RGB_<strip>_tile_<n>.tif
    train/AOI_11_Rotterdam/geojson_buildings/SN6_Train_AOI_11_Rotterdam_Buildings_<strip>_tile_<n>.geojson
    train/AOI_11_Rotterdam/SummaryData/SAR_orientations.txt       (all strips, train and test)
    train/AOI_11_Rotterdam/SummaryData/SN6_Train_AOI_11_Rotterdam_Buildings.csv
    test_public/AOI_11_Rotterdam/SAR-Intensity/SN6_Test_Public_AOI_11_Rotterdam_SAR-Intensity_<strip>_tile_<n>.tif
    test_public_truth/SN6_Test_Public_AOI_11_Rotterdam_Buildings.csv   (known truth, for scoring)

Both parts image one city, as SN6's train and test tiles all image Rotterdam: the test strips cover
a separate area 300 m east of the training strips, so no test ground is seen in training but the
street grid, building styles and materials are the same city's. Strips of 2 x k tiles (450 m at
0.5 m) are laid out in overlapping pairs of opposite look direction, so the same ground is imaged
from the north and from the south. Strip edges carry slanted nodata bands (0 in SAR and optical)
like the real strip footprints.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from tqdm import tqdm

from sarfusion.errors import InputError
from sarfusion.io.raster import write_raster
from sarfusion.io.vector import EMPTY_WKT, geometries_to_wkt, write_csv_atomic, write_geojson
from sarfusion.synth import city as C
from sarfusion.synth import optical as O
from sarfusion import preview as P
from sarfusion.synth import sar as S

log = logging.getLogger(__name__)

AOI = "AOI_11_Rotterdam"
EPSG = 32631
PIXEL_M = 0.5
LABEL_COLUMNS = ["ImageId", "TileBuildingId", "PolygonWKT_Pix", "Mean_Building_Height",
                 "Median_Building_Height", "StdDev_Building_Height"]
DEFAULT_LOOKS = 5.0
MARGIN_M = 70.0  # plan margin around the strips (the range margin of each render is computed)
INCIDENCE_RANGE_DEG = (28.0, 42.0)  # per strip, around SPEC's ~35 deg off nadir
OVERLAP_TOLERANCE_PX2 = 0.01


@dataclass
class Strip:
    key: str                  # <stripStart>_<stripEnd>
    orientation: int          # 0 = from the north, 1 = from the south
    x0: float                 # plan metres of the strip's top-left corner
    y0: float
    rows: int                 # tile rows / cols of the strip
    cols: int
    n_tiles: int
    top_cut: tuple[float, float]     # nodata band at the top: depth (m) at x0 and slope
    bottom_cut: tuple[float, float]  # nodata band at the bottom
    incidence_deg: float = S.DEFAULT_INCIDENCE_DEG
    noise_floor_db: float = S.NOISE_FLOOR_DB  # at beam centre

    def valid_polygon(self, tile_m: float) -> shapely.Polygon:
        """The strip's imaged footprint (plan metres): its rectangle minus the slanted edge bands."""
        w = self.cols * tile_m
        h = self.rows * tile_m
        top_a = self.y0 + self.top_cut[0]
        top_b = top_a + self.top_cut[1] * w
        bot_a = self.y0 + h - self.bottom_cut[0]
        bot_b = bot_a + self.bottom_cut[1] * w
        return shapely.Polygon([(self.x0, top_a), (self.x0 + w, top_b), (self.x0 + w, bot_b), (self.x0, bot_a)])

    def tiles(self, size: int) -> Iterator[tuple[float, float, tuple[slice, slice]]]:
        """Each tile's top-left corner (plan metres) and its window into the strip's rendered
        ``(rows, cols)`` arrays, row by row, for tiles of ``size`` pixels."""
        tile_m = size * PIXEL_M
        for t in range(self.n_tiles):
            tr, tc = divmod(t, self.cols)
            yield (self.x0 + tc * tile_m, self.y0 + tr * tile_m,
                   (slice(tr * size, (tr + 1) * size), slice(tc * size, (tc + 1) * size)))


def _layout(n_tiles: int, tile_m: float, rng: np.random.Generator, t0: datetime) -> tuple[list[Strip], float, float]:
    """Strips for ``n_tiles`` tiles and the plan size (m) that holds them with margins."""
    strips = []
    remaining, k = n_tiles, 0
    t = t0
    per_strip = 6 if n_tiles > 12 else max(1, int(np.ceil(n_tiles / 2)))  # >= 2 strips when possible
    while remaining > 0:
        n = min(per_strip, remaining)
        rows = 2 if n >= 2 else 1
        cols = int(np.ceil(n / rows))
        pair, member = divmod(k, 2)
        if member == 0:
            pair_orientation = int(rng.integers(0, 2))
        orientation = pair_orientation if member == 0 else 1 - pair_orientation
        x0 = MARGIN_M + pair * 3.6 * tile_m + member * (0.33 * tile_m + rng.integers(0, 40) * PIXEL_M)
        y0 = MARGIN_M + member * (0.5 * tile_m + rng.integers(0, 40) * PIXEL_M)
        t = t + timedelta(minutes=int(rng.integers(40, 300)), seconds=int(rng.integers(0, 60)))
        end = t + timedelta(seconds=int(rng.integers(140, 280)))
        key = f"{t:%Y%m%d%H%M%S}_{end:%Y%m%d%H%M%S}"

        def cut() -> tuple[float, float]:
            if rng.random() < 0.35:
                return (0.0, 0.0)
            return (float(rng.uniform(0.05, 0.35) * tile_m), float(rng.uniform(-0.02, 0.02)))
        top, bottom = cut(), cut()
        # keep the slanted edge inside the strip
        top = (max(top[0], -top[1] * cols * tile_m, 0.0), top[1]) if top[0] else top
        bottom = (max(bottom[0], bottom[1] * cols * tile_m, 0.0), bottom[1]) if bottom[0] else bottom
        strips.append(Strip(key, orientation, float(x0), float(y0), rows, cols, n, top, bottom,
                            float(rng.uniform(*INCIDENCE_RANGE_DEG)), S.draw_noise_floor_db(rng)))
        remaining -= n
        k += 1
    width = max(s.x0 + s.cols * tile_m for s in strips) + MARGIN_M
    height = max(s.y0 + s.rows * tile_m for s in strips) + MARGIN_M
    return strips, float(width), float(height)


def _tile_labels(plan: C.CityPlan, image_id: str, x0: float, y0: float, tile_m: float,
                 valid: shapely.Polygon, easting0: float, northing0: float) -> tuple[list[dict], list, list]:
    """CSV rows, map-coordinate geometries and GeoJSON properties of one tile's buildings."""
    b = plan.buildings
    rows, geoms_map, props = [], [], []
    if len(b):
        bb = b.bounds
        sel = np.nonzero((bb[:, 2] > x0) & (bb[:, 0] < x0 + tile_m) & (bb[:, 3] > y0) & (bb[:, 1] < y0 + tile_m)
                         & b.labelled)[0]
        window = shapely.box(x0, y0, x0 + tile_m, y0 + tile_m).intersection(valid)
        parts, owner = shapely.get_parts(shapely.intersection(b.polygons[sel], window), return_index=True)
        keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) >= 0.25 * PIXEL_M**2)
        parts, owner = parts[keep], sel[owner[keep]]
        px = shapely.transform(parts, lambda xy: (xy - (x0, y0)) / PIXEL_M)
        geoms_map = list(shapely.transform(parts, lambda xy: np.column_stack([easting0 + xy[:, 0], northing0 - xy[:, 1]])))
        stats = np.round(np.column_stack([b.mean_height[owner], b.median_height[owner], b.std_height[owner]]).astype(np.float64), 3)
        for tid, (wkt, (mean, median, std)) in enumerate(zip(geometries_to_wkt(px), stats)):
            rows.append({"ImageId": image_id, "TileBuildingId": tid, "PolygonWKT_Pix": wkt,
                         "Mean_Building_Height": mean, "Median_Building_Height": median,
                         "StdDev_Building_Height": std})
            props.append({"TileBuildingId": tid, "Mean_Building_Height": mean,
                          "Median_Building_Height": median, "StdDev_Building_Height": std})
    if not rows:
        rows.append({"ImageId": image_id, "TileBuildingId": 0, "PolygonWKT_Pix": EMPTY_WKT,
                     "Mean_Building_Height": 0.0, "Median_Building_Height": 0.0, "StdDev_Building_Height": 0.0})
    return rows, geoms_map, props


def _tallest_near(plan: C.CityPlan, strip: Strip, tile_m: float) -> float:
    """Height (m) of the tallest building within 250 m of the strip (at least 20 m)."""
    b = plan.buildings
    top = 20.0
    if len(b):
        bb = b.bounds
        near = ((bb[:, 2] > strip.x0 - 250) & (bb[:, 0] < strip.x0 + strip.cols * tile_m + 250)
                & (bb[:, 3] > strip.y0 - 250) & (bb[:, 1] < strip.y0 + strip.rows * tile_m + 250))
        if near.any():
            top = max(top, float((b.eave[near] + b.rise[near]).max()))
    return top


OPTICAL_MARGIN_PX = 90  # sun shadows of buildings up to ~45 m cast into the strip


def render_strip(plan: C.CityPlan, strip: Strip, size: int, looks: float, rng: np.random.Generator,
                 with_optical: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """SAR (4, H, W) SN6 scale, optical (3, H, W) uint8 or None, and valid mask (H, W) of a strip.

    The city is drawn with margins along range (rows: the looks are north or south): on the
    sensor side as far as the tallest building's radar shadow reaches (h tan(incidence)), on the
    far side as far as its layover reaches (h / tan(incidence))."""
    tile_m = size * PIXEL_M
    tallest = _tallest_near(plan, strip, tile_m)
    tan = np.tan(np.deg2rad(strip.incidence_deg))
    near, far = (int(np.ceil((tallest * t + 8.0) / PIXEL_M)) for t in (tan, 1 / tan))
    look = S.look_from_orientation(strip.orientation)
    top, bottom = (near, far) if look == "N" else (far, near)
    side = 8  # columns: azimuth, only the point-spread function and a few metres of context
    h, w = strip.rows * size, strip.cols * size
    raster = C.rasterize(plan, strip.x0 - side * PIXEL_M, strip.y0 - top * PIXEL_M,
                         w + 2 * side, h + top + bottom, PIXEL_M)
    inner = (slice(top, top + h), slice(side, side + w))
    floor = S.swath_noise_floor_db(h + top + bottom, rng, base_db=strip.noise_floor_db)
    refl = S.simulate(raster, plan, rng, look, strip.incidence_deg, looks=looks, noise_floor_db=floor)
    refl = np.ascontiguousarray(refl[:, inner[0], inner[1]])
    sar = S.db_to_sn6_scale(S.to_db(refl))
    del refl
    optical = None
    if with_optical:
        m_top, m_bottom = min(top, OPTICAL_MARGIN_PX), min(bottom, OPTICAL_MARGIN_PX)
        sub = raster.crop(slice(top - m_top, top + h + m_bottom), slice(0, w + 2 * side))
        optical = np.ascontiguousarray(O.render_optical(sub, plan)[:, m_top:m_top + h, side:side + w])
    # valid footprint: pixel centres between the slanted top and bottom strip edges
    xc = (np.arange(w) + 0.5) * PIXEL_M
    yc = (np.arange(h) + 0.5) * PIXEL_M
    top = strip.top_cut[0] + strip.top_cut[1] * xc
    bottom = strip.rows * tile_m - strip.bottom_cut[0] + strip.bottom_cut[1] * xc
    valid = (yc[:, None] >= top[None, :]) & (yc[:, None] < bottom[None, :])
    sar[:, ~valid] = 0
    if optical is not None:
        optical[:, ~valid] = 0
    return sar, optical, valid


def _write_part(part: str, out_dir: Path, plan: C.CityPlan, strips: list[Strip], size: int,
                rng: np.random.Generator, easting0: float, northing0: float, first_tile: int, looks: float,
                preview_dir: Path | None, progress: tqdm) -> tuple[pd.DataFrame, int]:
    """Render and write one part's strips of ``plan``. Returns its label rows and the next tile number."""
    tile_m = size * PIXEL_M
    prefix = "SN6_Train" if part == "train" else "SN6_Test_Public"
    aoi_dir = out_dir / ("train" if part == "train" else "test_public") / AOI
    labels = []
    tile_no = first_tile
    for strip in strips:
        sar, optical, valid = render_strip(plan, strip, size, looks, rng, with_optical=part == "train")
        poly_valid = strip.valid_polygon(tile_m)
        for x0, y0, win in strip.tiles(size):
            image_id = f"{strip.key}_tile_{tile_no}"
            tile_no += int(rng.integers(1, 3))
            gt = (easting0 + x0, PIXEL_M, 0.0, northing0 - y0, 0.0, -PIXEL_M)
            sar_tile = sar[:, win[0], win[1]]
            write_raster(aoi_dir / "SAR-Intensity" / f"{prefix}_{AOI}_SAR-Intensity_{image_id}.tif",
                         sar_tile, gt, EPSG, nodata=0, compress=None, tiled=False)  # like the real tiles
            rows, geoms_map, props = _tile_labels(plan, image_id, x0, y0, tile_m, poly_valid, easting0, northing0)
            labels.extend(rows)
            if optical is not None:
                opt_tile = optical[:, win[0], win[1]]
                write_raster(aoi_dir / "PS-RGB" / f"{prefix}_{AOI}_PS-RGB_{image_id}.tif", opt_tile, gt, EPSG, nodata=0)
                write_geojson(aoi_dir / "geojson_buildings" / f"{prefix}_{AOI}_Buildings_{image_id}.geojson",
                              geoms_map, props, crs_epsg=EPSG)
            if preview_dir is not None:
                polys = [shapely.from_wkt(r["PolygonWKT_Pix"]) for r in rows]
                v = valid[win[0], win[1]]
                panels = [P.draw_polygons(P.sar_composite(sar_tile, v), polys)]
                if optical is not None:
                    panels.insert(0, P.draw_polygons(P.rgb_to_bgr(optical[:, win[0], win[1]]), polys))
                P.write_png(preview_dir / f"{part}_{image_id}.png", np.hstack(panels))
            progress.update(1)
    return pd.DataFrame(labels, columns=LABEL_COLUMNS), tile_no


def overlapping_labels(labels: pd.DataFrame, tolerance_px2: float = OVERLAP_TOLERANCE_PX2) -> list[tuple]:
    """Pairs ``(ImageId, TileBuildingId, TileBuildingId, area px^2)`` of labels of one tile that
    overlap by more than ``tolerance_px2`` (adjoining buildings share walls: they may touch).

    The tolerance absorbs the 0.01 px rounding of the CSV's coordinates; real SpaceNet labels
    never overlap."""
    out = []
    df = labels[labels.PolygonWKT_Pix != EMPTY_WKT]
    for image_id, g in df.groupby("ImageId"):
        polys = shapely.from_wkt(g.PolygonWKT_Pix.to_numpy())
        a, b = shapely.STRtree(polys).query(polys, predicate="intersects")
        keep = a < b
        a, b = a[keep], b[keep]
        if not len(a):
            continue
        area = shapely.area(shapely.intersection(polys[a], polys[b]))
        ids = g.TileBuildingId.to_numpy()
        out += [(image_id, int(ids[i]), int(ids[j]), float(x)) for i, j, x in zip(a, b, area) if x > tolerance_px2]
    return out


def generate_sn6(out_dir: str | Path, tiles: int, size: int = 900, seed: int = 0,
                 preview: bool | str | Path = False, looks: float = DEFAULT_LOOKS, port: bool = False) -> dict:
    """Write a synthetic SN6 AOI with ``tiles`` tiles in all: ~3/4 train, ~1/4 test_public.

    Args:
        out_dir: root folder (created); see the module docstring for what goes where.
        tiles: total tile count (>= 2); test gets max(1, round(tiles / 4)).
        size: tile width/height in pixels (0.5 m pixels; the real tiles are 900).
        seed: everything (city, strips, speckle) follows from it: same seed, same bytes.
        preview: True (PNGs in ``out_dir/previews``) or a folder, to write per-tile previews.
        looks: number of looks of the Gamma speckle.
        port: the city gets a port district (:func:`sarfusion.synth.city.plan_city`); tanks,
            container stacks and ships are in the images but not in the labels.

    Returns:
        dict with ``train_aoi``, ``test_aoi``, ``test_truth_csv``, ``orientations``,
        ``train_csv`` (Paths) and ``n_train``, ``n_test``.
    """
    if tiles < 2:
        raise InputError(f"--tiles must be at least 2 (one train and one test tile), got {tiles}")
    if size < 64:
        raise InputError(f"--size must be at least 64 pixels, got {size}")
    out_dir = Path(out_dir)
    preview_dir = None
    if preview:
        preview_dir = out_dir / "previews" if preview is True else Path(preview)
    n_test = max(1, int(round(tiles / 4)))
    n_train = tiles - n_test
    rng = np.random.default_rng(seed)
    easting0 = 590600.0 + float(rng.integers(0, 400))
    northing0 = 5750800.0 - float(rng.integers(0, 400))
    t0 = datetime(2019, 8, 4, 9, 0, 0)
    tile_m = size * PIXEL_M
    train_rng, test_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    train_strips, train_w, train_h = _layout(n_train, tile_m, train_rng, t0)
    test_strips, test_w, test_h = _layout(n_test, tile_m, test_rng, t0 + timedelta(days=1))
    test_x0 = train_w + 300.0  # a separate area of the same city: no ground shared with training
    test_strips = [replace(s, x0=s.x0 + test_x0) for s in test_strips]
    plan = C.plan_city(test_x0 + test_w, max(train_h, test_h), np.random.default_rng([seed, 3]), port=port)
    with tqdm(total=tiles, desc="synth sn6 tiles", unit="tile", leave=False) as progress:
        train_labels, next_tile = _write_part(
            "train", out_dir, plan, train_strips, size, train_rng, easting0, northing0,
            1000 + int(rng.integers(0, 500)), looks, preview_dir, progress)
        test_labels, _ = _write_part(
            "test", out_dir, plan, test_strips, size, test_rng, easting0, northing0,
            next_tile + 100, looks, preview_dir, progress)
    train_aoi = out_dir / "train" / AOI
    summary = train_aoi / "SummaryData"
    orientations = summary / "SAR_orientations.txt"
    summary.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{s.key} {s.orientation}\n" for s in sorted(train_strips + test_strips, key=lambda s: s.key))
    tmp = orientations.with_name(".SAR_orientations.tmp")
    tmp.write_text(lines)
    tmp.replace(orientations)
    for part, labels in (("train", train_labels), ("test", test_labels)):
        pairs = overlapping_labels(labels)
        if pairs:  # the plan forbids it; a label set that breaks SpaceNet's rule must not be written
            raise RuntimeError(f"synthetic SN6 {part} labels overlap: {pairs[:5]} (seed {seed})")
    train_csv = write_csv_atomic(summary / f"SN6_Train_{AOI}_Buildings.csv", train_labels)
    truth_csv = write_csv_atomic(out_dir / "test_public_truth" / f"SN6_Test_Public_{AOI}_Buildings.csv", test_labels)
    log.info("synthetic SN6: %d train + %d test tiles of %d px in %s", n_train, n_test, size, out_dir)
    return {"train_aoi": train_aoi, "test_aoi": out_dir / "test_public" / AOI, "test_truth_csv": truth_csv,
            "train_csv": train_csv, "orientations": orientations, "n_train": n_train, "n_test": n_test}

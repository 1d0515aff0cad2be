"""SN6 building-footprint training samples: model input by mode, 3 target masks, orientation, augmentation.

Targets (the SN6 winner's, SPEC section 2), ``(3, H, W)`` uint8 in {0, 1}:

* footprint: inside any building polygon;
* edge: footprint pixels within ``edge_width`` px of another label (background or a neighbour);
* contact: pixels within ``contact_width`` px of two different buildings (the gaps the
  watershed must cut); inside a building, within ``contact_inside`` px of another building
  (default the same). The SN6 winner's targets: 3 px outside, 1 px inside (a band along each
  shared wall), so a narrow terraced house keeps a seed. With ``row_targets`` (ours, the demo
  preset's) edge and contact outline rows of touching buildings instead, without the shared walls.

Direction-1 strips (imaged from the south) are rotated 180 degrees at load, so layover and
shadow always fall the same way for the network; predictions are rotated back by the caller.
Folds are easting bands (the tile geotransform's x origin) with a gap around the validation band,
so overlapping neighbour tiles never leak across. :class:`StripContext` is the SN6 winner's per-tile
input at the network's bottleneck (strip one-hot, look direction, the strip's northing).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
import scipy.ndimage as ndi
import shapely
import shapely.affinity
import torch
from torch.utils.data import Dataset

from sarfusion.datasets.sn6 import read_label_csv, read_sar
from sarfusion.errors import InputError
from sarfusion.io.raster import nodata_mask, raster_info, read_raster
from sarfusion.io.vector import parse_wkt

log = logging.getLogger(__name__)



# --- labels -------------------------------------------------------------------------------------
def read_building_polygons(csv_path: str | Path) -> dict[str, list[shapely.Polygon]]:
    """``{ImageId: [polygons in pixel coordinates]}`` from an SN6 label CSV.

    ``POLYGON EMPTY`` rows give an ImageId with an empty list. A missing, empty or header-only
    file, or unparseable WKT, is an ``InputError`` naming the file.
    """
    df = read_label_csv(csv_path)
    geoms = parse_wkt(df["PolygonWKT_Pix"])
    out: dict[str, list[shapely.Polygon]] = {}
    for i, (image_id, geom) in enumerate(zip(df["ImageId"].astype(str), geoms)):
        if geom is None:
            raise InputError(f"row {i + 2}: unparseable PolygonWKT_Pix {df['PolygonWKT_Pix'].iloc[i]!r}", csv_path)
        parts = [geom] if geom.geom_type == "Polygon" else list(getattr(geom, "geoms", []))
        out.setdefault(image_id, []).extend(p for p in parts if p.geom_type == "Polygon" and not p.is_empty)
    return out


def rasterize_instances(polygons: Sequence[shapely.Polygon], shape: tuple[int, int]) -> np.ndarray:
    """Instance labels ``(H, W)`` int32 (0 = background, i + 1 = ``polygons[i]``); later polygons win.

    A pixel belongs to a polygon when its centre ``(col + 0.5, row + 0.5)`` lies inside it (the
    rasterio / solaris convention the SpaceNet masks use).
    """
    h, w = shape
    labels = np.zeros(shape, np.int32)
    for i, poly in enumerate(polygons, start=1):
        x0, y0, x1, y1 = poly.bounds
        c0, r0 = max(int(np.floor(x0 - 0.5)), 0), max(int(np.floor(y0 - 0.5)), 0)
        c1, r1 = min(int(np.ceil(x1 - 0.5)) + 1, w), min(int(np.ceil(y1 - 0.5)) + 1, h)
        if c1 <= c0 or r1 <= r0:
            continue
        cols, rows = np.meshgrid(np.arange(c0, c1) + 0.5, np.arange(r0, r1) + 0.5)
        inside = shapely.contains_xy(poly, cols, rows)
        labels[r0:r1, c0:c1][inside] = i
    return labels


def building_targets(labels: np.ndarray, edge_width: int = 2, contact_width: int = 3,
                     contact_inside: int | None = None, rows: bool = False) -> np.ndarray:
    """``(3, H, W)`` uint8 footprint / edge / contact masks from instance labels ``(H, W)``
    (widths in px; ``contact_inside`` None: ``contact_width``).

    ``rows``: edge and contact are drawn around each 4-connected blob of the footprint (a row of
    buildings sharing walls counts as one), not around each building, so the network is not asked
    for walls the SAR may not show; the row splitting (``postproc.split_rows``) cuts the rows."""
    if rows:
        labels = ndi.label(labels > 0)[0]
    footprint = labels > 0
    size_e = 2 * edge_width + 1
    edge = footprint & (ndi.maximum_filter(labels, size_e) != ndi.minimum_filter(labels, size_e))
    big = np.iinfo(np.int32).max
    buildings_only = np.where(footprint, labels, big)

    def near_two(radius: int) -> np.ndarray:
        size = 2 * radius + 1
        lo = ndi.minimum_filter(buildings_only, size)
        hi = ndi.maximum_filter(labels, size)
        return (lo != big) & (hi > 0) & (lo != hi)

    contact = near_two(contact_width)
    if contact_inside is not None and contact_inside != contact_width:
        contact = np.where(footprint, near_two(contact_inside), contact)
    return np.stack([footprint, edge, contact]).astype(np.uint8)


def building_areas(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint16: the area in px of the label building holding each pixel of instance
    labels ``(H, W)`` int (0 = background, and 0 there), clipped at 65,535 px."""
    areas = np.bincount(labels.ravel().astype(np.int64))
    areas[0] = 0
    return np.minimum(areas, np.iinfo(np.uint16).max).astype(np.uint16)[labels]


def scaled_target_widths(edge_width: int, contact_width: int, contact_inside: int | None,
                         scale: float) -> tuple[int, int, int | None]:
    """The target widths (px) for tiles resized by ``scale`` (at least 1 px each)."""
    if scale == 1.0:
        return edge_width, contact_width, contact_inside
    width = lambda v: max(1, round(v * scale))  # noqa: E731
    return width(edge_width), width(contact_width), None if contact_inside is None else width(contact_inside)


# --- orientation, normalisation --------------------------------------------------------------------
def orient(array: np.ndarray, orientation: int | None) -> np.ndarray:
    """Rotate ``(..., H, W)`` by 180 degrees for direction-1 strips (its own inverse)."""
    return np.ascontiguousarray(array[..., ::-1, ::-1]) if orientation == 1 else array


@dataclass
class NormStats:
    """Per-channel mean and std over valid pixels of the training inputs (saved with the weights)."""

    mean: list[float]
    std: list[float]

    def apply(self, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` raw -> float32 standardised; nodata (and NaN) pixels become 0."""
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        out = (raw.astype(np.float32) - mean) / std
        out[:, ~valid] = 0.0
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


@lru_cache(maxsize=65536)
def _centre_northing(path: str) -> float:
    info = raster_info(path)
    return float(info.geotransform[3] + info.geotransform[5] * info.height / 2)


@dataclass
class StripContext:
    """The SN6 winner's extra inputs, one vector per tile, added at the network's bottleneck.

    ``vector(tile)``: ``(len(strips) + 2,)`` float32 = one-hot of the tile's strip (all zero for
    a strip the model never trained on), the look direction (``SAR_orientations.txt``: 0 / 1; 0
    when unknown) and ``coord - 0.5``, where ``coord`` is the strip's mean tile-centre northing
    scaled to [0, 1] over the training tiles' northings (the winner's ``coord_y``). A strip seen in
    training keeps its training value; an unseen one takes the tile's own centre northing on the
    same scale. Built from the training tiles and saved with the weights (``to_dict``), so a test
    AOI is described in the training AOI's terms.
    """

    coord: dict[str, float]  # training strip -> its scaled mean northing
    north_min: float = 0.0
    north_max: float = 1.0

    @property
    def strips(self) -> tuple[str, ...]:
        """The training strips, in one-hot order."""
        return tuple(sorted(self.coord))

    @property
    def size(self) -> int:
        return len(self.strips) + 2

    @classmethod
    def from_tiles(cls, tiles: Sequence) -> "StripContext":
        northing = {t.image_id: _centre_northing(str(t.sar_path)) for t in tiles}
        lo, hi = min(northing.values()), max(northing.values())
        by_strip: dict[str, list[float]] = {}
        for t in tiles:
            by_strip.setdefault(t.strip, []).append(northing[t.image_id])
        ctx = cls({}, lo, hi)
        ctx.coord = {k: ctx._scaled(float(np.mean(v))) for k, v in sorted(by_strip.items())}
        return ctx

    def _scaled(self, northing_m: float) -> float:
        return (northing_m - self.north_min) / max(self.north_max - self.north_min, 1e-6)

    def vector(self, tile) -> np.ndarray:
        """``(size,)`` float32 for one :class:`~sarfusion.datasets.sn6.SN6Tile`."""
        out = np.zeros(self.size, np.float32)
        strip = tile.strip
        if strip in self.coord:
            out[self.strips.index(strip)] = 1.0
            coord = self.coord[strip]
        else:
            coord = self._scaled(_centre_northing(str(tile.sar_path)))
        out[-2] = float(tile.orientation or 0)
        out[-1] = coord - 0.5
        return out

    def to_dict(self) -> dict:
        return {"coord": dict(self.coord), "north_min": self.north_min, "north_max": self.north_max}

    @classmethod
    def from_dict(cls, data: Mapping) -> "StripContext":
        return cls({str(k): float(v) for k, v in data["coord"].items()}, float(data["north_min"]),
                   float(data["north_max"]))


def compute_norm_stats(arrays: Iterable[tuple[np.ndarray, np.ndarray]], max_pixels: int = 2_000_000,
                       seed: int = 0) -> NormStats:
    """Mean/std per channel over the valid pixels of ``(raw (C,H,W), valid (H,W))`` pairs (subsampled)."""
    rng = np.random.default_rng(seed)
    samples = []
    for raw, valid in arrays:
        vals = raw[:, valid].astype(np.float64)
        if vals.shape[1] > max_pixels // 8:
            vals = vals[:, rng.choice(vals.shape[1], max_pixels // 8, replace=False)]
        samples.append(vals)
    if not samples or sum(s.shape[1] for s in samples) == 0:
        raise InputError("no valid pixels in the training inputs (all nodata?)")
    allv = np.concatenate(samples, axis=1)
    std = allv.std(axis=1)
    return NormStats(mean=allv.mean(axis=1).tolist(), std=np.where(std > 1e-6, std, 1.0).tolist())


def read_model_input(tile, input_mode: str, prepared_path: str | Path | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Raw network input ``(C, H, W)`` float32 and valid mask ``(H, W)`` bool of one tile.

    ``sar4``: the SAR-Intensity tile (HH, HV, VH, VV; anything but 4 bands is an ``InputError``;
    0 and NaN are nodata). ``span``: its textbook SPAN in dB (:func:`sarfusion.fusion.span`).
    ``fused`` / ``colorized``: the prepared 3-band uint8 tile at ``prepared_path`` (0 = nodata),
    written by :func:`sarfusion.tasks.buildings.prepare_inputs`.
    """
    if input_mode in ("sar4", "span"):
        sar = read_sar(tile.sar_path)
        if input_mode == "sar4":
            return sar, nodata_mask(sar, 0.0)
        from sarfusion.fusion import sar_valid_mask, span

        s = span(sar)[None].astype(np.float32)
        return s, sar_valid_mask(sar) & np.isfinite(s[0])
    if prepared_path is None:
        raise InputError(f"{input_mode} input needs a prepared tile (none for {tile.image_id})", tile.sar_path)
    raw = read_raster(prepared_path, expect_bands=3).astype(np.float32)
    return raw, nodata_mask(raw, 0.0)


def resize_input(image: np.ndarray, valid: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize a normalised ``(C, H, W)`` float32 input and its ``(H, W)`` bool valid mask by ``scale``
    (area averaging when shrinking); pixels whose area is under half valid become nodata (0)."""
    h, w = valid.shape
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(np.ascontiguousarray(c, dtype=np.float32), size, interpolation=interp) for c in image])
    keep = cv2.resize(valid.astype(np.float32), size, interpolation=interp) >= 0.5
    out[:, ~keep] = 0.0
    return out, keep


# --- folds -----------------------------------------------------------------------------------------
def easting_folds(x_origin: Mapping[str, float], n_folds: int, gap_m: float) -> list[tuple[list[str], list[str]]]:
    """Split tiles into ``n_folds`` equal-width easting bands; fold k validates on band k and trains
    on tiles whose x origin is more than ``gap_m`` from that band (neighbours excluded).

    ``n_folds == 1``: one fold that trains on every tile and validates on none.
    Returns ``[(train_ids, val_ids), ...]`` sorted by ImageId.
    """
    ids = sorted(x_origin)
    if n_folds < 1:
        raise InputError(f"folds must be >= 1, got {n_folds}")
    if n_folds == 1:
        return [(ids, [])]
    xs = np.array([x_origin[i] for i in ids])
    edges = np.linspace(xs.min(), xs.max(), n_folds + 1)
    band = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, n_folds - 1)
    folds = []
    for k in range(n_folds):
        lo, hi = edges[k], edges[k + 1]
        val = [i for i, b in zip(ids, band) if b == k]
        far = (xs < lo - gap_m) | (xs > hi + gap_m)
        train = [i for i, f, b in zip(ids, far, band) if f and b != k]
        if not train or not val:
            raise InputError(f"fold {k} of {n_folds} has {len(train)} training and {len(val)} validation "
                             f"tiles; use fewer folds or a smaller gap ({gap_m} m)")
        folds.append((train, val))
    return folds


# --- torch dataset -----------------------------------------------------------------------------------
@dataclass
class AugmentParams:
    """Training augmentation (SAR-safe: left-right flip only, no up-down flip, no rot90).

    Colour (:func:`jitter_color`, off by default; the SN6 winner's saturation / brightness /
    contrast), drawn once per crop with probability ``color_p``: ``brightness`` the largest shift
    added to the normalised input (units of the per-band std), ``contrast`` and ``saturation``
    the largest relative change (factor in ``[1 - x, 1 + x]``); saturation only on 3-band colour
    inputs (``fused``, ``colorized``).
    """

    crop: int = 512
    scale: tuple[float, float] = (0.5, 2.0)
    rotate_deg: float = 10.0
    affine_p: float = 0.7
    hflip_p: float = 0.5
    min_valid_fraction: float = 0.3  # re-draw crops that are mostly nodata (a few tries)
    color_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    @property
    def color_on(self) -> bool:
        return self.color_p > 0 and (self.brightness > 0 or self.contrast > 0 or self.saturation > 0)


# ITU-R BT.601 luma, the grey that PIL / albumentations saturation blends towards
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def jitter_color(image: np.ndarray, valid: np.ndarray, params: AugmentParams, stats: NormStats,
                 rng: np.random.Generator) -> np.ndarray:
    """Random saturation, contrast and brightness of one normalised crop (a new array).

    ``image`` ``(C, H, W)`` float32 normalised by ``stats`` (nodata 0), ``valid`` ``(H, W)`` bool.
    With probability ``params.color_p``: saturation (3 bands only) blends the de-normalised RGB
    with its luma grey; contrast scales each band about its mean over valid pixels; brightness adds
    one shift to every band. Invalid pixels stay 0 and the masks are not touched: this changes the
    look of a crop, never its geometry. Four numbers are drawn from ``rng`` every call, so a given
    generator state always gives the same result.
    """
    if image.ndim != 3 or image.shape[1:] != valid.shape:
        raise ValueError(f"image (C, H, W) and valid (H, W) expected, got {image.shape} and {valid.shape}")
    apply, u_sat, u_con, u_bri = rng.random(4)
    out = image.astype(np.float32, copy=True)
    if apply >= params.color_p or not valid.any():
        return out
    if params.saturation > 0 and out.shape[0] == 3:
        # in the input's own RGB values: the normalised bands have different offsets, so their
        # grey is not the picture's grey
        mean = np.asarray(stats.mean, np.float32)[:, None, None]
        std = np.asarray(stats.std, np.float32)[:, None, None]
        rgb = out * std + mean
        grey = np.tensordot(_LUMA, rgb, axes=1)[None]
        factor = 1.0 + params.saturation * (2.0 * u_sat - 1.0)
        out = ((grey + factor * (rgb - grey)) - mean) / std
    if params.contrast > 0:
        factor = 1.0 + params.contrast * (2.0 * u_con - 1.0)
        band_mean = out[:, valid].mean(axis=1)[:, None, None]
        out = band_mean + factor * (out - band_mean)
    if params.brightness > 0:
        out = out + params.brightness * (2.0 * u_bri - 1.0)
    out[:, ~valid] = 0.0
    return out.astype(np.float32)


def build_augment(params: AugmentParams, seed: int):
    """An albumentations pipeline: left-right flip, scale + small rotation, crop."""
    import albumentations as A  # heavy: imported on use

    return A.Compose([
        A.HorizontalFlip(p=params.hflip_p),
        A.Affine(scale=tuple(params.scale), rotate=(-params.rotate_deg, params.rotate_deg), p=params.affine_p,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, keep_ratio=True),
        A.CenterCrop(params.crop, params.crop, pad_if_needed=True, border_mode=cv2.BORDER_CONSTANT,
                     fill=0, fill_mask=0),
    ], seed=seed)


class BuildingTileDataset(Dataset):
    """Random crops of SN6 tiles with their targets.

    ``input_scale`` < 1 trains the network on tiles resized by that factor (0.5: 1 m pixels for
    0.5 m tiles), so a crop covers more ground per step; polygons are scaled with the tile and the
    targets are drawn at that resolution (edge / contact widths scaled too, at least 1 px).

    Each item: ``image`` ``(C, crop, crop)`` float32 (normalised, nodata 0), ``target``
    ``(3, crop, crop)`` float32 footprint/edge/contact, ``valid`` ``(1, crop, crop)`` float32,
    ``meta`` ``{"image_id": str}``; with ``count_buildings``, also ``buildings``: float32 scalar,
    the number of buildings with at least one pixel in the augmented crop (the winner's per-image
    loss weight); with ``context``, also ``context``: ``(context.size,)`` float32, the tile's
    :class:`StripContext` vector; with ``area_target``, also ``area``: ``(crop, crop)`` float32,
    the area in px (at the network's scale) of the label building holding each pixel, 0 outside
    buildings, clipped at 65,535 (the target of the area network). Tiles are in network orientation
    (direction 1 rotated).
    """

    def __init__(self, tiles: Sequence, prepared: Mapping[str, Path], input_mode: str,
                 polygons: Mapping[str, list], stats: NormStats, augment: AugmentParams,
                 edge_width: int = 2, contact_width: int = 3, cache: bool = True, seed: int = 0,
                 input_scale: float = 1.0, count_buildings: bool = False, contact_inside: int | None = None,
                 context: StripContext | None = None, row_targets: bool = False, area_target: bool = False):
        self.tiles = list(tiles)
        self.area_target = bool(area_target)
        self.row_targets = bool(row_targets)
        self.context_vectors = None if context is None else [context.vector(t) for t in self.tiles]
        self.count_buildings = bool(count_buildings)
        self.input_scale = float(input_scale)
        self.prepared = dict(prepared)
        self.input_mode = input_mode
        self.polygons = polygons
        self.stats = stats
        self.params = augment
        self.edge_width, self.contact_width, self.contact_inside = edge_width, contact_width, contact_inside
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        self.augment = build_augment(augment, seed)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the engine: each epoch draws new crops from (seed, epoch, index), so the
        sequence is the same after a resume and in every loader worker."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.tiles)

    def load_tile(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (C,H,W) float16, masks (4,H,W) uint8 = footprint, edge, contact, valid)``, oriented.

        With ``count_buildings`` the masks are ``(5, H, W)`` uint16, the 5th the instance labels
        (0 = background), so the augmentation moves them with the targets and the buildings left
        in a crop can be counted; with ``area_target`` one more uint16 channel, last: each
        pixel's building area in px (:func:`building_areas`).
        """
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        tile = self.tiles[index]
        raw, valid = read_model_input(tile, self.input_mode, self.prepared.get(tile.image_id))
        image = self.stats.apply(raw, valid)
        polygons = self.polygons.get(tile.image_id, [])
        if self.input_scale != 1.0:
            s = self.input_scale
            image, valid = resize_input(image, valid, s)
            polygons = [shapely.affinity.scale(p, s, s, origin=(0, 0)) for p in polygons]
        edge_width, contact_width, contact_inside = scaled_target_widths(
            self.edge_width, self.contact_width, self.contact_inside, self.input_scale)
        labels = rasterize_instances(polygons, valid.shape)
        masks = np.concatenate([building_targets(labels, edge_width, contact_width, contact_inside,
                                                 rows=self.row_targets),
                                valid[None].astype(np.uint8)])
        if self.count_buildings:
            if labels.max(initial=0) > np.iinfo(np.uint16).max:
                raise InputError(f"{labels.max()} buildings in one tile: more than uint16 labels hold",
                                 tile.sar_path)
            masks = np.concatenate([masks.astype(np.uint16), labels[None].astype(np.uint16)])
        if self.area_target:
            masks = np.concatenate([masks.astype(np.uint16), building_areas(labels)[None]])
        out = (orient(image, tile.orientation).astype(np.float16), orient(masks, tile.orientation))
        if self.cache is not None:
            self.cache[index] = out
        return out

    def _precrop(self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        # Cut a region a bit larger than the crop (room for rotation/scale) before the affine warp,
        # preferring regions with valid pixels.
        size = int(np.ceil(self.params.crop * 1.5))
        h, w = masks.shape[1:]
        ph, pw = min(size, h), min(size, w)
        best = None
        for _ in range(5):
            r = int(rng.integers(0, h - ph + 1))
            c = int(rng.integers(0, w - pw + 1))
            frac = float(masks[3, r:r + ph, c:c + pw].mean())
            if best is None or frac > best[0]:
                best = (frac, r, c)
            if frac >= self.params.min_valid_fraction:
                break
        _, r, c = best
        return image[:, r:r + ph, c:c + pw], masks[:, r:r + ph, c:c + pw]

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, masks = self._precrop(*self.load_tile(index), rng)
        self.augment.set_random_seed(int(rng.integers(2**31 - 1)))
        out = self.augment(image=np.moveaxis(image.astype(np.float32), 0, -1), mask=np.moveaxis(masks, 0, -1))
        img = np.ascontiguousarray(np.moveaxis(np.atleast_3d(out["image"]), -1, 0))
        msk = np.ascontiguousarray(np.moveaxis(out["mask"], -1, 0))
        if self.params.color_on:  # after the geometry, from the same generator: crops stay as without it
            img = jitter_color(img, msk[3] > 0, self.params, self.stats, rng)
        item = {"image": torch.from_numpy(img), "target": torch.from_numpy(msk[:3]).float(),
                "valid": torch.from_numpy(msk[3:4]).float(), "meta": {"image_id": self.tiles[index].image_id}}
        if self.context_vectors is not None:
            item["context"] = torch.from_numpy(self.context_vectors[index])
        if self.area_target:
            item["area"] = torch.from_numpy(msk[-1].astype(np.float32))
        if self.count_buildings:
            ids = np.unique(msk[4])
            item["buildings"] = torch.tensor(float(np.count_nonzero(ids)), dtype=torch.float32)
        return item

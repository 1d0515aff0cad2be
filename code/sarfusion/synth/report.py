"""``sarfusion synth report``: statistics of generated scenes beside those of the real samples.

The real samples (``../shared/real_samples``) and the generators' outputs go through the same
loaders (one per format) and the same statistics (:mod:`sarfusion.synth.realism`), at the real
sample's resolution: Capella over Rotterdam at 4.5 m (the whole crop and its four 100 px
quadrants, so one sample still gives a range), and the Sentinel-1 / Sentinel-2 samples at 10 m
(the 26 S1/S2 pairs, SEN1-2, MultiEarth). Synthetic SN6 tiles (and the port tiles of a city with a
port district, the counterpart of the Capella harbour crop) are made into Capella-like 4.5 m
products (the chain that rebuilds the Capella crop from its own SLC chips, put on synthetic power:
:func:`sarfusion.synth.realism.capella_like`) and their strips mosaicked and averaged to 10 m; SN9
SAR is resampled onto the optical grid through the scene's ground field (the geocoding a real
co-registered pair has: layover stays) and made a Capella-like product the same way. Optical is
area-averaged. A row is "within" when the synthetic median lies inside the real min..max; each
cell also counts the seeds whose own median lies inside (``NO 1/3``: near an edge, not settled).

Reading conventions of the real samples (their files do not say):
- S1/S2 pairs: the SAR PNG is read as AMPLITUDE divided by its 99th percentile (dB = 20 log10):
  read so, its 9 px ENL (median 3.4-4.5) matches the MultiEarth Sentinel-1 sample of the same
  product (4.2); read as power it would be ~15.
- SEN1-2: the PNG's dB scale is not documented (read with the project's 3 units per dB, its
  looks come out at ~1.3, with the dataset paper's [-25, 0] dB at ~15), so only the scale-free
  rows (the two NCCs and orientation agreement) use it.
"""
from __future__ import annotations

import logging
import re
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import shapely
from tqdm import tqdm

from sarfusion import preview as P
from sarfusion.errors import InputError
from sarfusion.io.raster import raster_info, read_raster
from sarfusion.synth import realism as R

log = logging.getLogger(__name__)

REAL_ROOT = Path(__file__).resolve().parents[4] / "shared" / "real_samples"
CAPELLA_BANDS = ("HH", "HV", "VH", "VV")
STRETCH_DB = (-25.0, 5.0)  # the PNG's shared SAR stretch (calibrated dB)
SEN12_UNITS_PER_DB = 3.0   # what synth.landscape writes; the real SEN1-2 scale is unknown


@dataclass
class Pair:
    """One co-registered pair at one resolution. ``optical`` (3, H, W) linear, any scale;
    ``sar_db`` {pol: (H, W) float32 dB}; ``valid`` (H, W) bool; ``db_known``: False when the
    SAR's dB scale is unknown (only scale-free statistics are computed)."""

    name: str
    optical: np.ndarray
    sar_db: dict
    valid: np.ndarray
    cross_band: str
    db_known: bool = True
    stats: dict = field(default_factory=dict)
    seed: int | None = None  # the generator seed of a synthetic pair (per-seed verdicts)

    def measure(self) -> "Pair":
        if self.valid.sum() < 400:
            return self
        s = R.pair_statistics(self.optical, self.sar_db, self.valid, self.cross_band)
        if not self.db_known:
            s = {k: v for k, v in s.items() if k in ("ncc", "feature_ncc", "orientation")}
        self.stats = s
        return self


# ---------------------------------------------------------------------------------- loaders


def capella_pairs(folder: Path) -> list[Pair]:
    """Capella HH/HV/VH/VV dB (0 / NaN = masked) + its RGB, whole crop and 4 quadrants (4.5 m)."""
    sar = read_raster(folder / "sar_masked.tif").astype(np.float32)
    rgb = read_raster(folder / "rgb_unmasked.tif").astype(np.float32)
    valid = np.isfinite(sar).all(0) & (sar != 0).all(0)
    sar = np.nan_to_num(sar)
    h, w = valid.shape
    parts = {"whole": (slice(None), slice(None))}
    for i, (rs, cs) in enumerate([(slice(0, h // 2), slice(0, w // 2)), (slice(0, h // 2), slice(w // 2, w)),
                                  (slice(h // 2, h), slice(0, w // 2)), (slice(h // 2, h), slice(w // 2, w))]):
        parts[f"q{i + 1}"] = (rs, cs)
    return [Pair(f"capella {k}", rgb[:, rs, cs], {b: sar[i, rs, cs] for i, b in enumerate(CAPELLA_BANDS)},
                 valid[rs, cs], "HH") for k, (rs, cs) in parts.items()]


def s1s2_pairs(folder: Path) -> list[Pair]:
    """The 10 m S1 VH / S2 RGB PNG pairs (SAR read as amplitude, see the module docstring)."""
    out = []
    for sar_path in sorted((folder / "sar").glob("*.png")):
        opt = cv2.imread(str(folder / "opt" / sar_path.name), cv2.IMREAD_COLOR)
        amp = cv2.imread(str(sar_path), cv2.IMREAD_GRAYSCALE)
        if opt is None or amp is None:
            raise InputError("unreadable PNG (or its optical partner)", sar_path)
        valid = amp > 0
        db = (20 * np.log10(np.maximum(amp, 1).astype(np.float32) / 255.0)).astype(np.float32)
        out.append(Pair(f"s1s2 {sar_path.stem}", opt[..., ::-1].transpose(2, 0, 1).astype(np.float32),
                        {"VH": db}, valid, "VH"))
    return out


def sen12_pairs(root: Path, db_known: bool, units_per_db: float = SEN12_UNITS_PER_DB) -> list[Pair]:
    """SEN1-2 VV PNG / RGB PNG pairs at 10 m (dB = (value - 255) / ``units_per_db``)."""
    from sarfusion.datasets import sen12

    out = []
    for p in sen12.find_pairs(root):
        vv = sen12.read_png(p.sar, 1)[0].astype(np.float32)
        opt = sen12.read_png(p.optical, 3).astype(np.float32)
        out.append(Pair(f"sen12 {p.key}", opt, {"VV": (vv - 255) / units_per_db}, np.ones(vv.shape, bool),
                        "VV", db_known=db_known))
    return out


def multiearth_pairs(root: Path) -> list[Pair]:
    """Each MultiEarth Sentinel-1 date (VV, VH dB) with the nearest optical date the cloud filter keeps."""
    from sarfusion.clouds import assess_clouds, read_optical_reflectance
    from sarfusion.datasets import multiearth

    kept = [c["path"] for c in assess_clouds([root]) if c["keep"]]
    by_site = defaultdict(list)
    for key in kept:
        m = re.search(r"Sentinel2_\*_(?P<site>.+)_(?P<date>\d{4}_\d{2}_\d{2})$", Path(key).name)
        if m:
            by_site[m.group("site")].append((np.datetime64(m.group("date").replace("_", "-")), key))
    out = []
    for scene in multiearth.sar_scenes(root):
        if not by_site.get(scene.site):
            continue
        day = np.datetime64(scene.date.replace("_", "-"))
        _, key = min(by_site[scene.site], key=lambda t: abs(t[0] - day))
        rgb, valid, _ = read_optical_reflectance(next(Path(key).parent.glob(Path(key).name.replace("*", "B2") + ".tif*")))
        sar = multiearth.read_sar(scene)
        valid &= np.isfinite(sar).all(0)
        out.append(Pair(f"multiearth {scene.site} {scene.date}", rgb, {"VV": sar[0], "VH": sar[1]}, valid, "VV"))
    return out


def _pair_at_45(name: str, power: np.ndarray, optical: np.ndarray, valid: np.ndarray, pixel_m: float,
                bands: Sequence[str], rng: np.random.Generator) -> Pair:
    """A synthetic pair brought to the Capella crop's 4.5 m: SAR ``power`` ``(B, H, W)`` linear made
    into a Capella-like product (:func:`sarfusion.synth.realism.capella_like`), ``optical``
    ``(3, H, W)`` float32 area-averaged; ``valid`` ``(H, W)``; ``pixel_m`` the input pixel."""
    sar45, ok = R.capella_like(power, valid, pixel_m, rng)
    opt45, ok_opt = R.downsample(optical, valid, R.CAPELLA_PIXEL_M / pixel_m)
    rows, cols = (min(a, b) for a, b in zip(ok.shape, ok_opt.shape))
    return Pair(name, opt45[:, :rows, :cols], dict(zip(bands, sar45[:, :rows, :cols])),
                ok[:rows, :cols] & ok_opt[:rows, :cols], bands[0])


def _sn6_tile_at_45(name: str, sar_db: np.ndarray, optical: np.ndarray, valid: np.ndarray,
                    rng: np.random.Generator) -> Pair:
    """One 0.5 m SN6 tile (SAR ``(4, H, W)`` dB, optical ``(3, H, W)`` float32, ``valid`` ``(H, W)``)
    as a Capella-like 4.5 m product."""
    from sarfusion.synth.sar import BANDS

    power = np.where(valid, np.power(10.0, sar_db / 10.0), 0).astype(np.float32)
    return _pair_at_45(name, power, optical, valid, 0.5, BANDS, rng)


def sn6_pairs(train_aoi: Path, rng: np.random.Generator) -> tuple[list[Pair], list[Pair]]:
    """Synthetic SN6 training tiles at 4.5 m (one pair per tile, a Capella-like product drawing its
    speckle from ``rng``) and strips mosaicked and averaged to 10 m."""
    from sarfusion.synth.sar import BANDS, sn6_scale_to_db

    tiles = sorted((train_aoi / "SAR-Intensity").glob("*.tif"))
    at45, strips = [], defaultdict(list)
    for p in tiles:
        sar = read_raster(p)
        rgb = read_raster(train_aoi / "PS-RGB" / p.name.replace("SAR-Intensity", "PS-RGB")).astype(np.float32)
        valid = (sar != 0).all(0)
        db = sn6_scale_to_db(sar)
        strips["_".join(p.stem.split("_")[-4:-2])].append((raster_info(p).geotransform, db, rgb, valid))
        at45.append(_sn6_tile_at_45(f"sn6 {p.stem[-9:]}", db, rgb, valid, rng))
    at10 = []
    for key, parts in strips.items():
        x0 = min(gt[0] for gt, *_ in parts)
        y0 = max(gt[3] for gt, *_ in parts)
        size = parts[0][1].shape[1]
        cols = int(round((max(gt[0] for gt, *_ in parts) - x0) / 0.5)) + size
        rows = int(round((y0 - min(gt[3] for gt, *_ in parts)) / 0.5)) + size
        db = np.zeros((4, rows, cols), np.float32)
        rgb = np.zeros((3, rows, cols), np.float32)
        valid = np.zeros((rows, cols), bool)
        for gt, d, o, v in parts:
            c, r = int(round((gt[0] - x0) / 0.5)), int(round((y0 - gt[3]) / 0.5))
            db[:, r:r + size, c:c + size], rgb[:, r:r + size, c:c + size], valid[r:r + size, c:c + size] = d, o, v
        sar10, ok = R.sar_db_downsample(db, valid, 20)
        opt10, _ = R.downsample(rgb, valid, 20)
        at10.append(Pair(f"sn6 strip {key[:14]}", opt10, dict(zip(BANDS, sar10)), ok, "VV"))
    return at45, at10


PORT_PLAN_M = (2400.0, 1800.0)


def sn6_port_pairs(seed: int, size: int = 900, max_tiles: int = 9) -> list[Pair]:
    """Synthetic SN6 tiles of a port district at 4.5 m: a city with a port
    (:func:`sarfusion.synth.city.plan_city` with ``port=True``), one strip over the port district
    rendered as the SN6 generator renders its strips, and the tiles whose ground is at least half
    port. The counterpart of the Capella crop, which is a piece of Rotterdam's harbour."""
    from sarfusion.synth import city as C
    from sarfusion.synth import sn6 as G
    from sarfusion.synth.sar import draw_noise_floor_db, sn6_scale_to_db

    plan = C.plan_city(*PORT_PLAN_M, np.random.default_rng([seed, 5]), port=True)
    # the view, speckle and product draw from a stream of their own: a plan that draws one number
    # more must not re-draw the look side, incidence and noise floor (a ~1 dB move on 11 tiles)
    rng = np.random.default_rng([seed, 6])
    tile_m = size * G.PIXEL_M
    x0, y0, x1, y1 = plan.port.bounds
    x0, y0 = max(x0, G.MARGIN_M), max(y0, G.MARGIN_M)
    cols = max(1, min(3, int((min(x1, PORT_PLAN_M[0] - G.MARGIN_M) - x0) // tile_m)))
    rows = max(1, min(3, int((min(y1, PORT_PLAN_M[1] - G.MARGIN_M) - y0) // tile_m)))
    strip = G.Strip("port", int(rng.integers(0, 2)), float(x0), float(y0), rows, cols, rows * cols, (0.0, 0.0),
                    (0.0, 0.0), float(rng.uniform(*G.INCIDENCE_RANGE_DEG)), draw_noise_floor_db(rng))
    sar, optical, valid = G.render_strip(plan, strip, size, G.DEFAULT_LOOKS, rng, with_optical=True)
    pairs = []
    for t, (tx, ty, win) in enumerate(strip.tiles(size)):
        if t == max_tiles:
            break
        if shapely.box(tx, ty, tx + tile_m, ty + tile_m).intersection(plan.port).area < 0.5 * tile_m ** 2:
            continue
        pairs.append(_sn6_tile_at_45(f"sn6 port {seed}.{t}", sn6_scale_to_db(sar[:, win[0], win[1]]),
                                     optical[:, win[0], win[1]].astype(np.float32), valid[win], rng))
    return pairs


def sn9_pair(scene: dict, rng: np.random.Generator) -> Pair:
    """A synthetic SN9 scene at 4.5 m: the SAR resampled onto the optical grid through the ground
    field (so buildings keep their layover, as in a geocoded real pair), then made a Capella-like
    product (speckle from ``rng``); the optical averaged."""
    from sarfusion.synth.sn9 import SAR_DB_RANGE

    go, gs = raster_info(scene["optical"]).geotransform, raster_info(scene["sar"]).geotransform
    opt = read_raster(scene["optical"]).astype(np.float32)
    sar = read_raster(scene["sar"])[0]
    gf = read_raster(scene["groundfield"])
    h, w = opt.shape[1:]
    dx = cv2.resize(gf[0], (w, h), interpolation=cv2.INTER_LINEAR)
    dy = cv2.resize(gf[1], (w, h), interpolation=cv2.INTER_LINEAR)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    mx = ((go[0] + (cols + 0.5 + dx) * go[1] - gs[0]) / gs[1] - 0.5).astype(np.float32)
    my = ((go[3] + (rows + 0.5 + dy) * go[5] - gs[3]) / gs[5] - 0.5).astype(np.float32)
    lo, hi = SAR_DB_RANGE
    db = np.where(sar > 0, (sar.astype(np.float32) - 1) / 254 * (hi - lo) + lo, 0).astype(np.float32)
    power = np.where(sar > 0, np.power(10.0, db / 10.0), 0).astype(np.float32)
    warped = cv2.remap(power, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = cv2.remap((sar > 0).astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderValue=0) > 0
    return _pair_at_45(f"sn9 {scene['aoi']}", warped[None], opt, inside, go[1], ("HH",), rng)


# ---------------------------------------------------------------------------------- report


def _summary(pairs: list[Pair]) -> dict[str, list[float]]:
    values = defaultdict(list)
    for p in pairs:
        for k, v in p.stats.items():
            if np.isfinite(v):
                values[k].append(v)
    return values


# The real sample each synthetic source models (same kind of scene, same product). The pooled range
# over all real samples of a resolution is issue 21's target; a source's own counterpart is the
# stricter view (a pooled range can hold a figure that its own kind of scene never shows).
COUNTERPART = {"SN6 tiles": "Capella", "SN9 scenes": "Capella", "SEN1-2 synth": "SEN1-2",
               "MultiEarth synth": "MultiEarth"}


def compare(real: dict[str, list[Pair]], synthetic: dict[str, list[Pair]],
            counterpart: dict[str, str] = COUNTERPART) -> list[dict]:
    """One row per statistic the real samples measure: real min..max (over all real pairs) and,
    per synthetic source, its median, min, max and whether the median is within the real range
    (``within``; with pairs from several seeds also ``seeds_within`` / ``seeds``: how many seeds'
    own medians are within it, to tell a settled verdict from one near an edge);
    for a source whose ``counterpart`` is among ``real``, also that sample's own range
    (``own_min``, ``own_max``) and ``within_own`` (None where the counterpart lacks the statistic)."""
    real_vals = defaultdict(list)
    per_source = {name: _summary(pairs) for name, pairs in real.items()}
    for vals in per_source.values():
        for k, v in vals.items():
            real_vals[k].extend(v)
    synth = {name: _summary(pairs) for name, pairs in synthetic.items()}
    # {source: {seed: summary of that seed's pairs}}, for pairs that know their seed
    synth_by_seed = {name: {s: _summary([p for p in pairs if p.seed == s])
                            for s in {p.seed for p in pairs if p.seed is not None}}
                     for name, pairs in synthetic.items()}
    rows = []
    for stat in sorted(real_vals, key=_stat_order):
        lo, hi = min(real_vals[stat]), max(real_vals[stat])
        row = {"statistic": stat, "real_min": lo, "real_max": hi, "synthetic": {}}
        for name, vals in synth.items():
            if vals.get(stat):
                med = float(np.median(vals[stat]))
                cell = {"median": med, "min": min(vals[stat]), "max": max(vals[stat]),
                        "within": bool(lo <= med <= hi)}
                by_seed = [s[stat] for s in synth_by_seed[name].values() if s.get(stat)]
                if len(by_seed) > 1:
                    cell.update(seeds=len(by_seed), seeds_within=sum(lo <= float(np.median(v)) <= hi for v in by_seed))
                source = counterpart.get(name)
                if source in per_source:
                    own = per_source[source].get(stat)
                    cell.update(counterpart=source, own_min=min(own) if own else None,
                                own_max=max(own) if own else None,
                                within_own=bool(min(own) <= med <= max(own)) if own else None)
                row["synthetic"][name] = cell
        rows.append(row)
    return rows


def _stat_order(stat: str) -> tuple:
    head = ["ncc", "feature_ncc", "orientation", "enl"]
    return (head.index(stat), "") if stat in head else (len(head), stat)


def _format(groups: list[dict]) -> str:
    lines = []
    for g in groups:
        lines.append(f"\n== {g['resolution_m']} m: real {', '.join(f'{k} ({n})' for k, n in g['real_counts'].items())}"
                     f"; synthetic {', '.join(f'{k} ({n})' for k, n in g['synthetic_counts'].items())}")
        names = list(g["synthetic_counts"])
        lines.append(f"{'statistic':<14} {'real range':>16}  " + "  ".join(f"{n:>30}" for n in names))
        for r in g["rows"]:
            cells = []
            for n in names:
                s = r["synthetic"].get(n)
                seeds = f" {s['seeds_within']}/{s['seeds']}" if s is not None and "seeds" in s else ""
                cells.append(f"{'-':>30}" if s is None else
                             f"{s['median']:7.2f} [{s['min']:6.2f},{s['max']:6.2f}] {'ok' if s['within'] else 'NO':>2}"
                             f"{seeds:>4}")
            lines.append(f"{r['statistic']:<14} {r['real_min']:7.2f}..{r['real_max']:<7.2f}  " + "  ".join(cells))
        if len(g["real_counts"]) > 1:  # one real sample: its own range is the pooled one
            lines += _format_own(g)
    return "\n".join(lines)


def _format_own(group: dict) -> list[str]:
    """The stricter view: each synthetic source against its own real counterpart's range."""
    heads = {n: f"{n} vs {c['counterpart']}" for r in group["rows"] for n, c in r["synthetic"].items()
             if "counterpart" in c}
    names = [n for n in group["synthetic_counts"] if n in heads]
    if not names:
        return []
    lines = ["-- each source against its own real counterpart (median, own real range)",
             f"{'statistic':<14} " + "  ".join(f"{heads[n]:>30}" for n in names)]
    for r in group["rows"]:
        cells = []
        for n in names:
            c = r["synthetic"].get(n, {})
            if c.get("within_own") is None:
                cells.append(f"{'-':>30}")
            else:
                cells.append(f"{c['median']:7.2f} in {c['own_min']:6.2f}..{c['own_max']:<6.2f} "
                             f"{'ok' if c['within_own'] else 'NO':>2}".rjust(30))
        lines.append(f"{r['statistic']:<14} " + "  ".join(cells))
    return lines


def _db_u8(db: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lo, hi = STRETCH_DB
    out = np.clip((db - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    out[~valid] = 0
    return out


def _opt_u8(opt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Optical brightness stretched to its own 2-98 % (the sensors' scales differ)."""
    return np.stack([P.stretch_u8(b, valid) for b in opt])


def write_side_by_side(path: Path, real: Pair, synth: list[Pair]) -> Path:
    """PNG: the real pair's SAR (calibrated dB, shared stretch -25..+5 dB) and optical beside the
    synthetic ones at the same resolution, co-pol band, optical each to its own 2-98 %."""
    top = [_db_u8(real.sar_db[real.cross_band], real.valid)] + [_db_u8(p.sar_db[p.cross_band], p.valid) for p in synth]
    bottom = [_opt_u8(real.optical, real.valid)] + [_opt_u8(p.optical, p.valid) for p in synth]
    labels = [real.name] + [p.name for p in synth]
    tmp = path.with_name(path.stem + "_sar.png"), path.with_name(path.stem + "_optical.png")
    P.write_panel(tmp[0], top, [f"SAR {n}" for n in labels], max_side=400)
    P.write_panel(tmp[1], bottom, [f"optical {n}" for n in labels], max_side=400)
    a, b = cv2.imread(str(tmp[0])), cv2.imread(str(tmp[1]))
    width = max(a.shape[1], b.shape[1])
    pad = [cv2.copyMakeBorder(x, 0, 0, 0, width - x.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255)) for x in (a, b)]
    for t in tmp:
        t.unlink()
    return P.write_png(path, cv2.vconcat(pad), max_side=10_000)


def run_report(real_root: Path = REAL_ROOT, seeds: Sequence[int] = (0, 1, 2), sn6_tiles: int = 8,
               sn9_size: int = 2048, sn9_scenes: int = 2, out: Path | None = None) -> dict:
    """Generate small synthetic datasets (in a temp folder) for each seed, measure them and the real
    samples; each synthetic column pools the tiles / scenes of every seed (one seed's handful of
    scenes moves a median across a narrow real range: with seed 0 alone 22 figures were outside, with
    seed 1 26, with seed 2 28, before the port column). The PNGs show the first scene of each column (the first seed's).

    Returns ``{"groups": [{resolution_m, real_counts, synthetic_counts, rows}], "png": [paths], "seeds"}``.
    """
    from sarfusion.synth.landscape import write_multiearth, write_sen12
    from sarfusion.synth.sn6 import generate_sn6
    from sarfusion.synth.sn9 import generate_sn9

    real_root = Path(real_root)
    if not real_root.is_dir():
        raise InputError("real samples folder not found (the report compares against it)", real_root)
    real45 = {"Capella": [p.measure() for p in capella_pairs(real_root / "capella_rotterdam")]}
    real10 = {"S1/S2 pairs": [p.measure() for p in s1s2_pairs(real_root / "s1s2_pairs")],
              "SEN1-2": [p.measure() for p in sen12_pairs(real_root / "sen1-2", db_known=False)],
              "MultiEarth": [p.measure() for p in multiearth_pairs(real_root / "multiearth")]}
    synth45: dict[str, list] = {"SN6 tiles": [], "SN6 port tiles": [], "SN9 scenes": []}
    synth10: dict[str, list] = {"SN6 strips": [], "SEN1-2 synth": [], "MultiEarth synth": []}
    for seed in tqdm(list(seeds), desc="synth report seeds", unit="seed", disable=len(seeds) < 2):
        with tempfile.TemporaryDirectory(prefix="synth_report_") as tmp:
            tmp = Path(tmp)
            log.info("seed %d: generating %d SN6 tiles, %d SN9 scenes of %d px, SEN1-2 and MultiEarth scenes",
                     seed, sn6_tiles, sn9_scenes, sn9_size)
            sn6 = generate_sn6(tmp / "sn6", sn6_tiles, size=900, seed=seed)
            # the Capella-like products' single-look draws: one stream per column
            sn6_45, sn6_10 = sn6_pairs(sn6["train_aoi"], np.random.default_rng([seed, 45]))
            speckle9 = np.random.default_rng([seed, 45, 9])
            sn9 = [sn9_pair(s, speckle9) for s in generate_sn9(tmp / "sn9", size=sn9_size, seed=seed + 200,
                                                      scenes=sn9_scenes)]
            write_sen12(tmp / "sen12", pairs=12, seed=seed)
            write_multiearth(tmp / "multiearth", seed=seed, sites=2, sar_dates=2, optical_dates=4)
            for column, pairs in (("SN6 tiles", sn6_45), ("SN9 scenes", sn9), ("SN6 port tiles", sn6_port_pairs(seed)),
                                  ("SN6 strips", sn6_10),
                                  ("SEN1-2 synth", sen12_pairs(tmp / "sen12", db_known=True)),
                                  ("MultiEarth synth", multiearth_pairs(tmp / "multiearth"))):
                for p in pairs:
                    p.seed = seed
                (synth45 if column in synth45 else synth10)[column] += [p.measure() for p in pairs]
    groups = []
    for res, real, synth in ((4.5, real45, synth45), (10.0, real10, synth10)):
        groups.append({"resolution_m": res, "real_counts": {k: len(v) for k, v in real.items()},
                       "synthetic_counts": {k: len(v) for k, v in synth.items()}, "rows": compare(real, synth)})
    pngs = []
    if out is not None:
        out = Path(out)
        pngs.append(str(write_side_by_side(out / "synth_vs_capella_4.5m.png", real45["Capella"][0],
                                           [synth45[k][0] for k in ("SN6 tiles", "SN6 port tiles", "SN9 scenes")
                                            if synth45[k]])))
        # MultiEarth is the calibrated 10 m sample (the S1/S2 PNGs are relative to their own p99)
        pngs.append(str(write_side_by_side(out / "synth_vs_multiearth_10m.png", real10["MultiEarth"][0],
                                           [synth10["SN6 strips"][0], synth10["MultiEarth synth"][0]])))
    return {"groups": groups, "png": pngs, "seeds": list(seeds), "text": _format(groups)}

"""Synthetic SpaceNet 6 generator: layout, formats, determinism, SAR physics and statistics."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import pandas as pd
import pytest
import shapely

from sarfusion.io.raster import raster_info, read_raster
from sarfusion.io.vector import image_id_from_name, read_geojson, strip_key
from sarfusion.synth import city as C
from sarfusion.synth import sar as S
from sarfusion.synth.sn6 import AOI, LABEL_COLUMNS, generate_sn6, overlapping_labels

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_samples"
SPEC_MEANS = {"HH": 28.6, "HV": 36.1, "VH": 33.8, "VV": 26.2}
SIZE = 300


@pytest.fixture(scope="module")
def sn6(tmp_path_factory):
    out = tmp_path_factory.mktemp("sn6")
    return generate_sn6(out, 6, size=SIZE, seed=3)


def _orientations(path: Path) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in path.read_text().splitlines() if line.strip()}


def test_layout_names_and_formats(sn6):
    train, test = sn6["train_aoi"], sn6["test_aoi"]
    assert sn6["n_train"] + sn6["n_test"] == 6 and sn6["n_test"] == 2
    sar = sorted((train / "SAR-Intensity").glob("*.tif"))
    rgb = sorted((train / "PS-RGB").glob("*.tif"))
    gj = sorted((train / "geojson_buildings").glob("*.geojson"))
    assert len(sar) == len(rgb) == len(gj) == 4
    pat = re.compile(r"SN6_Train_AOI_11_Rotterdam_SAR-Intensity_\d{14}_\d{14}_tile_\d+\.tif")
    assert all(pat.fullmatch(p.name) for p in sar)
    test_sar = sorted((test / "SAR-Intensity").glob("*.tif"))
    assert len(test_sar) == 2
    assert all(re.fullmatch(r"SN6_Test_Public_AOI_11_Rotterdam_SAR-Intensity_\d{14}_\d{14}_tile_\d+\.tif", p.name)
               for p in test_sar)
    assert sorted(p.name for p in test.iterdir()) == ["SAR-Intensity"]  # test AOI: SAR only
    assert sn6["test_truth_csv"].is_file() and AOI not in str(sn6["test_truth_csv"].parent)
    for p in sar + test_sar:
        info = raster_info(p)
        assert info.shape == (4, SIZE, SIZE) and info.dtype == np.float32
        assert info.epsg == 32631 and info.pixel_size == (0.5, -0.5) and info.nodata[0] == 0
        a = read_raster(p)
        assert np.isfinite(a).all() and (a >= 0).all()
        valid = (a != 0).any(axis=0)
        assert valid.mean() > 0.3 and (a[:, valid] > 0).all()  # valid pixels never hit the nodata value
    for p in rgb:
        info = raster_info(p)
        assert info.shape == (3, SIZE, SIZE) and info.dtype == np.uint8 and info.nodata[0] == 0
        sar_twin = train / "SAR-Intensity" / p.name.replace("PS-RGB", "SAR-Intensity")
        assert raster_info(sar_twin).geotransform == info.geotransform
        # the same strip footprint masks both sensors
        assert np.array_equal((read_raster(p) != 0).any(0), (read_raster(sar_twin) != 0).any(0))
    orient = _orientations(sn6["orientations"])
    assert set(orient.values()) == {0, 1}
    assert {strip_key(image_id_from_name(p)) for p in sar + test_sar} == set(orient)
    for csv in (sn6["train_csv"], sn6["test_truth_csv"]):
        df = pd.read_csv(csv)
        assert list(df.columns) == LABEL_COLUMNS
        assert df.ImageId.nunique() == len(set(df.ImageId))
    df = pd.read_csv(sn6["train_csv"])
    assert set(df.ImageId) == {image_id_from_name(p) for p in sar}
    polys = shapely.from_wkt(df.PolygonWKT_Pix[df.PolygonWKT_Pix != "POLYGON EMPTY"])
    assert all(g.geom_type == "Polygon" and g.is_valid for g in polys)
    b = shapely.bounds(polys)
    assert b.min() >= 0 and b.max() <= SIZE
    assert (df.Mean_Building_Height[df.PolygonWKT_Pix != "POLYGON EMPTY"].between(3, 45)).all()
    # GeoJSON footprints are the CSV polygons in EPSG:32631 map coordinates
    for p in gj:
        image_id = image_id_from_name(p)
        geoms, _ = read_geojson(p)
        rows = df[(df.ImageId == image_id) & (df.PolygonWKT_Pix != "POLYGON EMPTY")]
        assert len(geoms) == len(rows)
        gt = raster_info(train / "SAR-Intensity" / f"SN6_Train_{AOI}_SAR-Intensity_{image_id}.tif").geotransform
        for g, wkt in zip(geoms, rows.PolygonWKT_Pix):
            px = shapely.transform(g, lambda xy: np.column_stack([(xy[:, 0] - gt[0]) / gt[1], (xy[:, 1] - gt[3]) / gt[5]]))
            assert px.symmetric_difference(shapely.from_wkt(wkt)).area < 1.0


def test_strips_of_both_directions_image_the_same_ground(sn6):
    orient = _orientations(sn6["orientations"])
    boxes = {0: [], 1: []}
    for p in (sn6["train_aoi"] / "SAR-Intensity").glob("*.tif"):
        info = raster_info(p)
        gt = info.geotransform
        box = shapely.box(gt[0], gt[3] + gt[5] * info.height, gt[0] + gt[1] * info.width, gt[3])
        boxes[orient[strip_key(image_id_from_name(p))]].append(box)
    overlap = max(a.intersection(b).area for a in boxes[0] for b in boxes[1])
    assert overlap > 0.1 * (SIZE * 0.5) ** 2


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    generate_sn6(tmp_path / "a", 2, size=128, seed=11)
    generate_sn6(tmp_path / "b", 2, size=128, seed=11)
    generate_sn6(tmp_path / "c", 2, size=128, seed=12)
    ha, hb, hc = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(ha) >= 7 and ha == hb
    assert ha != hc


def _one_building_city(height_m: float, rows: int = 240, cols: int = 160) -> tuple[C.CityRaster, C.CityPlan, tuple]:
    """Grass with one flat, axis-aligned gravel-roofed building (rows 100-139, cols 60-99), no
    trees or objects; the plan holds just that building."""
    r0, r1, c0, c1 = 100, 140, 60, 100
    classes = np.full((rows, cols), C.GRASS, np.uint8)
    height = np.zeros((rows, cols), np.float32)
    bid = np.zeros((rows, cols), np.int32)
    classes[r0:r1, c0:c1] = C.ROOF
    height[r0:r1, c0:c1] = height_m
    bid[r0:r1, c0:c1] = 1
    raster = C.CityRaster(0.5, 0.0, 0.0, classes, height, bid, np.zeros((rows, cols), np.float32))
    poly = shapely.box(c0 * 0.5, r0 * 0.5, c1 * 0.5, r1 * 0.5)
    one = lambda v, t=np.float32: np.array([v], t)  # noqa: E731
    buildings = C.Buildings(np.array([poly], dtype=object), one(height_m), one(0.0), one(0.0),
                            np.array([[40.0, 60.0]]), one(10.0), np.array([[120, 120, 120]], np.uint8),
                            one(C.APARTMENT, np.uint8), one(C.GRAVEL, np.uint8))
    plan = C.CityPlan(cols * 0.5, rows * 0.5, 0, [], np.array([], dtype=object), np.zeros(0, np.uint8),
                      np.zeros(0, np.float32), np.array([], dtype=object), [], None, buildings,
                      np.zeros((0, 4)), np.zeros((0, 6)), np.zeros((0, 2)))
    return raster, plan, (r0, r1, c0, c1)


@pytest.mark.parametrize("height_m", [8.0, 16.0])
@pytest.mark.parametrize("look", ["N", "S"])
def test_layover_double_bounce_and_shadow_geometry(height_m, look):
    raster, plan, (r0, r1, c0, c1) = _one_building_city(height_m)
    refl = S.simulate_reflectivity(raster, plan, look, psf_sigma_px=0)
    hh = S.to_db(refl[0])[:, c0 + 5:c1 - 5].mean(axis=1)  # range profile through the building
    lay = S.layover_px(height_m, 0.5)
    shadow_len = height_m * np.tan(np.deg2rad(S.DEFAULT_INCIDENCE_DEG)) / 0.5
    grass = float(np.median(hh[:40]) if look == "S" else np.median(hh[-40:]))
    if look == "N":
        foot, roof_img, shadow = r0, (r0 - lay, r1 - lay), (r1 - lay, r1 + shadow_len)
    else:  # mirrored: the wall facing the sensor is the southern one
        foot, roof_img, shadow = r1 - 1, (r0 + lay, r1 + lay), (r0 - shadow_len, r0 + lay)
    # double bounce: the brightest row is the wall foot at the true footprint edge
    assert abs(int(np.argmax(hh)) - foot) <= 1
    assert hh[foot] > grass + 15
    # radar shadow right behind the laid-over roof (and behind the wall foot when the layover
    # exceeds the building depth), down to the noise floor
    if look == "N":
        s0, s1 = int(np.ceil(max(shadow[0], foot + 1))) + 2, int(np.floor(shadow[1])) - 2
    else:
        s0, s1 = int(np.ceil(shadow[0])) + 2, int(np.floor(min(shadow[1], foot))) - 2
    assert s1 > s0 and hh[s0:s1].max() < S.NOISE_FLOOR_DB + 1
    edge = int(np.floor(shadow[0])) - 3 if look == "N" else int(np.ceil(shadow[1])) + 3
    # the laid-over roof ends exactly there: 3 px before the shadow its return is at least the
    # noise power again (+3 dB). Until 2026-12-06 this read "+6", against a floor of -18.5 dB; the
    # floor re-read as a level is -15.5, and a gravel roof alone (~-10 dB) is 5-6 dB above it.
    assert hh[edge] > S.NOISE_FLOOR_DB + 3
    # the roof appears displaced toward the sensor by h / tan(incidence)
    mid = int(round((roof_img[0] + roof_img[1]) / 2))
    assert hh[mid] > grass


def _valid_stats(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    vals = [[] for _ in range(4)]
    for p in paths:
        a = read_raster(p)
        v = (a != 0).any(axis=0)
        for b in range(4):
            vals[b].append(a[b][v])
    vals = [np.concatenate(v) for v in vals]
    return np.array([v.mean() for v in vals]), np.array([v.std() for v in vals]), vals


def test_sar_statistics_match_spec_and_capella(sn6):
    paths = sorted((sn6["train_aoi"] / "SAR-Intensity").glob("*.tif"))
    means, stds, vals = _valid_stats(paths)
    for b, name in enumerate(S.BANDS):
        print(f"synthetic SN6 {name}: mean {means[b]:.1f} (SPEC {SPEC_MEANS[name]}), std {stds[b]:.1f} "
              f"(SPEC ~8.5), p1-p99 {np.percentile(vals[b], 1):.1f}-{np.percentile(vals[b], 99):.1f}")
        assert abs(means[b] - SPEC_MEANS[name]) < 5.0
        assert 5.5 < stds[b] < 11.5
        assert 10 < np.percentile(vals[b], 99) < 95
    # HV and VH: the same scatterers, equal up to noise and the per-band offset
    a = read_raster(paths[0])
    v = (a != 0).any(axis=0)
    assert np.corrcoef(a[1][v], a[2][v])[0, 1] > 0.9
    # vegetation bright in cross-pol relative to co-pol; water and roads dark
    capella = REAL / "capella_rotterdam" / "sar_masked.tif"
    if not capella.is_file():
        pytest.skip(f"real Capella sample not found at {capella}")
    cap = read_raster(capella).astype(np.float64)
    cv = np.isfinite(cap).all(0) & (cap != 0).all(0)
    # multilook the synthetic SAR to Capella's 4.5 m pixels (9 x 9 linear means), in calibrated dB,
    # keeping every block that holds no nodata pixel: all tiles, not only the fully valid ones, so a
    # single tile's land use (a park, a canal) does not decide the comparison. Measured over seeds
    # 0-5 with the noise floor at -15.5 dB (2026-12-06): co-pol 1.6-4.0 dB brighter than Capella's
    # port scene, cross-pol 0.8-2.8 dB brighter (at -18.5: 0.5-4.7 dB darker).
    synth_db = []
    for p in paths:
        a = read_raster(p)
        n = (a.shape[1] // 9) * 9
        whole = (a[:, :n, :n] != 0).all(axis=0).reshape(n // 9, 9, n // 9, 9).all(axis=(1, 3)).ravel()
        lin = np.power(10, S.sn6_scale_to_db(a) / 10).astype(np.float32)
        ml = cv2.resize(lin[:, :n, :n].transpose(1, 2, 0), (n // 9, n // 9), interpolation=cv2.INTER_AREA)
        synth_db.append(10 * np.log10(ml.reshape(-1, 4)[whole]))
    synth_db = np.concatenate(synth_db)
    if len(synth_db) < 100:
        pytest.skip("fewer than 100 fully valid 4.5 m blocks to compare")
    for b, name in enumerate(S.BANDS):
        cm, cs = cap[b][cv].mean(), cap[b][cv].std()
        sm, ss = synth_db[:, b].mean(), synth_db[:, b].std()
        print(f"{name} at 4.5 m: synthetic mean {sm:.1f} dB std {ss:.1f} | Capella mean {cm:.1f} dB std {cs:.1f}")
        assert abs(sm - cm) < 5.0
        assert 0.5 * cs < ss < 3.0 * cs


def test_labels_sit_on_the_double_bounce_and_layover(sn6):
    """Each labelled building's sensor-facing edge is bright (double bounce), its far side dark
    (shadow), and its roof shows up shifted toward the sensor by h / tan(incidence)."""
    df = pd.read_csv(sn6["train_csv"])
    orient = _orientations(sn6["orientations"])
    near, far, shifted, unshifted, n = [], [], [], [], 0
    for image_id, rows in df[df.PolygonWKT_Pix != "POLYGON EMPTY"].groupby("ImageId"):
        a = read_raster(sn6["train_aoi"] / "SAR-Intensity" / f"SN6_Train_{AOI}_SAR-Intensity_{image_id}.tif")
        hh = a[0]
        valid = (a != 0).any(axis=0)
        flip = orient[strip_key(image_id)] == 1  # make the sensor side the top for both
        if flip:
            hh, valid = hh[::-1], valid[::-1]
        for wkt, h in zip(rows.PolygonWKT_Pix, rows.Mean_Building_Height):
            g = shapely.from_wkt(wkt)
            if g.area < 200:
                continue
            mask = np.zeros(hh.shape, np.uint8)
            pts = np.asarray(g.exterior.coords)
            if flip:
                pts = np.column_stack([pts[:, 0], hh.shape[0] - pts[:, 1]])
            cv2.fillPoly(mask, [np.round((pts - 0.5) * 16).astype(np.int32)], 1, shift=4)
            m = mask.astype(bool)
            top = m.copy()
            top[1:] &= ~m[:-1]
            bottom = m.copy()
            bottom[:-1] &= ~m[1:]
            lay = int(round(S.layover_px(h, 0.5)))
            up = np.zeros_like(m)
            up[:-lay or None] = m[lay:]          # the footprint moved toward the sensor
            if not up.any() or not (valid[m].all() and valid[up].all()) or top.sum() < 5:
                continue
            near.append(hh[top].mean())
            far.append(hh[bottom].mean())
            shifted.append(hh[up & ~m].mean() if (up & ~m).any() else hh[up].mean())
            unshifted.append(hh[m & ~up].mean() if (m & ~up).any() else hh[m].mean())
            n += 1
    assert n >= 10
    near, far, shifted, unshifted = map(np.array, (near, far, shifted, unshifted))
    print(f"{n} buildings: near edge {near.mean():.1f}, far edge {far.mean():.1f}, "
          f"layover zone {shifted.mean():.1f}, footprint behind it {unshifted.mean():.1f}")
    assert near.mean() > far.mean() + 8
    assert np.mean(near > far) > 0.8
    assert shifted.mean() > unshifted.mean() + 4


def test_no_label_overlaps_another_in_any_generated_csv(sn6):
    """SpaceNet labels never overlap: in every CSV the generator writes, no two labels of a tile
    overlap by more than the CSV's coordinate rounding, while adjoining buildings do touch."""
    for csv in (sn6["train_csv"], sn6["test_truth_csv"]):
        df = pd.read_csv(csv)
        assert overlapping_labels(df) == []
    # the same on a larger plan at full precision, where terraced rows and courtyard blocks adjoin
    touching = 0
    for seed in (1, 2):
        plan = C.plan_city(900, 900, np.random.default_rng(seed))
        polys = plan.buildings.polygons
        a, b = shapely.STRtree(polys).query(polys, predicate="intersects")
        a, b = a[a < b], b[a < b]
        area = shapely.area(shapely.intersection(polys[a], polys[b]))
        assert area.max(initial=0) < 1e-4  # m^2: touching, never overlapping
        touching += len(a)
    assert touching > 50  # shared walls: adjoining buildings are separate polygons


def test_demo_data_from_two_processes_is_what_one_process_writes(tmp_path):
    """``make demo`` generates the SN6 city in a second process beside the SN9 scenes and SEN1-2
    pairs; the files are byte for byte those of the generator run alone."""
    from sarfusion.pipeline import _generate_demo_data
    from sarfusion.synth.sn6 import generate_sn6

    _generate_demo_data(tmp_path / "demo", sn6_tiles=4, sn9_size=1024, seed=2, sn6_size=128, sen12_pairs=4)
    generate_sn6(tmp_path / "alone", tiles=4, size=128, seed=2, preview=True)
    files = lambda root: sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())  # noqa: E731
    demo, alone = tmp_path / "demo" / "sn6", tmp_path / "alone"
    assert files(demo) and files(demo) == files(alone)
    for rel in files(alone):
        assert (demo / rel).read_bytes() == (alone / rel).read_bytes(), rel
    assert list((tmp_path / "demo" / "sn9").rglob("*_tiepoints_test.csv"))
    assert len(list((tmp_path / "demo" / "sen12").rglob("*.png"))) == 8
    assert not list((tmp_path / "demo").glob(".*.partial"))  # each kind renamed into place when complete


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the tie to the parent is Linux's")
def test_demo_data_child_dies_with_the_demo(tmp_path):
    """The SN6 half of the demo data is written by a child process. When the demo is killed (a
    scheduler's SIGTERM, `timeout`, SIGKILL), the child must not live on, writing into the data
    folder a rerun will use (it did: a killed demo's child kept writing for ~30 s beside the rerun)."""
    from sarfusion.engine import usable_workers

    if usable_workers() < 1:
        pytest.skip("one core: the demo writes the SN6 tiles in its own process, there is no child")
    partial = tmp_path / "data" / ".sn6.partial"

    def writers() -> list[int]:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(partial).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
        return found

    script = ("import sys; from pathlib import Path; from sarfusion.pipeline import _generate_demo_data; "
              "_generate_demo_data(Path(sys.argv[1]), sn6_tiles=400, sn9_size=4096, seed=0, sen12_pairs=4)")
    demo = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "data")])
    try:
        deadline = time.time() + 120
        while not writers() and time.time() < deadline and demo.poll() is None:
            time.sleep(0.1)
        assert writers(), "the SN6 child never started"
        time.sleep(1.0)
        demo.kill()
        demo.wait()
        deadline = time.time() + 15
        while writers() and time.time() < deadline:
            time.sleep(0.1)
        left = writers()
    finally:
        demo.kill()
        for pid in writers():
            os.kill(pid, signal.SIGKILL)
    assert not left, "the SN6 child outlived the demo"


def test_port_district_structures_are_imaged_but_never_labelled():
    """``plan_city(port=True)``: dock basins are water with paved quays, ships lie in the basins,
    tanks and container stacks stand in the port district, nothing overlaps anything, and an SN6
    tile over the port labels the warehouses but none of the tanks, containers or ships."""
    from sarfusion.synth.sn6 import PIXEL_M, _tile_labels

    plan = C.plan_city(2400, 1800, np.random.default_rng([0, 3]), port=True)
    b = plan.buildings
    kinds = set(b.kind[~b.labelled].tolist())
    assert kinds == {C.TANK, C.CONTAINER, C.SHIP}
    assert all(plan.basins.buffer(0.01).contains(s) for s in b.polygons[b.kind == C.SHIP])
    port_land = plan.port.buffer(0.01)
    assert all(port_land.contains(p) and not p.intersects(plan.basins)
               for p in b.polygons[np.isin(b.kind, (C.TANK, C.CONTAINER))])
    a, c = shapely.STRtree(b.polygons).query(b.polygons, predicate="intersects")
    a, c = a[a < c], c[a < c]
    assert shapely.area(shapely.intersection(b.polygons[a], b.polygons[c])).max(initial=0) < 1e-4

    x0, y0 = (np.asarray(plan.port.bounds[:2]) + 100).tolist()
    tile_m = 450.0
    window = shapely.box(x0, y0, x0 + tile_m, y0 + tile_m)
    unlabelled = [p for p in b.polygons[~b.labelled] if p.intersects(window)]
    assert len(unlabelled) > 5  # the window holds port structures, so the check below can fail
    rows, _, _ = _tile_labels(plan, "port_tile", x0, y0, tile_m, window, 0.0, 0.0)
    labels = [shapely.affinity.translate(shapely.affinity.scale(shapely.from_wkt(r["PolygonWKT_Pix"]), PIXEL_M,
                                                                 PIXEL_M, origin=(0, 0)), x0, y0)
              for r in rows if r["PolygonWKT_Pix"] != "POLYGON EMPTY"]
    assert labels and max(shapely.area(shapely.intersection(lab, u)) for lab in labels for u in unlabelled) < 0.05

    r = C.rasterize(plan, *plan.port.bounds[:2], 600, 600, 2.0)
    water = shapely.contains_xy(plan.basins.buffer(-2), *r.plan_xy()) & (r.building_id == 0)
    assert water.any() and (r.classes[water] == C.WATER).all()
    quay = shapely.contains_xy(plan.quays.buffer(-2), *r.plan_xy()) & (r.building_id == 0)
    assert quay.any() and (r.classes[quay] == C.PAVED).mean() > 0.9


def test_port_terminals_have_cranes_and_rails_on_their_quays():
    """Gantry cranes and rails (plan in docs/synthetic_data.md) exist only in port plans, stand on
    the quays (leg feet and rails), reach out over the basins at their height, and a plan without
    a port has none."""
    plain = C.plan_city(2400, 1800, np.random.default_rng([0, 3]))
    assert not np.isin(plain.objects[:, 4], C.PORT_OBJECT_KINDS).any()
    plan = C.plan_city(2400, 1800, np.random.default_rng([0, 3]), port=True)
    o = plan.objects
    feet, rails, crane = (o[o[:, 4] == k] for k in (C.CRANE_FOOT, C.RAIL, C.CRANE))
    assert len(feet) >= 4 and len(feet) % 4 == 0 and len(rails) > 100
    on_quay = plan.quays.buffer(0.01)
    for pts in (feet, rails):
        assert shapely.contains_xy(on_quay, pts[:, 0], pts[:, 1]).all()
        assert (pts[:, 2] == 0).all()
    assert crane[:, 2].min() >= 1.0 and crane[:, 2].max() <= C.CRANE_HEIGHT_M[1]
    # no rail is drawn twice: on a quay narrower than 36.5 m the cranes' land rail lies where the
    # track's first rail would, and one steel line has one rail's cross-section
    spacing = shapely.STRtree(shapely.points(rails[:, :2])).query(shapely.points(rails[:, :2]), predicate="dwithin",
                                                                   distance=0.1)
    assert (spacing[0] != spacing[1]).sum() == 0
    boom = crane[crane[:, 2] >= C.CRANE_HEIGHT_M[0]]
    assert shapely.contains_xy(plan.basins, boom[:, 0], boom[:, 1]).mean() > 0.2  # outreach over the water


def test_rails_glint_at_broadside_and_crane_tops_lay_over():
    """A metre of rail is a dihedral that glints only near broadside: a rail along the azimuth axis
    returns far more than the same rail along range, with the double bounce's HV / HH ratio; a crane's
    boom 40 m up lands 40 m x cot(incidence) closer to the sensor. The objects are placed on open water
    in a dock basin, 80 m from anything that could hide them; the scene alone is subtracted."""
    import dataclasses

    plan = C.plan_city(2400, 1800, np.random.default_rng([0, 3]), port=True)
    xs, ys = np.meshgrid(np.arange(0, 2400, 10.0), np.arange(0, 1800, 10.0))
    clear = shapely.contains_xy(plan.basins, xs, ys) & (
        shapely.distance(shapely.union_all(plan.buildings.polygons), shapely.points(xs, ys)) > 80)
    assert clear.any()
    cx, cy = xs[clear][0], ys[clear][0]
    ps, size = 0.5, 240
    x0, y0 = cx - size * ps / 2, cy - size * ps / 2
    raster = C.rasterize(plan, x0, y0, size, size, ps)
    along = np.arange(-20.0, 20.0, 1.0)
    rail = np.column_stack([cx + along, np.full(len(along), cy), np.zeros(len(along)), np.full(len(along), 10.0),
                            np.full(len(along), C.RAIL), np.zeros(len(along))])
    boom = np.array([[cx, cy + 25.0, 40.0, 100.0, C.CRANE, 0.0]])

    def objects_only(objects: np.ndarray, look: str) -> np.ndarray:
        with_objects = S.simulate_reflectivity(raster, dataclasses.replace(plan, objects=objects), look)
        without = S.simulate_reflectivity(raster, dataclasses.replace(plan, objects=objects[:0]), look)
        return with_objects - without

    broadside, along_range = objects_only(rail, "N"), objects_only(rail, "E")
    assert broadside[0].sum() > 50 * along_range[0].sum() > 0
    hv_hh = 10 * np.log10(broadside[1].sum() / broadside[0].sum())
    assert abs(hv_hh - S.DIHEDRAL_RELATIVE_DB[1]) < 0.5

    top = objects_only(boom, "N")[0]
    row_seen = np.unravel_index(np.argmax(top), top.shape)[0]
    row_ground = (cy + 25.0 - y0) / ps
    expected = 40.0 / np.tan(np.deg2rad(S.DEFAULT_INCIDENCE_DEG)) / ps
    assert abs((row_ground - row_seen) - expected) < 2.0

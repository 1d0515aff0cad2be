"""Watershed + polygonize recover known buildings from their own target masks."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from sarfusion.datasets.sn6_buildings import building_targets, rasterize_instances
from sarfusion.postproc import WatershedParams, polygonize_instances, probabilities_to_polygons, watershed_instances


def _best_iou(poly, others):
    return max(poly.intersection(o).area / poly.union(o).area for o in others)


def test_touching_buildings_are_split_and_recovered():
    # Two buildings sharing a wall, one L-shaped, one with a courtyard, one too small to keep.
    truth = [box(10, 10, 40, 30), box(40, 10, 70, 30),
             Polygon([(80, 60), (120, 60), (120, 75), (95, 75), (95, 100), (80, 100)]),
             box(20, 60, 60, 100).difference(box(32, 72, 48, 88)),
             box(100, 10, 108, 18)]  # 64 px^2 < 80
    labels = rasterize_instances(truth, (128, 128))
    np.testing.assert_allclose([(labels == i + 1).sum() for i in range(len(truth))],
                               [t.area for t in truth], rtol=0.02)
    prob = building_targets(labels, edge_width=2, contact_width=2).astype(np.float32)
    assert prob[2].sum() > 0, "the shared wall must produce contact pixels"
    polys, conf = probabilities_to_polygons(prob, WatershedParams(min_seed_area=4))
    assert len(polys) == 4
    assert all(0.0 < c <= 1.0 for c in conf)
    for t in truth[:4]:
        assert _best_iou(t, polys) > 0.8  # seeds stop short of the shared wall: a few px off
    assert all(p.geom_type == "Polygon" and p.is_valid for p in polys)
    courtyard = max(polys, key=lambda p: len(p.interiors))
    assert len(courtyard.interiors) == 1


def test_polygon_covers_pixel_squares_exactly():
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 8:20] = 1  # rows 5..14, cols 8..19 -> square [8, 20] x [5, 15]
    polys, _ = polygonize_instances(labels, params=WatershedParams(min_area=10, simplify_tolerance=0))
    assert len(polys) == 1
    assert shapely.equals_exact(shapely.normalize(polys[0]), shapely.normalize(box(8, 5, 20, 15)), 1e-6)


def test_small_polygons_dropped_and_seedless_blobs_ignored():
    prob = np.zeros((3, 64, 64), np.float32)
    prob[0, 5:13, 5:13] = 0.9  # 64 px: seeded but below 80 px^2
    prob[0, 30:50, 30:50] = 0.6  # footprint above mask threshold but no seed (0.6 < 0.75)
    polys, _ = probabilities_to_polygons(prob, WatershedParams(min_seed_area=1))
    assert polys == []
    prob[0, 30:50, 30:50] = 0.95
    polys, conf = probabilities_to_polygons(prob, WatershedParams(min_seed_area=1))
    assert len(polys) == 1 and polys[0].area == pytest.approx(400, rel=0.02)
    assert conf[0] == pytest.approx(0.95, abs=1e-4)


def test_watershed_rejects_wrong_shape():
    with pytest.raises(ValueError, match="footprint/edge/contact"):
        watershed_instances(np.zeros((2, 8, 8), np.float32))


# ----------------------------------------------------------------------------- the SN6 winner's variants

def _two_touching(contact: bool = True) -> np.ndarray:
    """Probabilities of two 20 x 20 buildings sharing a wall at column 30, as a trained model would
    see them: footprint 1 on both, edge on their outer ring, contact along the shared wall."""
    labels = rasterize_instances([box(10, 10, 30, 30), box(30, 10, 50, 30)], (40, 60))
    return building_targets(labels, edge_width=1, contact_width=3 if contact else 0).astype(np.float32)


def test_dividing_lines_part_touching_buildings_and_the_buffer_closes_them():
    prob = _two_touching()
    plain = watershed_instances(prob, WatershedParams(min_seed_area=1))
    parted = watershed_instances(prob, WatershedParams(min_seed_area=1, dividing_lines=True))
    for labels in (plain, parted):
        assert set(np.unique(labels)) == {0, 1, 2}

    def touching(labels):
        right = (labels[:, :-1] > 0) & (labels[:, 1:] > 0) & (labels[:, :-1] != labels[:, 1:])
        down = (labels[:-1] > 0) & (labels[1:] > 0) & (labels[:-1] != labels[1:])
        return int(right.sum() + down.sum())

    assert touching(plain) > 0 and touching(parted) == 0
    assert (plain > 0).sum() - (parted > 0).sum() == 20  # exactly one 20 px line removed
    p0 = WatershedParams(min_seed_area=1, min_area=0, simplify_tolerance=0, dividing_lines=True)
    polys, _ = polygonize_instances(parted, prob[0], p0)
    assert not polys[0].intersects(polys[1])
    grown, _ = polygonize_instances(parted, prob[0], WatershedParams(**{**p0.__dict__, "outline_buffer": 0.5}))
    # 0.5 px beyond the squares on every side: the two halves meet again along the old shared wall
    # (overlapping only where the watershed line steps, by a few px^2 of mitred corners)
    assert grown[0].distance(grown[1]) == 0.0
    assert grown[0].intersection(grown[1]).area < 0.01 * min(g.area for g in grown)
    for a, b in zip(polys, grown):
        assert b.contains(a)
        assert b.area == pytest.approx(a.buffer(0.5, join_style="mitre", mitre_limit=2.0).area, rel=0.01)


def test_mask_minus_contact_and_8_connected_seeds():
    prob = _two_touching()
    prob[2] = 0.0
    prob[2, 10:30, 28:33] = 0.9  # a wide contact band: footprint x (1 - contact) < 0.5 there
    with_contact = watershed_instances(prob, WatershedParams(min_seed_area=1, mask_minus_contact=True))
    assert (with_contact[10:30, 28:33] == 0).all() and (with_contact > 0).sum() < (prob[0] > 0.5).sum()
    # two seed blobs touching only at a corner: one building when seeds are 8-connected
    fp = np.zeros((3, 30, 30), np.float32)
    fp[0, 5:25, 5:25] = 1.0
    fp[1] = 0.0
    fp[1, 5:25, 5:25] = 1.0
    fp[1, 8:15, 8:15] = 0.0
    fp[1, 15:22, 15:22] = 0.0  # two 7 x 7 seed squares meeting at the corner (14, 14) / (15, 15)
    four = watershed_instances(fp, WatershedParams(min_seed_area=1))
    eight = watershed_instances(fp, WatershedParams(min_seed_area=1, seed_connectivity=8))
    assert four.max() == 2 and eight.max() == 1
    # the winner's seed area rule: a 49 px seed is dropped at 110 px (its building then gets no label)
    assert watershed_instances(fp, WatershedParams(min_seed_area=110, seed_connectivity=8)).max() == 0
    with pytest.raises(ValueError, match="seed_connectivity"):
        watershed_instances(fp, WatershedParams(seed_connectivity=6))


@pytest.mark.parametrize("params", [WatershedParams(min_seed_area=4),
                                    WatershedParams(min_seed_area=4, seed_connectivity=8, dividing_lines=True,
                                                    outline_buffer=0.5)])
def test_a_terraced_row_is_split_at_its_shared_walls(params):
    # Narrow houses in a row (the common case in the synthetic cities and in Rotterdam): the edge
    # band around the row is a plateau of the footprint; each house must keep its own part of it.
    # (scipy's watershed_ift let the first seed flood the band around its neighbours: IoU 0.68.)
    truth = [box(10 + 14 * i, 10, 24 + 14 * i, 30) for i in range(6)]
    labels = rasterize_instances(truth, (48, 110))
    prob = building_targets(labels, edge_width=2, contact_width=3).astype(np.float32)
    polys, _ = probabilities_to_polygons(prob, params)
    assert len(polys) == len(truth)
    for t in truth:
        assert _best_iou(t, polys) > 0.85  # the 0.5 px outline buffer alone costs 0.89 here


def test_full_preset_targets_keep_narrow_terraced_houses():
    # The winner's contact: a background pixel with two buildings within 3 px, a building pixel
    # with another building within 1 px. Read as 9 px everywhere, the contact band swallowed
    # houses 10 px wide and no seed of >= 110 px was left.
    from sarfusion.tasks.buildings import PRESETS

    full = PRESETS["full"]
    truth = [box(10 + 10 * i, 10, 20 + 10 * i, 40) for i in range(5)] + [box(64, 10, 84, 40)]  # 4 px gap
    labels = rasterize_instances(truth, (50, 100))
    prob = building_targets(labels, full.edge_width, full.contact_width, full.contact_inside_width)
    contact = prob[2].astype(bool)
    assert contact[25, 19] and contact[25, 20] and not contact[25, 18] and not contact[25, 21]  # wall at x=20
    assert contact[25, 61:63].all() and not contact[25, 65:84].any()  # mid-gap, not the house beyond
    polys, _ = probabilities_to_polygons(prob.astype(np.float32), full.watershed)
    assert len(polys) == len(truth)
    for t in truth:
        assert _best_iou(t, polys) > 0.85


def test_row_targets_outline_rows_not_the_walls_inside_them():
    # The demo preset's targets: a row of houses sharing walls gets edge and contact only around
    # the row; a row 4 px away still gets contact in the gap, and a lone building is unchanged.
    from sarfusion.tasks.buildings import PRESETS

    demo, full = PRESETS["demo"], PRESETS["full"]
    assert demo.row_targets and not full.row_targets  # full keeps the winner's per-building targets
    row = [box(10 + 10 * i, 10, 20 + 10 * i, 40) for i in range(5)]  # walls at x = 20, 30, 40, 50
    truth = row + [box(64, 10, 84, 40), box(10, 60, 40, 90)]  # a row 4 px away; a lone building
    labels = rasterize_instances(truth, (100, 100))
    houses = building_targets(labels, demo.edge_width, demo.contact_width, demo.contact_inside_width)
    rows = building_targets(labels, demo.edge_width, demo.contact_width, demo.contact_inside_width, rows=True)
    np.testing.assert_array_equal(rows[0], houses[0])  # the footprint is the same
    for wall in (20, 30, 40, 50):
        assert houses[1, 25, wall] and houses[2, 25, wall]  # per house: edge and contact at each wall
        assert not rows[1, 25, wall - 2:wall + 2].any() and not rows[2, 25, wall - 2:wall + 2].any()
    assert rows[1, 25, 10] and rows[1, 25, 59] and rows[1, 10, 35]  # the row's own outline is edge
    assert rows[2, 25, 61:63].all()  # the gap between the two rows is still contact
    np.testing.assert_array_equal(rows[:, 55:, :], houses[:, 55:, :])  # the lone building: unchanged


def _terraced_rows(rng, n_rows: int, size: int = 256) -> list:
    """Rows of 4-8 houses 10-14 px wide and 20 px deep sharing walls, laid along x, plus one
    detached 30 x 30 px building per row: (polygons, houses per row)."""
    polys, counts = [], []
    for r in range(n_rows):
        y = 10 + 40 * (r % 6)
        x = 8.0
        n = int(rng.integers(4, 9))
        for _ in range(n):
            w = float(rng.uniform(10, 14))
            polys.append(box(x, y, x + w, y + 20))
            x += w
        polys.append(box(x + 20, y - 5, x + 50, y + 25))
        counts.append(n)
    return polys, counts


def test_row_splitting_cuts_a_wall_less_row_into_its_houses_and_leaves_lone_buildings_whole():
    import pandas as pd
    from scipy import ndimage as ndi

    from sarfusion.metrics.buildings import score_buildings
    from sarfusion.postproc import fit_row_counts, row_count, split_rows
    rng = np.random.default_rng(0)
    train = [rasterize_instances(_terraced_rows(rng, 6)[0], (256, 256)) for _ in range(4)]
    table = fit_row_counts(train)
    assert row_count(table, 900.0, 30.0) == 1  # a lone 30 x 30 px building stays whole
    assert row_count(table, 6 * 12 * 20.0, 20.0) == 6  # a 72 x 20 px row holds six 12 px houses
    truth, _ = _terraced_rows(np.random.default_rng(1), 6)  # rows never trained on
    blobs = ndi.label(rasterize_instances(truth, (256, 256)) > 0)[0]  # what a model without walls finds
    frame = pd.DataFrame({"ImageId": "t", "PolygonWKT_Pix": [p.wkt for p in truth]})

    def f1(labels):
        polys, _ = polygonize_instances(labels)
        return score_buildings(frame, pd.DataFrame({"ImageId": "t", "PolygonWKT_Pix": [p.wkt for p in polys],
                                                    "Confidence": 1.0}))["f1"]

    whole, parted = f1(blobs), f1(split_rows(blobs, table))
    assert whole < 0.3  # only the detached buildings match
    assert parted > 0.8, (whole, parted)


def _calibrate_one_tile(monkeypatch, prob: np.ndarray, polys: list, table: tuple[str, ...]):
    """``buildings.calibrate_watershed`` of the demo preset at the one threshold pair 0.5 / 0.5 on
    one tile whose network output is ``prob``, with the row-count ``table``: (result, config)."""
    import dataclasses

    from sarfusion.tasks import buildings as B

    cfg = dataclasses.replace(B.PRESETS["demo"], calibrate_seed_thresholds=(0.5,), calibrate_mask_thresholds=(0.5,))
    cfg.watershed = dataclasses.replace(cfg.watershed, row_counts=table)

    class Tile:
        image_id, orientation = "t", 0

    class Model:
        input_mode = "sar4"
    monkeypatch.setattr(B, "predict_probabilities", lambda *a, **k: prob)
    monkeypatch.setattr(B, "read_model_input", lambda *a, **k: (None, None))
    return B.calibrate_watershed([(Tile(), [Model()])], {"t": polys}, {}, cfg), cfg


def test_calibration_keeps_row_splitting_off_where_it_does_not_help(monkeypatch):
    # Perfect targets with the walls visible: the watershed already finds every house, and the
    # calibration must not take the splitting for a tie.
    from sarfusion.postproc import fit_row_counts

    rng = np.random.default_rng(2)
    polys, _ = _terraced_rows(rng, 6)
    labels = rasterize_instances(polys, (256, 256))
    prob = building_targets(labels, 1, 3, 1).astype(np.float32)
    result, cfg = _calibrate_one_tile(monkeypatch, prob, polys, fit_row_counts([labels]))
    assert result["f1"] > 0.95
    assert result["split_rows"] is False and cfg.watershed.split_rows is False
    assert "0.5,0.5,split" in result["grid"]
    assert not any(k.endswith("split-area") for k in result["grid"])  # no area channel, not offered


def test_area_network_counts_rows_that_the_label_table_miscounts(monkeypatch):
    # The table learned rows of 10-14 px houses; these rows have 20-28 px houses, so it cuts each
    # into about twice too many parts. A predicted area (the truth, 15 % noise per pixel) counts
    # them right, and the calibration, offered both, takes it.
    import shapely.affinity

    from sarfusion.datasets.sn6_buildings import building_areas
    from sarfusion.postproc import fit_row_counts

    rng = np.random.default_rng(3)
    table = fit_row_counts([rasterize_instances(_terraced_rows(rng, 6)[0], (256, 256)) for _ in range(4)])
    polys = [shapely.affinity.scale(p, 2.0, 1.0, origin=(0, 0)) for p in _terraced_rows(np.random.default_rng(4), 6)[0]]
    labels = rasterize_instances(polys, (256, 512))
    inside = labels > 0
    log_area = np.where(inside, np.log(np.maximum(building_areas(labels), 1)) + rng.normal(0, 0.15, labels.shape), 0)
    prob = np.concatenate([building_targets(labels, 1, 3, 1, rows=True), log_area[None]]).astype(np.float32)
    result, cfg = _calibrate_one_tile(monkeypatch, prob, polys, table)
    grid = result["grid"]
    assert grid["0.5,0.5"] < 0.3 and grid["0.5,0.5,split"] < 0.5 < 0.8 < grid["0.5,0.5,split-area"], grid
    assert result["split_rows"] and result["row_counts_from"] == "area" == cfg.watershed.row_counts_from
    # and prediction follows the choice from the 4-channel probabilities alone
    polys_found, _ = probabilities_to_polygons(prob, cfg.watershed)
    assert len(polys_found) == len(polys)
    with pytest.raises(ValueError, match="predicted building area"):
        probabilities_to_polygons(prob[:3], cfg.watershed)


def test_polygon_cache_gives_the_same_polygons_and_reuses_unchanged_blobs(monkeypatch):
    # The calibration polygonizes one flood with and without row splitting through one cache: the
    # blobs left whole must come back as before (whatever their label number), the cut ones anew.
    from scipy import ndimage as ndi

    import sarfusion.postproc as P
    from sarfusion.postproc import fit_row_counts, split_rows

    rng = np.random.default_rng(5)
    polys, _ = _terraced_rows(rng, 6)
    blobs = ndi.label(rasterize_instances(polys, (256, 256)) > 0)[0]
    # the second half of the rows cut into houses, the first half left whole (renumbered)
    later = blobs > blobs.max() // 2
    parts = split_rows(np.where(later, blobs, 0), fit_row_counts([rasterize_instances(polys, (256, 256))]))
    cut = np.where(later, np.where(parts > 0, parts + blobs.max(), 0), blobs.max() + 1 - blobs)
    cut[blobs == 0] = 0
    cut = np.unique(cut, return_inverse=True)[1].reshape(cut.shape)  # numbered 1..n again
    labels_cut = [k for k in np.unique(cut) if k]
    blob_sizes, cut_sizes = np.bincount(blobs.ravel()), np.bincount(cut.ravel())
    whole = sum(cut_sizes[k] == blob_sizes[blobs[cut == k][0]] for k in labels_cut)
    assert 0 < whole < len(labels_cut) - whole  # whole blobs and more parts of cut ones
    footprint = rng.random((256, 256)).astype(np.float32)
    drawn = []
    real = P._region_polygon
    monkeypatch.setattr(P, "_region_polygon", lambda *a: drawn.append(1) or real(*a))
    cache: dict = {}
    for labels, new in ((blobs, int(blobs.max())), (cut, len(labels_cut) - whole)):
        plain = polygonize_instances(labels, footprint)
        before = len(drawn)
        cached = polygonize_instances(labels, footprint, cache=cache)
        assert len(drawn) - before == new  # only the labels no earlier call had
        assert [p.wkt for p in cached[0]] == [p.wkt for p in plain[0]] and cached[1] == plain[1]


def test_shape_cache_splits_as_without_it_and_measures_each_blob_once(monkeypatch):
    # The calibration splits one flood twice, with counts from the label table and from the area
    # networks; the blobs' shapes are measured on the first and read back on the second.
    from scipy import ndimage as ndi

    import sarfusion.postproc as P
    from sarfusion.datasets.sn6_buildings import building_areas
    from sarfusion.postproc import fit_row_counts, split_rows

    rng = np.random.default_rng(6)
    polys, _ = _terraced_rows(rng, 6)
    houses = rasterize_instances(polys, (256, 256))
    blobs = ndi.label(houses > 0)[0]
    table = fit_row_counts([houses])
    log_area = np.where(houses > 0, np.log(np.maximum(building_areas(houses), 1)), 0).astype(np.float32)
    measured = []
    real = P.blob_shape
    monkeypatch.setattr(P, "blob_shape", lambda blob: measured.append(1) or real(blob))
    shapes: dict = {}
    for kwargs in ({"table": table}, {"log_area": log_area}):
        plain = split_rows(blobs, **kwargs)
        before = len(measured)
        cached = split_rows(blobs, **kwargs, shapes=shapes)
        assert np.array_equal(cached, plain)
        assert len(measured) - before == (int(blobs.max()) if "table" in kwargs else 0)
    assert len(shapes) == blobs.max() > 5 and split_rows(blobs, table).max() > blobs.max()  # rows were cut

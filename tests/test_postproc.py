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

"""Building F1 on hand-built polygons whose right answer is known by construction."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
import pytest
import shapely

from sarfusion.cli import main
from sarfusion.errors import InputError
from sarfusion.io.raster import write_raster
from sarfusion.io.vector import write_geojson
from sarfusion.metrics.buildings import load_polygons, match_buildings, score_buildings

A = "20190823144405_20190823144711_tile_1"
B = "20190823144405_20190823144711_tile_2"


def square(x: float, y: float, w: float, h: float | None = None) -> str:
    h = w if h is None else h
    return f"POLYGON (({x} {y}, {x + w} {y}, {x + w} {y + h}, {x} {y + h}, {x} {y}))"


def truth(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"ImageId": [r[0] for r in rows], "TileBuildingId": range(len(rows)),
                         "PolygonWKT_Pix": [r[1] for r in rows]})


def pred(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame({"ImageId": [r[0] for r in rows], "PolygonWKT_Pix": [r[1] for r in rows],
                         "Confidence": [r[2] if len(r) > 2 else 1.0 for r in rows]})


def counts(result: dict) -> tuple[int, int, int]:
    return result["tp"], result["fp"], result["fn"]


def test_exact_duplicates_score_f1_one():
    rows = [(A, square(10 * i, 0, 10)) for i in range(5)] + [(B, square(0, 50, 20))]
    r = score_buildings(truth(*rows), pred(*rows))
    assert counts(r) == (6, 0, 0)
    assert r["f1"] == 1.0 and r["score"] == 100.0 and r["n_images"] == 2


def test_iou_just_above_and_just_below_half():
    # 20x20 truth; a 20x20 square shifted by s along x has IoU (20-s)/(20+s): s=6 -> 0.538, s=7 -> 0.481
    t = truth((A, square(0, 0, 20)))
    assert counts(score_buildings(t, pred((A, square(6, 0, 20))))) == (1, 0, 0)
    assert counts(score_buildings(t, pred((A, square(7, 0, 20))))) == (0, 1, 1)


def test_iou_exactly_half_is_strict_for_sn6_inclusive_for_solaris():
    # truth 20x20 (400), prediction 20x10 inside it (200): IoU = 200/400 = 0.5 exactly
    t, p = truth((A, square(0, 0, 20))), pred((A, square(0, 0, 20, 10)))
    assert counts(score_buildings(t, p, rules="sn6")) == (0, 1, 1)
    assert counts(score_buildings(t, p, rules="solaris")) == (1, 0, 0)


def test_one_prediction_cannot_match_two_truths():
    # two identical truths (overlapping labels): one prediction matches only one of them
    t = truth((A, square(0, 0, 20)), (A, square(0, 0, 20)))
    assert counts(score_buildings(t, pred((A, square(0, 0, 20))))) == (1, 0, 1)
    # and two predictions on one truth: one TP, one FP
    t = truth((A, square(0, 0, 20)))
    assert counts(score_buildings(t, pred((A, square(0, 0, 20)), (A, square(1, 0, 20))))) == (1, 1, 0)


# T1 = [0,20]x[0,20], T2 = T1 shifted 2 px down. P_LO is a copy of T1 (IoU 1 with T1, 0.82 with T2);
# P_HI is the top 20x12 of T1 (IoU 0.6 with T1, 0.45 with T2). Taken first, P_HI claims T1 and leaves T2
# to P_LO (2 TP); taken second, it finds only T2 free, below 0.5 (1 TP, 1 FP, 1 FN).
T_PAIR = ((A, square(0, 0, 20)), (A, square(0, 2, 20)))
P_LO, P_HI = square(0, 0, 20), square(0, 0, 20, 12)


def test_confidence_order_decides_which_prediction_matches_first():
    assert counts(score_buildings(truth(*T_PAIR), pred((A, P_LO, 0.1), (A, P_HI, 0.9)))) == (2, 0, 0)
    assert counts(score_buildings(truth(*T_PAIR), pred((A, P_LO, 0.9), (A, P_HI, 0.1)))) == (1, 1, 1)


def test_equal_confidence_keeps_file_order():
    assert counts(score_buildings(truth(*T_PAIR), pred((A, P_HI, 0.5), (A, P_LO, 0.5)))) == (2, 0, 0)
    assert counts(score_buildings(truth(*T_PAIR), pred((A, P_LO, 0.5), (A, P_HI, 0.5)))) == (1, 1, 1)


def test_tiny_polygons_dropped_at_79_but_kept_at_80():
    t79, t80 = truth((A, square(0, 0, 79, 1))), truth((A, square(0, 0, 80, 1)))
    assert counts(score_buildings(t79, pred((A, square(0, 0, 79, 1))))) == (0, 0, 0)
    assert counts(score_buildings(t80, pred((A, square(0, 0, 80, 1))))) == (1, 0, 0)
    # drop applies to each side separately: a 79 px prediction of an 80 px building is no FP
    assert counts(score_buildings(t80, pred((A, square(0, 0, 79, 1))))) == (0, 0, 1)


def test_solaris_area_boundaries():
    # solaris, min_area 20: truth kept at area >= 20, proposals only at area > 20
    t20, p20 = truth((A, square(0, 0, 20, 1))), pred((A, square(0, 0, 20, 1)))
    assert counts(score_buildings(t20, p20, rules="solaris")) == (0, 0, 1)
    p21 = pred((A, square(0, 0, 21, 1)))
    assert counts(score_buildings(t20, p21, rules="solaris")) == (1, 0, 0)
    t19 = truth((A, square(0, 0, 19, 1)))
    assert counts(score_buildings(t19, p21, rules="solaris")) == (0, 1, 0)
    assert counts(score_buildings(t20, p21, rules="solaris", min_area=21)) == (0, 0, 0)


def test_invalid_wkt_is_a_false_positive():
    t = truth((A, square(0, 0, 20)))
    r = score_buildings(t, pred((A, square(0, 0, 20)), (A, "POLYGON ((0 0, 1"), (A, "not wkt")))
    assert counts(r) == (1, 2, 0)


def test_empty_tiles_both_ways():
    empty = "POLYGON EMPTY"
    assert counts(score_buildings(truth((A, empty)), pred((A, empty, 0)))) == (0, 0, 0)
    assert score_buildings(truth((A, empty)), pred((A, empty, 0)))["n_images"] == 1
    assert counts(score_buildings(truth((A, empty)), pred((A, square(0, 0, 20))))) == (0, 1, 0)
    # a tile present only as POLYGON EMPTY in the prediction is scored: its buildings are FN
    two = truth((A, square(0, 0, 20)), (A, square(50, 0, 20)))
    assert counts(score_buildings(two, pred((A, empty, 0)))) == (0, 0, 2)


def test_truth_images_absent_from_prediction():
    t = truth((A, square(0, 0, 20)), (B, square(0, 0, 20)))
    p = pred((A, square(0, 0, 20)))
    r = score_buildings(t, p)
    assert counts(r) == (1, 0, 0) and r["n_images"] == 1  # official SN6: only submitted ImageIds
    r = score_buildings(t, p, all_images=True)
    assert counts(r) == (1, 0, 1) and r["n_images"] == 2


def test_polygons_of_different_tiles_never_match():
    # same pixel coordinates, different tiles
    r = score_buildings(truth((A, square(0, 0, 20)), (B, square(100, 100, 20))),
                        pred((A, square(100, 100, 20)), (B, square(0, 0, 20))))
    assert counts(r) == (0, 2, 2)


def test_vectorised_matches_brute_force_on_random_polygons():
    rng = np.random.default_rng(0)
    t_rows, p_rows = [], []
    for tile in (A, B):
        for _ in range(60):
            x, y, w = rng.uniform(0, 200), rng.uniform(0, 200), rng.uniform(8, 25)
            t_rows.append((tile, square(round(x), round(y), round(w))))
            if rng.random() < 0.8:
                dx, dy, dw = rng.normal(0, 3, 3)
                p_rows.append((tile, square(round(x + dx), round(y + dy), round(w + dw)), float(rng.random())))
    t, p = truth(*t_rows), pred(*p_rows)
    got = match_buildings(load_polygons(t), load_polygons(p))
    # brute force: the SPEC's greedy loop, written plainly
    for tile in (A, B):
        tg = [shapely.from_wkt(w) for i, w in t_rows if i == tile]
        tg = [g for g in tg if g.area >= 80]
        pr = sorted([(c, shapely.from_wkt(w)) for i, w, c in p_rows if i == tile], key=lambda r: -r[0])
        pr = [g for _, g in pr if g.area >= 80]
        free, tp = list(range(len(tg))), 0
        for g in pr:
            ious = [(g.intersection(tg[j]).area / g.union(tg[j]).area, j) for j in free]
            if ious and max(ious)[0] > 0.5:
                free.remove(max(ious)[1])
                tp += 1
        assert tuple(got.loc[tile]) == (tp, len(pr) - tp, len(tg) - tp)
    assert got["tp"].sum() > 20  # the case is not trivial


def test_cli_csv_json_and_per_image(tmp_path, capsys):
    t = truth((A, square(0, 0, 20)), (B, square(0, 0, 20)), (B, square(50, 50, 20)))
    p = pred((A, square(0, 0, 20), 0.9), (B, square(50, 50, 20), 0.8), (B, square(200, 0, 20), 0.7))
    t.to_csv(tmp_path / "truth.csv", index=False)
    p.to_csv(tmp_path / "pred.csv", index=False)
    rc = main(["score", "buildings", str(tmp_path / "truth.csv"), str(tmp_path / "pred.csv"), "--json",
               "--per-image", str(tmp_path / "per.csv")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tp", "fp", "fn", "precision", "recall", "f1", "score", "n_images"}
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 1)
    assert out["score"] == pytest.approx(100 * 2 / 3)
    per = pd.read_csv(tmp_path / "per.csv").set_index("ImageId")
    assert tuple(per.loc[B, ["tp", "fp", "fn"]]) == (1, 1, 1)


def test_four_column_submission_with_building_id(tmp_path):
    p = pd.DataFrame({"ImageId": [A, A], "BuildingId": [0, 1],
                      "PolygonWKT_Pix": [square(0, 0, 20), square(40, 0, 20)], "Confidence": [0.5, 0.6]})
    p.to_csv(tmp_path / "p.csv", index=False)
    r = score_buildings(truth((A, square(0, 0, 20))), tmp_path / "p.csv")
    assert counts(r) == (1, 1, 0)


def test_cli_missing_column_is_one_line_error(tmp_path, capsys):
    pd.DataFrame({"ImageId": [A], "Wkt": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    truth((A, square(0, 0, 20))).to_csv(tmp_path / "t.csv", index=False)
    rc = main(["score", "buildings", str(tmp_path / "t.csv"), str(tmp_path / "bad.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.csv" in err and "PolygonWKT_Pix" in err


def test_geojson_folders_pixel_and_map_coordinates(tmp_path):
    name = f"SN6_Train_AOI_11_Rotterdam_Buildings_{A}.geojson"
    pix = [shapely.box(0, 0, 20, 20), shapely.box(100, 100, 130, 120)]
    (tmp_path / "truth_pix").mkdir()
    write_geojson(tmp_path / "truth_pix" / name, pix, [{}, {}])
    # empty tile in the truth folder: scored only with all_images
    write_geojson(tmp_path / "truth_pix" / name.replace("tile_1", "tile_2"), [], [])
    r = score_buildings(tmp_path / "truth_pix", pred((A, square(0, 0, 20))))
    assert counts(r) == (1, 0, 1)
    # the same footprints in UTM 31N, next to a georeferenced tile: 0.5 m pixels
    gt = (594000.0, 0.5, 0.0, 5750000.0, 0.0, -0.5)
    rasters = tmp_path / "rasters"
    write_raster(rasters / f"SN6_Train_AOI_11_Rotterdam_SAR-Intensity_{A}.tif",
                 np.zeros((1, 8, 8), np.float32), gt, "EPSG:32631")
    utm = shapely.transform(np.array(pix, dtype=object), lambda c: np.column_stack(
        [gt[0] + c[:, 0] * gt[1], gt[3] + c[:, 1] * gt[5]]))
    (tmp_path / "truth_utm").mkdir()
    write_geojson(tmp_path / "truth_utm" / name, list(utm), [{}, {}], crs_epsg=32631)
    with pytest.raises(InputError, match="truth-rasters"):
        score_buildings(tmp_path / "truth_utm", pred((A, square(0, 0, 20))))
    loaded = load_polygons(tmp_path / "truth_utm", raster_dir=rasters)
    assert np.allclose(shapely.area(loaded["geometry"].to_numpy()), [400, 600])
    r = score_buildings(tmp_path / "truth_utm", pred((A, square(0, 0, 20)), (A, square(100, 100, 30, 20))),
                        raster_dir=rasters)
    assert counts(r) == (2, 0, 0)

import pandas as pd
import pytest
import shapely

from sarfusion.errors import InputError
from sarfusion.io.vector import (
    geometries_to_wkt, image_id_from_name, parse_wkt, read_csv_checked, read_geojson, strip_key,
    write_geojson, write_submission_csv,
)


def test_image_id_and_strip_key_from_real_names():
    name = "SN6_Train_AOI_11_Rotterdam_SAR-Intensity_20190823144405_20190823144711_tile_3334.tif"
    assert image_id_from_name(name) == "20190823144405_20190823144711_tile_3334"
    assert image_id_from_name("SN6_Test_Public_AOI_11_Rotterdam_SAR-Intensity_20190804111224_20190804111453_tile_7.tif") \
        == "20190804111224_20190804111453_tile_7"
    assert strip_key("20190823144405_20190823144711_tile_3334") == "20190823144405_20190823144711"
    with pytest.raises(InputError, match="not a SpaceNet 6 tile name"):
        image_id_from_name("random.tif")


def test_submission_adds_empty_rows_for_every_missing_tile(tmp_path):
    rows = pd.DataFrame({"ImageId": ["a_b_tile_1"], "PolygonWKT_Pix": ["POLYGON ((0 0, 10 0, 10 10, 0 0))"],
                         "Confidence": [0.9]})
    path = write_submission_csv(tmp_path / "out.csv", rows, ["a_b_tile_1", "a_b_tile_2", "a_b_tile_3"])
    df = pd.read_csv(path)
    assert list(df.columns) == ["ImageId", "PolygonWKT_Pix", "Confidence"]
    assert sorted(df.ImageId) == ["a_b_tile_1", "a_b_tile_2", "a_b_tile_3"]
    assert (df.loc[df.ImageId != "a_b_tile_1", "PolygonWKT_Pix"] == "POLYGON EMPTY").all()


def test_csv_checks_name_file_and_problem(tmp_path):
    empty = tmp_path / "labels.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="labels.csv: is empty"):
        read_csv_checked(empty, ["ImageId"])
    header_only = tmp_path / "header.csv"
    header_only.write_text("ImageId,PolygonWKT_Pix\n")
    with pytest.raises(InputError, match="header.csv: has a header but no rows"):
        read_csv_checked(header_only, ["ImageId", "PolygonWKT_Pix"])
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="wrong.csv: missing column"):
        read_csv_checked(wrong, ["ImageId"])


def test_wkt_parse_and_write_round_trip(tmp_path):
    geoms = parse_wkt(["POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))", "POLYGON EMPTY", "not wkt", ""])
    assert geoms[0].area == 100 and geoms[1].is_empty and geoms[2] is None and geoms[3] is None
    assert geometries_to_wkt([geoms[0], None]) == ["POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))", "POLYGON EMPTY"]
    path = write_geojson(tmp_path / "b.geojson", [geoms[0]], [{"height": 12.5}], crs_epsg=32631)
    back, props = read_geojson(path)
    assert shapely.equals(back[0], geoms[0]) and props == [{"height": 12.5}]

"""SN6 AOI discovery: pairing by ImageId, orientations, label CSV, bad input naming the file."""
import numpy as np
import pytest

from sarfusion.datasets.sn6 import (
    SN6Tile, find_label_csv, find_tiles, read_label_csv, read_orientations, read_rgb, read_sar,
)
from sarfusion.errors import InputError
from sarfusion.io.raster import write_raster

GT = (592000.0, 0.5, 0.0, 5750000.0, 0.0, -0.5)
PREFIX = "SN6_Train_AOI_11_Rotterdam"
IDS = ["20190823144405_20190823144711_tile_3334", "20190823144405_20190823144711_tile_3335",
       "20190804111224_20190804111453_tile_12"]


def make_aoi(root, ids=IDS, rgb_ids=None, sar_bands=4, orient=True, labels=True):
    aoi = root / "AOI_11_Rotterdam"
    (aoi / "SAR-Intensity").mkdir(parents=True)
    (aoi / "PS-RGB").mkdir()
    rng = np.random.default_rng(0)
    for i in ids:
        sar = rng.uniform(10, 90, (sar_bands, 16, 16)).astype(np.float32)
        write_raster(aoi / "SAR-Intensity" / f"{PREFIX}_SAR-Intensity_{i}.tif", sar, GT, 32631, nodata=0)
    for i in ids if rgb_ids is None else rgb_ids:
        rgb = rng.integers(1, 255, (3, 16, 16), dtype=np.uint8)
        write_raster(aoi / "PS-RGB" / f"{PREFIX}_PS-RGB_{i}.tif", rgb, GT, 32631, nodata=0)
    (aoi / "SummaryData").mkdir()
    if orient:
        (aoi / "SummaryData" / "SAR_orientations.txt").write_text(
            "20190823144405_20190823144711 0\n20190804111224_20190804111453 1\n\n")
    if labels:
        (aoi / "SummaryData" / f"{PREFIX}_Buildings.csv").write_text(
            "ImageId,TileBuildingId,PolygonWKT_Pix,Mean_Building_Height,Median_Building_Height,StdDev_Building_Height\n"
            f"{IDS[0]},0,\"POLYGON ((1 1, 5 1, 5 5, 1 5, 1 1))\",10,10,1\n{IDS[1]},0,POLYGON EMPTY,0,0,0\n")
    return aoi


def test_find_tiles_pairs_by_image_id_with_orientation(tmp_path):
    aoi = make_aoi(tmp_path)
    tiles = find_tiles(aoi, require_optical=True)
    assert [t.image_id for t in tiles] == sorted(IDS)
    for t in tiles:
        assert isinstance(t, SN6Tile)
        assert t.image_id in t.sar_path.name and t.image_id in t.rgb_path.name
        assert "PS-RGB" in t.rgb_path.name
    orient = {t.image_id: t.orientation for t in tiles}
    assert orient == {IDS[0]: 0, IDS[1]: 0, IDS[2]: 1}
    assert tiles[0].strip == "20190804111224_20190804111453"
    assert read_sar(tiles[0].sar_path).shape == (4, 16, 16)
    assert read_rgb(tiles[0].rgb_path).dtype == np.uint8


def test_sar_only_aoi_and_explicit_orientations(tmp_path):
    aoi = make_aoi(tmp_path, rgb_ids=[], orient=False)
    tiles = find_tiles(aoi)
    assert all(t.rgb_path is None and t.orientation is None for t in tiles)
    tiles = find_tiles(aoi, orientations={"20190804111224_20190804111453": 1})
    assert [t.orientation for t in tiles] == [1, None, None]


def test_missing_optical_partner_names_the_sar_file(tmp_path):
    aoi = make_aoi(tmp_path, rgb_ids=IDS[:2])
    assert find_tiles(aoi)[0].rgb_path is None  # tolerated unless required
    with pytest.raises(InputError, match=r"SAR-Intensity_20190804111224_20190804111453_tile_12\.tif.*PS-RGB partner"):
        find_tiles(aoi, require_optical=True)


def test_bad_folders_and_names(tmp_path):
    with pytest.raises(InputError, match="not found"):
        find_tiles(tmp_path / "nope")
    with pytest.raises(InputError, match="SAR-Intensity"):
        find_tiles(tmp_path)
    aoi = make_aoi(tmp_path)
    (aoi / "SAR-Intensity" / "random.tif").write_bytes(b"x")
    with pytest.raises(InputError, match="random.tif"):
        find_tiles(aoi)


def test_three_band_sar_is_an_input_error(tmp_path):
    aoi = make_aoi(tmp_path, sar_bands=3)
    tile = find_tiles(aoi)[0]
    with pytest.raises(InputError, match=r"SAR-Intensity.*has 3 bands, expected 4"):
        read_sar(tile.sar_path)


def test_orientations_real_file_and_bad_lines(tmp_path, real_samples):
    orient = read_orientations(real_samples / "sn6" / "SAR_orientations.txt")
    assert len(orient) == 204 and set(orient.values()) == {0, 1}
    assert orient["20190804111224_20190804111453"] == 1
    bad = tmp_path / "o.txt"
    bad.write_text("20190804111224_20190804111453 1\n20190804111851_20190804112030 north\n")
    with pytest.raises(InputError, match=r"o\.txt.*line 2"):
        read_orientations(bad)


def test_label_csv(tmp_path):
    aoi = make_aoi(tmp_path)
    path = find_label_csv(aoi)
    assert path.name == f"{PREFIX}_Buildings.csv"
    df = read_label_csv(path)
    assert list(df.ImageId) == IDS[:2] and df.PolygonWKT_Pix.iloc[1] == "POLYGON EMPTY"
    assert find_label_csv(make_aoi(tmp_path / "b", labels=False)) is None

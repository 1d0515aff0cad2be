"""SN6 fused tiles and Pix2Pix colorization on a tiny synthetic SN6 AOI (sarfusion.synth.sn6)."""
import json
import shutil

import numpy as np
import pytest
import torch

from sarfusion.cli import main
from sarfusion.datasets.sn6 import find_tiles, read_rgb, read_sar
from sarfusion.errors import InputError
from sarfusion.fusion import fuse_tile
from sarfusion.io.raster import cog_errors, raster_info, read_raster, write_raster
from sarfusion.synth.sn6 import generate_sn6
from sarfusion.tasks import colorize as C


@pytest.fixture(scope="module")
def sn6(tmp_path_factory):
    return generate_sn6(tmp_path_factory.mktemp("sn6"), tiles=8, size=256, seed=0)


def test_chroma_round_trip_and_hue_wrap():
    rng = np.random.default_rng(0)
    rgb = rng.integers(1, 256, (3, 30, 30), dtype=np.uint8)
    value = rgb.max(axis=0)
    back = C.chroma_to_rgb(C.rgb_to_chroma(rgb), value)
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 4
    # hue 358 deg and 2 deg are 4 deg apart, not 356: chroma vectors are close
    a = np.array([np.cos(np.radians(358)), np.sin(np.radians(358))])[:, None, None] * 0.8
    b = np.array([np.cos(np.radians(2)), np.sin(np.radians(2))])[:, None, None] * 0.8
    sums = C.colour_error_sums(a.astype(np.float32), b.astype(np.float32), np.full((1, 1), 200, np.uint8),
                               np.ones((1, 1), bool))
    assert C.finish_colour_errors(sums)["hue_err_deg"] == pytest.approx(4.0, abs=0.01)
    assert np.abs(a - b).max() < 0.06


def test_build_fused_tiles_writes_georeferenced_tiles(sn6, tmp_path):
    aoi = sn6["train_aoi"]
    result = C.build_fused_tiles(aoi, tmp_path / "out", preview_dir=tmp_path / "prev")
    tiles = find_tiles(aoi, require_optical=True)
    assert result["tiles"] == len(tiles) == sn6["n_train"]
    for tile in tiles:
        name = tile.sar_path.name
        fused_path = tmp_path / "out" / "Fused-RGB-SAR" / name.replace("SAR-Intensity", "Fused-RGB-SAR")
        span_path = tmp_path / "out" / "SPAN" / name.replace("SAR-Intensity", "SPAN")
        fi, si, sar_info = raster_info(fused_path), raster_info(span_path), raster_info(tile.sar_path)
        assert fi.shape == (3, 256, 256) and si.shape == (1, 256, 256) and fi.dtype == np.uint8
        assert fi.geotransform == sar_info.geotransform and fi.epsg == 32631 == si.epsg
        assert cog_errors(fused_path) == [] and cog_errors(span_path) == []
        fused, span_u8 = read_raster(fused_path), read_raster(span_path)[0]
        sar, rgb = read_sar(tile.sar_path), read_rgb(tile.rgb_path)
        expect, _, valid = fuse_tile(sar, rgb)
        np.testing.assert_array_equal(fused, expect)
        assert (fused[:, ~valid] == 0).all() and fused.any(axis=0)[valid].all()
        np.testing.assert_array_equal(fused.max(axis=0), span_u8)
    assert len(list((tmp_path / "prev").glob("fused_*.png"))) == len(tiles)


def test_bad_inputs_name_the_file_and_keep_outputs(sn6, tmp_path):
    aoi = shutil.copytree(sn6["train_aoi"], tmp_path / "aoi")
    out = tmp_path / "out"
    C.build_fused_tiles(aoi, out)
    before = {p: p.read_bytes() for p in out.rglob("*.tif")}
    # a SAR tile with 3 bands
    bad = sorted((aoi / "SAR-Intensity").glob("*.tif"))[-1]
    info = raster_info(bad)
    write_raster(bad, read_raster(bad)[:3], info.geotransform, info.crs_wkt, 0)
    with pytest.raises(InputError, match=rf"{bad.name}.*3 bands, expected 4"):
        C.build_fused_tiles(aoi, out)
    assert main(["fuse", str(aoi), "--out", str(out)]) == 2
    # a missing PS-RGB partner
    bad.unlink()
    lonely = sorted((aoi / "SAR-Intensity").glob("*.tif"))[0]
    image_id = "_".join(lonely.stem.split("_")[-4:])
    next((aoi / "PS-RGB").glob(f"*_{image_id}.tif")).unlink()
    with pytest.raises(InputError, match=rf"{lonely.name}.*PS-RGB partner"):
        C.build_fused_tiles(aoi, out)
    after = {p: p.read_bytes() for p in out.rglob("*.tif")}
    assert after == before
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".tif"]  # no temp files


def test_train_evaluate_and_colorize(sn6, tmp_path, one_thread):
    aoi = sn6["train_aoi"]
    cfg = C.choose_preset(C.PRESETS, "demo")
    cfg.engine.max_steps = 150  # the demo preset (64 px crops) cut short: ~12 s of CPU ...
    cfg.net.lr = 5e-4  # ... with a higher lr (measured: beats the baseline for seeds 0, 1, 2 here)
    weights = C.train_colorizer(aoi, tmp_path / "w", config=cfg)
    state = torch.load(weights, weights_only=False)
    assert state["encoding"] == C.CHROMA_ENCODING and len(state["holdout_ids"]) == 2
    assert not set(state["holdout_ids"]) & set(state["train_ids"])

    result = C.evaluate_colorizer(aoi, tmp_path / "w", preview_dir=tmp_path / "prev")
    assert result["tiles"] == 2 and result["pixels"] > 50_000
    for k in ("rgb_mae", "hue_err_deg", "sat_mae", "chroma_l1"):
        assert np.isfinite(result["model"][k]) and np.isfinite(result["baseline"][k])
    # acceptance: on held-out tiles the colours beat the constant training-mean colour
    assert result["model"]["rgb_mae"] < result["baseline"]["rgb_mae"]
    assert result["model"]["hue_err_deg"] < result["baseline"]["hue_err_deg"]
    assert len(list((tmp_path / "prev").glob("colorized_vs_fused_*.png"))) == 2

    test_paths = sorted((sn6["test_aoi"] / "SAR-Intensity").glob("*.tif"))
    written = C.colorize_tiles(test_paths, tmp_path / "w", tmp_path / "col", batch_size=2, num_workers=1,
                               preview_dir=tmp_path / "prev")
    assert [p.name for p in written] == [p.name.replace("SAR-Intensity", "Colorized") for p in test_paths]
    for src, dst in zip(test_paths, written):
        si, di = raster_info(src), raster_info(dst)
        assert di.shape == (3, si.height, si.width) and di.dtype == np.uint8
        assert di.geotransform == si.geotransform and di.epsg == si.epsg and cog_errors(dst) == []
        sar, rgb = read_sar(src), read_raster(dst)
        sar_valid = (sar != 0).any(axis=0)
        assert rgb.any(axis=0)[sar_valid].all() and not rgb[:, ~sar_valid].any()
        inp, _ = C.colorizer_input(sar)
        np.testing.assert_array_equal(rgb.max(axis=0), inp)  # V = the SPAN input


def test_cli_colorize_predict_rejects_three_band_sar(sn6, tmp_path, capsys):
    src = sorted((sn6["test_aoi"] / "SAR-Intensity").glob("*.tif"))[0]
    bad = tmp_path / src.name
    info = raster_info(src)
    write_raster(bad, read_raster(src)[:3], info.geotransform, info.crs_wkt, 0)
    assert main(["colorize", "predict", str(bad), "--weights", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert bad.name in err and "3 bands" in err
    with pytest.raises(InputError, match="colorizer.pt"):
        C.load_colorizer(tmp_path)


def test_fuse_cli_on_real_capella_pair(real_samples, tmp_path, capsys):
    """The real Capella pair (calibrated dB, NaN nodata) laid out as an SN6 AOI in a temp folder."""
    cap = real_samples / "capella_rotterdam"
    aoi = tmp_path / "AOI_11_Rotterdam"
    image_id = "20190823144405_20190823144711_tile_1"
    (aoi / "SAR-Intensity").mkdir(parents=True)
    (aoi / "PS-RGB").mkdir()
    shutil.copy(cap / "sar_masked.tif", aoi / "SAR-Intensity" / f"SN6_Train_AOI_11_Rotterdam_SAR-Intensity_{image_id}.tif")
    shutil.copy(cap / "rgb_unmasked.tif", aoi / "PS-RGB" / f"SN6_Train_AOI_11_Rotterdam_PS-RGB_{image_id}.tif")
    assert main(["fuse", str(aoi), "--out", str(tmp_path / "out"), "--preview", str(tmp_path / "prev"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tiles"] == 1 and 0.55 < result["valid_fraction"] < 0.65
    fused_path = tmp_path / "out" / "Fused-RGB-SAR" / f"SN6_Train_AOI_11_Rotterdam_Fused-RGB-SAR_{image_id}.tif"
    info, sar_info = raster_info(fused_path), raster_info(cap / "sar_masked.tif")
    assert info.geotransform == sar_info.geotransform and info.epsg == 32631 and info.nodata == (0.0,) * 3
    fused = read_raster(fused_path)
    sar = read_sar(cap / "sar_masked.tif")
    np.testing.assert_array_equal(fused.any(axis=0), np.isfinite(sar).all(axis=0))  # NaN nodata -> 0
    assert (tmp_path / "prev" / f"fused_{image_id}.png").is_file()

"""What test.sh hands an analyst, end to end on tiny synthetic data: the SN6 CSV plus map
footprints (GeoPackage), SN9 offset maps plus the aligned SAR, colorized and translated rasters
as Cloud-Optimized GeoTIFFs, translation scores, and one HTML report (checked in headless Chromium)."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from sarfusion.engine import EngineConfig
from sarfusion.io.raster import cog_errors, crs_epsg, raster_info
from sarfusion.io.vector import read_features
from test_footprints_geo import max_pairwise_overlap


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Tiny data of every layout, tiny models trained on it, then ``test_all`` (as test.sh runs it)."""
    from sarfusion.config import choose_preset
    from sarfusion.pipeline import test_all
    from sarfusion.synth.landscape import write_sen12
    from sarfusion.synth.sn6 import generate_sn6
    from sarfusion.synth.sn9 import generate_sn9
    from sarfusion.tasks import buildings as B
    from sarfusion.tasks import colorize as C
    from sarfusion.tasks import translate as T
    from test_buildings import _tiny_config
    from test_translate import TINY

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the 2 shared cores: one intra-op thread avoids oversubscription stalls
    try:
        root = tmp_path_factory.mktemp("pipeline")
        data, weights = root / "data", root / "weights"
        sn6 = generate_sn6(data / "sn6", tiles=8, size=160, seed=3)
        generate_sn9(data / "sn9", size=512, seed=7, scenes=1, split="test")
        write_sen12(data / "sen12", pairs=5, seed=0, size=64, cloudy_share=0.0)
        B.train_buildings(sn6["train_aoi"], weights / "buildings", work_dir=root / "wb",
                          config=dataclasses.replace(_tiny_config(), calibrate_tiles=0))
        ccfg = choose_preset(C.PRESETS, "demo")
        ccfg = dataclasses.replace(ccfg, engine=EngineConfig(max_steps=4, batch_size=2, checkpoint_every=4, log_every=2))
        C.train_colorizer(sn6["train_aoi"], weights / "colorize", config=ccfg, work_dir=root / "wc")
        T.train_translation(data, weights / "translate", work_dir=root / "wt", holdout=1, config=TINY)
        out = root / "out" / "out.csv"
        result = test_all(data, out, weights, timings={"train: (test fixture)": 1.0})
    finally:
        torch.set_num_threads(threads)
    return out, result


def test_products_are_gis_ready(run):
    out, result = run
    base = str(out.with_suffix(""))
    # SN6: the competition CSV as before, plus the map layer in the tiles' CRS, no overlaps
    assert out.read_text().startswith("ImageId,PolygonWKT_Pix,Confidence")
    geoms, props, crs = read_features(f"{base}_buildings.gpkg")
    assert crs_epsg(crs) == 32631 and max_pairwise_overlap(geoms) <= 1.0
    assert result["footprints"]["buildings"] == len(geoms)
    # SN9: offsets and the aligned SAR, both on the optical grid; every raster product a COG
    scene = "synth_aoi_0_test"
    opt = raster_info(next((out.parents[1] / "data" / "sn9").glob("*_optical_test.tif")))
    for path in (f"{base}_offsets/{scene}_offsets.tif", f"{base}_aligned/{scene}_sar_aligned.tif"):
        info = raster_info(path)
        assert (info.width, info.height, info.geotransform) == (opt.width, opt.height, opt.geotransform)
    rasters = [p for d in ("offsets", "aligned", "colorized") for p in sorted((out.parent / f"out_{d}").glob("*.tif"))]
    assert len(rasters) == 2 + 2  # 2 SN6 test tiles colorized
    assert all(cog_errors(p) == [] for p in rasters)
    # scores: SN6 truth, SN9 tie points, and the SEN1-2 optical partners (one pair held out of training)
    scores = json.loads((out.parent / "out_scores.json").read_text())
    assert set(scores) == {"buildings", "registration", "translation"}
    t = scores["translation"]["ROIs1158_spring"]
    assert t["kind"] == "sen12" and t["all"]["n_images"] == 5 and t["held_out"]["n_images"] == 1
    assert t["trained_on"] == 4 and np.isfinite(t["all"]["psnr"])
    assert result["timings"]["total"] >= result["timings"]["test: total"] > 0


def test_report_is_one_self_contained_page(run):
    out, result = run
    page = (out.parent / "out_report.html").read_text()
    n = int(re.search(r"data-images='(\d+)'", page).group(1))
    # footprints map + 2 tiles, offsets + checker + aligned, 2 colorized, 4 of the 5 translation panels
    assert n == page.count("<img ") == 3 + 3 + 2 + 4
    held = result["scores"]["translation"]["ROIs1158_spring"]["held_out_inputs"]
    assert len(held) == 1 and page.index(f"generated: {held[0]}") < page.index("generated: ROIs1158_spring_s1_100_p0")
    assert "http://" not in page and "https://" not in page and "src=\"data:image/jpeg;base64," in page
    for text in ("SN6 buildings", "SN9 synth_aoi_0_test", "held out (ground never trained on)", "Timings",
                 "buildings_config.json", "out_buildings.gpkg"):
        assert text in page, text


CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium; scripts/setup.sh installs it)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    """Chromium loads the page offline: every embedded image decodes, and the screenshot is a
    page with content (not blank)."""
    out, _ = run
    report = out.parent / "out_report.html"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    dom = subprocess.run(flags + ["--dump-dom", f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars",
                                  report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    expected = re.search(r'data-images="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert expected and loaded and loaded.group(1) == expected.group(1) != "0", dom[:300]
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2400, 1280)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 1000  # text, tables, photos


def test_two_processes_write_what_one_process_writes(run, tmp_path):
    """test.sh under torchrun (2 gloo processes on CPU): the SN6 tiles, SN9 scenes and translation
    folders are shared out, and rank 0 writes the files one process wrote, byte for byte."""
    import os
    import sys

    out, _ = run
    root = out.parent.parent
    out2 = tmp_path / "out.csv"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "sarfusion", "test", str(root / "data"), str(out2), "--weights", str(root / "weights")],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    from sarfusion.datasets.sn6 import find_tiles
    assert len(find_tiles(root / "data" / "sn6" / "test_public" / "AOI_11_Rotterdam")) >= 2  # rank 1 has tiles too
    assert out2.read_bytes() == out.read_bytes()  # the SN6 submission
    one = json.loads(out.with_name("out_scores.json").read_text())
    two = json.loads(out2.with_name("out_scores.json").read_text())
    assert list(two) == list(one) and two == one
    compared = 0
    for folder in ("out_offsets", "out_aligned", "out_colorized", "out_translated"):
        files = sorted(p.relative_to(out.parent / folder) for p in (out.parent / folder).rglob("*") if p.is_file())
        assert files, folder
        for rel in files:
            assert (tmp_path / folder / rel).read_bytes() == (out.parent / folder / rel).read_bytes(), rel
            compared += 1
    geoms1, props1, _ = read_features(out.with_name("out_buildings.gpkg"))
    geoms2, props2, _ = read_features(out2.with_name("out_buildings.gpkg"))
    assert [g.wkb for g in geoms2] == [g.wkb for g in geoms1] and props2 == props1
    assert (tmp_path / "out_report.html").is_file() and compared >= 4

"""SAR -> optical on co-registered pair folders (DIR/sar/NAME + DIR/opt/NAME): reading, per-image
SAR normalisation, held-out splits, tiled inference, train -> translate -> evaluate round trips."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sarfusion.datasets import pairs
from sarfusion.engine import EngineConfig
from sarfusion.errors import InputError
from sarfusion.io.raster import raster_info, write_raster
from sarfusion.tasks import translate as tr
from sarfusion.tasks.pix2pix_train import Pix2PixNetConfig

TINY = tr.TranslateConfig(
    preset="demo", net=Pix2PixNetConfig(num_downs=5, ngf=8, ndf=8, n_layers=2, lambda_l1=50, lambda_mse=50, d_every=2),
    engine=EngineConfig(max_steps=4, batch_size=2, checkpoint_every=2, log_every=2, seed=0),
    crop=64, synth_pairs=0, real_repeat=1, sar_norm="per_image")


def make_pair_folder(root: Path, n: int = 4, size: int = 96, seed: int = 0, optical_name: str = "opt") -> Path:
    """A pair folder from generated SEN1-2 patches: ``root/sar/pNN.png`` + ``root/<optical_name>/pNN.png``."""
    from sarfusion.datasets.sen12 import find_pairs
    from sarfusion.synth.landscape import write_sen12

    write_sen12(root.parent / f"{root.name}_src", pairs=n, seed=seed, size=size, cloudy_share=0.0)
    for i, p in enumerate(find_pairs(root.parent / f"{root.name}_src")):
        for src, sub in ((p.sar, "sar"), (p.optical, optical_name)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / sub / f"p{i:02d}.png")
    shutil.rmtree(root.parent / f"{root.name}_src")
    return root


# ----------------------------------------------------------------------------- layout

def test_find_pairs_by_name_and_bad_input(tmp_path):
    root = make_pair_folder(tmp_path / "pairs", n=3, size=32, optical_name="optical")
    found = pairs.find_pairs(root)
    assert [p.name for p in found] == ["p00", "p01", "p02"]
    assert all(p.optical.parent.name == "optical" for p in found)
    assert pairs.find_pairs(root / "sar") == found  # the sar/ folder names the same pairs
    assert pairs.find_pair_folders(tmp_path) == [root]
    (root / "optical" / "p02.png").unlink()
    with pytest.raises(InputError, match=r"p02\.png.*no optical partner"):
        pairs.find_pairs(root)
    assert len(pairs.find_pairs(root, require_optical=False)) == 3  # inference needs no optical
    write_raster(root / "sar" / "p01.tif", np.ones((1, 32, 32), np.float32))
    with pytest.raises(InputError, match="two images named 'p01'"):
        pairs.find_pairs(root, require_optical=False)


def test_multiband_sar_rejected_grey_as_rgb_accepted(tmp_path):
    grey = np.random.default_rng(0).integers(0, 255, (16, 16), np.uint8)
    cv2.imwrite(str(tmp_path / "grey3.png"), np.dstack([grey] * 3))
    assert pairs.read_sar(tmp_path / "grey3.png").pixels.shape == (1, 16, 16)
    write_raster(tmp_path / "vvvh.tif", np.random.default_rng(1).random((2, 16, 16)).astype(np.float32))
    with pytest.raises(InputError, match=r"vvvh\.tif.*2 different bands"):
        pairs.read_sar(tmp_path / "vvvh.tif")


def test_detect_data_finds_pair_folders(tmp_path):
    from sarfusion.datasets.detect import detect_data

    root = make_pair_folder(tmp_path / "data" / "area1", n=2, size=32)
    inv = detect_data(tmp_path / "data")
    assert inv.pairs == [root] and "pair folders 1" in inv.summary()
    assert tr.detect_kind(root) == tr.detect_kind(root / "sar") == tr.detect_kind(root / "sar" / "p00.png") == "pairs"


# ----------------------------------------------------------------------------- normalisation and splits

def test_per_image_sar_ignores_the_archive_encoding():
    rng = np.random.default_rng(0)
    power = rng.gamma(4.0, 0.05 / 4.0, (1, 64, 64)) * np.exp(rng.normal(0, 1, (1, 64, 64)))  # linear power
    encodings = {
        "power": power.astype(np.float32),
        "dB": (10 * np.log10(power)).astype(np.float32),
        "amplitude x 1000 uint16": np.round(np.sqrt(power) * 1000).astype(np.uint16),
    }
    out = {k: tr.sar_per_image(v) for k, v in encodings.items()}
    assert np.array_equal(out["power"], out["dB"])
    assert np.abs(out["power"] - out["amplitude x 1000 uint16"]).max() < 0.01  # rounding ties only
    x = out["power"]
    assert -1 < x.min() < -0.99 and 0.99 < x.max() < 1 and abs(float(x.mean())) < 1e-3  # uniform ranks
    band = power.copy().astype(np.float32)
    band[0, :4] = np.nan
    band[0, 4:8] = 0
    y = tr.sar_per_image(band)
    assert np.all(y[0, :8] == -1) and y[0, 8:].min() > -1  # nodata at the bottom, valid pixels above it


def test_fold_blocks_partition_sorted_names():
    names = [f"{i:03d}" for i in range(26)]
    blocks = [tr.held_out_inputs(names, fold=f, folds=4) for f in range(4)]
    assert sorted(n for b in blocks for n in b) == names  # disjoint, complete
    assert [len(b) for b in blocks] == [7, 7, 6, 6]
    assert blocks[1] == {f"{i:03d}" for i in range(7, 14)}  # contiguous in name order
    assert tr.held_out_inputs(names, holdout=3) == {"023", "024", "025"}
    with pytest.raises(InputError, match="fold 4 of 4"):
        tr.held_out_inputs(names, fold=4, folds=4)


def test_tiled_generation_blends_to_the_whole_image_result():
    class PerPixel(torch.nn.Module):  # no spatial context: tiles must reassemble exactly
        num_downs = 0

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 3, 1)

        def forward(self, x):
            return torch.tanh(self.conv(x))

    gen = PerPixel()
    sar = np.random.default_rng(0).uniform(-1, 1, (1, 300, 250)).astype(np.float32)
    whole = tr.generate(gen, sar, tile=1024)[0]
    tiled = tr.generate(gen, sar, tile=96, overlap=32)[0]
    assert tiled.shape == (3, 300, 250)
    assert np.abs(tiled - whole).max() < 1e-5


# ----------------------------------------------------------------------------- train, translate, evaluate

def test_pair_folder_train_translate_and_georeferenced_outputs(tmp_path, capsys):
    from sarfusion.cli import main

    root = make_pair_folder(tmp_path / "data" / "pairs", n=4, size=96)
    # one SAR as a georeferenced float dB GeoTIFF: same normalised input, a GeoTIFF output
    grey = cv2.imread(str(root / "sar" / "p03.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    (root / "sar" / "p03.png").unlink()
    gt = (500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0)
    write_raster(root / "sar" / "p03.tif", (grey / 255 * 25 - 25)[None], gt, "EPSG:32611")
    weights = tr.train_translation(tmp_path / "data", tmp_path / "w", work_dir=tmp_path / "runs", config=TINY)
    state = torch.load(weights / "pairs" / "generator.pt", weights_only=False)
    assert state["kind"] == "pairs" and state["config"]["sar_norm"] == "per_image"
    rc = main(["translate", "--input", str(root / "sar"), "--out", str(tmp_path / "out"), "--weights",
               str(tmp_path / "w"), "--preview", str(tmp_path / "prev"), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["n"] == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p00.png", "p01.png", "p02.png", "p03.tif"]
    info = raster_info(tmp_path / "out" / "p03.tif")
    assert info.count == 3 and info.dtype == np.uint8 and info.geotransform == gt and info.epsg == 32611
    assert cv2.imread(str(tmp_path / "out" / "p00.png")).shape == (96, 96, 3)
    panel = cv2.imread(str(tmp_path / "prev" / "p00.png"))
    assert panel.shape[1] > 3 * 96  # SAR | generated | truth
    s = tr.score_translated(root, tmp_path / "out", tmp_path / "w")  # what test.sh writes to OUT_scores.json
    assert s["kind"] == "pairs" and s["all"]["n_images"] == 4 and s["trained_on"] == 4 and s["held_out"] is None

    # a single SAR file, and the only model in the folder for a SEN1-2-named input
    single = tmp_path / "single" / "ROIs1158_spring_s1_7_p1.png"
    single.parent.mkdir()
    shutil.copy(root / "sar" / "p00.png", single)
    out = tr.translate(single, tmp_path / "out_single", tmp_path / "w")
    assert [p.name for p in out] == ["ROIs1158_spring_s1_7_p1.png"]


def test_evaluate_fold_scores_whole_held_out_images(tmp_path):
    root = make_pair_folder(tmp_path / "data" / "pairs", n=4, size=96)
    res = tr.evaluate_translation(tmp_path / "data", tmp_path / "w", tmp_path / "eval", config=TINY, fold=1, folds=2)
    scores = res["pairs"]
    assert scores["held_out"] == ["p02", "p03"]
    for name in ("model", "mean", "histmatch"):
        assert scores[name]["n_images"] == 2 and np.isfinite(scores[name]["psnr"])
    panel = cv2.imread(str(tmp_path / "eval" / "eval_pairs" / "panels" / "p02.png"))
    assert panel.shape[0] >= 96 and panel.shape[1] >= 3 * 96  # full size, three images
    model_out = cv2.imread(str(tmp_path / "eval" / "eval_pairs" / "model" / "p03.png"))
    assert model_out.shape == (96, 96, 3)  # whole images, not crops
    trained = torch.load(tmp_path / "w" / "pairs" / "generator.pt", weights_only=False)["train_keys"]
    assert trained == ["p00", "p01"]  # the held-out block never trained
    assert (root / "sar" / "p02.png").is_file()


def test_cloudy_pixels_get_no_weight(tmp_path):
    from sarfusion.clouds import cloud_shadow_masks, read_optical_reflectance

    root = make_pair_folder(tmp_path / "pairs", n=2, size=96)
    opt = cv2.imread(str(root / "opt" / "p01.png"))
    yy, xx = np.mgrid[:96, :96]
    opt[(yy - 40) ** 2 + (xx - 40) ** 2 < 20 ** 2] = 255  # a saturated white cloud, ~14 % of the image
    cv2.imwrite(str(root / "opt" / "p01.png"), opt)
    examples, dropped = tr.load_pair_examples(root, TINY)
    assert dropped == 0 and examples[0].weight is None
    w = examples[1].weight
    cloud, shadow = cloud_shadow_masks(*read_optical_reflectance(root / "opt" / "p01.png"))
    assert w is not None and w[40, 40] == 0 and cloud[40, 40]
    assert np.array_equal(w == 0, cloud | shadow) and 0.14 < 1 - w.mean() < 0.5
    _, dropped = tr.load_pair_examples(root, dataclasses.replace(TINY, max_cloud_pairs=0.05))
    assert dropped == 1

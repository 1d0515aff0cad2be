"""PSNR / SSIM / MultiEarth error on images whose scores are known by construction."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pathlib import Path

import cv2
import numpy as np
import pytest

from sarfusion.cli import main
from sarfusion.errors import InputError
from sarfusion.io.raster import write_raster
from sarfusion.metrics.image_quality import multiearth_score, psnr, score_translation, ssim

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_samples"


def test_identical_images_psnr_inf_ssim_one():
    rng = np.random.default_rng(0)
    img = rng.random((3, 32, 32))
    assert psnr(img, img, 1.0) == float("inf")
    assert ssim(img, img, 1.0) == pytest.approx(1.0)
    assert ssim(img[0], img[0].copy(), 1.0) == pytest.approx(1.0)  # (H, W) too


def test_psnr_of_known_noise():
    a = np.zeros((2, 40, 40))
    b = a.copy()
    b[:, ::2] = 0.1  # half the pixels off by 0.1 -> MSE 0.005
    assert psnr(a, b, 1.0) == pytest.approx(10 * np.log10(1 / 0.005))
    assert psnr(a * 255, b * 255, 255.0) == pytest.approx(10 * np.log10(1 / 0.005))
    # +-sigma noise of known variance: PSNR = 20 log10(range / sigma)
    rng = np.random.default_rng(1)
    signs = rng.choice([-1.0, 1.0], size=(64, 64))
    assert psnr(np.full((64, 64), 100.0), 100 + 5 * signs, 255.0) == pytest.approx(20 * np.log10(255 / 5))


def test_ssim_known_values():
    # constant images: SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1) (variance terms cancel to 1)
    c1 = (0.01 * 1.0) ** 2
    a, b = np.full((20, 20), 0.2), np.full((20, 20), 0.6)
    assert ssim(a, b, 1.0) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1))
    # an image against its negative (same mean) is anti-correlated: SSIM well below 0
    rng = np.random.default_rng(2)
    x = rng.random((32, 32))
    assert ssim(x, 1 - x, 1.0) < -0.5
    # more noise, lower SSIM
    noisy1 = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    noisy2 = np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1)
    assert 1 > ssim(x, noisy1, 1.0) > ssim(x, noisy2, 1.0)
    with pytest.raises(ValueError):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)), 1.0)


def test_multiearth_min_over_outputs_sum_over_truths():
    zeros, half, ones = np.zeros((3, 8, 8)), np.full((3, 8, 8), 0.5), np.ones((3, 8, 8))
    # one truth: the closest output counts (RMS distance 0 to the identical one)
    assert multiearth_score([ones, half], [half]) == 0.0
    assert multiearth_score([ones, zeros], [half]) == pytest.approx(0.5)
    # two truths: each takes its own best output, distances add
    assert multiearth_score([zeros, np.full((3, 8, 8), 0.9)], [np.full((3, 8, 8), 0.1), ones]) == pytest.approx(0.2)
    assert multiearth_score([zeros], [np.full((3, 8, 8), 0.1), ones]) == pytest.approx(1.1)


def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def test_folders_with_samples_and_multiple_truths(tmp_path, capsys):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    # input "scene/a": one output identical to its truth
    _png(pred / "scene" / "a.png", a)
    _png(truth / "scene" / "a.png", a)
    # input "b": two samples, two valid truths (a folder): the identical sample matches truth 1 exactly,
    # truth 2 is an all-black image at RMS distance rms(b) from b and rms(a) from a (the better one counts)
    _png(pred / "b_s0.png", b)
    _png(pred / "b_s1.png", a)
    _png(truth / "b" / "date1.png", b)
    _png(truth / "b" / "date2.png", np.zeros_like(b))
    r = score_translation(pred, truth)
    assert r["n_images"] == 2
    rms = lambda x: np.sqrt(np.mean((x / 255.0) ** 2))  # noqa: E731
    assert r["multiearth"] == pytest.approx((0.0 + min(rms(a), rms(b))) / 2)
    assert r["psnr"] == float("inf")  # a pair is identical
    assert 0 < r["ssim"] < 1
    assert main(["score", "translation", "--pred", str(pred), "--truth", str(truth), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"psnr", "ssim", "multiearth", "n_images"}
    assert out["psnr"] is None and out["multiearth"] == pytest.approx(r["multiearth"])


def test_geotiff_pairs_with_noise(tmp_path):
    rng = np.random.default_rng(4)
    truth = rng.integers(1000, 60000, (2, 24, 24)).astype(np.uint16)
    pred = (truth.astype(np.int64) + rng.choice([-655, 655], truth.shape)).astype(np.uint16)
    write_raster(tmp_path / "t" / "x.tif", truth)
    write_raster(tmp_path / "p" / "x.tif", pred)
    r = score_translation(tmp_path / "p", tmp_path / "t")
    assert r["psnr"] == pytest.approx(20 * np.log10(65535 / 655))
    assert r["multiearth"] == pytest.approx(655 / 65535)


def test_missing_prediction_and_shape_mismatch_are_errors(tmp_path):
    _png(tmp_path / "t" / "x.png", np.zeros((16, 16), np.uint8))
    _png(tmp_path / "t" / "y.png", np.zeros((16, 16), np.uint8))
    _png(tmp_path / "p" / "x.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match="y.png"):
        score_translation(tmp_path / "p", tmp_path / "t")
    _png(tmp_path / "p" / "y.png", np.zeros((16, 17), np.uint8))
    with pytest.raises(InputError, match="y.png"):
        score_translation(tmp_path / "p", tmp_path / "t")


def test_real_sen12_pair_is_scored():
    root = REAL / "sen1-2"
    if not root.is_dir():
        pytest.skip(f"real samples not found at {root}")
    s2 = sorted(root.rglob("*s2_*/*.png"))
    if not s2:
        pytest.skip("no SEN1-2 optical PNG in the real samples")
    img = cv2.imread(str(s2[0]), cv2.IMREAD_UNCHANGED).astype(np.float64) / 255
    img = np.moveaxis(img, -1, 0) if img.ndim == 3 else img
    assert psnr(img, img, 1.0) == float("inf")
    shifted = np.roll(img, 3, axis=-1)
    assert 5 < psnr(img, shifted, 1.0) < 40 and ssim(img, shifted, 1.0) < ssim(img, img, 1.0)


def _ssim_direct(x: np.ndarray, y: np.ndarray, L: float) -> float:
    """Wang et al. written out: explicit normalised 11x11 Gaussian (sigma 1.5), 'valid' windows."""
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    H, W = x.shape
    win = lambda img: sum(w[i, j] * img[i:H - 10 + i, j:W - 10 + j] for i in range(11) for j in range(11))  # noqa
    mx, my = win(x), win(y)
    vx, vy, cxy = win(x * x) - mx ** 2, win(y * y) - my ** 2, win(x * y) - mx * my
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return float(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))))


def test_ssim_matches_the_definition_written_out():
    rng = np.random.default_rng(5)
    x = rng.random((2, 30, 25)) * 255
    y = np.clip(x + rng.normal(0, 30, x.shape), 0, 255)
    expected = np.mean([_ssim_direct(x[c], y[c], 255.0) for c in range(2)])
    assert ssim(x, y, 255.0) == pytest.approx(expected, rel=1e-9)

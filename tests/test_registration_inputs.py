"""Registration inputs: other UTM zones reprojected, no overlap and bad tie-point CSVs rejected,
the keypoint baseline trains and runs end to end."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sarfusion.cli import main
from sarfusion.errors import InputError
from sarfusion.io.raster import raster_info, read_raster, write_raster
from sarfusion.metrics.tiepoints import score_tiepoints
from sarfusion.registration.align import scene_grid
from sarfusion.registration.testpair import make_test_pair


def test_sar_in_another_utm_zone_is_reprojected(tmp_path):
    p = make_test_pair(tmp_path, size=512, seed=3, amplitude_px=12.0, corr_px=100.0, sar_epsg=32632)
    assert raster_info(p["sar"]).epsg == 32632
    grid = scene_grid(p["optical"], p["sar"])
    assert grid.reprojected and raster_info(p["optical"]).epsg == 32631
    assert main(["register", "--optical", p["optical"], "--sar", p["sar"], "--out", str(tmp_path / "d.tif"),
                 "--mode", "none"]) == 0
    zero = score_tiepoints(p["optical"], p["sar"], p["tiepoints"], tmp_path / "d.tif")["mean_px"]
    assert main(["register", "--optical", p["optical"], "--sar", p["sar"], "--out", str(tmp_path / "d.tif")]) == 0
    dense = score_tiepoints(p["optical"], p["sar"], p["tiepoints"], tmp_path / "d.tif")["mean_px"]
    assert dense < 0.5 * zero, (dense, zero)


def test_scenes_that_do_not_overlap_are_rejected(tmp_path, capsys):
    a = np.ones((1, 64, 64), np.float32)
    write_raster(tmp_path / "opt.tif", a, (500000, 0.5, 0, 5700000, 0, -0.5), 32631)
    write_raster(tmp_path / "sar.tif", a, (510000, 0.5, 0, 5700000, 0, -0.5), 32631)
    with pytest.raises(InputError, match="does not overlap"):
        scene_grid(tmp_path / "opt.tif", tmp_path / "sar.tif")
    rc = main(["register", "--optical", str(tmp_path / "opt.tif"), "--sar", str(tmp_path / "sar.tif"),
               "--out", str(tmp_path / "out.tif")])
    assert rc == 2 and "sar.tif" in capsys.readouterr().err
    assert not (tmp_path / "out.tif").exists()


def test_tiepoint_csv_with_missing_columns_is_rejected_by_name(tmp_path, capsys):
    a = np.ones((1, 64, 64), np.float32)
    write_raster(tmp_path / "opt.tif", a, (500000, 0.5, 0, 5700000, 0, -0.5), 32631)
    write_raster(tmp_path / "sar.tif", a, (500000, 0.5, 0, 5700000, 0, -0.5), 32631)
    pd.DataFrame({"sar_row": [1], "sar_col": [2], "optical_row": [3]}).to_csv(tmp_path / "tp.csv", index=False)
    rc = main(["register", "--optical", str(tmp_path / "opt.tif"), "--sar", str(tmp_path / "sar.tif"),
               "--out", str(tmp_path / "out.tif"), "--tiepoints", str(tmp_path / "tp.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "tp.csv" in err and "optical_col" in err
    assert not (tmp_path / "out.tif").exists()


def test_keypoint_baseline_trains_and_runs_end_to_end(tmp_path, capsys):
    from sarfusion.engine import EngineConfig
    from sarfusion.registration.keypoints import KeypointConfig, train_keypoints, weighted_mse
    import torch
    # The weighted MSE balances the few keypoint pixels against the rest.
    target = torch.zeros(1, 1, 32, 32)
    target[..., 16, 16] = 1.0
    assert weighted_mse(torch.zeros_like(target), target) > 10 * torch.mean((0 - target) ** 2)
    data = tmp_path / "data"
    make_test_pair(data, size=384, seed=7, amplitude_px=10.0, n_tiepoints=12)
    cfg = KeypointConfig(engine=EngineConfig(max_steps=2, batch_size=2, checkpoint_every=2),
                         crop=64, jitter=8, base_channels=2, depth=2, sigma=4.0)
    weights = train_keypoints(data, tmp_path / "w", config=cfg)
    assert weights.is_file()
    # Deterministic with the seed, initial weights included: a second run gives the same nets.
    again = train_keypoints(data, tmp_path / "w2", config=cfg)
    m1, m2 = (torch.load(w, weights_only=False)["models"] for w in (weights, again))
    assert all(torch.equal(m1[n][k], m2[n][k]) for n in m1 for k in m1[n])
    p = make_test_pair(tmp_path / "test", size=384, seed=8, amplitude_px=10.0, n_tiepoints=12)
    assert main(["register", "--optical", p["optical"], "--sar", p["sar"], "--out", str(tmp_path / "b.tif"),
                 "--mode", "baseline", "--weights", str(tmp_path / "w"), "--tiepoints", p["tiepoints"],
                 "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "baseline" and np.isfinite(out["mean_px"])
    assert np.isfinite(read_raster(tmp_path / "b.tif")).all()


class _PeakNet:
    """A stand-in SAR-keypoint net whose heatmap peaks where ``where(batch index)`` says."""

    def __init__(self, size: int, where):
        self.size, self.where, self.calls = size, where, 0

    def __call__(self, optical, sar):
        import torch
        heat = torch.zeros(optical.shape[0], 1, self.size, self.size)
        for b in range(optical.shape[0]):
            r, c = self.where(self.calls)
            heat[b, 0, r, c] = 1.0
            self.calls += 1
        return heat


@pytest.mark.parametrize("case", ["centred", "scattered"])
def test_keypoint_baseline_aligns_the_scene_first_and_keeps_a_supported_model(case, tmp_path, monkeypatch):
    """SAR keypoints at the crop centre: the translation explains all of them, as well as the
    affine does (a tie: the simpler model is kept); scattered ones (no consensus) fall back to it too,
    never to an affine through noise."""
    import torch
    from sarfusion.registration import keypoints as kp
    p = make_test_pair(tmp_path, size=512, seed=3, amplitude_px=10.0, n_tiepoints=12)
    grid = scene_grid(p["optical"], p["sar"])
    cfg = kp.KeypointConfig(crop=64, grid_spacing_m=12.0)
    rng = np.random.default_rng(0)
    where = ((lambda i: (32, 32)) if case == "centred" else
             (lambda i: tuple(int(v) for v in rng.integers(0, 64, 2))))
    monkeypatch.setattr(kp, "load_keypoint_models", lambda w, d: ({"sar_kp": _PeakNet(64, where)}, cfg))
    field, stats = kp.keypoint_affine(grid, tmp_path, device="cpu")
    dy, dx = stats["translation"]
    # the scene translation: what the pair's smooth field (+ affine part) does on average
    truth = read_raster(p["offsets"])
    sx = raster_info(p["optical"]).geotransform[1] / grid.res
    assert abs(dx - np.median(truth[0]) * sx) < 3 and abs(dy - np.median(truth[1]) * sx) < 3, stats
    rows, cols = np.meshgrid(np.arange(100, 400, 50.0), np.arange(100, 400, 50.0))
    off = field.sample(rows, cols)
    assert stats["detected"] > 20
    if case == "centred":
        assert stats["inliers"] == stats["translation_support"] == stats["detected"]
    else:
        assert stats["inliers"] < stats["detected"] / 4
    assert stats["fallback"] == "translation"
    # either way the field is the translation (the centre crop pixel sits 0.5 px off the point)
    assert np.abs(off[0] - dy).max() < 1.0 and np.abs(off[1] - dx).max() < 1.0, (off[:, 0, 0], stats)


def test_masked_sar_registers_on_its_valid_part(real_samples, tmp_path, capsys):
    """The real Capella / Maxar Rotterdam pair (200 px, 4.5 m; the SAR's top 39% masked, NaN in the
    file): the scene-wide translation must come from the valid SAR only. Measured: (1.94, 0.30) px,
    NCC 0.59, confidence 1 (the valid part cropped alone: (1.93, -0.03) px, NCC 0.60, and 0.7-2.3 px
    in each polarisation). Scored as featureless ground, the masked strip pulled the peak onto the
    search edge: (12.0, 2.1) px, NCC 0.12, confidence 0, and the unwarped pair moved by 12 px."""
    import json
    root = real_samples / "capella_rotterdam"
    if not root.is_dir():
        pytest.skip(f"Capella sample not found at {root}")
    sar = read_raster(root / "sar_masked.tif")
    assert 0.3 < np.isnan(sar[0]).mean() < 0.5  # the premise: a large masked strip
    rc = main(["register", "--optical", str(root / "rgb_unmasked.tif"), "--sar", str(root / "sar_masked.tif"),
               "--out", str(tmp_path / "off.tif"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    glob = out["stats"][0]
    assert not glob["global_on_edge"] and glob["global_confidence"] > 0.5, glob
    assert np.hypot(*glob["global_shift"]) < 3.5, glob
    field = read_raster(tmp_path / "off.tif")
    assert np.hypot(*field).mean() < 3.5, np.hypot(*field).mean()

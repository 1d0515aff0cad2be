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

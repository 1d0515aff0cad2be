"""Cloud screening: real MultiEarth dates, real clear SEN1-2 patches, generated scenes with known clouds."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sarfusion.clouds import assess_clouds, cloud_fraction, qa60_mask
from sarfusion.errors import InputError

CLOUDY = {"2019_06_06", "2019_06_11", "2019_07_11"}
CLEAR = {"2019_07_01", "2019_07_26", "2020_07_20"}


def _date(path: str) -> str:
    return path.rsplit("_", 3)[-3] + "_" + path.rsplit("_", 2)[-2] + "_" + path.rsplit("_", 1)[-1]


def test_real_multiearth_cloudy_dates_dropped_clear_kept(real_samples):
    rows = assess_clouds([real_samples / "multiearth" / "sent2"])
    assert len(rows) == 6  # five band files per date grouped into one scene
    decisions = {_date(r["path"]): r["keep"] for r in rows}
    assert {d for d, keep in decisions.items() if not keep} == CLOUDY
    assert {d for d, keep in decisions.items() if keep} == CLEAR
    assert all(r["qa60"] == 0.0 for r in rows)  # QA60 really is empty: the pixels decided


def test_real_sen12_clear_patches_kept(real_samples):
    rows = assess_clouds([real_samples / "sen1-2"])
    assert len(rows) == 10  # the s1 SAR patches are skipped
    assert all(r["keep"] for r in rows), [r for r in rows if not r["keep"]]


def test_generated_multiearth_clouds_match_truth(tmp_path):
    from sarfusion.synth.landscape import write_multiearth

    truth = write_multiearth(tmp_path, seed=3, sites=2, sar_dates=1, optical_dates=4, size=128)
    rows = {r["path"].rsplit("/", 1)[-1].replace("*_", ""): r for r in assess_clouds([tmp_path / "sent2"])}
    assert set(rows) == set(truth)
    for name, t in truth.items():
        assert rows[name]["keep"] == (t["cloud_fraction"] <= 0.01), (name, t, rows[name])
        if t["cloud_fraction"] > 0.05:
            assert rows[name]["cloud_fraction"] > 0.5 * t["cloud_fraction"]


def test_qa60_bits_are_used_and_decoded():
    qa = np.zeros((64, 64), np.uint16)
    qa[:10] = 1 << 10
    qa[10:20] = 1 << 11
    qa[20:30] = 1 << 9  # not a cloud bit
    assert qa60_mask(qa).sum() == 20 * 64
    rgb = np.full((3, 64, 64), 0.03, np.float32)  # clear dark forest
    assert cloud_fraction(rgb)["cloud_fraction"] == 0.0
    assert cloud_fraction(rgb, qa60=qa)["cloud"] >= 20 / 64


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="nothere"):
        assess_clouds([tmp_path / "nothere.png"])


def test_clouds_cli_json(real_samples, tmp_path, capsys):
    from sarfusion.cli import main

    for f in (real_samples / "multiearth" / "sent2").glob("*2019_06_06.tiff"):
        shutil.copy(f, tmp_path)
    assert main(["clouds", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dropped"] == 1 and out["kept"] == 0

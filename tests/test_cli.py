"""The command-line contract: --help, the shell scripts' errors, data detection."""
import subprocess
import sys

import pytest

from conftest import REPO
from sarfusion.cli import build_parser, main
from sarfusion.datasets.detect import detect_data
from sarfusion.errors import InputError


def _run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, cwd=REPO, timeout=120, **kw)


def test_help_lists_every_subcommand():
    res = _run(sys.executable, "-m", "sarfusion", "--help")
    assert res.returncode == 0
    for name in ("train", "test", "demo"):
        assert name in res.stdout
    sub = build_parser()._subparsers._group_actions[0].choices
    for name, parser in sub.items():  # every subcommand explains itself
        assert parser.format_help().strip(), name


@pytest.mark.parametrize("script,args", [("test.sh", ["OUT.csv"]), ("train.sh", [])])
def test_scripts_on_empty_folder_fail_with_what_was_expected(tmp_path, script, args):
    res = _run("bash", str(REPO / script), str(tmp_path), *[str(tmp_path / a) for a in args])
    assert res.returncode != 0
    assert "nothing recognisable found" in res.stderr
    assert "SpaceNet 6" in res.stderr and "SpaceNet 9" in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if "error" in ln]) == 1


def test_test_sh_on_wrong_folder_and_bad_usage(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "images").mkdir()
    res = _run("bash", str(REPO / "test.sh"), str(tmp_path), str(tmp_path / "out.csv"))
    assert res.returncode != 0 and "expected at least one of" in res.stderr
    assert not (tmp_path / "out.csv").exists()
    res = _run("bash", str(REPO / "test.sh"), str(tmp_path))
    assert res.returncode == 2 and "usage: test.sh /data OUT.csv" in res.stderr


def test_main_turns_input_errors_into_one_line(tmp_path, capsys):
    assert main(["test", str(tmp_path / "missing"), str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarfusion test: error: ") and "missing: not a folder" in err


def test_detects_real_sample_layouts(real_samples):
    inv = detect_data(real_samples)
    assert [p.name for p in inv.sen12] == ["ROIs1158_spring"]
    assert [p.name for p in inv.multiearth] == ["multiearth"]
    assert not inv.sn6_train and not inv.sn6_test and not inv.sn9


def test_detects_sn6_and_sn9_layouts(tmp_path):
    aoi = tmp_path / "train" / "AOI_11_Rotterdam"
    (aoi / "SAR-Intensity").mkdir(parents=True)
    (aoi / "SummaryData").mkdir()
    (aoi / "SummaryData" / "SN6_Train_AOI_11_Rotterdam_Buildings.csv").write_text("ImageId\n")
    test_aoi = tmp_path / "test_public" / "AOI_11_Rotterdam"
    (test_aoi / "SAR-Intensity").mkdir(parents=True)
    sn9 = tmp_path / "sn9"
    sn9.mkdir()
    for f in ("x_optical_train.tif", "x_sar_train.tif", "x_tiepoints_train.csv", "y_optical_test.tif", "y_sar_test.tif"):
        (sn9 / f).write_text("")
    (aoi / "SummaryData" / "SN6_Test_Public_AOI_11_Rotterdam_Buildings.csv").write_text("ImageId\n")
    truth = tmp_path / "test_public_truth" / "SN6_Test_Public_AOI_11_Rotterdam_Buildings.csv"
    truth.parent.mkdir()
    truth.write_text("ImageId\n")
    inv = detect_data(tmp_path)
    assert inv.sn6_train == [aoi] and inv.sn6_test == [test_aoi]
    assert inv.sn6_test_truth == truth  # the Test-named CSV inside the training AOI is not a test truth
    assert [(s.name, s.split, s.tiepoints is not None) for s in inv.sn9] == [("x_train", "train", True), ("y_test", "test", False)]
    with pytest.raises(InputError):
        detect_data(tmp_path / "sn9" / "x_sar_train.tif")

"""Issue-22 protocol on the real Sentinel-1/2 pairs (``real_samples/s1s2_pairs``), fast version:
two pairs cropped to 512 px. Checks the known warp, the warp-recovery scoring against known truth,
the bench's CFOG reference matcher, the dense mode's recovery against both, and that it does no harm
on a pair with nothing to match (``bench/bench_registration.py --what real26`` is the full run).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sarfusion.registration.testpair import random_known_warp, tiepoint_sample, warp_recovery
from sarfusion.registration.warp import warp_by_field

REPO = Path(__file__).resolve().parents[1]
CROP = 512


@pytest.fixture(scope="module")
def bench():
    """The registration bench as a module (the CFOG reference matcher lives there, not in the package)."""
    spec = importlib.util.spec_from_file_location("bench_registration", REPO / "bench" / "bench_registration.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def two_pairs(real_samples) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The first two pairs, central 512 px crops: ``(name, optical (3, 512, 512), sar (512, 512))``,
    float32 shifted by +1 (0 stays "no data", as in the bench)."""
    from sarfusion.datasets.pairs import find_pairs, read_optical, read_sar
    root = real_samples / "s1s2_pairs"
    if not root.is_dir():
        pytest.skip(f"real S1/S2 pairs not found at {root}")
    out = []
    for p in find_pairs(root)[:2]:
        opt = read_optical(p.optical).pixels.astype(np.float32) + 1
        sar = read_sar(p.sar).pixels[0].astype(np.float32) + 1
        r0, c0 = (opt.shape[1] - CROP) // 2, (opt.shape[2] - CROP) // 2
        out.append((p.name, opt[:, r0:r0 + CROP, c0:c0 + CROP], sar[r0:r0 + CROP, c0:c0 + CROP]))
    return out


def test_known_warp_within_the_stated_bounds():
    # Pixels do not matter here: the warp of the bench's first two pairs at the test's crop size.
    for seed in (0, 1):
        field, truth, shift = random_known_warp(CROP, CROP, seed)
        assert all(abs(s) <= 15 for s in shift)
        smooth = field - np.array(shift, np.float32)[:, None, None]
        assert np.abs(smooth).max() <= 8 + 1e-4
        assert np.abs(smooth).max() > 4  # the smooth part is really there, not a bare shift
        assert np.abs(truth).max(axis=(1, 2)).max() <= 23 + 1e-4
        # Correlation length about a tenth of the image: over 5 px the field barely changes.
        assert np.abs(np.diff(smooth[:, ::5], axis=1)).max() < 2.0


def test_zero_offsets_score_the_mean_known_warp(two_pairs):
    # Self-consistency with known truth: with F0 = F1 = 0 the recovery error is |k| itself.
    for seed, (_, _, sar) in enumerate(two_pairs):
        _, truth, _ = random_known_warp(*sar.shape, seed)
        rows, cols = tiepoint_sample(*sar.shape, 150, 31, seed)
        zero = np.zeros_like(truth)
        e = warp_recovery(zero, zero, truth, rows, cols)
        expected = np.mean([np.hypot(truth[0, r, c], truth[1, r, c]) for r, c in zip(rows, cols)])
        assert e["recovery"].mean() == pytest.approx(expected, rel=1e-6)
        assert e["absolute"].mean() == pytest.approx(expected, rel=1e-6)
        assert e["unwarped"].max() == 0


def _pure_shift_error(bench, opt: np.ndarray, sar: np.ndarray) -> float:
    """Mean warp-recovery error (px) of the bench's CFOG reference for a pure known shift."""
    shift = (6.4, -9.7)  # (dy, dx) px, sub-pixel on purpose; no smooth field
    field = np.broadcast_to(np.array(shift, np.float32)[:, None, None], (2, *sar.shape)).copy()
    f0 = bench.cfog_field(opt, sar)
    f1 = bench.cfog_field(opt, warp_by_field(sar, field))
    rows, cols = tiepoint_sample(*sar.shape, 150, 31, 0)
    return float(warp_recovery(f0, f1, field, rows, cols)["recovery"].mean())


def test_cfog_reference_recovers_a_pure_shift_first_pair(two_pairs, bench):
    name, opt, sar = two_pairs[0]
    err = _pure_shift_error(bench, opt, sar)
    assert err < 1.5, f"pair {name}: CFOG recovers the pure shift to {err:.2f} px"


@pytest.mark.xfail(reason="pair 157 (the second by name), 512 px centre crop: the plain CFOG reference recovers "
                          "the pure (6.4, -9.7) px shift to 2.89 px mean (median 0.90: outlier nodes the 3x3 median "
                          "does not remove; 3.12 px mean on the full 1024 px pair), and moves the unwarped pair by "
                          "5-6 px; the 1.5 px target is not reached there (pair 156: 1.33 px crop, 0.68 px full)",
                   strict=False)
def test_cfog_reference_recovers_a_pure_shift_second_pair(two_pairs, bench):
    name, opt, sar = two_pairs[1]
    err = _pure_shift_error(bench, opt, sar)
    assert err < 1.5, f"pair {name}: CFOG recovers the pure shift to {err:.2f} px"


@pytest.fixture(scope="module")
def dense_vs_cfog(bench, tmp_path_factory) -> list[dict]:
    """Dense mode and CFOG reference on the two 512 px crops, issue-22 warps (seeds 0 / 1; the
    correlation length of the 1024 px pairs, 102 px, so the crop sees the same physical warp)."""
    from sarfusion.datasets.pairs import find_pairs, read_optical, read_sar
    from sarfusion.registration.testpair import warp_recovery_errors
    root = REPO.parent / "shared" / "real_samples" / "s1s2_pairs"  # module scope: not the real_samples fixture
    if not root.is_dir():
        pytest.skip(f"real S1/S2 pairs not found at {root}")
    work = tmp_path_factory.mktemp("r22")
    out = []
    for seed, p in enumerate(find_pairs(root)[:2]):
        opt = read_optical(p.optical).pixels.astype(np.float32) + 1
        sar = read_sar(p.sar).pixels[0].astype(np.float32) + 1
        r0, c0 = (opt.shape[1] - CROP) // 2, (opt.shape[2] - CROP) // 2
        opt, sar = opt[:, r0:r0 + CROP, c0:c0 + CROP], sar[r0:r0 + CROP, c0:c0 + CROP]
        out.append({"name": p.name,
                    "dense": warp_recovery_errors(work, opt, sar, seed, corr_px=102.4),
                    "cfog": warp_recovery_errors(work, opt, sar, seed, corr_px=102.4, matcher=bench.cfog_field)})
    return out


def test_dense_recovers_the_known_warp_better_than_cfog_and_far_better_than_zero(dense_vs_cfog):
    """Measured: 156 0.88 px (CFOG 2.18, zero 16.27), 157 1.97 px (CFOG 5.96, zero 12.63);
    confidence (local support) 0.74 / 0.73 and 0.60 / 0.53 (unwarped / warped)."""
    for r in dense_vs_cfog:
        d, c = r["dense"], r["cfog"]
        assert d["recovery"] < 0.6 * c["recovery"] and d["recovery"] < 0.2 * d["zero"], (r["name"], d, c)
        assert d["unwarped"] < c["unwarped"], (r["name"], d, c)
        assert min(d["confidence"]) > 0.4, (r["name"], d)
    assert np.mean([r["dense"]["recovery"] for r in dense_vs_cfog]) < 2.0, dense_vs_cfog


def test_dense_does_no_harm_on_a_pair_with_nothing_to_match(two_pairs, tmp_path):
    """The optical crop of one real pair against the SAR crop of the other (different places):
    every match is chance, so the field must stay near zero offsets and say it is unsure."""
    from sarfusion.registration.testpair import dense_offsets
    (_, opt, _), (_, _, other_sar) = two_pairs
    field, res = dense_offsets(tmp_path, opt, other_sar, "mismatch")
    assert np.hypot(*field).mean() < 1.0, np.hypot(*field).mean()
    assert res["confidence"] < 0.2, res["confidence"]


def test_crops_from_320_px_take_the_medium_route_and_it_beats_the_small_one(two_pairs, tmp_path):
    """384 px centre crops of the first two pairs (issue-22 warps, seeds 5000 / 5001 as in
    ``bench_registration.py --what route-tune``): the default settings take the medium route, which
    recovers the warp better than the small-image route (the default before ``medium_min_side``
    came down from 512 px) and writes zero offsets for a crop with nothing to match. Measured: 156
    0.52 px (small route 1.94), 157 1.83 px (3.03); mismatch: 0.00 px (small route 8.57)."""
    from dataclasses import replace

    from sarfusion.registration.dense import DenseConfig
    from sarfusion.registration.testpair import dense_offsets, warp_recovery_errors
    side = 384
    assert DenseConfig().medium_min_side <= side
    small = replace(DenseConfig(), medium_min_side=side + 1)
    r0 = (CROP - side) // 2  # the centre of the 512 px centre: the same pixels as the bench's crop
    crops = [(name, opt[:, r0:r0 + side, r0:r0 + side].copy(), sar[r0:r0 + side, r0:r0 + side].copy())
             for name, opt, sar in two_pairs]
    for i, (name, opt, sar) in enumerate(crops):
        medium = warp_recovery_errors(tmp_path, opt, sar, 5000 + i, corr_px=102.4)
        small_route = warp_recovery_errors(tmp_path, opt, sar, 5000 + i, config=small, corr_px=102.4)
        assert medium["recovery"] < 2.5 and medium["recovery"] < 0.8 * small_route["recovery"], (name, medium, small_route)
    field, res = dense_offsets(tmp_path, crops[0][1], crops[1][2], "mismatch")
    assert np.hypot(*field).mean() < 1.0 and res["confidence"] < 0.2, (np.hypot(*field).mean(), res["confidence"])

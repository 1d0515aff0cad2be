"""Dense registration: FFT matching, the offset-map format, known warps recovered (synthetic and real)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sarfusion.io.raster import cog_errors, raster_info, read_raster
from sarfusion.metrics.tiepoints import score_tiepoints
from sarfusion.registration.api import register_scene
from sarfusion.registration.features import oriented_gradients
from sarfusion.registration.matching import match_templates, ncc_map
from sarfusion.registration.testpair import (known_warp_errors, make_test_pair, multiearth_pair, sen12_pairs,
                                            warp_recovery_errors)

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "real_samples"


def test_ncc_finds_known_shift_across_contrast_inversion():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.normal(size=(160, 160)).astype(np.float32), (0, 0), 2)
    fo = oriented_gradients(img + 5)
    fs = oriented_gradients(10 - img)  # inverted contrast, as SAR vs optical often is
    t, r = 48, 10
    temps, searches, truth = [], [], []
    for dy, dx in [(3, -4), (-7, 2), (0, 0), (9, 9)]:
        cy, cx = 80, 80
        temps.append(fo[:, cy - t // 2:cy + t // 2, cx - t // 2:cx + t // 2])
        # search window centred so that the true match sits at shift (dy, dx)
        sy, sx = cy - dy, cx - dx
        searches.append(fs[:, sy - t // 2 - r:sy + t // 2 + r, sx - t // 2 - r:sx + t // 2 + r])
        truth.append((dy, dx))
    res = match_templates(np.stack(temps), np.stack(searches))
    np.testing.assert_allclose(res.shift, np.array(truth, np.float32), atol=0.5)
    assert (res.score > 0.5).all()


def test_ncc_map_shape_check():
    with pytest.raises(ValueError, match="expects"):
        ncc_map(torch.zeros(2, 3, 8, 8), torch.zeros(2, 4, 16, 16))


def _oracle_affine_error(p: dict) -> float:
    """Mean error of the best affine fitted (least squares) to the true tie-point offsets."""
    from sarfusion.metrics.tiepoints import read_tiepoints, reference_offsets
    pts = read_tiepoints(p["tiepoints"])
    dx, dy = reference_offsets(pts, raster_info(p["optical"]), raster_info(p["sar"]))
    a = np.column_stack([pts["optical_col"], pts["optical_row"], np.ones(len(pts))])
    cx = np.linalg.lstsq(a, dx, rcond=None)[0]
    cy = np.linalg.lstsq(a, dy, rcond=None)[0]
    return float(np.hypot(np.rint(a @ cx) - dx, np.rint(a @ cy) - dy).mean())


@pytest.fixture(scope="module")
def registered_pair(tmp_path_factory) -> tuple[Path, dict, dict, dict]:
    """A 1024 px synthetic pair registered twice: zero offsets (``none``, with the aligned SAR) and
    dense (with the aligned SAR and previews). Returns (folder, pair paths, zero result, dense result)."""
    tmp_path = tmp_path_factory.mktemp("dense_pair")
    p = make_test_pair(tmp_path, size=1024, seed=5, amplitude_px=30.0, corr_px=120.0)
    zero = register_scene(p["optical"], p["sar"], tmp_path / "zero.tif", "none",
                          aligned_sar_path=tmp_path / "zero_aligned.tif")
    dense = register_scene(p["optical"], p["sar"], tmp_path / "dense.tif", "dense", preview_dir=tmp_path / "pv",
                           aligned_sar_path=tmp_path / "dense_aligned.tif")
    return tmp_path, p, zero, dense


def test_dense_beats_zero_and_best_affine_on_synthetic_pair(registered_pair):
    tmp_path, p, zero, dense = registered_pair
    zero_err = score_tiepoints(p["optical"], p["sar"], p["tiepoints"], zero["offsets"])["mean_px"]
    dense_err = score_tiepoints(p["optical"], p["sar"], p["tiepoints"], dense["offsets"])["mean_px"]
    affine_err = _oracle_affine_error(p)
    assert dense_err <= 0.25 * zero_err, (dense_err, zero_err)
    assert dense_err < affine_err, (dense_err, affine_err)
    # SPEC section 4 format: 2 float32 bands, optical size / geotransform / CRS, finite.
    out, opt = raster_info(dense["offsets"]), raster_info(p["optical"])
    assert (out.count, out.dtype, out.width, out.height) == (2, np.dtype("float32"), opt.width, opt.height)
    assert out.geotransform == opt.geotransform and out.epsg == opt.epsg
    assert np.isfinite(read_raster(dense["offsets"])).all()
    assert sorted(x.name for x in (tmp_path / "pv").iterdir()) == \
        ["test_optical_5_aligned.png", "test_optical_5_checker.png", "test_optical_5_offsets.png"]
    assert cog_errors(dense["offsets"]) == []  # and the scorer above read it


def _speckle_free_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """NCC of log intensities after a Gaussian of 1.5 px (speckle averaged out) over ``mask``."""
    a, b = (cv2.GaussianBlur(np.log1p(x.astype(np.float32)), (0, 0), 1.5)[mask].astype(np.float64) for x in (a, b))
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_aligned_sar_matches_the_sar_simulated_without_misalignment(registered_pair):
    """The aligned SAR (through the dense offsets) against the same SAR simulated on the optical
    grid WITHOUT the warp: far closer than the SAR laid on the grid by georeferencing alone
    (zero offsets). Measured NCC 0.361 before, 0.930 after (0.986 through the true offsets)."""
    from sarfusion.registration.aligned import write_aligned_sar
    from sarfusion.registration.testpair import sar_like, urban_optical

    tmp_path, p, zero, dense = registered_pair
    unwarped = sar_like(urban_optical(1024, 5).mean(0), 5 + 2)  # make_test_pair's SAR before its warp
    truth = write_aligned_sar(p["optical"], p["sar"], p["offsets"], tmp_path / "true_aligned.tif")
    before, after, ideal = (read_raster(x)[0] for x in (zero["aligned_sar"], dense["aligned_sar"],
                                                        truth["aligned_sar"]))
    mask = np.zeros(unwarped.shape, bool)
    mask[48:-48, 48:-48] = True
    mask &= (before > 0) & (after > 0) & (ideal > 0)
    ncc_before, ncc_after, ncc_ideal = (_speckle_free_ncc(x, unwarped, mask) for x in (before, after, ideal))
    print(f"NCC with the unwarped SAR: before {ncc_before:.3f}, after {ncc_after:.3f}, true offsets {ncc_ideal:.3f}")
    assert ncc_ideal > 0.97 and ncc_after > 0.9 and ncc_before < 0.5, (ncc_before, ncc_after, ncc_ideal)
    assert ncc_after - ncc_before > 0.4
    # the product: the optical's grid, the SAR's dtype, nodata declared, a valid COG
    out, opt = raster_info(dense["aligned_sar"]), raster_info(p["optical"])
    assert (out.width, out.height, out.geotransform, out.epsg) == (opt.width, opt.height, opt.geotransform, opt.epsg)
    assert out.count == 1 and out.dtype == np.float32 and out.nodata == (0.0,)
    assert cog_errors(dense["aligned_sar"]) == []


@pytest.fixture(scope="module")
def sen12_errors(tmp_path_factory) -> tuple[list[float], list[float]]:
    """(dense error, zero error) per real SEN1-2 pair after a known smooth warp of its SAR."""
    root = REAL_SAMPLES / "sen1-2" / "ROIs1158_spring"
    if not root.is_dir():
        pytest.skip(f"real samples not found at {root}")
    tmp_path = tmp_path_factory.mktemp("sen12")
    results = [known_warp_errors(tmp_path, opt, sar, i) for i, (_, opt, sar) in enumerate(sen12_pairs(root))]
    assert len(results) == 10
    return [r["dense"] for r in results], [r["zero"] for r in results]


def test_dense_improves_known_warp_on_real_sen12_pairs(sen12_errors):
    errors, zeros = sen12_errors
    assert np.mean(errors) < 0.7 * np.mean(zeros), (errors, zeros)


def test_dense_recovers_known_warp_on_real_sen12_pairs_within_2px(sen12_errors):
    errors, zeros = sen12_errors
    assert np.mean(errors) < 2.0, (errors, zeros)


@pytest.fixture(scope="module")
def multiearth_error(tmp_path_factory) -> tuple[float, float]:
    """(dense error, zero error) for MultiEarth S1 VV vs S2 B4-B3-B2 of one site after a known warp."""
    me = REAL_SAMPLES / "multiearth"
    if not me.is_dir():
        pytest.skip(f"real samples not found at {me}")
    r = known_warp_errors(tmp_path_factory.mktemp("multiearth"), *multiearth_pair(me), seed=0)
    return r["dense"], r["zero"]


def test_dense_does_no_harm_on_real_multiearth_pair(multiearth_error):
    """Forest at 10 m gives few reliable matches; the robust fallback must not make things worse."""
    err, zero = multiearth_error
    assert err <= 1.05 * zero, (err, zero)


# --- the issue-22 protocol on the 256 px real patches: a known shift of up to +-15 px + a smooth
# +-8 px field of 102 px correlation (that of the 1024 px S1/S2 pairs: the same physical warp),
# registered before (F0) and after (F1) the warp; error |F1 - F0 - k| at 150 tie points.

@pytest.fixture(scope="module")
def sen12_recovery(tmp_path_factory) -> list[dict]:
    root = REAL_SAMPLES / "sen1-2" / "ROIs1158_spring"
    if not root.is_dir():
        pytest.skip(f"real samples not found at {root}")
    work = tmp_path_factory.mktemp("sen12_r22")
    return [warp_recovery_errors(work, opt, sar, i, corr_px=102.4) for i, (_, opt, sar) in enumerate(sen12_pairs(root))]


@pytest.fixture(scope="module")
def multiearth_recovery(tmp_path_factory) -> list[dict]:
    me = REAL_SAMPLES / "multiearth"
    if not me.is_dir():
        pytest.skip(f"real samples not found at {me}")
    work = tmp_path_factory.mktemp("me_r22")
    opt, sar = multiearth_pair(me)
    return [warp_recovery_errors(work, opt, sar, seed, corr_px=102.4) for seed in range(4)]


def test_dense_warp_recovery_on_real_sen12_pairs_far_below_zero_offsets(sen12_recovery):
    """256 px patches take the small-image route. Measured 2.70 px mean against 13.12 without
    registration (worst 11.15; none worse than zero); 2.73 before the scene-wide search left
    nodata out of its NCC, 3.55 before its wide search (DenseConfig.small_wide_radius, chosen on
    crops of the 26 real pairs, not on these)."""
    rec = [r["recovery"] for r in sen12_recovery]
    zero = [r["zero"] for r in sen12_recovery]
    assert len(rec) == 10
    assert np.mean(rec) < 0.4 * np.mean(zero), (rec, zero)
    assert all(r <= z for r, z in zip(rec, zero)), (rec, zero)


@pytest.mark.xfail(reason="issue-22 protocol on 10 SEN1-2 256 px patches: measured 2.70 px mean (worst "
                          "11.15; target 2). One patch (sen12_6) has no distinct S1 / S2 peak at all (NCC "
                          "peak ratio 1.006, chance level) and stays near its zero-offset error (12.91 px); the "
                          "other nine average 1.76 px", strict=False)
def test_dense_warp_recovery_on_real_sen12_pairs_within_2px(sen12_recovery):
    assert np.mean([r["recovery"] for r in sen12_recovery]) < 2.0


def test_dense_warp_recovery_on_real_multiearth_pair_does_no_harm(multiearth_recovery):
    """Measured 1.63 px mean against 13.59 without registration (per warp 1.39 / 0.92 / 1.33 /
    2.89); no warp worse than zero."""
    rec = [r["recovery"] for r in multiearth_recovery]
    zero = [r["zero"] for r in multiearth_recovery]
    assert all(r <= z for r, z in zip(rec, zero)), (rec, zero)
    assert np.mean(rec) < 0.5 * np.mean(zero), (rec, zero)


def test_dense_warp_recovery_on_real_multiearth_pair_within_2px(multiearth_recovery):
    """Measured 1.63 px (3.39 before the wide global search, whose settings were chosen on crops
    of the 26 real S1/S2 pairs, not on this pair). S1 and S2 share little here (global NCC ~0.07),
    but the peak is distinct (ratio 1.018-1.029); the result is essentially a scene-wide translation."""
    assert np.mean([r["recovery"] for r in multiearth_recovery]) < 2.0


def test_small_route_takes_a_distinct_peak_beyond_the_narrow_search(tmp_path):
    """A 256 px pair whose SAR is shifted by (18, -15) px, beyond the +-12 px first search: the
    wide search's distinct peak replaces it. A pair of unrelated images keeps the narrow search."""
    from sarfusion.registration.dense import DenseConfig, dense_field, global_shift
    from sarfusion.registration.testpair import array_pair_grid, sar_like, urban_optical
    cfg = DenseConfig()
    opt = urban_optical(256, seed=3) + 1
    sar = np.roll(sar_like(opt.mean(0), seed=4), (18, -15), axis=(0, 1)) + 1
    grid = array_pair_grid(tmp_path / "shifted", opt, sar)
    narrow, st = global_shift(grid, cfg, torch.device("cpu"))
    wide, wst = global_shift(grid, cfg, torch.device("cpu"), cfg.small_wide_radius)
    assert (st["global_radius"], wst["global_radius"]) == (12, 24)
    assert wst["global_ratio"] >= cfg.small_wide_ratio, wst
    np.testing.assert_allclose(wide, [18, -15], atol=1.0)
    assert np.abs(narrow - [18, -15]).max() > 2  # beyond the narrow search
    _, stats = dense_field(grid, cfg)
    assert stats[0]["global_radius"] == 24
    np.testing.assert_allclose(stats[0]["global_shift"], [18, -15], atol=1.0)
    unrelated = sar_like(urban_optical(256, seed=9).mean(0), seed=5) + 1
    _, stats = dense_field(array_pair_grid(tmp_path / "unrelated", opt, unrelated), cfg)
    assert stats[0]["global_radius"] == 12, stats[0]
    # a patch too small for the wide search (its template would be under 16 px) keeps the narrow one
    tiny = urban_optical(60, seed=1) + 1
    _, stats = dense_field(array_pair_grid(tmp_path / "tiny", tiny, sar_like(tiny.mean(0), seed=2) + 1), cfg)
    assert stats[0]["global_radius"] == 12 and np.isfinite(stats[0]["global_ratio"]), stats[0]


def test_known_warp_errors_on_a_synthetic_patch(tmp_path):
    """The known-warp yardstick itself (used on the real pairs, which a user's clone may lack):
    the global-model bounds are ordered, and on a structured patch the dense mode beats the best
    translation (its local levels follow the field; measured 0.72 px vs 1.12, bias 0.05 px)."""
    from sarfusion.registration.testpair import sar_like, urban_optical
    opt = urban_optical(256, 3).astype(np.float32) + 1
    r = known_warp_errors(tmp_path, opt, sar_like(opt.mean(0), 4) + 1, seed=1)
    assert r["affine"] <= r["translation"] < r["zero"]
    assert r["dense"] < r["translation"], r
    assert abs(r["mean_dy"]) < 0.5 and abs(r["mean_dx"]) < 0.5, r


def test_affine_gate_drops_gross_outliers_and_widens_for_strong_local_fields():
    """Node offsets = an affine + a smooth local field (median distance from the affine ~6 px) +
    10 gross outliers (60 px off). A 3 px gate also drops most true nodes; with ``rel`` it widens
    to the scene's own spread and drops only the outliers."""
    from sarfusion.registration.field import reject_far_from_affine
    rng = np.random.default_rng(0)
    ii, jj = np.mgrid[0:30, 0:30].astype(np.float32)
    local = np.stack([6 * np.sin(ii / 4), 6 * np.cos(jj / 5)])
    values = np.stack([10 + 0.2 * ii - 0.1 * jj, -5 + 0.05 * ii + 0.3 * jj]) + local
    bad = rng.choice(900, 10, replace=False)
    values.reshape(2, -1)[:, bad] += 60.0
    valid = np.ones((30, 30), bool)
    fixed = reject_far_from_affine(values, valid, tol=3.0)
    widened = reject_far_from_affine(values, valid, tol=3.0, rel=3.0)
    assert not widened.ravel()[bad].any() and not fixed.ravel()[bad].any()
    assert widened.sum() == 890 and fixed.sum() < 200, (widened.sum(), fixed.sum())  # measured 890 / 98


def _masked_ncc_brute_force(template: torch.Tensor, search: torch.Tensor, mask_t: torch.Tensor,
                            mask_s: torch.Tensor) -> torch.Tensor:
    """Reference: zero-mean NCC over the pixels valid in both, one placement at a time."""
    n, c, t, _ = template.shape
    v = search.shape[-1] - t + 1
    out = torch.zeros(n, v, v, dtype=torch.float64)
    for k in range(n):
        for i in range(v):
            for j in range(v):
                both = (mask_t[k, 0] * mask_s[k, 0, i:i + t, j:j + t]).bool()
                a = template[k][:, both].double().ravel()
                b = search[k, :, i:i + t, j:j + t][:, both].double().ravel()
                a, b = a - a.mean(), b - b.mean()
                out[k, i, j] = (a * b).sum() / ((a * a).sum() * (b * b).sum()).sqrt()
    return out


def test_masked_ncc_matches_brute_force_with_full_and_cut_templates():
    """Both paths of masked_ncc_map (full templates: box sums; cut templates: FFT of the mask)
    agree with a placement-by-placement computation, with a masked search window."""
    from sarfusion.registration.matching import masked_ncc_map
    g = torch.Generator().manual_seed(1)
    search = torch.rand(2, 4, 20, 20, generator=g)
    template = torch.rand(2, 4, 12, 12, generator=g)
    mask_s = (torch.rand(2, 1, 20, 20, generator=g) > 0.3).float()  # speckle-like holes
    full_t = torch.ones(2, 1, 12, 12)
    cut_t = full_t.clone()
    cut_t[..., :3, :] = 0
    for mask_t in (full_t, cut_t):
        fast = masked_ncc_map(template * mask_t, search * mask_s, mask_t, mask_s, min_overlap=0.0)
        ref = _masked_ncc_brute_force(template * mask_t, search * mask_s, mask_t, mask_s)
        assert (fast.double() - ref).abs().max() < 1e-4


def test_masked_ncc_ignores_padding_and_equals_plain_ncc_when_all_valid():
    """A template cut by its footprint border (half padding) inside a search window whose own
    footprint border lies elsewhere: masked NCC finds the true placement with NCC 1; plain NCC
    locks onto the padding layout instead. With all-valid masks both are the same map."""
    from sarfusion.registration.matching import masked_ncc_map
    g = torch.Generator().manual_seed(0)
    search = torch.rand(3, 8, 40, 40, generator=g)
    template = torch.rand(3, 8, 16, 16, generator=g)
    ones_t, ones_s = torch.ones(3, 1, 16, 16), torch.ones(3, 1, 40, 40)
    assert (masked_ncc_map(template, search, ones_t, ones_s) - ncc_map(template, search)).abs().max() < 1e-4
    mask_t = ones_t.clone()
    mask_t[..., 10:] = 0  # template footprint ends 10 px in
    mask_s = ones_s.clone()
    mask_s[..., 20:, :] = 0  # search footprint ends 20 px down
    search = search * mask_s
    template = search[:, :, 5:21, 7:23] * mask_t  # true placement: top-left (5, 7)
    masked = masked_ncc_map(template, search, mask_t, mask_s).reshape(3, -1)
    plain = ncc_map(template, search).reshape(3, -1)
    best = masked.argmax(dim=1)
    assert (best // 25 == 5).all() and (best % 25 == 7).all()
    assert (masked.max(dim=1).values > 0.999).all()
    assert (plain.argmax(dim=1) != best).all()


def test_candidate_peaks_and_rescue_pick_the_secondary_peak_that_fits_the_neighbours():
    from sarfusion.registration.field import rescue_with_candidates
    from sarfusion.registration.matching import candidate_peaks
    maps = torch.full((2, 21, 21), -0.1)
    maps[0, 5, 5], maps[0, 15, 12], maps[0, 15, 13], maps[0, 2, 18] = 0.9, 0.8, 0.7, 0.5
    maps[1, 10, 10] = 0.6
    shifts, scores = candidate_peaks(maps, k=3)
    np.testing.assert_allclose(shifts[0, :, 0], [-5, 5, -8], atol=1e-5)
    np.testing.assert_allclose(shifts[0, 1, 1], 2.4, atol=1e-5)  # parabola through 0.7 / 0.8 / -0.1
    np.testing.assert_allclose(scores[0], [0.9, 0.8, 0.5], atol=1e-6)
    assert scores[1, 0] == pytest.approx(0.6) and np.isinf(scores[1, 1:]).all()  # flat rest / map border
    # A 5x5 lattice with a uniform (2, 3) field; the centre node's best peak is a repeat at
    # (12, 3), its second candidate the true (2.2, 3.1).
    values = np.stack([np.full((5, 5), 2.0), np.full((5, 5), 3.0)]).astype(np.float32)
    valid = np.ones((5, 5), bool)
    valid[2, 2] = False
    values[:, 2, 2] = (12.0, 3.0)
    cands = np.full((2, 3, 5, 5), np.nan, np.float32)
    cands[:, 0, 2, 2], cands[:, 1, 2, 2] = (12.0, 3.0), (2.2, 3.1)
    cand_scores = np.full((3, 5, 5), np.nan, np.float32)
    cand_scores[:2, 2, 2] = (0.7, 0.6)
    new, ok, picked = rescue_with_candidates(values, valid, cands, cand_scores, tol=1.0)
    assert ok.all() and picked[2, 2] == pytest.approx(0.6)
    np.testing.assert_allclose(new[:, 2, 2], [2.2, 3.1])
    _, ok, _ = rescue_with_candidates(values, valid, cands, cand_scores, tol=0.1)
    assert not ok[2, 2]  # no candidate within the tolerance: the node stays a gap


def test_layover_shadow_mask_covers_bright_and_dark_blocks_not_speckle():
    """The SAR mask of the fine levels: 12x12 px bright blocks (building returns, layover) and
    dark ones (radar shadow) in speckled ground are masked; the speckle itself (single bright or
    dark pixels) mostly is not."""
    from sarfusion.registration.dense import DenseConfig, _layover_shadow_mask
    rng = np.random.default_rng(0)
    sar = rng.exponential(1.0, (200, 200)).astype(np.float32)  # single-look speckle on flat ground
    bright = np.zeros((200, 200), bool)
    dark = np.zeros((200, 200), bool)
    for r, c in [(20, 30), (90, 120), (150, 40), (60, 170)]:
        bright[r:r + 12, c:c + 12] = True
    for r, c in [(20, 90), (150, 150), (100, 20)]:
        dark[r:r + 12, c:c + 12] = True
    sar[bright] *= 8.0
    sar[dark] *= 0.05
    cfg = DenseConfig()
    mask = _layover_shadow_mask(sar, np.ones_like(bright), cfg)
    far = ~cv2.dilate((bright | dark).astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert mask[bright].mean() > 0.95, mask[bright].mean()
    assert mask[dark].mean() > 0.95, mask[dark].mean()
    # 20% + 10% of the smoothed ground lie past the two percentiles, grown by the 1 px dilation:
    # measured 0.52; unsmoothed, isolated speckle pixels dilated 3x3 would cover most of the ground.
    assert mask[far].mean() < 0.6, mask[far].mean()
    # Without the dark percentile only the bright blocks are masked.
    from dataclasses import replace
    no_dark = _layover_shadow_mask(sar, np.ones_like(bright), replace(cfg, sar_dark_quantile=0.0))
    assert no_dark[dark].mean() < 0.05 and no_dark[bright].mean() > 0.95


def test_dense_does_no_harm_on_an_unrelated_pair_and_reports_its_confidence(tmp_path):
    """Do no harm: an optical scene against the SAR of ANOTHER scene has nothing to match, so the
    field must stay near zero offsets and say so (confidence near 0), while the true pair, same
    sizes and sensors, is matched with high confidence. Non-georeferenced 512 px images take the
    medium-resolution recipe (global translation + lattice + the evidence gate)."""
    from sarfusion.io.raster import write_raster
    from sarfusion.registration.testpair import sar_like, urban_optical
    opt = urban_optical(512, 3).astype(np.float32) + 1
    other = urban_optical(512, 4).astype(np.float32) + 1
    write_raster(tmp_path / "o.tif", opt)
    write_raster(tmp_path / "same.tif", (sar_like(opt.mean(0), 4) + 1)[None])
    write_raster(tmp_path / "other.tif", (sar_like(other.mean(0), 4) + 1)[None])
    same = register_scene(tmp_path / "o.tif", tmp_path / "same.tif", tmp_path / "d_same.tif",
                          confidence_path=tmp_path / "c_same.tif", preview_dir=tmp_path / "pv")
    unrelated = register_scene(tmp_path / "o.tif", tmp_path / "other.tif", tmp_path / "d_other.tif",
                               confidence_path=tmp_path / "c_other.tif")
    off = read_raster(unrelated["offsets"])
    assert np.hypot(*off).mean() < 1.0, np.hypot(*off).mean()
    assert unrelated["confidence"] < 0.2 and same["confidence"] > 0.8, (unrelated["confidence"], same["confidence"])
    assert same["kept"] > unrelated["kept"], (same["kept"], unrelated["kept"])
    conf_map = read_raster(same["confidence_map"])
    info = raster_info(same["confidence_map"])
    assert (info.count, info.dtype, info.width, info.height) == (1, np.dtype("float32"), 512, 512)
    assert conf_map.min() >= 0 and conf_map.max() <= 1 and conf_map.mean() > 0.8
    assert read_raster(unrelated["confidence_map"]).mean() < 0.2
    assert read_raster(same["offsets"]).shape == (2, 512, 512)  # the offset map itself stays 2 bands
    png = cv2.imread(str(tmp_path / "pv" / "o_confidence.png"))
    assert png is not None and png.shape[1] > 3 * 256  # optical | confidence | tinted

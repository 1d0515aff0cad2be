"""HSV fusion: SPAN, histogram matching, Lee filter, value swap, on known arrays and the real Capella pair."""
import cv2
import numpy as np
import pytest

from sarfusion import fusion as F
from sarfusion.datasets.sn6 import read_rgb, read_sar


def test_textbook_span_is_linear_power_sum_in_db():
    rng = np.random.default_rng(0)
    sar = rng.uniform(10, 90, (4, 20, 30)).astype(np.float32)
    expect = 10 * np.log10((10.0 ** (sar.astype(np.float64) / 10)).sum(axis=0))
    np.testing.assert_allclose(F.span(sar), expect, atol=1e-3)
    # four equal bands: +6.02 dB; one dominant band: ~that band
    eq = np.full((4, 1, 1), 20.0, np.float32)
    assert F.span(eq)[0, 0] == pytest.approx(20 + 10 * np.log10(4), abs=1e-4)
    dom = np.array([60.0, 10.0, 10.0, 10.0], np.float32)[:, None, None]
    assert F.span(dom)[0, 0] == pytest.approx(60.0, abs=1e-3)
    # an offset of the dB scale shifts the SPAN by the same offset (no overflow at ~90 dB)
    np.testing.assert_allclose(F.span(sar + 7.5), F.span(sar) + 7.5, atol=1e-3)


def test_notebook_span_formula_and_nodata():
    sar = np.array([3.0, -2.0, 5.0, 4.0], np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    sar[:, 0, 0] = 0.0  # SN6 nodata
    sar[:, 1, 2] = np.nan  # calibrated-product nodata
    for mode in ("textbook", "notebook"):
        s = F.span(sar, mode)
        assert s.dtype == np.float32 and np.isnan(s[0, 0]) and np.isnan(s[1, 2])
        assert np.isfinite(s).sum() == 4
    assert F.span(sar, "notebook")[0, 1] == pytest.approx(9 + 2 * 2 + 16)
    with pytest.raises(ValueError, match="mode"):
        F.span(sar, "nope")
    with pytest.raises(ValueError, match=r"\(4, H, W\)"):
        F.span(sar[:3])


def test_histogram_match_recovers_monotone_relation():
    rng = np.random.default_rng(1)
    ref = rng.integers(1, 256, (64, 64)).astype(np.float32)
    src = np.exp(ref / 40.0) - 3.0  # monotone increasing transform of the reference
    mask = np.ones(ref.shape, bool)
    mask[:10] = False
    src[:10] = 1e9  # outside the mask: must not influence the mapping
    out = F.histogram_match(src, ref, mask)
    np.testing.assert_allclose(out[mask], ref[mask], atol=1e-4)
    assert np.isnan(out[~mask]).all()
    # distribution matched for an unrelated source too, and order preserved
    src2 = rng.normal(0, 1, ref.shape).astype(np.float32)
    out2 = F.histogram_match(src2, ref, mask)
    np.testing.assert_allclose(np.percentile(out2[mask], [10, 50, 90]), np.percentile(ref[mask], [10, 50, 90]), atol=2)
    order = np.argsort(src2[mask])
    assert (np.diff(out2[mask][order]) >= -1e-4).all()


def test_lee_filter_smooths_speckle_keeps_constants_and_nodata():
    rng = np.random.default_rng(2)
    const = np.full((32, 32), 50.0, np.float32)
    np.testing.assert_allclose(F.lee_filter(const), const, atol=1e-4)
    truth = np.where(np.arange(64)[None, :] < 32, 60.0, 180.0) * np.ones((64, 1))
    noisy = (truth * rng.gamma(4.0, 0.25, truth.shape)).astype(np.float32)  # multiplicative speckle
    noisy[5, 5] = np.nan
    out = F.lee_filter(noisy, 3)
    assert np.isnan(out[5, 5]) and np.isfinite(np.delete(out.ravel(), 5 * 64 + 5)).all()
    flat = (slice(10, 60), slice(2, 28))
    assert np.nanstd(out[flat]) < 0.75 * np.nanstd(noisy[flat])
    assert abs(np.nanmean(out[flat]) - np.nanmean(noisy[flat])) < 2.0
    with pytest.raises(ValueError, match="odd"):
        F.lee_filter(noisy, 4)


def test_hsv_fuse_sets_value_keeps_hue():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (3, 40, 40), dtype=np.uint8)
    value = rng.integers(60, 256, (40, 40), dtype=np.uint8)
    fused = F.hsv_fuse(rgb, value)
    assert fused.shape == rgb.shape and fused.dtype == np.uint8
    np.testing.assert_array_equal(fused.max(axis=0), value)  # V = max(R, G, B)
    hsv_in = cv2.cvtColor(np.moveaxis(rgb, 0, -1).copy(), cv2.COLOR_RGB2HSV).astype(int)
    hsv_out = cv2.cvtColor(np.moveaxis(fused, 0, -1).copy(), cv2.COLOR_RGB2HSV).astype(int)
    sat = (hsv_in[..., 1] > 100) & (hsv_in[..., 2] > 100)
    dh = np.abs(hsv_in[..., 0] - hsv_out[..., 0]) % 180
    assert np.median(np.minimum(dh, 180 - dh)[sat]) <= 1


def test_fuse_tile_on_real_capella_pair(real_samples):
    cap = real_samples / "capella_rotterdam"
    sar, rgb = read_sar(cap / "sar_masked.tif"), read_rgb(cap / "rgb_unmasked.tif")
    fused, span_u8, valid = F.fuse_tile(sar, rgb)
    assert fused.shape == (3, 200, 200) and span_u8.shape == (200, 200)
    sar_valid = np.isfinite(sar).all(0) & (sar != 0).any(0)
    np.testing.assert_array_equal(valid, sar_valid & rgb.any(0))
    assert 0.55 < valid.mean() < 0.65  # the sample is ~61% valid
    assert (fused[:, ~valid] == 0).all() and (span_u8[~valid] == 0).all()
    assert fused.any(axis=0)[valid].all() and (span_u8[valid] >= 1).all()
    # V of the fused tile is the SPAN; the SPAN follows the green band's distribution (Lee smooths it a bit)
    np.testing.assert_array_equal(fused.max(axis=0), span_u8)
    g = rgb[1][valid].astype(float)
    assert abs(np.median(span_u8[valid]) - np.median(g)) < 8
    assert abs(np.percentile(span_u8[valid], 90) - np.percentile(g, 90)) < 15
    # SAR brightness and optical brightness are positively related over real Rotterdam
    assert np.corrcoef(span_u8[valid].astype(float), g)[0, 1] > 0.2
    # both SPAN definitions give valid fusions
    fused_nb, _, valid_nb = F.fuse_tile(sar, rgb, mode="notebook")
    np.testing.assert_array_equal(valid_nb, valid)


def test_span_to_uint8_fixed_scaling():
    db = np.array([[10.0, 50.0, 90.0, 120.0, np.nan]], np.float32)
    valid = np.isfinite(db)
    u8 = F.span_to_uint8(db, valid)  # SN6 offset dB: 10..90 -> 1..255
    np.testing.assert_array_equal(u8, [[1, 128, 255, 255, 0]])
    cal = np.array([[-25.0, -5.0, 15.0]], np.float32)  # calibrated dB (median < 0)
    np.testing.assert_array_equal(F.span_to_uint8(cal, np.ones(cal.shape, bool)), [[1, 128, 255]])
    # fixed: the same dB gives the same level whatever else is in the tile
    other = np.array([[50.0, 85.0, 86.0]], np.float32)
    assert F.span_to_uint8(other, np.ones(other.shape, bool))[0, 0] == u8[0, 1]

"""Synthetic SpaceNet 9 generator: formats, truth consistent with the scorer, realistic misalignment,
SAR actually warped by the offsets, determinism."""
from __future__ import annotations

import hashlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import pandas as pd
import pytest

from sarfusion.io.raster import raster_info, read_raster
from sarfusion.synth.sn9 import OPTICAL_M, SAR_M, TIEPOINT_COLUMNS, generate_sn9, ground_offsets

SIZE = 1024


def _reference(scene: dict) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """SPEC section 4 reference offsets, written out independently of the bundled scorer."""
    go = raster_info(scene["optical"]).geotransform
    gs = raster_info(scene["sar"]).geotransform
    t = pd.read_csv(scene["tiepoints"]).drop_duplicates(["optical_row", "optical_col"])
    x_sar, y_sar = gs[0] + t.sar_col * gs[1], gs[3] + t.sar_row * gs[5]
    x_opt, y_opt = go[0] + t.optical_col * go[1], go[3] + t.optical_row * go[5]
    return t, np.rint((x_sar - x_opt) / go[1]).to_numpy(), np.rint((y_sar - y_opt) / go[5]).to_numpy()


def _mean_error(t: pd.DataFrame, dx_ref, dy_ref, offsets: np.ndarray) -> float:
    r, c = t.optical_row.to_numpy(), t.optical_col.to_numpy()
    return float(np.mean(np.hypot(offsets[0][r, c] - dx_ref, offsets[1][r, c] - dy_ref)))


def _affine_residual(t: pd.DataFrame, dx_ref, dy_ref) -> float:
    a = np.column_stack([t.optical_col, t.optical_row, np.ones(len(t))]).astype(np.float64)
    cx = np.linalg.lstsq(a, dx_ref, rcond=None)[0]
    cy = np.linalg.lstsq(a, dy_ref, rcond=None)[0]
    return float(np.mean(np.hypot(a @ cx - dx_ref, a @ cy - dy_ref)))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return generate_sn9(tmp_path_factory.mktemp("sn9"), size=SIZE, seed=5, scenes=2)


def test_files_formats_and_georeferencing(scenes):
    assert [s["aoi"] for s in scenes] == ["synth_aoi_0", "synth_aoi_1"]
    for s in scenes:
        for key, suffix in (("optical", "optical"), ("sar", "sar"), ("offsets", "offsets")):
            assert s[key].name == f"{s['aoi']}_{suffix}_train.tif"
        assert s["tiepoints"].name == f"{s['aoi']}_tiepoints_train.csv"
        opt, sar, off = (raster_info(s[k]) for k in ("optical", "sar", "offsets"))
        assert opt.shape == (3, SIZE, SIZE) and opt.dtype == np.uint8
        assert sar.count == 1 and sar.dtype == np.uint8 and sar.nodata[0] == 0
        assert off.shape == (2, SIZE, SIZE) and off.dtype == np.float32
        assert off.geotransform == opt.geotransform and off.epsg == opt.epsg == sar.epsg
        assert opt.pixel_size == (OPTICAL_M, -OPTICAL_M) and sar.pixel_size == (SAR_M, -SAR_M)
        assert opt.geotransform[0] != sar.geotransform[0] and (sar.width, sar.height) != (opt.width, opt.height)
        assert np.isfinite(read_raster(s["offsets"])).all()
        assert (read_raster(s["sar"]) > 0).mean() > 0.95
        with open(s["tiepoints"]) as f:
            assert f.readline().strip() == ",".join(TIEPOINT_COLUMNS)
        t = pd.read_csv(s["tiepoints"])
        assert all(t[c].dtype.kind == "i" for c in TIEPOINT_COLUMNS)
        assert len(t) >= 50 and not t.duplicated(["optical_row", "optical_col"]).any()
        assert t.sar_row.between(0, sar.height - 1).all() and t.sar_col.between(0, sar.width - 1).all()


def test_truth_scores_zero_and_misalignment_is_realistic(scenes):
    for s in scenes:
        t, dx, dy = _reference(s)
        offsets = read_raster(s["offsets"])
        true = _mean_error(t, dx, dy, offsets)
        zero = _mean_error(t, dx, dy, np.zeros_like(offsets))
        affine = _affine_residual(t, dx, dy)
        print(f"{s['aoi']}: {len(t)} tie points, true {true:.2f} px, zero {zero:.1f} px, affine {affine:.1f} px")
        assert true == 0.0
        assert 60 <= zero <= 110
        assert 15 <= affine <= 50
        try:
            from sarfusion.metrics.tiepoints import score_tiepoints
        except ImportError:
            continue
        assert score_tiepoints(s["optical"], s["sar"], s["tiepoints"], s["offsets"])["mean_px"] == 0.0


def test_sar_pixels_are_warped_by_the_offsets(scenes):
    """Resampling the SAR onto the optical grid through the true offsets lines its structure up with
    the optical image far better than assuming zero offsets (or only the mean shift).

    Similarity: NCC of the oriented-gradient features both sensors share (edge orientation, each
    pixel normalised), not of edge magnitudes: real SAR's edges are not as strong where the
    optical's are (point targets, facades in layover), and the sensors share no noise."""
    from sarfusion.registration.features import oriented_gradients
    from sarfusion.synth.realism import ncc

    for s in scenes:
        opt = read_raster(s["optical"]).astype(np.float32).mean(axis=0)
        sar = read_raster(s["sar"])[0].astype(np.float32)
        off = read_raster(s["offsets"])
        go, gs = raster_info(s["optical"]).geotransform, raster_info(s["sar"]).geotransform
        rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

        def warped(dx, dy):
            x = go[0] + (cols + 0.5 + dx) * go[1]
            y = go[3] + (rows + 0.5 + dy) * go[5]
            mx = ((x - gs[0]) / gs[1] - 0.5).astype(np.float32)
            my = ((y - gs[3]) / gs[5] - 0.5).astype(np.float32)
            return cv2.remap(sar, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

        ref = oriented_gradients(opt)

        def corr(b):
            return ncc(ref, oriented_gradients(b))

        c_true = corr(warped(off[0], off[1]))
        c_zero = corr(warped(0 * off[0], 0 * off[1]))
        c_mean = corr(warped(np.full_like(off[0], np.median(off[0])), np.full_like(off[1], np.median(off[1]))))
        print(f"{s['aoi']}: optical/SAR feature NCC true {c_true:.2f}, mean shift {c_mean:.2f}, zero {c_zero:.2f}")
        assert c_true > c_mean + 0.08 and c_true > c_zero + 0.15


def test_ground_offsets_are_the_truth_without_layover(scenes):
    """The reconstructed ground field equals the written true map wherever nothing is elevated
    (most pixels: roads, lawns) and differs by the layover on roofs / trees."""
    for index, scene in enumerate(scenes):
        truth = read_raster(scene["offsets"])
        rows, cols = np.mgrid[0:SIZE:4, 0:SIZE:4] + 0.5
        dx, dy, look = ground_offsets(5, SIZE, rows, cols, index=index)
        assert look == scene["look"]
        diff = np.hypot(truth[0][::4, ::4] - dx, truth[1][::4, ::4] - dy)
        ground = diff < 0.05
        print(f"{scene['aoi']}: {ground.mean():.2f} of pixels on the ground field, layover elsewhere "
              f"median {np.median(diff[~ground]):.1f} px")
        assert 0.4 < ground.mean() < 0.98
        assert np.median(diff[~ground]) > 3  # metres of building / tree height, not rounding


def test_ground_field_file_is_the_ground_field_on_its_lattice(scenes):
    """``<aoi>_groundfield_<split>.tif``: the ground field (no layover) at the centres of 16 px
    optical blocks, georeferenced so that its cells line up with those blocks."""
    from sarfusion.synth.sn9 import GROUND_FIELD_STEP
    for index, scene in enumerate(scenes):
        info, opt = raster_info(scene["groundfield"]), raster_info(scene["optical"])
        step = GROUND_FIELD_STEP
        assert info.count == 2 and (info.width, info.height) == (-(-SIZE // step),) * 2
        assert info.geotransform[0] == opt.geotransform[0] and info.geotransform[3] == opt.geotransform[3]
        assert info.geotransform[1] == pytest.approx(opt.geotransform[1] * step)
        field = read_raster(scene["groundfield"])
        rows, cols = np.mgrid[0:info.height, 0:info.width] * step + step / 2
        dx, dy, _ = ground_offsets(5, SIZE, rows, cols, index=index)
        np.testing.assert_allclose(field[0], dx, atol=1e-3)
        np.testing.assert_allclose(field[1], dy, atol=1e-3)


def test_difficulty_scales_the_misalignment(tmp_path):
    s = generate_sn9(tmp_path, size=768, seed=2, difficulty=0.0)[0]
    t, dx, dy = _reference(s)
    zero = _mean_error(t, dx, dy, np.zeros((2, 768, 768), np.float32))
    assert zero < 15  # only layover of roof corners and pixel rounding remain


def test_same_seed_same_bytes(tmp_path):
    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}
    generate_sn9(tmp_path / "a", size=512, seed=9)
    generate_sn9(tmp_path / "b", size=512, seed=9)
    assert len(digest(tmp_path / "a")) == 5 and digest(tmp_path / "a") == digest(tmp_path / "b")


def test_terrain_slopes_facing_the_sensor_are_brighter():
    """Foreshortening: on a ridge of bare grass, the flank that faces the radar gathers more ground
    per range pixel (sin(theta) / sin(theta - slope)), the flank facing away less, whichever side
    the radar looks from. A 17 deg slope at 35 deg incidence: x1.83 and x0.73 in sigma0, i.e. +2.2
    and -1.1 dB on grass at ~-12 dB once the -18.5 dB noise floor is added; compared with the same
    ground rendered flat (the textures are the same)."""
    from sarfusion.synth import city as C
    from sarfusion.synth import sar as S

    n = 120
    plan = C.plan_city(200, 200, np.random.default_rng(0))
    plan.objects = plan.objects[:0]
    rows = np.arange(n, dtype=np.float32)[:, None]
    ridge = np.broadcast_to(np.where(rows < 60, rows, 120 - rows) * np.float32(0.3), (n, n)).copy()
    zeros = np.zeros((n, n), np.float32)

    def hh_db(terrain, look):
        raster = C.CityRaster(1.0, 0.0, 0.0, np.full((n, n), C.GRASS, np.uint8), zeros,
                              np.zeros((n, n), np.int32), zeros, 0, 0.0, terrain)
        return 10 * np.log10(S.simulate_reflectivity(raster, plan, look=look, incidence_deg=35.0)[0])

    north_flank, south_flank = (slice(10, 50), slice(40, 80)), (slice(70, 110), slice(40, 80))
    for look, facing, away in (("N", north_flank, south_flank), ("S", south_flank, north_flank)):
        change = hh_db(ridge, look) - hh_db(None, look)
        assert change[facing].mean() > 1.5 and change[away].mean() < -0.7, look

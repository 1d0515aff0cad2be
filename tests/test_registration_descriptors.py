"""Learned dense descriptors: label fields, training that improves ground matching on held-out
scenes, and the dense mode using them end to end."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from sarfusion.cli import main
from sarfusion.engine import EngineConfig
from sarfusion.errors import InputError
from sarfusion.io.raster import raster_info, read_raster
from sarfusion.metrics.tiepoints import read_tiepoints, reference_offsets
from sarfusion.registration.align import scene_grid
from sarfusion.registration.descriptors import (DescriptorConfig, DescriptorCrops, DescriptorModels,
                                                label_field, level_residual, smoothed_field, train_descriptors,
                                                triple_scenes)
from sarfusion.synth.sn9 import generate_sn9, ground_offsets

SIZE = 1536  # the smallest SN9 scene the dense mode treats as a scene, not a small patch
CFG = DescriptorConfig(engine=EngineConfig(max_steps=150, batch_size=16, checkpoint_every=75, log_every=25),
                       levels=((2, 32, 6),), hidden=12, lr=3e-3, crops_per_scene=256)


@pytest.fixture(scope="module")
def sn9(tmp_path_factory):
    root = tmp_path_factory.mktemp("sn9_descriptors")
    train = generate_sn9(root / "train", size=SIZE, seed=31, scenes=2, split="train")
    test = generate_sn9(root / "test", size=SIZE, seed=32, scenes=1, split="test")
    return root, train, test


def _ground_error(scene: dict, field, seed: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """|field - true ground field| (optical px) at optical pixel centres (rows, cols)."""
    grid = scene_grid(scene["optical"], scene["sar"])
    gdx, gdy, _ = ground_offsets(seed, SIZE, rows, cols)
    off = field.sample(*grid.optical_to_grid(rows, cols))
    sx, sy = grid.optical_scale
    return np.hypot(off[1] * sx - gdx, off[0] * sy - gdy)


def test_label_field_is_the_ground_field_or_a_smooth_fit_through_the_tiepoints(sn9, tmp_path):
    _, train, _ = sn9
    scene = train[0]
    grid = scene_grid(scene["optical"], scene["sar"])
    rows, cols = (np.mgrid[64:SIZE - 64:32, 64:SIZE - 64:32] + 0.5).reshape(2, -1)
    exact = label_field(grid, scene["optical"], scene["tiepoints"])
    err = _ground_error(scene, exact, 31, rows, cols)
    assert err.mean() < 0.3 and err.max() < 1.0  # bilinear between 4.8 m lattice nodes
    # Without the ground-field file (real SN9 data): a spline through the tie points. It keeps their
    # offsets and beats the best affine through them, but sparse tie points cannot follow a local
    # field with ~45 m correlation: ~20 px off between them (so crops are then centred on them).
    copy = {k: tmp_path / scene[k].name for k in ("optical", "sar", "tiepoints")}
    for k, dst in copy.items():
        shutil.copy(scene[k], dst)
    fitted = label_field(grid, copy["optical"], copy["tiepoints"], spacing_m=2.0)
    pts = read_tiepoints(scene["tiepoints"])
    t_rows, t_cols = pts["optical_row"].to_numpy() + 0.5, pts["optical_col"].to_numpy() + 0.5
    dx, dy = reference_offsets(pts, raster_info(scene["optical"]), raster_info(scene["sar"]))
    off = fitted.sample(*grid.optical_to_grid(t_rows, t_cols))
    sx, sy = grid.optical_scale
    at_ties = np.hypot(off[1] * sx - dx, off[0] * sy - dy)
    a = np.column_stack([t_cols, t_rows, np.ones(len(pts))])
    b = np.column_stack([cols, rows, np.ones(len(rows))])
    gdx, gdy, _ = ground_offsets(31, SIZE, rows, cols)
    affine = np.hypot(b @ np.linalg.lstsq(a, dx, rcond=None)[0] - gdx, b @ np.linalg.lstsq(a, dy, rcond=None)[0] - gdy)
    between = _ground_error(scene, fitted, 31, rows, cols)
    print(f"tie-point label field: {np.median(at_ties):.2f} px off its tie points (median); vs the ground "
          f"field between them median {np.median(between):.2f} px, the best affine {np.median(affine):.2f} px")
    assert np.median(at_ties) < 2.0
    assert np.median(between) < 0.75 * np.median(affine)


def test_smoothed_prior_residual_points_at_the_ground_match(sn9):
    """After resampling the SAR through a smoothed label field B, the ground match of level pixel p
    sits at q = p + residual(p): there q + B(q) / f must equal p + T(p) / f (T the label field)."""
    _, train, _ = sn9
    scene = train[0]
    grid = scene_grid(scene["optical"], scene["sar"])
    labels = label_field(grid, scene["optical"], scene["tiepoints"])
    f, box = 4, (40, 40, 300, 300)  # row0, col0, height, width in level px
    smooth = smoothed_field(labels, 24.0 * f)
    residual = level_residual(labels, smooth, f, *box)
    rows, cols = np.mgrid[0:box[2]:7, 0:box[3]:7]
    e = residual[:, rows, cols].astype(np.float64)
    p = np.stack([rows + box[0] + 0.5, cols + box[1] + 0.5])  # level px, pixel centres
    q = p + e
    lhs = q + smooth.sample(q[0] * f, q[1] * f) / f
    rhs = p + labels.sample(p[0] * f, p[1] * f) / f
    miss = np.hypot(*(lhs - rhs)).mean()
    print(f"smoothed prior (sigma 96 grid px): residual {np.hypot(*e).mean():.2f} level px, "
          f"fixed-point miss {miss:.3f} level px")
    assert np.hypot(*e).mean() > 1.0  # a real strain to learn, not a no-op
    assert miss < 0.1 * np.hypot(*e).mean()


def _heldout_matching(models: DescriptorModels, test_dir, cfg: DescriptorConfig) -> tuple[float, float]:
    """(cross entropy, fraction of peaks within 1 px of the truth) of template matching on 256
    held-out crops."""
    from sarfusion.registration.keypoints import find_triples
    crops = DescriptorCrops(triple_scenes(find_triples(test_dir), cfg), cfg, seed=123)
    f = cfg.levels[0][0]
    batch = {k: torch.stack([crops[i][k] for i in range(256)]) for k in (f"opt{f}", f"sar{f}", f"target{f}")}
    with torch.no_grad():
        logits = models(batch, f, cfg.context)
    ce = torch.nn.functional.cross_entropy(logits, batch[f"target{f}"]).item()
    side = 2 * cfg.levels[0][2] + 1
    peak, truth = logits.argmax(1), batch[f"target{f}"]
    near = ((peak // side - truth // side).abs() <= 1) & ((peak % side - truth % side).abs() <= 1)
    return ce, near.float().mean().item()


@pytest.fixture(scope="module")
def trained_descriptors(sn9, tmp_path_factory):
    root, _, _ = sn9
    weights = tmp_path_factory.mktemp("descriptor_weights")
    return train_descriptors(root / "train", weights, config=CFG)


@pytest.mark.xfail(strict=False, reason=(
    "measured on the issue-21 generator (independent sensor textures, a look azimuth and incidence "
    "per scene, noise floor -15.5 dB): trained on 2 scenes for 150 steps, held-out x2 matching gets "
    "worse, CE 5.13 and 0.215 within 1 px against 4.54 / 0.254 for the plain oriented gradients "
    "(with the floor at -18.5: 5.25 / 0.18 against 4.47 / 0.28, training CE 4.57 -> 3.03): the "
    "nets fit the training scenes' geometry, not the ground. On the old generator they "
    "learned the shared-noise shortcut. Learning from real pairs is issue 22"))
def test_descriptors_learn_to_match_the_ground_on_heldout_scenes(sn9, trained_descriptors, capsys):
    root, _, _ = sn9
    state = torch.load(trained_descriptors, weights_only=False)
    trained = DescriptorModels(CFG)
    trained.load_state_dict(state["models"])
    # An untrained model is the plain oriented gradients (zero-initialised correction), the same
    # logit scale: the difference is what the nets learned.
    plain_ce, plain_hit = _heldout_matching(DescriptorModels(CFG), root / "test", CFG)
    ce, hit = _heldout_matching(trained, root / "test", CFG)
    print(f"held-out x2 matching: plain features CE {plain_ce:.3f}, within 1 px {plain_hit:.3f}; "
          f"learned CE {ce:.3f}, within 1 px {hit:.3f}")
    assert ce < plain_ce - 0.2 and hit > plain_hit + 0.05


def test_dense_mode_uses_the_trained_descriptors_from_weights(sn9, trained_descriptors, tmp_path, capsys):
    """The dense mode picks them up from --weights and still writes a valid, scored offset map."""
    _, _, test = sn9
    sc = test[0]
    capsys.readouterr()
    assert main(["register", "--optical", str(sc["optical"]), "--sar", str(sc["sar"]), "--out",
                 str(tmp_path / "d.tif"), "--weights",
                 str(trained_descriptors.parent), "--tiepoints", str(sc["tiepoints"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert raster_info(tmp_path / "d.tif").count == 2
    pts = read_tiepoints(sc["tiepoints"])
    zero = np.hypot(*reference_offsets(pts, raster_info(sc["optical"]), raster_info(sc["sar"]))).mean()
    print(f"dense with learned descriptors: {out['mean_px']:.2f} px (zero offsets {zero:.2f})")
    assert out["mean_px"] < 0.5 * zero
    assert np.isfinite(read_raster(tmp_path / "d.tif")).all()


def test_descriptor_training_rejects_scenes_too_small(tmp_path):
    scenes = generate_sn9(tmp_path / "tiny", size=512, seed=3, split="train")
    # 512 optical px are ~187 px at x2: too few for 96 px templates searched +-24 px
    big = DescriptorConfig(engine=CFG.engine, levels=((2, 96, 24),), hidden=4)
    with pytest.raises(InputError, match="large enough for descriptor training at x2"):
        train_descriptors(tmp_path / "tiny", tmp_path / "w", config=big)
    assert scenes and not (tmp_path / "w" / "descriptors.pt").exists()

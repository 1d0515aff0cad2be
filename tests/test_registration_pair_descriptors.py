"""Descriptors learned from co-registered pairs (``register-train --pairs``): the self-supervised
label (random smooth warps), the CLI, the dense mode picking the medium-grid nets, and, on real
Sentinel-1/2 crops the training never saw, warp recovery against the training-free mode."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from sarfusion.cli import main
from sarfusion.engine import EngineConfig
from sarfusion.errors import InputError
from sarfusion.registration import descriptors as desc
from sarfusion.registration.align import scene_grid, warped_sar
from sarfusion.registration.testpair import sar_like, urban_optical

TINY = replace(desc.PAIR_PRESETS["demo"], engine=EngineConfig(max_steps=6, batch_size=4, checkpoint_every=3,
                                                               log_every=3),
               hidden=4, crops_per_scene=16, pair_label="zero", pair_warps=1)


def _pair_folder(root: Path, names: list[str], size: int = 512) -> Path:
    """A pair folder of synthetic 8-bit PNG pairs (``opt/NAME.png`` RGB, ``sar/NAME.png`` grey dB)."""
    for d in ("opt", "sar"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        opt = urban_optical(size, seed=10 + i)
        sar_db = 10 * np.log10(sar_like(opt.mean(0), seed=20 + i) + 1.0)
        sar = np.clip((sar_db - sar_db.min()) / (np.ptp(sar_db) + 1e-6) * 254 + 1, 1, 255).astype(np.uint8)
        cv2.imwrite(str(root / "opt" / f"{name}.png"), np.moveaxis(opt, 0, -1)[..., ::-1])
        cv2.imwrite(str(root / "sar" / f"{name}.png"), sar)
    return root


def test_random_warp_residual_points_at_the_match(tmp_path):
    """The SAR resampled through a random prior, read at p + residual(p), is the SAR at p."""
    root = _pair_folder(tmp_path / "pairs", ["a"])
    cfg = replace(TINY, pair_warps=1, pair_warp_px=4.0)
    (scene,) = desc.pair_scenes(desc.training_pairs(root), cfg, seed=5)
    zero, warp = scene.priors(1)
    assert zero is scene.labels  # pair_label "zero": the unwarped copy is the aligned one
    c0, r0, w, h = scene.grid.optical_box(1)
    plain, _, _ = warped_sar(scene.grid, zero, 1, r0, c0, h, w)
    moved, _, _ = warped_sar(scene.grid, warp, 1, r0, c0, h, w)
    res = desc.level_residual(scene.labels, warp, 1, r0, c0, h, w).astype(np.float32)
    assert 1.0 < np.abs(res).max() <= 4.0 + 1e-3  # a real warp within its bound
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    # compared smoothed: resampling per-pixel speckle twice is no identity at the pixel scale
    plain, moved = (cv2.GaussianBlur(a, (0, 0), 2.0) for a in (plain, moved))
    inner = (slice(16, -16), slice(16, -16))

    def mismatch(sign: float) -> float:
        back = cv2.remap(moved, cols + sign * res[1], rows + sign * res[0], cv2.INTER_LINEAR)
        return float(np.abs(back[inner] - plain[inner]).mean())

    err, wrong_sign = mismatch(1.0), mismatch(-1.0)
    shifted = float(np.abs(moved[inner] - plain[inner]).mean())
    assert err < 0.2 * shifted and err < 0.2 * wrong_sign, (err, shifted, wrong_sign)


def test_register_train_pairs_writes_medium_nets_that_register_uses(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(desc.PAIR_PRESETS, "demo", TINY)
    root = _pair_folder(tmp_path / "pairs", ["a", "b", "c"])
    weights = tmp_path / "w"
    assert main(["register-train", "--pairs", str(root), "--exclude", "c", "--weights", str(weights), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["weights"]) == {"descriptors_medium"}  # no keypoints without scenes with tie points
    assert (weights / "descriptors_medium.pt").is_file() and not (weights / "descriptors.pt").exists()
    assert json.loads((weights / "descriptors_medium_config.json").read_text())["grid"] == "medium"
    # the held-out pair: the dense mode's medium route runs the learned nets on its lattices
    assert main(["register", "--optical", str(root / "opt" / "c.png"), "--sar", str(root / "sar" / "c.png"),
                 "--out", str(tmp_path / "c.tif"), "--weights", str(weights), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    levels = [st for st in stats if "kept" in st]
    assert levels and all(st["learned"] for st in levels)
    # without weights the same pair is training-free
    assert main(["register", "--optical", str(root / "opt" / "c.png"), "--sar", str(root / "sar" / "c.png"),
                 "--out", str(tmp_path / "c0.tif"), "--json"]) == 0
    assert not any(st.get("learned") for st in json.loads(capsys.readouterr().out)["stats"])


def test_register_train_pairs_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(desc.PAIR_PRESETS, "demo", TINY)
    root = _pair_folder(tmp_path / "pairs", ["a"])
    assert main(["register-train", "--weights", str(tmp_path / "w")]) != 0
    assert "needs --data" in capsys.readouterr().err
    assert main(["register-train", "--pairs", str(root), "--exclude", "a", "--weights", str(tmp_path / "w")]) != 0
    assert "no training pairs left" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither a pair folder"):
        desc.training_pairs(tmp_path / "empty")


def test_vhr_nets_do_not_apply_to_medium_grids(tmp_path):
    """Nets trained on SN9-like scenes (``descriptors.pt``) are for VHR grids: a 10 m pair stays
    training-free with them, and takes the medium nets when the folder has those."""
    import torch
    from sarfusion.registration.dense import dense_field
    root = _pair_folder(tmp_path / "pairs", ["a"])
    grid = scene_grid(root / "opt" / "a.png", root / "sar" / "a.png")
    vhr = desc.Descriptors(desc.DescriptorModels(desc.DescriptorConfig(levels=((1, 32, 4),))),
                           desc.DescriptorConfig(levels=((1, 32, 4),)), torch.device("cpu"))
    _, stats = dense_field(grid, descriptors={"vhr": vhr})
    assert not any(st.get("learned") for st in stats)
    medium = desc.Descriptors(desc.DescriptorModels(TINY), TINY, torch.device("cpu"))
    _, stats = dense_field(grid, descriptors={"medium": medium})
    assert all(st["learned"] for st in stats if "kept" in st)


CROP = 512


def _central_crop(pair) -> tuple[np.ndarray, np.ndarray]:
    from sarfusion.datasets.pairs import read_optical, read_sar
    opt, sar = read_optical(pair.optical).pixels, read_sar(pair.sar).pixels[0]
    r0, c0 = (opt.shape[1] - CROP) // 2, (opt.shape[2] - CROP) // 2
    return opt[:, r0:r0 + CROP, c0:c0 + CROP], sar[r0:r0 + CROP, c0:c0 + CROP]


@pytest.fixture(scope="module")
def real_learned_vs_free(tmp_path_factory) -> list[dict]:
    """Medium nets trained (demo recipe, 150 steps) on the 512 px centres of three even-index real
    S1/S2 pairs, then the issue-22 warp recovery (seeds = the pairs' indices, 102 px correlation)
    on the centres of two odd-index pairs, with them and training-free."""
    from sarfusion.datasets.pairs import find_pairs
    from sarfusion.registration.testpair import warp_recovery_errors
    root = Path(__file__).resolve().parents[2] / "shared" / "real_samples" / "s1s2_pairs"
    if not root.is_dir():
        pytest.skip(f"real S1/S2 pairs not found at {root}")
    pairs = find_pairs(root)
    work = tmp_path_factory.mktemp("pair_descriptors")
    folder = work / "train"
    for d in ("opt", "sar"):
        (folder / d).mkdir(parents=True)
    for p in pairs[2::2][:3]:
        opt, sar = _central_crop(p)
        cv2.imwrite(str(folder / "opt" / f"{p.name}.png"), np.moveaxis(opt, 0, -1)[..., ::-1])
        cv2.imwrite(str(folder / "sar" / f"{p.name}.png"), sar)
    cfg = replace(desc.PAIR_PRESETS["demo"], engine=replace(desc.PAIR_PRESETS["demo"].engine, max_steps=150))
    desc.train_pair_descriptors([folder], work / "weights", config=cfg)
    out = []
    for seed in (1, 3):
        opt, sar = (a.astype(np.float32) + 1 for a in _central_crop(pairs[seed]))
        out.append({"name": pairs[seed].name,
                    "free": warp_recovery_errors(work / "eval", opt, sar, seed, corr_px=102.4),
                    "learned": warp_recovery_errors(work / "eval", opt, sar, seed, corr_px=102.4,
                                                    weights=work / "weights")})
    return out


def _print_learned_vs_free(results: list[dict]) -> None:
    for r in results:
        print(f"{r['name']}: training-free {r['free']['recovery']:.2f} px, learned {r['learned']['recovery']:.2f} px, "
              f"zero {r['free']['zero']:.2f}")


def test_pair_descriptors_do_no_harm_on_unseen_real_pairs(real_learned_vs_free):
    """Learned from real pairs, the descriptors register real pairs they never saw far below zero
    offsets, and on average no worse than the training-free mode. Measured on the two held-out
    crops (mean learned / training-free 2.26 px): 150 steps, training seeds 0-3, 2.29 / 2.25 / 1.79 /
    1.74; 600 steps (the demo preset), seeds 0-2, 1.66 / 2.22 / 2.02 (AMD EPYC, 2026-12-04)."""
    _print_learned_vs_free(real_learned_vs_free)
    for r in real_learned_vs_free:
        assert r["learned"]["recovery"] < 0.5 * r["free"]["zero"], r
    free = np.mean([r["free"]["recovery"] for r in real_learned_vs_free])
    learned = np.mean([r["learned"]["recovery"] for r in real_learned_vs_free])
    assert learned < free + 0.25, (learned, free)


@pytest.mark.xfail(strict=False, reason=(
    "at this size the gain is within the training runs' spread: on the two held-out crops (training-free "
    "2.26 px mean) one 150-step run on three crops scores 2.29 / 2.25 / 1.79 / 1.74 px for training seeds "
    "0-3 (600 steps, seeds 0-2: 1.66 / 2.22 / 2.02), so this passes for some seeds and machines and not "
    "others (seed 0: 1.54 / 2.45 px on one machine, 1.70 / 2.87 on another). The gain is measured on 13 "
    "held-out pairs by bench_registration.py --what real26: 1.49-1.50 against 1.63 px on two machines"))
def test_pair_descriptors_beat_training_free_on_unseen_real_pairs(real_learned_vs_free):
    """One training run beats the training-free mode on each held-out crop (within 0.25 px) and by
    0.1 px on their mean. The full protocol (13 pairs trained, 13 held out) is
    ``bench_registration.py --what real26``."""
    _print_learned_vs_free(real_learned_vs_free)
    for r in real_learned_vs_free:
        assert r["learned"]["recovery"] < r["free"]["recovery"] + 0.25, r
    free = np.mean([r["free"]["recovery"] for r in real_learned_vs_free])
    learned = np.mean([r["learned"]["recovery"] for r in real_learned_vs_free])
    assert learned < free - 0.1, (learned, free)


def test_pair_labels_are_cached_for_a_resumed_run(tmp_path, monkeypatch):
    """The dense label of a pair (~25 s at 1024 px) is computed once; a rerun over the same files
    reads it back, and a changed file is labelled anew."""
    import sarfusion.registration.dense as dense

    root = _pair_folder(tmp_path / "pairs", ["a"], size=256)
    (name, opt, sar), = desc.training_pairs(root)
    grid = scene_grid(opt, sar)
    cache = tmp_path / "labels"
    first = desc.dense_pair_label(grid, opt, sar, cache)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_dense(*a, **k):
        raise AssertionError("the cached label was not used")

    monkeypatch.setattr(dense, "dense_field", no_dense)
    again = desc.dense_pair_label(grid, opt, sar, cache)
    np.testing.assert_array_equal(again.values, first.values)
    np.testing.assert_array_equal(again.confidence, first.confidence)
    assert (again.row0, again.col0, again.step) == (first.row0, first.col0, first.step)
    monkeypatch.undo()
    cv2.imwrite(str(sar), cv2.imread(str(sar), cv2.IMREAD_UNCHANGED)[::-1].copy())  # another SAR
    desc.dense_pair_label(scene_grid(opt, sar), opt, sar, cache)
    assert len(list(cache.glob("*.npz"))) == 2


def test_a_pair_with_nothing_to_match_caches_zero_offsets(tmp_path, monkeypatch):
    import sarfusion.registration.dense as dense
    from sarfusion.registration.field import ZeroField

    root = _pair_folder(tmp_path / "pairs", ["a"], size=256)
    (_, opt, sar), = desc.training_pairs(root)
    grid = scene_grid(opt, sar)
    monkeypatch.setattr(dense, "dense_field", lambda *a, **k: (ZeroField(), []))
    assert isinstance(desc.dense_pair_label(grid, opt, sar, tmp_path / "labels"), ZeroField)
    monkeypatch.setattr(dense, "dense_field", lambda *a, **k: 1 / 0)
    assert isinstance(desc.dense_pair_label(grid, opt, sar, tmp_path / "labels"), ZeroField)

"""Building footprints: targets, folds, orientation round trip, bad input, tiny end-to-end run."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage as ndi

from sarfusion.config import choose_preset
from sarfusion.datasets.sn6 import find_tiles
from sarfusion.datasets.sn6_buildings import (AugmentParams, BuildingTileDataset, NormStats, StripContext,
                                              easting_folds, jitter_color, orient, rasterize_instances,
                                              read_building_polygons)
from sarfusion.engine import EngineConfig
from sarfusion.errors import InputError
from sarfusion.io.raster import raster_info, read_raster, write_raster
from sarfusion.models.segmentation import build_segmentation_model, focal_dice_loss, loss_pixel_weights
from sarfusion.tasks import buildings as B


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from sarfusion.synth.sn6 import generate_sn6

    return generate_sn6(tmp_path_factory.mktemp("sn6"), tiles=6, size=160, seed=3)


def _tiny_config(mode: str = "sar4") -> B.BuildingsConfig:
    cfg = choose_preset(B.PRESETS, "demo")
    return dataclasses.replace(
        cfg, input_mode=mode, decoder_channels=(16, 16, 16, 8, 8),
        engine=EngineConfig(max_steps=3, batch_size=2, checkpoint_every=2, log_every=1),
        augment=AugmentParams(crop=64, scale=(0.9, 1.1), rotate_deg=3.0), area_steps=2, area_batch_size=2, area_crop=64)


def test_easting_folds_exclude_the_validation_band_and_its_neighbours():
    x = {f"t{i:02d}": 1000.0 + 100.0 * i for i in range(12)}  # 12 tiles, 100 m apart
    folds = easting_folds(x, 3, gap_m=150.0)
    assert len(folds) == 3
    seen_val = set()
    for train, val in folds:
        assert val and train and not set(train) & set(val)
        lo, hi = min(x[v] for v in val), max(x[v] for v in val)
        assert all(x[t] < lo - 150.0 or x[t] > hi + 150.0 for t in train)
        seen_val |= set(val)
    assert seen_val == set(x)  # every tile validates once
    assert easting_folds(x, 1, 150.0) == [(sorted(x), [])]
    with pytest.raises(InputError, match="fold"):
        easting_folds(x, 3, gap_m=5000.0)


def test_model_factory_channels_and_unknown_encoder():
    for mode, ch in (("sar4", 4), ("span", 1), ("fused", 3)):
        net = build_segmentation_model("efficientnet-b0", mode, decoder_channels=(16, 16, 16, 8, 8)).eval()
        with torch.no_grad():
            assert net(torch.zeros(1, ch, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(InputError, match="efficientnet-b5"):
        build_segmentation_model("efficientnet-b99", "sar4")
    with pytest.raises(InputError, match="sar4"):
        build_segmentation_model("efficientnet-b0", "quadpol")


def test_networks_are_channels_last_when_built_and_when_loaded(tmp_path):
    """The layout bench_buildings_speed.py times (a CPU training step 0.145 vs 0.175 s): built and
    reloaded networks keep channels-last convolution weights, and compute what NCHW ones do."""
    torch.manual_seed(0)
    net = build_segmentation_model("efficientnet-b0", "sar4", decoder_channels=(16, 16, 16, 8, 8)).eval()
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.shape[-1] > 1)
    path = tmp_path / "buildings_fold0.pt"
    torch.save({"encoder": "efficientnet-b0", "input_mode": "sar4", "decoder_channels": (16, 16, 16, 8, 8),
                "state_dict": net.state_dict(), "stats": {"mean": [0.0] * 4, "std": [1.0] * 4}}, path)
    loaded = B._load_model(path, device="cpu").net
    first = next(m.weight for m in loaded.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1)
    assert first.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 64, 64)
    nchw = build_segmentation_model("efficientnet-b0", "sar4", decoder_channels=(16, 16, 16, 8, 8))
    nchw = nchw.to(memory_format=torch.contiguous_format).eval()
    nchw.load_state_dict(net.state_dict())
    assert not next(m.weight for m in nchw.modules() if isinstance(m, torch.nn.Conv2d)).is_contiguous(
        memory_format=torch.channels_last)  # the check above can tell the layouts apart
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), nchw(x), atol=1e-4, rtol=1e-4)


def test_focal_dice_loss_prefers_the_truth():
    target = torch.zeros(2, 3, 32, 32)
    target[:, :, 8:20, 8:20] = 1
    good, _ = focal_dice_loss((target * 2 - 1) * 6, target, (1.0, 0.5, 0.5))
    bad, _ = focal_dice_loss((1 - target * 2) * 6, target, (1.0, 0.5, 0.5))
    assert good < 0.05 < 1.0 < bad


def _focal_px(logit: float, t: float) -> float:
    """Focal loss (gamma 2) of one pixel, written out from its definition."""
    p = 1 / (1 + math.exp(-logit))
    p_t = p if t else 1 - p
    return (1 - p_t) ** 2 * -math.log(p_t)


def test_winner_loss_weights_on_a_hand_made_batch():
    """Building pixels x 0.5, each crop x (0.5 + 0.5 x buildings / 8), on the per-pixel term only;
    expected values computed here pixel by pixel, not by the library."""
    footprint = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]],   # crop 0: 4 buildings
                              [[[0.0, 0.0], [0.0, 0.0]]]])  # crop 1: none
    buildings = torch.tensor([4.0, 0.0])
    weights = loss_pixel_weights(footprint, buildings, 0.5, 0.5, 0.5 / 8)
    # crop 0 weighs 0.5 + 0.5 * 4 / 8 = 0.75 (its building pixels half that), crop 1 weighs 0.5
    expected = torch.tensor([[[[0.375, 0.375], [0.75, 0.75]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    assert torch.equal(weights, expected)
    assert torch.equal(loss_pixel_weights(footprint, buildings), torch.ones_like(footprint))  # neutral

    logit_values = [[2.0, -1.0, 0.5, -3.0], [1.5, -0.5, 0.0, -2.0]]
    logits = torch.zeros(2, 3, 2, 2)
    logits[:, 0] = torch.tensor(logit_values).reshape(2, 2, 2)
    target = torch.zeros(2, 3, 2, 2)
    target[:, :1] = footprint
    valid = torch.ones(2, 1, 2, 2)
    valid[1, 0, 1, 1] = 0  # one nodata pixel: it drops out of sum and count
    w = expected.flatten().tolist()
    t = footprint.flatten().tolist()
    v = valid.flatten().tolist()
    px = [_focal_px(l, ti) for l, ti in zip(sum(logit_values, []), t)]
    want = sum(wi * vi * f for wi, vi, f in zip(w, v, px)) / sum(v)  # divided by the 7 valid pixels
    plain = sum(vi * f for vi, f in zip(v, px)) / sum(v)
    # footprint channel only, focal only: the loss is the weighted focal mean itself
    loss, parts = focal_dice_loss(logits, target, (1.0, 0.0, 0.0), 1.0, 0.0, valid=valid, pixel_weight=weights)
    unweighted, _ = focal_dice_loss(logits, target, (1.0, 0.0, 0.0), 1.0, 0.0, valid=valid)
    assert loss.item() == pytest.approx(want, rel=1e-6) and parts["focal"] == pytest.approx(want, rel=1e-6)
    assert unweighted.item() == pytest.approx(plain, rel=1e-6) and abs(want - plain) > 0.05
    ones, _ = focal_dice_loss(logits, target, (1.0, 0.0, 0.0), 1.0, 0.0, valid=valid,
                              pixel_weight=torch.ones(2, 1, 2, 2))
    assert ones.item() == pytest.approx(plain, rel=1e-6)
    # the dice term is not weighted
    dice_w, _ = focal_dice_loss(logits, target, (1.0, 0.0, 0.0), 0.0, 1.0, valid=valid, pixel_weight=weights)
    dice, _ = focal_dice_loss(logits, target, (1.0, 0.0, 0.0), 0.0, 1.0, valid=valid)
    assert dice_w.item() == dice.item()
    with pytest.raises(ValueError, match="buildings"):
        loss_pixel_weights(footprint, None, 0.5, 0.5, 0.5 / 8)


def test_presets_turn_the_winner_recipe_on_in_full_only():
    demo, cpu, full = (choose_preset(B.PRESETS, p) for p in ("demo", "cpu", "full"))
    for cfg in (demo, cpu):  # neutral: the demo's numbers do not move
        assert (cfg.positive_pixel_weight, cfg.image_weight_base, cfg.image_weight_per_building) == (1.0, 1.0, 0.0)
        assert not cfg.augment.color_on and cfg.lr_milestones == () and not cfg.strip_context
    assert full.strip_context
    assert (full.positive_pixel_weight, full.image_weight_base, full.image_weight_per_building) == (0.5, 0.5, 1 / 16)
    assert full.augment.color_on and full.lr_milestones == (80 / 140, 100 / 140, 120 / 140) and full.lr_gamma == 0.5
    # and the saved config reads back with them
    assert B._config_from_dict(json.loads(json.dumps(dataclasses.asdict(full)))) == full


def test_stepped_lr_halves_at_80_100_120_of_140():
    fn = B._lr_lambda(0, 140, (80 / 140, 100 / 140, 120 / 140), 0.5)
    assert [fn(s) for s in range(140)] == [1.0] * 80 + [0.5] * 20 + [0.25] * 20 + [0.125] * 20
    warm = B._lr_lambda(4, 140, (80 / 140,), 0.5)
    assert [warm(s) for s in (0, 1, 3, 4, 79, 80, 139)] == [0.25, 0.5, 1.0, 1.0, 1.0, 0.5, 0.5]
    with pytest.raises(InputError, match="fractions"):
        B._lr_lambda(0, 140, (80,))


def test_stepped_lr_resumes_from_a_checkpoint(tmp_path):
    """A run stopped at step 9 of 14 and resumed uses, step by step, the lr of an uninterrupted run."""
    from sarfusion.engine import Engine

    class Points(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"x": torch.full((2,), float(i))}

    cfg = dataclasses.replace(choose_preset(B.PRESETS, "demo"), lr=1.0, warmup_steps=2,
                              lr_milestones=(80 / 140, 100 / 140, 120 / 140))
    cfg.engine = EngineConfig(max_steps=14, batch_size=2, checkpoint_every=3, log_every=1)

    def run(run_dir, stop_at):
        net = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
        sched = B.make_scheduler(opt, cfg)  # planned for 14 steps, whatever this process runs
        engine = Engine(run_dir, dataclasses.replace(cfg.engine, max_steps=stop_at), {"net": net}, {"opt": opt},
                        {"opt": sched})
        lrs = {}

        def step(ctx, batch):
            lrs[ctx.step] = opt.param_groups[0]["lr"]
            loss = ctx.models["net"](batch["x"]).pow(2).mean()
            ctx.backward(loss, "opt")
            return {"loss": loss.item()}

        engine.fit(engine.make_loader(Points()), step)
        return lrs

    whole = run(tmp_path / "a", 14)
    assert [whole[s] for s in range(14)] == [0.5] + [1.0] * 7 + [0.5] * 2 + [0.25] * 2 + [0.125] * 2
    first = run(tmp_path / "b", 9)
    second = run(tmp_path / "b", 14)  # resumes the step-9 checkpoint
    assert sorted(first) == list(range(9)) and sorted(second) == list(range(9, 14))
    assert {**first, **second} == whole


def test_dataset_counts_the_buildings_in_each_crop(scene):
    """Without geometric augmentation a 160 px crop is the whole tile: its count is the number of
    polygons that cover a pixel; the targets are those of the dataset without counting."""
    tiles = find_tiles(scene["train_aoi"])
    polygons = read_building_polygons(scene["train_csv"])
    stats = NormStats([0.0] * 4, [1.0] * 4)
    still = AugmentParams(crop=160, scale=(1.0, 1.0), rotate_deg=0.0, affine_p=0.0, hflip_p=0.0)
    counting = BuildingTileDataset(tiles, {}, "sar4", polygons, stats, still, cache=False, count_buildings=True)
    plain = BuildingTileDataset(tiles, {}, "sar4", polygons, stats, still, cache=False)
    counts = []
    for i, tile in enumerate(tiles):
        item, ref = counting[i], plain[i]
        labels = rasterize_instances(polygons.get(tile.image_id, []), (160, 160))
        assert item["buildings"].item() == len(np.unique(labels[labels > 0]))
        assert torch.equal(item["target"], ref["target"]) and torch.equal(item["valid"], ref["valid"])
        assert torch.equal(item["image"], ref["image"]) and "buildings" not in ref
        counts.append(item["buildings"].item())
    assert max(counts) >= 3
    # with augmentation the count follows the crop: at most the tile's, and a batch collates it
    moving = BuildingTileDataset(tiles, {}, "sar4", polygons, stats, AugmentParams(crop=64), cache=False,
                                 count_buildings=True)
    batch = torch.utils.data.default_collate([moving[i] for i in range(len(tiles))])
    assert batch["buildings"].shape == (len(tiles),) and (batch["buildings"] <= torch.tensor(counts)).all()


def test_color_augmentation_changes_inputs_only_and_is_seeded(scene):
    tiles = find_tiles(scene["train_aoi"])
    polygons = read_building_polygons(scene["train_csv"])
    stats = NormStats([0.0] * 4, [1.0] * 4)
    geometry = dict(crop=64, scale=(0.8, 1.25), rotate_deg=10.0, affine_p=1.0)
    color = AugmentParams(**geometry, color_p=1.0, brightness=0.3, contrast=0.3, saturation=0.3)

    def make(params):
        return BuildingTileDataset(tiles[:3], {}, "sar4", polygons, stats, params, cache=False, seed=5)

    jittered, plain, again = make(color), make(AugmentParams(**geometry)), make(color)
    for i in range(3):
        a, b, c = jittered[i], plain[i], again[i]
        assert torch.equal(a["target"], b["target"]) and torch.equal(a["valid"], b["valid"])  # masks untouched
        assert torch.equal(a["image"], c["image"])  # the same seed, the same colours
        valid = b["valid"][0] > 0
        assert not torch.equal(a["image"][:, valid], b["image"][:, valid])
        assert (a["image"][:, ~valid] == 0).all()  # nodata stays nodata
    # the demo preset has it off: with the same geometry, its items are those of the geometry alone
    demo = dataclasses.replace(choose_preset(B.PRESETS, "demo").augment, hflip_p=0.5, min_valid_fraction=0.3,
                               **geometry)
    assert not demo.color_on and torch.equal(make(demo)[0]["image"], plain[0]["image"])

    # saturation acts on 3-band colour in its RGB values: a grey picture stays grey, colour changes
    rgb_stats = NormStats([100.0, 90.0, 80.0], [20.0, 25.0, 30.0])
    valid = np.ones((4, 4), bool)
    sat = AugmentParams(color_p=1.0, saturation=0.5)
    grey = np.full((3, 4, 4), 120.0, np.float32)
    mean, std = (np.array(v, np.float32)[:, None, None] for v in (rgb_stats.mean, rgb_stats.std))
    normalised = (grey - mean) / std
    out = jitter_color(normalised, valid, sat, rgb_stats, np.random.default_rng(0))
    np.testing.assert_allclose(out, normalised, atol=1e-5)
    colourful = normalised.copy()
    colourful[0] += 1.0
    assert not np.allclose(jitter_color(colourful, valid, sat, rgb_stats, np.random.default_rng(0)), colourful)
    four = np.random.default_rng(1).normal(size=(4, 4, 4)).astype(np.float32)  # SAR: no saturation
    np.testing.assert_array_equal(jitter_color(four, valid, sat, NormStats([0.0] * 4, [1.0] * 4),
                                               np.random.default_rng(0)), four)


def test_dataset_rotates_direction1_tiles(scene):
    tiles = find_tiles(scene["train_aoi"])
    polygons = read_building_polygons(scene["train_csv"])
    tile = next(t for t in tiles if polygons.get(t.image_id))
    stats = NormStats([0.0] * 4, [1.0] * 4)
    expected = rasterize_instances(polygons[tile.image_id], (160, 160)) > 0
    for orientation in (0, 1):
        t = dataclasses.replace(tile, orientation=orientation)
        ds = BuildingTileDataset([t], {}, "sar4", polygons, stats, AugmentParams(crop=64), cache=False)
        image, masks = ds.load_tile(0)
        assert image.shape == (4, 160, 160) and masks.shape == (4, 160, 160)
        np.testing.assert_array_equal(masks[0].astype(bool), orient(expected, orientation))
        item = ds[0]
        assert item["image"].shape == (4, 64, 64) and item["target"].shape == (3, 64, 64)
        assert item["valid"].shape == (1, 64, 64)


def test_dataset_crops_follow_seed_epoch_and_index(scene):
    """An item depends only on (seed, epoch, index): not on call order (resume, loader workers)."""
    tiles = find_tiles(scene["train_aoi"])
    polygons = read_building_polygons(scene["train_csv"])
    stats = NormStats([0.0] * 4, [1.0] * 4)
    params = AugmentParams(crop=64, scale=(0.8, 1.25), rotate_deg=10.0, affine_p=1.0)

    def fresh():
        return BuildingTileDataset(tiles[:2], {}, "sar4", polygons, stats, params, cache=False, seed=7)

    a, b = fresh(), fresh()
    first = a[1]["image"]
    b[0], b[1], b[0]  # other draws first
    np.testing.assert_array_equal(b[1]["image"].numpy(), first.numpy())
    a.set_epoch(1)
    assert not torch.equal(a[1]["image"], first)  # a new epoch draws new crops
    a.set_epoch(0)
    np.testing.assert_array_equal(a[1]["image"].numpy(), first.numpy())


class _FirstChannel(torch.nn.Module):
    """A 'network' whose footprint logit is its first input channel: predictions must land where the
    input was, whatever the orientation (rotated in, rotated back out)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.cat([x[:, :1] * 10, -10 * torch.ones_like(x[:, :1]), -10 * torch.ones_like(x[:, :1])], 1)


def test_predict_rotates_predictions_back():
    raw = np.zeros((4, 100, 130), np.float32)
    raw[0, 10:30, 5:60] = 1.0  # an off-centre block, asymmetric in both axes
    valid = np.ones((100, 130), bool)
    model = B.LoadedModel(_FirstChannel(), NormStats([0.0] * 4, [1.0] * 4), "sar4")
    for orientation in (0, 1):
        for flip in (False, True):
            prob = B.predict_probabilities([model], raw, valid, orientation, scales=(1.0,), flip=flip)
            assert prob.shape == (3, 100, 130)
            np.testing.assert_array_equal(prob[0] > 0.5, raw[0] > 0.5)


def test_half_resolution_model_lines_up_with_the_tile():
    """A model trained at input_scale 0.5 sees the tile at half size; its probabilities come back
    at full size, on the same pixels (up to the one-pixel blur of the resize at block edges)."""
    raw = np.zeros((4, 100, 130), np.float32)
    raw[0, 10:30, 6:60] = 1.0
    valid = np.ones((100, 130), bool)
    model = B.LoadedModel(_FirstChannel(), NormStats([0.0] * 4, [1.0] * 4), "sar4", input_scale=0.5)
    for orientation in (0, 1):
        prob = B.predict_probabilities([model], raw, valid, orientation)
        assert prob.shape == (3, 100, 130)
        inside = prob[0] > 0.6  # sigmoid(0) = 0.5 off the block, up to rounding
        assert inside[12:28, 8:58].all() and not inside[:8].any() and not inside[32:].any()
        assert not inside[:, :4].any() and not inside[:, 62:].any()


def test_dataset_at_half_scale_draws_targets_at_that_resolution(scene):
    tiles = find_tiles(scene["train_aoi"])
    polygons = read_building_polygons(scene["train_csv"])
    tile = next(t for t in tiles if len(polygons.get(t.image_id, [])) >= 3)
    stats = NormStats([0.0] * 4, [1.0] * 4)
    full = BuildingTileDataset([tile], {}, "sar4", polygons, stats, AugmentParams(crop=64), cache=False)
    half = BuildingTileDataset([tile], {}, "sar4", polygons, stats, AugmentParams(crop=64), cache=False,
                               input_scale=0.5)
    (img_f, m_f), (img_h, m_h) = full.load_tile(0), half.load_tile(0)
    assert img_h.shape == (4, 80, 80) and m_h.shape == (4, 80, 80)
    # the half-size footprint is the full one, downsampled: they agree on almost every pixel
    down = m_f[0].reshape(80, 2, 80, 2).mean(axis=(1, 3))
    agree = ((down >= 0.5) == m_h[0].astype(bool)).mean()
    assert agree > 0.97 and m_h[0].sum() > 0
    # and the image is the 2x2 average of the full-resolution one
    block_valid = m_f[3].reshape(80, 2, 80, 2).all(axis=(1, 3))
    assert block_valid.mean() > 0.5
    np.testing.assert_allclose(img_h[3].astype(np.float32)[block_valid],
                               img_f[3].astype(np.float32).reshape(80, 2, 80, 2).mean(axis=(1, 3))[block_valid],
                               rtol=0.01, atol=0.05)


def test_row_targets_reach_the_training_samples(scene):
    # training_dataset passes the config's row_targets: the same tile's edge and contact lose the
    # walls between touching buildings (the generated scenes have terraced rows), footprint unchanged.
    tiles = find_tiles(scene["train_aoi"])
    polygons = read_building_polygons(scene["train_csv"])
    tile = max(tiles, key=lambda t: len(polygons.get(t.image_id, [])))
    stats = NormStats([0.0] * 4, [1.0] * 4)
    per_house = dataclasses.replace(_tiny_config(), row_targets=False, cache_tiles=False)
    per_row = dataclasses.replace(per_house, row_targets=True)
    _, houses = B.training_dataset([tile], polygons, {}, stats, per_house).load_tile(0)
    _, rows = B.training_dataset([tile], polygons, {}, stats, per_row).load_tile(0)
    np.testing.assert_array_equal(rows[0], houses[0])
    inside = ndi.binary_erosion(houses[0].astype(bool), iterations=3)  # away from the rows' outlines
    assert (houses[2].astype(bool) & inside).sum() > 50  # walls inside rows are contact per house
    assert not (rows[2].astype(bool) & inside).any()
    assert rows[1].sum() < houses[1].sum()


def test_area_target_gives_each_pixel_its_buildings_area(scene):
    # The area network's samples: every footprint pixel carries the pixel area of its own label
    # building (the same number for all its pixels), background 0.
    from sarfusion.datasets.sn6_buildings import building_areas, rasterize_instances
    from sarfusion.io.raster import raster_info

    tiles = find_tiles(scene["train_aoi"])
    polygons = read_building_polygons(scene["train_csv"])
    tile = max(tiles, key=lambda t: len(polygons.get(t.image_id, [])))
    stats = NormStats([0.0] * 4, [1.0] * 4)
    cfg = dataclasses.replace(_tiny_config(), cache_tiles=False)
    _, masks = B.training_dataset([tile], polygons, {}, stats, cfg, area=True).load_tile(0)
    info = raster_info(tile.sar_path)
    labels = orient(rasterize_instances(polygons[tile.image_id], (info.height, info.width)), tile.orientation)
    sizes = np.bincount(labels.ravel())
    np.testing.assert_array_equal(masks[-1], np.where(labels > 0, sizes[labels], 0))
    np.testing.assert_array_equal(masks[-1] > 0, masks[0] > 0)
    assert len(np.unique(masks[-1])) > 5  # buildings of many sizes
    item = B.training_dataset([tile], polygons, {}, stats, cfg, area=True)[0]
    assert item["area"].shape == item["target"].shape[1:]
    assert set(np.unique(item["area"].numpy())) <= set(np.unique(masks[-1]).astype(np.float32))
    np.testing.assert_array_equal(building_areas(np.array([[0, 2, 2], [1, 2, 0]])), [[0, 3, 3], [1, 3, 0]])


class _ConstantArea(torch.nn.Module):
    """An area network that predicts a log area of 3 everywhere."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return 3 + 0 * x[:, :1]


def test_area_networks_add_a_4th_channel_in_tile_pixels():
    """An area network's log area is in network px; at input scale 0.5 a tile px is 4 network px, so
    prediction adds log 4. It is averaged as it is (no sigmoid) and leaves the footprint channels
    as the footprint networks make them."""
    raw = np.zeros((4, 64, 96), np.float32)
    raw[0, 10:30, 6:60] = 1.0
    valid = np.ones((64, 96), bool)
    valid[:, -4:] = False
    stats = NormStats([0.0] * 4, [1.0] * 4)
    buildings = B.LoadedModel(_FirstChannel(), stats, "sar4")
    alone = B.predict_probabilities([buildings], raw, valid, 1, flip=True)
    for scale, want in ((1.0, 3.0), (0.5, 3.0 + np.log(4.0))):
        area = B.LoadedModel(_ConstantArea(), stats, "sar4", input_scale=scale, output="area")
        prob = B.predict_probabilities([buildings, area], raw, valid, 1, flip=True)
        assert prob.shape == (4, 64, 96)
        np.testing.assert_array_equal(prob[:3], alone)
        np.testing.assert_allclose(prob[3][valid], want, atol=1e-5)
        assert (prob[:, ~valid] == 0).all()


def test_bad_inputs_name_the_file_and_keep_outputs(scene, tmp_path):
    aoi = tmp_path / "AOI_11_Rotterdam"
    shutil.copytree(scene["train_aoi"], aoi)
    # an empty label CSV
    csv = aoi / "SummaryData" / Path(scene["train_csv"]).name
    csv.write_text("")
    with pytest.raises(InputError, match=str(csv)):
        B.train_buildings(aoi, tmp_path / "w", config=_tiny_config())
    csv.write_text("ImageId,TileBuildingId,PolygonWKT_Pix\n")
    with pytest.raises(InputError, match="no rows"):
        B.train_buildings(aoi, tmp_path / "w", config=_tiny_config())
    shutil.copy(scene["train_csv"], csv)
    # a SAR tile with 3 bands
    bad = sorted((aoi / "SAR-Intensity").glob("*.tif"))[0]
    info = raster_info(bad)
    write_raster(bad, read_raster(bad)[:3], info.geotransform, info.crs_wkt, 0)
    with pytest.raises(InputError, match=f"{bad}.*3 bands"):
        B.train_buildings(aoi, tmp_path / "w", config=_tiny_config())


def test_train_predict_end_to_end(scene, tmp_path):
    from sarfusion.metrics.buildings import score_buildings

    weights = B.train_buildings(scene["train_aoi"], tmp_path / "w", config=_tiny_config())
    assert (weights / "buildings_fold0.pt").is_file() and (weights / B.CONFIG_NAME).is_file()
    # Deterministic with the seed, initial weights included: a second run gives the same model.
    again = B.train_buildings(scene["train_aoi"], tmp_path / "w2", config=_tiny_config())
    import torch
    sd1, sd2 = (torch.load(w / "buildings_fold0.pt", weights_only=False)["state_dict"] for w in (weights, again))
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    out = tmp_path / "sub.csv"
    B.predict_buildings(scene["test_aoi"], weights, out, preview_dir=tmp_path / "prev", tta=True,
                        geo_path=tmp_path / "b.gpkg")
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["ImageId", "PolygonWKT_Pix", "Confidence"]
    from sarfusion.io.vector import read_features
    geoms, props, crs = read_features(tmp_path / "b.gpkg")  # the map layer: every detection, once
    assert raster_info(next((scene["test_aoi"] / "SAR-Intensity").glob("*.tif"))).crs_wkt == crs
    n_detections = int((sub.PolygonWKT_Pix != "POLYGON EMPTY").sum())
    assert len(geoms) <= n_detections and sum(p["n_tiles"] for p in props) <= n_detections
    test_ids = {t.image_id for t in find_tiles(scene["test_aoi"])}
    assert set(sub["ImageId"]) == test_ids
    assert len(list((tmp_path / "prev").glob("buildings_*.png"))) == len(test_ids)
    result = score_buildings(scene["test_truth_csv"], out)
    assert result["n_images"] == len(test_ids)
    assert 0.0 <= result["f1"] <= 1.0

    # A bad test tile: clear error, and the earlier submission is untouched.
    before = out.read_bytes()
    aoi = tmp_path / "test_aoi"
    shutil.copytree(scene["test_aoi"], aoi)
    bad = sorted((aoi / "SAR-Intensity").glob("*.tif"))[-1]
    info = raster_info(bad)
    write_raster(bad, read_raster(bad)[:3], info.geotransform, info.crs_wkt, 0)
    with pytest.raises(InputError, match=f"{bad}.*3 bands"):
        B.predict_buildings(aoi, weights, out)
    assert out.read_bytes() == before


def test_folds_calibrate_out_of_fold_with_the_test_tta(scene, tmp_path, monkeypatch):
    """With K folds, every calibration tile is predicted by the one model that did not train on
    it, with the TTA the saved config applies at prediction (which then turns it on by itself)."""
    trained_on: dict[str, set] = {}
    loaded: dict[int, str] = {}
    calls: list[tuple] = []
    real_train, real_load, real_calibrate = B.train_model, B._load_model, B.calibrate_watershed
    real_probs = B.predict_probabilities

    def train_model(tiles, *args, **kwargs):
        info = real_train(tiles, *args, **kwargs)
        trained_on[info["path"]] = {t.image_id for t in tiles}
        return info

    def load_model(path, *args, **kwargs):
        model = real_load(path, *args, **kwargs)
        loaded[id(model)] = str(path)
        return model

    def calibrate(tiles, *args, **kwargs):
        calls.append(("calibrate", [(t.image_id, [loaded[id(m)] for m in ms]) for t, ms in tiles]))
        return real_calibrate(tiles, *args, **kwargs)

    def probs(models, raw, valid, orientation, scales=(1.0,), flip=False, tile=None):
        calls.append(("probs", tuple(scales), flip))
        return real_probs(models, raw, valid, orientation, scales, flip, tile)

    monkeypatch.setattr(B, "train_model", train_model)
    monkeypatch.setattr(B, "_load_model", load_model)
    monkeypatch.setattr(B, "calibrate_watershed", calibrate)
    monkeypatch.setattr(B, "predict_probabilities", probs)
    cfg = dataclasses.replace(_tiny_config(), folds=2, tta=True, tta_scales=(0.75, 1.0), calibrate_tiles=4,
                              fold_gap_m=0.0, select_best=False)  # best-checkpoint validation: the next test
    weights = B.train_buildings(scene["train_aoi"], tmp_path / "w", config=cfg)
    assert sorted(p.name for p in weights.glob("buildings_fold*.pt")) == ["buildings_fold0.pt", "buildings_fold1.pt"]
    (_, pairs), = [c for c in calls if c[0] == "calibrate"]
    assert pairs
    for image_id, paths in pairs:  # the fold's footprint and area networks, both out of fold
        fold = Path(paths[0]).stem.removeprefix("buildings_fold")
        assert [Path(p).name for p in paths] == [f"buildings_fold{fold}.pt", f"buildings_area_fold{fold}.pt"]
        assert all(image_id not in trained_on[p] for p in paths)
    assert len(B.load_models(weights)[0]) == 4  # the test-time ensemble: both folds' networks
    assert {c[1:] for c in calls if c[0] == "probs"} == {((0.75, 1.0), True)}  # the test's TTA everywhere
    saved = B.load_models(weights)[1]
    assert saved.folds == 2 and saved.tta
    report = json.loads((weights / "buildings_train_report.json").read_text())
    assert len(report["folds"]) == 2 and all("val" in f for f in report["folds"])
    assert set(report["calibration"]["tiles"]) <= {i for i, _ in pairs}


def test_each_fold_keeps_its_best_validated_checkpoint(scene, tmp_path, monkeypatch):
    """Validation F1 at every checkpoint; the fold's saved model is the best step's weights, not the
    last step's. The F1 values are scripted (a 4-step tiny run learns nothing to choose between)."""
    scripted = {1: 0.10, 2: 0.50, 3: 0.20, 4: 0.30}
    snapshots: dict[tuple[int, int], dict] = {}
    real_f1 = B.validation_f1

    def validation_f1(models, tiles, polygons, prepared, cfg):
        real_f1(models, tiles, polygons, prepared, cfg)  # the real path runs, its value is replaced
        fold, step = divmod(len(snapshots), 4)  # called at checkpoint steps 1..4 of fold 0, then fold 1
        step += 1
        snapshots[(fold, step)] = {k: v.clone() for k, v in models[0].net.state_dict().items()}
        return scripted[step]

    monkeypatch.setattr(B, "validation_f1", validation_f1)
    cfg = dataclasses.replace(_tiny_config(), folds=2, fold_gap_m=0.0, calibrate_tiles=0,
                              engine=EngineConfig(max_steps=4, batch_size=2, checkpoint_every=1, log_every=1))
    weights = B.train_buildings(scene["train_aoi"], tmp_path / "w", config=cfg, work_dir=tmp_path / "runs")
    report = json.loads((weights / "buildings_train_report.json").read_text())
    for fold in (0, 1):
        assert report["folds"][fold]["best_step"] == 2 and report["folds"][fold]["best_val_f1"] == 0.5
        saved = torch.load(weights / f"buildings_fold{fold}.pt", weights_only=False)["state_dict"]
        assert all(torch.equal(saved[k], v) for k, v in snapshots[(fold, 2)].items())
        assert not all(torch.equal(saved[k], v) for k, v in snapshots[(fold, 4)].items())
    assert (tmp_path / "runs" / "fold0" / "best.pt").is_file()


def test_full_recipe_runs_end_to_end_at_tiny_size(scene, tmp_path):
    """The full preset's code path on CPU (sizes overridden to tiny; everything else is the recipe:
    loss weights from each crop's building count, colour augmentation, the stepped lr, 8-connected
    seeds, dividing lines, 0.5 px outlines, grad clipping, 2 folds with best-checkpoint selection
    and out-of-fold calibration (row splitting offered), TTA at test). Random init: nothing is
    downloaded."""
    from sarfusion.metrics.buildings import score_buildings

    full = choose_preset(B.PRESETS, "full")
    cfg = dataclasses.replace(
        full, encoder="efficientnet-b0", encoder_weights="none", decoder_channels=(16, 16, 16, 8, 8),
        engine=dataclasses.replace(full.engine, max_steps=2, batch_size=2, num_workers=0, checkpoint_every=1,
                                   log_every=1),
        augment=dataclasses.replace(full.augment, crop=64), folds=2, fold_gap_m=0.0, calibrate_tiles=2,
        calibrate_seed_thresholds=(0.3, 0.75), calibrate_mask_thresholds=(0.5,), cache_tiles=True)
    weights = B.train_buildings(scene["train_aoi"], tmp_path / "w", config=cfg)
    saved = B.load_models(weights)[1]
    assert saved.tta and saved.folds == 2 and saved.watershed.dividing_lines and saved.engine.grad_clip == 1.2
    assert saved.positive_pixel_weight == 0.5 and saved.augment.color_on and saved.lr_milestones  # the recipe
    models = B.load_models(weights)[0]
    assert saved.strip_context and all(m.context is not None and m.context.strips for m in models)
    report = json.loads((weights / "buildings_train_report.json").read_text())
    assert [f["best_step"] in (1, 2) for f in report["folds"]] == [True, True]
    # the row-count table of the training labels travels with the weights; the calibration tried
    # both ways and saved what it chose
    assert saved.row_split and len(saved.watershed.row_counts) == 52
    assert any(k.endswith(",split") for k in report["calibration"]["grid"])
    assert saved.watershed.split_rows == report["calibration"]["split_rows"]
    out = B.predict_buildings(scene["test_aoi"], weights, tmp_path / "sub.csv", geo_path=tmp_path / "b.gpkg")
    result = score_buildings(scene["test_truth_csv"], out)
    assert result["n_images"] == len(find_tiles(scene["test_aoi"])) and 0.0 <= result["f1"] <= 1.0


def _centre_northing(tile) -> float:
    info = raster_info(tile.sar_path)
    return info.geotransform[3] + info.geotransform[5] * info.height / 2


def test_strip_context_describes_each_tile_by_its_strip_direction_and_northing(scene):
    """The winner's extra inputs: a one-hot of the training strips, the look direction and the
    strip's mean northing on the training tiles' scale; an unseen strip gets no one-hot and its
    tile's own northing."""
    tiles = find_tiles(scene["train_aoi"])
    ctx = StripContext.from_tiles(tiles)
    assert ctx.strips == tuple(sorted({t.strip for t in tiles})) and ctx.size == len(ctx.strips) + 2
    north = {t.image_id: _centre_northing(t) for t in tiles}
    lo, hi = min(north.values()), max(north.values())
    assert hi > lo
    for t in tiles:
        v = ctx.vector(t)
        assert v.dtype == np.float32 and v.shape == (ctx.size,)
        assert v[:-2].sum() == 1.0 and v[ctx.strips.index(t.strip)] == 1.0
        assert v[-2] == float(t.orientation or 0)
        mean_north = np.mean([north[u.image_id] for u in tiles if u.strip == t.strip])
        assert v[-1] == pytest.approx((mean_north - lo) / (hi - lo) - 0.5, abs=1e-6)
    unseen = dataclasses.replace(tiles[0], image_id="20990101000000_20990101000100_tile_1")
    v = ctx.vector(unseen)
    assert v[:-2].sum() == 0.0 and v[-1] == pytest.approx((north[tiles[0].image_id] - lo) / (hi - lo) - 0.5, abs=1e-6)
    assert StripContext.from_dict(json.loads(json.dumps(ctx.to_dict()))) == ctx


def test_strip_context_reaches_the_output_and_survives_save_and_load(scene, tmp_path):
    """A model with strip inputs: its output depends on the context vector, the weights load with
    the strip list, and prediction without the tile is refused (it would silently drop them)."""
    tiles = find_tiles(scene["train_aoi"])
    ctx = StripContext.from_tiles(tiles)
    torch.manual_seed(0)
    net = build_segmentation_model("efficientnet-b0", "sar4", decoder_channels=(16, 16, 16, 8, 8),
                                   context_size=ctx.size).eval()
    with torch.no_grad():
        net.context[0].weight.normal_(0, 1.0)  # a trained projection, not the near-zero init
        x = torch.randn(1, 4, 64, 64)
        a, b = (net(x, torch.from_numpy(ctx.vector(t))[None]) for t in (tiles[0], tiles[-1]))
    assert ctx.vector(tiles[0]).tolist() != ctx.vector(tiles[-1]).tolist()
    assert float((a - b).abs().max()) > 1e-3
    stats = NormStats([30.0] * 4, [8.0] * 4)
    path = tmp_path / "m.pt"
    torch.save({"state_dict": net.state_dict(), "stats": dataclasses.asdict(stats), "input_mode": "sar4",
                "encoder": "efficientnet-b0", "decoder_channels": (16, 16, 16, 8, 8), "input_scale": 1.0,
                "context": ctx.to_dict()}, path)
    loaded = B._load_model(path)
    assert loaded.context == ctx
    raw, valid = B.read_model_input(tiles[0], "sar4")
    want = B.predict_probabilities([B.LoadedModel(net, stats, "sar4", 1.0, ctx)], raw, valid,
                                   tiles[0].orientation, tile=tiles[0])
    got = B.predict_probabilities([loaded], raw, valid, tiles[0].orientation, tile=tiles[0])
    np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="strip inputs"):
        B.predict_probabilities([loaded], raw, valid, tiles[0].orientation)


def test_fused_input_needs_optical(scene, tmp_path):
    tiles = find_tiles(scene["test_aoi"])
    with pytest.raises(InputError, match="PS-RGB"):
        B.prepare_inputs(tiles, "fused", tmp_path)
    train_tiles = find_tiles(scene["train_aoi"], require_optical=True)[:1]
    paths = B.prepare_inputs(train_tiles, "fused", tmp_path)
    fused = read_raster(paths[train_tiles[0].image_id])
    assert fused.shape == (3, 160, 160) and fused.dtype == np.uint8


def test_input_experiment_scores_each_mode_on_the_east_band(tmp_path):
    from sarfusion.synth.sn6 import generate_sn6

    data = generate_sn6(tmp_path / "sn6", tiles=16, size=128, seed=5)
    cfg = dataclasses.replace(_tiny_config(), calibrate_tiles=2, calibrate_seed_thresholds=(0.3, 0.75),
                              calibrate_mask_thresholds=(0.3,))
    result = B.run_input_experiment(Path(data["train_aoi"]).parent.parent, work_dir=tmp_path / "exp",
                                    modes=("span", "fused"), config=cfg)
    split = result["split"]
    assert split["train"] > 0 and split["test"] > 0
    for mode in ("span", "fused"):
        r = result["modes"][mode]
        assert r["tp"] + r["fn"] > 0  # the east band has buildings to find
        assert 0.0 <= r["f1"] <= 1.0 and r["seed_threshold"] in (0.3, 0.75)
    assert "| fused |" in B.experiment_markdown(result)

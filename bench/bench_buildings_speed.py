#!/usr/bin/env python
"""Building network speed: one training step (forward, focal + dice loss, backward, AdamW) and
the prediction of one tile, with the weights in channels-last layout (what
``build_segmentation_model`` returns) and in the plain NCHW layout, side by side.

    python bench/bench_buildings_speed.py [--preset demo|full] [--steps 20] [--tile 900] [--device cpu]

Sizes are the preset's (encoder, decoder, crop, batch, input mode); the weights are random (speed
does not depend on training). Each figure is the median over ``--steps`` timed repetitions after
3 warm-up ones. Prints one line per layout and a JSON summary on the last line. Default preset:
``full`` on CUDA, ``demo`` on CPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from sarfusion.engine import inference_autocast, select_device
from sarfusion.models.segmentation import build_segmentation_model, focal_dice_loss, input_channels
from sarfusion.tasks.buildings import PRESETS


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_layout(preset: str, layout: torch.memory_format, steps: int, tile: int, device: torch.device
                ) -> dict[str, float]:
    """Median seconds of a training step and of a tile's prediction, weights in ``layout``."""
    cfg = PRESETS[preset]
    torch.manual_seed(0)
    net = build_segmentation_model(cfg.encoder, cfg.input_mode, decoder_channels=cfg.decoder_channels)
    net = net.to(device=device, memory_format=layout)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    amp = device.type == "cuda" and cfg.engine.amp
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    crop, batch = cfg.augment.crop, cfg.engine.batch_size
    bands = input_channels(cfg.input_mode)
    x = torch.randn(batch, bands, crop, crop, device=device)
    target = (torch.rand(batch, 3, crop, crop, device=device) > 0.7).float()
    valid = torch.ones(batch, 1, crop, crop, device=device)
    train_times = []
    for i in range(steps + 3):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = net(x)
            loss, _ = focal_dice_loss(logits.float(), target, cfg.channel_weights, valid=valid)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if i >= 3:
            train_times.append(time.perf_counter() - start)
    net.eval()
    side = -(-tile // 32) * 32  # predictions pad a tile to a multiple of 32
    image = torch.randn(1, bands, side, side, device=device)
    infer_times = []
    with torch.no_grad(), inference_autocast(device):
        for i in range(max(3, steps // 4) + 2):
            _sync(device)
            start = time.perf_counter()
            net(image)
            _sync(device)
            if i >= 2:
                infer_times.append(time.perf_counter() - start)
    return {"train_step_s": statistics.median(train_times), "predict_tile_s": statistics.median(infer_times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per layout")
    parser.add_argument("--tile", type=int, default=900, help="tile side for the prediction timing, px")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: CUDA when present)")
    args = parser.parse_args()
    device = select_device(args.device)
    preset = args.preset or ("full" if device.type == "cuda" else "demo")
    cfg = PRESETS[preset]
    print(f"{preset}: {cfg.encoder}, {cfg.engine.batch_size} crops of {cfg.augment.crop} px, "
          f"{args.tile} px tiles, {device}, {torch.get_num_threads()} threads", flush=True)
    results = {}
    for name, layout in (("channels_last", torch.channels_last), ("nchw", torch.contiguous_format)):
        results[name] = time_layout(preset, layout, args.steps, args.tile, device)
        print(f"{name:14s} training step {results[name]['train_step_s']:.3f} s   "
              f"tile prediction {results[name]['predict_tile_s']:.3f} s", flush=True)
    print(json.dumps({"preset": preset, "device": str(device), **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

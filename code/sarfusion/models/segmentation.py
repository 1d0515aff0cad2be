"""Building segmentation networks (smp U-Net) and their focal + dice loss.

The model predicts three channels per pixel, in this order: footprint, edge, contact (the SN6
winner's targets; see :mod:`sarfusion.datasets.sn6_buildings`). ``in_channels`` follows the
input mode: ``sar4`` 4 (HH, HV, VH, VV), ``span`` 1, ``fused`` 3, ``colorized`` 3.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sarfusion.errors import InputError

# Friendly name -> smp encoder name. Every encoder is built with encoder_weights=None: nothing is
# downloaded at run time, and the first conv is sized for the input mode's channel count.
ENCODERS: dict[str, str] = {
    "efficientnet-b5": "efficientnet-b5",  # the SN6 winner's encoder (full preset)
    "efficientnet-b0": "efficientnet-b0",  # demo preset: smallest EfficientNet, ~4 M params with a slim decoder
    "timm-efficientnet-b0": "timm-efficientnet-b0",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "mobilenetv3": "tu-mobilenetv3_large_100",
}

INPUT_CHANNELS: dict[str, int] = {"sar4": 4, "span": 1, "fused": 3, "colorized": 3}
TARGET_NAMES: tuple[str, ...] = ("footprint", "edge", "contact")


def input_channels(input_mode: str) -> int:
    """Channel count of an input mode; an unknown mode lists the valid ones."""
    if input_mode not in INPUT_CHANNELS:
        raise InputError(f"unknown input mode {input_mode!r}; choose one of: {', '.join(INPUT_CHANNELS)}")
    return INPUT_CHANNELS[input_mode]


def build_segmentation_model(encoder: str, input_mode: str, classes: int = len(TARGET_NAMES),
                             decoder_channels: Sequence[int] | None = None) -> nn.Module:
    """An smp ``Unet`` with a named encoder, random init, ``in_channels`` set by ``input_mode``.

    Input ``(N, C, H, W)`` float32 with H, W multiples of 32; output logits ``(N, classes, H, W)``.
    """
    import segmentation_models_pytorch as smp  # heavy: imported on use

    if encoder not in ENCODERS:
        raise InputError(f"unknown encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}")
    kwargs = {}
    if decoder_channels is not None:
        kwargs["decoder_channels"] = tuple(int(c) for c in decoder_channels)
    return smp.Unet(ENCODERS[encoder], encoder_weights=None, in_channels=input_channels(input_mode),
                    classes=classes, **kwargs)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary focal loss per channel, ``(C,)``; logits/target ``(N, C, H, W)``, weight ``(N, 1, H, W)``."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    loss = (1 - p_t) ** gamma * bce
    if weight is None:
        return loss.mean(dim=(0, 2, 3))
    return (loss * weight).sum(dim=(0, 2, 3)) / weight.sum().clamp_min(1.0)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
              eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss per channel, ``(C,)``, computed over the whole batch (empty crops are fine)."""
    prob = torch.sigmoid(logits)
    if weight is not None:
        prob, target = prob * weight, target * weight
    inter = (prob * target).sum(dim=(0, 2, 3))
    total = prob.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    return 1 - (2 * inter + eps) / (total + eps)


def focal_dice_loss(logits: torch.Tensor, target: torch.Tensor, channel_weights: Sequence[float],
                    focal_weight: float = 1.0, dice_weight: float = 1.0,
                    valid: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``sum_c w_c * (focal_weight * focal_c + dice_weight * dice_c)`` / ``sum w``.

    Args:
        logits, target: ``(N, C, H, W)``; target in {0, 1} float.
        channel_weights: one weight per channel (footprint, edge, contact).
        valid: optional ``(N, 1, H, W)`` mask of pixels that count (nodata excluded).
    Returns the scalar loss and ``{"focal": .., "dice": ..}`` (footprint channel) for logging.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    w = torch.as_tensor(list(channel_weights), dtype=logits.dtype, device=logits.device)
    if w.numel() != logits.shape[1]:
        raise ValueError(f"{w.numel()} channel weights for {logits.shape[1]} channels")
    focal = focal_loss(logits, target, weight=valid)
    dice = dice_loss(logits, target, weight=valid)
    per_channel = focal_weight * focal + dice_weight * dice
    loss = (w * per_channel).sum() / w.sum()
    return loss, {"focal": float(focal[0].detach()), "dice": float(dice[0].detach())}

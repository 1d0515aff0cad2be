"""Building segmentation networks (smp U-Net) and their focal + dice loss.

The model predicts three channels per pixel, in this order: footprint, edge, contact (the SN6
winner's targets; see :mod:`sarfusion.datasets.sn6_buildings`). An area network (``classes=1``,
the same factory) predicts one channel instead: the natural log of the area (px) of the building
each footprint pixel belongs to (:func:`area_loss`). ``in_channels`` follows the input mode: ``sar4`` 4 (HH, HV, VH, VV), ``span`` 1, ``fused`` 3, ``colorized`` 3.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sarfusion.errors import InputError

# Friendly name -> smp encoder name. Encoders are built with smp's encoder_weights=None (nothing
# is downloaded implicitly) and the first conv sized for the input mode's channel count; pretrained
# weights are loaded explicitly by :func:`load_encoder_weights` ("imagenet" or a local file).
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
                             decoder_channels: Sequence[int] | None = None,
                             encoder_weights: Mapping[str, torch.Tensor] | None = None,
                             context_size: int = 0) -> nn.Module:
    """An smp ``Unet`` with a named encoder, ``in_channels`` set by ``input_mode``; random init, or
    the encoder initialised from ``encoder_weights`` (a 3-band state dict from
    :func:`resolve_encoder_weights`; its stem is widened to the input's bands by :func:`fit_stem`).
    ``context_size`` > 0 wraps it in :class:`ContextUnet` (per-tile inputs at the bottleneck).

    Input ``(N, C, H, W)`` float32 with H, W multiples of 32; output logits ``(N, classes, H, W)``.
    """
    import segmentation_models_pytorch as smp  # heavy: imported on use

    if encoder not in ENCODERS:
        raise InputError(f"unknown encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}")
    kwargs = {}
    if decoder_channels is not None:
        kwargs["decoder_channels"] = tuple(int(c) for c in decoder_channels)
    model = smp.Unet(ENCODERS[encoder], encoder_weights=None, in_channels=input_channels(input_mode),
                     classes=classes, **kwargs)
    if encoder_weights is not None:
        load_encoder_weights(model.encoder, encoder_weights)
    model = ContextUnet(model, context_size) if context_size > 0 else model
    # Channels-last weights make every convolution run channels-last (their outputs follow the
    # weights' layout), whatever the input's: on 2 CPU cores a demo training step of
    # efficientnet-b0 takes 0.145 s instead of 0.175 s and a 900 px tile 0.53 s instead of 0.82 s
    # (bench/bench_buildings_speed.py); on GPUs it is the layout tensor cores and AMP prefer.
    return model.to(memory_format=torch.channels_last)


class ContextUnet(nn.Module):
    """An smp ``Unet`` whose deepest encoder feature map gets a per-image vector added: the SN6
    winner's extra inputs (strip one-hot, direction, northing), projected by one linear layer +
    ReLU to the bottleneck's channels and broadcast over its pixels (his 3 x 3 convolution of a
    1 x 1 map is the same thing).

    ``forward(x (N, C, H, W), context (N, context_size) | None)``; ``None`` stands for zeros, so
    one forward pass reaches every parameter (:func:`freeze_unused_parameters`).
    """

    def __init__(self, unet: nn.Module, context_size: int):
        super().__init__()
        self.unet = unet
        self.context_size = int(context_size)
        self.context = nn.Sequential(nn.Linear(self.context_size, unet.encoder.out_channels[-1]), nn.ReLU())

    @property
    def encoder(self) -> nn.Module:
        return self.unet.encoder

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            context = x.new_zeros(x.shape[0], self.context_size)
        features = list(self.unet.encoder(x))
        features[-1] = features[-1] + self.context(context.to(features[-1].dtype))[:, :, None, None]
        return self.unet.segmentation_head(self.unet.decoder(features))


def freeze_unused_parameters(model: nn.Module, in_channels: int) -> list[str]:
    """Set ``requires_grad=False`` on parameters the forward pass never uses (e.g. the
    classification head smp keeps in its EfficientNet encoders), found by one backward pass of a
    64 px zero image in eval mode (no batch-norm statistics change). Under DistributedDataParallel
    such parameters otherwise stall the gradient reduction ("parameters that were not used in
    producing loss"), so a trainer calls this once before wrapping; inference needs no such pass.
    They stay in the state dict. Returns their names."""
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    model(torch.zeros(1, in_channels, 64, 64)).float().sum().backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in model.named_parameters():
        if name in unused:
            p.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused


def resolve_encoder_weights(encoder: str, spec: str | Path | None) -> dict[str, torch.Tensor] | None:
    """The 3-band encoder state dict that ``spec`` names: ``None`` / ``"none"`` -> None (random
    init), ``"imagenet"`` -> smp's ImageNet weights, anything else -> a local file
    (``torch.save`` of the encoder's ``state_dict()``, or of a whole smp model / a dict with a
    ``state_dict`` entry: ``encoder.`` prefixes are stripped). Fails with one line naming
    ``--encoder-weights PATH`` when they cannot be had: never silently random."""
    if spec is None or str(spec).lower() == "none":
        return None
    if encoder not in ENCODERS:
        raise InputError(f"unknown encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}")
    if str(spec).lower() == "imagenet":
        import segmentation_models_pytorch as smp
        try:
            return smp.encoders.get_encoder(ENCODERS[encoder], in_channels=3, weights="imagenet").state_dict()
        except Exception as exc:  # offline, no cache, hub errors: all end the same way for the user
            reason = " ".join(str(exc).split())[:160]
            raise InputError(f"cannot load the ImageNet weights of {encoder} ({type(exc).__name__}: {reason}); "
                             f"on an offline machine give --encoder-weights PATH (a local state dict of the "
                             f"3-band encoder) or --encoder-weights none") from None
    path = Path(spec)
    if not path.is_file():
        raise InputError("encoder weights file not found (--encoder-weights takes imagenet, none or a file)", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"not a torch state dict ({type(exc).__name__})", path) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("not a state dict of tensors", path)
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    return dict(state)


def fit_stem(weight: torch.Tensor, bands: int) -> torch.Tensor:
    """Widen a 3-band (R, G, B) first-conv kernel ``(out, 3, k, k)`` to ``bands`` input bands.

    1 band: the sum over R, G, B (a grey image then gives the response the RGB kernel gives the same
    grey). More bands: R, G, B kept for the first three, every extra band starts from the green
    kernel (the SN6 winner's rule for the 4th SAR band).
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected a (out, 3, k, k) kernel, got {tuple(weight.shape)}")
    if bands == 1:
        return weight.sum(dim=1, keepdim=True)
    extra = [weight[:, 1:2]] * max(0, bands - 3)
    return torch.cat([weight[:, :bands]] + extra, dim=1)


def load_encoder_weights(encoder_module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a 3-band encoder state dict into ``encoder_module`` (any band count): kernels whose
    input dimension is 3 where the module's is N go through :func:`fit_stem`. Every parameter and
    buffer of the module must be covered (extra entries, e.g. a classifier head, are ignored)."""
    own = encoder_module.state_dict()
    fitted, bad = {}, []
    for key, target in own.items():
        if key not in state:
            continue
        value = state[key]
        if value.shape != target.shape and value.ndim == 4 and value.shape[1] == 3 \
                and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
            value = fit_stem(value, target.shape[1])
        if value.shape != target.shape:
            bad.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
        fitted[key] = value.to(target.dtype)
    missing = sorted(set(own) - set(fitted))
    if bad or missing:
        what = f"shapes differ: {'; '.join(bad[:3])}" if bad else f"missing {len(missing)} entries ({', '.join(missing[:3])})"
        raise InputError(f"encoder weights do not fit this encoder: {what}")
    encoder_module.load_state_dict(fitted)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: torch.Tensor | None = None, total: torch.Tensor | float | None = None) -> torch.Tensor:
    """Binary focal loss per channel, ``(C,)``; logits/target ``(N, C, H, W)``, weight ``(N, 1, H, W)``.

    With ``weight``, the weighted sum over pixels is divided by ``total`` (default: the sum of
    the weights, i.e. a weighted mean; at least 1).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    loss = (1 - p_t) ** gamma * bce
    if weight is None:
        return loss.mean(dim=(0, 2, 3))
    denominator = weight.sum() if total is None else torch.as_tensor(total, dtype=loss.dtype, device=loss.device)
    return (loss * weight).sum(dim=(0, 2, 3)) / denominator.clamp_min(1.0)


def loss_pixel_weights(footprint: torch.Tensor, buildings: torch.Tensor | None = None,
                       positive_weight: float = 1.0, image_weight_base: float = 1.0,
                       image_weight_per_building: float = 0.0) -> torch.Tensor:
    """The SN6 winner's per-pixel loss weights, ``(N, 1, H, W)`` float (dimensionless multipliers).

    ``positive_weight`` on building pixels (``footprint`` > 0.5), 1 elsewhere, times a per-image
    weight ``image_weight_base + image_weight_per_building * buildings[n]``; the winner's recipe
    is 0.5 / 0.5 / 0.5 / 8 (building pixels at half weight; a crop with 8 buildings weighs 1, an
    empty one 0.5). The neutral values (1 / 1 / 0) give all ones.

    Args:
        footprint: ``(N, 1, H, W)`` footprint target in {0, 1}.
        buildings: ``(N,)`` count of buildings in each crop (needed when
            ``image_weight_per_building`` is not 0).
    """
    if footprint.ndim != 4 or footprint.shape[1] != 1:
        raise ValueError(f"footprint must be (N, 1, H, W), got {tuple(footprint.shape)}")
    weight = torch.where(footprint > 0.5, positive_weight, 1.0).to(footprint.dtype)
    if image_weight_per_building:
        if buildings is None or buildings.shape != (footprint.shape[0],):
            got = None if buildings is None else tuple(buildings.shape)
            raise ValueError(f"buildings must be ({footprint.shape[0]},) counts per crop, got {got}")
        per_image = image_weight_base + image_weight_per_building * buildings.to(footprint.dtype)
        return weight * per_image[:, None, None, None]
    return weight * image_weight_base


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
                    valid: torch.Tensor | None = None,
                    pixel_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``sum_c w_c * (focal_weight * focal_c + dice_weight * dice_c)`` / ``sum w``.

    Args:
        logits, target: ``(N, C, H, W)``; target in {0, 1} float.
        channel_weights: one weight per channel (footprint, edge, contact).
        valid: optional ``(N, 1, H, W)`` mask of pixels that count (nodata excluded).
        pixel_weight: optional ``(N, 1, H, W)`` multipliers of the per-pixel (focal) loss
            (:func:`loss_pixel_weights`). The focal term is then ``sum(focal_px * valid *
            pixel_weight) / sum(valid)``: divided by the pixel count, not the weights' sum, so the
            weights scale the loss as they read (a weighted mean would cancel a per-image weight
            shared by the batch). The dice term, a ratio over the whole batch, is not weighted.
    Returns the scalar loss and ``{"focal": .., "dice": ..}`` (footprint channel) for logging.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    w = torch.as_tensor(list(channel_weights), dtype=logits.dtype, device=logits.device)
    if w.numel() != logits.shape[1]:
        raise ValueError(f"{w.numel()} channel weights for {logits.shape[1]} channels")
    if pixel_weight is None:
        focal = focal_loss(logits, target, weight=valid)
    else:
        n, _, h, wd = logits.shape
        if pixel_weight.shape != (n, 1, h, wd):
            raise ValueError(f"pixel_weight must be {(n, 1, h, wd)}, got {tuple(pixel_weight.shape)}")
        weight = pixel_weight if valid is None else pixel_weight * valid
        total = float(n * h * wd) if valid is None else valid.sum()
        focal = focal_loss(logits, target, weight=weight, total=total)
    dice = dice_loss(logits, target, weight=valid)
    per_channel = focal_weight * focal + dice_weight * dice
    loss = (w * per_channel).sum() / w.sum()
    return loss, {"focal": float(focal[0].detach()), "dice": float(dice[0].detach())}


def area_loss(pred_log_area: torch.Tensor, area: torch.Tensor, valid: torch.Tensor | None = None,
              beta: float = 0.2) -> torch.Tensor:
    """Smooth-L1 loss of the building-area channel on building pixels, a scalar.

    Args:
        pred_log_area: ``(N, H, W)`` predicted natural log of the area (px) of the building
            holding each pixel.
        area: ``(N, H, W)`` float, that building's area in px (0 outside buildings).
        valid: optional ``(N, H, W)`` mask of pixels that count (nodata excluded).
        beta: the smooth-L1 transition, in log units (0.2: quadratic within ~20 % of the area).
    Returns 0 (with a gradient) for a batch without building pixels.
    """
    keep = area > 0
    if valid is not None:
        keep &= valid > 0
    if not bool(keep.any()):
        return pred_log_area.sum() * 0.0
    return F.smooth_l1_loss(pred_log_area[keep].float(), torch.log(area[keep].float()), beta=beta)

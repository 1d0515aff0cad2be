"""Pix2Pix networks (Isola et al.; after the reference ``models/networks.py``).

``UNetGenerator``: ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` in [-1, 1] (tanh),
H and W divisible by ``2**num_downs``. ``PatchDiscriminator``: the 70x70 PatchGAN for
``n_layers=3``, on the channel-concatenated (condition, image) pair, returning logits
``(B, 1, H', W')``. ``GANLoss`` owns its real/fake labels.
"""
from __future__ import annotations

import torch
from torch import nn


class _UNetBlock(nn.Module):
    """One U-Net level: down, the inner levels, up, then the skip concatenation."""

    def __init__(self, outer: int, inner: int, in_ch: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, dropout: float = 0.0):
        super().__init__()
        self.outermost = outermost
        in_ch = outer if in_ch is None else in_ch
        down_conv = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)
        down_act, up_act = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            layers = [down_conv, sub, up_act, up]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False)
            layers = [down_act, down_conv, up_act, up, nn.BatchNorm2d(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False)
            layers = [down_act, down_conv, nn.BatchNorm2d(inner), sub, up_act, up, nn.BatchNorm2d(outer)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


class UNetGenerator(nn.Module):
    """U-Net generator: ``num_downs`` levels (8 for 256 px in the reference), ``ngf`` base filters,
    dropout in the three innermost non-bottleneck blocks (the reference's stochasticity)."""

    def __init__(self, in_channels: int, out_channels: int, num_downs: int = 8, ngf: int = 64,
                 dropout: float = 0.5):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        self.num_downs = num_downs
        block = _UNetBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = _UNetBlock(ngf * 8, ngf * 8, sub=block, dropout=dropout)
        block = _UNetBlock(ngf * 4, ngf * 8, sub=block)
        block = _UNetBlock(ngf * 2, ngf * 4, sub=block)
        block = _UNetBlock(ngf, ngf * 2, sub=block)
        self.model = _UNetBlock(out_channels, ngf, in_ch=in_channels, sub=block, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2 ** self.num_downs
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input H, W must be divisible by {m}, got {tuple(x.shape[-2:])}")
        return torch.tanh(self.model(x))


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``n_layers=3`` gives the 70x70 receptive field of the reference."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GANLoss(nn.Module):
    """``vanilla`` (BCE on logits) or ``lsgan`` (MSE) against all-real / all-fake label maps."""

    def __init__(self, mode: str = "vanilla"):
        super().__init__()
        losses = {"vanilla": nn.BCEWithLogitsLoss, "lsgan": nn.MSELoss}
        if mode not in losses:
            raise ValueError(f"unknown GAN loss {mode!r}; choose one of {sorted(losses)}")
        self.loss = losses[mode]()

    def forward(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return self.loss(logits, target)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Normal(0, gain) conv weights and Normal(1, gain) norm scales, as the reference."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def enable_dropout_sampling(net: nn.Module) -> nn.Module:
    """Eval mode but dropout active: draws several plausible outputs per input at test time."""
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.train()
    return net

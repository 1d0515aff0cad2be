"""The Pix2Pix optimisation step shared by colorization (SN6) and SAR->optical translation.

Written out plainly, as in the reference ``pix2pix_model.py``: D sees (condition, image) pairs,
the fake is detached for D, D is frozen while G steps. The reconstruction term is
``lambda_l1 * MAE + lambda_mse * MSE`` (colorization: L1 100 as the reference; translation: the
MultiEarth 2nd-place weighted MSE + MAE), optionally weighted per pixel (nodata excluded), the
adversarial term weighted by ``lambda_gan`` (1 in the reference), and D may be updated only every
``d_every`` steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from sarfusion.engine import StepContext
from sarfusion.models.pix2pix import GANLoss, PatchDiscriminator, UNetGenerator, init_weights


@dataclass
class Pix2PixNetConfig:
    """Network and optimiser sizes. Reference: num_downs 8, ngf 64, ndf 64, 3 layers, lr 2e-4."""

    num_downs: int = 8
    ngf: int = 64
    ndf: int = 64
    n_layers: int = 3
    dropout: float = 0.5
    lr: float = 2e-4
    beta1: float = 0.5
    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    lambda_mse: float = 0.0
    lambda_gan: float = 1.0
    d_every: int = 1


def build_pix2pix(in_channels: int, out_channels: int, cfg: Pix2PixNetConfig, seed: int = 0
                  ) -> tuple[dict[str, torch.nn.Module], dict[str, torch.optim.Optimizer]]:
    """Generator ``G`` and discriminator ``D`` with their Adam optimisers (keys ``"G"``, ``"D"``).

    The initial weights are drawn from ``seed``, so a run is repeatable from its first step.
    """
    torch.manual_seed(seed)
    gen = init_weights(UNetGenerator(in_channels, out_channels, cfg.num_downs, cfg.ngf, cfg.dropout))
    disc = init_weights(PatchDiscriminator(in_channels + out_channels, cfg.ndf, cfg.n_layers))
    betas = (cfg.beta1, 0.999)
    return ({"G": gen, "D": disc},
            {"G": torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=betas),
             "D": torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=betas)})


def _weighted_mean(err: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return err.mean()
    weight = weight.expand_as(err)
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


def make_pix2pix_step(cfg: Pix2PixNetConfig) -> Callable[[StepContext, Mapping], dict[str, float]]:
    """A ``step_fn`` for :class:`sarfusion.engine.Engine`.

    The batch holds ``input`` ``(B, Cin, H, W)`` and ``target`` ``(B, Cout, H, W)``, both in
    [-1, 1], and optionally ``weight`` ``(B, 1, H, W)`` (1 = valid pixel, 0 = nodata).
    """
    gan_loss = GANLoss(cfg.gan_mode)

    def step(ctx: StepContext, batch: Mapping) -> dict[str, float]:
        gen, disc = ctx.models["G"], ctx.models["D"]
        x, y, w = batch["input"], batch["target"], batch.get("weight")
        with ctx.autocast():
            fake = gen(x)
        out: dict[str, float] = {}
        if ctx.step % cfg.d_every == 0:
            disc.requires_grad_(True)
            with ctx.autocast():
                loss_d = 0.5 * (gan_loss(disc(torch.cat([x, fake.detach()], 1)), False)
                                + gan_loss(disc(torch.cat([x, y], 1)), True))
            ctx.backward(loss_d, "D")
            out["loss_D"] = loss_d.item()
        disc.requires_grad_(False)
        with ctx.autocast():
            loss_gan = gan_loss(disc(torch.cat([x, fake], 1)), True)
        diff = fake.float() - y.float()
        loss_rec = (cfg.lambda_l1 * _weighted_mean(diff.abs(), w)
                    + cfg.lambda_mse * _weighted_mean(diff.square(), w))
        ctx.backward(cfg.lambda_gan * loss_gan + loss_rec, "G")
        disc.requires_grad_(True)
        out.update(loss_G_gan=loss_gan.item(), loss_G_rec=loss_rec.item())
        return out

    return step

import torch

from sarfusion.models.pix2pix import PatchDiscriminator, UNetGenerator, enable_dropout_sampling


def test_generator_shapes_range_and_divisibility_check():
    g = UNetGenerator(1, 2, num_downs=6, ngf=8)
    y = g(torch.randn(2, 1, 64, 64))
    assert y.shape == (2, 2, 64, 64) and y.abs().max() <= 1
    try:
        g(torch.randn(1, 1, 48, 48))
    except ValueError as e:
        assert "divisible by 64" in str(e)
    else:
        raise AssertionError("expected a shape error")


def test_patchgan_is_70px_receptive_field():
    d = PatchDiscriminator(3, ndf=8, n_layers=3)
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # the reference's 30x30 map
    # receptive field: a pixel change far from an output patch must not change it
    x = torch.randn(1, 3, 256, 256)
    d.eval()
    base = d(x)
    x2 = x.clone()
    x2[..., 200:, 200:] += 5
    changed = (d(x2) - base).abs()[0, 0] > 1e-6
    assert not changed[:10, :10].any() and changed[-5:, -5:].any()


def test_dropout_sampling_gives_different_outputs():
    g = UNetGenerator(1, 3, num_downs=8, ngf=4, dropout=0.5)
    enable_dropout_sampling(g)
    x = torch.randn(1, 1, 256, 256)
    assert not torch.allclose(g(x), g(x))
    g.eval()
    assert torch.allclose(g(x), g(x))

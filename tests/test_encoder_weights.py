"""Pretrained building encoders: a local state-dict file (offline machines), the stem widened to
the SAR bands, and one clear error where the weights cannot be had (never a silent random init).
Nothing here downloads: "imagenet" is exercised with smp's loader made to fail as offline."""
from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch

from sarfusion.cli import main
from sarfusion.errors import InputError
from sarfusion.models.segmentation import build_segmentation_model, fit_stem, resolve_encoder_weights
from sarfusion.tasks.buildings import PRESETS

DECODER = (16, 16, 16, 8, 8)
STEM = "_conv_stem.weight"  # efficientnet-b0's first convolution in smp


@pytest.fixture(scope="module")
def rgb_encoder_file(tmp_path_factory):
    """A 3-band efficientnet-b0 encoder state dict on disk, as a user would export ImageNet weights."""
    torch.manual_seed(1)
    encoder = smp.encoders.get_encoder("efficientnet-b0", in_channels=3, weights=None)
    path = tmp_path_factory.mktemp("enc") / "efficientnet-b0_rgb.pt"
    torch.save(encoder.state_dict(), path)
    return path, encoder.state_dict()


def test_fit_stem_widens_rgb_kernels():
    w = torch.randn(8, 3, 3, 3)
    assert torch.equal(fit_stem(w, 3), w)
    four = fit_stem(w, 4)
    assert torch.equal(four[:, :3], w) and torch.equal(four[:, 3], w[:, 1])  # 4th band from green
    torch.testing.assert_close(fit_stem(w, 1)[:, 0], w.sum(dim=1))
    with pytest.raises(ValueError):
        fit_stem(torch.randn(8, 4, 3, 3), 4)


@pytest.mark.parametrize("mode, bands", [("sar4", 4), ("span", 1), ("fused", 3)])
def test_local_state_dict_initialises_the_encoder(rgb_encoder_file, mode, bands):
    path, ref = rgb_encoder_file
    state = resolve_encoder_weights("efficientnet-b0", str(path))
    model = build_segmentation_model("efficientnet-b0", mode, decoder_channels=DECODER, encoder_weights=state)
    got = model.encoder.state_dict()
    for key, value in ref.items():
        if key in got and key != STEM:
            assert torch.equal(got[key], value), key
    assert got[STEM].shape[1] == bands
    torch.testing.assert_close(got[STEM], fit_stem(ref[STEM], bands))
    # and it is a working network
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, bands, 64, 64)).shape == (1, 3, 64, 64)


def test_whole_model_checkpoint_with_encoder_prefix(tmp_path, rgb_encoder_file):
    _, ref = rgb_encoder_file
    whole = smp.Unet("efficientnet-b0", encoder_weights=None, in_channels=3, classes=1)
    whole.encoder.load_state_dict(ref)
    torch.save({"state_dict": whole.state_dict()}, tmp_path / "unet.pt")
    state = resolve_encoder_weights("efficientnet-b0", tmp_path / "unet.pt")
    model = build_segmentation_model("efficientnet-b0", "sar4", decoder_channels=DECODER, encoder_weights=state)
    assert torch.equal(model.encoder.state_dict()["_blocks.3._project_conv.weight"], ref["_blocks.3._project_conv.weight"])


def test_bad_weights_are_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="not found"):
        resolve_encoder_weights("efficientnet-b0", tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt: not a torch state dict"):
        resolve_encoder_weights("efficientnet-b0", tmp_path / "junk.pt")
    torch.save(smp.encoders.get_encoder("resnet18", in_channels=3, weights=None).state_dict(), tmp_path / "r18.pt")
    other = resolve_encoder_weights("efficientnet-b0", tmp_path / "r18.pt")
    with pytest.raises(InputError, match="do not fit this encoder"):
        build_segmentation_model("efficientnet-b0", "sar4", decoder_channels=DECODER, encoder_weights=other)
    assert resolve_encoder_weights("efficientnet-b0", "none") is None

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' (offline mode is enabled)")

    monkeypatch.setattr(smp.encoders, "get_encoder", offline)
    full = PRESETS["full"]
    assert full.encoder_weights == "imagenet"
    with pytest.raises(InputError, match=r"ImageNet weights of efficientnet-b5 .*--encoder-weights PATH"):
        resolve_encoder_weights(full.encoder, full.encoder_weights)


def test_cli_fails_before_any_work_on_missing_weights(tmp_path, capsys):
    rc = main(["buildings", "train", "--aoi", str(tmp_path / "no_aoi"), "--weights", str(tmp_path / "w"),
               "--encoder-weights", str(tmp_path / "nowhere.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "nowhere.pt" in err[-1] and "encoder weights file not found" in err[-1]
    assert not (tmp_path / "w").exists()

"""Every model loader puts its network on the GPU when there is one.

CUDA is mocked only at the device-selection boundary: ``torch.cuda.is_available`` says yes and
``nn.Module.to`` records where a network is sent instead of moving it (there is no GPU here).
The real CUDA path is exercised on a lent GPU machine; this test pins the choice itself.
"""
from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
from torch import nn

from sarfusion.engine import inference_autocast, select_device


@pytest.fixture
def cuda_claimed(monkeypatch):
    """``torch.cuda.is_available() -> True``; returns the list of devices networks were sent to."""
    sent: list[torch.device] = []
    real_to = nn.Module.to

    def record_to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        if isinstance(target, (str, torch.device)):
            sent.append(torch.device(target))
            return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(nn.Module, "to", record_to)
    return sent


def test_select_device_prefers_cuda_and_the_local_rank(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device() == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device() == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert select_device() == torch.device("cuda", 1)  # one GPU per torchrun process
    assert select_device("cpu") == torch.device("cpu")  # an explicit --device wins


def test_inference_autocast_is_half_precision_on_cuda_only(monkeypatch):
    with inference_autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # autocast disables itself without
    with inference_autocast(torch.device("cuda", 0)):
        assert torch.is_autocast_enabled("cuda")
        assert torch.get_autocast_dtype("cuda") == torch.float16


def test_building_models_load_onto_the_gpu(tmp_path, cuda_claimed):
    from sarfusion.models.segmentation import build_segmentation_model
    from sarfusion.tasks.buildings import _load_model

    net = build_segmentation_model("efficientnet-b0", "sar4", decoder_channels=(16, 16, 16, 8, 8))
    path = tmp_path / "buildings_fold0.pt"
    torch.save({"encoder": "efficientnet-b0", "input_mode": "sar4", "decoder_channels": (16, 16, 16, 8, 8),
                "state_dict": net.state_dict(), "stats": {"mean": [0.0] * 4, "std": [1.0] * 4}}, path)
    _load_model(path)
    assert cuda_claimed and cuda_claimed[-1].type == "cuda"
    _load_model(path, device="cpu")
    assert cuda_claimed[-1].type == "cpu"


def test_colorizer_and_translator_load_onto_the_gpu(tmp_path, cuda_claimed):
    from sarfusion.models.pix2pix import UNetGenerator
    from sarfusion.tasks import colorize, translate

    ccfg = colorize.PRESETS["demo"]
    gen = UNetGenerator(1, 2, ccfg.net.num_downs, ccfg.net.ngf, ccfg.net.dropout)
    (tmp_path / "c").mkdir()
    torch.save({"config": asdict(ccfg), "in_channels": 1, "out_channels": 2, "generator": gen.state_dict()},
               tmp_path / "c" / colorize.WEIGHTS_NAME)
    colorize.load_colorizer(tmp_path / "c")
    assert cuda_claimed[-1].type == "cuda"

    tcfg = translate.PRESETS["demo"]
    gen = UNetGenerator(1, 3, tcfg.net.num_downs, tcfg.net.ngf, tcfg.net.dropout)
    (tmp_path / "t" / "sen12").mkdir(parents=True)
    torch.save({"config": asdict(tcfg), "kind": "sen12", "in_channels": 1, "out_channels": 3,
                "generator": gen.state_dict()}, tmp_path / "t" / "sen12" / translate.WEIGHTS_NAME)
    translate.load_translator(tmp_path / "t", "sen12")
    assert cuda_claimed[-1].type == "cuda"

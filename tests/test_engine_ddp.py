"""The engine's DistributedDataParallel path, launched by torchrun with 2 CPU processes (gloo)."""
import subprocess
import sys
import textwrap

import torch

DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from torch import nn
    from sarfusion.engine import Engine, EngineConfig

    class Points(torch.utils.data.Dataset):
        def __len__(self): return 16
        def __getitem__(self, i):
            x = torch.full((2,), float(i))
            return {"x": x, "y": x.sum(), "idx": torch.tensor(i)}

    out = sys.argv[1]
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    engine = Engine(out, EngineConfig(max_steps=6, batch_size=2, checkpoint_every=3, log_every=3),
                    {"net": model}, {"opt": torch.optim.SGD(model.parameters(), lr=1e-3)})
    seen = []
    def step(ctx, batch):
        seen.extend(batch["idx"].tolist())
        loss = ((ctx.models["net"](batch["x"]).squeeze(1) - batch["y"]) ** 2).mean()
        ctx.backward(loss, "opt")
        return {"loss": loss.item()}
    engine.fit(engine.make_loader(Points()), step)
    rank = int(os.environ["RANK"])
    torch.save({"state": engine.unwrap("net").state_dict(), "seen": seen,
                "wrapped": type(engine.wrapped["net"]).__name__}, f"{out}/rank{rank}.pt")
""")


def test_torchrun_two_processes_stay_in_sync(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                          str(script), str(tmp_path)], capture_output=True, text=True, timeout=240,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["wrapped"] == "DistributedDataParallel"
    for k in r0["state"]:
        torch.testing.assert_close(r0["state"][k], r1["state"][k], rtol=0, atol=0)
    # each rank saw its own half of every epoch
    assert set(r0["seen"][:8]).isdisjoint(r1["seen"][:8])
    assert sorted(r0["seen"][:8] + r1["seen"][:8]) == list(range(16))
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 6
    # every rank's own generators (seeded seed + rank), so a resumed rank 1 continues rank 1's streams
    rngs = ckpt["rng_by_rank"]
    assert len(rngs) == 2 and not torch.equal(rngs[0]["torch"], rngs[1]["torch"])


BUILDINGS_DDP_SCRIPT = textwrap.dedent("""
    import dataclasses, json, os, sys
    from pathlib import Path
    import sarfusion.engine as E
    from sarfusion.tasks import buildings as B
    from sarfusion.config import choose_preset
    from sarfusion.datasets.sn6_buildings import AugmentParams

    aoi, out = Path(sys.argv[1]), Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    writes = out / f"writes{rank}.txt"

    def logged(fn):
        def wrapper(obj, path, *a, **k):
            with open(writes, "a") as f:
                f.write(str(path) + "\\n")
            return fn(obj, path, *a, **k)
        return wrapper

    E.save_torch_atomic = logged(E.save_torch_atomic)
    E.save_config = logged(E.save_config)
    cfg = dataclasses.replace(
        choose_preset(B.PRESETS, "demo"), decoder_channels=(16, 16, 16, 8, 8), folds=2, fold_gap_m=0.0,
        engine=E.EngineConfig(max_steps=2, batch_size=2, checkpoint_every=1, log_every=1),
        augment=AugmentParams(crop=64, scale=(0.9, 1.1), rotate_deg=3.0), calibrate_tiles=3,
        area_steps=2, area_batch_size=2, area_crop=64)
    B.train_buildings(aoi, out / "w", config=cfg, work_dir=out / "runs")
    (out / f"rank{rank}.json").write_text(json.dumps(dataclasses.asdict(cfg.watershed)))
""")


def test_torchrun_buildings_training_writes_on_rank_0_and_calibrates_alike(tmp_path):
    """Two ranks train the folds (DDP), share the validation and calibration tiles, choose the
    same thresholds, and only rank 0 writes weights, config and report."""
    from sarfusion.synth.sn6 import generate_sn6

    scene = generate_sn6(tmp_path / "sn6", tiles=6, size=160, seed=3)
    script = tmp_path / "ddp_buildings.py"
    script.write_text(BUILDINGS_DDP_SCRIPT)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519",
                          str(script), str(scene["train_aoi"]), str(tmp_path)], capture_output=True, text=True,
                         timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    import json
    assert json.loads((tmp_path / "rank0.json").read_text()) == json.loads((tmp_path / "rank1.json").read_text())
    assert not (tmp_path / "writes1.txt").exists()  # rank 1 wrote no weights, checkpoints or configs
    written = (tmp_path / "writes0.txt").read_text().split()
    assert any(w.endswith("buildings_fold1.pt") for w in written) and any(w.endswith("buildings_config.json")
                                                                          for w in written)
    report = json.loads((tmp_path / "w" / "buildings_train_report.json").read_text())
    assert len(report["folds"]) == 2 and report["calibration"]["tiles"]

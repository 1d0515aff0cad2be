"""The shared engine: a real SIGKILL mid-training, then resume from the checkpoint."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import torch

TRAIN_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from torch import nn
    from sarfusion.engine import Engine, EngineConfig

    class Points(torch.utils.data.Dataset):
        def __len__(self): return 24
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            x = torch.randn(3, generator=g)
            return {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3, "meta": {"i": i}}

    run_dir, sleep_s = sys.argv[1], float(sys.argv[2])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    engine = Engine(run_dir, EngineConfig(max_steps=40, batch_size=4, checkpoint_every=5, log_every=5, seed=3),
                    {"net": model}, {"opt": opt})

    def step(ctx, batch):
        time.sleep(sleep_s)
        with ctx.autocast():
            loss = ((ctx.models["net"](batch["x"]).squeeze(1) - batch["y"]) ** 2).mean()
        ctx.backward(loss, "opt")
        return {"loss": loss.item()}

    engine.fit(engine.make_loader(Points()), step)
    torch.save(engine.unwrap("net").state_dict(), run_dir + "/final.pt")
""")


def _start(script, run_dir, sleep_s):
    return subprocess.Popen([sys.executable, str(script), str(run_dir), str(sleep_s)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_run_resumes_from_checkpoint_and_matches_uninterrupted(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)

    reference = tmp_path / "reference"
    assert _start(script, reference, 0).wait(timeout=120) == 0

    interrupted = tmp_path / "interrupted"
    proc = _start(script, interrupted, 0.15)
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpt = interrupted / "checkpoint.pt"
        if ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] >= 10:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(interrupted / "checkpoint.pt", weights_only=False)["step"]
    assert 10 <= killed_at < 40, "the run should have been killed mid-way"
    assert not (interrupted / "final.pt").exists()

    assert _start(script, interrupted, 0).wait(timeout=120) == 0
    steps = [json.loads(line)["step"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 41, 5)), "each step logged once: the resumed run continued from the checkpoint"

    ref = torch.load(reference / "final.pt")
    got = torch.load(interrupted / "final.pt")
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0)


def test_resumable_sampler_is_seeded_and_splits_ranks():
    from sarfusion.engine import ResumableSampler
    a = ResumableSampler(10, seed=1)
    a.set_epoch(2)
    b = ResumableSampler(10, seed=1)
    b.set_epoch(2, start=4)
    assert list(b) == list(a)[4:]
    assert sorted(a) == list(range(10))
    r0, r1 = ResumableSampler(10, 1, rank=0, world=2), ResumableSampler(10, 1, rank=1, world=2)
    assert sorted(list(r0) + list(r1)) == list(range(10))


def test_datasets_are_told_the_epoch_also_after_resume(tmp_path):
    from torch import nn

    from sarfusion.engine import Engine, EngineConfig

    class Epochs(torch.utils.data.Dataset):
        def __init__(self):
            self.epochs = []
        def set_epoch(self, epoch):
            self.epochs.append(epoch)
        def __len__(self):
            return 4
        def __getitem__(self, i):
            return {"x": torch.ones(1)}

    def run(max_steps):
        net = nn.Linear(1, 1)
        engine = Engine(tmp_path, EngineConfig(max_steps=max_steps, batch_size=2, checkpoint_every=1),
                        {"net": net}, {"opt": torch.optim.SGD(net.parameters(), lr=0.1)})
        data = Epochs()
        def step(ctx, batch):
            loss = ctx.models["net"](batch["x"]).sum()
            ctx.backward(loss, "opt")
            return {"loss": loss.item()}
        engine.fit(engine.make_loader(data), step)
        return data.epochs

    assert run(5) == [0, 1, 2]  # 2 batches per epoch
    assert run(7) == [2, 3]  # resumed at step 5: the middle of epoch 2


def test_a_run_trained_with_other_settings_is_not_resumed(tmp_path, caplog):
    """Weights left by another recipe (an older version, other settings) start afresh, the old run
    kept aside; a longer run of the same recipe resumes."""
    from dataclasses import dataclass, field
    from torch import nn
    from sarfusion.engine import Engine, EngineConfig

    @dataclass
    class Task:
        engine: EngineConfig = field(default_factory=lambda: EngineConfig(max_steps=2, batch_size=2, checkpoint_every=1))
        width: int = 4

    def run(task: Task) -> Engine:
        model = nn.Linear(2, 1)
        eng = Engine(tmp_path / "run", task.engine, {"m": model}, {"m": torch.optim.SGD(model.parameters(), lr=0.1)},
                     task_config=task)
        data = torch.utils.data.TensorDataset(torch.ones(8, 2))

        def step(ctx, batch):
            loss = ctx.models["m"](batch[0]).pow(2).mean()
            ctx.backward(loss, "m")
            return {"loss": loss.item()}

        eng.fit(eng.make_loader(data, shuffle=False), step)
        return eng

    run(Task())
    longer = Task(engine=EngineConfig(max_steps=4, batch_size=2, checkpoint_every=1))
    with caplog.at_level("INFO"):
        run(longer)
    assert "resumed" in caplog.text and "starting afresh" not in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        eng = run(Task(engine=longer.engine, width=8))
    assert "starting afresh" in caplog.text and "resumed" not in caplog.text
    assert eng.step == 4 and (tmp_path / "run" / "stale" / "checkpoint.pt").is_file()


def test_loader_processes_are_capped_by_the_cores_of_this_process(tmp_path, monkeypatch):
    from torch import nn

    import sarfusion.engine as E

    net = nn.Linear(1, 1)
    engine = E.Engine(tmp_path, E.EngineConfig(num_workers=10), {"net": net},
                      {"opt": torch.optim.SGD(net.parameters(), lr=0.1)})
    data = torch.utils.data.TensorDataset(torch.zeros(8, 1))
    monkeypatch.setattr(E.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert engine.make_loader(data).num_workers == 10  # 15 usable
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, 4 ranks on this node: 4 cores each
    assert E.usable_workers() == 3
    assert engine.make_loader(data).num_workers == 3
    monkeypatch.setattr(E.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert engine.make_loader(data).num_workers == 0  # one core: the main process loads


class _EpochSamples(torch.utils.data.Dataset):
    """Each sample says which epoch its copy of the dataset was told."""

    def __init__(self):
        self.epoch = -1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return {"x": torch.tensor([float(self.epoch), float(i)])}


def test_loader_workers_live_across_epochs_and_still_see_each_epoch(tmp_path):
    from torch import nn

    from sarfusion.engine import Engine, EngineConfig

    def run(workers):
        seen = []
        net = nn.Linear(2, 1)
        engine = Engine(tmp_path / f"w{workers}", EngineConfig(max_steps=9, batch_size=2, num_workers=workers,
                                                               checkpoint_every=100),
                        {"net": net}, {"opt": torch.optim.SGD(net.parameters(), lr=0.0)})
        loader = engine.make_loader(_EpochSamples())

        def step(ctx, batch):
            seen.extend(tuple(r) for r in batch["x"].tolist())
            loss = ctx.models["net"](batch["x"]).sum()
            ctx.backward(loss, "opt")
            return {"loss": loss.item()}

        engine.fit(loader, step)
        return loader, seen

    loader, with_workers = run(2)
    assert loader.num_workers >= 1 and loader.persistent_workers
    _, in_process = run(0)
    assert with_workers == in_process  # same (epoch, index) samples in the same order
    assert sorted({int(e) for e, _ in with_workers}) == [0, 1, 2]  # 3 batches an epoch, 9 steps


_SHARED: dict = {}


def _share(value: int) -> None:
    _SHARED["offset"] = value


def _offset_and_pid(x: int) -> tuple[int, int]:
    return x + _SHARED["offset"], os.getpid()


def test_map_processes_keeps_the_order_and_gives_each_worker_the_shared_inputs(monkeypatch):
    import sarfusion.engine as E

    monkeypatch.setattr(E.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    out = E.map_processes(_offset_and_pid, list(range(40)), _share, (100,))
    assert [v for v, _ in out] == list(range(100, 140))
    assert os.getpid() not in {pid for _, pid in out}  # two cores: forked workers did the work
    assert "offset" not in _SHARED  # the initializer ran there, not here
    monkeypatch.setattr(E.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    out = E.map_processes(_offset_and_pid, [1, 2], _share, (5,))
    assert out == [(6, os.getpid()), (7, os.getpid())]  # one core: here, in order

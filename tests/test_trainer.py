"""The shared fit loop on a toy task: artefacts, reproducibility, resume and the NaN guard."""

import json
import os
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.runtime import EpochSampler, RunConfig, cosine_lr, resolve_device, setup_runtime
from engine.trainer import Evaluation, Trainer, TrainingDiverged
from utils.checkpoint import load_checkpoint_file
from utils.config import load_config
from utils.errors import ConfigError, Interrupted

class NoisyPoints(torch.utils.data.Dataset):
    """y = x . w + noise, with a per-(seed, epoch, item) random perturbation like the real datasets."""

    def __init__(self, n=96, seed=0):
        rng = np.random.default_rng(123)
        self.x = rng.normal(size=(n, 8)).astype(np.float32)
        self.y = (self.x @ rng.normal(size=8) + 0.1 * rng.normal(size=n)).astype(np.float32)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        x = self.x[i] + rng.normal(scale=0.01, size=8).astype(np.float32)
        return {"x": torch.from_numpy(x), "y": torch.tensor(self.y[i])}


class Regression(nn.Module):
    def __init__(self, nan_at_step=None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
        self.nan_at_step, self.calls = nan_at_step, 0

    def forward(self, batch):
        self.calls += 1
        loss = ((self.net(batch["x"]).squeeze(1) - batch["y"]) ** 2).mean()
        if self.nan_at_step is not None and self.calls >= self.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss, "loss_mse": loss.detach(), "weight_mse": torch.tensor(1.0)}


def make_cfg(tmp_path, *overrides):
    return load_config(None, [f"out={tmp_path}", "device=cpu", "optim.epochs=3", "optim.batch_size=16",
                              "train.num_workers=0", "train.log_every=2", "optim.lr=0.01", *overrides],
                       schema=RunConfig)


def evaluation_for(dataset):
    def mse(model):
        model.eval()
        with torch.no_grad():
            x, y = torch.from_numpy(dataset.x), torch.from_numpy(dataset.y)
            return {"neg_mse": -float(((model.net(x).squeeze(1) - y) ** 2).mean())}
    return Evaluation(validate=mse, test=mse, select_metric="neg_mse")


def run(cfg, make_module=Regression):
    runtime = setup_runtime(cfg)  # seeds, so every run builds the same initial weights
    dataset = NoisyPoints(seed=cfg.seed)
    trainer = Trainer(cfg, runtime, make_module(), dataset, evaluation_for(dataset), cfg.out)
    return trainer, trainer.fit()


def test_a_run_writes_its_artefacts_and_learns(tmp_path):
    trainer, result = run(make_cfg(tmp_path))
    for name in ("config.yaml", "metrics.json", "last.pt", "best.pt", "curves.csv", "curves.png"):
        assert (tmp_path / name).exists(), name
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert metrics["epochs"][-1]["train"]["loss"] < metrics["epochs"][0]["train"]["loss"]
    assert metrics["test"]["selected_epoch"] == metrics["best"]["epoch"]
    assert metrics["best"]["value"] == max(e["val"]["neg_mse"] for e in metrics["epochs"])
    checkpoint = load_checkpoint_file(tmp_path / "last.pt")
    assert checkpoint["epoch"] == 3 and checkpoint["step"] == 3 * (96 // 16)


def test_the_same_seed_twice_gives_identical_metrics(tmp_path):
    run(make_cfg(tmp_path / "a"))
    run(make_cfg(tmp_path / "b"))
    first, second = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    strip = lambda m: [{k: v for k, v in e.items() if k != "seconds"} for e in m["epochs"]]  # noqa: E731
    assert strip(first) == strip(second) and first["test"] == second["test"]


class Crash(Exception):
    pass


class CrashingRegression(Regression):
    def __init__(self, crash_at_call):
        super().__init__()
        self.crash_at_call = crash_at_call

    def forward(self, batch):
        if self.calls + 1 == self.crash_at_call:
            raise Crash()
        return super().forward(batch)


@pytest.mark.parametrize("crash_at_call", [8, 10])  # inside epoch 2: after a mid-epoch save, or after an epoch end
def test_resume_mid_epoch_ends_with_identical_weights(tmp_path, crash_at_call):
    straight, _ = run(make_cfg(tmp_path / "straight", "train.checkpoint_every_steps=4"))
    with pytest.raises(Crash):
        run(make_cfg(tmp_path / "resumed", "train.checkpoint_every_steps=4"),
            lambda: CrashingRegression(crash_at_call))
    resumed, _ = run(make_cfg(tmp_path / "resumed", "train.checkpoint_every_steps=4", "resume=auto"))
    for (name, a), b in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.state.step == straight.state.step
    history = lambda t: [{k: v for k, v in e.items() if k != "seconds"} for e in t.state.history]  # noqa: E731
    assert history(resumed) == history(straight)


def test_a_signal_during_validation_keeps_the_epoch_and_the_resumed_run_ends_identical(tmp_path):
    """last.pt is saved before an epoch's validation: SIGTERM in the second validation keeps epoch 2, and the
    resumed run validates it then and ends as the uninterrupted run (weights, history, best epoch, test)."""
    straight, straight_result = run(make_cfg(tmp_path / "straight"))
    cfg = make_cfg(tmp_path / "stopped")
    runtime = setup_runtime(cfg)
    dataset = NoisyPoints(seed=cfg.seed)
    evaluation = evaluation_for(dataset)
    validations = []

    def validate(model):
        validations.append(True)
        if len(validations) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return evaluation_for(dataset).validate(model)

    evaluation.validate = validate
    with pytest.raises(Interrupted, match=r"SIGTERM during validation; .*last.pt holds step 12\."):
        Trainer(cfg, runtime, Regression(), dataset, evaluation, cfg.out).fit()
    checkpoint = load_checkpoint_file(tmp_path / "stopped" / "last.pt")
    assert (checkpoint["epoch"], checkpoint["step"], len(checkpoint["history"])) == (2, 12, 1)
    assert checkpoint["unvalidated"]["epoch"] == 2 and "val" not in checkpoint["unvalidated"]
    resumed, resumed_result = run(make_cfg(tmp_path / "stopped", "resume=auto"))
    for (name, a), b in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), name
    history = lambda t: [{k: v for k, v in e.items() if k != "seconds"} for e in t.state.history]  # noqa: E731
    assert history(resumed) == history(straight) and len(history(resumed)) == 3
    assert resumed_result["best_epoch"] == straight_result["best_epoch"]
    assert resumed_result["test"] == straight_result["test"]


def test_run_files_follow_the_umask(tmp_path):
    """0664 under umask 002 (a lab's shared group), as files made by open(); mkstemp alone would give 0600."""
    previous = os.umask(0o002)
    try:
        run(make_cfg(tmp_path, "optim.epochs=1"))
    finally:
        os.umask(previous)
    for name in ("last.pt", "best.pt", "metrics.json", "config.yaml", "curves.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o664, name


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="NaN/Inf at step 9"):
        run(make_cfg(tmp_path), lambda: Regression(nan_at_step=9))  # epoch 2, step 3
    checkpoint = load_checkpoint_file(tmp_path / "last.pt")
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


def test_cosine_schedule_is_stepped_in_iterations():
    lrs = [cosine_lr(s, 100, 1.0, 0.0, 0) for s in range(101)]
    assert lrs[0] == 1.0 and lrs[50] == pytest.approx(0.5) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # one half cosine: never cycles back up
    assert cosine_lr(0, 100, 1.0, 0.0, 10) == pytest.approx(0.1)


def test_epoch_sampler_skips_exactly_the_consumed_samples():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, skip=4)
    assert list(sampler) == full[4:] and len(sampler) == 6
    ranks = [EpochSampler(10, seed=3, rank=r, world_size=3) for r in range(3)]
    shares = [list(s) for s in ranks]
    assert all(len(s) == 4 for s in shares) and set(sum(shares, [])) == set(range(10))


def test_asking_for_cuda_without_it_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


class OwnBackward(Regression):
    """A task that runs its own backward (as a gradient-based weighter does) and asks for parameter groups."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.backward_calls = 0

    def forward(self, batch):
        out = super().forward(batch)
        out["loss"] = out["loss"] * self.scale
        return out

    def backward_step(self, outputs, backward):
        self.backward_calls += 1
        backward(outputs["loss"], inputs=list(self.net.parameters()))  # the scale gets no gradient

    def param_groups(self):
        return [{"params": list(self.net.parameters())}, {"params": [self.scale], "weight_decay": 0.0}]


def test_a_task_can_own_its_backward_and_its_parameter_groups(tmp_path):
    cfg = make_cfg(tmp_path, "optim.weight_decay=0.5", "optim.epochs=1")
    train_set, task = NoisyPoints(), OwnBackward()
    trainer = Trainer(cfg, setup_runtime(cfg), task, train_set, evaluation_for(train_set), tmp_path)
    assert [group["weight_decay"] for group in trainer.optimizer.param_groups] == [0.5, 0.0]
    before = task.net[0].weight.detach().clone()
    trainer.fit()
    assert task.backward_calls == trainer.steps_per_epoch
    assert task.scale.item() == 1.0 and not torch.equal(before, task.net[0].weight)


def test_compiled_steps_match_eager(tmp_path):
    """train.compile=true (inductor on the CPU) trains the same weights as eager, to float rounding. (Without
    dropout: compiled code draws its random masks from another generator.)"""
    weights = {}
    for compiled in (False, True):
        cfg = make_cfg(tmp_path / str(compiled), "optim.epochs=1", "train.max_steps_per_epoch=3",
                       f"train.compile={str(compiled).lower()}")
        train_set, task = NoisyPoints(), Regression()
        task.net[2].p = 0.0
        torch.manual_seed(0)
        task.net.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Linear) else None)
        Trainer(cfg, setup_runtime(cfg), task, train_set, Evaluation(), tmp_path / str(compiled)).fit()
        weights[compiled] = [p.detach().clone() for p in task.parameters()]
    for eager, compiled in zip(weights[False], weights[True]):
        torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


HOST_READS = ("item", "__int__", "__float__", "__bool__", "cpu")
# Where the trainer reads values on the host on purpose: the log points (with the NaN check), the epoch's end,
# checkpoints; and the data loader, which works on the host anyway.
ALLOWED = {"_log_window", "_check_finite", "_epoch_means", "save", "_get_iterator", "_next_data", "_stop_agreed"}


def test_steps_between_log_points_never_read_device_values(tmp_path, monkeypatch):
    """Every host read of a tensor inside the training loop happens at a log point, the epoch's end or a
    checkpoint save: the steps between run without a device-to-host synchronisation."""
    import inspect

    offending = []
    cfg = make_cfg(tmp_path, "train.log_every=3", "optim.epochs=2")
    train_set, task = NoisyPoints(), Regression()
    trainer = Trainer(cfg, setup_runtime(cfg), task, train_set, evaluation_for(train_set), tmp_path)
    # Adam keeps its step counts on the CPU whatever the device (reading them never waits for the GPU).
    adam_steps = lambda: [state["step"] for state in trainer.optimizer.state.values()]  # noqa: E731

    def watch(name, original):
        def guarded(self, *args, **kwargs):
            frames = {frame.function for frame in inspect.stack(context=0)[1:]}
            if ("_train_epoch" in frames and not frames & ALLOWED
                    and not any(self is step for step in adam_steps())):
                offending.append((name, inspect.stack(context=0)[1].function))
            return original(self, *args, **kwargs)
        return guarded

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, watch(name, getattr(torch.Tensor, name)))
    trainer.fit()
    monkeypatch.undo()
    assert trainer.state.step == 12 and offending == []

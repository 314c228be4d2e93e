"""No host synchronisation in a pretraining step: model forward, objective and weighter, backward, Adam.

On CUDA, reading a device tensor's value on the host (`.item()`, `int()`, `float()`, `bool()`, `.cpu()`, a
boolean-mask index, ...) waits for every queued kernel, so the CPU can no longer run ahead of the GPU. Here,
on the CPU, those conversions are patched to raise while a few training steps run, for every weighter, and
so are the ops whose output size depends on tensor values (CUDA reads that size on the host): boolean-mask
indexing, nonzero, masked_select, unique, bincount. The one exception is Adam's step counter, which torch keeps
on the host on purpose (a CPU tensor even for CUDA parameters), so reading it costs no sync. Syncs inside
other C++ ops are not visible from here; on a GPU the last test (and `python -m bench.pretrain_step
--sync-debug` at full size) runs the step under torch.cuda.set_sync_debug_mode("error"), which sees them all.
"""

from __future__ import annotations

import pytest
import torch

from losses.objective import PretrainObjective
from losses.weighting import WEIGHTERS
from models.adacrossnet import AdaCrossNet
from models.common import image_projection_head, point_projection_head
from models.dgcnn import DGCNN
from models.image_encoder import ImageEncoder
from tasks.pretrain import ContrastivePretraining

# .numpy() is left out: on a CUDA tensor it is an error, never a silent sync, and the CPU kNN selection uses it.
HOST_READS = ("item", "__int__", "__float__", "__bool__", "__index__", "cpu", "tolist")
VALUE_SIZED = ("nonzero", "masked_select", "unique", "bincount")
WEIGHTING = {  # convergence: past its warm-up within the steps below
    "static": {}, "adacrossnet": {}, "convergence": {"window": 2, "warmup_steps": 3}, "dwa": {}, "uncertainty": {},
    "gradnorm": {},
}
STEPS = 5


def forbid_host_reads(monkeypatch, allowed) -> list[str]:
    """Patch the host reads and value-sized ops to record and raise, except on the tensors `allowed()` returns."""
    calls = []

    def refuse(what):
        calls.append(what)
        raise AssertionError(f"host sync inside the training step: {what}")

    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def guard(self, *args, _name=name, _original=original, **kwargs):
            if not any(self is tensor for tensor in allowed()):
                refuse(f"Tensor.{_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guard)
    for owner in (torch, torch.Tensor):
        for name in VALUE_SIZED:
            if hasattr(owner, name):
                monkeypatch.setattr(owner, name, lambda *args, _name=name, **kwargs: refuse(_name))
    for name in ("__getitem__", "__setitem__", "index_put_"):
        original = getattr(torch.Tensor, name)

        def guard_index(self, index, *args, _name=name, _original=original, **kwargs):
            parts = index if isinstance(index, (tuple, list)) else (index,)
            if any(isinstance(part, torch.Tensor) and part.dtype == torch.bool for part in parts):
                refuse(f"boolean-mask Tensor.{_name}")
            return _original(self, index, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guard_index)
    return calls


def build(weighting: str):
    """The pretraining task (model + objective, the weighter attached to its shared layers) and Adam."""
    torch.manual_seed(0)
    model = AdaCrossNet(DGCNN(k=4, emb_dims=32), point_projection_head(64, 32, 16),
                        ImageEncoder("resnet18"), image_projection_head(512, 32, 16),
                        ImageEncoder("resnet18", in_channels=1), image_projection_head(512, 32, 16))
    objective = PretrainObjective(weighter=WEIGHTERS[weighting](PretrainObjective.names, **WEIGHTING[weighting]))
    task = ContrastivePretraining(model, objective)
    return task, torch.optim.Adam(task.param_groups(), lr=1e-3)


def step(task, optimizer, batch) -> dict:
    """One training step as the trainer runs it: forward, the task's own backward, the optimiser."""
    out = task(dict(zip(("points1", "points2", "image", "gray"), batch)))
    optimizer.zero_grad(set_to_none=True)
    task.backward_step(out, lambda tensor, inputs=None: tensor.backward(inputs=inputs))
    optimizer.step()
    return out


def test_every_weighter_is_covered():
    assert set(WEIGHTING) == set(WEIGHTERS)


@pytest.mark.parametrize("weighting", sorted(WEIGHTING))
def test_pretraining_steps_never_read_device_values(monkeypatch, weighting):
    task, optimizer = build(weighting)
    task.train()
    g = torch.Generator().manual_seed(1)
    batch = (torch.rand(3, 24, 3, generator=g), torch.rand(3, 24, 3, generator=g),
             torch.randn(3, 3, 32, 32, generator=g), torch.randn(3, 1, 32, 32, generator=g))
    adam_steps = lambda: [state["step"] for state in optimizer.state.values() if "step" in state]  # noqa: E731
    calls = forbid_host_reads(monkeypatch, adam_steps)
    for _ in range(STEPS):
        out = step(task, optimizer, batch)
    monkeypatch.undo()
    assert calls == []
    assert torch.isfinite(out["loss"])
    if weighting in ("convergence", "gradnorm"):  # the weights moved (convergence: after its warm-up)
        assert not torch.equal(task.objective.weighter.current(), torch.ones(2, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("weighting", sorted(WEIGHTING))
def test_pretraining_steps_on_cuda_never_sync(weighting):
    """The same steps on a GPU under bf16 autocast, with every synchronising CUDA call turned into an error
    (after a first step, in which Adam creates its state)."""
    task, optimizer = build(weighting)
    task.cuda().train()
    g = torch.Generator().manual_seed(1)
    host = (torch.rand(3, 24, 3, generator=g), torch.rand(3, 24, 3, generator=g),
            torch.randn(3, 3, 32, 32, generator=g), torch.randn(3, 1, 32, 32, generator=g))
    batch = [t.pin_memory().cuda(non_blocking=True) for t in host]
    for step in range(STEPS):
        if step == 1:
            torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = task(dict(zip(("points1", "points2", "image", "gray"), batch)))
            optimizer.zero_grad(set_to_none=True)
            task.backward_step(out, lambda tensor, inputs=None: tensor.backward(inputs=inputs))
            optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out["loss"]).item()

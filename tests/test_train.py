"""train.py end to end on tiny synthetic data: artefacts, determinism, SIGKILL + resume, errors, torchrun."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from utils.checkpoint import load_checkpoint_file

REPO = Path(__file__).resolve().parents[1]
# Small enough to take seconds on 2 cores, large enough to exercise every part of the method.
TINY = ["device=cpu", "data.num_points=128", "data.image_size=32", "model.point_backbone.k=8",
        "model.point_backbone.emb_dims=64", "model.proj_dim=32", "model.image_encoder.name=resnet18",
        "monitor.num_points=128", "optim.batch_size=8", "optim.epochs=2", "train.num_workers=0",
        "train.log_every=1", "train.eval_every=1", "weighting.warmup_steps=2", "weighting.window=2"]


def tiny_args(root, out, *extra):
    """The demo config at tiny size; an extra `weighting.name=...` replaces the demo's weighter and its keys."""
    tiny = TINY[:-2] if any(arg.startswith("weighting.name=") for arg in extra) else TINY
    return ["--config", str(REPO / "configs" / "demo.yaml"), f"data.root={root}", f"out={out}", *tiny, *extra]


def model_state(run_dir):
    return load_checkpoint_file(Path(run_dir) / "last.pt")["model"]


def test_a_short_run_writes_events_metrics_checkpoints_and_a_plot(synthetic_root, tmp_path, capsys):
    train.main(tiny_args(synthetic_root, tmp_path))
    for name in ("config.yaml", "metrics.json", "last.pt", "best.pt", "curves.csv", "curves.png"):
        assert (tmp_path / name).exists(), name
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2
    first = metrics["epochs"][0]
    assert {"loss", "loss_im", "loss_cm", "weight_im", "weight_cm"} <= set(first["train"])
    assert 0.0 <= first["val"]["svm_acc"] <= 1.0
    assert 0.0 <= metrics["random_init"]["svm_acc"] <= 1.0 and 0.0 <= metrics["test"]["svm_acc"] <= 1.0
    assert 0.0 <= metrics["random_init"]["svm_acc_bn_calibrated"] <= 1.0
    assert metrics["test"]["selected_epoch"] == metrics["best"]["epoch"]
    printed = capsys.readouterr().out
    assert "random init" in printed and "pretrained" in printed


def test_the_monitor_on_a_class_folder_tree(synthetic_root, tmp_path, capsys):
    """monitor.dataset=folder: best.pt is chosen on the val part carved from the tree's train folder, and the
    test folder is scored once (the synthetic ModelNet10-style tree of OFF meshes)."""
    result = train.main(tiny_args(synthetic_root, tmp_path, "optim.epochs=1", "monitor.dataset=folder",
                                  f"monitor.folder.root={synthetic_root / 'ModelNet10'}", "monitor.random_init=false"))
    assert 0.0 <= result["history"][0]["val"]["svm_acc"] <= 1.0 and 0.0 <= result["test"]["svm_acc"] <= 1.0
    assert "ModelNet10 linear SVM" in capsys.readouterr().out


def test_a_folder_monitor_without_its_root_is_one_line(synthetic_root, tmp_path):
    result = subprocess.run([sys.executable, "train.py", *tiny_args(synthetic_root, tmp_path, "monitor.dataset=folder")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: monitor.dataset=folder needs 'monitor.folder.root'")


def test_the_same_seed_twice_gives_identical_metrics_and_weights(synthetic_root, tmp_path):
    for run in ("a", "b"):
        train.main(tiny_args(synthetic_root, tmp_path / run, "optim.epochs=1", "train.num_workers=1"))
    a, b = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in "ab")
    for record in a["epochs"] + b["epochs"]:
        record.pop("seconds")
    assert a == b
    for (name, x), y in zip(model_state(tmp_path / "a").items(), model_state(tmp_path / "b").values()):
        assert torch.equal(x, y), name


def without_seconds(metrics: dict) -> dict:
    return {**metrics, "epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in metrics["epochs"]]}


def test_a_fresh_run_into_another_runs_folder_is_refused_or_replaces_it_whole(synthetic_root, tmp_path, capsys):
    """A fresh run never reports another run's numbers: refused in a folder holding a run, and with --overwrite
    the folder ends exactly as the same run in an empty folder (its own random-init baseline, epochs, curves,
    one TensorBoard log)."""
    first = tiny_args(synthetic_root, tmp_path / "r", "optim.epochs=1", "train.max_steps_per_epoch=1")
    other = ["optim.epochs=1", "train.max_steps_per_epoch=1", "seed=7", "model.point_backbone.emb_dims=32"]
    train.main(first)
    before = json.loads((tmp_path / "r" / "metrics.json").read_text())
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        train.main(tiny_args(synthetic_root, tmp_path / "r", *other))
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if "error:" in line] == [
        f"error: out={tmp_path / 'r'}: holds another run (best.pt, config.yaml, curves.csv, curves.png, ...); to "
        "continue it use resume=auto, to replace it overwrite=true (--overwrite), or give another out"]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text()) == before

    train.main([*tiny_args(synthetic_root, tmp_path / "r", *other), "--overwrite"])
    replaced_out = capsys.readouterr().out
    train.main(tiny_args(synthetic_root, tmp_path / "fresh", *other))
    fresh_out = capsys.readouterr().out
    replaced, fresh = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("r", "fresh"))
    assert replaced["random_init"] != before["random_init"]  # what the run printed as its own before the fix
    assert without_seconds(replaced) == without_seconds(fresh)
    baseline = [line for line in replaced_out.splitlines() if "random init" in line]
    assert baseline and baseline == [line for line in fresh_out.splitlines() if "random init" in line]
    curves = [[{k: v for k, v in row.items() if k != "samples_per_s"}
               for row in csv.DictReader((tmp_path / run / "curves.csv").open())] for run in ("r", "fresh")]
    assert curves[0] == curves[1]
    assert len(list((tmp_path / "r" / "tensorboard").iterdir())) == 1


# One thread per process: two OpenMP teams of two threads on two cores wait on each other and run many times
# slower than one thread each.
SINGLE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_train(args, group=False):
    """train.py in a subprocess; with `group`, in its own session (process group), as a scheduler starts a job."""
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=SINGLE_THREAD, start_new_session=group)


def steps_logged(run_dir) -> int:
    curves = Path(run_dir) / "curves.csv"
    return max(0, len(curves.read_text().splitlines()) - 1) if curves.exists() else 0


def children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


# name: (the signal sent to the run's whole process group, SIGKILL one DataLoader worker first)
STOPS = {"SIGKILL": (signal.SIGKILL, False), "SIGTERM": (signal.SIGTERM, False), "SIGINT": (signal.SIGINT, False),
         "SIGTERM, a worker killed": (signal.SIGTERM, True)}


@pytest.mark.slow
def test_runs_stopped_by_sigkill_sigterm_or_sigint_resume_bit_identical(synthetic_root, tmp_path):
    """Each signal goes to the run's whole process group, DataLoader workers included, as a terminal's Ctrl-C or a
    cluster scheduler sends it. SIGKILL: the last checkpoint loads. SIGTERM / SIGINT: one line with the resume
    hint, exit 143 / 130, no temporary file, also when a worker died before (the OOM killer, say). Resumed, each
    ends with the weights and test metrics of the uninterrupted run."""
    # one image encoder instead of two: half the checkpoint, saved after every step
    args = lambda out, *extra: tiny_args(synthetic_root, out, "optim.epochs=3",  # noqa: E731
                                         "train.checkpoint_every_steps=1", "model.gray_branch=false",
                                         "loss.cross_modal=mean", "train.num_workers=2", *extra)
    folder = {name: tmp_path / name.replace(", ", "_").replace(" ", "_") for name in STOPS}
    straight = run_train(args(tmp_path / "straight"))
    stopped = {name: run_train(args(folder[name]), group=True) for name in STOPS}
    pending = dict(stopped)
    deadline = time.time() + 300
    while pending and time.time() < deadline:
        for name, process in list(pending.items()):
            if steps_logged(folder[name]) >= 3 or process.poll() is not None:
                signum, kill_a_worker = STOPS[name]
                if kill_a_worker and process.poll() is None:
                    os.kill(children(process.pid)[0], signal.SIGKILL)
                os.killpg(process.pid, signum)
                del pending[name]
        time.sleep(0.05)
    assert not pending, "no run reached its third step in time"
    for name, process in stopped.items():
        _, err = process.communicate(timeout=300)
        out, signum = folder[name], STOPS[name][0]
        assert process.returncode == (-signum if signum == signal.SIGKILL else 128 + signum), (name, err[-2000:])
        assert load_checkpoint_file(out / "last.pt")["step"] < 9  # stopped before the end; it loads cleanly
        if signum == signal.SIGKILL:
            continue
        assert "Traceback" not in err, (name, err[-3000:])
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1 and f"interrupted by {signum.name} " in lines[0], (name, err[-2000:])
        assert f"resume=auto (out={out})" in lines[0]
        assert not list(out.glob(".*.tmp")), "a temporary file was left behind"
    resumed = {name: run_train(args(folder[name], "resume=auto")) for name in STOPS}
    for name, process in [("straight", straight), *resumed.items()]:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, (name, err[-2000:])
        if name != "straight":
            assert f"resumed from {folder[name] / 'last.pt'}" in err
    for name in STOPS:
        for (key, x), y in zip(model_state(tmp_path / "straight").items(), model_state(folder[name]).values()):
            assert torch.equal(x, y), (name, key)
        metrics = [json.loads((run / "metrics.json").read_text()) for run in (tmp_path / "straight", folder[name])]
        assert metrics[0]["test"] == metrics[1]["test"] and metrics[0]["best"] == metrics[1]["best"]


def test_a_diverging_run_stops_with_one_line_and_keeps_its_checkpoint(synthetic_root, tmp_path):
    # An absurd learning rate drives the weights to Inf within a few steps.
    process = run_train(tiny_args(synthetic_root, tmp_path, "optim.epochs=4", "optim.lr=1e30",
                                  "weighting.name=static"))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert "error: the loss became NaN/Inf" in err and "Traceback" not in err
    if (tmp_path / "last.pt").exists():  # an epoch may have ended before the loss blew up
        state = model_state(tmp_path)
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown key 'optim.lrr'"),
    ("device=cuda", "CUDA is not available"),
])
def test_config_mistakes_are_one_line_errors(synthetic_root, tmp_path, override, message):
    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    process = run_train(tiny_args(synthetic_root, tmp_path, override))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and message in err and "Traceback" not in err


def test_a_missing_data_root_is_one_line_naming_it(tmp_path):
    process = run_train(tiny_args(tmp_path / "nowhere", tmp_path / "out"))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "nowhere" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_processes_train_together_under_torchrun(synthetic_root, tmp_path):
    # Its own session: on a timeout the whole group (launcher and workers) is killed, none left behind.
    process = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py",
         *tiny_args(synthetic_root, tmp_path, "optim.epochs=1", "optim.batch_size=4")],
        cwd=REPO, env=SINGLE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        _, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate()
        pytest.fail(f"torchrun did not finish within 300 s: {err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # Each process takes half of the 26 objects: 13 // 4 = 3 steps per epoch, not the 6 of a single process.
    assert metrics["epochs"][0]["step"] == 3
    assert torch.isfinite(torch.tensor(metrics["epochs"][0]["train"]["loss"]))

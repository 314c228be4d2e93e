"""The downstream scripts end to end on tiny synthetic data (CPU): classification (linear SVM, few-shot, t-SNE),
part-seg and sem-seg fine-tuning, checkpoint interop, one-line errors, the multi-seed runner, 6-fold.

Every run is scaled down (128 points, k=8, a 64-d embedding, a few steps): these check the wiring and the
protocol, not the published numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import ModelNet40
from datasets.transforms import pretrain_augmentation
from downstream.classification import main as classification
from downstream.segmentation import main_partseg, main_semseg
from engine import evaluate
from tasks import classification as classification_task
from tasks.classification import ClassificationConfig
from tasks.segmentation import PartSegConfig, PointSegmentation, SemSegConfig, sem_seg_result
from utils.config import load_config, read_yaml
from tasks.segmentation_metrics import SemSegMeter
from losses.ntxent import nt_xent
from models.common import point_projection_head
from models.dgcnn import DGCNN
from tests.test_checkpoint import CPDGCNN, CPPartSeg, CPSemSeg, randomised

ROOT = Path(__file__).resolve().parent.parent
POINTS = 128
CLS = ["device=cpu", "model.k=8", "model.emb_dims=64", f"data.modelnet40_points={POINTS}",
       f"data.scanobjectnn_points={POINTS}", "train.num_workers=0", "fewshot.queries=3", "fewshot.runs=4",
       "fewshot.settings=[3w2s, 5w5s, 10w20s]", "svm.c_grid=[0.01, 1.0]", "svm.folds=2"]
SEG = ["device=cpu", "model.k=8", "model.emb_dims=64", f"data.num_points={POINTS}", "optim.batch_size=8",
       "train.num_workers=0", "train.log_every=1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these models are tiny, and on a shared machine two-thread OpenMP barriers can
    spin for far longer than the work itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def encoder_checkpoint(synthetic_root, tmp_path_factory) -> Path:
    """A tiny DGCNN pretrained for a few NT-Xent steps on two augmented views, saved in train.py's layout
    ({"model": state of the pretraining module, keys model.point_encoder.* and a head}, ...)."""
    torch.manual_seed(0)
    encoder, head = DGCNN(k=8, emb_dims=64), point_projection_head(128, 64, 32)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    clouds = ModelNet40(synthetic_root, split="train", num_points=POINTS).points
    augment, rng = pretrain_augmentation(), np.random.default_rng(0)
    for _ in range(4):
        batch = rng.choice(len(clouds), 16, replace=False)
        views = [torch.from_numpy(np.stack([augment(clouds[i], rng) for i in batch])) for _ in range(2)]
        loss = nt_xent(head(encoder(views[0])), head(encoder(views[1])), 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state = {**{f"model.point_encoder.{k}": v for k, v in encoder.state_dict().items()},
             **{f"model.point_head.{k}": v for k, v in head.state_dict().items()}}
    path = tmp_path_factory.mktemp("pretrain") / "best.pt"
    torch.save({"model": state, "epoch": 1, "step": 4}, path)
    return path


# ------------------------------------------------------------------------------------- classification
def test_classification_with_checkpoint(synthetic_root, encoder_checkpoint, tmp_path, monkeypatch):
    episodes = []
    original = evaluate.few_shot_episodes

    def recording(train_labels, test_labels, *args, **kwargs):
        drawn = list(original(train_labels, test_labels, *args, **kwargs))
        episodes.append((np.asarray(train_labels), np.asarray(test_labels), drawn))
        return iter(drawn)

    monkeypatch.setattr(evaluate, "few_shot_episodes", recording)
    out = tmp_path / "cls"
    classification.main(["--checkpoint", str(encoder_checkpoint), "--data-root", str(synthetic_root),
                         "--out", str(out), *CLS])
    metrics = metrics_of(out)
    assert metrics["encoder"] == "pretrained" and metrics["load_report"]["layout"] == "adacrossnet"
    report = metrics["load_report"]
    assert report["loaded_tensors"] == report["model_tensors"] and report["left_out"] > 0
    for name in ("modelnet40", "scanobjectnn"):
        test, details = metrics["test"][name], metrics["details"][name]
        assert 0.0 <= test["svm_acc"] <= 1.0 and details["svm_c"] == 0.01
        assert set(test["fewshot"]) == {"3w2s", "5w5s"} and "10w20s" in details["fewshot_skipped"]
        for result in test["fewshot"].values():
            assert 0.0 <= result["mean"] <= 1.0 and result["std"] >= 0.0 and len(result["runs"]) == 4
        assert (out / f"tsne_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "config.yaml").exists() and any((out / "tensorboard").iterdir())

    # the linear SVM separates the synthetic classes well above chance
    labels = ModelNet40(synthetic_root, split="test", num_points=POINTS).labels
    chance = 1.0 / len(np.unique(labels))
    assert metrics["test"]["modelnet40"]["svm_acc"] > chance + 0.25

    # few-shot through the script: support from the training split, queries from the test split, no object
    # in both (compared by their points) and no object twice in an episode
    trainval = ModelNet40(synthetic_root, split="trainval", num_points=POINTS)
    test_set = ModelNet40(synthetic_root, split="test", num_points=POINTS)
    modelnet_calls = [e for e in episodes if len(e[0]) == len(trainval) and len(e[1]) == len(test_set)]
    assert len(modelnet_calls) == 2  # 3w2s, 5w5s
    train_keys = [trainval.points[i].tobytes() for i in range(len(trainval))]
    test_keys = [test_set.points[i].tobytes() for i in range(len(test_set))]
    for train_labels, test_labels, drawn in modelnet_calls:
        assert np.array_equal(train_labels, trainval.labels) and np.array_equal(test_labels, test_set.labels)
        for classes, support, query in drawn:
            assert len(set(support)) == len(support) and len(set(query)) == len(query)
            assert set(train_labels[support]) == set(classes) == set(test_labels[query])
            assert not {train_keys[i] for i in support} & {test_keys[i] for i in query}


def test_classification_random_init(synthetic_root, tmp_path):
    out = tmp_path / "random"
    test = classification.main(["--random-init", "--data-root", str(synthetic_root), "--out", str(out), *CLS,
                                "tsne=false"])
    metrics = metrics_of(out)
    assert metrics["encoder"] == "random_init" and metrics["load_report"] is None
    assert set(test) == {"modelnet40", "scanobjectnn"}
    assert all(0.0 <= test[name]["svm_acc"] <= 1.0 and "5w5s" in test[name]["fewshot"] for name in test)
    assert not list(out.glob("tsne_*.png"))


def test_classification_random_init_with_calibrated_batchnorm(synthetic_root, tmp_path, monkeypatch):
    """--calibrate-bn: both splits of each dataset go through one encoder whose BatchNorm statistics were
    estimated on that dataset's trainval points, not the initial 0 / 1."""
    seen = []
    extract = classification_task.extract_features
    monkeypatch.setattr(classification_task, "extract_features",
                        lambda encoder, *args, **kwargs: (seen.append(encoder), extract(encoder, *args, **kwargs))[1])
    classification.main(["--random-init", "--calibrate-bn", "--data-root", str(synthetic_root), "--out",
                         str(tmp_path / "calibrated"), *CLS, "tsne=false"])
    assert len(seen) == 4 and seen[0] is seen[1] and seen[2] is seen[3] and seen[0] is not seen[2]
    for encoder in seen:
        norms = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms and all(not torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in norms)
    assert metrics_of(tmp_path / "calibrated")["encoder"] == "random_init"


def test_svm_c_search_uses_the_training_set(synthetic_root, encoder_checkpoint, tmp_path, monkeypatch):
    seen = []
    original = classification_task.select_svm_c

    def recording(train_x, train_y, *args, **kwargs):
        seen.append(len(train_y))
        return original(train_x, train_y, *args, **kwargs)

    monkeypatch.setattr(classification_task, "select_svm_c", recording)
    out = tmp_path / "search"
    classification.main(["--checkpoint", str(encoder_checkpoint), "--data-root", str(synthetic_root), "--out",
                         str(out), *CLS, "data.datasets=[modelnet40]", "fewshot.settings=[]", "tsne=false",
                         "svm.search_c=true", "svm.c_grid=[0.001, 0.1]", "svm.folds=3"])
    metrics = metrics_of(out)
    details, test = metrics["details"]["modelnet40"], metrics["test"]["modelnet40"]
    assert seen == [details["train_samples"]] and details["svm_c_cv"] in (0.001, 0.1)
    assert set(details["svm_cv"]) == {"0.001", "0.1"}
    # both columns: the published C and the one cross-validation chose
    assert details["svm_c"] == 0.01 and 0.0 <= test["svm_acc"] <= 1.0 and 0.0 <= test["svm_acc_cv"] <= 1.0


def test_classification_on_a_class_folder_tree(synthetic_root, encoder_checkpoint, tmp_path, capsys):
    """ModelNet's own layout (<class>/{train,test}/*.off meshes, not centred or scaled) through the script."""
    tree = synthetic_root / "ModelNet10"
    out = tmp_path / "folder"
    test = classification.main(["--checkpoint", str(encoder_checkpoint), "--out", str(out), *CLS,
                                "data.datasets=[folder]", f"data.folder.root={tree}", f"data.folder_points={POINTS}",
                                "fewshot.settings=[3w2s]", "fewshot.queries=2", "tsne=false"])
    printed = capsys.readouterr().out
    assert f"ModelNet10, {POINTS} points (40 train / 20 test)" in printed
    assert "C=0.01 (published protocol)" in printed and "(2-fold CV on the training set)" in printed
    details = metrics_of(out)["details"]["folder"]
    assert details["title"] == "ModelNet10" and details["train_samples"] == 40
    assert 0.1 < test["folder"]["svm_acc_cv"] <= 1.0 and "3w2s" in test["folder"]["fewshot"]


def test_a_folder_dataset_without_its_root_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "downstream.classification.main", "--random-init", "--out",
                             str(tmp_path / "x"), "data.datasets=[folder]"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.datasets lists folder, but 'data.folder.root'")


# ------------------------------------------------------------------------------------- fine-tuning
def test_partseg_fine_tuning_improves_and_resumes(synthetic_root, tmp_path, capsys):
    out = tmp_path / "partseg"
    args = ["--data-root", str(synthetic_root), "--out", str(out), *SEG, "eval_initial=true",
            "train.max_steps_per_epoch=4"]
    main_partseg.main([*args, "optim.epochs=1"])
    metrics = metrics_of(out)
    assert metrics["checkpoint"] is None and metrics["load_report"] is None
    assert metrics["select_metric"] == "instance_miou"
    assert metrics["best"]["value"] > metrics["initial_val"]["instance_miou"]  # better than untrained
    test = metrics["test"]
    assert 0 < test["instance_miou"] <= 1 and 0 < test["class_miou"] <= 1 and len(test["per_category"]) == 16
    assert (out / "best.pt").exists() and any((out / "tensorboard").iterdir())
    assert "instance mIoU" in capsys.readouterr().out

    # continues through the Trainer; a longer run is a change of the run, accepted explicitly
    main_partseg.main([*args, "optim.epochs=2", "--resume", "auto", "resume_allow=[optim.epochs]"])
    assert "resumed from" in capsys.readouterr().err
    metrics = metrics_of(out)
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["epochs"][1]["step"] == 8
    assert metrics["resume_changes"] == [{"step": 4, "key": "optim.epochs", "old": 1, "new": 2}]
    assert "initial_val" in metrics and "test" in metrics


def test_semseg_fine_tuning_improves(synthetic_root, tmp_path):
    out = tmp_path / "semseg"
    test = main_semseg.main(["--data-root", str(synthetic_root), "--out", str(out), *SEG, "eval_initial=true",
                             "optim.epochs=2", "train.max_steps_per_epoch=3"])
    metrics = metrics_of(out)
    assert metrics["select_metric"] == "miou" and metrics["test_area"] == 5
    assert metrics["best"]["value"] > metrics["initial_val"]["miou"]
    assert metrics["epochs"][1]["train"]["loss"] < metrics["epochs"][0]["train"]["loss"]
    assert set(test["per_class_iou"]) == {"ceiling", "floor", "wall", "beam", "column", "window", "door", "table",
                                          "chair", "sofa", "bookcase", "board", "clutter"}
    confusion = np.array(test["confusion"])
    assert confusion.shape == (13, 13) and confusion.sum() == metrics["test_blocks"] * POINTS
    assert test["overall_acc"] == pytest.approx(np.trace(confusion) / confusion.sum())


def test_label_smoothing_is_dgcnn_s():
    """DGCNN's cal_loss: the true class gets 1 - eps, every other class eps / (P - 1)."""
    logits, target = torch.randn(2, 7, 5), torch.randint(0, 5, (2, 7))
    module = PointSegmentation(lambda points: logits, label_smoothing=0.2)
    one_hot = torch.nn.functional.one_hot(target, 5).float()
    smoothed = one_hot * 0.8 + (1 - one_hot) * 0.2 / 4
    expected = -(smoothed * logits.log_softmax(-1)).sum(-1).mean()
    out = module({"points": torch.zeros(2, 7, 3), "seg": target})
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["acc"].item() == pytest.approx((logits.argmax(-1) == target).float().mean().item())


def test_six_fold_sums_the_confusion_matrices(tmp_path, monkeypatch):
    """The 6-fold figures come from the six test confusion matrices summed, not from averaging area mIoUs."""
    rng = np.random.default_rng(0)
    confusions = {a: rng.integers(0, 50, size=(13, 13)) * (1 + 9 * (a == 1)) for a in range(1, 7)}
    seen = []

    def fake_area(cfg):
        seen.append((cfg.data.test_area, cfg.out))
        meter = SemSegMeter(13)
        meter.confusion = confusions[cfg.data.test_area]
        return {**sem_seg_result(meter), "selected_epoch": 1}

    monkeypatch.setattr(main_semseg, "run_area", fake_area)
    out = tmp_path / "sixfold"
    test = main_semseg.main(["--six-fold", "--out", str(out), "device=cpu"])
    assert seen == [(a, str(out / f"area_{a}")) for a in range(1, 7)]
    meter = SemSegMeter(13)
    meter.confusion = sum(confusions.values())
    expected = meter.compute()
    assert test["miou"] == pytest.approx(expected["miou"])
    assert test["overall_acc"] == pytest.approx(expected["overall_acc"])
    per_area = metrics_of(out)["per_area"]
    assert set(per_area) == {str(a) for a in range(1, 7)}
    assert test["miou"] != pytest.approx(np.mean([row["miou"] for row in per_area.values()]))


# ------------------------------------------------------------------------- CrossPoint-layout checkpoints
def test_crosspoint_checkpoints_are_accepted_by_every_script(synthetic_root, tmp_path):
    cls_path, partseg_path, semseg_path = tmp_path / "cls.pth", tmp_path / "partseg.pth", tmp_path / "semseg.pth"
    torch.save({f"module.{k}": v for k, v in randomised(CPDGCNN(k=8, emb_dims=32)).state_dict().items()}, cls_path)
    torch.save(randomised(CPPartSeg(k=8, emb_dims=32, pretrain=True)).state_dict(), partseg_path)
    torch.save(randomised(CPSemSeg(k=8, emb_dims=32)).state_dict(), semseg_path)
    small = ["model.emb_dims=32", "optim.epochs=1", "train.max_steps_per_epoch=1"]
    data = ["--data-root", str(synthetic_root)]

    classification.main(["--checkpoint", str(cls_path), *data, "--out", str(tmp_path / "c"), *CLS,
                         "model.emb_dims=32", "data.datasets=[modelnet40]", "fewshot.settings=[]", "tsne=false"])
    report = metrics_of(tmp_path / "c")["load_report"]
    assert report["layout"] == "crosspoint-cls" and report["loaded_tensors"] == report["model_tensors"]

    main_partseg.main(["--checkpoint", str(partseg_path), *data, "--out", str(tmp_path / "p"), *SEG, *small])
    report = metrics_of(tmp_path / "p")["load_report"]
    assert report["layout"] == "crosspoint-partseg" and report["mismatched"] == [] and report["missing"] == []
    assert report["model"] == "DGCNNPartSegEncoder"  # the backbone; the head starts from its initial values
    assert {k.split(".")[0] for k in report["loaded"]} == {"transform_net", "edge1", "edge2", "edge3", "embed"}

    main_semseg.main(["--checkpoint", str(semseg_path), *data, "--out", str(tmp_path / "s"), *SEG, *small])
    report = metrics_of(tmp_path / "s")["load_report"]
    assert report["layout"] == "crosspoint-semseg" and report["missing"] == [] and report["unexpected"] == []


# ------------------------------------------------------------------------------------------ errors
def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ")
    return lines[-1]


def test_bad_checkpoint_is_one_line_exit_2(synthetic_root, tmp_path):
    path = tmp_path / "random.pt"
    torch.save({"foo": torch.randn(3, 3), "bar.weight": torch.randn(7)}, path)
    done = subprocess.run([sys.executable, "-m", "downstream.classification.main", "--checkpoint", str(path),
                           "--data-root", str(synthetic_root), "--out", str(tmp_path / "out"), *CLS],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], done.stderr
    assert "nothing in it fits" in lines[0] and "Traceback" not in done.stderr


def test_wrong_shape_checkpoint_is_an_error(synthetic_root, tmp_path, capsys):
    path = tmp_path / "small.pt"
    torch.save(DGCNN(k=8, emb_dims=32).state_dict(), path)  # the script's encoder has emb_dims=64
    with pytest.raises(SystemExit) as exit_info:
        classification.main(["--checkpoint", str(path), "--data-root", str(synthetic_root),
                             "--out", str(tmp_path / "out"), *CLS])
    assert exit_info.value.code == 2
    line = one_line_error(capsys)
    assert str(path) in line and "embed" in line and "emb_dims" in line


def test_no_encoder_chosen_is_an_error(synthetic_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        classification.main(["--data-root", str(synthetic_root), "--out", str(tmp_path / "out"), *CLS])
    assert exit_info.value.code == 2 and "--random-init" in one_line_error(capsys)


@pytest.mark.parametrize("script,folder,remove", [
    (classification, "modelnet40_ply_hdf5_2048", "ply_data_train0.h5"),
    (main_partseg, "shapenet_part_seg_hdf5_data", "ply_data_val0.h5"),
    (main_semseg, "indoor3d_sem_seg_hdf5_data", "room_filelist.txt"),
], ids=["classification", "partseg", "semseg"])
def test_dataset_missing_files_is_one_line_exit_2(synthetic_root, tmp_path, capsys, script, folder, remove):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root / folder, root / folder)
    (root / folder / remove).unlink()
    extra = ["--random-init", *CLS] if script is classification else SEG
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--data-root", str(root), "--out", str(tmp_path / "out"), *extra])
    assert exit_info.value.code == 2
    line = one_line_error(capsys)
    assert str(root / folder) in line and ("ply_data_val" in line or remove in line)


def test_run_as_a_file_says_how_to_run_it():
    done = subprocess.run([sys.executable, "downstream/segmentation/main_partseg.py", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: run this script from the repository root as a module: "
                                   "python -m downstream.segmentation.main_partseg --help")


# ------------------------------------------------------------------------------------- several seeds
def test_multi_seed_runner_reports_mean_and_sample_std(synthetic_root, tmp_path):
    out = tmp_path / "seeds"
    summary = classification.main(["--random-init", "--data-root", str(synthetic_root), "--out", str(out),
                                   "--seeds", "0", "1", *CLS, "data.datasets=[modelnet40]",
                                   "fewshot.settings=[3w2s]", "fewshot.queries=2", "tsne=false"])
    assert summary["seeds"] == [0, 1]
    values = [metrics_of(out / f"seed_{s}")["test"]["modelnet40"]["svm_acc"] for s in (0, 1)]
    row = summary["metrics"]["modelnet40/svm_acc"]
    assert row["values"] == {"0": values[0], "1": values[1]} and row["n"] == 2
    assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
    assert "modelnet40/fewshot/3w2s/mean" in summary["metrics"]
    assert json.loads((out / "summary.json").read_text())["metrics"]["modelnet40/svm_acc"]["n"] == 2
    table = (out / "summary.md").read_text()
    assert "| modelnet40/svm_acc |" in table and "+-" in table and "seed 1" in table and "n-1" in table


def test_a_fresh_multi_seed_run_refuses_another_and_replaces_it_only_with_overwrite(synthetic_root, tmp_path,
                                                                                     capsys):
    """Checked before the first seed runs: a seed's directory holding a run refuses the whole command, with
    nothing changed; --overwrite replaces the summary and every seed's run."""
    from tests.test_errors import file_hashes

    out = tmp_path / "seeds"
    args = ["--random-init", "--data-root", str(synthetic_root), "--out", str(out), "--seeds", "0", "1", *CLS,
            "data.datasets=[modelnet40]", "fewshot.settings=[]", "tsne=false"]
    classification.main(args)
    before = file_hashes(out)
    for name in ("summary.json", "summary.md"):  # the first seed's directory alone must refuse it
        (out / name).rename(tmp_path / name)
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        classification.main([*args, "model.emb_dims=32"])
    assert refused.value.code == 2 and f"error: out={out / 'seed_0'}: holds another run" in one_line_error(capsys)
    for name in ("summary.json", "summary.md"):
        (tmp_path / name).rename(out / name)
    assert file_hashes(out) == before
    summary = classification.main([*args, "model.emb_dims=32", "--overwrite"])
    assert summary == json.loads((out / "summary.json").read_text())
    assert all(read_yaml(out / f"seed_{s}" / "config.yaml")["model"]["emb_dims"] == 32 for s in (0, 1))


@pytest.mark.parametrize("demo,schema", [("demo_classification", ClassificationConfig),
                                         ("demo_partseg", PartSegConfig), ("demo_semseg", SemSegConfig)])
def test_demo_configs_are_small_cpu_runs(demo, schema):
    cfg = load_config(ROOT / "configs" / f"{demo}.yaml", schema=schema)
    assert cfg.device == "cpu" and cfg.train.num_workers <= 1 and cfg.train.amp == "none"


def test_one_pretraining_per_seed_is_named_by_a_seed_placeholder(synthetic_root, encoder_checkpoint, tmp_path):
    """`--checkpoint 'runs/x/seed_{seed}/best.pt' --seeds 0 1`: each seed scores its own pretraining."""
    for seed in (0, 1):
        (tmp_path / f"seed_{seed}").mkdir()
        state = torch.load(encoder_checkpoint, weights_only=True)
        if seed:
            state["model"] = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
                              for k, v in state["model"].items()}
        torch.save(state, tmp_path / f"seed_{seed}" / "best.pt")
    out = tmp_path / "scores"
    classification.main(["--checkpoint", str(tmp_path / "seed_{seed}" / "best.pt"), "--data-root",
                         str(synthetic_root), "--out", str(out), "--seeds", "0", "1", *CLS,
                         "data.datasets=[modelnet40]", "fewshot.settings=[]", "tsne=false"])
    runs = [metrics_of(out / f"seed_{seed}") for seed in (0, 1)]
    assert [run["checkpoint"] for run in runs] == [str(tmp_path / f"seed_{seed}" / "best.pt") for seed in (0, 1)]
    single = classification.main(["--checkpoint", str(tmp_path / "seed_0" / "best.pt"), "--data-root",
                                  str(synthetic_root), "--out", str(tmp_path / "single"), *CLS,
                                  "data.datasets=[modelnet40]", "fewshot.settings=[]", "tsne=false"])
    assert single["modelnet40"]["svm_acc"] == runs[0]["test"]["modelnet40"]["svm_acc"]

"""Fine-tuned classification end to end on tiny synthetic data (CPU): the script on every dataset, from scratch
and from a pretraining checkpoint, the protocol (epoch chosen on val, test once, voting), the metrics, and the
fine-tuned checkpoint in the tools."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from datasets.clouds import Preprocessing
from downstream.classification import main_finetune
from engine.runtime import learning_rate
from models.build import build_model
from tasks.classification_finetune import PointClassification, VotingConfig, accuracies, score
from tests.test_downstream import encoder_checkpoint, metrics_of, one_thread  # noqa: F401 (fixtures)
from tools import classify, embed
from tools.common import load_model
from utils.errors import ConfigError

POINTS = 128
SMALL = ["device=cpu", f"data.num_points={POINTS}", "optim.batch_size=16", "train.num_workers=0",
         "train.log_every=1", "voting.passes=3"]
DGCNN = ["model.backbone.name=dgcnn", "model.backbone.k=8", "model.backbone.emb_dims=64"]


def run(synthetic_root, out, *overrides, config="configs/finetune_pointnet.yaml"):
    return main_finetune.main(["--config", config, "--data-root", str(synthetic_root), "--out", str(out), *SMALL,
                               *overrides])


def test_pointnet_from_scratch_learns_and_is_tested_once_on_the_val_choice(synthetic_root, tmp_path, capsys):
    out = tmp_path / "pointnet"
    test = run(synthetic_root, out, "model.backbone.emb_dims=64", "optim.epochs=3", "eval_initial=true")
    metrics = metrics_of(out)
    assert metrics["select_metric"] == "oa" and metrics["checkpoint"] is None
    val = [epoch["val"]["oa"] for epoch in metrics["epochs"]]
    assert max(val) > metrics["initial_val"]["oa"]  # better than the untrained model on val
    assert test["selected_epoch"] == 1 + int(np.argmax(val))  # the first best epoch on val, not on test
    assert set(test) >= {"oa", "mean_class_acc", "oa_vote", "mean_class_acc_vote"}
    assert all("oa_vote" not in epoch["val"] for epoch in metrics["epochs"])  # val never votes
    assert metrics["dataset"] == "ModelNet40" and metrics["test_shapes"] > 0
    printed = capsys.readouterr().out
    assert "no voting" in printed and "voting" in printed


def test_dgcnn_from_a_pretraining_checkpoint_loads_the_whole_backbone(synthetic_root, encoder_checkpoint, tmp_path):
    out = tmp_path / "dgcnn"
    run(synthetic_root, out, *DGCNN, "optim.epochs=1", "train.max_steps_per_epoch=2", "--checkpoint",
        str(encoder_checkpoint), config="configs/finetune_dgcnn.yaml")
    report = metrics_of(out)["load_report"]
    assert report["layout"] == "adacrossnet" and report["loaded_tensors"] == report["model_tensors"]

    # and the fine-tuned classifier is itself a checkpoint to start from or to embed with: its backbone
    again = tmp_path / "again"
    run(synthetic_root, again, *DGCNN, "optim.epochs=1", "train.max_steps_per_epoch=1", "--checkpoint",
        str(out / "best.pt"), config="configs/finetune_dgcnn.yaml")
    report = metrics_of(again)["load_report"]
    assert report["layout"] == "ours" and report["loaded_tensors"] == report["model_tensors"]
    encoder, info = load_model(out / "best.pt", "embed")
    assert info.architecture == "dgcnn" and info.k == 8 and encoder.out_dim == 128


@pytest.mark.parametrize("overrides", [
    ["data.dataset=scanobjectnn", "data.scanobjectnn_variant=PB_T50_RS"],
    ["data.dataset=scanobjectnn", "data.scanobjectnn_variant=OBJ_ONLY"],
    ["data.dataset=folder"],
])
def test_every_dataset_fine_tunes(synthetic_root, tmp_path, overrides):
    if overrides == ["data.dataset=folder"]:
        overrides = [*overrides, f"data.folder.root={synthetic_root / 'ModelNet10'}"]
    test = run(synthetic_root, tmp_path / "run", "model.backbone.emb_dims=32", "optim.epochs=1",
               "train.max_steps_per_epoch=2", *overrides)
    assert 0 <= test["oa"] <= 1 and 0 <= test["mean_class_acc_vote"] <= 1
    config = json.loads(json.dumps(torch.load(tmp_path / "run" / "best.pt", weights_only=True)["config"]))
    expected = 10 if "folder" in overrides[0] else 15
    assert config["model"]["num_classes"] == expected == len(config["model"]["class_names"])


def test_class_names_that_differ_from_the_dataset_are_refused(synthetic_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(synthetic_root, tmp_path / "run", "model.backbone.emb_dims=16", "model.class_names=[a, b]",
            "model.num_classes=2")
    assert "model.class_names" in capsys.readouterr().err


def test_accuracies_are_overall_and_balanced():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.6, label, rng.integers(0, 5, 200))
    result = accuracies(pred, label, 7)  # classes 5 and 6 absent from the labels: left out of the mean
    assert result["oa"] == pytest.approx(np.mean(pred == label))
    assert result["mean_class_acc"] == pytest.approx(balanced_accuracy_score(label, pred))


class Recorder(torch.nn.Module):
    """Logits from the clouds' x extent, so a scaled copy can change the prediction."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, points):
        extent = points[..., 0].amax(1) - points[..., 0].amin(1)
        return torch.stack((extent - 1.0, 1.0 - extent), dim=-1) * self.scale


def test_voting_is_seeded_and_one_unscaled_pass_is_no_voting():
    from engine.runtime import Runtime
    torch.manual_seed(0)
    clouds = torch.rand(40, 16, 3) * torch.linspace(0.8, 1.2, 40).view(40, 1, 1)
    data = [{"points": clouds[i:i + 8], "label": (clouds[i:i + 8, :, 0].amax(1) > 0.9).long()} for i in range(0, 40, 8)]
    module, runtime = PointClassification(Recorder()), Runtime(torch.device("cpu"))
    plain = score(module, data, runtime, 2, None, voting=VotingConfig(passes=1, scale=[1.0, 1.0]))
    assert plain["oa_vote"] == plain["oa"] and plain["mean_class_acc_vote"] == plain["mean_class_acc"]
    voted = [score(module, data, runtime, 2, None, voting=VotingConfig(passes=5, scale=[0.7, 1.3], seed=s))
             for s in (0, 0, 1)]
    assert voted[0] == voted[1] and voted[0]["oa_vote"] != voted[2]["oa_vote"]


def test_step_schedule():
    cfg = {"schedule": "step", "lr": 1.0, "step_gamma": 0.5, "step_epochs": 2, "warmup_epochs": 0, "min_lr": 0.0}
    assert [learning_rate(step, 10, 100, cfg) for step in (0, 19, 20, 39, 40, 99)] == [1, 1, 0.5, 0.5, 0.25, 0.0625]


def test_the_classifier_is_built_on_any_backbone():
    for backbone, width in (({"name": "pointnet", "emb_dims": 32}, 32), ({"name": "dgcnn", "k": 4, "emb_dims": 16}, 32),
                            ({"name": "dgcnn_partseg_encoder", "k": 4, "emb_dims": 16}, 16)):
        model = build_model({"name": "classifier", "backbone": backbone, "num_classes": 7})
        assert model.head[0].linear.in_features == width
        assert model(torch.randn(3, 20, 3)).shape == (3, 7)
    with pytest.raises(ConfigError, match="2 names for num_classes=3"):
        build_model({"name": "classifier", "num_classes": 3, "class_names": ["a", "b"]})


def test_tools_classify_labels_files_with_a_fine_tuned_checkpoint(synthetic_root, encoder_checkpoint, tmp_path,
                                                                  capsys):
    out = tmp_path / "run"
    run(synthetic_root, out, "model.backbone.emb_dims=32", "optim.epochs=1", "train.max_steps_per_epoch=2",
        "data.dataset=folder", f"data.folder.root={synthetic_root / 'ModelNet10'}")
    files = sorted((synthetic_root / "ModelNet10" / "chair" / "test").iterdir())[:4]
    result = classify.main(["--checkpoint", str(out / "best.pt"), *map(str, files), "--out", str(tmp_path / "p.csv"),
                            "--workers", "1"])
    model, info = load_model(out / "best.pt", "classify")
    assert info.num_points == POINTS and len(info.class_names) == 10
    clouds = torch.from_numpy(np.stack([Preprocessing(num_points=POINTS).read(f) for f in files]))
    expected = model(clouds).argmax(1).tolist()
    assert result["labels"] == expected and result["class_names"] == [info.class_names[i] for i in expected]
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [row["class_name"] for row in rows] == result["class_names"] and all(0 < float(r["probability"]) <= 1
                                                                                for r in rows)
    with pytest.raises(SystemExit):  # a pretrained encoder is no classifier: one line saying what to do
        classify.main(["--checkpoint", str(encoder_checkpoint), str(files[0])])
    assert "not a fine-tuned classifier" in capsys.readouterr().err
    features = tmp_path / "features.npz"  # and the classifier's backbone embeds
    embed.main(["--checkpoint", str(out / "best.pt"), str(files[0]), "--out", str(features)])
    assert np.load(features)["features"].shape == (1, 32)

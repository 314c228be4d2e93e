"""The weighting study end to end on tiny settings: every variant x seed trained, both files and plots
written, and a half-finished study resumed without re-running what finished."""

import json

import pytest

from bench import weighting_study
from tests.test_train import TINY

# The demo config's weighter keys are replaced by each variant's own weighter.
RUN = [arg for arg in TINY if not arg.startswith("weighting.")] + [
    "optim.epochs=1", "train.max_steps_per_epoch=2", "data.num_points=64", "monitor.num_points=64",
    "data.image_size=16", "model.point_backbone.emb_dims=32", "model.proj_dim=16"]


def study(root, out, *extra):
    return ["--variants", "static-1:1", "static-1:0", "--seeds", "0", "1", "--out", str(out),
            f"data.root={root}", *RUN, *extra]


def test_study_writes_the_summary_and_plots_and_resumes(synthetic_root, tmp_path, monkeypatch):
    out = tmp_path / "study"
    summary = weighting_study.main(study(synthetic_root, out))
    for name in ("summary.md", "summary.json", "weights.png", "accuracy.png"):
        assert (out / name).stat().st_size > 0, name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["variants"].keys() == {"static-1:1", "static-1:0"} == summary["variants"].keys()
    for entry in on_disk["variants"].values():
        assert entry["runs"] == 2 and 0 <= entry["test_mean"] <= 1 and entry["test_std"] is not None
        assert entry["seconds_mean"] > 0
    ref, other = on_disk["variants"]["static-1:1"], on_disk["variants"]["static-1:0"]
    assert ref["test_diff"] == 0
    diffs = [other["test_per_seed"][s] - ref["test_per_seed"][s] for s in ("0", "1")]
    assert abs(other["test_diff"] - sum(diffs) / 2) < 1e-12
    assert other["test_diff_low"] <= other["test_diff"] <= other["test_diff_high"]
    table = (out / "summary.md").read_text()
    assert "| static-1:0 | 2 |" in table and "95 %" in table
    # The untrained encoder is scored once per seed, in the seed's first run (static-1:1 here).
    def metrics(variant, seed):
        return json.loads((out / variant / f"seed_{seed}" / "metrics.json").read_text())

    assert all(0 <= metrics("static-1-1", seed)["random_init"]["svm_acc"] <= 1 for seed in (0, 1))
    assert all("random_init" not in metrics("static-1-0", seed) for seed in (0, 1))
    assert on_disk["random_init_seeds"] == [0, 1] and "| (random init) | 2 |" in table
    assert on_disk["random_init_bn_calibrated_seeds"] == [0, 1]
    assert "| (random init, BN calibrated) | 2 |" in table

    # Half-finished: one run lost its result (as if killed before the test), everything else is kept.
    (out / "static-1-0" / "seed_1" / "metrics.json").unlink()
    ran = []
    original = weighting_study.run_one
    monkeypatch.setattr(weighting_study, "run_one", lambda config, directory, *rest: (
        ran.append((directory.parent.name, rest[0])), original(config, directory, *rest))[1])
    weighting_study.main(study(synthetic_root, out))
    assert ran == [("static-1-0", 1)]

    # A run that scored the untrained encoder resumes as it started under another --variants order (there it
    # is not the seed's first run), instead of refusing the changed config.
    (out / "static-1-1" / "seed_1" / "metrics.json").unlink()
    ran.clear()
    reordered = study(synthetic_root, out)
    reordered[1:3] = ["static-1:0", "static-1:1"]
    weighting_study.main(reordered)
    assert ran == [("static-1-1", 1)] and weighting_study.finished(out / "static-1-1" / "seed_1")


def test_a_signal_stops_the_study_not_only_its_run(synthetic_root, tmp_path, monkeypatch):
    """SIGTERM in a run (train.py exits 143) ends the study there, instead of starting the next run."""
    ran = []

    def interrupted(config, directory, seed, *rest):
        ran.append((directory.parent.name, seed))
        raise SystemExit(143)

    monkeypatch.setattr(weighting_study, "run_one", interrupted)
    with pytest.raises(SystemExit) as stop:
        weighting_study.main(study(synthetic_root, tmp_path / "study"))
    assert stop.value.code == 143 and ran == [("static-1-1", 0)]


def test_a_run_is_the_same_only_if_its_resolved_config_is(synthetic_root, tmp_path, monkeypatch, capsys):
    """A rerun with other settings does not report the old runs as its own: refused before any run, with
    nothing changed, or replaced with --overwrite. A key that does not change a run (data.root) keeps it."""
    from tests.test_errors import file_hashes

    out = tmp_path / "study"
    one = lambda root, *extra: ["--variants", "static-1:1", "--seeds", "0", "--out", str(out),  # noqa: E731
                                f"data.root={root}", *RUN, *extra]
    weighting_study.main(one(synthetic_root))
    before = file_hashes(out)
    ran = []
    original = weighting_study.run_one
    monkeypatch.setattr(weighting_study, "run_one", lambda config, directory, *rest: (
        ran.append(directory.parent.name), original(config, directory, *rest))[1])
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        weighting_study.main(one(synthetic_root, "optim.lr=0.01"))
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "Traceback" not in err and ran == [] and file_hashes(out) == before
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and f"{out / 'static-1-1' / 'seed_0' / 'config.yaml'}: a run of another config (optim.lr (" \
        in lines[0] and "--overwrite" in lines[0]

    (tmp_path / "elsewhere").symlink_to(synthetic_root)
    weighting_study.main(one(tmp_path / "elsewhere"))
    assert ran == [] and "static-1:1 seed 0: finished before, skipped" in capsys.readouterr().out

    weighting_study.main(one(synthetic_root, "optim.lr=0.01", "--overwrite"))
    assert ran == ["static-1-1"] and weighting_study.finished(out / "static-1-1" / "seed_0")
    assert weighting_study.saved_config(out / "static-1-1" / "seed_0")["optim"]["lr"] == 0.01
    assert "optim.lr=0.01" in json.loads((out / "summary.json").read_text())["command"]


def test_a_study_whose_every_run_failed_exits_non_zero(synthetic_root, tmp_path, capsys):
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as stop:
        weighting_study.main(["--variants", "static-1:1", "--seeds", "0", "1", "--out", str(out),
                              f"data.root={synthetic_root}", *RUN, "optim.batch_size=1000"])
    captured = capsys.readouterr()
    assert stop.value.code == 2 and "Traceback" not in captured.err
    assert captured.out.count("failed (exit 2); left out") == 2
    assert captured.err.strip().splitlines()[-1].startswith(
        "error: every run of the study failed (2 of 2: static-1:1 seed 0, static-1:1 seed 1)")
    assert not (out / "summary.json").exists()


def test_an_override_after_variants_is_refused_before_any_run(tmp_path, capsys):
    """`--variants a b data.root=X` would make `data.root` a variant whose override is `X`: refused, one line."""
    with pytest.raises(SystemExit) as stop:
        weighting_study.main(["--out", str(tmp_path / "study"), "--variants", "static-1:1", "data.root=elsewhere"])
    assert stop.value.code == 2 and not (tmp_path / "study").exists()
    assert "--variants: 'data.root=elsewhere' is not label=key=value" in capsys.readouterr().err
    assert weighting_study.parse_variants(["half=optim.lr=5e-4,data.root=elsewhere", "static-1:0"]) == {
        "half": ["optim.lr=5e-4", "data.root=elsewhere"], "static-1:0": weighting_study.VARIANTS["static-1:0"]}


def test_factor_probe_scores_each_factor_and_agrees_with_the_study(tmp_path, monkeypatch):
    """bench.weighting_factors on a finished study of the weighting benchmark: one accuracy per factor; at the
    runs' own C the label's equals what the study scored on the same checkpoint (same features, SVM and C);
    paired differences to static-1:1; another C re-scores without training."""
    from bench import weighting_factors
    from data.make_synthetic import make_synthetic
    from data.synthetic_gen.weighting_bench import BENCH_SIZES, CLASS_NAMES

    root, out = tmp_path / "bench", tmp_path / "study"
    make_synthetic(root, seed=0, size="weighting_tiny")
    weighting_study.main(["--variants", "static-1:1", "static-1:0", "--seeds", "0", "1", "--out", str(out),
                          f"data.root={root}", *RUN])
    summary = weighting_factors.main([str(out), "--seeds", "0", "1"])
    runs = json.loads((out / "factors_C0.01.json").read_text())["runs"]  # the runs' own C
    test_objects = len(CLASS_NAMES) * BENCH_SIZES["weighting_tiny"]["test_per_class"]
    for variant, seed in [(v, s) for v in ("static-1:1", "static-1:0") for s in (0, 1)]:
        scores = runs[variant][str(seed)]
        assert scores["test"].keys() == scores["val"].keys() == scores["random_init"].keys() == {
            "label", "shell", "core", "coat"}
        assert scores["random_init_bn_calibrated"].keys() == scores["random_init"].keys()
        assert all(0 <= v <= 1 for part in ("val", "test", "random_init", "random_init_bn_calibrated")
                   for v in scores[part].values())
        metrics = weighting_study.run_dir(out, variant, seed) / "metrics.json"
        studied = json.loads(metrics.read_text())["test"]["svm_acc"]
        assert abs(scores["test"]["label"] - studied) <= 1 / test_objects + 1e-12
    other = summary["static-1:0"]["core"]
    diffs = [runs["static-1:0"][s]["test"]["core"] - runs["static-1:1"][s]["test"]["core"] for s in ("0", "1")]
    assert abs(other["diff"] - sum(diffs) / 2) < 1e-12 and other["low"] <= other["diff"] <= other["high"]
    assert summary["(random init)"]["runs"] == 2
    table = (out / "factors_C0.01.md").read_text()
    assert "| static-1:0 | 2 |" in table and "| (random init) | 2 |" in table
    assert "| (random init, BN calibrated) | 2 |" in table
    assert (out / "factors_C0.01_accuracy.png").stat().st_size > 0

    weighting_factors.main([str(out), "--seeds", "0", "--variants", "static-1:1", "--svm-c", "5"])
    rescored = json.loads((out / "factors_C5.json").read_text())
    assert (out / "factors_C0.01.md").read_text() == table  # another C has its own files
    assert rescored["svm_c"] == [5.0] and rescored["runs"]["static-1:1"]["0"]["svm_c"] == 5.0
    # scored runs are kept per C in the run's folder: a second call recomputes nothing
    monkeypatch.setattr(weighting_factors, "score", lambda *args: pytest.fail("a scored run was scored again"))
    again = weighting_factors.main([str(out), "--seeds", "0", "--variants", "static-1:1", "--svm-c", "5"])
    assert again["static-1:1"]["label"]["mean"] == rescored["runs"]["static-1:1"]["0"]["test"]["label"]
    with pytest.raises(SystemExit) as bad:
        weighting_factors.main([str(out), "--svm-c", "0"])
    assert bad.value.code == 2

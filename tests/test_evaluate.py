"""engine/evaluate.py: frozen features, linear SVM, few-shot, segmentation metrics, t-SNE."""

import math

import numpy as np
import pytest
import torch
from sklearn.svm import SVC

import engine.evaluate as ev
from datasets.shapenet_part import CATEGORY_NAMES, PART_RANGES
from engine.evaluate import (LinearSVM, calibrated_batchnorm, extract_features, few_shot_accuracy, few_shot_episodes,
                             linear_svm_accuracy, plot_tsne, select_svm_c)
from tasks.segmentation_metrics import SemSegMeter, part_seg_ious, part_seg_miou, restrict_to_category


def clustered(n_train, n_test, dim, classes, noise, seed):
    """Non-negative class-clustered features with overlap (labels deliberately non-contiguous)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, 8))
    proj = rng.normal(0, 1, (8, dim))

    def draw(n):
        y = rng.integers(0, classes, n)
        x = np.maximum((centres[y] + noise * rng.normal(0, 1, (n, 8))) @ proj, 0)
        return x.astype(np.float32), 3 * y + 7

    return (*draw(n_train), *draw(n_test))


# ---------------------------------------------------------------------------------------------- linear SVM


@pytest.mark.parametrize("classes, C", [(2, 0.01), (3, 1.0), (6, 0.1)])
@pytest.mark.parametrize("gram_dtype", ["float64", "float32"])
def test_linear_svm_same_predictions_as_svc(classes, C, gram_dtype):
    train_x, train_y, test_x, test_y = clustered(240, 200, 40, classes, noise=1.2, seed=classes)
    ref = SVC(kernel="linear", C=C, decision_function_shape="ovo").fit(train_x, train_y)
    ours = LinearSVM(C=C, gram_dtype=gram_dtype).fit(train_x, train_y)
    assert ours.method_used_ == "gram"
    np.testing.assert_array_equal(ours.predict(test_x), ref.predict(test_x))
    assert 0.5 < ref.score(test_x, test_y) < 1.0  # neither trivial nor separable
    if gram_dtype == "float64":  # the same optimisation: same decision values up to rounding
        dec = ours.decision_function(test_x)
        ref_dec = ref.decision_function(test_x)
        if classes == 2:  # sklearn reports -dec for binary problems (positive -> classes_[1])
            dec = -dec[:, 0]
        np.testing.assert_allclose(dec, ref_dec, atol=1e-9)


def test_linear_svm_accuracy_medium_matches_svc():
    train_x, train_y, test_x, test_y = clustered(2000, 800, 512, 20, noise=0.6, seed=1)
    ref = SVC(kernel="linear", C=0.01).fit(train_x, train_y).score(test_x, test_y)
    ours = linear_svm_accuracy(train_x, train_y, test_x, test_y, C=0.01)
    assert 0.6 < ref < 0.99
    assert abs(ours - ref) <= 0.005


def test_linear_svm_libsvm_route_and_fallback():
    train_x, train_y, test_x, _ = clustered(150, 50, 20, 4, noise=1.0, seed=2)
    gram = LinearSVM().fit(train_x, train_y).predict(test_x)
    direct = LinearSVM(method="libsvm").fit(train_x, train_y)
    assert direct.method_used_ == "libsvm"
    np.testing.assert_array_equal(direct.predict(test_x), gram)
    with pytest.warns(RuntimeWarning, match="Gram matrix"):
        fallback = LinearSVM(max_gram_bytes=1000).fit(train_x, train_y)
    assert fallback.method_used_ == "libsvm"
    with pytest.raises(ValueError, match="2 classes"):
        LinearSVM().fit(train_x, np.zeros(len(train_x)))


@pytest.mark.filterwarnings("ignore:select_svm_c. the best C")
def test_select_svm_c_sees_training_rows_only(monkeypatch):
    train_x, train_y, test_x, _ = clustered(200, 100, 16, 4, noise=1.0, seed=3)
    train_x[:, 0] = np.arange(len(train_x))  # row id in column 0 (test rows get ids no train row has)
    test_x[:, 0] = -1 - np.arange(len(test_x))
    seen = []

    class Recording(LinearSVM):
        def fit(self, X, y, gram=None):
            seen.append(("fit", self.C, np.asarray(X)[:, 0].astype(int)))
            return super().fit(X, y, gram=gram)

        def score(self, X, y):
            seen.append(("score", self.C, np.asarray(X)[:, 0].astype(int)))
            return super().score(X, y)

    monkeypatch.setattr(ev, "LinearSVM", Recording)
    Cs = (0.01, 0.1, 1.0)
    best, means = select_svm_c(train_x, train_y, Cs=Cs, folds=4, seed=0)
    assert best in Cs and set(means) == set(Cs)
    assert best == max(Cs, key=lambda c: (means[c], -c))
    assert len(seen) == 2 * 4 * len(Cs)
    for (kind_f, c_f, fit_rows), (kind_s, c_s, val_rows) in zip(seen[::2], seen[1::2]):
        assert (kind_f, kind_s) == ("fit", "score") and c_f == c_s
        assert fit_rows.min() >= 0 and val_rows.min() >= 0  # training rows only
        assert not set(fit_rows) & set(val_rows)  # a fold never validates on its fitted rows
        assert len(fit_rows) + len(val_rows) == len(train_x)


def test_select_svm_c_warns_at_grid_edge():
    train_x, train_y, _, _ = clustered(120, 10, 16, 3, noise=1.5, seed=5)
    with pytest.warns(RuntimeWarning, match="edge of the grid"):
        select_svm_c(train_x, train_y, Cs=(1e-7, 1.0), folds=3)


# ---------------------------------------------------------------------------------------------- few-shot


def test_calibrated_batchnorm_estimates_the_statistics_of_the_data_and_leaves_the_encoder_alone():
    """A random encoder normalises with mean 0 / variance 1; the calibrated copy with the statistics of what its
    BatchNorm sees on the loader's points (the average of the per-batch statistics), weights unchanged."""
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                  torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4))
    points = torch.randn(40, 3) * 3 + 5
    loader = [{"points": points[i:i + 10], "label": torch.zeros(10)} for i in range(0, 40, 10)]
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    calibrated = calibrated_batchnorm(encoder, loader, "cpu")
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items()) and encoder.training
    assert not calibrated.training
    first, bn = encoder[0], calibrated[1]
    with torch.no_grad():
        per_batch = [first(batch["points"]) for batch in loader]
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean(0) for x in per_batch]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([x.var(0) for x in per_batch]).mean(0))
    assert all(torch.equal(calibrated.state_dict()[k], before[k]) for k in before if "running" not in k
               and "num_batches" not in k)
    assert not torch.allclose(calibrated(points), encoder.eval()(points))


def test_few_shot_episodes_support_from_train_queries_from_test():
    rng = np.random.default_rng(0)
    train_labels = rng.integers(0, 12, 600)
    test_labels = rng.integers(0, 12, 400)
    test_labels[test_labels == 5] = 4  # class 5: no test samples -> never eligible
    train_labels[np.flatnonzero(train_labels == 7)[3:]] = 8  # class 7: only 3 training samples
    episodes = list(few_shot_episodes(train_labels, test_labels, n_way=5, k_shot=10, n_query=20, n_runs=6))
    assert len(episodes) == 6
    for classes, support, query in episodes:
        assert len(classes) == len(set(classes)) == 5 and not {5, 7} & set(classes)
        assert support.shape == (50,) and query.shape == (100,)
        assert len(set(support)) == 50 and len(set(query)) == 100  # no duplicates within an episode
        assert support.max() < len(train_labels) and query.max() < len(test_labels)
        # grouped class by class: the k support / n_query queries of classes[i] are block i
        np.testing.assert_array_equal(train_labels[support], np.repeat(classes, 10))
        np.testing.assert_array_equal(test_labels[query], np.repeat(classes, 20))
    again = list(few_shot_episodes(train_labels, test_labels, 5, 10, 20, 6, seed=0))
    for a, b in zip(episodes, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    other = list(few_shot_episodes(train_labels, test_labels, 5, 10, 20, 6, seed=1))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(episodes, other))


def test_few_shot_objects_never_shared_between_support_and_query():
    # One pool of object ids: train objects 0..299, test objects 300..499.
    train_ids, test_ids = np.arange(300), np.arange(300, 500)
    train_labels, test_labels = train_ids % 10, test_ids % 10
    for _, support, query in few_shot_episodes(train_labels, test_labels, n_way=10, k_shot=20, n_query=20, n_runs=5):
        assert not set(train_ids[support]) & set(test_ids[query])


def test_few_shot_too_few_classes():
    with pytest.raises(ValueError, match="only 3 qualify"):
        few_shot_episodes(np.repeat(np.arange(3), 30), np.repeat(np.arange(3), 30), n_way=5, k_shot=10)


def test_few_shot_accuracy_on_separable_features():
    train_x, train_y, test_x, test_y = clustered(400, 400, 32, 8, noise=0.05, seed=4)
    mean, std, runs = few_shot_accuracy(train_x, train_y, test_x, test_y, n_way=5, k_shot=10, n_query=10, n_runs=4)
    assert len(runs) == 4 and all(0 <= r <= 1 for r in runs)
    assert mean == pytest.approx(np.mean(runs)) and std == pytest.approx(np.std(runs))
    assert mean > 0.95


# ---------------------------------------------------------------------------------------------- part segmentation

# Three categories: 0 -> parts {0, 1}, 1 -> parts {2, 3, 4}, 2 -> part {5} (no test shape).
RANGES = {0: range(0, 2), 1: range(2, 5), 2: range(5, 6)}
SEG = np.array([[0, 0, 1, 1],     # A, category 0
                [2, 2, 3, 3],     # B, category 1
                [2, 2, 2, 3],     # C, category 1
                [0, 0, 0, 1]])    # D, category 0
PRED = np.array([[0, 1, 1, 1],    # part 0: I 1 / U 2; part 1: I 2 / U 3             -> (1/2 + 2/3) / 2 = 7/12
                 [2, 2, 3, 3],    # parts 2, 3 exact; part 4 in neither -> IoU 1      -> 1
                 [3, 2, 2, 4],    # part 2: 2/3; part 3: 0/2; part 4: 0/1             -> 2/9
                 [0, 0, 3, 1]])   # a foreign part (3): part 0: 2/3; part 1: 1/1      -> 5/6
CATEGORY = np.array([0, 1, 1, 0])


def test_part_seg_ious_hand_computed():
    np.testing.assert_allclose(part_seg_ious(PRED, SEG, CATEGORY, RANGES), [7 / 12, 1, 2 / 9, 5 / 6])
    # torch tensors work too (the caller may hand them over on the CPU)
    np.testing.assert_allclose(part_seg_ious(torch.from_numpy(PRED), torch.from_numpy(SEG), torch.from_numpy(CATEGORY),
                                             RANGES), [7 / 12, 1, 2 / 9, 5 / 6])


def test_part_seg_miou_hand_computed():
    out = part_seg_miou(PRED, SEG, CATEGORY, RANGES, category_names=["mug", "cup", "bowl"])
    assert out["instance_miou"] == pytest.approx((7 / 12 + 1 + 2 / 9 + 5 / 6) / 4)
    assert out["per_category"] == pytest.approx({"mug": (7 / 12 + 5 / 6) / 2, "cup": (1 + 2 / 9) / 2})
    assert out["class_miou"] == pytest.approx(((7 / 12 + 5 / 6) / 2 + (1 + 2 / 9) / 2) / 2)
    assert out["missing_categories"] == ["bowl"]


def test_restrict_to_category_hand_example():
    logits = np.zeros((2, 2, 6), dtype=np.float32)
    logits[0, 0] = [9, 0, 1, 5, 2, 7]  # category 1 (parts 2..4): best overall is part 0, within the category 3
    logits[0, 1] = [0, 0, 1, 2, 3, 0]  # -> 4
    logits[1, 0] = [1, 2, 9, 9, 9, 9]  # category 0 (parts 0..1) -> 1
    logits[1, 1] = [3, 2, 9, 9, 9, 9]  # -> 0
    category = np.array([1, 0])
    expected = np.array([[3, 4], [1, 0]])
    np.testing.assert_array_equal(restrict_to_category(logits, category, RANGES), expected)
    out = restrict_to_category(torch.from_numpy(logits), torch.from_numpy(category), RANGES)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_shapenetpart_ranges_and_restriction():
    ranges = dict(PART_RANGES)
    assert [len(ranges[c]) for c in range(16)] == [4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3]
    assert ranges[0].start == 0 and ranges[15].stop == 50
    assert len(CATEGORY_NAMES) == 16 and CATEGORY_NAMES[10] == "motorbike"
    rng = np.random.default_rng(0)
    category = rng.integers(0, 16, 32)
    pred = restrict_to_category(rng.normal(size=(32, 64, 50)), category, ranges)
    for c, p in zip(category, pred):
        assert np.isin(p, list(ranges[c])).all()
    seg = np.stack([rng.choice(list(ranges[c]), 64) for c in category])
    perfect = part_seg_miou(seg, seg, category, ranges)
    assert perfect["instance_miou"] == 1.0 and perfect["class_miou"] == 1.0


# ---------------------------------------------------------------------------------------------- semantic segmentation


def test_semseg_meter_hand_computed():
    meter = SemSegMeter(num_classes=5)
    meter.update(np.array([0, 1, 1, 1, 2, 2, 2, 3]),   # pred
                 np.array([0, 0, 1, 1, 1, 2, 2, 2]))   # target
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[0, 0], expected[0, 1] = 1, 1
    expected[1, 1], expected[1, 2] = 2, 1
    expected[2, 2], expected[2, 3] = 2, 1
    np.testing.assert_array_equal(meter.confusion, expected)
    out = meter.compute()
    assert out["overall_acc"] == pytest.approx(5 / 8)
    # class accuracy: 1/2, 2/3, 2/3; class 3 (only predicted) and 4 (nowhere) are absent from the target
    assert out["mean_class_acc"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    # IoU: 0: 1/2; 1: 2/(3+3-2)=1/2; 2: 2/(3+3-2)=1/2; 3: 0/1 = 0 (predicted only); 4: NaN (nowhere)
    iou = out["per_class_iou"]
    assert iou[:4] == pytest.approx([1 / 2, 1 / 2, 1 / 2, 0])
    assert math.isnan(iou[4])
    assert out["miou"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 2 + 0) / 4)


def test_semseg_meter_accumulates_like_one_update():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 13, (6, 4096))
    target = np.where(rng.random((6, 4096)) < 0.6, pred, rng.integers(0, 13, (6, 4096)))
    pieces, whole = SemSegMeter(13), SemSegMeter(13)
    for b in range(6):
        pieces.update(torch.from_numpy(pred[b]), torch.from_numpy(target[b]))
    whole.update(pred, target)
    np.testing.assert_array_equal(pieces.confusion, whole.confusion)
    assert pieces.compute() == whole.compute()
    assert whole.compute()["overall_acc"] == pytest.approx(np.mean(pred == target))


def test_semseg_meter_ignore_index_and_errors():
    meter = SemSegMeter(3, ignore_index=255)
    meter.update(np.array([0, 1, 2]), np.array([0, 255, 2]))
    assert meter.compute()["overall_acc"] == 1.0
    with pytest.raises(ValueError, match="target values"):
        meter.update(np.array([0]), np.array([3]))
    with pytest.raises(ValueError, match="no points"):
        SemSegMeter(3).compute()


# ---------------------------------------------------------------------------------------------- features, t-SNE


class TinyEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 8)
        self.bn = torch.nn.BatchNorm1d(8)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, points):  # (B, N, 3) -> (B, 8)
        self.seen_training = self.training
        self.seen_grad = torch.is_grad_enabled()
        return self.drop(self.bn(self.lin(points).amax(1)))


def test_extract_features_eval_mode_and_restores_mode():
    torch.manual_seed(0)
    encoder = TinyEncoder()
    loader = [{"points": torch.randn(4, 16, 3), "label": torch.arange(4) + 4 * i} for i in range(3)]
    encoder.train()
    feats, labels = extract_features(encoder, loader, "cpu")
    assert feats.shape == (12, 8) and feats.dtype == np.float32
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.arange(12))
    assert encoder.seen_training is False and encoder.seen_grad is False
    assert encoder.training  # restored
    again, _ = extract_features(encoder, loader, "cpu")
    np.testing.assert_array_equal(feats, again)  # eval mode: deterministic (no dropout, running BN stats)
    encoder.eval()
    extract_features(encoder, loader, torch.device("cpu"))
    assert not encoder.training


def test_plot_tsne_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 64)) + 5 * labels[:, None]
    path = tmp_path / "out" / "tsne.png"
    emb = plot_tsne(features, labels, path, class_names=["a", "b", "c"])
    assert emb.shape == (60, 2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

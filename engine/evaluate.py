"""Evaluation that knows no dataset: an inference loop, frozen features, the linear SVM, few-shot, t-SNE.

Everything after `extract_features` works on plain arrays. Accuracies are fractions in [0, 1] (as sklearn's
`score`), never percentages.

Contents
- `inference`: run a module over a loader in eval mode without gradients (the one evaluation loop).
- `extract_features`: frozen features of `{"points", "label"}` batches.
- `LinearSVM`, `linear_svm_accuracy`, `select_svm_c`: the linear-SVM protocol (sklearn `SVC(kernel="linear")`
  semantics, computed through a precomputed Gram matrix; see `LinearSVM`).
- `few_shot_episodes`, `few_shot_accuracy`: N-way K-shot evaluation, support from train, queries from test.
- `plot_tsne`: a t-SNE picture of features.
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.optim.swa_utils import update_bn
from tqdm import tqdm

from engine.parallel import ParallelForward
from engine.runtime import move_to_device
from utils.errors import NonFiniteError
from utils.files import atomic_write

# --------------------------------------------------------------------------------------------------------------
# Inference and feature extraction
# --------------------------------------------------------------------------------------------------------------


def inference(forward: Callable[[Mapping], torch.Tensor], module: torch.nn.Module, loader, device,
              amp_dtype: torch.dtype | None = None, desc: str | None = None) -> Iterator[tuple[torch.Tensor, Mapping]]:
    """Yield `(forward(batch).float(), batch)` for every batch of `loader`, the batch on `device`.

    `module` (whose parameters `forward` uses) runs in eval mode under `torch.inference_mode`, with autocast to
    `amp_dtype` when given; its previous train/eval mode is restored afterwards, also when an exception escapes.
    `desc` shows a progress bar.
    """
    device = torch.device(device)
    was_training = module.training
    module.eval()
    if desc is not None:
        loader = tqdm(loader, desc=desc, leave=False, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
        with torch.inference_mode():
            for batch in loader:
                batch = move_to_device(batch, device)
                with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                                    enabled=amp_dtype is not None):
                    out = forward(batch)
                yield out.float(), batch
    finally:
        module.train(was_training)


# Larger features overflow the float32 Gram matrix of the linear SVM (sums of 2048 products, max ~3.4e38).
FEATURE_LIMIT = 1e15


def extract_features(encoder: torch.nn.Module, loader, device, amp_dtype: torch.dtype | None = None,
                     desc: str | None = None, *, workers: int | None = None, chunk: int = 4):
    """Frozen features of every item of `loader` (batches with `points` and `label`).

    `encoder` maps points `(B, N, C)` to a feature tensor `(B, F)` (pass the backbone, not a module that also
    returns projections; under DDP pass the unwrapped module). It runs in eval mode without gradients (its
    mode is restored after). On a CPU each batch is cut into pieces of `chunk` clouds that run in `workers`
    threads of one torch thread each (engine.parallel: one per core by default); on a GPU a batch runs
    whole. Returns `(features, labels)`: float32 `(n, F)` and int64 `(n,)` numpy arrays, in loader order.
    """
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    if desc is not None:
        loader = tqdm(loader, desc=desc, unit="batch", leave=False, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    features, labels, seen = [], [], 0
    try:
        with ParallelForward(encoder, device, workers, amp_dtype) as parallel:
            for batch in loader:
                points = torch.as_tensor(batch["points"])
                pieces = torch.split(points, chunk) if parallel.workers > 1 else [points]
                try:
                    out = np.concatenate(list(parallel.run(pieces)))
                except TypeError as error:
                    raise TypeError(f"extract_features: {error}; pass the backbone that returns the representation "
                                    "(B, F)") from None
                out = out.reshape(len(out), -1)
                finite = (np.abs(out) <= FEATURE_LIMIT).all(axis=1)  # False for NaN and Inf too
                if not finite.all():
                    raise _non_finite(out, finite, seen, points, loader, desc)
                features.append(out)
                labels.append(torch.as_tensor(batch["label"]).reshape(-1).long().numpy())
                seen += len(out)
    finally:
        encoder.train(was_training)
    if not features:
        raise ValueError("extract_features: the loader yielded no batches")
    return np.concatenate(features).astype(np.float32, copy=False), np.concatenate(labels).astype(np.int64, copy=False)


def _non_finite(out, finite, seen, points, loader, desc) -> NonFiniteError:
    first = seen + int(np.flatnonzero(~finite)[0])
    largest = float(points.abs().max())
    where = f"{desc}: " if desc else ""
    cause = (f"its input coordinates reach {largest:.3g}, far outside the unit sphere the data should be "
             "normalised to" if largest > 1e3 else "the encoder's weights are not finite or overflow")
    dataset = getattr(loader, "dataset", getattr(getattr(loader, "iterable", None), "dataset", None))
    root = getattr(dataset, "root", None)
    source = f"{type(dataset).__name__}" + (f" in {root}" if root is not None else "")
    return NonFiniteError(f"{where}the encoder produced NaN, Inf or overflowing (> {FEATURE_LIMIT:g}) features for "
                          f"item {first} of {source}: {cause}")


def calibrated_batchnorm(encoder: torch.nn.Module, loader, device, desc: str | None = None) -> torch.nn.Module:
    """A copy of `encoder`, in eval mode, whose BatchNorm running statistics are estimated afresh from the
    `points` of every batch of `loader` (equal-weight average over batches: torch.optim.swa_utils.update_bn);
    no gradient, no weight changes, `encoder` itself untouched. A randomly initialised encoder normalises with
    mean 0 and variance 1, far from what its layers see: this is the random baseline a trained encoder, whose
    statistics were estimated in training, should be compared with. `desc` shows a progress bar. A seeded
    subset of the data suffices (`calibration_subset`; `python -m bench.calibration` measures how many
    shapes do)."""
    calibrated = copy.deepcopy(encoder)
    if desc is not None:
        loader = tqdm(loader, desc=desc, unit="batch", leave=False, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    with torch.no_grad():
        update_bn((batch["points"] for batch in loader), calibrated, torch.device(device))
    return calibrated.eval()


def calibration_subset(dataset, shapes: int, seed: int = 0):
    """`shapes` items of `dataset` drawn without replacement by a Generator seeded with `seed` (all of them
    when it has no more), in index order: the data BatchNorm statistics are calibrated on."""
    if shapes >= len(dataset):
        return dataset
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), shapes, replace=False))
    return torch.utils.data.Subset(dataset, chosen.tolist())


# --------------------------------------------------------------------------------------------------------------
# Linear SVM
# --------------------------------------------------------------------------------------------------------------


def gram_matrix(X, dtype: str = "float32", block: int = 1024) -> np.ndarray:
    """`X @ X.T` as a C-contiguous float64 array, computed in `dtype` block by block over the upper triangle
    and mirrored (exactly symmetric; half the flops of a full product)."""
    A = np.ascontiguousarray(X, dtype=np.dtype(dtype))
    n = len(A)
    K = np.empty((n, n), dtype=np.float64)
    for s in range(0, n, block):
        B = A[s:s + block] @ A[s:].T  # rows s..s+block, columns s..n
        K[s:s + block, s:] = B
        K[s + block:, s:s + block] = B[:, block:].T
    return K


class LinearSVM:
    """Multi-class linear SVM with exactly the semantics of sklearn `SVC(kernel="linear", C=C)`, only faster.

    Protocol: one-vs-one over all class pairs, hinge loss, libsvm's SMO solver (tolerance `tol`, shrinking),
    prediction by libsvm's pairwise vote (ties to the lowest class). No feature scaling (the published
    protocol feeds raw frozen features). `C` defaults to 0.01 as in the CrossPoint notebook and AdaCrossNet's
    test.py; CrossPoint's training loop used 0.1. Use `select_svm_c` to choose C on the training set.

    How it is fast. `SVC(kernel="linear")` spends nearly all its time in libsvm's kernel evaluations: every
    kernel entry is a scalar 2048-d dot product, recomputed whenever it falls out of the kernel cache, across
    the 780 pairwise problems of ModelNet40, and its predict evaluates test-by-support-vector kernels one by
    one (`python -m bench.svm` times both). Here the Gram matrix `X @ X.T` is computed once with BLAS and
    handed to `SVC(kernel="precomputed")`: libsvm then runs the *same* optimisation (same dual, same solver,
    same stopping rule) reading kernel entries from the matrix, so the solution differs from the reference
    only by rounding in the kernel values. Prediction does not build a test kernel: for a linear kernel each
    pairwise decision function is `w_ij . x + b_ij` with `w_ij = sum_k alpha_k y_k x_k` over that pair's
    support vectors, so the 780 primal weight vectors are formed once (float64) and prediction is one matrix
    product followed by libsvm's vote. Decision values agree with `SVC(kernel="linear")` to ~1e-14 with a
    float64 Gram (tests/test_evaluate.py).

    Gram precision. By default the Gram is computed in float32 (block upper triangle, mirrored, stored as
    float64 for libsvm): about twice as fast as float64, with relative errors around 1e-7, dual coefficients
    far inside libsvm's tol=1e-3 and identical test predictions at ModelNet40 size; `gram_dtype="float64"` gives
    the exact route. `python -m bench.svm` measures the speed against `SVC(kernel="linear")` and the agreement
    of the predictions. Not taken: a one-vs-one of liblinear hinge problems (LinearSVC) regularises the bias
    (intercept_scaling), so it solves a slightly different problem than SVC; with an exact route this fast
    there was no reason to accept an approximation.

    Memory: the Gram takes `8 n^2` bytes (775 MB for n = 9,840). Above `max_gram_bytes` (`method="auto"`)
    the model falls back to `SVC(kernel="linear")` with a warning; `method="gram"` / `"libsvm"` force a route.
    """

    def __init__(self, C: float = 0.01, tol: float = 1e-3, method: str = "auto", gram_dtype: str = "float32",
                 max_gram_bytes: int = 4 << 30, cache_size: float = 200.0):
        if not C > 0:
            raise ValueError(f"LinearSVM: C must be > 0, got {C}")
        if method not in ("auto", "gram", "libsvm"):
            raise ValueError(f"LinearSVM: method must be 'auto', 'gram' or 'libsvm', got {method!r}")
        self.C = float(C)
        self.tol = float(tol)
        if gram_dtype not in ("float32", "float64"):
            raise ValueError(f"LinearSVM: gram_dtype must be 'float32' or 'float64', got {gram_dtype!r}")
        self.method = method
        self.gram_dtype = gram_dtype
        self.max_gram_bytes = int(max_gram_bytes)
        self.cache_size = float(cache_size)

    # ---- fitting ----
    def fit(self, X, y, gram: np.ndarray | None = None) -> "LinearSVM":
        """Fit on features `X (n, F)` and labels `y (n,)`. `gram`, if given, must be `X @ X.T` as float64 (see
        `gram_matrix`; lets callers such as `select_svm_c` reuse one Gram across several C values)."""
        from sklearn.svm import SVC

        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.asarray(y).reshape(-1)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"LinearSVM.fit: X must be (n, F) with n = len(y); got {X.shape} and {y.shape}")
        if not np.isfinite(X).all():
            raise ValueError("LinearSVM.fit: features contain NaN or inf")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"LinearSVM.fit: need at least 2 classes, got {len(classes)}")
        n = len(X)
        method = self.method
        if method == "auto":
            method = "gram" if gram is not None or 8 * n * n <= self.max_gram_bytes else "libsvm"
            if method == "libsvm":
                warnings.warn(
                    f"LinearSVM: the {n} x {n} Gram matrix would take {8 * n * n / 2**30:.1f} GiB "
                    f"(> max_gram_bytes); falling back to the slow SVC(kernel='linear')",
                    RuntimeWarning, stacklevel=2)
        common = dict(C=self.C, tol=self.tol, cache_size=self.cache_size)
        if method == "gram":
            if gram is None:
                gram = gram_matrix(X, self.gram_dtype)
            elif gram.shape != (n, n):
                raise ValueError(f"LinearSVM.fit: gram must be ({n}, {n}), got {gram.shape}")
            svc = SVC(kernel="precomputed", **common).fit(gram, y)
        else:
            svc = SVC(kernel="linear", **common).fit(X, y)
        self._set_primal(svc, X)
        self.method_used_ = method
        return self

    def _set_primal(self, svc, X: np.ndarray) -> None:
        """Primal weights of each pairwise classifier, libsvm convention: decision > 0 votes for class i."""
        classes = svc.classes_
        k = len(classes)
        dual = np.asarray(svc.dual_coef_, dtype=np.float64)  # (k-1, n_sv), libsvm layout
        intercept = np.asarray(svc.intercept_, dtype=np.float64)
        if k == 2:  # sklearn flips both signs for binary problems (decision > 0 -> classes_[1])
            dual, intercept = -dual, -intercept
        support = np.asarray(svc.support_)
        starts = np.concatenate([[0], np.cumsum(svc.n_support_)])
        # partial[c][r]: contribution of class c's support vectors to its r-th pair (r indexes the other
        # classes in increasing order, skipping c); in libsvm's layout that is row r of dual_coef_.
        X_sv = X[support]  # grouped by class, in classes_ order
        partial = [dual[:, starts[c]:starts[c + 1]] @ X_sv[starts[c]:starts[c + 1]] for c in range(k)]  # (k-1, F)
        pairs_i, pairs_j = np.triu_indices(k, 1)  # libsvm pair order: (0,1), (0,2), ..., (k-2,k-1)
        coef = np.empty((len(pairs_i), X.shape[1]))
        for p, (i, j) in enumerate(zip(pairs_i, pairs_j)):
            coef[p] = partial[i][j - 1] + partial[j][i]
        self.classes_ = classes
        self.coef_ = coef
        self.intercept_ = intercept
        self.pairs_ = np.stack([pairs_i, pairs_j], 1)
        self.support_ = support  # as sklearn's SVC: indices of the support vectors, their counts per class
        self.n_support_ = np.asarray(svc.n_support_)  # and their dual coefficients (sklearn's sign convention)
        self.dual_coef_ = np.asarray(svc.dual_coef_)

    # ---- prediction ----
    def decision_function(self, X) -> np.ndarray:
        """Pairwise decision values `(n, k(k-1)/2)` in libsvm's pair order; > 0 votes for the lower class."""
        X = np.asarray(X, dtype=np.float64)
        return X @ self.coef_.T + self.intercept_

    def predict(self, X, chunk: int = 8192) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError("LinearSVM.predict called before fit")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.coef_.shape[1]:
            raise ValueError(f"LinearSVM.predict: X must be (n, {self.coef_.shape[1]}), got {X.shape}")
        k = len(self.classes_)
        to_i = np.zeros((len(self.pairs_), k))
        to_i[np.arange(len(self.pairs_)), self.pairs_[:, 0]] = 1
        to_j = np.zeros_like(to_i)
        to_j[np.arange(len(self.pairs_)), self.pairs_[:, 1]] = 1
        out = np.empty(len(X), dtype=np.int64)
        for s in range(0, len(X), chunk):
            wins = self.decision_function(X[s:s + chunk]) > 0
            votes = wins @ to_i + (~wins) @ to_j
            out[s:s + chunk] = votes.argmax(1)  # first maximum = lowest class, as libsvm
        return self.classes_[out]

    def score(self, X, y) -> float:
        """Accuracy in [0, 1]."""
        y = np.asarray(y).reshape(-1)
        return float(np.mean(self.predict(X) == y))


def linear_svm_accuracy(train_x, train_y, test_x, test_y, C: float = 0.01) -> float:
    """Test accuracy in [0, 1] of a `LinearSVM(C)` fitted on the training features (the published protocol)."""
    return LinearSVM(C=C).fit(train_x, train_y).score(test_x, test_y)


def select_svm_c(train_x, train_y, Cs: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
                 folds: int = 5, seed: int = 0, gram_dtype: str = "float32") -> tuple[float, dict[float, float]]:
    """Choose C by stratified `folds`-fold cross-validation on the TRAINING set only (never the test set).

    Returns `(best_C, {C: mean validation accuracy})`; ties go to the smaller C; a best C at the edge of the
    grid is warned about. The Gram matrix of the training set is computed once and sliced per fold, so each
    extra C costs only libsvm's optimisation (ModelNet40 size, 7 Cs x 5 folds: about a minute on 2 cores).
    """
    from sklearn.model_selection import StratifiedKFold

    X = np.ascontiguousarray(train_x, dtype=np.float64)
    y = np.asarray(train_y).reshape(-1)
    Cs = sorted(float(c) for c in Cs)
    if not Cs:
        raise ValueError("select_svm_c: Cs is empty")
    gram = gram_matrix(X, gram_dtype)
    scores = {c: [] for c in Cs}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_idx, val_idx in splitter.split(X, y):
        fold_gram = gram[np.ix_(fit_idx, fit_idx)]
        for c in Cs:
            model = LinearSVM(C=c, method="gram").fit(X[fit_idx], y[fit_idx], gram=fold_gram)
            scores[c].append(model.score(X[val_idx], y[val_idx]))
    means = {c: float(np.mean(v)) for c, v in scores.items()}
    best = max(Cs, key=lambda c: (means[c], -c))
    if len(Cs) > 1 and best in (Cs[0], Cs[-1]) and len(set(means.values())) > 1:
        warnings.warn(f"select_svm_c: the best C ({best:g}) is at the edge of the grid {Cs}; widen it",
                      RuntimeWarning, stacklevel=2)
    return best, means


# --------------------------------------------------------------------------------------------------------------
# Few-shot
# --------------------------------------------------------------------------------------------------------------


def few_shot_episodes(train_labels, test_labels, n_way: int, k_shot: int, n_query: int = 20,
                      n_runs: int = 10, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield `n_runs` episodes `(classes, support, query)`.

    `classes` (n_way,) sorted class labels; `support` (n_way * k_shot,) indices into the TRAIN split, `query`
    (n_way * n_query,) indices into the TEST split, both grouped class by class in `classes` order. Support and
    query therefore never share an object (CrossPoint drew queries from the training split, a defect fixed
    here), and there are no duplicates within an episode. Classes are drawn among those with >= k_shot
    training and >= n_query test samples (ValueError, raised at call time, when fewer than n_way qualify).
    Deterministic for a given seed.
    """
    train_labels = np.asarray(train_labels).reshape(-1)
    test_labels = np.asarray(test_labels).reshape(-1)
    if n_way < 1 or k_shot < 1 or n_query < 1 or n_runs < 1:
        raise ValueError(f"few_shot_episodes: n_way, k_shot, n_query, n_runs must be >= 1 "
                         f"(got {n_way}, {k_shot}, {n_query}, {n_runs})")
    train_classes, train_counts = np.unique(train_labels, return_counts=True)
    test_count = dict(zip(*np.unique(test_labels, return_counts=True)))
    eligible = np.array([c for c, n in zip(train_classes, train_counts)
                         if n >= k_shot and test_count.get(c, 0) >= n_query])
    if len(eligible) < n_way:
        raise ValueError(
            f"few_shot_episodes: {n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} classes with "
            f">= {k_shot} training and >= {n_query} test samples; only {len(eligible)} qualify")
    train_by_class = {c: np.flatnonzero(train_labels == c) for c in eligible}
    test_by_class = {c: np.flatnonzero(test_labels == c) for c in eligible}

    def episodes():
        rng = np.random.default_rng(seed)
        for _ in range(n_runs):
            classes = np.sort(rng.choice(eligible, size=n_way, replace=False))
            support = np.concatenate([rng.choice(train_by_class[c], size=k_shot, replace=False) for c in classes])
            query = np.concatenate([rng.choice(test_by_class[c], size=n_query, replace=False) for c in classes])
            yield classes, support, query

    return episodes()  # a generator; the checks above run at call time, not at the first next()


def few_shot_accuracy(train_x, train_y, test_x, test_y, n_way: int, k_shot: int, n_query: int = 20,
                      n_runs: int = 10, seed: int = 0, C: float = 1.0) -> tuple[float, float, list[float]]:
    """N-way K-shot accuracy as CrossPoint: per episode, StandardScaler fitted on the support set, then
    `SVC(kernel="linear", C=C)` on the scaled support, scored on the scaled queries (from the test split).

    Returns `(mean, std, per_run_accuracies)`, accuracies in [0, 1], std with ddof=0 (numpy's default).
    `C` defaults to sklearn's 1.0: a support set (<= 200 standardised points in 2048-d) is linearly separable,
    so C has little effect; CrossPoint did not publish the value it used for few-shot.
    """
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    train_x, test_x = np.asarray(train_x), np.asarray(test_x)
    train_y, test_y = np.asarray(train_y).reshape(-1), np.asarray(test_y).reshape(-1)
    accs = []
    for _, support, query in few_shot_episodes(train_y, test_y, n_way, k_shot, n_query, n_runs, seed):
        scaler = StandardScaler().fit(train_x[support])
        clf = SVC(kernel="linear", C=C).fit(scaler.transform(train_x[support]), train_y[support])
        accs.append(float(clf.score(scaler.transform(test_x[query]), test_y[query])))
    return float(np.mean(accs)), float(np.std(accs)), accs


# --------------------------------------------------------------------------------------------------------------
# t-SNE
# --------------------------------------------------------------------------------------------------------------


def plot_tsne(features, labels, path, class_names: Sequence[str] | None = None, seed: int = 0,
              perplexity: float = 30.0, pca_dim: int = 50) -> np.ndarray:
    """2-D t-SNE of `features (n, F)` coloured by `labels (n,)`, written as a PNG to `path`.

    Features are first reduced to `pca_dim` dimensions by PCA (standard practice; makes t-SNE fast on 2048-d
    features). One colour per class; a legend when there are at most 20 classes. Uses matplotlib's Agg canvas
    directly (no pyplot, no global backend switch). Returns the `(n, 2)` embedding.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib import colormaps
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    X = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels).reshape(-1)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"plot_tsne: features must be (n, F) with n = len(labels); got {X.shape}, {y.shape}")
    n = len(X)
    if n < 4:
        raise ValueError(f"plot_tsne: need at least 4 samples, got {n}")
    if X.shape[1] > pca_dim and n > pca_dim:
        X = PCA(n_components=pca_dim, random_state=seed).fit_transform(X)
    perplexity = min(perplexity, (n - 1) / 3)
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)

    classes = np.unique(y)
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "turbo"]
    fig = Figure(figsize=(8, 8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, c in enumerate(classes):
        colour = cmap(i if len(classes) <= 20 else i / max(len(classes) - 1, 1))
        name = class_names[int(c)] if class_names is not None else str(c)
        sel = y == c
        ax.scatter(emb[sel, 0], emb[sel, 1], s=4, color=colour, label=name)
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    atomic_write(path, lambda file: fig.savefig(file, format="png", bbox_inches="tight"))
    return emb

"""RISDA's held-out confusion graph (issue 24 item 5): cross-fitted predictions never come from a model that saw
the sample, and on overlapping classes they give a graph with more off-diagonal mass than the training-set one."""
import numpy as np
import torch

from models.graph.risda import confusion_graph, crossfit_predictions, paired_bootstrap, risda_stats, stratified_folds


def _one_nn(seen: list):
    """A 1-nearest-neighbour 'model': it memorises its training set (training-set predictions are perfect)."""

    def fit(xk, yk, k):
        seen.append(xk[:, 0].long().tolist())  # column 0 holds the sample id

        def predict(xx):
            d = torch.cdist(xx[:, 1:], xk[:, 1:])
            return yk[d.argmin(1)]

        return predict

    return fit


def _overlapping(n=90, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    f = rng.normal(size=(n, 2)) + 0.8 * np.eye(3, 2)[y]  # heavily overlapping classes
    x = np.column_stack([np.arange(n), f]).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_crossfit_predictions_come_from_models_that_did_not_train_on_the_sample():
    x, y = _overlapping()
    seen = []
    held = crossfit_predictions(_one_nn(seen), x, y, folds=3, seed=1)
    fold = stratified_folds(y.numpy(), 3, 1)
    assert len(seen) == 3
    for k, ids in enumerate(seen):
        assert set(ids) == set(np.flatnonzero(fold != k).tolist())  # fold k's model saw exactly the other folds
    # every prediction equals the 1-NN answer of the model that left the sample out (not the full-data model)
    for k in range(3):
        out = np.flatnonzero(fold == k)
        tr = np.flatnonzero(fold != k)
        nn_ = torch.cdist(x[out, 1:], x[tr, 1:]).argmin(1)
        assert torch.equal(held[out], y[tr][nn_])


def test_heldout_graph_has_more_off_diagonal_mass_than_the_train_set_graph():
    x, y = _overlapping()
    full = _one_nn([])(x, y, -1)
    kg_train = confusion_graph(y, full(x), 3)
    held = crossfit_predictions(_one_nn([]), x, y, folds=3, seed=1)
    kg_held = confusion_graph(y, held, 3)
    assert np.allclose(kg_train, np.eye(3))  # a model that fits its data: the train-set graph is the identity
    assert np.allclose(kg_held.sum(1), 1)
    off_train, off_held = 1 - np.diag(kg_train).mean(), 1 - np.diag(kg_held).mean()
    assert off_train == 0 and off_held > 0.2
    # and RISDA borrows accordingly: with the held-out graph the tail class gets a mean shift, with the train one none
    s_train = risda_stats(x[:, 1:], y, full(x), 3, tail=[2])
    s_held = risda_stats(x[:, 1:], y, held, 3, tail=[2])
    assert torch.all(s_train.shift == 0) and kg_held[2, 2] < 1 and s_held.shift[2].abs().sum() > 0.05
    assert np.allclose(s_held.kg, kg_held)


def test_stratified_folds_and_paired_bootstrap():
    y = np.array([0] * 10 + [1] * 6 + [2] * 2)
    fold = stratified_folds(y, 3, 0)
    for c, n in ((0, 10), (1, 6), (2, 2)):
        assert sorted(np.bincount(fold[y == c], minlength=3).tolist()) == sorted([n // 3 + (i < n % 3) for i in range(3)])
    assert paired_bootstrap([0.02] * 5) == [0.02, 0.02, 0.02]
    m, lo, hi = paired_bootstrap([0.01, -0.02, 0.03, 0.0, 0.01])
    assert lo <= m <= hi and np.isclose(m, 0.006)

"""rkbs.model_selection (the four pairwise settings) and rkbs.datasets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import cross_val_score

from rkbs.datasets import load_nuclear_receptor, make_pairwise_regression
from rkbs.estimators import BinaryKernelRidge
from rkbs.model_selection import PairwiseKFold


def _groups(n_x, n_y):
    return np.array([(a, b) for a in range(n_x) for b in range(n_y)])


@settings(max_examples=20, deadline=None)
@given(n_x=st.integers(3, 7), n_y=st.integers(3, 6), k=st.integers(2, 3),
       setting=st.sampled_from(["pairs", "rows", "columns", "both"]), seed=st.integers(0, 9))
def test_settings_keep_what_is_new_out_of_training(n_x, n_y, k, setting, seed):
    groups = _groups(n_x, n_y)
    cv = PairwiseKFold(setting, k, random_state=seed)
    splits = list(cv.split(np.zeros((len(groups), 1)), groups=groups))
    assert len(splits) == cv.get_n_splits() == (k * k if setting == "both" else k)
    tested = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(np.sort(tested), np.arange(len(groups)))  # every pair tested exactly once
    for train, test in splits:
        assert len(np.intersect1d(train, test)) == 0 and len(test) > 0
        rows_tr, cols_tr = set(groups[train, 0]), set(groups[train, 1])
        rows_te, cols_te = set(groups[test, 0]), set(groups[test, 1])
        if setting in ("rows", "both"):
            assert not rows_tr & rows_te
        if setting in ("columns", "both"):
            assert not cols_tr & cols_te
        if setting == "rows":  # every pair of the other rows is trained on
            assert len(train) == (n_x - len(rows_te)) * n_y


def test_split_grid_matches_split_and_respects_observed():
    observed = np.random.default_rng(0).random((6, 5)) < 0.7
    cv = PairwiseKFold("both", 2, random_state=1)
    for train, test in cv.split_grid((6, 5), observed):
        assert not (train & ~observed).any() and not (test & ~observed).any()
        assert not (train.any(1) & test.any(1)).any() and not (train.any(0) & test.any(0)).any()


def test_splitter_in_cross_val_score_groups_by_points():
    data = make_pairwise_regression(12, 10, 3, 2, random_state=0)
    A, B = np.meshgrid(np.arange(12), np.arange(10), indexing="ij")
    rows = np.hstack([data.X_x[A.ravel()], data.X_y[B.ravel()]])
    cv = PairwiseKFold("rows", 3, random_state=0, n_features_x=3)
    scores = cross_val_score(BinaryKernelRidge(n_features_x=3, alpha=0.1), rows, data.Z.ravel(), cv=cv)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    by_groups = list(PairwiseKFold("rows", 3, random_state=0).split(rows, groups=np.column_stack([A.ravel(),
                                                                                                  B.ravel()])))
    for (tr1, te1), (tr2, te2) in zip(cv.split(rows), by_groups):
        assert len(te1) == len(te2) == 40


@pytest.mark.parametrize("kwargs, groups, match", [
    ({"setting": "new"}, _groups(3, 3), "setting must be one of"),
    ({"n_splits": 1}, _groups(3, 3), "n_splits must be an integer >= 2"),
    ({}, None, "groups .an .n_pairs, 2. array"),
    ({}, np.zeros((9, 3)), r"groups must have shape \(n_pairs, 2\)"),
    ({"setting": "rows", "n_splits": 4}, _groups(3, 3), "more than the number of row objects"),
])
def test_splitter_bad_input(kwargs, groups, match):
    with pytest.raises(ValueError, match=match):
        list(PairwiseKFold(**kwargs).split(np.zeros((9, 2)), groups=groups))


def test_make_pairwise_regression_ground_truth():
    data = make_pairwise_regression(30, 20, 5, 3, noise=0.0, observed_fraction=0.5, random_state=0)
    assert data.Z.shape == (30, 20) and data.X_x.shape == (30, 5) and data.X_y.shape == (20, 3)
    observed = ~np.isnan(data.Z)
    assert 0.35 < observed.mean() < 0.65
    np.testing.assert_allclose(data.Z[observed], data.truth[observed])
    np.testing.assert_allclose(data.truth_function(data.X_x, data.X_y), data.truth)
    only_rows = make_pairwise_regression(30, 20, 5, 3, column_effect=0, interaction=0, noise=0, random_state=0)
    assert np.allclose(only_rows.truth, only_rows.truth[:, :1])  # a pure row effect is constant along rows
    inter = make_pairwise_regression(30, 20, 5, 3, row_effect=0, column_effect=0, noise=0, random_state=0)
    assert np.linalg.matrix_rank(inter.truth, tol=1e-6) > 3  # not a sum of a few separable terms
    with pytest.raises(ValueError, match="observed_fraction must be in"):
        make_pairwise_regression(observed_fraction=0.0)
    with pytest.raises(ValueError, match="n_rows must be an integer"):
        make_pairwise_regression(n_rows=0)


def test_nuclear_receptor_kronecker_equals_explicit_closed_form():
    nr = load_nuclear_receptor()
    assert nr.Y.shape == (54, 26) and nr.Y.sum() == 90 and len(nr.drug_folds) == len(nr.target_folds) == 3
    kd, kt = (nr.drug_similarity + nr.drug_similarity.T) / 2, nr.target_similarity
    model = BinaryKernelRidge(kernel="precomputed", alpha=0.3).fit_grid(kd, kt, nr.Y)
    G = np.kron(kt, kd)
    A = np.linalg.solve(G + 0.3 * np.eye(G.shape[0]), nr.Y.ravel(order="F")).reshape(54, 26, order="F")
    np.testing.assert_allclose(model.dual_coef_, A, atol=1e-8)
    with pytest.raises(ValueError, match="X_x is not symmetric"):
        BinaryKernelRidge(kernel="precomputed").fit_grid(nr.drug_similarity, kt, nr.Y)

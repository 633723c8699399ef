"""kernel="precomputed" for the unary estimators: the same model as the feature path."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from rkbs.estimators import RKBSClassifier, RKBSRegressor
from rkbs.kernels import AttentionKernel, get_kernel

RNG = np.random.default_rng(0)
X, XT = RNG.normal(size=(37, 3)), RNG.normal(size=(11, 3))
Y = np.sin(X[:, 0]) + 0.1 * RNG.normal(size=37)
ASYM = AttentionKernel(get_kernel("edp"), RNG.normal(size=(3, 3)) / 2, RNG.normal(size=(3, 3)) / 2)


@pytest.mark.parametrize("kernel, params", [
    (get_kernel("rbf", gamma=0.5), {}),
    (get_kernel("rbf", gamma=0.5), {"solver": "cg", "tol": 1e-13}),
    (get_kernel("tanh"), {"penalty": "coef"}),
    (get_kernel("tanh"), {"penalty": "krein"}),
    (get_kernel("tanh"), {"penalty": "rkhs", "spectrum": "clip"}),
    (ASYM, {}),
    (ASYM, {"penalty": "krein", "solver": "gmres", "tol": 1e-13}),
    (get_kernel("rbf", gamma=0.5), {"n_components": 20, "random_state": 0}),
    (get_kernel("edp"), {"normalize": True, "alpha": 1e-2}),
])
def test_regressor_precomputed_equals_feature_path(kernel, params):
    feat = RKBSRegressor(kernel=kernel, **params).fit(X, Y)
    pre = RKBSRegressor(kernel="precomputed", **params).fit(kernel(X, X), Y)
    assert pre.penalty_ == feat.penalty_ and pre.solver_ == feat.solver_
    np.testing.assert_allclose(pre.predict(kernel(XT, X)), feat.predict(XT), atol=1e-10, rtol=0)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_classifier_precomputed_equals_feature_path(loss):
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    k = get_kernel("rbf", gamma=0.5)
    feat = RKBSClassifier(kernel=k, loss=loss, alpha=0.1).fit(X, y)
    pre = RKBSClassifier(kernel="precomputed", loss=loss, alpha=0.1).fit(k(X, X), y)
    np.testing.assert_allclose(pre.decision_function(k(XT, X)), feat.decision_function(XT), atol=1e-10)


def test_precomputed_in_grid_search_slices_rows_and_columns():
    K = get_kernel("rbf", gamma=0.5)(X, X)
    search = GridSearchCV(RKBSRegressor(kernel="precomputed"), {"alpha": [1e-2, 1.0]}, cv=3).fit(K, Y)
    assert search.best_estimator_.dual_coef_.shape == (37,)


@pytest.mark.parametrize("fit_X, predict_X, params, match", [
    (np.ones((4, 3)), None, {}, r"square training kernel matrix"),
    (np.eye(4), np.ones((2, 3)), {}, "expecting 4 features"),
    (np.eye(4), None, {"kernel_params": {"gamma": 1.0}}, "takes no kernel_params"),
    (np.array([[1.0, 2.0], [0.0, 1.0]]), None, {"penalty": "rkhs"}, "asymmetric"),
    (np.diag([1.0, -1.0]), None, {"penalty": "rkhs"}, "indefinite"),
])
def test_precomputed_bad_input(fit_X, predict_X, params, match):
    with pytest.raises(ValueError, match=match):
        model = RKBSRegressor(kernel="precomputed", **params).fit(fit_X, np.arange(fit_X.shape[0], dtype=float))
        model.predict(predict_X)

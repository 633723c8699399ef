"""RKBSClassifier: least squares one-vs-rest and the logistic loss."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.datasets import load_digits, make_blobs

from rkbs.estimators import RKBSClassifier, RKBSRegressor
from rkbs.kernels import AttentionKernel, get_kernel

X, y = make_blobs(n_samples=90, centers=3, n_features=4, random_state=0)
X = (X - X.mean(0)) / X.std(0)


def test_squared_loss_is_one_vs_rest_ridge():
    clf = RKBSClassifier(kernel="tanh", alpha=0.1, penalty="coef").fit(X, y)
    Z = np.where(y[:, None] == np.arange(3), 1.0, -1.0)
    reg = RKBSRegressor(kernel="tanh", alpha=0.1, penalty="coef").fit(X, Z)
    np.testing.assert_allclose(clf.decision_function(X), reg.predict(X), atol=1e-10)
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("penalty", ["coef", "rkhs"])
@pytest.mark.parametrize("kernel", ["rbf", "sigmoid", AttentionKernel(get_kernel("edp"), np.eye(4)[:, :2],
                                                                      np.eye(4)[:, 1:3])])
def test_logistic_gradient_vanishes(penalty, kernel):
    k = get_kernel(kernel)
    if penalty == "rkhs" and not (k.positive_definite and k.symmetric):
        pytest.skip("rkhs needs a Mercer kernel")
    clf = RKBSClassifier(kernel=kernel, loss="logistic", penalty=penalty, alpha=0.1, tol=1e-9).fit(X, y)
    A = clf.kernel_(X, clf.centers_)
    B = clf.dual_coef_
    Y = np.eye(3)[y]
    P = np.eye(len(B)) if penalty == "coef" else clf.kernel_(clf.centers_)
    grad = A.T @ (softmax(A @ B, axis=1) - Y) + 2 * 0.1 * P @ B
    assert np.abs(grad).max() < 1e-6 * len(y)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(np.log(proba), clf.predict_log_proba(X), atol=1e-10)
    assert clf.score(X, y) > 0.9


def test_binary_logistic_decision_is_log_odds():
    Xb, yb = X[y < 2], np.where(y[y < 2] == 0, "a", "b")
    clf = RKBSClassifier(loss="logistic", alpha=0.1).fit(Xb, yb)
    p = clf.predict_proba(Xb)
    np.testing.assert_allclose(clf.decision_function(Xb), np.log(p[:, 1] / p[:, 0]), atol=1e-8)
    assert set(clf.predict(Xb)) <= {"a", "b"}


def test_digits_nystroem():
    Xd, yd = load_digits(return_X_y=True)
    Xd = Xd / 16.0
    clf = RKBSClassifier(kernel="rbf", kernel_params={"gamma": 0.02}, alpha=1e-3, n_components=300,
                         random_state=0).fit(Xd[:1000], yd[:1000])
    assert clf.score(Xd[1000:], yd[1000:]) > 0.9


def test_squared_loss_has_no_proba():
    clf = RKBSClassifier().fit(X, y)
    assert not hasattr(clf, "predict_proba")


@pytest.mark.parametrize(
    "params, yb, match",
    [
        ({}, np.zeros(90), "only one class"),
        ({}, np.linspace(0, 1, 90), "Unknown label type"),
        ({"loss": "hinge"}, y, "loss must be"),
        ({"loss": "logistic", "penalty": "krein"}, y, "convex"),
        ({"loss": "logistic", "spectrum": "clip"}, y, "spectrum applies to loss='squared'"),
        ({"kernel": "tanh", "penalty": "rkhs"}, y, "penalty='coef'"),
    ],
)
def test_bad_input(params, yb, match):
    with pytest.raises(ValueError, match=match):
        RKBSClassifier(**params).fit(X, yb)


# -------------------------------------------------------------------- logistic optimum, weights, intercept, dtype
Xn, yn = make_blobs(n_samples=90, centers=3, n_features=4, random_state=0, cluster_std=3.0)
Xn = (Xn - Xn.mean(0)) / Xn.std(0)  # overlapping classes: a finite, well-defined optimum


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_logistic_optimum_equals_logistic_regression(fit_intercept, weighted):
    # linear kernel + RKHS penalty: B with W = X^T B, alpha |W|^2 = alpha tr(B^T K B), i.e. C = 1 / (2 alpha)
    from sklearn.linear_model import LogisticRegression

    w = np.random.default_rng(0).integers(0, 3, size=90).astype(float) if weighted else None
    ours = RKBSClassifier(kernel="linear", kernel_params={"scale": 1.0}, loss="logistic", penalty="rkhs",
                          alpha=0.3, tol=1e-10, fit_intercept=fit_intercept).fit(Xn, yn, sample_weight=w)
    ref = LogisticRegression(C=1 / 0.6, fit_intercept=fit_intercept, tol=1e-14, max_iter=10_000).fit(
        Xn, yn, sample_weight=w)
    np.testing.assert_allclose(Xn.T @ ours.dual_coef_, ref.coef_.T, atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(Xn), ref.predict_proba(Xn), atol=1e-6)
    assert isinstance(ours.n_iter_, int) and ours.n_iter_ < 30  # Newton: tens of iterations, not thousands


@pytest.mark.parametrize("penalty", ["coef", "rkhs"])
def test_logistic_weights_equal_repeated_samples(penalty):
    w = np.random.default_rng(1).integers(0, 4, size=90)
    common = dict(kernel="rbf", loss="logistic", penalty=penalty, alpha=0.1, tol=1e-10, fit_intercept=True)
    weighted = RKBSClassifier(**common).fit(Xn, yn, sample_weight=w)
    repeated = RKBSClassifier(**common).fit(np.repeat(Xn, w, axis=0), np.repeat(yn, w))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-6)


def test_logistic_nystroem_rkhs_gradient_vanishes():
    clf = RKBSClassifier(loss="logistic", alpha=0.1, n_components=30, random_state=0, tol=1e-10).fit(Xn, yn)
    A, Kmm = clf.kernel_(Xn, clf.centers_), clf.kernel_(clf.centers_)
    grad = A.T @ (softmax(A @ clf.dual_coef_, axis=1) - np.eye(3)[yn]) + 2 * 0.1 * Kmm @ clf.dual_coef_
    assert np.abs(grad).max() < 1e-7 * len(yn)


def test_logistic_that_stops_early_warns():
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="logistic Newton solver stopped after 1 iterations"):
        RKBSClassifier(loss="logistic", alpha=1e-3, max_iter=1).fit(Xn, yn)


def test_squared_loss_weights_and_float32():
    w = np.random.default_rng(2).integers(0, 3, size=90)
    weighted = RKBSClassifier(kernel="tanh", penalty="coef", alpha=0.1).fit(X, y, sample_weight=w)
    repeated = RKBSClassifier(kernel="tanh", penalty="coef", alpha=0.1).fit(np.repeat(X, w, 0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.decision_function(X), repeated.decision_function(X), atol=1e-8)
    clf = RKBSClassifier(loss="logistic", alpha=0.1).fit(X.astype(np.float32), y)
    assert clf.dual_coef_.dtype == clf.predict_proba(X.astype(np.float32)).dtype == np.float32


def test_sparse_logistic_equals_dense():
    import scipy.sparse as sp

    Xs = sp.csr_matrix(np.where(np.abs(Xn) > 0.8, Xn, 0.0))
    params = dict(kernel="rbf", loss="logistic", alpha=0.1, fit_intercept=True, tol=1e-10)
    sparse = RKBSClassifier(**params).fit(Xs, yn)
    dense = RKBSClassifier(**params).fit(Xs.toarray(), yn)
    np.testing.assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(Xs.toarray()), atol=1e-8)

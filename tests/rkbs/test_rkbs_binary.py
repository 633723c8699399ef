"""BinaryKernelRidge (closed form, Kronecker, matrix-free) and BinaryKernelLearner."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rkbs.estimators import BinaryKernelLearner, BinaryKernelRidge
from rkbs.kernels import AttentionKernel, get_kernel

RNG = np.random.default_rng(0)
XX, XY = RNG.normal(size=(7, 3)), RNG.normal(size=(5, 2))
KAPPA = AttentionKernel(get_kernel("tanh"), RNG.normal(size=(3, 4)), RNG.normal(size=(2, 4)))
Z = np.tanh(XX[:, :1] @ XY[:, :1].T) + 0.1 * RNG.normal(size=(7, 5))


def _rows(Xx, Xy):
    return np.hstack([np.repeat(Xx, len(Xy), 0), np.tile(Xy, (len(Xx), 1))])


def _brute_force_two_sided(K, Zm, alpha):
    """argmin |K C K - Z|^2 + alpha |C|^2 over vec(C): vec(K C K) = (K^T kron K) vec(C), column-major."""
    M = np.kron(K.T, K)
    c = np.linalg.solve(M.T @ M + alpha * np.eye(M.shape[1]), M.T @ Zm.ravel(order="F"))
    return c.reshape(K.shape[1], K.shape[0], order="F")


@settings(max_examples=10, deadline=None)
@given(nx=st.integers(1, 6), ny=st.integers(1, 6), alpha=st.floats(1e-3, 10.0), seed=st.integers(0, 99))
def test_two_sided_closed_form_equals_brute_force(nx, ny, alpha, seed):
    rng = np.random.default_rng(seed)
    Xx, Xy, Zm = rng.normal(size=(nx, 3)), rng.normal(size=(ny, 2)), rng.normal(size=(nx, ny))
    model = BinaryKernelRidge(kernel=KAPPA, alpha=alpha).fit_grid(Xx, Xy, Zm)
    expected = _brute_force_two_sided(KAPPA(Xx, Xy), Zm, alpha)
    np.testing.assert_allclose(model.dual_coef_, expected, atol=1e-8 * max(1.0, np.abs(expected).max()))
    assert model.solver_ == "svd"


def test_two_sided_lsqr_agrees_and_handles_missing_pairs():
    full = BinaryKernelRidge(kernel=KAPPA, alpha=0.1).fit_grid(XX, XY, Z)
    it = BinaryKernelRidge(kernel=KAPPA, alpha=0.1, solver="lsqr", tol=1e-12).fit_grid(XX, XY, Z)
    np.testing.assert_allclose(it.dual_coef_, full.dual_coef_, atol=1e-8)
    # drop a third of the pairs: LSQR minimizes over the observed ones only
    rows, z = _rows(XX, XY), Z.ravel()
    keep = RNG.permutation(35)[:24]
    part = BinaryKernelRidge(kernel=KAPPA, alpha=0.1, n_features_x=3, tol=1e-12).fit(rows[keep], z[keep])
    assert part.solver_ == "lsqr"
    K = KAPPA(part.x_centers_, part.y_centers_)
    H = K @ part.dual_coef_ @ K
    Xu_idx = [np.flatnonzero((part.x_centers_ == r).all(1))[0] for r in rows[keep, :3]]
    Yu_idx = [np.flatnonzero((part.y_centers_ == r).all(1))[0] for r in rows[keep, 3:]]
    R = np.zeros_like(H)
    np.add.at(R, (Xu_idx, Yu_idx), H[Xu_idx, Yu_idx] - z[keep])
    grad = K.T @ R @ K.T + 0.1 * part.dual_coef_
    assert np.abs(grad).max() < 1e-8 * max(1.0, np.abs(K.T @ np.abs(R) @ K.T).max())
    np.testing.assert_allclose(part.predict(rows[keep]), H[Xu_idx, Yu_idx], atol=1e-10)


def test_kronecker_equals_kernel_ridge_on_kronecker_gram():
    Xy3 = RNG.normal(size=(5, 3))
    kx, ky = get_kernel("rbf", gamma=0.5), get_kernel("laplacian", gamma=0.3)
    model = BinaryKernelRidge(kernel=kx, kernel_y=ky, mode="kronecker", alpha=0.1).fit_grid(XX, Xy3, Z)
    ref = KernelRidge(kernel="precomputed", alpha=0.1).fit(np.kron(ky(Xy3), kx(XX)), Z.ravel(order="F"))
    np.testing.assert_allclose(model.dual_coef_, ref.dual_coef_.reshape(7, 5, order="F"), atol=1e-10)
    Xt, Yt = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 3))
    expected = ref.predict(np.kron(ky(Yt, Xy3), kx(Xt, XX))).reshape(4, 3, order="F")
    np.testing.assert_allclose(model.predict_grid(Xt, Yt), expected, atol=1e-10)
    np.testing.assert_allclose(model.predict(_rows(Xt, Yt)), expected.ravel(), atol=1e-10)
    cg = BinaryKernelRidge(kernel=kx, kernel_y=ky, mode="kronecker", alpha=0.1, solver="cg",
                           tol=1e-13).fit_grid(XX, Xy3, Z)
    np.testing.assert_allclose(cg.dual_coef_, model.dual_coef_, atol=1e-9)


def test_pairs_as_rows_in_pipeline_and_grid_search():
    Xy3 = RNG.normal(size=(6, 3))
    Xx = RNG.normal(size=(8, 3))
    rows = _rows(Xx, Xy3)
    z = np.exp(-0.5 * ((rows[:, :3] - rows[:, 3:]) ** 2).sum(1))
    grid = GridSearchCV(BinaryKernelRidge(kernel=get_kernel("rbf"), n_features_x=3),
                        {"kernel__gamma": [0.1, 0.5], "alpha": [1e-3, 1e-1]}, cv=3).fit(rows, z)
    assert set(grid.best_params_) == {"kernel__gamma", "alpha"}
    scores = cross_val_score(make_pipeline(StandardScaler(), BinaryKernelRidge(mode="kronecker", n_features_x=3)),
                             rows, z, cv=3)
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize(
    "params, call, match",
    [
        ({"n_features_x": 9}, "fit", "n_features_x=9 does not split X"),
        ({"n_features_x": 0}, "fit", "n_features_x=0"),
        ({"n_features_x": 2.5}, "fit", "n_features_x must be an integer"),
        ({"mode": "kronecker", "kernel": "tanh"}, "fit", "two Mercer kernels"),
        ({"mode": "diagonal"}, "fit", "mode must be"),
        ({"solver": "svd", "n_features_x": 3}, "fit_partial", "full grid"),
        ({"solver": "cg"}, "fit_grid", "does not apply to mode='two_sided'"),
        ({"kernel_y": "rbf"}, "fit_grid", "kernel_y"),
        ({}, "bad_Z", "Z must have shape"),
        ({}, "nan", "NaN"),
        ({"kernel": "rbf"}, "fit_grid_dims", "Y has 2 features but X has 3"),
    ],
)
def test_binary_ridge_bad_input(params, call, match):
    rows = _rows(XX, np.hstack([XY, XY[:, :1]]))
    with pytest.raises((ValueError, TypeError), match=match):
        model = BinaryKernelRidge(**{"kernel": KAPPA, **params})
        if call == "fit":
            model.fit(rows, np.ones(len(rows)))
        elif call == "fit_partial":
            model.fit(rows[:-1], np.ones(len(rows) - 1))
        elif call == "bad_Z":
            model.fit_grid(XX, XY, Z[:, :4])
        elif call == "nan":
            model.fit_grid(XX, XY, np.where(Z > 0.5, np.nan, Z))
        elif call == "fit_grid_dims":
            model.fit_grid(XX, XY, Z)
        else:
            model.fit_grid(XX, XY, Z)


def test_learner_loss_decreases_and_exposes_kernels():
    Xs = RNG.normal(size=(12, 3))
    Xs /= np.linalg.norm(Xs, axis=1, keepdims=True)
    Zs = get_kernel("polynomial", degree=2, scale=1.0)(Xs, Xs)
    m = BinaryKernelLearner(n_heads=2, head_dim=3, max_iter=60, learning_rate=0.05).fit_grid(Xs, Xs, Zs)
    assert m.loss_curve_[-1] < 0.5 * m.loss_curve_[0]
    assert m.query_maps_.shape == (2, 3, 3) and m.head_weights_.shape == (2,)
    H = sum(w * k(Xs, Xs) for w, k in zip(m.head_weights_, m.kernels_))
    np.testing.assert_allclose(m.predict_grid(Xs, Xs), H, rtol=1e-10)
    np.testing.assert_allclose(m.predict(_rows(Xs, Xs)), H.ravel(), rtol=1e-10)
    again = BinaryKernelLearner(n_heads=2, head_dim=3, max_iter=60, learning_rate=0.05).fit_grid(Xs, Xs, Zs)
    np.testing.assert_array_equal(again.query_maps_, m.query_maps_)  # fixed seed


@pytest.mark.parametrize("params, match", [({"n_heads": 0}, "n_heads must be >= 1"),
                                           ({"learning_rate": 0.0}, "learning_rate must be > 0"),
                                           ({"n_features_x": 7}, "does not split")])
def test_learner_bad_input(params, match):
    with pytest.raises(ValueError, match=match):
        BinaryKernelLearner(**params).fit(np.ones((4, 4)), np.ones(4))

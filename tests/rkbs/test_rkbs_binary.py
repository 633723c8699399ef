"""BinaryKernelRidge (closed form, Kronecker, matrix-free) and BinaryKernelLearner."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rkbs.estimators import BinaryKernelLearner, BinaryKernelRidge
from rkbs.estimators._binary_solvers import two_sided_dual, two_sided_lsqr
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


@pytest.mark.parametrize("solver", ["cholesky", "lsqr"])
def test_two_sided_pair_solvers_agree_and_handle_missing_pairs(solver):
    full = BinaryKernelRidge(kernel=KAPPA, alpha=0.1).fit_grid(XX, XY, Z)
    it = BinaryKernelRidge(kernel=KAPPA, alpha=0.1, solver=solver, tol=1e-12).fit_grid(XX, XY, Z)
    np.testing.assert_allclose(it.dual_coef_, full.dual_coef_, atol=1e-8)
    # drop a third of the pairs: the solver minimizes over the observed ones only
    rows, z = _rows(XX, XY), Z.ravel()
    keep = np.random.default_rng(5).permutation(35)[:24]
    part = BinaryKernelRidge(kernel=KAPPA, alpha=0.1, n_features_x=3, solver=solver, tol=1e-12).fit(
        rows[keep], z[keep])
    assert part.solver_ == solver
    K = KAPPA(part.x_centers_, part.y_centers_)
    H = K @ part.dual_coef_ @ K
    Xu_idx = [np.flatnonzero((part.x_centers_ == r).all(1))[0] for r in rows[keep, :3]]
    Yu_idx = [np.flatnonzero((part.y_centers_ == r).all(1))[0] for r in rows[keep, 3:]]
    R = np.zeros_like(H)
    np.add.at(R, (Xu_idx, Yu_idx), H[Xu_idx, Yu_idx] - z[keep])
    grad = K.T @ R @ K.T + 0.1 * part.dual_coef_
    assert np.abs(grad).max() < 1e-8 * max(1.0, np.abs(K.T @ np.abs(R) @ K.T).max())
    np.testing.assert_allclose(part.predict(rows[keep]), H[Xu_idx, Yu_idx], atol=1e-10)


def _observed_pairs_brute_force(K, a, b, z, alpha):
    """argmin sum_obs ((K C K)[a, b] - z)^2 + alpha |C|^2 with the explicit design rows of vec(K C K)."""
    M = np.kron(K.T, K)[a + K.shape[0] * b]  # column-major vec: pair (a, b) is row a + n_x b
    c = np.linalg.solve(M.T @ M + alpha * np.eye(M.shape[1]), M.T @ z)
    return c.reshape(K.shape[1], K.shape[0], order="F")


@settings(max_examples=10, deadline=None)
@given(nx=st.integers(1, 6), ny=st.integers(1, 5), alpha=st.floats(1e-3, 10.0), seed=st.integers(0, 99))
def test_two_sided_dual_equals_brute_force_on_observed_pairs(nx, ny, alpha, seed):
    rng = np.random.default_rng(seed)
    K = KAPPA(rng.normal(size=(nx, 3)), rng.normal(size=(ny, 2)))
    a, b = np.nonzero(rng.random((nx, ny)) < 0.6)
    if a.size == 0:
        a, b = np.array([0]), np.array([0])
    z = rng.normal(size=a.size)
    expected = _observed_pairs_brute_force(K, a, b, z, alpha)
    scale = max(1.0, np.abs(expected).max())
    for solve, extra in ((two_sided_dual, ()), (two_sided_lsqr, (1e-14, None))):
        C, _ = solve(K, a, b, z, alpha, *extra)
        np.testing.assert_allclose(C, expected, atol=1e-7 * scale)


@pytest.mark.filterwarnings("ignore::rkbs.solvers.ConditioningWarning")
def test_ill_conditioned_missing_pairs_solved_exactly_and_lsqr_preconditioned():
    # an exponential cross-domain kernel with random maps (singular values 2e3 to 9e-4), 30% of the pairs
    # observed: LSQR runs out of iterations at alpha 1e-4, the dual is exact
    rng = np.random.default_rng(0)
    Xx, Xy = rng.normal(size=(40, 6)), rng.normal(size=(30, 5))
    kappa = AttentionKernel(get_kernel("edp"), rng.normal(size=(6, 4)) / np.sqrt(6),
                            rng.normal(size=(5, 4)) / np.sqrt(5))
    Zn = np.where(rng.random((40, 30)) < 0.3, rng.normal(size=(40, 30)), np.nan)
    K, (a, b) = kappa(Xx, Xy), np.nonzero(~np.isnan(Zn))
    z, alpha = Zn[a, b], 1e-4
    # reference: least squares on the explicit augmented system [design; sqrt(alpha) I] by QR (backward stable)
    design = np.kron(K.T, K)[a + K.shape[0] * b]
    c = np.linalg.lstsq(np.vstack([design, np.sqrt(alpha) * np.eye(K.size)]), np.concatenate([z, np.zeros(K.size)]),
                        rcond=None)[0]
    expected = K @ c.reshape(K.shape[1], K.shape[0], order="F") @ K
    model = BinaryKernelRidge(kernel=kappa, alpha=alpha).fit_grid(Xx, Xy, Zn)
    assert model.solver_ == "cholesky" and model.n_iter_ == 1
    np.testing.assert_allclose(K @ model.dual_coef_ @ K, expected, atol=1e-7 * np.abs(expected).max())
    # LSQR in K's SVD basis with the Jacobi scaling against plain LSQR on the same problem (rbf: both converge;
    # benchmarks/pairwise_solvers.py measures 2.7 to 180 times fewer iterations with maps scaled like these)
    kappa = AttentionKernel(get_kernel("rbf", gamma=0.5), rng.normal(size=(6, 4)) / np.sqrt(6),
                            rng.normal(size=(5, 4)) / np.sqrt(5))
    K, alpha = kappa(Xx, Xy), 1e-3

    def matvec(c):
        return (K @ c.reshape(30, 40) @ K)[a, b]

    def rmatvec(r):
        R = np.zeros_like(K)
        np.add.at(R, (a, b), r)
        return (K.T @ R @ K.T).ravel()

    plain = scipy.sparse.linalg.lsqr(scipy.sparse.linalg.LinearOperator((a.size, K.size), matvec, rmatvec), z,
                                     damp=np.sqrt(alpha), atol=1e-8, btol=1e-8)
    ours = BinaryKernelRidge(kernel=kappa, alpha=alpha, solver="lsqr").fit_grid(Xx, Xy, Zn)
    exact = BinaryKernelRidge(kernel=kappa, alpha=alpha, solver="cholesky").fit_grid(Xx, Xy, Zn)
    assert ours.n_iter_ < plain[2] / 2, (ours.n_iter_, plain[2])
    expected = K @ exact.dual_coef_ @ K
    np.testing.assert_allclose(K @ ours.dual_coef_ @ K, expected, atol=1e-4 * np.abs(expected).max())


def test_dual_of_a_singular_pair_system_names_the_fix():
    rng = np.random.default_rng(0)
    K = np.outer(rng.random(8) + 1, rng.random(6) + 1) * 1e3  # rank 1: the pair Gram matrix is singular
    Zn = np.where(rng.random((8, 6)) < 0.6, rng.normal(size=(8, 6)), np.nan)
    model = BinaryKernelRidge(kernel="precomputed", mode="two_sided", alpha=1e-30, solver="cholesky")
    with pytest.raises(ValueError, match=r"observed pairs .* not positive definite .*increase alpha, or use "
                                         r"solver='lsqr'"):
        model.fit_grid(K, K.T, Zn)


def test_auto_solver_of_missing_pairs(monkeypatch):
    from rkbs.estimators import binary_ridge

    Zn = np.where(np.random.default_rng(3).random(Z.shape) < 0.7, Z, np.nan)
    assert BinaryKernelRidge(kernel=KAPPA, alpha=0.1).fit_grid(XX, XY, Zn).solver_ == "cholesky"
    assert BinaryKernelRidge(kernel=KAPPA, alpha=0.0).fit_grid(XX, XY, Zn).solver_ == "lsqr"  # minimum norm
    assert BinaryKernelRidge(kernel="rbf", mode="kronecker", alpha=0.1).fit_grid(XX, XY, Zn).solver_ == "cg"
    monkeypatch.setitem(binary_ridge._AUTO_DUAL_MAX_PAIRS, "two_sided", 10)
    assert BinaryKernelRidge(kernel=KAPPA, alpha=0.1).fit_grid(XX, XY, Zn).solver_ == "lsqr"


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
        ({"solver": "cholesky", "alpha": 0.0}, "fit_grid", "needs alpha > 0"),
        ({"kernel_y": "rbf"}, "fit_grid", "kernel_y"),
        ({}, "bad_Z", "Z must have shape"),
        ({}, "nan", "no observed pair"),
        ({}, "inf", "infinity"),
        ({}, "mask_dtype", "observed must be a boolean"),
        ({}, "mask_shape", "observed must have the shape"),
        ({}, "mask_nan", "NaN at pairs that observed marks"),
        ({"alphas": [0.1, 0.0]}, "fit_grid", "alphas must be"),
        ({"alphas": [0.1]}, "nan_one", "alphas .a regularisation path. needs the closed form"),
        ({"kernel": "precomputed"}, "fit", "pair rows"),
        ({"kernel": "precomputed", "kernel_params": {"gamma": 1.0}}, "fit_grid", "takes no kernel_params"),
        ({"kernel": "precomputed"}, "pc_asym", "X_x is not symmetric"),
        ({"kernel": "precomputed"}, "pc_indef", "X_y is not positive semi-definite"),
        ({"kernel": "precomputed"}, "pc_rect", "square Gram matrices"),
        ({"kernel": "precomputed", "mode": "two_sided"}, "pc_two", "its transpose"),
        ({"kernel": "rbf", "mode": "two_sided"}, "fit_grid_dims", "Y has 2 features but X has 3"),
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
            model.fit_grid(XX, XY, np.full_like(Z, np.nan))
        elif call == "inf":
            model.fit_grid(XX, XY, np.where(Z > 0.5, np.inf, Z))
        elif call == "mask_dtype":
            model.fit_grid(XX, XY, Z, observed=np.ones(Z.shape))
        elif call == "mask_shape":
            model.fit_grid(XX, XY, Z, observed=np.ones((2, 2), bool))
        elif call == "mask_nan":
            model.fit_grid(XX, XY, np.where(Z > 0.5, np.nan, Z), observed=np.ones(Z.shape, bool))
        elif call == "nan_one":
            Zn = Z.copy()
            Zn[0, 0] = np.nan
            model.fit_grid(XX, XY, Zn)
        elif call == "pc_asym":
            model.fit_grid(RNG.normal(size=(7, 7)), np.eye(5), Z)
        elif call == "pc_indef":
            model.fit_grid(np.eye(7), np.diag([1.0, 1, 1, 1, -1]), Z)
        elif call == "pc_rect":
            model.fit_grid(np.ones((7, 5)), np.eye(5), Z)
        elif call == "pc_two":
            model.fit_grid(np.ones((7, 5)), np.ones((5, 7)) * 2, Z)
        elif call == "fit_grid_dims":
            model.fit_grid(XX, XY, Z)
        else:
            model.fit_grid(XX, XY, Z)


@pytest.mark.parametrize("head", ["exp", "rbf"])
def test_learner_loss_decreases_and_exposes_kernels(head):
    Xs = RNG.normal(size=(12, 3))
    Xs /= np.linalg.norm(Xs, axis=1, keepdims=True)
    Zs = get_kernel("polynomial", degree=2, scale=1.0)(Xs, Xs)
    params = {"n_heads": 2, "head_dim": 3, "max_iter": 60, "learning_rate": 0.05, "early_stopping": False,
              "head": head}
    with pytest.warns(ConvergenceWarning, match="max_iter=60") as record:
        m = BinaryKernelLearner(**params).fit_grid(Xs, Xs, Zs)
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert m.loss_curve_[-1] < 0.5 * m.loss_curve_[0]
    assert m.query_maps_.shape == (2, 3, 3) and m.head_weights_.shape == (2,) and m.query_bias_.shape == (2, 3)
    H = sum(w * k(Xs, Xs) for w, k in zip(m.head_weights_, m.kernels_))
    np.testing.assert_allclose(m.predict_grid(Xs, Xs), H, rtol=1e-10)
    np.testing.assert_allclose(m.kernel_(Xs, Xs), H, rtol=1e-10)
    np.testing.assert_allclose(m.predict(_rows(Xs, Xs)), H.ravel(), rtol=1e-10)
    with pytest.warns(ConvergenceWarning):
        again = BinaryKernelLearner(**params).fit_grid(Xs, Xs, Zs)
    np.testing.assert_array_equal(again.query_maps_, m.query_maps_)  # fixed seed


@pytest.mark.parametrize("learning_rate", [0.3, 1.0, 3.0])
def test_learner_never_returns_worse_than_initialization_silently(learning_rate):
    rng = np.random.default_rng(1)
    Xx, Xy = rng.normal(size=(30, 3)), rng.normal(size=(20, 3))
    Zs = np.exp(-0.5 * ((Xx[:, None, :] - Xy[None]) ** 2).sum(-1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = BinaryKernelLearner(learning_rate=learning_rate, max_iter=200).fit_grid(Xx, Xy, Zs)
    scores = m.validation_scores_
    assert scores[m.best_iter_] == min(scores)  # the best parameters were restored
    val_pred_loss = scores[m.best_iter_]
    if val_pred_loss > scores[0] or scores[-1] > 2 * val_pred_loss or m.best_iter_ == 0:
        assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


def test_learner_early_stopping_restores_best_and_handles_missing_pairs():
    rng = np.random.default_rng(2)
    Xx, Xy = rng.normal(size=(25, 2)), rng.normal(size=(20, 2))
    Zs = np.exp(-0.5 * ((Xx[:, None, :] - Xy[None]) ** 2).sum(-1))
    Zn = np.where(rng.random(Zs.shape) < 0.3, np.nan, Zs)
    m = BinaryKernelLearner(n_heads=4, head_dim=4, learning_rate=0.01, max_iter=3000, n_iter_no_change=30, alpha=1e-4,
                            learning_rate_schedule="cosine").fit_grid(Xx, Xy, Zn)
    assert m.n_iter_ < 3000 and m.n_iter_ - m.best_iter_ == 30
    assert m.validation_scores_[m.best_iter_] < 0.7 * m.validation_scores_[0]
    assert len(m.validation_scores_) == m.n_iter_ + 1 and len(m.loss_curve_) == m.n_iter_
    # learn the kernel, then solve in closed form (two-sided mode); and the attention layer reproduces it
    ridge = BinaryKernelRidge(kernel=m.kernel_, alpha=1e-3).fit_grid(Xx, Xy, Zn)
    assert ridge.mode_ == "two_sided" and ridge.solver_ == "cholesky"  # pairs are missing: the exact dual
    torch = pytest.importorskip("torch")
    from attention_kernels.modules import KernelAttention

    module = KernelAttention.from_estimator(m)
    Xt = rng.normal(size=(4, 2))
    np.testing.assert_allclose(module(torch.as_tensor(Xt)).numpy(), m.predict_grid(Xt, Xy), rtol=1e-10)


@pytest.mark.parametrize("params, match", [({"n_heads": 0}, "n_heads must be >= 1"),
                                           ({"learning_rate": 0.0}, "learning_rate must be > 0"),
                                           ({"validation_fraction": 1.0}, "validation_fraction must be < 1"),
                                           ({"learning_rate_schedule": "step"}, "learning_rate_schedule"),
                                           ({"validation_split": "folds"}, "validation_split must be one of"),
                                           ({"early_stopping": 1}, "early_stopping must be a bool"),
                                           ({"n_features_x": 7}, "does not split"),
                                           ({"head": "gauss"}, "head must be one of"),
                                           ({"ensemble_size": 0}, "ensemble_size must be >= 1"),
                                           ({"head": "rbf", "logit_cap": 3.0}, "head='rbf' is bounded")])
def test_learner_bad_input(params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        BinaryKernelLearner(**params).fit(np.ones((4, 4)), np.ones(4))


# ------------------------------------------------------------------------------------ missing responses
@pytest.mark.parametrize("mode", ["two_sided", "kronecker"])
def test_nan_and_mask_solve_over_observed_pairs(mode):
    kernel = KAPPA if mode == "two_sided" else get_kernel("rbf", gamma=0.4)
    Xy = XY if mode == "two_sided" else RNG.normal(size=(5, 3))
    # a local generator: the module's RNG state depends on which tests ran before in the same worker
    observed = np.random.default_rng(7).random(Z.shape) < 0.6
    # every row and column keeps an observed pair, so the pair rows below span the same points as the grid
    observed[np.arange(Z.shape[0]), (np.arange(Z.shape[0]) + 1) % Z.shape[1]] = True
    observed[(np.arange(Z.shape[1]) + 1) % Z.shape[0], np.arange(Z.shape[1])] = True
    observed[0, 0] = False
    Zn = np.where(observed, Z, np.nan)
    params = {"kernel": kernel, "mode": mode, "alpha": 0.1, "tol": 1e-13}
    by_nan = BinaryKernelRidge(**params).fit_grid(XX, Xy, Zn)
    by_mask = BinaryKernelRidge(**params).fit_grid(XX, Xy, np.where(observed, Z, 1e6), observed=observed)
    a, b = np.nonzero(observed)
    rows = np.hstack([XX[a], Xy[b]])
    # pairs as rows over the same points: same distinct points, same solution (points are sorted the same way)
    by_rows = BinaryKernelRidge(**params, n_features_x=3).fit(rows, Z[a, b])
    Xt, Yt = RNG.normal(size=(4, 3)), RNG.normal(size=(6, Xy.shape[1]))
    expected = by_rows.predict_grid(Xt, Yt)
    np.testing.assert_allclose(by_nan.predict_grid(Xt, Yt), expected, atol=1e-7 * max(1, np.abs(expected).max()))
    np.testing.assert_allclose(by_mask.predict_grid(Xt, Yt), by_nan.predict_grid(Xt, Yt), atol=1e-12)
    assert by_nan.solver_ == ("cholesky" if mode == "two_sided" else "cg")
    other = BinaryKernelRidge(**params, solver="lsqr" if mode == "two_sided" else "cholesky").fit_grid(XX, Xy, Zn)
    np.testing.assert_allclose(other.predict_grid(Xt, Yt), expected, atol=1e-7 * max(1, np.abs(expected).max()))


# --------------------------------------------------------------------------------- precomputed kernels
def test_precomputed_equals_feature_path():
    kx, ky = get_kernel("rbf", gamma=0.5), get_kernel("laplacian", gamma=0.3)
    Xy3 = RNG.normal(size=(5, 3))
    Xt, Yt = RNG.normal(size=(4, 3)), RNG.normal(size=(6, 3))
    for observed in (None, RNG.random(Z.shape) < 0.7):
        feat = BinaryKernelRidge(kernel=kx, kernel_y=ky, alpha=0.1, tol=1e-14).fit_grid(XX, Xy3, Z, observed)
        pre = BinaryKernelRidge(kernel="precomputed", alpha=0.1, tol=1e-14).fit_grid(kx(XX), ky(Xy3), Z, observed)
        assert feat.mode_ == pre.mode_ == "kronecker"
        np.testing.assert_allclose(pre.predict_grid(kx(Xt, XX), ky(Yt, Xy3)), feat.predict_grid(Xt, Yt),
                                   atol=1e-10)
    # two-sided, an asymmetric indefinite cross-domain kernel
    K = KAPPA(XX, XY)
    for observed in (None, RNG.random(Z.shape) < 0.7):
        feat = BinaryKernelRidge(kernel=KAPPA, alpha=0.1, tol=1e-14).fit_grid(XX, XY, Z, observed)
        pre = BinaryKernelRidge(kernel="precomputed", mode="two_sided", alpha=0.1, tol=1e-14).fit_grid(
            K, None, Z, observed)
        Xt2, Yt2 = RNG.normal(size=(4, 3)), RNG.normal(size=(6, 2))
        np.testing.assert_allclose(pre.predict_grid(KAPPA(Xt2, XY), KAPPA(XX, Yt2).T),
                                   feat.predict_grid(Xt2, Yt2), atol=1e-10)


# ---------------------------------------------------------------------------------- regularisation path
@pytest.mark.parametrize("mode", ["two_sided", "kronecker"])
def test_alpha_path_equals_separate_fits_and_picks_loo_minimum(mode):
    kernel = KAPPA if mode == "two_sided" else get_kernel("rbf", gamma=0.4)
    Xy = XY if mode == "two_sided" else RNG.normal(size=(5, 3))
    alphas = [1e-3, 1e-2, 0.1, 1.0, 10.0]
    path = BinaryKernelRidge(kernel=kernel, mode=mode, alphas=alphas).fit_grid(XX, Xy, Z)
    Xt, Yt = RNG.normal(size=(4, 3)), RNG.normal(size=(6, Xy.shape[1]))
    for alpha, coef, mse in zip(alphas, path.dual_coef_path_, path.loo_mse_):
        single = BinaryKernelRidge(kernel=kernel, mode=mode, alpha=alpha).fit_grid(XX, Xy, Z)
        np.testing.assert_allclose(coef, single.dual_coef_, atol=1e-8 * max(1, np.abs(coef).max()))
        L, R = single._sides(Xt, Yt)
        np.testing.assert_allclose(L @ coef @ R, single.predict_grid(Xt, Yt), atol=1e-8)
        np.testing.assert_allclose(np.mean((single.loo_predict_grid(Z) - Z) ** 2), mse, rtol=1e-8)
    assert path.alpha_ == alphas[int(np.argmin(path.loo_mse_))]
    np.testing.assert_array_equal(path.dual_coef_, path.dual_coef_path_[int(np.argmin(path.loo_mse_))])


@pytest.mark.parametrize("mode", ["two_sided", "kronecker"])
def test_leave_one_pair_out_equals_brute_force(mode):
    rng = np.random.default_rng(3)
    Xx, Xy, Zs = rng.normal(size=(4, 3)), rng.normal(size=(3, 2 if mode == "two_sided" else 3)), rng.normal(
        size=(4, 3))
    kernel = KAPPA if mode == "two_sided" else get_kernel("rbf", gamma=0.4)
    model = BinaryKernelRidge(kernel=kernel, mode=mode, alpha=0.05).fit_grid(Xx, Xy, Zs)
    loo = model.loo_predict_grid(Zs)
    brute = np.empty_like(Zs)
    for i in range(4):
        for j in range(3):
            observed = np.ones_like(Zs, dtype=bool)
            observed[i, j] = False
            held = BinaryKernelRidge(kernel=kernel, mode=mode, alpha=0.05, tol=1e-15, max_iter=100000).fit_grid(
                Xx, Xy, Zs, observed)
            brute[i, j] = held.predict_grid(Xx[i : i + 1], Xy[j : j + 1])[0, 0]
    np.testing.assert_allclose(loo, brute, atol=1e-7)


def test_default_estimator_fits_odd_column_counts():
    # mode='auto' resolves to Kronecker for the default Mercer kernel, whatever the column split
    rows = RNG.normal(size=(30, 5))
    model = BinaryKernelRidge().fit(rows, rows[:, 0])
    assert model.mode_ == "kronecker" and model.n_features_x_ == 2
    assert BinaryKernelRidge(kernel=KAPPA, n_features_x=3).fit(_rows(XX, XY), Z.ravel()).mode_ == "two_sided"


@pytest.mark.parametrize("split", ["rows", "columns", "both"])
def test_learner_validation_split_holds_out_whole_rows_or_columns(split):
    model = BinaryKernelLearner(validation_split=split, validation_fraction=0.25, random_state=0)
    a, b = (ix.ravel() for ix in np.meshgrid(np.arange(8), np.arange(6), indexing="ij"))
    val, train = model._validation_split(a, b, 8, 6, 0.25, np.random.RandomState(0))
    fit = train & ~val
    if split in ("rows", "both"):
        assert not set(a[val]) & set(a[fit])
    if split in ("columns", "both"):
        assert not set(b[val]) & set(b[fit])
    assert val.sum() >= 2 and fit.sum() >= 2


@pytest.mark.parametrize("mode", ["two_sided", "kronecker"])
def test_gcv_path_equals_explicit_hat_matrix(mode):
    rng = np.random.default_rng(4)
    Xx, Zs = rng.normal(size=(5, 3)), rng.normal(size=(5, 4))
    Xy = rng.normal(size=(4, 2 if mode == "two_sided" else 3))
    kernel = KAPPA if mode == "two_sided" else get_kernel("rbf", gamma=0.4)
    alphas = [1e-3, 0.1, 10.0]
    model = BinaryKernelRidge(kernel=kernel, mode=mode, alphas=alphas, path_criterion="gcv").fit_grid(Xx, Xy, Zs)
    assert not hasattr(model, "loo_mse_")
    if mode == "two_sided":  # vec(K C K) = (K^T kron K) vec(C), column-major
        K = kernel(Xx, Xy)
        A = np.kron(K.T, K)
    else:
        G = np.kron(kernel(Xy, Xy), kernel(Xx, Xx))
    z = Zs.ravel(order="F")
    for alpha, score in zip(alphas, model.gcv_mse_):
        if mode == "two_sided":
            S = A @ np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T)
        else:
            S = G @ np.linalg.inv(G + alpha * np.eye(G.shape[0]))
        expected = np.mean((z - S @ z) ** 2) / (1 - np.trace(S) / z.size) ** 2
        np.testing.assert_allclose(score, expected, rtol=1e-8)
    assert model.alpha_ == alphas[int(np.argmin(model.gcv_mse_))]
    with pytest.raises(ValueError, match="path_criterion must be"):
        BinaryKernelRidge(kernel=kernel, mode=mode, alphas=alphas, path_criterion="kfold").fit_grid(Xx, Xy, Zs)


@pytest.mark.parametrize("head", ["exp", "rbf"])
def test_learner_is_scale_free_and_folds_the_standardization_back(head):
    rng = np.random.default_rng(5)
    Xx, Xy = rng.normal(size=(15, 3)), rng.normal(size=(12, 2))
    Zs = np.tanh(Xx[:, :1] @ Xy[:, :1].T) + 0.5
    params = {"n_heads": 2, "head_dim": 2, "max_iter": 40, "learning_rate": 0.05, "early_stopping": False,
              "head": head}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        base = BinaryKernelLearner(**params).fit_grid(Xx, Xy, Zs)
        # affine changes of the features and a scale of the responses: the same model in the raw units
        moved = BinaryKernelLearner(**params).fit_grid(100 * Xx - 3, 0.01 * Xy + 7, 1000 * Zs)
    Xt, Yt = rng.normal(size=(4, 3)), rng.normal(size=(5, 2))
    np.testing.assert_allclose(moved.predict_grid(100 * Xt - 3, 0.01 * Yt + 7), 1000 * base.predict_grid(Xt, Yt),
                               rtol=1e-6)
    np.testing.assert_allclose(moved.kernel_(100 * Xt - 3, 0.01 * Yt + 7), moved.predict_grid(100 * Xt - 3,
                                                                                            0.01 * Yt + 7))


def test_learned_kernel_logit_cap_bounds_every_head():
    from rkbs.estimators import LearnedAttentionKernel

    rng = np.random.default_rng(6)
    Wq, Wk, w = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 2, 4)), np.array([1.5, -0.5])
    Xt, Yt = 50 * rng.normal(size=(6, 3)), 50 * rng.normal(size=(7, 2))  # far from any training scale
    capped = LearnedAttentionKernel(Wq, Wk, w, logit_cap=3.0)(Xt, Yt)
    logits = np.einsum("hnd,hmd->hnm", np.einsum("nf,hfd->hnd", Xt, Wq), np.einsum("mf,hfd->hmd", Yt, Wk)) / 2
    np.testing.assert_allclose(capped, np.einsum("h,hnm->nm", w, np.exp(3.0 * np.tanh(logits / 3.0))), rtol=1e-10)
    assert np.abs(capped).max() <= np.abs(w).sum() * np.exp(3.0)
    with pytest.raises(ValueError, match="logit_cap must be"):
        LearnedAttentionKernel(Wq, Wk, w, logit_cap=-1.0)(Xt, Yt)
    with pytest.raises(ValueError, match="logit_cap must be > 0"):
        BinaryKernelLearner(logit_cap=0.0).fit_grid(Xt[:, :2], Yt, np.ones((6, 7)))


def test_learned_kernel_rbf_heads_against_numpy_and_bounded():
    """RBF heads: sum_h w_h exp(-|x Wq + bq - y Wk - bk|^2 / (2 sqrt(d))), at most sum |w_h| anywhere."""
    from rkbs.estimators import LearnedAttentionKernel

    rng = np.random.default_rng(7)
    Wq, Wk, w = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 2, 5)), np.array([1.5, -0.5, 0.25])
    bq, bk = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    Xt, Yt = rng.normal(size=(6, 4)), rng.normal(size=(7, 2))
    kernel = LearnedAttentionKernel(Wq, Wk, w, bq, bk, head="rbf")
    q = np.einsum("nf,hfd->hnd", Xt, Wq) + bq[:, None]
    k = np.einsum("mf,hfd->hmd", Yt, Wk) + bk[:, None]
    sq = ((q[:, :, None] - k[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(kernel(Xt, Yt), np.einsum("h,hnm->nm", w, np.exp(-sq / (2 * np.sqrt(5)))),
                               rtol=1e-10, atol=1e-14)
    far = kernel(1e3 * Xt, -1e3 * Yt)  # points unlike any training ones: the heads vanish, they do not blow up
    assert np.isfinite(far).all() and np.abs(far).max() <= np.abs(w).sum()
    positive = LearnedAttentionKernel(Wq, Wk, np.abs(w), bq, bk, head="rbf")
    import torch

    x, y = torch.as_tensor(Xt), torch.as_tensor(Yt)
    np.testing.assert_allclose(positive.log_evaluate(x, y).exp().numpy(), positive(Xt, Yt), rtol=1e-10)
    with pytest.raises(ValueError, match="head must be one of"):
        LearnedAttentionKernel(Wq, Wk, w, head="laplace")(Xt, Yt)
    with pytest.raises(ValueError, match="logit_cap=None"):
        LearnedAttentionKernel(Wq, Wk, w, logit_cap=2.0, head="rbf")(Xt, Yt)


def test_learner_ensemble_is_the_mean_of_its_members():
    rng = np.random.default_rng(8)
    Xx, Xy = rng.normal(size=(20, 3)), rng.normal(size=(15, 2))
    Zs = np.exp(0.5 * Xx[:, :2] @ Xy.T) + Xx[:, :1]
    params = {"n_heads": 2, "head_dim": 2, "max_iter": 30, "learning_rate": 0.05, "validation_split": "columns"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        single = BinaryKernelLearner(**params).fit_grid(Xx, Xy, Zs)
        ensemble = BinaryKernelLearner(**params, ensemble_size=3).fit_grid(Xx, Xy, Zs)
    assert len(ensemble.estimators_) == 3 and ensemble.query_maps_.shape == (6, 3, 2)
    members = [m.predict_grid(Xx, Xy) for m in ensemble.estimators_]
    np.testing.assert_allclose(ensemble.predict_grid(Xx, Xy), np.mean(members, axis=0), rtol=1e-10)
    np.testing.assert_allclose(ensemble.predict(_rows(Xx, Xy)), np.mean(members, axis=0).ravel(), rtol=1e-10)
    # the first member is the single learner (same seed); the others start elsewhere and hold out other columns
    np.testing.assert_allclose(members[0], single.predict_grid(Xx, Xy), rtol=1e-12)
    assert not np.allclose(members[1], members[0]) and ensemble.n_iter_ == ensemble.estimators_[0].n_iter_
    ridge = BinaryKernelRidge(kernel=ensemble.kernel_, alpha=1e-2).fit_grid(Xx, Xy, Zs)  # two-stage
    assert ridge.predict_grid(Xx, Xy).shape == (20, 15)
    # the attention layer of a cross-domain learner: 3-feature queries attend to the 2-feature training keys
    torch = pytest.importorskip("torch")
    from attention_kernels.modules import KernelAttention

    module = KernelAttention.from_estimator(ensemble)
    Xt = rng.normal(size=(4, 3))
    np.testing.assert_allclose(module(torch.as_tensor(Xt)).numpy(), ensemble.predict_grid(Xt, Xy), rtol=1e-10)
    with pytest.raises(ValueError, match="query has 2 features but the estimator was fitted on 3"):
        module(torch.as_tensor(Xt[:, :2]))

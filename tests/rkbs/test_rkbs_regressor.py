"""RKBSRegressor: KernelRidge equivalence, solver agreement, stationarity of every penalty, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rkbs.estimators import RKBSRegressor
from rkbs.kernels import AttentionKernel, get_kernel
from rkbs.solvers import ConditioningWarning

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 4))
Y = np.column_stack([np.sin(X[:, 0]) + 0.1 * RNG.normal(size=60), X[:, 1] * X[:, 2]])
y = Y[:, 0]
ASYM = AttentionKernel(get_kernel("edp"), 0.5 * RNG.normal(size=(4, 3)), 0.5 * RNG.normal(size=(4, 3)))


def _gram(model, A, B=None):
    K = model.kernel_(A, A if B is None else B)
    return K / K.sum(1, keepdims=True) if model.normalize else K


def _rel(v, scale):
    return np.abs(v).max() / max(np.abs(scale).max(), 1e-300)


@pytest.mark.parametrize("target", [y, Y])
def test_rbf_rkhs_equals_kernel_ridge(target):
    ours = RKBSRegressor(kernel="rbf", kernel_params={"gamma": 0.3}, alpha=0.05, penalty="rkhs").fit(X, target)
    ref = KernelRidge(kernel="rbf", gamma=0.3, alpha=0.05).fit(X, target)
    Xt = RNG.normal(size=(15, 4))
    np.testing.assert_allclose(ours.predict(Xt), ref.predict(Xt), rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.dual_coef_, ref.dual_coef_, rtol=0, atol=1e-8)
    assert ours.penalty_ == "rkhs" and ours.solver_ == "cholesky"


def test_polynomial_equals_kernel_ridge():
    ours = RKBSRegressor(kernel="polynomial", kernel_params={"degree": 3, "scale": 0.2, "coef0": 1.0},
                         alpha=0.1).fit(X, y)
    ref = KernelRidge(kernel="polynomial", degree=3, gamma=0.2, coef0=1.0, alpha=0.1).fit(X, y)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), atol=1e-8)


@pytest.mark.parametrize(
    "kernel, penalty, solvers",
    [
        ("rbf", "rkhs", ["cholesky", "cg", "eigh"]),
        ("tanh", "coef", ["cholesky", "lstsq", "lsqr"]),
        (ASYM, "coef", ["cholesky", "lstsq", "lsqr"]),
        ("rbf", "krein", ["lu", "gmres", "minres"]),
        (ASYM, "krein", ["lu", "gmres"]),
    ],
)
def test_solvers_agree(kernel, penalty, solvers):
    fits = [RKBSRegressor(kernel=kernel, alpha=0.5, penalty=penalty, solver=s, tol=1e-12, max_iter=5000)
            .fit(X, Y).dual_coef_ for s in solvers]
    for beta in fits[1:]:
        assert _rel(beta - fits[0], fits[0]) < 1e-6


def _coef_gradient(A, beta, Z, alpha):
    return 2 * A.T @ (A @ beta - Z) + 2 * alpha * beta


@pytest.mark.parametrize("kernel", ["rbf", "tanh", "sigmoid", "laplacian", ASYM,
                                    AttentionKernel(get_kernel("tanh"), RNG.normal(size=(4, 2)),
                                                    RNG.normal(size=(4, 2)))])
@pytest.mark.parametrize("normalize", [False, True])
def test_coef_gradient_vanishes(kernel, normalize):
    k = get_kernel(kernel)
    if normalize and not k.positive_valued:
        pytest.skip("normalize needs a positive kernel")
    m = RKBSRegressor(kernel=kernel, alpha=0.1, penalty="coef", normalize=normalize).fit(X, Y)
    A = _gram(m, X)
    g = _coef_gradient(A, m.dual_coef_, Y, 0.1)
    assert _rel(g, 2 * A.T @ Y) < 1e-8


@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "edp", "exp_intersection"])
def test_rkhs_gradient_vanishes(kernel):
    m = RKBSRegressor(kernel=kernel, alpha=0.2, penalty="rkhs").fit(X, y)
    K = _gram(m, X)
    g = 2 * K @ (K @ m.dual_coef_ - y) + 2 * 0.2 * K @ m.dual_coef_
    assert _rel(g, K @ y) < 1e-8


@pytest.mark.parametrize("kernel", ["tanh", AttentionKernel(get_kernel("tanh"), np.eye(4)[:, :3],
                                                            np.eye(4)[:, :3])])
def test_krein_stationary_point_symmetric_indefinite(kernel):
    m = RKBSRegressor(kernel=kernel, alpha=0.3, penalty="krein").fit(X, y)
    K = _gram(m, X)
    assert np.linalg.eigvalsh(K).min() < 0  # genuinely indefinite
    g = 2 * K @ (K @ m.dual_coef_ - y) + 2 * 0.3 * K @ m.dual_coef_
    assert _rel(g, K @ y) < 1e-8


def test_krein_asymmetric_solves_shifted_system():
    m = RKBSRegressor(kernel=ASYM, alpha=0.3, penalty="krein").fit(X, y)
    K = _gram(m, X)
    assert not np.allclose(K, K.T)
    assert _rel((K + 0.3 * np.eye(60)) @ m.dual_coef_ - y, y) < 1e-10


@pytest.mark.parametrize("spectrum", ["clip", "flip", "shift"])
def test_spectrum_transform(spectrum):
    m = RKBSRegressor(kernel="tanh", alpha=0.1, penalty="rkhs", spectrum=spectrum).fit(X, y)
    lam, U = np.linalg.eigh(get_kernel("tanh")(X))
    t = {"clip": np.maximum(lam, 0), "flip": np.abs(lam), "shift": lam - lam.min()}[spectrum]
    Kt = (U * t) @ U.T
    # training predictions are the RKHS solution on the transformed (PSD) Gram matrix
    np.testing.assert_allclose(m.predict(X), Kt @ np.linalg.solve(Kt + 0.1 * np.eye(60), y), atol=1e-8)


def test_nystroem_rkhs_equals_nystroem_features_ridge():
    m = RKBSRegressor(kernel="rbf", alpha=0.1, n_components=20, random_state=0).fit(X, y)
    k = m.kernel_
    lam, U = np.linalg.eigh(k(m.centers_))
    inv_sqrt = (U / np.sqrt(lam)) @ U.T
    ridge = Ridge(alpha=0.1, fit_intercept=False).fit(k(X, m.centers_) @ inv_sqrt, y)
    Xt = RNG.normal(size=(10, 4))
    np.testing.assert_allclose(m.predict(Xt), ridge.predict(k(Xt, m.centers_) @ inv_sqrt), atol=1e-7)
    assert m.centers_.shape == (20, 4) and m.dual_coef_.shape == (20,)


@pytest.mark.parametrize("penalty, solvers", [("rkhs", ["cholesky", "cg"]), ("coef", ["cholesky", "lsqr"]),
                                              ("krein", ["lu", "minres"])])
def test_nystroem_solvers_agree_and_stationary(penalty, solvers):
    kernel = "tanh" if penalty == "krein" else "rbf"
    fits = [RKBSRegressor(kernel=kernel, alpha=0.1, penalty=penalty, solver=s, n_components=25, random_state=1,
                          tol=1e-12, max_iter=5000).fit(X, y) for s in solvers]
    m = fits[0]
    A, Kmm = m.kernel_(X, m.centers_), m.kernel_(m.centers_)
    P = np.eye(25) if penalty == "coef" else Kmm
    g = A.T @ (A @ m.dual_coef_ - y) + 0.1 * P @ m.dual_coef_
    assert _rel(g, A.T @ y) < 1e-8
    assert _rel(fits[1].dual_coef_ - m.dual_coef_, m.dual_coef_) < 1e-6


def test_normalize_prediction_is_attention():
    m = RKBSRegressor(kernel="edp", normalize=True, alpha=0.01).fit(X, Y)
    Xt = RNG.normal(size=(7, 4))
    K = m.kernel_(Xt, m.centers_)
    np.testing.assert_allclose(m.predict(Xt), (K @ m.dual_coef_) / K.sum(1, keepdims=True), rtol=1e-12)
    assert m.penalty_ == "coef"


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 25), alpha=st.floats(1e-3, 10.0), seed=st.integers(0, 1000),
       name=st.sampled_from(["rbf", "tanh", "sigmoid", "polynomial", "edp", "cosine"]))
def test_coef_stationarity_property(n, alpha, seed, name):
    rng = np.random.default_rng(seed)
    Xs, ys = rng.normal(size=(n, 3)), rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConditioningWarning)
        m = RKBSRegressor(kernel=name, alpha=alpha, penalty="coef", solver="lstsq").fit(Xs, ys)
    A = m.kernel_(Xs)
    assert _rel(_coef_gradient(A, m.dual_coef_, ys, alpha), np.abs(A.T @ ys).max() + alpha) < 1e-8


def test_ill_conditioned_system_warns():
    Xd = np.repeat(X[:10], 3, axis=0)  # duplicated rows: K is singular, alpha tiny
    with pytest.warns(ConditioningWarning, match="condition number estimate"):
        RKBSRegressor(kernel="rbf", alpha=1e-15, penalty="krein").fit(Xd, np.arange(30.0))


def test_grid_search_and_pipeline():
    grid = GridSearchCV(RKBSRegressor(kernel=get_kernel("rbf")),
                        {"kernel__gamma": [0.1, 1.0], "alpha": [0.01, 1.0]}, cv=3).fit(X, y)
    assert set(grid.best_params_) == {"kernel__gamma", "alpha"}
    grid = GridSearchCV(RKBSRegressor(), {"kernel_params": [{"gamma": 0.1}, {"gamma": 1.0}]}, cv=3).fit(X, y)
    assert grid.best_estimator_.kernel_.gamma in (0.1, 1.0)
    scores = cross_val_score(make_pipeline(StandardScaler(), RKBSRegressor(kernel="tanh", alpha=0.1)), X, y, cv=3)
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize(
    "params, Xb, yb, match",
    [
        ({}, np.where(np.eye(5, 3) > 0, np.nan, 1.0), np.ones(5), "NaN"),
        ({}, np.where(np.eye(5, 3) > 0, np.inf, 1.0), np.ones(5), "infinity"),
        ({}, np.empty((0, 3)), np.empty(0), "0 sample"),
        ({}, np.ones((5, 3)), np.ones(4), "inconsistent numbers of samples"),
        ({"kernel": "tanh", "penalty": "rkhs"}, X, y, "penalty='coef'"),
        ({"kernel": ASYM, "penalty": "rkhs"}, X, y, "asymmetric; use penalty='coef'"),
        ({"kernel": "edp", "kernel_params": {"scale": 500.0}}, 10 * X, y, "non-finite values"),
        ({"kernel": "tanh", "normalize": True}, X, y, "can be negative"),
        ({"kernel": "rbf", "normalize": True, "penalty": "rkhs"}, X, y, "normalize=True"),
        ({"kernel": "nope"}, X, y, "unknown kernel"),
        ({"alpha": -1.0}, X, y, "alpha must be >= 0"),
        ({"solver": "lsqr", "penalty": "rkhs"}, X, y, "does not apply to penalty='rkhs'"),
        ({"solver": "minres", "penalty": "krein", "kernel": ASYM}, X, y, "symmetric"),
        ({"spectrum": "clip", "penalty": "coef"}, X, y, "does not apply to penalty='coef'"),
        ({"spectrum": "clip", "n_components": 5}, X, y, "n_components=None"),
        ({"device": "tpu"}, X, y, "device"),
        ({"kernel": AttentionKernel(get_kernel("rbf"), np.ones((3, 2)), None)}, X, y, "query_map expects 3"),
    ],
)
def test_bad_input(params, Xb, yb, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RKBSRegressor(**params).fit(Xb, yb)


def test_predict_checks_features():
    m = RKBSRegressor().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :3])


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kernel, penalty, solver", [("rbf", "rkhs", "cg"), ("tanh", "coef", "lsqr"),
                                                     ("edp", "coef", "cholesky"), (ASYM, "coef", "lsqr")])
def test_cuda_fit_matches_cpu(kernel, penalty, solver):
    params = dict(kernel=kernel, alpha=0.5, penalty=penalty, solver=solver, n_components=30, random_state=0,
                  tol=1e-6, max_iter=2000)
    cpu = RKBSRegressor(**params).fit(X, y)
    gpu = RKBSRegressor(device="cuda", **params).fit(X, y)
    np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), atol=1e-3)


def test_coef_cholesky_falls_back_to_eigh(monkeypatch):
    import rkbs.solvers.coef as coef

    def _fail(*args, **kwargs):
        raise ValueError("not positive definite")

    monkeypatch.setattr(coef, "cholesky_solve", _fail)
    with pytest.warns(ConditioningWarning, match="solved by eigh"):
        m = RKBSRegressor(kernel="tanh", alpha=0.1, penalty="coef", solver="cholesky").fit(X, Y)
    ref = RKBSRegressor(kernel="tanh", alpha=0.1, penalty="coef", solver="lstsq").fit(X, Y)
    assert _rel(m.dual_coef_ - ref.dual_coef_, ref.dual_coef_) < 1e-8


def test_cholesky_condition_estimate_matches_the_exact_condition_number():
    import torch

    from rkbs.solvers._linalg import _inverse_norm1_estimate

    rng = np.random.default_rng(0)
    A = rng.normal(size=(60, 60))
    A = A @ A.T + np.diag(np.logspace(-8, 0, 60))
    L = torch.linalg.cholesky(torch.from_numpy(A))
    estimate = np.abs(A).sum(0).max() * _inverse_norm1_estimate(lambda b: torch.cholesky_solve(b, L), 60,
                                                               torch.float64)
    exact = np.linalg.cond(A, 1)
    assert exact / 10 <= estimate <= exact * (1 + 1e-6)  # a lower bound, within the usual factor


# ------------------------------------------------------------------------------ sample weights, intercept, dtype
_WEIGHTED = [
    dict(kernel="rbf", penalty="rkhs", solver="cholesky"),
    dict(kernel="rbf", penalty="rkhs", solver="cg"),
    dict(kernel="rbf", penalty="rkhs", solver="eigh"),
    dict(kernel="tanh", penalty="coef", solver="cholesky"),
    dict(kernel="tanh", penalty="coef", solver="lstsq"),
    dict(kernel="tanh", penalty="coef", solver="lsqr"),
    dict(kernel=ASYM, penalty="krein", solver="lu"),
    dict(kernel=ASYM, penalty="krein", solver="gmres"),
    dict(kernel="tanh", penalty="krein", solver="minres"),
]


# MINRES stops on a normwise backward error; on these nearly singular repeated-sample systems its true relative
# residual lands just above tol=1e-10 and it says so (the warning itself is tested below)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("params", _WEIGHTED, ids=lambda p: "-".join(str(v) for v in p.values())[:40])
def test_integer_weights_equal_repeated_samples(params):
    w = RNG.integers(0, 4, size=60)
    w[:3] = [0, 2, 3]
    common = dict(alpha=0.5, tol=1e-10, max_iter=5000, **params)
    weighted = RKBSRegressor(**common).fit(X, Y, sample_weight=w)
    repeated = RKBSRegressor(**common).fit(np.repeat(X, w, axis=0), np.repeat(Y, w, axis=0))
    Xt = RNG.normal(size=(9, 4))
    np.testing.assert_allclose(weighted.predict(Xt), repeated.predict(Xt), rtol=0,
                               atol=1e-7 * np.abs(repeated.predict(Xt)).max())
    assert np.all(weighted.dual_coef_[w == 0] == 0)  # a zero-weight center is left out


def test_weighted_spectrum_is_weighted_ridge_on_the_transformed_gram():
    w = RNG.uniform(0.0, 2.0, size=60)
    m = RKBSRegressor(kernel="tanh", alpha=0.1, spectrum="flip").fit(X, y, sample_weight=w)
    lam, U = np.linalg.eigh(get_kernel("tanh")(X))
    s = np.sqrt(w)
    Kt = (U * np.abs(lam)) @ U.T
    c = s * np.linalg.solve(s[:, None] * Kt * s + 0.1 * np.eye(60), s * y)
    np.testing.assert_allclose(m.predict(X), Kt @ c, atol=1e-8)


def test_weights_equal_kernel_ridge_and_survive_a_pipeline():
    w = RNG.uniform(0.1, 3.0, size=60)
    ref = KernelRidge(kernel="rbf", gamma=0.3, alpha=0.05).fit(X, Y, sample_weight=w)
    ours = RKBSRegressor(kernel="rbf", kernel_params={"gamma": 0.3}, alpha=0.05).fit(X, Y, sample_weight=w)
    np.testing.assert_allclose(ours.dual_coef_, ref.dual_coef_, rtol=0, atol=1e-8)
    pipe = make_pipeline(StandardScaler(), RKBSRegressor(alpha=0.05)).fit(X, y, rkbsregressor__sample_weight=w)
    direct = RKBSRegressor(alpha=0.05).fit(StandardScaler().fit_transform(X), y, sample_weight=w)
    np.testing.assert_allclose(pipe[-1].dual_coef_, direct.dual_coef_, atol=1e-12)
    import sklearn

    with sklearn.config_context(enable_metadata_routing=True):  # routed through GridSearchCV's fit params
        est = RKBSRegressor().set_fit_request(sample_weight=True).set_score_request(sample_weight=False)
        grid = GridSearchCV(est, {"alpha": [0.05]}, cv=3).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(grid.best_estimator_.dual_coef_,
                               RKBSRegressor(alpha=0.05).fit(X, y, sample_weight=w).dual_coef_, atol=1e-12)


@pytest.mark.parametrize("sample_weight, match", [
    (-np.ones(60), "Negative values in data passed to `sample_weight`"),
    (np.zeros(60), "at least one non-zero"),
    (np.ones(59), r"sample_weight.shape == \(59,\), expected \(60,\)"),
])
def test_bad_sample_weight(sample_weight, match):
    with pytest.raises(ValueError, match=match):
        RKBSRegressor().fit(X, y, sample_weight=sample_weight)


def test_per_target_alpha_equals_kernel_ridge():
    alpha = np.array([0.05, 2.0])
    ref = KernelRidge(kernel="rbf", gamma=0.3, alpha=alpha).fit(X, Y)
    for solver in ("cholesky", "cg"):
        ours = RKBSRegressor(kernel="rbf", kernel_params={"gamma": 0.3}, alpha=alpha, solver=solver,
                             tol=1e-12).fit(X, Y)
        np.testing.assert_allclose(ours.dual_coef_, ref.dual_coef_, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match=r"shape \(n_targets,\) = \(2,\)"):
        RKBSRegressor(alpha=np.ones(3)).fit(X, Y)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        RKBSRegressor(alpha=np.array([1.0, -1.0])).fit(X, Y)


def test_float32_kept_end_to_end():
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    ours = RKBSRegressor(kernel="rbf", kernel_params={"gamma": 0.3}, alpha=0.05).fit(X32, y32)
    ref = KernelRidge(kernel="rbf", gamma=0.3, alpha=0.05).fit(X32, y32)
    assert ours.dual_coef_.dtype == ours.centers_.dtype == ours.predict(X32).dtype == np.float32
    assert ref.predict(X32).dtype == np.float32
    np.testing.assert_allclose(ours.predict(X32), ref.predict(X32), atol=1e-3)
    assert ours.predict(X).dtype == np.float64  # float64 input to a float32 model: float64 out


@pytest.mark.parametrize("params", [dict(kernel="rbf", penalty="rkhs"), dict(kernel="rbf", penalty="rkhs", solver="cg"),
                                    dict(kernel="tanh", penalty="coef"), dict(kernel="tanh", penalty="krein"),
                                    dict(kernel="rbf", n_components=20, random_state=0)],
                         ids=lambda p: "-".join(str(v) for v in p.values()))
def test_fit_intercept_is_the_unpenalized_optimum(params):
    w = RNG.uniform(0.5, 2.0, size=60)
    shift = np.array([5.0, -3.0])
    m = RKBSRegressor(alpha=0.3, fit_intercept=True, tol=1e-12, **params).fit(X, Y + shift, sample_weight=w)
    base = RKBSRegressor(alpha=0.3, tol=1e-12, **params).fit(X, Y + shift - m.intercept_, sample_weight=w)
    # the coefficients are the intercept-free fit to the shifted targets, and the weighted residual sums to 0
    np.testing.assert_allclose(m.dual_coef_, base.dual_coef_, atol=1e-7 * np.abs(base.dual_coef_).max())
    resid = Y + shift - m.predict(X)
    np.testing.assert_allclose(w @ resid, 0.0, atol=1e-7 * np.abs(w @ np.abs(resid)).max())
    assert RKBSRegressor().fit(X, y).intercept_ == 0.0


def test_fit_intercept_equals_centered_linear_ridge():
    m = RKBSRegressor(kernel="linear", kernel_params={"scale": 1.0}, alpha=0.7, fit_intercept=True).fit(X, y + 4)
    ref = Ridge(alpha=0.7).fit(X, y + 4)
    np.testing.assert_allclose(m.predict(X), ref.predict(X), atol=1e-10)
    np.testing.assert_allclose(m.intercept_, ref.intercept_, atol=1e-10)


# ------------------------------------------------------------------------------- honest solvers
def test_eigh_on_a_rank_deficient_gram_gives_kernel_ridges_coefficients():
    # linear kernel, n = 60 > d = 4: K has rank 4
    ref = KernelRidge(kernel="linear", alpha=0.01).fit(X, Y)
    ours = RKBSRegressor(kernel="linear", kernel_params={"scale": 1.0}, alpha=0.01, solver="eigh").fit(X, Y)
    np.testing.assert_allclose(ours.dual_coef_, ref.dual_coef_, rtol=1e-9, atol=1e-9)


_DUP = np.repeat(X[:10], 3, axis=0)
_YDUP = RNG.normal(size=30)


@pytest.mark.parametrize("params", [
    dict(kernel="rbf", alpha=1e-14, solver="cg"),
    dict(kernel="tanh", alpha=0.0, penalty="krein", solver="minres"),
    dict(kernel="tanh", alpha=0.0, penalty="krein", solver="gmres", max_iter=3),
    dict(kernel="tanh", alpha=1e-12, penalty="coef", solver="lsqr", max_iter=3),
], ids=["cg", "minres", "gmres", "lsqr"])
def test_iterative_solver_that_misses_its_tolerance_warns(params):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConditioningWarning)
        with pytest.warns(ConvergenceWarning, match=r"relative residual .* above tol=1e-08"):
            m = RKBSRegressor(tol=1e-8, **params).fit(_DUP, _YDUP)
    assert isinstance(m.n_iter_, int) and m.n_iter_ >= 1


def test_converged_krylov_solve_does_not_warn_and_counts_iterations():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = RKBSRegressor(kernel="rbf", alpha=0.5, solver="cg").fit(X, Y)
    assert isinstance(m.n_iter_, int) and m.n_iter_ > 1
    assert RKBSRegressor().fit(X, y).n_iter_ == 1  # a direct factorization


# ------------------------------------------------------------------------------------------------ sparse input
@pytest.mark.parametrize("kernel, fmt", [("edp", "csr"), ("rbf", "csc"), ("laplacian", "csr"), ("polynomial", "csc"),
                                         ("linear", "csr"), ("cosine", "csc"), ("sigmoid", "csr"), ("tanh", "csc")])
@pytest.mark.parametrize("n_components", [None, 17])
def test_sparse_input_equals_dense(fmt, kernel, n_components):
    import scipy.sparse as sp

    Xs = sp.random(45, 300, density=0.04, random_state=0, format=fmt)
    Xt = sp.random(8, 300, density=0.04, random_state=1, format="csr")
    params = dict(kernel=kernel, alpha=0.5, penalty="coef", n_components=n_components, random_state=0,
                  fit_intercept=True)
    sparse = RKBSRegressor(**params).fit(Xs, Y[:45])
    dense = RKBSRegressor(**params).fit(Xs.toarray(), Y[:45])
    assert sp.issparse(sparse.centers_)  # X is never densified
    for A in (Xt, Xt.toarray()):
        np.testing.assert_allclose(sparse.predict(A), dense.predict(Xt.toarray()), rtol=0, atol=1e-8)


def test_sparse_equals_kernel_ridge_and_float32():
    import scipy.sparse as sp

    Xs = sp.random(60, 500, density=0.02, random_state=2, format="csr")
    ref = KernelRidge(kernel="rbf", gamma=0.5, alpha=0.1).fit(Xs, Y)
    ours = RKBSRegressor(kernel="rbf", kernel_params={"gamma": 0.5}, alpha=0.1).fit(Xs, Y)
    np.testing.assert_allclose(ours.dual_coef_, ref.dual_coef_, atol=1e-10)
    X32 = Xs.astype(np.float32)
    assert RKBSRegressor().fit(X32, y).predict(X32).dtype == np.float32
    with pytest.raises(TypeError, match="sparse X is supported for the dot-product kernels"):
        RKBSRegressor(kernel=ASYM).fit(sp.csr_matrix(X), y)

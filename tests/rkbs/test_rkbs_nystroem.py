"""Nystroem solvers: repeated landmarks, Falkon-style CG against the direct solution, out-of-core rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge

from rkbs.estimators import RKBSClassifier, RKBSRegressor
from rkbs.kernels import AttentionKernel, get_kernel
from rkbs.rows import RowChunks, as_row_source
from rkbs.solvers import select_centers


def _data(n=601, d=4, seed=0, targets=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=n)
    if targets:
        y = np.column_stack([y] + [np.cos(X[:, j]) for j in range(targets - 1)])
    return X, y


def test_iris_with_a_repeated_row_fits_like_sklearn_nystroem():
    # iris has one duplicated row: 140 of 150 landmarks almost surely include both copies, K_mm is singular and
    # the landmark system is singular for every alpha (this raised "not positive definite" before)
    X, y = load_iris(return_X_y=True)
    for alpha, solver in ((1.0, "cholesky"), (100.0, "cholesky"), (1.0, "cg"), (1.0, "falkon")):
        clf = RKBSClassifier(n_components=140, random_state=0, alpha=alpha, solver=solver, tol=1e-6,
                             max_iter=300).fit(X, y)
        assert clf.score(X, y) > (0.9 if alpha == 1.0 else 0.6)


@pytest.mark.parametrize("solver", ["cholesky", "falkon"])
def test_duplicate_landmarks_match_sklearn_nystroem_ridge(solver):
    X, y = _data(150, 3)
    X = np.vstack([X, X[:40], X[:20] + 1e-12])  # exact and near-duplicate rows
    y = np.concatenate([y, y[:40], y[:20]])
    gamma, alpha = 2.0, 1e-1  # local enough that only the repeated rows make K_mm singular
    model = RKBSRegressor(kernel_params={"gamma": gamma}, alpha=alpha, n_components=len(X) - 1, solver=solver,
                          random_state=0, tol=1e-12, max_iter=2000).fit(X, y)
    feats = Nystroem(gamma=gamma, n_components=len(X) - 1, random_state=0).fit(X)
    feats.components_ = model.centers_  # the same landmarks
    feats.normalization_ = _sklearn_normalization(feats, model.centers_, gamma)
    ridge = Ridge(alpha=alpha, fit_intercept=False).fit(feats.transform(X), y)
    np.testing.assert_allclose(model.predict(X), ridge.predict(feats.transform(X)), atol=1e-6)


def _sklearn_normalization(feats, C, gamma):
    from sklearn.metrics.pairwise import rbf_kernel

    U, S, V = np.linalg.svd(rbf_kernel(C, gamma=gamma))
    # scikit-learn clamps the singular values at 1e-12; directions that small carry only round-off
    keep = S > S[0] * len(S) * np.finfo(float).eps
    return (U[:, keep] / np.sqrt(S[keep])) @ V[keep]


CASES = [
    ("rbf", {"gamma": 0.3}, "rkhs", False, 1e-1),
    ("rbf", {"gamma": 0.3}, "coef", False, 1e-2),
    ("tanh", {}, "coef", False, 1e-2),
    ("edp", {}, "coef", True, 1e-3),
    ("laplacian", {}, "rkhs", False, 1e-1),
]


@pytest.mark.parametrize("kernel,params,penalty,normalize,alpha", CASES)
def test_falkon_matches_direct_nystroem(kernel, params, penalty, normalize, alpha, block_size=97):
    X, y = _data(601, 4, targets=2)
    kw = dict(kernel=kernel, kernel_params=params, penalty=penalty, normalize=normalize, alpha=alpha,
              n_components=97, random_state=0, block_size=block_size)
    direct = RKBSRegressor(solver="cholesky", **kw).fit(X, y)
    falkon = RKBSRegressor(solver="falkon", tol=1e-13, max_iter=3000, **kw).fit(X, y)
    assert falkon.solver_ == "falkon" and falkon.n_iter_ > 0
    scale = np.abs(direct.predict(X)).max()
    np.testing.assert_allclose(falkon.predict(X), direct.predict(X), atol=1e-7 * scale)


@pytest.mark.parametrize("normalize", [False, True])
def test_row_passes_match_dense(normalize):
    from rkbs.solvers import NystroemProblem

    X, y = _data(53, 40, targets=2)
    k = get_kernel("edp")
    Xt, C = torch.tensor(X), torch.tensor(X[:9])
    for block_size in (1, 7, None):
        p = NystroemProblem(kernel=k, rows=as_row_source(Xt, y), C=C, alpha=0.1, penalty="coef",
                            normalize=normalize, block_size=block_size)
        A = k.evaluate(Xt, C)
        A = A / A.sum(1, keepdim=True) if normalize else A
        V = torch.randn(9, 3, dtype=torch.float64)
        torch.testing.assert_close(p.normal_product(V), A.T @ (A @ V))
        torch.testing.assert_close(p.rhs(), A.T @ torch.tensor(y))
        AtA, AtZ = p.normal_equations()
        torch.testing.assert_close(AtA, A.T @ A)
        torch.testing.assert_close(AtZ, A.T @ torch.tensor(y))


def test_falkon_asymmetric_attention_kernel():
    X, y = _data(400, 3)
    rng = np.random.default_rng(1)
    kappa = AttentionKernel(get_kernel("tanh"), rng.normal(size=(3, 5)) / 2, rng.normal(size=(3, 5)) / 2)
    kw = dict(kernel=kappa, penalty="coef", alpha=1e-2, n_components=41, random_state=0)
    direct = RKBSRegressor(solver="cholesky", **kw).fit(X, y)
    falkon = RKBSRegressor(solver="falkon", tol=1e-13, max_iter=3000, **kw).fit(X, y)
    np.testing.assert_allclose(falkon.dual_coef_, direct.dual_coef_, rtol=1e-6, atol=1e-8)


def test_falkon_float32_on_request():
    X, y = _data(800, 4)
    kw = dict(kernel_params={"gamma": 0.3}, alpha=1e-1, n_components=64, random_state=0, solver="falkon",
              tol=1e-5, max_iter=200)
    f64 = RKBSRegressor(**kw).fit(X, y)
    X32 = X.astype(np.float32)  # a float32 source is computed in float32
    f32 = RKBSRegressor(**kw).fit(RowChunks(lambda: [(X32, y)]))
    np.testing.assert_allclose(f32.predict(X), f64.predict(X), atol=1e-3)


def test_falkon_warns_when_it_stops_at_max_iter():
    X, y = _data(3000, 3)  # more rows than the preconditioner's sketch (10 m), which is then not exact
    with pytest.warns(ConvergenceWarning, match="solver='falkon' did not converge in 1 iterations"):
        RKBSRegressor(alpha=1e-6, n_components=100, solver="falkon", max_iter=1, random_state=0).fit(X, y)


@pytest.mark.parametrize("penalty", ["rkhs", "coef"])
def test_falkon_preconditioner(penalty):
    from rkbs.solvers import NystroemProblem, solve_nystroem

    X, y = _data(2001, 4)
    Xt, C = torch.tensor(X), torch.tensor(X[:100])
    kw = dict(kernel=get_kernel("rbf", gamma=0.1), rows=as_row_source(Xt, y[:, None]), C=C, penalty=penalty,
              random_state=0, max_iter=500)
    direct, _ = solve_nystroem(NystroemProblem(alpha=1e-3, **kw), "cholesky")
    # a sketch of every row is the system itself: one iteration, a second for round-off at tol=1e-10
    beta, info = solve_nystroem(NystroemProblem(alpha=1e-3, tol=1e-10, sketch_size=2001, **kw), "falkon")
    assert info["n_iter"] <= 2
    A = kw["kernel"].evaluate(Xt, C).numpy()
    np.testing.assert_allclose(A @ beta, A @ direct, atol=1e-5)  # an ill-conditioned system (gamma = 0.1)
    # a small ridge (alpha / n = 5e-7, below Falkon's 1 / m): the landmarks alone (sketch_size=m, Falkon's
    # preconditioner) leave CG several times more iterations than the default sketch of 10 m rows (23 / 271
    # for rkhs, 14 / 54 for coef)
    iters = {s: solve_nystroem(NystroemProblem(alpha=1e-3, tol=1e-8, sketch_size=s, **kw), "falkon")[1]["n_iter"]
             for s in (100, None)}
    assert iters[None] <= 40 and 2 * iters[None] < iters[100], iters


def test_auto_picks_falkon_for_large_nystroem_and_refuses_misuse():
    from rkbs.solvers import choose_solver

    k = get_kernel("rbf")
    assert choose_solver("auto", "rkhs", k, m=2000, normalize=False, spectrum=None, n=1_000_000) == "falkon"
    assert choose_solver("auto", "rkhs", k, m=100, normalize=False, spectrum=None, n=10_000) == "cholesky"
    X, y = _data(50, 3)
    with pytest.raises(ValueError, match="solver='falkon' solves the Nystroem landmark system"):
        RKBSRegressor(solver="falkon").fit(X, y)
    with pytest.raises(ValueError, match="does not apply to penalty='krein'"):
        RKBSRegressor(kernel="tanh", penalty="krein", solver="falkon", n_components=10).fit(X, y)


def test_leverage_landmarks():
    X, y = _data(500, 3)
    model = RKBSRegressor(alpha=1e-2, n_components=40, landmarks="leverage", random_state=0).fit(X, y)
    C = model.centers_
    assert C.shape == (40, 3) and len(np.unique(C, axis=0)) == 40
    assert all((np.abs(X - c).sum(1) == 0).any() for c in C)  # training rows
    assert model.score(X, y) > 0.8
    with pytest.raises(ValueError, match="needs a symmetric positive definite"):
        RKBSRegressor(kernel="tanh", n_components=40, landmarks="leverage").fit(X, y)
    with pytest.raises(ValueError, match="landmarks must be one of"):
        RKBSRegressor(n_components=40, landmarks="kmeans").fit(X, y)


def test_select_centers_uniform_is_select_landmarks():
    from rkbs.solvers import select_landmarks

    X, _ = _data(333, 3)
    np.testing.assert_array_equal(select_centers(as_row_source(X), 17, random_state=3),
                                  X[select_landmarks(333, 17, 3)])


# ------------------------------------------------------------------------------------------------ out of core
@pytest.mark.parametrize("solver", ["cholesky", "falkon"])
def test_memmap_and_chunks_fit_like_in_memory(tmp_path, solver):
    X, y = _data(1003, 3)
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64, shape=X.shape)
    mm[:] = X
    mm.flush()
    Xmm = np.load(tmp_path / "X.npy", mmap_mode="r")
    kw = dict(alpha=1e-1, n_components=50, random_state=0, solver=solver, tol=1e-11, max_iter=1000,
              block_size=256)
    ref = RKBSRegressor(**kw).fit(X, y)
    on_disk = RKBSRegressor(**kw).fit(Xmm, y)
    chunks = RowChunks(lambda: ((X[i : i + 100], y[i : i + 100]) for i in range(0, 1003, 100)))
    chunked = RKBSRegressor(**kw).fit(chunks)
    np.testing.assert_allclose(on_disk.centers_, ref.centers_)
    # the same problem summed in the same block order; BLAS round-off differs with the blocks' alignment
    np.testing.assert_allclose(on_disk.dual_coef_, ref.dual_coef_, rtol=1e-6)
    np.testing.assert_allclose(chunked.dual_coef_, ref.dual_coef_, rtol=1e-6)
    np.testing.assert_allclose(on_disk.predict(Xmm), ref.predict(X), atol=1e-8)
    np.testing.assert_allclose(chunked.predict(X), ref.predict(X), atol=1e-8)
    np.testing.assert_allclose(ref.predict(chunks), ref.predict(X), atol=1e-10)


def test_classifier_on_a_memmap_fits_like_in_memory(tmp_path):
    X, y = _data(701, 3)
    labels = np.array(["a", "b", "c"])[np.digitize(y, [-0.5, 0.5])]
    np.save(tmp_path / "X.npy", X)
    Xmm = np.load(tmp_path / "X.npy", mmap_mode="r")
    kw = dict(alpha=1e-1, n_components=40, random_state=0, block_size=100)
    ref = RKBSClassifier(**kw).fit(X, labels)
    on_disk = RKBSClassifier(**kw).fit(Xmm, labels)
    np.testing.assert_allclose(on_disk.dual_coef_, ref.dual_coef_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(on_disk.decision_function(Xmm), ref.decision_function(X), atol=1e-8)
    np.testing.assert_array_equal(on_disk.predict(Xmm), ref.predict(X))
    with pytest.raises(ValueError, match="X: RKBSClassifier reads out-of-core rows from a numpy memory map"):
        RKBSClassifier(loss="logistic", **kw).fit(Xmm, labels)
    with pytest.raises(ValueError, match="X: RKBSClassifier reads out-of-core rows"):
        RKBSClassifier(**kw).fit(RowChunks(lambda: [(X, y)]), None)
    with pytest.raises(ValueError, match="y must be 1-d with one label per row of X"):
        RKBSClassifier(**kw).fit(Xmm, labels[:10])
    with pytest.raises(ValueError, match="y has only one class"):
        RKBSClassifier(**kw).fit(Xmm, np.zeros(701))


def test_out_of_core_errors(tmp_path):
    X, y = _data(100, 3)
    np.save(tmp_path / "X.npy", X)
    Xmm = np.load(tmp_path / "X.npy", mmap_mode="r")
    # without landmarks a memory map is read like any array (scikit-learn's checks pass read-only memory maps);
    # chunks have no in-memory form
    np.testing.assert_allclose(RKBSRegressor().fit(Xmm, y).dual_coef_, RKBSRegressor().fit(X, y).dual_coef_)
    with pytest.raises(ValueError, match="needs Nystroem landmarks: set n_components"):
        RKBSRegressor().fit(RowChunks(lambda: [(X, y)]))
    with pytest.raises(ValueError, match="X has 100 rows but y has shape"):
        RKBSRegressor(n_components=10).fit(Xmm, y[:50])
    chunks = RowChunks(lambda: [(X[:50], y[:50]), (X[50:], y[50:])])
    with pytest.raises(ValueError, match="y must be None when X is a RowChunks"):
        RKBSRegressor(n_components=10).fit(chunks, y)
    with pytest.raises(ValueError, match="X chunks must all have 3 features"):
        RowChunks(lambda: [X[:50], X[50:, :2]])
    with pytest.raises(ValueError, match="no targets"):
        RKBSRegressor(n_components=10).fit(RowChunks(lambda: [X]))
    with pytest.raises(TypeError, match="factory must be a callable"):
        RowChunks([X])
    with pytest.raises(ValueError, match="NaN or infinity"):
        bad = X.copy()
        bad[3, 1] = np.nan
        RKBSRegressor(n_components=10).fit(RowChunks(lambda: [(bad, y)]))
    model = RKBSRegressor(n_components=10, random_state=0).fit(Xmm, y)
    with pytest.raises(ValueError, match="X has 2 features, but the model was fitted with 3"):
        model.predict(RowChunks(lambda: [X[:, :2]]))


def test_data_parallel_needs_an_initialized_group():
    from rkbs.distributed import data_parallel

    with pytest.raises(RuntimeError, match="init_process_group"):
        with data_parallel():
            pass


def test_cholesky_solve_in_place_matches_numpy():
    from rkbs.solvers._linalg import cholesky_solve

    rng = np.random.default_rng(0)
    A = rng.normal(size=(257, 257))
    M = A @ A.T + np.eye(257)
    B = rng.normal(size=(257, 3))
    expected = np.linalg.solve(M, B)
    np.testing.assert_allclose(cholesky_solve(M.copy(), B, "M", ""), expected, rtol=1e-9)
    np.testing.assert_allclose(cholesky_solve(M.copy(), B[:, 0], "M", ""), expected[:, 0], rtol=1e-9)
    assert torch.get_default_dtype() == torch.float32  # nothing changed the global default

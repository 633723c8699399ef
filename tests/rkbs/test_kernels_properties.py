"""Properties: feature-map identities, convergence of approximations, Mercer spectra, indefiniteness."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rkbs.kernels import AttentionKernel, get_kernel, list_kernels

_floats = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)


def _points(n, d):
    return arrays(np.float64, (n, d), elements=_floats)


EXACT = [
    ("linear", {}),
    ("cosine", {}),
    ("polynomial", {"degree": 3, "coef0": 0.5}),
    ("polynomial", {"degree": 3, "coef0": -0.8, "scale": 0.7}),
    ("polynomial", {"degree": 0}),
    ("elu", {}),
    ("relu", {}),
    ("taylor_edp", {"degree": 4}),
]


@pytest.mark.parametrize("name,params", EXACT, ids=[f"{n}-{p}" for n, p in EXACT])
@given(X=_points(5, 3), Y=_points(4, 3))
def test_exact_feature_maps_reproduce_the_gram_matrix(name, params, X, Y):
    k = get_kernel(name, **params)
    Fx, Fy = k.features_x(X), k.features_y(Y)
    assert Fx.shape == (5, k.feature_dim(3)) and Fy.shape == (4, k.feature_dim(3))
    np.testing.assert_allclose(Fx @ Fy.T, k(X, Y), rtol=1e-10, atol=1e-10)


@given(seed=st.integers(0, 2**16), d=st.integers(1, 5))
def test_taylor_truncation_converges_to_edp(seed, d):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(6, d)), rng.normal(size=(5, d))
    z = X @ Y.T / math.sqrt(d)
    target = get_kernel("edp")(X, Y)
    errors = []
    for T in (1, 3, 5, 8, 12, 16):
        err = np.abs(get_kernel("taylor_edp", degree=T)(X, Y) - target)
        # Lagrange remainder: |exp(z) - T_n(z)| <= |z|^(n+1) / (n+1)! * exp(max(z, 0))
        bound = np.abs(z) ** (T + 1) / math.factorial(T + 1) * np.exp(np.maximum(z, 0))
        assert (err <= bound * (1 + 1e-9) + 1e-12).all()
        errors.append(err.max())
    assert errors[-1] < errors[0]


@pytest.mark.parametrize(
    "name,target,params",
    [
        ("positive_random_features", "edp", {"orthogonal": True}),
        ("positive_random_features", "edp", {"orthogonal": False}),
        ("random_fourier_features", "rbf", {}),
    ],
)
@settings(max_examples=5)
@given(seed=st.integers(0, 2**16))
def test_random_features_improve_with_more_features(name, target, params, seed):
    rng = np.random.default_rng(seed)
    X, Y = 0.5 * rng.normal(size=(8, 4)), 0.5 * rng.normal(size=(8, 4))
    exact = get_kernel(target)(X, Y)

    def mean_error(m):  # averaged over independent draws: the estimator's error, not one draw's luck
        return np.mean([np.abs(get_kernel(name, n_features=m, random_state=seed + r, **params)(X, Y) - exact).mean()
                        for r in range(6)])

    small, large = mean_error(16), mean_error(2048)
    assert large < 0.5 * small
    assert large < 0.05


def test_random_features_are_reproducible_and_shared_between_sides():
    X = np.random.default_rng(0).normal(size=(5, 3))
    a, b = get_kernel("prf", random_state=7), get_kernel("prf", random_state=7)
    np.testing.assert_array_equal(a.features_x(X), b.features_y(X))
    k = get_kernel("rff")  # random_state=None: drawn once, reused by both sides
    np.testing.assert_allclose(k.features_x(X) @ k.features_y(X).T, k(X, X), rtol=1e-12)


MERCER = [n for n in list_kernels() if get_kernel(n).positive_definite]


@pytest.mark.parametrize("name", MERCER)
@given(seed=st.integers(0, 2**16))
def test_mercer_kernels_have_no_negative_eigenvalue(name, seed):
    X = np.random.default_rng(seed).normal(size=(20, 4))
    k = get_kernel(name, random_state=0) if "random" in name else get_kernel(name)
    K = k(X)
    np.testing.assert_allclose(K, K.T, atol=1e-12)
    assert np.linalg.eigvalsh(K).min() > -1e-8 * max(1.0, np.abs(K).max())


def test_the_mercer_list_is_what_the_catalogue_says():
    assert set(MERCER) >= {"edp", "rbf", "laplacian", "polynomial", "linear", "cosine", "exp_intersection"}
    assert not get_kernel("tanh").positive_definite and not get_kernel("sigmoid").positive_definite
    assert not get_kernel("polynomial", coef0=-1.0).positive_definite


def test_tanh_is_indefinite():
    X = np.random.default_rng(0).normal(size=(30, 4))
    assert np.linalg.eigvalsh(get_kernel("tanh", scale=1.0, coef0=-0.5)(X)).min() < -1e-3


@given(seed=st.integers(0, 2**16))
def test_asymmetric_edp_composition_is_nonsymmetric_and_indefinite(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(25, 4))
    k = AttentionKernel(get_kernel("edp"), rng.normal(size=(4, 4)), rng.normal(size=(4, 4)))
    K = k(X)
    assert np.abs(K - K.T).max() > 1e-6
    # the quadratic form v^T K v is governed by the symmetric part; a negative eigenvalue means indefinite
    assert np.linalg.eigvalsh((K + K.T) / 2).min() < 0


@pytest.mark.parametrize("name", list_kernels())
def test_metadata_is_consistent(name):
    k = get_kernel(name)
    assert k.family in {"dot", "coordinate", "feature_map"}
    assert k.name == name
    dim = k.feature_dim(6)
    assert (dim == math.inf) != k.has_features
    row = k.describe(6)
    assert row["name"] == name and row["feature_dim"] == dim
    if k.positive_valued:
        X = np.random.default_rng(0).normal(size=(10, 6))
        assert (k(X) >= 0).all()


@pytest.mark.parametrize("base", ["edp", "linear", "polynomial", "rbf", "cosine", "exp_intersection"])
@pytest.mark.parametrize(
    "maps",
    [
        (np.eye(3), 2 * np.eye(3)),  # W_q W_k^T = 2 I: symmetric positive definite for a q.k-only base
        (np.eye(3), np.triu(np.ones((3, 3)))),  # W_q W_k^T not symmetric
        (np.eye(3), -np.eye(3)),  # symmetric, indefinite
        (None, None),
    ],
    ids=["scaled", "nonsymmetric", "negated", "identity"],
)
def test_attention_kernel_metadata_agrees_with_its_gram_matrices(base, maps):
    """``symmetric`` / ``positive_definite`` of AttentionKernel against Gram matrices on random points."""
    from rkbs.kernels import AttentionKernel, get_kernel

    kern = AttentionKernel(get_kernel(base), *maps)
    X = np.random.default_rng(0).normal(size=(12, 3))
    A = kern(X)
    gram_symmetric = bool(np.abs(A - A.T).max() < 1e-10 * np.abs(A).max())
    if base in ("edp", "linear", "polynomial"):  # q.k only: symmetric exactly when W_q W_k^T is
        assert kern.symmetric == gram_symmetric
    else:  # sufficient conditions (cosine ignores the scale of each side, so (I, 2I) is symmetric too)
        assert gram_symmetric or not kern.symmetric
    if kern.positive_definite:
        assert np.linalg.eigvalsh(A).min() > -1e-9 * np.abs(A).max()
    elif kern.symmetric and base in ("edp", "linear", "polynomial"):
        assert np.linalg.eigvalsh(A).min() < 0  # the metadata is not merely conservative for q.k kernels

"""Every catalogue kernel against an independent float64 formula, in numpy and torch, batched and not."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import polynomial_kernel, rbf_kernel, sigmoid_kernel

from rkbs.kernels import AttentionKernel, get_kernel, list_kernels


def _reference(name, X, Y, p):
    """Plain numpy formulas, written independently of rkbs (loops over pairs where that is clearer)."""
    d = X.shape[1]
    dot = X @ Y.T
    sq = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    s = p.get("scale") or 1 / math.sqrt(d)
    g = p.get("gamma") or 1 / (2 * math.sqrt(d))
    if name == "edp":
        return np.exp(s * dot)
    if name == "rbf":
        return np.exp(-g * sq)
    if name == "laplacian":
        return np.exp(-g * np.sqrt(sq))
    if name == "polynomial":
        return (s * dot + p.get("coef0", 1.0)) ** p.get("degree", 2)
    if name == "linear":
        return s * dot
    if name == "cosine":
        return dot / np.outer(np.linalg.norm(X, axis=1), np.linalg.norm(Y, axis=1))
    if name == "sigmoid":
        return 1 / (1 + np.exp(-(s * dot + p.get("coef0", 0.0))))
    if name == "tanh":
        return np.tanh(s * dot + p.get("coef0", 0.0))
    if name == "exp_intersection":
        return np.exp(s * np.minimum(X[:, None, :], Y[None, :, :]).sum(-1))
    if name == "elu":
        f = lambda Z: np.where(Z > 0, Z + 1, np.exp(Z))  # noqa: E731
        return f(X) @ f(Y).T
    if name == "relu":
        return np.maximum(X, 0) @ np.maximum(Y, 0).T
    if name == "taylor_edp":
        T = p.get("degree", 2)
        return sum((s * dot) ** t / math.factorial(t) for t in range(T + 1))
    raise KeyError(name)


CASES = [
    ("edp", {}),
    ("edp", {"scale": 0.3}),
    ("rbf", {}),
    ("rbf", {"gamma": 0.7}),
    ("laplacian", {"gamma": 0.4}),
    ("polynomial", {}),
    ("polynomial", {"degree": 3, "scale": 0.5, "coef0": -0.7}),
    ("linear", {"scale": 2.0}),
    ("cosine", {}),
    ("sigmoid", {"coef0": -1.5}),
    ("tanh", {"scale": 0.8, "coef0": 0.2}),
    ("exp_intersection", {}),
    ("elu", {}),
    ("relu", {}),
    ("taylor_edp", {"degree": 3}),
]


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_matches_reference_numpy_and_torch(name, params):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    k = get_kernel(name, **params)
    expected = _reference(name, X, Y, params)
    K = k(X, Y)
    assert isinstance(K, np.ndarray) and K.dtype == np.float64
    np.testing.assert_allclose(K, expected, rtol=1e-12, atol=1e-12)
    Kt = k(torch.from_numpy(X), torch.from_numpy(Y))
    assert isinstance(Kt, torch.Tensor)
    np.testing.assert_allclose(Kt.numpy(), expected, rtol=1e-12, atol=1e-12)
    K32 = k(torch.from_numpy(X).float(), torch.from_numpy(Y).float())
    assert K32.dtype == torch.float32
    np.testing.assert_allclose(K32.numpy(), expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", list_kernels())
def test_batched_equals_loop(name):
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(2, 3, 6, 4)), rng.normal(size=(2, 3, 5, 4))
    k = get_kernel(name, random_state=0) if "random" in name else get_kernel(name)
    K = k(X, Y)
    assert K.shape == (2, 3, 6, 5)
    for b in range(2):
        for h in range(3):
            np.testing.assert_allclose(K[b, h], k(X[b, h], Y[b, h]), rtol=1e-12, atol=1e-14)


def test_scikit_learn_equivalences():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(
        get_kernel("polynomial", scale=0.4, coef0=1.3, degree=3)(X, Y),
        polynomial_kernel(X, Y, gamma=0.4, coef0=1.3, degree=3),
        rtol=1e-12,
    )
    np.testing.assert_allclose(get_kernel("rbf", gamma=0.6)(X, Y), rbf_kernel(X, Y, gamma=0.6), rtol=1e-12)
    np.testing.assert_allclose(
        get_kernel("tanh", scale=0.3, coef0=0.5)(X, Y), sigmoid_kernel(X, Y, gamma=0.3, coef0=0.5), rtol=1e-12
    )


@pytest.mark.parametrize("name", ["edp", "rbf", "laplacian", "sigmoid", "exp_intersection"])
def test_log_kernel_is_log_and_does_not_overflow(name):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    k = get_kernel(name)
    np.testing.assert_allclose(k.log_kernel(X, Y), np.log(k(X, Y)), rtol=1e-12, atol=1e-12)
    big = 200.0 * X
    assert np.isfinite(k.log_kernel(big, 200.0 * Y)).all()


def test_kernels_without_log_kernel_say_so():
    with pytest.raises(ValueError, match="has no log-kernel"):
        get_kernel("tanh").log_kernel(np.ones((2, 2)))


@pytest.mark.parametrize("name", [n for n in list_kernels() if "random" not in n])
def test_gradients_of_evaluate(name):
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    k = get_kernel(name)
    assert torch.autograd.gradcheck(k.evaluate, (x, y))


def test_cosine_of_zero_vector_is_zero():
    K = get_kernel("cosine")(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[2.0, 0.0]]))
    np.testing.assert_allclose(K, [[0.0], [1.0]])


def test_laplacian_gradient_at_coincident_points_is_finite():
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    get_kernel("laplacian").evaluate(x, x.detach()).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_attention_kernel_between_domains_of_different_dimensions():
    rng = np.random.default_rng(4)
    Wq, Wk = rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(7, 6))
    k = AttentionKernel(get_kernel("edp"), Wq, Wk)
    np.testing.assert_allclose(k(X, Y), np.exp((X @ Wq) @ (Y @ Wk).T / 2.0), rtol=1e-12)
    np.testing.assert_allclose(k.log_kernel(X, Y), (X @ Wq) @ (Y @ Wk).T / 2.0, rtol=1e-12)
    assert not k.symmetric and not k.positive_definite
    assert k.feature_dim(3) == math.inf
    tied = AttentionKernel(get_kernel("polynomial"), Wq, Wq)
    assert tied.symmetric and tied.positive_definite and tied.feature_dim(3) == math.comb(4 + 2, 2)
    np.testing.assert_allclose(tied.features_x(X) @ tied.features_y(X).T, tied(X), rtol=1e-10, atol=1e-10)
    Kt = k(torch.from_numpy(X), torch.from_numpy(Y))
    np.testing.assert_allclose(Kt.numpy(), k(X, Y), rtol=1e-12)

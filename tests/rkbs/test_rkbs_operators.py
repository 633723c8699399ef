"""Blockwise kernel operators against the dense float64 Gram matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

from rkbs.kernels import AttentionKernel, get_kernel
from rkbs.operators import KernelOperator, _fused_matmul, kernel_gram, kernel_matmul, kernel_normal_equations

KERNELS = ["edp", "rbf", "laplacian", "polynomial", "tanh", "sigmoid", "exp_intersection", "elu", "cosine"]


def _data(n, m, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(m, d, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("block_size", [1, 7, None])
def test_matmul_matches_dense(name, block_size):
    X, C = _data(37, 23, 5)
    k = get_kernel(name)
    K = k.evaluate(X, C)
    B = torch.randn(23, 3, dtype=torch.float64)
    V = torch.randn(37, 2, dtype=torch.float64)
    torch.testing.assert_close(kernel_matmul(k, X, C, B, block_size=block_size), K @ B)
    torch.testing.assert_close(kernel_matmul(k, X, C, V, transpose=True, block_size=block_size), K.T @ V)


@pytest.mark.parametrize("name", ["edp", "rbf", "sigmoid", "elu", "polynomial"])
def test_normalized_matmul_is_row_normalized(name):
    X, C = _data(19, 11, 40)
    k = get_kernel(name)
    K = k.evaluate(X, C)
    P = K / K.sum(1, keepdim=True)
    B = torch.randn(11, 2, dtype=torch.float64)
    V = torch.randn(19, 1, dtype=torch.float64)
    torch.testing.assert_close(kernel_matmul(k, X, C, B, normalize=True, block_size=4), P @ B)
    torch.testing.assert_close(kernel_matmul(k, X, C, V, normalize=True, transpose=True, block_size=4), P.T @ V)


def test_normalized_edp_never_overflows():
    # exp(s q.k) overflows float64 here; the log-sum-exp path gives softmax attention exactly
    X, C = 40.0 * torch.ones(3, 2, dtype=torch.float64), torch.tensor([[40.0, 40.0], [39.0, 40.0]],
                                                                        dtype=torch.float64)
    k = get_kernel("edp", scale=1.0)
    B = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    out = kernel_matmul(k, X, C, B, normalize=True)
    expected = torch.softmax(X @ C.T, dim=1) @ B
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="non-finite values"):
        kernel_matmul(k, X, C, B)
    # the check reads the product, which an overflowing entry poisons even when B is zero (inf * 0 = nan)
    with pytest.raises(ValueError, match="non-finite values"):
        kernel_matmul(k, X, C, torch.zeros(2, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite values"):
        kernel_matmul(k, X, C, torch.zeros(3, 1, dtype=torch.float64), transpose=True)


def test_attention_kernel_between_domains():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(17, 3, generator=g, dtype=torch.float64)
    C = torch.randn(9, 5, generator=g, dtype=torch.float64)
    k = AttentionKernel(get_kernel("tanh"), np.random.default_rng(0).normal(size=(3, 4)),
                        np.random.default_rng(1).normal(size=(5, 4)))
    K = k.evaluate(X, C)
    B = torch.randn(9, 2, dtype=torch.float64)
    torch.testing.assert_close(kernel_matmul(k, X, C, B, block_size=5), K @ B)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), m=st.integers(1, 30), d=st.sampled_from([1, 3, 40]), block=st.integers(1, 40),
       name=st.sampled_from(KERNELS))
def test_linear_operator_property(n, m, d, block, name):
    X, C = _data(n, m, d, seed=n * 31 + m)
    k = get_kernel(name)
    op = KernelOperator(k, X, C, block_size=block)
    K = k.evaluate(X, C).numpy()
    v, w = np.random.default_rng(0).normal(size=m), np.random.default_rng(1).normal(size=(n, 2))
    np.testing.assert_allclose(op.matvec(v), K @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.rmatmat(w), K.T @ w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(aslinearoperator(op).T.matvec(w[:, 0]), K.T @ w[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.to_dense(), K, rtol=1e-13, atol=1e-13)


def test_gram_and_normal_equations():
    X, C = _data(50, 8, 3)
    k = get_kernel("rbf")
    Z = torch.randn(50, 2, dtype=torch.float64)
    A = kernel_gram(k, X, C, block_size=6)
    AtA, AtZ = kernel_normal_equations(k, X, C, Z, block_size=6)
    np.testing.assert_allclose(AtA, A.T @ A, rtol=1e-12)
    np.testing.assert_allclose(AtZ, A.T @ Z.numpy(), rtol=1e-12, atol=1e-12)


def test_seam_is_inactive_on_cpu():
    X, C = _data(5, 4, 3)
    assert _fused_matmul(get_kernel("edp"), X, C, torch.ones(4, 1, dtype=torch.float64)) is None


def test_normalize_refuses_negative_kernels_and_zero_rows():
    X, C = _data(5, 4, 3)
    with pytest.raises(ValueError, match="can be negative"):
        KernelOperator(get_kernel("tanh"), X, C, normalize=True)
    relu = get_kernel("relu")
    with pytest.raises(ValueError, match="zero row sum"):
        kernel_matmul(relu, -torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 3, dtype=torch.float64),
                      torch.ones(3, 1, dtype=torch.float64), normalize=True)


def test_b_shape_mismatch():
    X, C = _data(5, 4, 3)
    with pytest.raises(ValueError, match="B has 5 rows"):
        kernel_matmul(get_kernel("rbf"), X, C, torch.ones(5, 1, dtype=torch.float64))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["edp", "rbf", "tanh", "polynomial"])
def test_cuda_matches_cpu(name):
    X, C = _data(300, 129, 40)
    k = get_kernel(name)
    B = torch.randn(129, 3, dtype=torch.float64)
    V = torch.randn(300, 2, dtype=torch.float64)
    ref, ref_t = kernel_matmul(k, X, C, B), kernel_matmul(k, X, C, V, transpose=True)
    Xc, Cc = X.float().cuda(), C.float().cuda()
    out = kernel_matmul(k, Xc, Cc, B.float().cuda())
    out_t = kernel_matmul(k, Xc, Cc, V.float().cuda(), transpose=True)
    torch.testing.assert_close(out.double().cpu(), ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item())
    torch.testing.assert_close(out_t.double().cpu(), ref_t, rtol=1e-3, atol=1e-3 * ref_t.abs().max().item())


@pytest.mark.parametrize("normalize", [False, True])
def test_normal_matmul(normalize):
    X, C = _data(41, 9, 3)
    k = get_kernel("rbf")
    K = k.evaluate(X, C)
    K = K / K.sum(1, keepdim=True) if normalize else K
    V = torch.randn(9, 2, dtype=torch.float64)
    from rkbs.operators import kernel_normal_matmul

    torch.testing.assert_close(kernel_normal_matmul(k, X, C, V, normalize=normalize, block_size=5), K.T @ (K @ V))
    op = KernelOperator(k, X, C, normalize=normalize, block_size=4)
    np.testing.assert_allclose(op.normal_matvec(V[:, 0].numpy()), (K.T @ (K @ V[:, :1]))[:, 0].numpy(), rtol=1e-12)

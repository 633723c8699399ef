"""The linear-time back end equals the quadratic form for every finite-feature kernel (both modes, causal)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import KERNEL_CASES, make_kernel, randn, reference_attention

import attention_kernels._chunked as chunked
import attention_kernels._linear as linear
import attention_kernels.functional as functional
from attention_kernels.functional import kernel_attention

FINITE = [case for case in KERNEL_CASES if make_kernel(case).has_features]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(chunked, "DEFAULT_CHUNK", 8)
    monkeypatch.setattr(linear, "DEFAULT_LINEAR_CHUNK", 8)


def test_every_finite_kernel_is_covered():
    assert {"polynomial2", "linear", "cosine", "elu", "relu", "taylor_edp", "positive_random_features",
            "random_fourier_features"} <= set(FINITE)


@pytest.mark.parametrize("case", FINITE)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", [(1, 2, 19, 27, 40), (2, 1, 29, 13, 8), (1, 1, 5, 1, 8)], ids=str)
def test_linear_equals_quadratic(case, is_causal, shape):
    b, h, nq, nk, d = shape
    kernel = make_kernel(case)
    q, k, v = randn(b, h, nq, d, seed=1), randn(b, h, nk, d, seed=2), randn(b, h, nk, 6, seed=3)
    for normalize in (True, False) if kernel.positive_valued else (False,):
        lin = kernel_attention(q, k, v, is_causal=is_causal, kernel=kernel, normalize=normalize, backend="linear")
        quad = kernel_attention(q, k, v, is_causal=is_causal, kernel=kernel, normalize=normalize, backend="torch")
        torch.testing.assert_close(lin, quad, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(lin, reference_attention(q, k, v, kernel, normalize, is_causal), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", ["elu", "polynomial2", "random_fourier_features"])
def test_key_padding_masks(case):
    kernel = make_kernel(case)
    q, k, v = randn(2, 1, 11, 8, seed=4), randn(2, 1, 17, 8, seed=5), randn(2, 1, 17, 3, seed=6)
    keep = torch.rand(2, 1, 1, 17, generator=torch.Generator().manual_seed(0)) > 0.4
    bias = randn(2, 1, 1, 17, seed=7)
    bias[..., 3] = -math.inf
    normalize = kernel.positive_valued
    for mask in (keep, bias):
        for is_causal in (False, True):
            lin = kernel_attention(q, k, v, mask, is_causal=is_causal, kernel=kernel, normalize=normalize,
                                   backend="linear")
            ref = reference_attention(q, k, v, kernel, normalize, is_causal, mask)
            torch.testing.assert_close(lin, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", ["elu", "taylor_edp", "linear"])
def test_linear_gradcheck(case):
    kernel = make_kernel(case)
    q = randn(1, 1, 11, 3, seed=8, requires_grad=True)
    k = randn(1, 1, 11, 3, seed=9, requires_grad=True)
    v = randn(1, 1, 11, 2, seed=10, requires_grad=True)
    for is_causal in (False, True):
        def fn(q, k, v):
            return kernel_attention(q, k, v, is_causal=is_causal, kernel=kernel,
                                    normalize=kernel.positive_valued, backend="linear")

        assert torch.autograd.gradcheck(fn, (q, k, v), atol=1e-6)


def test_auto_switches_to_linear_past_the_crossover(monkeypatch):
    calls = []
    original = functional.linear_attention
    monkeypatch.setattr(functional, "linear_attention", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    kernel = make_kernel("elu")
    m = kernel.feature_dim(4)
    short = math.ceil(functional.LINEAR_CROSSOVER_RATIO * m) - 1
    q = randn(1, 1, short, 4, seed=11)
    kernel_attention(q, q, q, kernel=kernel)
    assert not calls
    q = randn(1, 1, short + 2, 4, seed=12)
    kernel_attention(q, q, q, kernel=kernel)
    assert calls
    calls.clear()
    kernel_attention(q, q, q, attn_mask=torch.ones(short + 2, short + 2, dtype=torch.bool), kernel=kernel)
    assert not calls  # a general mask keeps the quadratic form


def test_linear_errors():
    q = randn(1, 1, 5, 4, seed=13)
    with pytest.raises(ValueError, match="finite feature map"):
        kernel_attention(q, q, q, kernel="rbf", backend="linear")
    with pytest.raises(ValueError, match="key-padding masks"):
        kernel_attention(q, q, q, torch.ones(5, 5, dtype=torch.bool), kernel="elu", backend="linear")
    with pytest.raises(ValueError, match="dropout"):
        kernel_attention(q, q, q, dropout_p=0.1, kernel="elu", backend="linear")


# ------------------------------------------------------------------------- the recurrent state carried between calls
def _pieces(q, k, v, sizes, kernel, normalize, chunk=None):
    from attention_kernels import linear_attention_step

    outs, state, start = [], None, 0
    for n in sizes:
        sl = slice(start, start + n)
        out, state = linear_attention_step(q[..., sl, :], k[..., sl, :], v[..., sl, :], state, kernel=kernel,
                                           normalize=normalize, chunk=chunk)
        outs.append(out)
        start += n
    return torch.cat(outs, -2), state


@pytest.mark.parametrize("kernel,normalize", [
    ("elu", True), ("taylor_edp", True), ("prf", True), ("polynomial", False), ("relu", False),
])
def test_recurrent_state_equals_the_full_causal_computation(kernel, normalize):
    from rkbs.kernels import get_kernel

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 23, 8, generator=g, dtype=torch.float64) for _ in range(3))
    k_obj = get_kernel("positive_random_features", n_features=32, random_state=0) if kernel == "prf" else kernel
    out, state = _pieces(q, k, v, [1, 5, 1, 16], k_obj, normalize, chunk=4)
    full = kernel_attention(q, k, v, kernel=k_obj, is_causal=True, normalize=normalize, backend="torch")
    torch.testing.assert_close(out, full, rtol=1e-10, atol=1e-10)
    assert state.length == 23 and state.kv.shape[-1] == 8


def test_recurrent_state_is_differentiable():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 9, 8, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
    out, _ = _pieces(q, k, v, [4, 1, 4], "elu", True)
    full = kernel_attention(q, k, v, kernel="elu", is_causal=True, backend="linear")
    for a, b in zip(torch.autograd.grad(out.sum(), (q, k, v)), torch.autograd.grad(full.sum(), (q, k, v))):
        torch.testing.assert_close(a, b)


def test_recurrent_state_errors_name_the_argument():
    from attention_kernels import linear_attention_step

    x = torch.randn(1, 2, 3, 8)
    with pytest.raises(ValueError, match="needs a kernel with a finite feature map, and kernel 'rbf'"):
        linear_attention_step(x, x, x, kernel="rbf")
    with pytest.raises(ValueError, match="the same new tokens"):
        linear_attention_step(x, x[..., :2, :], x[..., :2, :])
    _, state = linear_attention_step(x, x, x, kernel="elu")
    with pytest.raises(ValueError, match=r"state holds \(features, value dim\)"):
        linear_attention_step(x, x, x[..., :4], state, kernel="elu")
    with pytest.raises(TypeError, match="state must be a LinearAttentionState"):
        linear_attention_step(x, x, x, (1, 2), kernel="elu")
    with pytest.raises(ValueError, match="normalize=True needs a non-negative kernel"):
        linear_attention_step(x, x, x, kernel="linear")

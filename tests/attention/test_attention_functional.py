"""kernel_attention (torch back end) against the float64 reference: every kernel, both modes, masks, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    KERNEL_CASES,
    attention_kernel,
    make_kernel,
    randn,
    reference_attention,
    reference_weights,
)

import attention_kernels._chunked as chunked
from attention_kernels.functional import kernel_attention, kernel_attention_weights


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks smaller than the sequences, with lengths that are not multiples of them."""
    monkeypatch.setattr(chunked, "DEFAULT_CHUNK", 8)


def _modes(kernel):
    return (True, False) if kernel.positive_valued else (False,)


def _masks(nq, nk, seed):
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(nq, nk, generator=g) > 0.3
    keep[1] = False  # a fully masked row
    bias = torch.randn(nq, nk, generator=g, dtype=torch.float64)
    bias[torch.rand(nq, nk, generator=g) < 0.2] = -math.inf
    bias[2] = -math.inf  # a fully masked row
    return {"none": None, "bool": keep, "float": bias}


@pytest.mark.parametrize("case", list(KERNEL_CASES))
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_forward_matches_reference(case, is_causal, mask_kind, small_chunks):
    kernel = make_kernel(case)
    q, k, v = randn(1, 2, 19, 40, seed=1), randn(1, 2, 27, 40, seed=2), randn(1, 2, 27, 12, seed=3)
    mask = _masks(19, 27, seed=4)[mask_kind]
    for normalize in _modes(kernel):
        out = kernel_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, kernel=kernel, normalize=normalize, backend="torch"
        )
        expected = reference_attention(q, k, v, kernel, normalize, is_causal, mask)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        assert not out.isnan().any()
        if mask_kind != "none":  # fully masked rows give zeros
            assert (out[..., 1 if mask_kind == "bool" else 2, :] == 0).all()


@pytest.mark.parametrize("head_dim", [80, 96])
@pytest.mark.parametrize("case", ["rbf", "sigmoid", "polynomial3"])
def test_head_dims_batch_one_and_single_key(case, head_dim, small_chunks):
    kernel = make_kernel(case)
    normalize = kernel.positive_valued
    for nq, nk in [(13, 21), (5, 1)]:
        q, k, v = randn(1, 1, nq, head_dim, seed=5), randn(1, 1, nk, head_dim, seed=6), randn(1, 1, nk, 7, seed=7)
        out = kernel_attention(q, k, v, kernel=kernel, normalize=normalize, backend="torch")
        torch.testing.assert_close(out, reference_attention(q, k, v, kernel, normalize), rtol=1e-10, atol=1e-10)


def test_attention_kernel_object_two_sided(small_chunks):
    kernel = attention_kernel(16)
    q, k, v = randn(2, 11, 16, seed=8), randn(2, 17, 16, seed=9), randn(2, 17, 3, seed=10)
    out = kernel_attention(q, k, v, kernel=kernel, backend="torch")
    torch.testing.assert_close(out, reference_attention(q, k, v, kernel), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_gradcheck(case, small_chunks, monkeypatch):
    monkeypatch.setattr(chunked, "DEFAULT_CHUNK", 3)
    kernel = make_kernel(case)
    q = randn(1, 2, 5, 4, seed=11, requires_grad=True)
    k = randn(1, 2, 7, 4, seed=12, requires_grad=True)
    v = randn(1, 2, 7, 3, seed=13, requires_grad=True)
    bias = randn(5, 7, seed=14).clamp(-2, 2)
    bias[0, 2:] = -math.inf
    for normalize in _modes(kernel):
        for is_causal, mask in [(False, bias), (True, None)]:
            def fn(q, k, v):
                return kernel_attention(
                    q, k, v, attn_mask=mask, is_causal=is_causal, kernel=kernel, normalize=normalize,
                    backend="torch",
                )

            assert torch.autograd.gradcheck(fn, (q, k, v), atol=1e-6)


def test_gradients_match_reference(small_chunks):
    kernel = make_kernel("rbf")
    q, k, v = (randn(1, 2, 21, 40, seed=s, requires_grad=True) for s in (15, 16, 17))
    mask = _masks(21, 21, seed=18)["float"]
    kernel_attention(q, k, v, attn_mask=mask, kernel=kernel, backend="torch").square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    reference_attention(q, k, v, kernel, attn_mask=mask).square().sum().backward()
    for g, t in zip(grads, (q, k, v)):
        torch.testing.assert_close(g, t.grad, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------------------- EDP == SDPA
@pytest.mark.parametrize("is_causal", [False, True])
def test_edp_normalized_is_sdpa(is_causal, small_chunks):
    q, k, v = randn(2, 3, 29, 96, seed=19), randn(2, 3, 29, 96, seed=20), randn(2, 3, 29, 40, seed=21)
    torch.testing.assert_close(
        kernel_attention(q, k, v, is_causal=is_causal, backend="torch"),
        F.scaled_dot_product_attention(q, k, v, is_causal=is_causal),
    )


def test_edp_sdpa_masks_scale_gqa(small_chunks):
    q, k, v = randn(2, 4, 10, 8, seed=22), randn(2, 2, 13, 8, seed=23), randn(2, 2, 13, 5, seed=24)
    bias = randn(2, 1, 10, 13, seed=25)
    keep = torch.rand(10, 13, generator=torch.Generator().manual_seed(0)) > 0.2
    keep[:, 0] = True  # SDPA gives NaN on fully masked rows; keep rows non-empty for the comparison
    for mask in (bias, keep):
        torch.testing.assert_close(
            kernel_attention(q, k, v, attn_mask=mask, scale=0.3, enable_gqa=True),
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3, enable_gqa=True),
        )


def test_edp_no_overflow_with_large_logits(small_chunks):
    q, k, v = 30 * randn(1, 1, 9, 8, seed=26), 30 * randn(1, 1, 20, 8, seed=27), randn(1, 1, 20, 4, seed=28)
    out = kernel_attention(q, k, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))


def test_relu_zero_row_sum_gives_zeros():
    q = -torch.ones(1, 3, 4, dtype=torch.float64)  # relu(q) = 0: every weight is 0
    k, v = randn(1, 5, 4, seed=29), randn(1, 5, 2, seed=30)
    out = kernel_attention(q, k, v, kernel="relu")
    assert (out == 0).all()


def test_all_keys_masked_gives_zeros_not_nan():
    q, k, v = randn(2, 4, 8, seed=31), randn(2, 6, 8, seed=32), randn(2, 6, 3, seed=33)
    for mask in (torch.zeros(4, 6, dtype=torch.bool), torch.full((4, 6), -math.inf, dtype=torch.float64)):
        for kernel in ("edp", "sigmoid"):
            assert (kernel_attention(q, k, v, attn_mask=mask, kernel=kernel) == 0).all()


# ----------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("case", ["edp", "tanh", "elu"])
def test_explicit_weights(case):
    kernel = make_kernel(case)
    q, k = randn(2, 6, 8, seed=34), randn(2, 9, 8, seed=35)
    mask = _masks(6, 9, seed=36)["float"]
    for normalize in _modes(kernel):
        torch.testing.assert_close(
            kernel_attention_weights(q, k, mask, kernel=kernel, normalize=normalize),
            reference_weights(q, k, kernel, normalize, attn_mask=mask),
        )


def test_dropout_applies_to_normalized_weights():
    """With identity values the output is the weight matrix: each entry is dropped or scaled by 1/(1-p)."""
    q, k = randn(1, 7, 8, seed=37), randn(1, 11, 8, seed=38)
    eye = torch.eye(11, dtype=torch.float64).unsqueeze(0)
    torch.manual_seed(0)
    out = kernel_attention(q, k, eye, dropout_p=0.4, kernel="rbf")
    w = kernel_attention_weights(q, k, kernel="rbf")
    kept = out != 0
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(out[kept], w[kept] / 0.6)


# ----------------------------------------------------------------------------------------------- dtypes
def test_bfloat16_autocast_and_half_inputs():
    q, k, v = (randn(1, 2, 33, 16, seed=s, dtype=torch.float32) for s in (39, 40, 41))
    expected = reference_attention(q, k, v, make_kernel("rbf"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = kernel_attention(q, k, v, kernel="rbf")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=2e-2)
    out16 = kernel_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), kernel="rbf")
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.double(), expected, rtol=3e-2, atol=3e-2)


def test_torch_compile(small_chunks):
    q, k, v = (randn(1, 2, 19, 8, seed=s, dtype=torch.float32) for s in (42, 43, 44))
    kernel = make_kernel("rbf")

    def fn(q, k, v):
        return kernel_attention(q, k, v, is_causal=True, kernel=kernel, backend="torch")

    compiled = torch.compile(fn, backend="aot_eager")
    torch.testing.assert_close(compiled(q, k, v), fn(q, k, v), rtol=1e-5, atol=1e-5)

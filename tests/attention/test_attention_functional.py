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


# ----------------------------------------------------------------------------------------------- SDPA route
@pytest.fixture
def sdpa_calls(monkeypatch):
    """Counts calls of the SDPA route (so a test knows which path it exercised)."""
    import attention_kernels.functional as functional

    calls = []
    original = functional.sdpa_attention
    monkeypatch.setattr(functional, "sdpa_attention", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    return calls


@pytest.mark.parametrize("case", ["edp", "rbf"])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_sdpa_route_forward_and_gradients(case, is_causal, mask_kind, sdpa_calls):
    """Normalized EDP/RBF go through SDPA: masks with fully masked rows, causal with a mask, gradients."""
    kernel = make_kernel(case)
    q, k, v = (randn(1, 2, n, 40, seed=s, requires_grad=True) for n, s in ((19, 50), (27, 51), (27, 52)))
    mask = _masks(19, 27, seed=53)[mask_kind]
    out = kernel_attention(q, k, v, attn_mask=mask, is_causal=is_causal, kernel=kernel, backend="torch")
    assert sdpa_calls, "the SDPA route was not taken"
    expected = reference_attention(q, k, v, kernel, True, is_causal, mask)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    if mask_kind != "none":
        assert (out[..., 1 if mask_kind == "bool" else 2, :] == 0).all()
    g = randn(*out.shape, seed=54)
    grads = torch.autograd.grad((out * g).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((expected * g).sum(), (q, k, v))
    for got, want in zip(grads, ref_grads):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_sdpa_route_rbf_inference_gqa_and_value_dim(sdpa_calls):
    """RBF without key gradients folds its key term into an additive mask; GQA heads; Ev != E."""
    kernel = make_kernel("rbf")
    q, k, v = randn(2, 4, 10, 8, seed=55), randn(2, 2, 13, 8, seed=56), randn(2, 2, 13, 5, seed=57)
    keep = torch.rand(10, 13, generator=torch.Generator().manual_seed(1)) > 0.3
    keep[4] = False
    out = kernel_attention(q, k, v, attn_mask=keep, enable_gqa=True, kernel=kernel)
    assert sdpa_calls
    kg, vg = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    torch.testing.assert_close(out, reference_attention(q, kg, vg, kernel, attn_mask=keep), rtol=1e-10, atol=1e-10)


def test_mask_gradient_takes_the_tiled_path(sdpa_calls, small_chunks):
    """A float mask that needs a gradient (e.g. a learned bias) gets it from the tiled backward."""
    kernel = make_kernel("edp")
    q, k, v = randn(1, 2, 11, 8, seed=58), randn(1, 2, 14, 8, seed=59), randn(1, 2, 14, 3, seed=60)
    bias = randn(2, 11, 14, seed=61, requires_grad=True)
    out = kernel_attention(q, k, v, attn_mask=bias, kernel=kernel)
    assert not sdpa_calls
    (grad,) = torch.autograd.grad(out.square().sum(), bias)
    (want,) = torch.autograd.grad(reference_attention(q, k, v, kernel, attn_mask=bias).square().sum(), bias)
    torch.testing.assert_close(grad, want, rtol=1e-9, atol=1e-9)


def test_unnormalized_rbf_stays_tiled(sdpa_calls, small_chunks):
    kernel = make_kernel("rbf")
    q, k, v = (randn(1, 1, 9, 40, seed=s, requires_grad=True) for s in (62, 63, 64))
    out = kernel_attention(q, k, v, kernel=kernel, normalize=False, is_causal=True)
    assert not sdpa_calls
    torch.testing.assert_close(out, reference_attention(q, k, v, kernel, False, True), rtol=1e-10, atol=1e-10)
    small = [t[..., :5, :3].detach().requires_grad_(True) for t in (q, k, v)]
    assert torch.autograd.gradcheck(
        lambda q, k, v: kernel_attention(q, k, v, kernel=kernel, normalize=False, is_causal=True), small
    )


# ------------------------------------------------------------------------------------- the tiled backward
@pytest.mark.parametrize("head_dim", [40, 80, 96])
@pytest.mark.parametrize("case", ["laplacian", "polynomial2", "sigmoid", "tanh", "exp_intersection", "elu"])
def test_tiled_gradients_awkward_shapes(case, head_dim, small_chunks):
    """Lengths not multiples of the tile (8), one key, batch 1, head dims 40/80/96, causal and masked."""
    kernel = make_kernel(case)
    for normalize in _modes(kernel):
        for nq, nk, is_causal in ((13, 21, True), (6, 1, False), (17, 17, False)):
            q = randn(1, 1, nq, head_dim, seed=65, requires_grad=True)
            k = randn(1, 1, nk, head_dim, seed=66, requires_grad=True)
            v = randn(1, 1, nk, 7, seed=67, requires_grad=True)
            mask = _masks(nq, nk, seed=68)["float"] if nq > 2 else None
            out = kernel_attention(q, k, v, attn_mask=mask, is_causal=is_causal, kernel=kernel,
                                   normalize=normalize, backend="torch")
            expected = reference_attention(q, k, v, kernel, normalize, is_causal, mask)
            torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
            g = randn(*out.shape, seed=69)
            got = torch.autograd.grad((out * g).sum(), (q, k, v))
            want = torch.autograd.grad((expected * g).sum(), (q, k, v))
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_tiled_gradcheck_broadcast_batch_and_default_tiles():
    """Key/value shared across the batch (broadcast), default tile sizes, one key, a fully masked row."""
    kernel = make_kernel("laplacian")
    q = randn(2, 3, 4, 5, seed=70, requires_grad=True)
    k, v = randn(1, 3, 6, 5, seed=71, requires_grad=True), randn(1, 3, 6, 2, seed=72, requires_grad=True)
    keep = torch.ones(4, 6, dtype=torch.bool)
    keep[2] = False

    def fn(q, k, v):
        return kernel_attention(q, k, v, attn_mask=keep, kernel=kernel, backend="torch")

    assert torch.autograd.gradcheck(fn, (q, k, v))
    keep = keep[:, :1]
    assert torch.autograd.gradcheck(fn, (q, k[..., :1, :], v[..., :1, :]))


def test_tiled_dropout_backward_uses_the_forward_mask(small_chunks):
    """With identity values the output is the dropped weight matrix W_d; d(sum(out * G))/dV must be W_d^T G."""
    q = randn(1, 9, 8, seed=73)
    k = randn(1, 11, 8, seed=74)
    eye = torch.eye(11, dtype=torch.float64).unsqueeze(0).requires_grad_(True)
    torch.manual_seed(1)
    out = kernel_attention(q, k, eye, dropout_p=0.3, kernel="laplacian", gamma=0.3, is_causal=True)
    kept = out != 0
    assert 0 < kept.float().mean() < 1
    g = randn(*out.shape, seed=75)
    (grad,) = torch.autograd.grad((out * g).sum(), eye)
    torch.testing.assert_close(grad, out.detach().transpose(-1, -2) @ g)


def test_feature_product_kernels_tile_a_plain_dot_product(small_chunks, monkeypatch):
    """Cosine and elu form their features once per call, and the tiles evaluate only their dot product."""
    seen = []
    part = chunked._kernel_part

    def spy(plan, *args, **kwargs):
        seen.append(plan.kernel.name)
        return part(plan, *args, **kwargs)

    monkeypatch.setattr(chunked, "_kernel_part", spy)
    for case in ("cosine", "elu"):
        kernel = make_kernel(case)
        q = randn(1, 2, 13, 5, seed=80, requires_grad=True)
        k = randn(1, 2, 11, 5, seed=81, requires_grad=True)
        v = randn(1, 2, 11, 3, seed=82, requires_grad=True)
        q.data[0, 0, 3] = 0.0  # a zero query: cosine similarity 0 with every key
        for normalize in _modes(kernel):
            out = kernel_attention(q, k, v, is_causal=True, kernel=kernel, normalize=normalize, backend="torch")
            expected = reference_attention(q, k, v, kernel, normalize, True)
            torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
            got = torch.autograd.grad(out.sum(), (q, k, v))
            want = torch.autograd.grad(expected.sum(), (q, k, v))
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)
    assert set(seen) == {"linear"}
    assert not chunked._feature_product(make_kernel("taylor_edp"), 5)  # more features than dimensions
    assert not chunked._feature_product(make_kernel("tanh"), 5)
    assert not chunked._feature_product(attention_kernel(5), 5)

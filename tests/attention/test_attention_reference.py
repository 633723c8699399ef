"""Float64 reference for the attention tests: the full weight matrix, no tricks (no running maximum)."""

from __future__ import annotations

import torch

from rkbs.kernels import AttentionKernel, get_kernel

# Every catalogue kernel, with parameters that make it deterministic; odd polynomial / Taylor degrees are the
# sign-changing variants. Names are pytest ids.
KERNEL_CASES = {
    "edp": ("edp", {}),
    "rbf": ("rbf", {}),
    "laplacian": ("laplacian", {"gamma": 0.3}),
    "polynomial2": ("polynomial", {"degree": 2}),
    "polynomial3": ("polynomial", {"degree": 3, "coef0": 0.5}),
    "linear": ("linear", {}),
    "cosine": ("cosine", {}),
    "sigmoid": ("sigmoid", {"coef0": -1.0}),
    "tanh": ("tanh", {"coef0": 0.1}),
    "exp_intersection": ("exp_intersection", {}),
    "elu": ("elu", {}),
    "relu": ("relu", {}),
    "taylor_edp": ("taylor_edp", {"degree": 2}),
    "taylor_edp3": ("taylor_edp", {"degree": 3}),
    "positive_random_features": ("positive_random_features", {"n_features": 16, "random_state": 0}),
    "random_fourier_features": ("random_fourier_features", {"n_features": 16, "random_state": 0}),
}


def make_kernel(case: str):
    name, params = KERNEL_CASES[case]
    return get_kernel(name, **params)


def attention_kernel(d: int, seed: int = 0) -> AttentionKernel:
    """An asymmetric two-sided EDP kernel on inputs of dimension d."""
    g = torch.Generator().manual_seed(seed)
    wq = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    wk = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return AttentionKernel(get_kernel("edp"), query_map=wq, key_map=wk)


def reference_weights(q, k, kernel, normalize=True, is_causal=False, attn_mask=None):
    q, k = q.double(), k.double()
    w = kernel.evaluate(q, k)
    nq, nk = q.shape[-2], k.shape[-2]
    keep = torch.ones(nq, nk, dtype=torch.bool)
    if is_causal:
        keep = torch.ones(nq, nk, dtype=torch.bool).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = keep & attn_mask
        else:
            w = w * torch.exp(attn_mask.double())
    w = w.masked_fill(~keep, 0.0)
    if normalize:
        total = w.sum(-1, keepdim=True)
        w = w / torch.where(total != 0, total, torch.ones_like(total))
    return w


def reference_attention(q, k, v, kernel, normalize=True, is_causal=False, attn_mask=None):
    return reference_weights(q, k, kernel, normalize, is_causal, attn_mask) @ v.double()


def reference_features(q, k, v, kernel, normalize=True, is_causal=False, attn_mask=None, window=None,
                       alibi_slopes=None, sinks=None, softcap=None):
    """``(out, lse)`` with the feature arguments, straight from their definitions (float64, explicit weights).

    window (left, right) is aligned bottom-right (-1 unbounded); ALiBi multiplies by exp(-slope |i + S - L - j|);
    sinks add exp(sink) to the row sum; softcap maps the log-kernel x to c tanh(x / c).
    """
    q, k, v = q.double(), k.double(), v.double()
    nq, nk = q.shape[-2], k.shape[-2]
    if softcap is not None:
        w = torch.exp(softcap * torch.tanh(kernel.log_evaluate(q, k) / softcap))
    else:
        w = kernel.evaluate(q, k)
    i = torch.arange(nq).unsqueeze(-1) + (nk - nq)  # query positions, bottom-right
    j = torch.arange(nk).unsqueeze(0)
    keep = torch.ones(nq, nk, dtype=torch.bool)
    if is_causal:
        keep &= torch.ones(nq, nk, dtype=torch.bool).tril()
    if window is not None:
        left, right = window
        if left != -1:
            keep &= j >= i - left
        if right != -1:
            keep &= j <= i + right
    if alibi_slopes is not None:
        slopes = alibi_slopes.double().reshape(*alibi_slopes.shape, 1, 1)
        w = w * torch.exp(-slopes * (i - j).abs())
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = keep & attn_mask
        else:
            w = w * torch.exp(attn_mask.double())
    w = w.masked_fill(~keep, 0.0)
    total = w.sum(-1)
    if sinks is not None:
        total = total + torch.exp(sinks.double()).unsqueeze(-1)
    if normalize:
        w = w / torch.where(total != 0, total, torch.ones_like(total)).unsqueeze(-1)
    return w @ v, torch.log(total)


def randn(*shape, seed=0, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)


# The reference itself is checked against torch where torch has the same computation.
def test_reference_edp_is_sdpa():
    q, k, v = randn(2, 3, 5, 8, seed=1), randn(2, 3, 7, 8, seed=2), randn(2, 3, 7, 4, seed=3)
    mask = randn(5, 7, seed=4)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(reference_attention(q, k, v, make_kernel("edp"), attn_mask=mask), expected)


def test_reference_attention_kernel_maps_both_sides():
    q, k = randn(4, 6, seed=5), randn(3, 6, seed=6)
    kern = attention_kernel(6)
    expected = torch.exp((q @ kern.query_map) @ (k @ kern.key_map).T / 6**0.5)
    torch.testing.assert_close(reference_weights(q, k, kern, normalize=False), expected)

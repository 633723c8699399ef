"""Naive float64 reference of the fused primitive (materializes the full weight matrix).

It is the ground truth of the tests (forward and, through autograd, every gradient) and documents the exact
semantics: masks, grouped-query heads, causal alignment, fully masked rows. It writes each epilogue's formula
once more, in plain float64 torch, on purpose: a reference that shared code with the epilogues could not catch
their mistakes (``tests/rkbs/test_kernels_backends.py`` ties it to the catalogue in ``rkbs.kernels``).
"""

from __future__ import annotations

import torch

from ._spec import (
    COSINE, EDP, EXP_INTERSECTION, LAPLACIAN, LINEAR, POLYNOMIAL, RBF, SIGMOID, TANH, KernelSpec, check_normalize,
)

__all__ = ["reference_attention"]


def _sq_dist(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    qn = (q * q).sum(-1, keepdim=True)
    kn = (k * k).sum(-1).unsqueeze(-2)
    return (qn + kn - 2.0 * q @ k.transpose(-1, -2)).clamp_min(0.0)


def _log_or_weight(kid, c0, c1, degree, q, k, softcap=None):
    """Return (value, is_log): the log-weight for exponential kernels, else the weight.

    ``softcap`` maps u to softcap * tanh(u / softcap), u the exponent of the exponential kernels or the argument
    of the others' outer function (c0 q.k; cosine: q.k / (|q| |k|)).
    """
    def cap(u):
        return u if softcap is None else softcap * torch.tanh(u / softcap)

    if kid == EDP:
        return cap(c0 * (q @ k.transpose(-1, -2))), True
    if kid == RBF:
        return cap(-c0 * _sq_dist(q, k)), True
    if kid == LAPLACIAN:
        sq = _sq_dist(q, k)
        # subgradient 0 at distance 0, like the fused kernel
        dist = torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), torch.zeros_like(sq))
        return cap(-c0 * dist), True
    if kid == EXP_INTERSECTION:
        return cap(c0 * torch.minimum(q.unsqueeze(-2), k.unsqueeze(-3)).sum(-1)), True
    u = cap(c0 * (q @ k.transpose(-1, -2)))
    x = u + c1
    if kid == POLYNOMIAL:
        return x**degree if degree > 0 else torch.ones_like(x), False
    if kid == LINEAR:
        return u, False
    if kid == COSINE:
        qn = (q * q).sum(-1, keepdim=True)
        kn = (k * k).sum(-1).unsqueeze(-2)
        inv = torch.where(qn > 0, qn.clamp_min(1e-300).rsqrt(), 0.0) * torch.where(kn > 0, kn.clamp_min(1e-300).rsqrt(), 0.0)
        return cap((q @ k.transpose(-1, -2)) * inv), False
    if kid == SIGMOID:
        return torch.sigmoid(x), False
    if kid == TANH:
        return torch.tanh(x), False
    raise ValueError(f"unknown epilogue {kid!r}")


def reference_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    spec: KernelSpec,
    is_causal: bool = False,
    enable_gqa: bool = False,
    normalize: bool = True,
    return_lse: bool = False,
    compute_dtype: torch.dtype = torch.float64,
    window: tuple[int, int] | None = None,
    alibi_slopes: torch.Tensor | None = None,
    sinks: torch.Tensor | None = None,
    softcap: float | None = None,
):
    """Float64 reference of :func:`triton_ops.kernel_attention` (same arguments, O(N^2) memory).

    Computed in ``compute_dtype`` (float64 by default; the inputs' own dtype gives "eager PyTorch", the error
    yardstick of the GPU tests) on the inputs' device; differentiable with autograd. The features are those of
    :func:`triton_ops.kernel_attention` (dense batches only; a packed batch is the concatenation of its
    sequences' results).

    Examples
    --------
    >>> import torch
    >>> from rkbs.kernels import get_kernel
    >>> q = k = v = torch.randn(1, 1, 4, 8)
    >>> reference_attention(q, k, v, spec=get_kernel("edp").fused_spec(8), is_causal=True).shape
    torch.Size([1, 1, 4, 8])
    """
    if not isinstance(spec, KernelSpec):
        raise TypeError(f"`spec` must be a triton_ops.KernelSpec, got {type(spec).__name__}.")
    check_normalize(normalize, spec.nonnegative, spec.describe())
    q, k, v, mask = query, key, value, attn_mask
    if q.shape[1] != k.shape[1] and not enable_gqa:
        raise ValueError(
            f"`query` has {q.shape[1]} heads but `key`/`value` {k.shape[1]}; pass enable_gqa=True for "
            "grouped-query attention."
        )
    q, k, v = q.to(compute_dtype), k.to(compute_dtype), v.to(compute_dtype)
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
    nq, nk = q.shape[-2], k.shape[-2]
    val, is_log = _log_or_weight(spec.kernel_id, spec.c0, spec.c1, spec.degree, q, k, softcap)
    keep = torch.ones(nq, nk, dtype=torch.bool, device=q.device)
    if is_causal:
        keep = torch.tril(keep)  # top-left aligned, like torch SDPA's is_causal
    # window and ALiBi: query i sits at key position i + nk - nq (bottom-right aligned)
    dist = (torch.arange(nq, device=q.device).unsqueeze(-1) + (nk - nq) - torch.arange(nk, device=q.device))
    if window is not None:
        left, right = window
        if left >= 0:
            keep = keep & (dist <= left)
        if right >= 0:
            keep = keep & (-dist <= right)
    bias = None
    if mask is not None:
        if mask.dtype == torch.bool:
            keep = keep & mask
        else:
            bias = mask.to(compute_dtype)
    if alibi_slopes is not None:
        slopes = alibi_slopes.to(compute_dtype).reshape(-1, q.shape[1], 1, 1)
        alibi = -slopes * dist.abs().to(compute_dtype)
        bias = alibi if bias is None else bias + alibi
    sink = None
    if sinks is not None:
        if not normalize:
            raise ValueError("sinks need normalize=True")
        sink = sinks.to(compute_dtype).reshape(1, -1, 1, 1)
    if is_log:
        logw = val if bias is None else val + bias
        logw = logw.masked_fill(~keep, float("-inf"))
        if normalize:
            m = logw.amax(-1, keepdim=True)
            if sink is not None:
                m = torch.maximum(m, sink.expand_as(m))
            m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()
            w = torch.exp(logw - m)
            tot = w.sum(-1, keepdim=True)
            if sink is not None:
                tot = tot + torch.exp(sink - m)
            out = (w @ v) / torch.where(tot > 0, tot, torch.ones_like(tot))
            lse = (torch.log(tot) + m).squeeze(-1)
        else:
            w = torch.exp(logw)
            out = w @ v
            lse = None
    else:
        w = val if bias is None else val * torch.exp(bias)
        w = w.masked_fill(~keep, 0.0)
        if normalize:
            tot = w.sum(-1, keepdim=True)
            if sink is not None:
                tot = tot + torch.exp(sink)
            out = (w @ v) / torch.where(tot != 0, tot, torch.ones_like(tot))
            lse = torch.log(tot).squeeze(-1)
        else:
            out = w @ v
            lse = None
    if return_lse:
        return out, lse
    return out

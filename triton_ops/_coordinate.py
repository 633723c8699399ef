"""The coordinate-wise score of ``exp_intersection``: sum_l min(q_l, k_l), and its gradient.

No tensor cores: the tile is formed by broadcasting to (BLOCK_M, BLOCK_N, BLOCK_D), so the callers keep the
blocks small. Zero-padded coordinates contribute min(0, 0) = 0 to the score and are never stored in the
gradient.
"""

import triton
import triton.language as tl


@triton.jit
def coordinate_score(q, k):
    """(BLOCK_M, BLOCK_N) tile of sum_l min(q_il, k_jl), accumulated in float32."""
    return tl.sum(tl.minimum(q.to(tl.float32)[:, None, :], k.to(tl.float32)[None, :, :]), 2)


@triton.jit
def coordinate_grads(q, k, ds):
    """Gradients of sum_ij ds_ij * sum_l min(q_il, k_jl) with respect to q (BLOCK_M, D) and k (BLOCK_N, D).

    Ties q_il == k_jl split the gradient in halves, like torch.minimum's backward.
    """
    q3 = q.to(tl.float32)[:, None, :]
    k3 = k.to(tl.float32)[None, :, :]
    to_q = tl.where(q3 < k3, 1.0, tl.where(q3 == k3, 0.5, 0.0))
    g = ds[:, :, None]
    dq = tl.sum(g * to_q, 1)
    dk = tl.sum(g * (1.0 - to_q), 0)
    return dq, dk


# Head dims above 64 would make the (BLOCK_M, BLOCK_N, BLOCK_D) tile spill: there the score is accumulated over
# 16-wide chunks of coordinates loaded from memory, and the gradients are added chunk by chunk into float32
# buffers whose rows the calling program owns alone (each element is read and written by the same thread).
@triton.jit
def _load_chunk(base, idx, stride, n, dd, D):
    return tl.load(
        base + idx[:, None].to(tl.int64) * stride + dd[None, :], mask=(idx[:, None] < n) & (dd[None, :] < D), other=0.0
    ).to(tl.float32)


@triton.jit
def coordinate_score_chunked(q_base, sqm, k_base, skn, rows, cols, NQ, NK, D,
                             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DC: tl.constexpr):
    offs = tl.arange(0, DC)
    s = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for c in range(0, D, DC):
        qc = _load_chunk(q_base, rows, sqm, NQ, c + offs, D)
        kc = _load_chunk(k_base, cols, skn, NK, c + offs, D)
        s += tl.sum(tl.minimum(qc[:, None, :], kc[None, :, :]), 2)
    return s


@triton.jit
def coordinate_grads_chunked(q_base, sqm, k_base, skn, rows, cols, ds, NQ, NK, D, ACC,
                             TO_Q: tl.constexpr, DC: tl.constexpr):
    """Add the gradient of sum_ij ds_ij sum_l min(q_il, k_jl) w.r.t. q (TO_Q) or k into ACC (rows of width D)."""
    offs = tl.arange(0, DC)
    for c in range(0, D, DC):
        dd = c + offs
        q3 = _load_chunk(q_base, rows, sqm, NQ, dd, D)[:, None, :]
        k3 = _load_chunk(k_base, cols, skn, NK, dd, D)[None, :, :]
        to_q = tl.where(q3 < k3, 1.0, tl.where(q3 == k3, 0.5, 0.0))
        if TO_Q:
            contrib = tl.sum(ds[:, :, None] * to_q, 1)
            idx = rows
            n = NQ
        else:
            contrib = tl.sum(ds[:, :, None] * (1.0 - to_q), 0)
            idx = cols
            n = NK
        ptrs = ACC + idx[:, None].to(tl.int64) * D + dd[None, :]
        m = (idx[:, None] < n) & (dd[None, :] < D)
        tl.store(ptrs, tl.load(ptrs, mask=m, other=0.0) + contrib, mask=m)

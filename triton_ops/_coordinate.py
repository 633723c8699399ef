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

"""The linear back end: attention with a finite feature map in time linear in the sequence length.

With ``kappa(q, k) = <phi_x(q), phi_y(k)>`` the weight matrix factors, so

    sum_j kappa(q_i, k_j) v_j = phi_x(q_i)^T (sum_j phi_y(k_j) v_j^T)      O((Nq + Nk) m d_v)

Causal attention needs the prefix sums ``S_i = sum_{j <= i} phi_y(k_j) v_j^T``; they are formed per chunk of C
positions (one ``(m, d_v)`` state per chunk, an exclusive cumulative sum over chunks) and the diagonal block is
done quadratically inside the chunk, which keeps the work on matmuls (as in flash-linear-attention's chunked
form) instead of a length-N Python loop. Only masks that depend on the key alone can be folded into the key
features (a key-padding mask scales ``phi_y(k_j)`` by 0/1 or ``exp(b_j)``).
"""

from __future__ import annotations

import torch

from rkbs.kernels import Kernel

from ._masks import MaskSpec

__all__ = ["linear_attention", "DEFAULT_LINEAR_CHUNK"]

# Positions per chunk of the causal form: the intra-chunk block is C x C, the number of (m, d_v) states N / C.
DEFAULT_LINEAR_CHUNK = 64


def _key_features(k: torch.Tensor, kernel: Kernel, mask: MaskSpec) -> torch.Tensor:
    phi_k = kernel.feature_map_y(k)
    if mask.keep is not None:
        keep = mask.keep if mask.keep.ndim >= 2 else mask.keep.unsqueeze(0)
        phi_k = phi_k * keep[..., 0, :].unsqueeze(-1).to(phi_k.dtype)
    if mask.bias is not None:
        bias = mask.bias if mask.bias.ndim >= 2 else mask.bias.unsqueeze(0)
        phi_k = phi_k * torch.exp(bias[..., 0, :]).unsqueeze(-1)
    return phi_k


def _finish(num: torch.Tensor, den: torch.Tensor, normalize: bool, return_lse: bool = False):
    if not normalize:
        return num
    # a zero row sum (every key masked, or non-negative features with no overlap) gives zeros, not NaN
    out = num / torch.where(den != 0, den, torch.ones_like(den)).unsqueeze(-1)
    return (out, torch.log(den)) if return_lse else out


def _pad_to(t: torch.Tensor, length: int) -> torch.Tensor:
    if t.shape[-2] == length:
        return t
    pad = t.new_zeros((*t.shape[:-2], length - t.shape[-2], t.shape[-1]))
    return torch.cat([t, pad], dim=-2)


def _exclusive_cumsum(t: torch.Tensor, dim: int) -> torch.Tensor:
    total = torch.cumsum(t, dim=dim)
    zero = torch.zeros_like(total.narrow(dim, 0, 1))
    return torch.cat([zero, total.narrow(dim, 0, t.shape[dim] - 1)], dim=dim)


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: Kernel,
    normalize: bool,
    mask: MaskSpec,
    chunk: int | None = None,
    return_lse: bool = False,
):
    """Linear-time kernel attention; inputs validated, masks key-only (see :class:`MaskSpec.keys_only`).

    With ``return_lse`` (normalized only) also the log of the row sums, ``(*batch, n_queries)``.
    """
    chunk = DEFAULT_LINEAR_CHUNK if chunk is None else chunk
    # Feature maps of permuted (e.g. head-split) inputs: under torch.compile the traced strides of some
    # pointwise backward ops (elu) differ from eager's, and a view in the backward graph then fails at run time.
    q, k = q.contiguous(), k.contiguous()
    phi_q = kernel.feature_map_x(q)
    phi_k = _key_features(k, kernel, mask)
    if not mask.causal:
        kv = phi_k.transpose(-1, -2) @ v  # (..., m, d_v)
        num = phi_q @ kv
        den = (phi_q @ phi_k.sum(-2).unsqueeze(-1)).squeeze(-1)
        return _finish(num, den, normalize, return_lse)

    nq = q.shape[-2]
    if nq == 0:
        batch = torch.broadcast_shapes(phi_q.shape[:-2], v.shape[:-2])
        out = phi_q.new_zeros((*batch, 0, v.shape[-1]))
        return (out, phi_q.new_zeros((*batch, 0))) if return_lse else out
    used = min(k.shape[-2], nq)  # keys past the last query are never attended (top-left causal)
    n_chunks = -(-nq // chunk)
    padded = n_chunks * chunk
    phi_q = _pad_to(phi_q, padded)
    phi_k = _pad_to(phi_k[..., :used, :], padded)  # zero features: padded keys add nothing
    v = _pad_to(v[..., :used, :], padded)
    batch = torch.broadcast_shapes(phi_q.shape[:-2], phi_k.shape[:-2], v.shape[:-2])
    m, dv = phi_q.shape[-1], v.shape[-1]
    fq = phi_q.expand(*batch, padded, m).reshape(*batch, n_chunks, chunk, m)
    fk = phi_k.expand(*batch, padded, m).reshape(*batch, n_chunks, chunk, m)
    vc = v.expand(*batch, padded, dv).reshape(*batch, n_chunks, chunk, dv)

    state = _exclusive_cumsum(fk.transpose(-1, -2) @ vc, dim=-3)  # (..., n_chunks, m, d_v): keys before chunk
    state_z = _exclusive_cumsum(fk.sum(-2), dim=-2)  # (..., n_chunks, m)
    tril = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    a = (fq @ fk.transpose(-1, -2)).masked_fill(~tril, 0.0)  # intra-chunk weights, causal
    num = fq @ state + a @ vc
    den = (fq @ state_z.unsqueeze(-1)).squeeze(-1) + a.sum(-1)
    out = _finish(num, den, normalize, return_lse)
    if return_lse:
        out, lse = out
        return out.reshape(*batch, padded, dv)[..., :nq, :], lse.reshape(*batch, padded)[..., :nq]
    return out.reshape(*batch, padded, dv)[..., :nq, :]

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

from dataclasses import dataclass
from typing import Any

import torch

from rkbs.kernels import Kernel, resolve_kernel

from ._masks import MaskSpec

__all__ = ["linear_attention", "linear_attention_step", "LinearAttentionState", "DEFAULT_LINEAR_CHUNK"]

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
    num, den = _causal_sums(phi_q, phi_k[..., :used, :], v[..., :used, :], chunk)
    return _finish(num, den, normalize, return_lse)


def _causal_sums(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, chunk: int):
    """Numerator (..., Nq, d_v) and row sum (..., Nq) of causal linear attention (key j seen by query i >= j)."""
    nq = phi_q.shape[-2]
    n_chunks = -(-nq // chunk)
    padded = n_chunks * chunk
    phi_q = _pad_to(phi_q, padded)
    phi_k = _pad_to(phi_k, padded)  # zero features: padded keys add nothing
    v = _pad_to(v, padded)
    batch = torch.broadcast_shapes(phi_q.shape[:-2], phi_k.shape[:-2], v.shape[:-2])
    m, dv = phi_q.shape[-1], v.shape[-1]
    fq = phi_q.expand(*batch, padded, m).reshape(*batch, n_chunks, chunk, m)
    fk = phi_k.expand(*batch, padded, m).reshape(*batch, n_chunks, chunk, m)
    vc = v.expand(*batch, padded, dv).reshape(*batch, n_chunks, chunk, dv)

    state = _exclusive_cumsum(fk.transpose(-1, -2) @ vc, dim=-3)  # (..., n_chunks, m, d_v): keys before chunk
    state_z = _exclusive_cumsum(fk.sum(-2), dim=-2)  # (..., n_chunks, m)
    tril = torch.ones(chunk, chunk, dtype=torch.bool, device=phi_q.device).tril()
    a = (fq @ fk.transpose(-1, -2)).masked_fill(~tril, 0.0)  # intra-chunk weights, causal
    num = fq @ state + a @ vc
    den = (fq @ state_z.unsqueeze(-1)).squeeze(-1) + a.sum(-1)
    return num.reshape(*batch, padded, dv)[..., :nq, :], den.reshape(*batch, padded)[..., :nq]


@dataclass(frozen=True)
class LinearAttentionState:
    """The recurrent state of causal linear attention after ``length`` tokens: what a KV cache is for it.

    Attributes
    ----------
    kv : torch.Tensor of shape (..., m, Ev)
        ``sum_j phi_y(k_j) v_j^T`` over the tokens seen so far (``m`` the kernel's feature dimension).
    k_sum : torch.Tensor of shape (..., m)
        ``sum_j phi_y(k_j)``, the normalizer's state.
    length : int
        Tokens seen so far.

    Its size does not grow with the sequence: decoding costs O(m Ev) per token and head, whatever the length.
    """

    kv: torch.Tensor
    k_sum: torch.Tensor
    length: int


def linear_attention_step(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    state: LinearAttentionState | None = None,
    *,
    kernel: str | Kernel = "elu",
    normalize: bool = True,
    chunk: int | None = None,
    **kernel_params: Any,
) -> tuple[torch.Tensor, LinearAttentionState]:
    """Causal linear attention over new tokens, continuing from a recurrent ``state`` (decoding, chunked prefill).

    The ``L`` new tokens are appended after the ``state.length`` tokens the state summarizes: new query ``i``
    attends every earlier token and the new tokens ``j <= i``. Feeding a sequence in pieces (a prompt, then one
    token at a time) gives the rows of ``kernel_attention(..., is_causal=True, backend="linear")`` on the whole
    sequence, with memory that does not grow with its length.

    Parameters
    ----------
    query, key : torch.Tensor of shape (..., L, E)
        The new tokens' queries and keys (the same ``L``).
    value : torch.Tensor of shape (..., L, Ev)
    state : LinearAttentionState, optional
        The state returned by the previous call (None: the sequence starts here).
    kernel : str or rkbs.kernels.Kernel, default="elu"
        A kernel with a finite feature map (``kernel.has_features``). Random-feature kernels must be the same
        draw on every call: pass a kernel object (or ``random_state``).
    normalize : bool, default=True
        Divide by the row sum (non-negative kernels only).
    chunk : int, optional
        Positions per chunk of the causal form inside the call (default ``DEFAULT_LINEAR_CHUNK``).
    **kernel_params
        Kernel parameters when ``kernel`` is a name.

    Returns
    -------
    out : torch.Tensor of shape (..., L, Ev)
    state : LinearAttentionState
        The state after the new tokens, to pass to the next call. Differentiable through its tensors.

    Examples
    --------
    >>> import torch
    >>> from attention_kernels import kernel_attention, linear_attention_step
    >>> q, k, v = torch.randn(3, 1, 2, 10, 8).unbind(0)
    >>> first, state = linear_attention_step(q[..., :7, :], k[..., :7, :], v[..., :7, :])
    >>> last, state = linear_attention_step(q[..., 7:, :], k[..., 7:, :], v[..., 7:, :], state)
    >>> full = kernel_attention(q, k, v, kernel="elu", is_causal=True, backend="linear")
    >>> torch.allclose(torch.cat([first, last], -2), full, atol=1e-5), state.length
    (True, 10)
    """
    k_obj = resolve_kernel(kernel, **kernel_params)
    if not k_obj.has_features:
        raise ValueError(
            f"linear_attention_step needs a kernel with a finite feature map, and kernel {k_obj.name!r} has none "
            "(elu, relu, taylor_edp, positive_random_features, polynomial, linear, ...)"
        )
    k_obj.check_normalize(normalize)
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.ndim < 2:
            raise ValueError(f"{name} must be a floating tensor of shape (..., L, dim)")
    if query.shape[-2] != key.shape[-2] or key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"query, key and value must hold the same new tokens, got lengths {query.shape[-2]}, {key.shape[-2]}, "
            f"{value.shape[-2]}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query head dim {query.shape[-1]} does not match key head dim {key.shape[-1]}")
    phi_q = k_obj.feature_map_x(query.contiguous())
    phi_k = k_obj.feature_map_y(key.contiguous())
    if state is not None:
        if not isinstance(state, LinearAttentionState):
            raise TypeError(f"state must be a LinearAttentionState or None, got {type(state).__name__}")
        if state.kv.shape[-2:] != (phi_k.shape[-1], value.shape[-1]):
            raise ValueError(
                f"state holds (features, value dim) = {tuple(state.kv.shape[-2:])}, but this call has "
                f"({phi_k.shape[-1]}, {value.shape[-1]}): another kernel, feature draw or value size"
            )
    num, den = _causal_sums(phi_q, phi_k, value, DEFAULT_LINEAR_CHUNK if chunk is None else chunk)
    kv = phi_k.transpose(-1, -2) @ value
    k_sum = phi_k.sum(-2)
    if state is not None:
        num = num + phi_q @ state.kv
        den = den + (phi_q @ state.k_sum.unsqueeze(-1)).squeeze(-1)
        kv, k_sum = state.kv + kv, state.k_sum + k_sum
    new_state = LinearAttentionState(kv, k_sum, (0 if state is None else state.length) + query.shape[-2])
    return _finish(num, den, normalize), new_state

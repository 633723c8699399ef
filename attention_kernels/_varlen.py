"""Packed variable-length batches (the layout of torch's ``varlen_attn`` and FlashAttention's varlen functions).

``query`` is ``(total_q, heads, E)``, ``key`` / ``value`` ``(total_k, kv_heads, E / Ev)``; sequence ``b`` is rows
``cu_seqlens_q[b]:cu_seqlens_q[b + 1]`` of the query and ``cu_seqlens_k[b]:cu_seqlens_k[b + 1]`` of the keys.
Each sequence runs on its own as a ``(1, heads, L_b, E)`` view, so no padding is ever computed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from triton_ops import check_cu_seqlens as check_offsets

__all__ = ["check_cu_seqlens", "packed_attention"]


def check_cu_seqlens(query, key, value, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    """Validate the packed layout (the offsets by :func:`triton_ops.check_cu_seqlens`); returns the offset lists."""
    if cu_seqlens_q is None or cu_seqlens_k is None:
        raise ValueError("cu_seqlens_q and cu_seqlens_k must be given together (packed variable-length batch)")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.ndim != 3:
            raise ValueError(
                f"with cu_seqlens_q/cu_seqlens_k, {name} must be a packed (total, heads, dim) tensor, got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
            )
    _, _, off_q, off_k = check_offsets(cu_seqlens_q, cu_seqlens_k, query.shape[0], key.shape[0], query.device,
                                       max_seqlen_q, max_seqlen_k)
    return off_q, off_k


def packed_attention(
    run: Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    off_q: list[int],
    off_k: list[int],
    return_lse: bool,
):
    """``run(q, k, v)`` on every sequence as (1, heads, L_b, E) views; outputs packed back.

    Returns ``(total_q, heads, Ev)`` and, with ``return_lse``, the log-normalizer ``(heads, total_q)`` (the
    layout of FlashAttention's varlen ``softmax_lse``).
    """
    outs, lses = [], []
    for (q0, q1), (k0, k1) in zip(zip(off_q, off_q[1:]), zip(off_k, off_k[1:])):
        q, k, v = (t[a:b].transpose(0, 1).unsqueeze(0) for t, a, b in
                   ((query, q0, q1), (key, k0, k1), (value, k0, k1)))
        res = run(q, k, v)
        out, lse = res if return_lse else (res, None)
        outs.append(out[0].transpose(0, 1))
        if return_lse:
            lses.append(lse[0])
    out = torch.cat(outs, 0)
    return (out, torch.cat(lses, -1)) if return_lse else out

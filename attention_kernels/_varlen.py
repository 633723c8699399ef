"""Packed variable-length batches (the layout of torch's ``varlen_attn`` and FlashAttention's varlen functions).

``query`` is ``(total_q, heads, E)``, ``key`` / ``value`` ``(total_k, kv_heads, E / Ev)``; sequence ``b`` is rows
``cu_seqlens_q[b]:cu_seqlens_q[b + 1]`` of the query and ``cu_seqlens_k[b]:cu_seqlens_k[b + 1]`` of the keys.
Each sequence runs on its own as a ``(1, heads, L_b, E)`` view, so no padding is ever computed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["check_cu_seqlens", "packed_attention"]


def _check_one(cu, name: str, total: int, device) -> list[int]:
    if not isinstance(cu, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(cu).__name__}")
    if cu.dtype not in (torch.int32, torch.int64) or cu.ndim != 1 or cu.numel() < 2:
        raise ValueError(f"{name} must be a 1-D int32/int64 tensor of batch + 1 offsets, got "
                         f"{cu.dtype} of shape {tuple(cu.shape)}")
    if cu.device != device:
        raise ValueError(f"{name} is on {cu.device} but query is on {device}")
    offsets = cu.tolist()
    if offsets[0] != 0 or offsets[-1] != total or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise ValueError(
            f"{name} must start at 0, never decrease and end at the packed length {total}; got {offsets}"
        )
    return offsets


def check_cu_seqlens(query, key, value, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    """Validate the packed layout; returns the offset lists."""
    if cu_seqlens_q is None or cu_seqlens_k is None:
        raise ValueError("cu_seqlens_q and cu_seqlens_k must be given together (packed variable-length batch)")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.ndim != 3:
            raise ValueError(
                f"with cu_seqlens_q/cu_seqlens_k, {name} must be a packed (total, heads, dim) tensor, got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
            )
    off_q = _check_one(cu_seqlens_q, "cu_seqlens_q", query.shape[0], query.device)
    off_k = _check_one(cu_seqlens_k, "cu_seqlens_k", key.shape[0], query.device)
    if len(off_q) != len(off_k):
        raise ValueError(
            f"cu_seqlens_q has {len(off_q) - 1} sequences but cu_seqlens_k has {len(off_k) - 1}"
        )
    for name, given, offsets in (("max_seqlen_q", max_seqlen_q, off_q), ("max_seqlen_k", max_seqlen_k, off_k)):
        longest = max(b - a for a, b in zip(offsets, offsets[1:]))
        if given is not None and (isinstance(given, bool) or not isinstance(given, int) or given < longest):
            raise ValueError(f"{name} must be an int >= the longest sequence ({longest}), got {given!r}")
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

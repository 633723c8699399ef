"""The single place where the seed models call attention, so every model differs only in its kernel.

Uses :func:`attention_kernels.functional.kernel_attention` when it is importable; otherwise a plain torch
reference built on the ``rkbs.kernels`` catalogue with the same meaning (normalized: row-normalized kernel
weights, log-sum-exp for kernels with a log form; un-normalized: the raw kernel sum).
"""

from __future__ import annotations

import torch
from rkbs.kernels import Kernel, get_kernel

try:  # the fused/chunked implementation, owned by the functional module
    from attention_kernels.functional import kernel_attention as _kernel_attention
except ImportError:  # pragma: no cover - only while the functional module is absent
    _kernel_attention = None


def resolve_kernel(kernel: str | Kernel, **params) -> Kernel:
    """Catalogue look-up shared by the models (names, aliases or kernel objects)."""
    return get_kernel(kernel, **params)


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    kernel: Kernel,
    normalize: bool = True,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """Kernel attention on (batch, heads, seq, dim) tensors; ``attn_mask`` is boolean, True = may attend."""
    if _kernel_attention is not None:
        return _kernel_attention(
            query, key, value, attn_mask=attn_mask, is_causal=is_causal, kernel=kernel, normalize=normalize
        )
    return reference_attention(
        query, key, value, kernel=kernel, normalize=normalize, attn_mask=attn_mask, is_causal=is_causal
    )


def reference_attention(query, key, value, *, kernel, normalize=True, attn_mask=None, is_causal=False):
    """Dense reference: materializes the (seq_q, seq_k) weights."""
    allowed = _allowed(query.shape[-2], key.shape[-2], attn_mask, is_causal, query.device)
    if normalize and kernel.has_log_kernel:
        logits = kernel.log_evaluate(query, key)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        return torch.softmax(logits, dim=-1) @ value
    weights = kernel.evaluate(query, key)
    if allowed is not None:
        weights = weights.masked_fill(~allowed, 0.0)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ value


def _allowed(n_q, n_k, attn_mask, is_causal, device):
    allowed = None
    if is_causal:
        allowed = torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril()
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            raise TypeError(f"attn_mask must be boolean in the seed models, got {attn_mask.dtype}")
        allowed = attn_mask if allowed is None else allowed & attn_mask
    return allowed

"""The single place where the seed models call attention, so that models differ only in their kernel."""

from __future__ import annotations

import torch
from rkbs.kernels import Kernel, resolve_kernel  # noqa: F401  (the models resolve kernels through here)

from attention_kernels.functional import kernel_attention


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
    """Kernel attention on (batch, heads, seq, dim) tensors; a boolean ``attn_mask`` is True where allowed."""
    return kernel_attention(query, key, value, attn_mask=attn_mask, is_causal=is_causal, kernel=kernel, normalize=normalize)

"""Attention-mask validation and the per-chunk views the back ends consume.

One convention for every back end (shared with ``triton_ops``): a boolean mask is True where a query may attend
a key; an additive float mask ``b`` multiplies the kernel weight by ``exp(b)`` for every kernel, so ``-inf``
removes a key and, for EDP, it is exactly SDPA's additive mask. ``is_causal`` is top-left aligned like SDPA's
(query ``i`` attends keys ``j <= i``) and may be combined with ``attn_mask``. ``window = (left, right)`` is
aligned bottom-right like FlashAttention's ``window_size``: query ``i`` sits at key position ``i + S - L`` and
attends keys ``j`` with ``i + S - L - left <= j <= i + S - L + right`` (``None`` = unbounded on that side), so
``window=(None, 0)`` is the KV-cache causal mask of FlashAttention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["MaskSpec", "canonical_mask", "causal_keep"]


@dataclass
class MaskSpec:
    """A validated mask: at most one of ``keep`` (bool) and ``bias`` (float) plus the causal flag.

    ``keep`` / ``bias`` broadcast against ``(*batch, n_queries, n_keys)`` and have their key dimension expanded
    to ``n_keys`` (a view), so back ends can slice key chunks with ``[..., start:stop]``.
    """

    keep: torch.Tensor | None
    bias: torch.Tensor | None
    causal: bool
    window: tuple[int | None, int | None] | None = None
    n_queries: int = 0
    n_keys: int = 0

    @property
    def is_empty(self) -> bool:
        return self.keep is None and self.bias is None and not self.causal and self.window is None

    def hi(self, i: int) -> float:
        """Last key position query ``i`` may see under causality and the window (inf when unbounded)."""
        hi = float(i) if self.causal else math.inf
        if self.window is not None and self.window[1] is not None:
            hi = min(hi, i + self.n_keys - self.n_queries + self.window[1])
        return hi

    def lo(self, i: int) -> float:
        """First key position query ``i`` may see under the window (-inf when unbounded)."""
        if self.window is not None and self.window[0] is not None:
            return float(i + self.n_keys - self.n_queries - self.window[0])
        return -math.inf

    def band_keep(self, r0: int, r1: int, c0: int, c1: int, device) -> torch.Tensor | None:
        """Boolean ``(r1 - r0, c1 - c0)`` of the causal/window band, or None when the tile lies inside it."""
        if self.hi(r0) >= c1 - 1 and self.lo(r1 - 1) <= c0:
            return None
        rows = torch.arange(r0, r1, device=device).unsqueeze(-1)
        cols = torch.arange(c0, c1, device=device).unsqueeze(0)
        keep = torch.ones(r1 - r0, c1 - c0, dtype=torch.bool, device=device)
        if self.causal:
            keep &= cols <= rows
        if self.window is not None:
            shift = self.n_keys - self.n_queries
            left, right = self.window
            if right is not None:
                keep &= cols <= rows + shift + right
            if left is not None:
                keep &= cols >= rows + shift - left
        return keep

    def keys_only(self) -> bool:
        """Whether the explicit mask does not depend on the query (a key-padding mask: query dim 1)."""
        tensor = self.keep if self.keep is not None else self.bias
        return tensor is None or tensor.ndim < 2 or tensor.shape[-2] == 1

    def chunk(self, start: int, stop: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(keep, bias)`` restricted to keys ``start:stop``; causality folded into ``keep`` / ``bias``."""
        keep = None if self.keep is None else self.keep[..., start:stop]
        bias = None if self.bias is None else self.bias[..., start:stop]
        return keep, bias


def _autocast_active(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # older torch: no device argument
        return torch.is_autocast_enabled()


def canonical_mask(
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    query: torch.Tensor,
    batch_shape: torch.Size,
    n_queries: int,
    n_keys: int,
) -> MaskSpec:
    """Validate ``attn_mask`` against the attention shape and return a :class:`MaskSpec`.

    Raises
    ------
    TypeError
        ``attn_mask`` is not a tensor, has an integer/complex dtype, or is a float mask whose dtype differs
        from the query's (outside autocast, as in SDPA).
    ValueError
        ``attn_mask`` does not broadcast to ``(*batch, n_queries, n_keys)``.
    """
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be a bool, got {type(is_causal).__name__}")
    if attn_mask is None:
        return MaskSpec(None, None, is_causal, None, n_queries, n_keys)
    if not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise TypeError(
            f"attn_mask must be boolean (True = attend) or floating (added to the log-weight), "
            f"got dtype {attn_mask.dtype}"
        )
    if attn_mask.is_floating_point() and attn_mask.dtype != query.dtype:
        if not _autocast_active(query.device.type):
            raise TypeError(
                f"attn_mask has dtype {attn_mask.dtype} but query has dtype {query.dtype}; a float mask must "
                "have the query's dtype (cast it, or pass a boolean mask)"
            )
    if attn_mask.device != query.device:
        raise ValueError(f"attn_mask is on {attn_mask.device} but query is on {query.device}")
    target = (*batch_shape, n_queries, n_keys)
    try:
        full = torch.broadcast_shapes(attn_mask.shape, target)
    except RuntimeError:
        full = None
    if full != torch.Size(target):
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the attention shape "
            f"(*batch, n_queries, n_keys) = {tuple(target)}"
        )
    mask = attn_mask
    if mask.ndim < 2:
        mask = mask.reshape(*(1,) * (2 - mask.ndim), *mask.shape)
    mask = mask.expand(*mask.shape[:-1], n_keys)  # a view: lets back ends slice key chunks
    if mask.dtype == torch.bool:
        return MaskSpec(mask, None, is_causal, None, n_queries, n_keys)
    return MaskSpec(None, mask, is_causal, None, n_queries, n_keys)


def causal_keep(n_queries: int, start: int, stop: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(n_queries, stop - start)``: query ``i`` may attend key ``j`` iff ``j <= i`` (top-left)."""
    rows = torch.arange(n_queries, device=device).unsqueeze(-1)
    cols = torch.arange(start, stop, device=device).unsqueeze(0)
    return cols <= rows

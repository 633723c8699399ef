"""The model features of the fused kernels (sliding window, ALiBi, sinks, soft cap, packed batches, split-KV),
validated once by the public entry point and read by the launches.

Conventions are FlashAttention's: ``window = (left, right)`` with -1 for an unbounded side, aligned
bottom-right (query ``i`` sits at key position ``i + Nk - Nq``); ALiBi distances use the same alignment;
packed batches give ``cu_seqlens_q`` / ``cu_seqlens_k`` offsets into ``(total, heads, dim)`` tensors.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

__all__ = ["Features", "NO_FEATURES", "check_cu_seqlens", "check_features"]


@dataclass(frozen=True)
class Features:
    """Resolved feature arguments (tensors already float32 / int32 and contiguous).

    ``window`` sides are ints, -1 when unbounded; ``alibi_slopes`` is (B, H) or (1, H); ``sinks`` (H,);
    ``cu_seqlens_q`` / ``cu_seqlens_k`` (batch + 1,) int32; ``splits`` the number of key slices of a split-KV
    forward (0: chosen by the launch).
    """

    window: tuple[int, int] | None = None
    alibi_slopes: torch.Tensor | None = None
    sinks: torch.Tensor | None = None
    softcap: float | None = None
    cu_seqlens_q: torch.Tensor | None = None
    cu_seqlens_k: torch.Tensor | None = None
    max_seqlen_q: int = 0
    max_seqlen_k: int = 0

    @property
    def varlen(self) -> bool:
        return self.cu_seqlens_q is not None


NO_FEATURES = Features()


def _real(name: str, t, shapes: tuple, device) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor or None, got {type(t).__name__}.")
    if not t.is_floating_point():
        raise TypeError(f"`{name}` must be a floating tensor, got {t.dtype}.")
    if tuple(t.shape) not in shapes:
        raise ValueError(f"`{name}` must have shape {' or '.join(map(str, shapes))}, got {tuple(t.shape)}.")
    if t.device != device:
        raise ValueError(f"`{name}` is on {t.device} but `query` is on {device}.")
    return t


def _window(window) -> tuple[int, int] | None:
    if window is None:
        return None
    if (not isinstance(window, (tuple, list)) or len(window) != 2
            or any(isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < -1 for w in window)):
        raise ValueError(
            f"`window` must be None or a pair (left, right) of ints >= -1 (-1 = unbounded), got {window!r}."
        )
    left, right = int(window[0]), int(window[1])
    return None if left == -1 and right == -1 else (left, right)


def _offsets(name: str, cu, total: int, device) -> tuple[torch.Tensor, list[int]]:
    if not isinstance(cu, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(cu).__name__}.")
    if cu.dtype not in (torch.int32, torch.int64) or cu.dim() != 1 or cu.numel() < 2:
        raise ValueError(f"`{name}` must be a 1-D int32/int64 tensor of batch + 1 offsets, got {cu.dtype} of "
                         f"shape {tuple(cu.shape)}.")
    if cu.device != device:
        raise ValueError(f"`{name}` is on {cu.device} but `query` is on {device}.")
    offsets = cu.tolist()
    if offsets[0] != 0 or offsets[-1] != total or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise ValueError(f"`{name}` must start at 0, never decrease and end at the packed length {total}; got "
                         f"{offsets}.")
    return cu.to(torch.int32).contiguous(), offsets


def check_cu_seqlens(cu_seqlens_q, cu_seqlens_k, total_q: int, total_k: int, device, max_seqlen_q=None,
                     max_seqlen_k=None) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """Validate the offsets of a packed variable-length batch (one rule for every back end).

    Parameters
    ----------
    cu_seqlens_q, cu_seqlens_k : torch.Tensor
        1-D int32 / int64 offsets ``(batch + 1,)`` into the packed query and key rows, from 0 to the packed length,
        never decreasing.
    total_q, total_k : int
        The packed lengths (rows of the ``(total, heads, dim)`` query and key).
    device : torch.device
        The query's device, where the offsets must live.
    max_seqlen_q, max_seqlen_k : int, optional
        Upper bounds on the sequence lengths; when given, at least the longest sequence.

    Returns
    -------
    cu_q, cu_k : torch.Tensor
        The offsets as contiguous int32 (what the fused kernels read).
    off_q, off_k : list of int
        The offsets on the host.

    Raises
    ------
    ValueError or TypeError
        Naming the argument that breaks the layout.

    Examples
    --------
    >>> import torch
    >>> from triton_ops import check_cu_seqlens
    >>> check_cu_seqlens(torch.tensor([0, 3, 5]), torch.tensor([0, 4, 9]), 5, 9, torch.device("cpu"))[2:]
    ([0, 3, 5], [0, 4, 9])
    """
    if (cu_seqlens_q is None) != (cu_seqlens_k is None):
        raise ValueError("`cu_seqlens_q` and `cu_seqlens_k` must be given together (a packed batch).")
    cu_q, off_q = _offsets("cu_seqlens_q", cu_seqlens_q, total_q, device)
    cu_k, off_k = _offsets("cu_seqlens_k", cu_seqlens_k, total_k, device)
    if len(off_q) != len(off_k):
        raise ValueError(f"`cu_seqlens_q` has {len(off_q) - 1} sequences but `cu_seqlens_k` has {len(off_k) - 1}.")
    for name, given, offsets in (("max_seqlen_q", max_seqlen_q, off_q), ("max_seqlen_k", max_seqlen_k, off_k)):
        n = max(b - a for a, b in zip(offsets, offsets[1:]))
        if given is not None and (isinstance(given, bool) or not isinstance(given, numbers.Integral) or given < n):
            raise ValueError(f"`{name}` must be an int >= the longest sequence ({n}), got {given!r}.")
    return cu_q, cu_k, off_q, off_k


def check_features(query, key, *, heads: int, batch: int, normalize: bool, window=None,
                   alibi_slopes=None, sinks=None, softcap=None, cu_seqlens_q=None, cu_seqlens_k=None,
                   max_seqlen_q=None, max_seqlen_k=None) -> Features:
    """Validate the feature arguments of :func:`triton_ops.kernel_attention` (errors name the argument)."""
    device = query.device
    win = _window(window)
    slopes = None
    if alibi_slopes is not None:
        shapes = ((heads,),) if cu_seqlens_q is not None else ((heads,), (batch, heads))
        slopes = _real("alibi_slopes", alibi_slopes, shapes, device).float().reshape(-1, heads).contiguous()
    sink = None
    if sinks is not None:
        sink = _real("sinks", sinks, ((heads,),), device).float().contiguous()
        if not normalize:
            raise ValueError("`sinks` join the row sum of the weights, so they need `normalize=True`.")
    cap = None
    if softcap is not None:
        if isinstance(softcap, bool) or not isinstance(softcap, numbers.Real) or not (
                math.isfinite(softcap) and softcap > 0):
            raise ValueError(f"`softcap` must be a finite positive number or None, got {softcap!r}.")
        cap = float(softcap)
    if cu_seqlens_q is None and cu_seqlens_k is None:
        if max_seqlen_q is not None or max_seqlen_k is not None:
            raise ValueError("`max_seqlen_q`/`max_seqlen_k` need `cu_seqlens_q` and `cu_seqlens_k` (a packed batch).")
        return Features(win, slopes, sink, cap)
    cu_q, cu_k, off_q, off_k = check_cu_seqlens(cu_seqlens_q, cu_seqlens_k, query.shape[0], key.shape[0], device,
                                                max_seqlen_q, max_seqlen_k)
    longest = [max(b - a for a, b in zip(offsets, offsets[1:])) for offsets in (off_q, off_k)]
    return Features(win, slopes, sink, cap, cu_q, cu_k, longest[0], longest[1])

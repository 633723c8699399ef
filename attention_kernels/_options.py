"""Validation of ``kernel_attention``'s model-feature arguments: window, ALiBi slopes, sinks, softcap, lse."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Extras", "check_extras"]


@dataclass(frozen=True)
class Extras:
    """The validated feature arguments; ``window`` sides are None when unbounded."""

    window: tuple[int | None, int | None] | None = None
    alibi_slopes: torch.Tensor | None = None
    sinks: torch.Tensor | None = None
    softcap: float | None = None
    return_lse: bool = False

    @property
    def any_feature(self) -> bool:
        """Whether anything beyond SDPA's arguments is asked for (return_lse included)."""
        return (
            self.window is not None
            or self.alibi_slopes is not None
            or self.sinks is not None
            or self.softcap is not None
            or self.return_lse
        )

    def first_feature(self) -> str:
        for name in ("window", "alibi_slopes", "sinks", "softcap", "return_lse"):
            value = getattr(self, name)
            if value is not None and value is not False:
                return name
        return ""


def _check_window(window) -> tuple[int | None, int | None] | None:
    if window is None:
        return None
    if (
        not isinstance(window, (tuple, list))
        or len(window) != 2
        or any(isinstance(w, bool) or not isinstance(w, int) or w < -1 for w in window)
    ):
        raise ValueError(
            f"window must be None or a pair (left, right) of ints >= -1 (-1 = unbounded), got {window!r}"
        )
    left, right = (None if w == -1 else int(w) for w in window)
    return None if left is None and right is None else (left, right)


def _check_float_tensor(t, name: str, query: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    if t.device != query.device:
        raise ValueError(f"{name} is on {t.device} but query is on {query.device}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return t


def check_extras(
    query: torch.Tensor, window, alibi_slopes, sinks, softcap, return_lse, normalize: bool, packed: bool = False
) -> Extras:
    """Validate the feature arguments against ``query`` ((..., heads, L, E), or (total, heads, E) when packed)."""
    window = _check_window(window)
    heads = query.shape[-2] if packed else (query.shape[-3] if query.ndim >= 3 else None)
    if alibi_slopes is not None:
        _check_float_tensor(alibi_slopes, "alibi_slopes", query)
        batch = None if packed or query.ndim != 4 else query.shape[0]
        ok = alibi_slopes.shape == (heads,) or (batch is not None and alibi_slopes.shape == (batch, heads))
        if heads is None or (not packed and query.ndim != 4) or not ok:
            raise ValueError(
                f"alibi_slopes must have shape (heads,) or (batch, heads) for a (batch, heads, L, E) query "
                f"(packed: (heads,)); got {tuple(alibi_slopes.shape)} for query {tuple(query.shape)}"
            )
        alibi_slopes = alibi_slopes.reshape(*alibi_slopes.shape, 1, 1)
        if alibi_slopes.ndim == 3:
            alibi_slopes = alibi_slopes.unsqueeze(0)
    if sinks is not None:
        _check_float_tensor(sinks, "sinks", query)
        if heads is None or sinks.shape != (heads,):
            raise ValueError(
                f"sinks must have shape (heads,) = ({heads},) for query {tuple(query.shape)}, "
                f"got {tuple(sinks.shape)}"
            )
        if not normalize:
            raise ValueError("sinks add to the normalizer, so they need normalize=True")
    if softcap is not None:
        if isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or not (
            math.isfinite(softcap) and softcap > 0
        ):
            raise ValueError(f"softcap must be a finite positive number or None, got {softcap!r}")
        softcap = float(softcap)
    if not isinstance(return_lse, bool):
        raise TypeError(f"return_lse must be a bool, got {type(return_lse).__name__}")
    if return_lse and not normalize:
        raise ValueError(
            "return_lse=True returns the log of the normalizer, so it needs normalize=True (un-normalized "
            "partial results merge by summation)"
        )
    return Extras(window, alibi_slopes, sinks, softcap, return_lse)


def window_is_vacuous(window, n_queries: int, n_keys: int) -> bool:
    """Whether the bottom-right aligned window lets every query see every key (e.g. decoding with (-1, 0))."""
    if window is None:
        return True
    left, right = window
    shift = n_keys - n_queries
    return (left is None or shift + (n_queries - 1) - left <= 0) and (right is None or shift + right >= n_keys - 1)

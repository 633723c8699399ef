"""Argument checks shared by the catalogue: array conversion and parameter validation.

Every kernel computes in torch. Numpy inputs are wrapped without copying and the result is handed back as
numpy, so one implementation serves both array types.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_tensor_pair",
    "as_tensor",
    "check_positive",
    "check_real",
    "check_int",
    "default_scale",
    "default_gamma",
    "gamma_for_scale",
]


def _to_tensor(X: Any, name: str) -> tuple[torch.Tensor, bool]:
    """Convert ``X`` to a floating tensor; return it and whether it came from numpy."""
    if isinstance(X, torch.Tensor):
        if X.is_complex() or X.dtype == torch.bool:
            raise TypeError(f"{name} must be a real numeric tensor, got dtype {X.dtype}")
        if not X.is_floating_point():
            X = X.to(torch.get_default_dtype())
        return X, False
    try:
        arr = np.asarray(X)
    except ValueError as exc:  # ragged nested sequences
        raise TypeError(f"{name} must be an array-like of numbers: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got an array of dtype {arr.dtype}")
    if arr.dtype.kind in "biu" or arr.dtype == np.float16:
        arr = arr.astype(np.float64 if arr.dtype.kind != "f" else np.float32)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr).copy()
    return torch.from_numpy(arr), True


def _check_shape(X: torch.Tensor, name: str) -> None:
    if X.ndim < 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features) or batched (..., n_samples, n_features); "
            f"got shape {tuple(X.shape)}"
        )
    if X.shape[-1] == 0 or X.shape[-2] == 0 or X.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(X.shape)}")


def _check_finite(X: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains NaN or infinity")


def as_tensor(X: Any, name: str = "X") -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """Validate one input; return a tensor and a function that converts a result back to X's array type."""
    T, from_numpy = _to_tensor(X, name)
    _check_shape(T, name)
    _check_finite(T, name)
    return T, (_to_numpy if from_numpy else _identity)


def as_tensor_pair(
    X: Any, Y: Any | None
) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], Any]]:
    """Validate a pair of inputs (``Y=None`` means ``Y = X``) with a common dtype and device."""
    Xt, back = as_tensor(X, "X")
    if Y is None:
        return Xt, Xt, back
    if isinstance(X, torch.Tensor) != isinstance(Y, torch.Tensor):
        raise TypeError(
            "X and Y must be of the same array type (both numpy arrays or both torch tensors); got "
            f"{type(X).__name__} and {type(Y).__name__}"
        )
    Yt, _ = as_tensor(Y, "Y")
    if Xt.device != Yt.device:
        raise ValueError(f"X and Y must be on the same device; got {Xt.device} and {Yt.device}")
    if Xt.dtype != Yt.dtype:
        dtype = torch.promote_types(Xt.dtype, Yt.dtype)
        Xt, Yt = Xt.to(dtype), Yt.to(dtype)
    return Xt, Yt, back


def _to_numpy(T: torch.Tensor) -> np.ndarray:
    return T.detach().cpu().numpy()


def _identity(T: torch.Tensor) -> torch.Tensor:
    return T


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_real(name: str, value: Any) -> float:
    """A finite real number."""
    return _check_number(name, value)


def check_positive(name: str, value: Any, allow_none: bool = True) -> float | None:
    """A finite number > 0 (or None when allowed: resolved from the input dimension at call time)."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a positive number, got None")
    value = _check_number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def check_int(name: str, value: Any, minimum: int) -> int:
    """An integer >= ``minimum`` (numpy integers accepted, bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def default_scale(scale: float | None, d: int) -> float:
    """The catalogue's one default scale: ``1 / sqrt(d)`` (SDPA's) when ``scale`` is None.

    Examples
    --------
    >>> default_scale(None, 16), default_scale(0.5, 16)
    (0.25, 0.5)
    """
    return 1.0 / math.sqrt(d) if scale is None else float(scale)


def default_gamma(gamma: float | None, d: int) -> float:
    """The catalogue's one default bandwidth of rbf-type kernels: ``1 / (2 sqrt(d))`` when ``gamma`` is None.

    With it ``-gamma |q - k|^2`` shares its ``q.k`` term with EDP's ``q.k / sqrt(d)``, so normalized RBF attention
    and softmax attention differ only by the key norms.

    Examples
    --------
    >>> default_gamma(None, 16)
    0.125
    """
    return gamma_for_scale(default_scale(None, d)) if gamma is None else float(gamma)


def gamma_for_scale(scale: float) -> float:
    """The rbf-type bandwidth whose ``q.k`` term equals a dot-product kernel's with this ``scale``.

    ``-gamma |q - k|^2 = 2 gamma q.k - gamma (|q|^2 + |k|^2)``, so ``gamma = scale / 2``.

    Examples
    --------
    >>> gamma_for_scale(0.25)
    0.125
    """
    return float(scale) / 2.0

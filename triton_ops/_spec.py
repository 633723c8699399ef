"""What the fused kernels are told about a kernel: an epilogue id and its resolved constants.

``triton_ops`` owns no catalogue. The kernel catalogue (``rkbs.kernels``) owns names, formulas, defaults,
validation and metadata; a catalogue kernel describes its fused form with ``kernel.fused_spec(d)``, a
:class:`KernelSpec` whose fields are read by the Triton kernels as compile-time switches (``kernel_id``,
``degree``) and run-time constants (``c0``, ``c1``).

The one rule this module does own is the positivity rule of row normalization (:func:`check_normalize`),
because it is the lowest layer that needs it: the catalogue, the estimators and the attention layers call it
too, so every back end refuses the same inputs with the same message.
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass

__all__ = ["Epilogue", "KernelSpec", "check_normalize"]


class Epilogue(enum.IntEnum):
    """Epilogue ids shared by the forward and backward Triton kernels (a compile-time switch).

    Each id is one branch of ``triton_ops/_epilogue.py``: ``c0`` multiplies the score (``gamma`` for the
    distance kernels), ``c1`` is the additive constant of the affine kernels, ``degree`` the polynomial power.
    """

    EDP = 0  # exp(c0 s)
    RBF = 1  # exp(-c0 |q - k|^2)
    LAPLACIAN = 2  # exp(-c0 |q - k|)
    POLYNOMIAL = 3  # (c0 s + c1)^degree
    LINEAR = 4  # c0 s
    COSINE = 5  # s / (|q| |k|)
    SIGMOID = 6  # sigmoid(c0 s + c1)
    TANH = 7  # tanh(c0 s + c1)
    EXP_INTERSECTION = 8  # exp(c0 sum_l min(q_l, k_l))


EDP, RBF, LAPLACIAN, POLYNOMIAL, LINEAR, COSINE, SIGMOID, TANH, EXP_INTERSECTION = (int(e) for e in Epilogue)

# Epilogues whose weight is exp(log_weight): normalized mode runs an online maximum (log-sum-exp) for these.
EXPONENTIAL = frozenset({EDP, RBF, LAPLACIAN, EXP_INTERSECTION})


def _finite(field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"KernelSpec.{field} must be a real number, got {type(value).__name__}.")
    if not math.isfinite(value):
        raise ValueError(f"KernelSpec.{field} must be finite, got {value}.")
    return float(value)


@dataclass(frozen=True)
class KernelSpec:
    """A resolved kernel: exactly what the Triton kernels need to evaluate it.

    Build it with ``rkbs.kernels.get_kernel(name, **params).fused_spec(head_dim)``; every field is explicit
    (the catalogue has already resolved its defaults for the head dimension).

    Attributes
    ----------
    kernel_id : Epilogue
        Epilogue branch (compile-time constant).
    c0, c1 : float
        ``c0`` multiplies the score (the scale of the dot kernels, ``gamma`` of rbf and laplacian, 1 for
        cosine); ``c1`` is the additive constant of polynomial, sigmoid and tanh (0 for the others).
    degree : int
        Polynomial degree (compile-time constant; 0 for the other epilogues).
    nonnegative : bool
        Whether every weight is >= 0, i.e. row normalization is allowed (the catalogue's ``positive_valued``).

    Examples
    --------
    >>> from triton_ops import Epilogue, KernelSpec
    >>> KernelSpec(Epilogue.RBF, c0=0.125, c1=0.0, degree=0, nonnegative=True).exponential
    True
    """

    kernel_id: Epilogue
    c0: float
    c1: float
    degree: int
    nonnegative: bool

    def __post_init__(self):
        try:
            kid = Epilogue(self.kernel_id)
        except ValueError:
            raise ValueError(
                f"KernelSpec.kernel_id must be one of {[e.name for e in Epilogue]}, got {self.kernel_id!r}."
            ) from None
        if isinstance(self.degree, bool) or not isinstance(self.degree, numbers.Integral) or self.degree < 0:
            raise TypeError(f"KernelSpec.degree must be a non-negative int, got {self.degree!r}.")
        if not isinstance(self.nonnegative, bool):
            raise TypeError(f"KernelSpec.nonnegative must be a bool, got {type(self.nonnegative).__name__}.")
        object.__setattr__(self, "kernel_id", kid)
        object.__setattr__(self, "c0", _finite("c0", self.c0))
        object.__setattr__(self, "c1", _finite("c1", self.c1))
        object.__setattr__(self, "degree", int(self.degree))

    @property
    def exponential(self) -> bool:
        """Whether the weight is ``exp(log_weight)`` (normalized mode then uses a running maximum)."""
        return self.kernel_id in EXPONENTIAL

    def describe(self) -> str:
        """A short label for messages, e.g. ``epilogue POLYNOMIAL (degree 3)``."""
        degree = f" (degree {self.degree})" if self.kernel_id == POLYNOMIAL else ""
        return f"epilogue {self.kernel_id.name}{degree}"


def check_normalize(normalize, nonnegative: bool, kernel: str) -> None:
    """The positivity rule: row normalization needs a non-negative kernel.

    Parameters
    ----------
    normalize : bool
        The caller's ``normalize`` argument (a ``TypeError`` if it is not a bool).
    nonnegative : bool
        Whether the kernel is non-negative (``Kernel.positive_valued`` or ``KernelSpec.nonnegative``).
    kernel : str
        How to name the kernel in the message.

    Examples
    --------
    >>> check_normalize(True, False, "'linear'")
    Traceback (most recent call last):
    ...
    ValueError: normalize=True needs a non-negative kernel, but 'linear' can be negative (row sums can vanish or change sign); use normalize=False or a non-negative kernel (edp, rbf, laplacian, sigmoid, exp_intersection, even-degree polynomial, elu, positive_random_features)
    """
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    if normalize and not nonnegative:
        raise ValueError(
            f"normalize=True needs a non-negative kernel, but {kernel} can be negative (row sums can vanish or "
            "change sign); use normalize=False or a non-negative kernel (edp, rbf, laplacian, sigmoid, "
            "exp_intersection, even-degree polynomial, elu, positive_random_features)"
        )

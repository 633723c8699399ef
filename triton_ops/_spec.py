"""Kernel names, defaults and argument validation for the fused primitive.

``triton_ops`` knows a kernel only by its catalogue name and a few resolved constants; this module turns the
keyword arguments of :func:`triton_ops.kernel_attention` into a :class:`KernelSpec` that the Triton kernels
read as compile-time switches (``kernel_id``, ``degree``) and run-time constants (``c0``, ``c1``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

# Epilogue ids shared by the forward and backward Triton kernels (compile-time switch).
EDP, RBF, LAPLACIAN, POLYNOMIAL, LINEAR, COSINE, SIGMOID, TANH, EXP_INTERSECTION = range(9)

KERNEL_IDS = {
    "edp": EDP,
    "rbf": RBF,
    "laplacian": LAPLACIAN,
    "polynomial": POLYNOMIAL,
    "linear": LINEAR,
    "cosine": COSINE,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "exp_intersection": EXP_INTERSECTION,
}
FUSED_KERNELS: tuple[str, ...] = tuple(KERNEL_IDS)

# Kernels whose weight is exp(log_weight): normalized mode runs an online maximum (log-sum-exp) for these.
EXPONENTIAL = frozenset({EDP, RBF, LAPLACIAN, EXP_INTERSECTION})

# Catalogue kernels that exist in ``rkbs.kernels`` but have no fused form here (feature-map kernels).
_FEATURE_MAP_KERNELS = frozenset(
    {"elu", "relu", "taylor_edp", "positive_random_features", "random_fourier_features"}
)

# Accepted keyword parameters per kernel (``scale`` is the separate keyword of kernel_attention).
_PARAMS = {
    "edp": (),
    "rbf": ("gamma",),
    "laplacian": ("gamma",),
    "polynomial": ("degree", "coef0"),
    "linear": (),
    "cosine": (),
    "sigmoid": ("coef0",),
    "tanh": ("coef0",),
    "exp_intersection": (),
}
_TAKES_SCALE = frozenset({"edp", "polynomial", "linear", "sigmoid", "tanh", "exp_intersection"})
_DEFAULT_COEF0 = {"polynomial": 1.0, "sigmoid": 0.0, "tanh": 0.0}


@dataclass(frozen=True)
class KernelSpec:
    """A resolved kernel: what the Triton kernels need to evaluate it.

    Attributes
    ----------
    name : str
        Catalogue name.
    kernel_id : int
        Epilogue id (compile-time constant).
    c0, c1 : float
        Numeric constants: ``scale`` (dot kernels) or ``gamma`` (rbf, laplacian) in ``c0``; ``coef0`` in ``c1``.
    degree : int
        Polynomial degree (compile-time constant; 0 for the other kernels).
    """

    name: str
    kernel_id: int
    c0: float
    c1: float
    degree: int

    @property
    def exponential(self) -> bool:
        """Whether the weight is ``exp(log_weight)`` (normalized mode then uses a running maximum)."""
        return self.kernel_id in EXPONENTIAL

    @property
    def nonnegative(self) -> bool:
        """Whether every weight is >= 0, i.e. row normalization is well defined."""
        if self.kernel_id in (LINEAR, COSINE, TANH):
            return False
        if self.kernel_id == POLYNOMIAL:
            return self.degree % 2 == 0
        return True


def _check_positive(name: str, value, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite positive number, got {value}.")
    return value


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    return value


def _check_degree(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"`degree` must be a non-negative integer, got {value!r}.")
    if value < 0:
        raise ValueError(f"`degree` must be a non-negative integer, got {value}.")
    return int(value)


def resolve_kernel(kernel: str, head_dim: int, scale: float | None, params: dict) -> KernelSpec:
    """Validate ``kernel``/``scale``/``params`` and resolve the defaults for inputs of dimension ``head_dim``.

    Raises
    ------
    ValueError
        Unknown kernel name, or a catalogue kernel without a fused form (the message names the fallback).
    TypeError
        A parameter the kernel does not take (``scale`` for rbf/laplacian/cosine included).
    """
    if not isinstance(kernel, str):
        raise TypeError(
            f"`kernel` must be a kernel name (one of {', '.join(FUSED_KERNELS)}), got {type(kernel).__name__}."
        )
    name = kernel.lower()
    if name not in KERNEL_IDS:
        if name in _FEATURE_MAP_KERNELS:
            raise ValueError(
                f"`kernel`={kernel!r} is a feature-map kernel with no fused Triton form; use "
                f'attention_kernels.kernel_attention(..., backend="linear") (linear time) or '
                f'attention_kernels.kernel_attention(..., backend="torch").'
            )
        raise ValueError(
            f"`kernel`={kernel!r} has no fused Triton form; fused kernels are {', '.join(FUSED_KERNELS)}. "
            f'Use attention_kernels.kernel_attention(..., backend="torch") for other kernels.'
        )
    allowed = _PARAMS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TypeError(
            f"kernel {name!r} got unexpected parameter(s) {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(allowed + (('scale',) if name in _TAKES_SCALE else ())) or 'no parameters'}."
        )
    if scale is not None and name not in _TAKES_SCALE:
        raise TypeError(f"kernel {name!r} takes no `scale` parameter" + (" (use `gamma`)." if "gamma" in allowed else "."))
    d = int(head_dim)
    default_scale = 1.0 / math.sqrt(d)
    kid = KERNEL_IDS[name]
    c1 = 0.0
    degree = 0
    if name in ("rbf", "laplacian"):
        gamma = _check_positive("gamma", params.get("gamma"))
        c0 = 1.0 / (2.0 * math.sqrt(d)) if gamma is None else gamma
    elif name == "cosine":
        c0 = 1.0
    else:
        s = _check_positive("scale", scale)
        c0 = default_scale if s is None else s
        if name in _DEFAULT_COEF0:
            c1 = _check_real("coef0", params.get("coef0", _DEFAULT_COEF0[name]))
        if name == "polynomial":
            degree = _check_degree(params.get("degree", 2))
    return KernelSpec(name=name, kernel_id=kid, c0=float(c0), c1=float(c1), degree=degree)

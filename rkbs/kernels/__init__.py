"""The kernel catalogue shared by the estimators, the attention layers and the fused Triton kernels.

>>> from rkbs.kernels import get_kernel
>>> k = get_kernel("polynomial", degree=3, scale=0.5, coef0=1.0)
>>> k.name, k.family, k.positive_definite
('polynomial', 'dot', True)
"""

from __future__ import annotations

from typing import Any

from sklearn.base import clone

from ._base import Kernel, softcap_error
from ._validation import check_positive, default_gamma, default_scale, gamma_for_scale
from .composition import AttentionKernel
from .coordinate import ExpIntersection
from .dot_product import EDP, RBF, Cosine, Laplacian, Linear, Polynomial, Sigmoid, Tanh
from .feature_maps import (
    EluFeatures,
    PositiveRandomFeatures,
    RandomFourierFeatures,
    ReluFeatures,
    TaylorEDP,
)

__all__ = [
    "Kernel",
    "AttentionKernel",
    "EDP",
    "RBF",
    "Laplacian",
    "Polynomial",
    "Linear",
    "Cosine",
    "Sigmoid",
    "Tanh",
    "ExpIntersection",
    "EluFeatures",
    "ReluFeatures",
    "TaylorEDP",
    "PositiveRandomFeatures",
    "RandomFourierFeatures",
    "get_kernel",
    "resolve_kernel",
    "default_scale",
    "default_gamma",
    "gamma_for_scale",
    "list_kernels",
    "softcap_error",
    "KERNELS",
    # lower-case constructors, as the kernels are named in the catalogue
    "edp",
    "rbf",
    "laplacian",
    "polynomial",
    "linear",
    "cosine",
    "sigmoid",
    "tanh",
    "exp_intersection",
    "elu",
    "relu",
    "taylor_edp",
    "positive_random_features",
    "random_fourier_features",
]

KERNELS: dict[str, type[Kernel]] = {
    cls.name: cls
    for cls in (
        EDP,
        RBF,
        Laplacian,
        Polynomial,
        Linear,
        Cosine,
        Sigmoid,
        Tanh,
        ExpIntersection,
        EluFeatures,
        ReluFeatures,
        TaylorEDP,
        PositiveRandomFeatures,
        RandomFourierFeatures,
    )
}

_ALIASES = {
    "softmax": "edp",
    "exp": "edp",
    "gaussian": "rbf",
    "poly": "polynomial",
    "elu+1": "elu",
    "taylor": "taylor_edp",
    "prf": "positive_random_features",
    "favor": "positive_random_features",
    "rff": "random_fourier_features",
}

edp, rbf, laplacian, polynomial, linear, cosine = EDP, RBF, Laplacian, Polynomial, Linear, Cosine
sigmoid, tanh, exp_intersection = Sigmoid, Tanh, ExpIntersection
elu, relu, taylor_edp = EluFeatures, ReluFeatures, TaylorEDP
positive_random_features, random_fourier_features = PositiveRandomFeatures, RandomFourierFeatures


def list_kernels(family: str | None = None) -> list[str]:
    """Names of the catalogue's kernels, optionally only one family ("dot", "coordinate", "feature_map")."""
    if family is not None and family not in {"dot", "coordinate", "feature_map"}:
        raise ValueError(f"family must be 'dot', 'coordinate' or 'feature_map', got {family!r}")
    return [name for name, cls in KERNELS.items() if family is None or cls.family == family]


def get_kernel(kernel: str | Kernel, **params: Any) -> Kernel:
    """Look a kernel up by name (with parameters), or pass a kernel object through.

    Parameters
    ----------
    kernel : str or Kernel
        A name from ``list_kernels()`` (or an alias such as "softmax", "gaussian", "rff"), or a kernel object.
    **params
        Constructor parameters; with a kernel object, a clone with these parameters set is returned.

    Returns
    -------
    Kernel

    Raises
    ------
    TypeError
        ``kernel`` is neither a string nor a Kernel, or a parameter the kernel does not take (the message lists
        the valid ones).
    ValueError
        An unknown name.

    Examples
    --------
    >>> get_kernel("gaussian", gamma=0.5)
    RBF(gamma=0.5)
    >>> get_kernel("rbf", gama=1)
    Traceback (most recent call last):
    ...
    TypeError: kernel 'rbf' got an unexpected parameter 'gama'; valid parameters: gamma
    """
    if isinstance(kernel, Kernel):
        return clone(kernel).set_params(**params) if params else kernel
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a name or a Kernel object, got {type(kernel).__name__}")
    key = kernel.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    cls = KERNELS[key]
    valid = cls._get_param_names()
    unknown = [p for p in params if p not in valid]
    if unknown:
        raise TypeError(
            f"kernel {key!r} got an unexpected parameter {unknown[0]!r}; valid parameters: "
            f"{', '.join(valid) or 'none'}"
        )
    return cls(**params)


def resolve_kernel(kernel: str | Kernel, scale: float | None = None, *, name: str = "kernel",
                   **params: Any) -> Kernel:
    """The library's one kernel resolution: a name or Kernel object, its parameters, and SDPA's ``scale``.

    Estimators, attention functions, modules and the seed models all resolve their ``kernel`` argument here.

    Parameters
    ----------
    kernel : str or Kernel
        As in :func:`get_kernel`.
    scale : float, optional
        Overrides the kernel's own ``scale`` parameter (edp, polynomial, linear, sigmoid, tanh,
        exp_intersection, taylor_edp, positive_random_features); kernels without one (rbf, laplacian, cosine,
        elu, relu, random_fourier_features) raise a TypeError rather than guess what a scale would mean.
    name : str, default="kernel"
        The caller's name for the argument, used in messages (e.g. "kernel_y").
    **params
        Kernel parameters (see :func:`get_kernel`).

    Returns
    -------
    Kernel
        ``kernel`` itself when it is an object and nothing is overridden, else a new kernel.

    Examples
    --------
    >>> resolve_kernel("edp", scale=0.5)
    EDP(scale=0.5)
    >>> resolve_kernel("rbf", scale=0.5)
    Traceback (most recent call last):
    ...
    TypeError: scale: kernel 'rbf' has no scale parameter; set its own parameters instead (e.g. gamma=... for rbf and laplacian)
    """
    if not isinstance(kernel, (str, Kernel)):
        raise TypeError(
            f"{name} must be a catalogue name (str) or a rkbs.kernels.Kernel object, got {type(kernel).__name__}"
        )
    k = get_kernel(kernel, **params)
    scale = check_positive("scale", scale)
    if scale is None:
        return k
    if "scale" not in k.get_params(deep=False):
        raise TypeError(
            f"scale: kernel {k.name!r} has no scale parameter; set its own parameters instead "
            "(e.g. gamma=... for rbf and laplacian)"
        )
    if k.get_params(deep=False)["scale"] == scale:
        return k
    return get_kernel(k, scale=scale)

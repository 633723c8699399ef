"""The kernel catalogue shared by the estimators, the attention layers and the fused Triton kernels.

>>> from rkbs.kernels import get_kernel
>>> k = get_kernel("polynomial", degree=3, scale=0.5, coef0=1.0)
>>> k.name, k.family, k.positive_definite
('polynomial', 'dot', True)
"""

from __future__ import annotations

from typing import Any

from sklearn.base import clone

from ._base import Kernel
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
    "list_kernels",
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
    try:
        return cls(**params)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"kernel {key!r} does not take {exc}".replace("__init__() got ", "")) from None
        raise

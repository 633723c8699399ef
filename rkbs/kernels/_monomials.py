"""Monomial features: the exact finite feature maps of polynomial-type dot-product kernels.

(q . k)^t = sum over multi-indices |alpha| = t of multinomial(t; alpha) q^alpha k^alpha, so the monomials of
degree t, each weighted by the square root of its multinomial coefficient, are a feature map of (q . k)^t.
Enumerating multisets (not ordered tuples) gives C(d + t - 1, t) features instead of d^t.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations_with_replacement

import numpy as np
import torch

__all__ = ["monomial_features", "n_monomials_up_to"]


@lru_cache(maxsize=64)
def _multisets(d: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Index array (M, t) of the multisets of size t over range(d), and their multinomial coefficients."""
    combos = np.array(list(combinations_with_replacement(range(d), t)), dtype=np.int64).reshape(-1, t)
    coef = np.empty(len(combos))
    for i, row in enumerate(combos):
        _, counts = np.unique(row, return_counts=True)
        coef[i] = math.factorial(t) / np.prod([math.factorial(c) for c in counts])
    return combos, coef


def monomial_features(x: torch.Tensor, t: int) -> torch.Tensor:
    """Features ``(..., n, C(d + t - 1, t))`` with ``<f(q), f(k)> = (q . k)^t`` exactly."""
    d = x.shape[-1]
    if t == 0:
        return torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
    idx, coef = _multisets(d, t)
    idx_t = torch.as_tensor(idx, device=x.device)
    values = x[..., idx_t].prod(dim=-1)  # (..., n, M)
    return values * torch.as_tensor(np.sqrt(coef), dtype=x.dtype, device=x.device)


def n_monomials_up_to(d: int, degree: int) -> int:
    """Number of monomials of degree <= ``degree`` in ``d`` variables: C(d + degree, degree)."""
    return math.comb(d + degree, degree)

"""Pairs as rows: the two domains' features side by side, split at ``n_features_x``."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils.validation import check_array

__all__ = ["split_pairs", "index_domain", "check_grid"]


def resolve_split(n_features: int, n_features_x) -> int:
    """The number of query-side columns; ``None`` gives the first ``n_features // 2`` columns to x."""
    if n_features_x is None:
        if n_features < 2:
            raise ValueError(
                f"X has {n_features} feature(s); pairs as rows need at least one column per domain. Set "
                "n_features_x to the number of query-side (x) columns"
            )
        return n_features // 2
    if isinstance(n_features_x, bool) or not isinstance(n_features_x, numbers.Integral):
        raise TypeError(f"n_features_x must be an integer or None, got {n_features_x!r}")
    if not 1 <= n_features_x < n_features:
        raise ValueError(
            f"n_features_x={n_features_x} does not split X with {n_features} feature(s) into two non-empty "
            "domains; it must be between 1 and n_features - 1"
        )
    return int(n_features_x)


def split_pairs(X: np.ndarray, n_x: int) -> tuple[np.ndarray, np.ndarray]:
    """The query-side and key-side parts of pair rows."""
    return X[:, :n_x], X[:, n_x:]


def index_domain(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of one domain and, for every pair, the index of its row among them."""
    uniq, inverse = np.unique(P, axis=0, return_inverse=True)
    return uniq, inverse.ravel()


def check_grid(X_x, X_y, Z=None):
    """Validate the two domains' points (and a full response matrix Z of shape (n_x, n_y))."""
    X_x = check_array(X_x, dtype=np.float64, input_name="X_x")
    X_y = check_array(X_y, dtype=np.float64, input_name="X_y")
    if Z is None:
        return X_x, X_y
    Z = check_array(Z, dtype=np.float64, input_name="Z")
    if Z.shape != (X_x.shape[0], X_y.shape[0]):
        raise ValueError(f"Z must have shape (len(X_x), len(X_y)) = {(X_x.shape[0], X_y.shape[0])}, got "
                         f"{Z.shape}")
    return X_x, X_y, Z

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


def check_grid(X_x, X_y, Z=None, observed=None, *, precomputed: bool = False):
    """Validate the two domains' points and a response matrix Z of shape (n_x, n_y).

    NaN in ``Z`` marks a pair as not observed, as does False in the boolean mask ``observed``. With
    ``precomputed`` the two arrays are kernel matrices, and only their number of rows is checked against ``Z``.
    Returns ``X_x, X_y`` or ``X_x, X_y, Z, observed`` (observed as a boolean (n_x, n_y) array).
    """
    X_x = check_array(X_x, dtype=np.float64, input_name="X_x")
    X_y = check_array(X_y, dtype=np.float64, input_name="X_y")
    if Z is None:
        if observed is not None:
            raise ValueError("observed needs Z")
        return X_x, X_y
    Z = check_array(Z, dtype=np.float64, input_name="Z", ensure_all_finite="allow-nan")
    if Z.shape != (X_x.shape[0], X_y.shape[0]):
        raise ValueError(f"Z must have shape (len(X_x), len(X_y)) = {(X_x.shape[0], X_y.shape[0])}, got "
                         f"{Z.shape}")
    mask = ~np.isnan(Z)
    if observed is not None:
        observed = np.asarray(observed)
        if observed.dtype != np.bool_:
            raise TypeError(f"observed must be a boolean array (True = observed), got dtype {observed.dtype}")
        if observed.shape != Z.shape:
            raise ValueError(f"observed must have the shape of Z {Z.shape}, got {observed.shape}")
        if np.any(observed & ~mask):
            raise ValueError("Z is NaN at pairs that observed marks as observed")
        mask = observed
    if not mask.any():
        raise ValueError("Z has no observed pair (every entry is NaN or masked out)")
    return X_x, X_y, Z, mask

"""Mixture-of-subspaces tokens (Wang, Lu, Yu, Pai, Qu & Ma) and the per-subspace signal-to-noise ratio.

Tokens of cluster ``k`` are ``z = U_k a + sum_{j != k} U_j e_j`` with ``a ~ N(0, I)`` and
``e_j ~ N(0, delta**2 I)``: signal in their own subspace, weaker noise in every other one. Rows are tokens
(the notes' ``Z`` is the transpose).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from ._validation import check_finite_array, check_float, check_int

__all__ = ["make_subspace_tokens", "subspace_snr"]


def make_subspace_tokens(
    n_subspaces: int = 4,
    subspace_dim: int = 32,
    n_tokens: int = 100,
    ambient_dim: int | None = None,
    delta: float = 0.2,
    shuffle: bool = False,
    random_state=None,
):
    """Sample tokens from a union of mutually orthogonal subspaces with cross-subspace noise.

    Parameters
    ----------
    n_subspaces : int, default=4
        Number of subspaces (clusters) ``K >= 1``.
    subspace_dim : int, default=32
        Dimension ``p >= 1`` of each subspace.
    n_tokens : int, default=100
        Number of tokens ``N >= n_subspaces``; clusters get sizes as equal as possible.
    ambient_dim : int, optional
        Ambient dimension ``d >= K * p`` (needed for mutually orthogonal subspaces); default ``K * p``.
    delta : float, default=0.2
        Noise level in ``[0, 1)``: at ``delta >= 1`` the noise in each foreign subspace is as strong as the
        signal, so a token no longer identifies its own subspace.
    shuffle : bool, default=False
        Shuffle the token order (otherwise clusters are contiguous).
    random_state : int, RandomState instance or None

    Returns
    -------
    Z : ndarray of shape (n_tokens, ambient_dim)
        Tokens as rows.
    labels : ndarray of shape (n_tokens,), dtype int64
        Cluster of each token.
    bases : ndarray of shape (n_subspaces, ambient_dim, subspace_dim)
        Orthonormal bases ``U_k`` (``U_j^T U_k = 0`` for ``j != k``).
    """
    K = check_int(n_subspaces, "n_subspaces", minimum=1)
    p = check_int(subspace_dim, "subspace_dim", minimum=1)
    N = check_int(n_tokens, "n_tokens", minimum=K)
    d = K * p if ambient_dim is None else check_int(ambient_dim, "ambient_dim")
    if d < K * p:
        raise ValueError(f"ambient_dim must be >= n_subspaces * subspace_dim = {K * p}, got {d}")
    delta = check_float(delta, "delta", minimum=0.0, maximum=1.0, max_inclusive=False)
    rng = check_random_state(random_state)
    q, _ = np.linalg.qr(rng.standard_normal((d, K * p)))
    bases = q.reshape(d, K, p).transpose(1, 0, 2).copy()
    labels = np.concatenate([np.full(len(chunk), k) for k, chunk in enumerate(np.array_split(np.arange(N), K))])
    if shuffle:
        labels = rng.permutation(labels)
    # coefficients in every subspace: unit variance in the token's own, delta**2 in the others
    coef = rng.standard_normal((N, K, p))
    coef *= np.where(np.arange(K)[None, :] == labels[:, None], 1.0, delta)[..., None]
    Z = np.einsum("nkp,kdp->nd", coef, bases)
    return Z, labels.astype(np.int64), bases


def subspace_snr(Z, bases, labels) -> np.ndarray:
    """Per-cluster signal-to-noise ratio ``|U_k U_k^T Z_k|_F / |(I - U_k U_k^T) Z_k|_F``.

    Parameters
    ----------
    Z : array-like of shape (n_tokens, ambient_dim)
        Tokens as rows (numpy array or torch tensor).
    bases : array-like of shape (n_subspaces, ambient_dim, subspace_dim)
        Orthonormal bases.
    labels : array-like of shape (n_tokens,)
        Cluster of each token, in ``0..n_subspaces - 1``; ``Z_k`` are the tokens labelled ``k``.

    Returns
    -------
    ndarray of shape (n_subspaces,)
        SNR of each cluster (``inf`` when its tokens have no component outside ``U_k``; ``nan`` for an empty
        cluster).
    """
    Z = _to_numpy(Z)
    bases = _to_numpy(bases)
    Z = check_finite_array(Z, "Z", ndim=2)
    bases = check_finite_array(bases, "bases", ndim=3)
    labels = np.asarray(labels)
    if bases.shape[1] != Z.shape[1]:
        raise ValueError(f"bases must have ambient dimension {Z.shape[1]} (Z's columns), got {bases.shape[1]}")
    if labels.shape != (Z.shape[0],):
        raise ValueError(f"labels must have shape ({Z.shape[0]},) to match Z, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(bases):
        raise ValueError(f"labels must be integers in 0..{len(bases) - 1}")
    snr = np.full(len(bases), np.nan)
    for k, U in enumerate(bases):
        Zk = Z[labels == k]
        if len(Zk) == 0:
            continue
        signal = Zk @ U @ U.T
        with np.errstate(divide="ignore"):
            snr[k] = np.linalg.norm(signal) / np.linalg.norm(Zk - signal)
    return snr


def _to_numpy(array):
    if hasattr(array, "detach"):
        return array.detach().cpu().double().numpy()
    return array

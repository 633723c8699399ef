"""Sparse inputs (CSR, CSC) for the dot-product kernels, without densifying X.

A dot-family kernel is a function of ``q.k``, ``|q|^2`` and ``|k|^2`` only. So the sparse rows can be replaced by
dense coordinates with the same inner products against the centers: with the pivoted Cholesky factorization
``P^T (C C^T) P = L L^T`` of rank r of the centers' inner products (computed by a sparse product),

- any row x (a center or not) gets ``(x C_B^T) L_11^{-T}`` with ``C_B`` the r pivot centers, and one more coordinate
  ``sqrt(|x|^2 - |that|^2)`` (0 for the centers), which carries the part of x outside the centers' span:
  then ``x.c`` and ``|x|^2`` are exact for every center c.

The kernel is pinned to its parameters at the original dimension d (``resolved_params(d)``), since defaults
such as ``scale = 1 / sqrt(d)`` read the input dimension. Memory is O((n + m) r), r <= min(m, d): the sparse
X is only ever multiplied with the sparse centers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.linalg import lapack
from sklearn.base import clone

from ..kernels import Kernel

__all__ = ["SparseEmbedding", "fit_sparse_embedding", "check_sparse_kernel"]


def check_sparse_kernel(kernel: Kernel) -> Kernel:
    """The kernel with its parameters resolved at the sparse input's dimension; refuse non-dot kernels."""
    if kernel.family != "dot" or not kernel.symmetric:
        raise TypeError(f"sparse X is supported for the dot-product kernels (edp, rbf, laplacian, polynomial, "
                        f"linear, cosine, sigmoid, tanh), not kernel {kernel.name!r}; pass a dense array "
                        "(X.toarray())")
    return kernel


@dataclass
class SparseEmbedding:
    """Dense coordinates of sparse rows that keep their inner products with the centers (see module doc)."""

    centers: sp.csr_matrix  # (m, d) the sparse centers
    basis: np.ndarray  # indices of the r pivot centers
    inv_factor_t: np.ndarray  # L_11^{-T}, (r, r)
    centers_embedded: np.ndarray  # (m, r + 1)

    def transform(self, X) -> np.ndarray:
        """(n, r + 1) float64 coordinates of sparse or dense rows X."""
        dots = X @ self.centers[self.basis].T  # sparse x sparse -> sparse (n, r): densified below, r <= m
        dots = dots.toarray() if sp.issparse(dots) else np.asarray(dots)
        V = dots.astype(np.float64) @ self.inv_factor_t
        sq = np.asarray(X.multiply(X).sum(axis=1)).ravel() if sp.issparse(X) else (np.asarray(X) ** 2).sum(1)
        rest = np.sqrt(np.maximum(sq.astype(np.float64) - (V * V).sum(1), 0.0))
        return np.hstack([V, rest[:, None]])


def fit_sparse_embedding(kernel: Kernel, X, centers) -> tuple[Kernel, np.ndarray, SparseEmbedding]:
    """The pinned kernel, the coordinates of X and the embedding for later inputs.

    Parameters
    ----------
    kernel : Kernel
        A dot-family kernel.
    X : scipy.sparse matrix of shape (n, d)
    centers : scipy.sparse matrix of shape (m, d)
    """
    kernel = check_sparse_kernel(kernel)
    d = X.shape[1]
    pinned = clone(kernel).set_params(**{k: v for k, v in kernel.resolved_params(d).items()
                                         if k in kernel.get_params()})
    C = sp.csr_matrix(centers, dtype=np.float64)
    G = (C @ C.T).toarray()
    c, piv, rank, info = lapack.dpstrf(G, lower=1, overwrite_a=1)
    if info < 0:
        raise ValueError(f"pivoted Cholesky of the centers' inner products failed (LAPACK info={info})")
    piv = piv - 1
    if rank == 0:  # every center is the zero vector: one zero coordinate carries nothing
        basis, inv_t = piv[:1], np.zeros((1, 1))
    else:
        basis = piv[:rank]
        inv_t = scipy.linalg.solve_triangular(np.tril(c[:rank, :rank]), np.eye(rank), lower=True, trans="T")
    emb = SparseEmbedding(centers=C, basis=basis, inv_factor_t=inv_t, centers_embedded=np.empty((0, 0)))
    # the centers lie in their own span: their last coordinate is 0 (computing it would give sqrt(round-off),
    # ~1e-8 |c|, and an error of that size in every inner product with a new point)
    emb.centers_embedded = emb.transform(C)
    emb.centers_embedded[:, -1] = 0.0
    return pinned, (emb.centers_embedded if X is centers else emb.transform(X)), emb

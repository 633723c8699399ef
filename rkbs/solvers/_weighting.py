"""Sample weights as a rescaled unweighted problem: the solvers see ``A' = R A Q`` and ``Z' = R Z``.

With weights w and ``R = diag(sqrt(w))``, the weighted loss ``sum_i w_i (A beta - z)_i^2`` is the unweighted
loss of the design ``R A`` and targets ``R Z``. When the centers are the training inputs (``square``), they carry
the same weights: ``beta = Q c`` with ``Q = R``, so a center of weight w stands for w copies of one center
(``penalty="coef"``: alpha sum_j beta_j^2 / w_j, minimized by splitting a coefficient evenly over copies), a
zero-weight sample is the same as a removed one, and ``penalty="rkhs"`` becomes
``(R K R + alpha I) c = R Z``, ``beta = R c``: scikit-learn's ``KernelRidge`` with ``sample_weight``.
Nystroem landmarks keep their unweighted penalty (``Q = I``).

Every solver calls these helpers instead of the kernel products, so each formula lives here once.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ..operators import kernel_gram, kernel_normal_equations
from ._problem import RepresenterProblem

__all__ = ["row_scale", "col_scale", "targets", "unscale", "design", "gram", "normal_equations", "normal_matvec"]


def row_scale(p: RepresenterProblem) -> np.ndarray | None:
    """``sqrt(w)`` of the training rows, or None without weights."""
    return None if p.sample_weight is None else np.sqrt(p.sample_weight)


def col_scale(p: RepresenterProblem) -> np.ndarray | None:
    """``sqrt(w)`` of the centers when they are the (weighted) training inputs, else None."""
    return row_scale(p) if p.square else None


def targets(p: RepresenterProblem) -> np.ndarray:
    """``R Z`` (float64, (n, n_targets))."""
    r = row_scale(p)
    return p.Z if r is None else p.Z * r[:, None]


def unscale(p: RepresenterProblem, c: np.ndarray) -> np.ndarray:
    """``beta = Q c``: coefficients of the original kernel from those of the rescaled problem."""
    q = col_scale(p)
    return c if q is None else c * q.reshape((-1,) + (1,) * (c.ndim - 1))


def _scale_rows_cols(M: np.ndarray, r: np.ndarray | None, q: np.ndarray | None) -> np.ndarray:
    if r is not None:
        M *= r[:, None]
    if q is not None:
        M *= q[None, :]
    return M


def gram(p: RepresenterProblem) -> np.ndarray:
    """The dense design ``R K(X, C) Q`` (float64 numpy)."""
    K = kernel_gram(p.kernel, p.X, p.C, normalize=p.normalize, block_size=p.block_size)
    return _scale_rows_cols(K, row_scale(p), col_scale(p))


def design(p: RepresenterProblem) -> LinearOperator:
    """The matrix-free design ``R K(X, C) Q``."""
    A = p.design()
    r, q = row_scale(p), col_scale(p)
    if r is None:
        return A

    def _cols(V, s):
        V = np.asarray(V)
        return V * (s if V.ndim == 1 else s[:, None]) if s is not None else V

    def mv(v):
        return _cols(A.matvec(_cols(np.ravel(v), q)), r)

    def rmv(u):
        return _cols(A.rmatvec(_cols(np.ravel(u), r)), q)

    def mm(V):
        return _cols(A.matmat(_cols(V, q)), r)

    def rmm(U):
        return _cols(A.rmatmat(_cols(U, r)), q)

    return LinearOperator(A.shape, matvec=mv, rmatvec=rmv, matmat=mm, rmatmat=rmm, dtype=np.float64)


def normal_matvec(p: RepresenterProblem, A: LinearOperator, v: np.ndarray) -> np.ndarray:
    """``A'^T A' v`` for the operator returned by :func:`design` (one kernel pass per block unweighted)."""
    if p.sample_weight is None:
        return p.design().normal_matvec(v)
    return A.rmatvec(A.matvec(v))


def normal_equations(p: RepresenterProblem) -> tuple[np.ndarray, np.ndarray]:
    """``(A'^T A', A'^T Z')`` accumulated block by block: ``Q A^T W A Q`` and ``Q A^T W Z``."""
    AtA, AtZ = kernel_normal_equations(p.kernel, p.X, p.C, p.torch_Z(), normalize=p.normalize,
                                       block_size=p.block_size, row_weights=p.sample_weight)
    q = col_scale(p)
    return _scale_rows_cols(AtA, q, q), _scale_rows_cols(AtZ, q, None)

"""``penalty="coef"``: min_beta |A beta - Z|^2 + alpha |beta|^2 with A = K(X, C), for any kernel.

Well posed for rectangular, asymmetric and indefinite A. Three solvers:

- ``"cholesky"``: the normal equations (A^T A + alpha I) beta = A^T Z, with A^T A accumulated block by block
  (memory O(m^2), never the n x m matrix);
- ``"lstsq"``: the thin SVD of the dense A (stable, also for alpha = 0: the pseudo-inverse);
- ``"lsqr"``: scipy's damped LSQR on the matrix-free operator (memory O(block * m)).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import lsqr

from ..operators import kernel_gram, kernel_normal_equations
from ._linalg import cholesky_solve, warn_condition, warn_not_converged
from ._problem import RepresenterProblem

__all__ = ["solve_coef"]

_HINT = "Increase alpha, or use solver='lstsq' (SVD) or solver='lsqr'."


def _cholesky(p: RepresenterProblem) -> tuple[np.ndarray, dict]:
    AtA, AtZ = kernel_normal_equations(p.kernel, p.X, p.C, p.torch_Z(), normalize=p.normalize,
                                       block_size=p.block_size)
    try:
        M = AtA.copy()
        M[np.diag_indices_from(M)] += p.alpha
        return cholesky_solve(M, AtZ, "the normal equations K^T K + alpha I", _HINT), {"n_iter": None}
    except ValueError:
        # K^T K is positive semi-definite in exact arithmetic; round-off (cond(K)^2 > 1/eps) made it
        # indefinite. Solve in its eigenbasis with the round-off eigenvalues clipped at 0, and say so.
        lam, U = scipy.linalg.eigh(AtA, overwrite_a=True, check_finite=False)
        denom = np.maximum(lam, 0.0) + p.alpha
        if denom.min() <= 0:
            raise ValueError("the normal equations K^T K + alpha I are singular (alpha = 0 and K rank deficient); "
                             "use solver='lstsq' (pseudo-inverse) or alpha > 0") from None
        warn_condition(np.inf, "the normal equations K^T K + alpha I (Cholesky failed; solved by eigh)", _HINT)
        return U @ ((U.T @ AtZ) / denom[:, None]), {"n_iter": None}


def _lstsq(p: RepresenterProblem) -> tuple[np.ndarray, dict]:
    A = kernel_gram(p.kernel, p.X, p.C, normalize=p.normalize, block_size=p.block_size)
    U, s, Vt = scipy.linalg.svd(A, full_matrices=False, overwrite_a=True, check_finite=False)
    denom = s**2 + p.alpha
    # alpha = 0 gives the pseudo-inverse: directions with s = 0 get coefficient 0
    gain = np.divide(s, denom, out=np.zeros_like(s), where=denom > s[0] ** 2 * np.finfo(float).eps)
    beta = Vt.T @ (gain[:, None] * (U.T @ p.Z))
    if p.alpha > 0:
        warn_condition((s[0] ** 2 + p.alpha) / (s[-1] ** 2 + p.alpha), "K^T K + alpha I", _HINT)
    return beta, {"n_iter": None}


def _lsqr(p: RepresenterProblem) -> tuple[np.ndarray, dict]:
    A = p.design()
    beta = np.empty((p.m, p.Z.shape[1]))
    n_iter = []
    for j in range(p.Z.shape[1]):
        out = lsqr(A, p.Z[:, j], damp=np.sqrt(p.alpha), atol=p.tol, btol=p.tol, conlim=1e14,
                   iter_lim=p.max_iter)
        beta[:, j], istop, itn, acond = out[0], out[1], out[2], out[6]
        n_iter.append(itn)
        if istop == 7:
            warn_not_converged("lsqr", itn, out[3] / max(np.linalg.norm(p.Z[:, j]), 1e-300))
        warn_condition(acond, "the damped least-squares operator [K; sqrt(alpha) I]", _HINT)
    return beta, {"n_iter": max(n_iter)}


_SOLVERS = {"cholesky": _cholesky, "lstsq": _lstsq, "lsqr": _lsqr}


def solve_coef(p: RepresenterProblem, solver: str) -> tuple[np.ndarray, dict]:
    """Coefficients ``beta`` of shape (m, n_targets) and an info dict (``n_iter``)."""
    return _SOLVERS[solver](p)

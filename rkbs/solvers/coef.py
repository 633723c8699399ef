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

from . import _weighting as wt
from ._linalg import check_residual, cholesky_solve, warn_condition
from ._problem import RepresenterProblem

__all__ = ["solve_coef"]

_HINT = "Increase alpha, or use solver='lstsq' (SVD) or solver='lsqr'."


def _cholesky(p: RepresenterProblem) -> tuple[np.ndarray, dict]:
    AtA, AtZ = wt.normal_equations(p)
    try:
        M = AtA.copy()
        M[np.diag_indices_from(M)] += p.alpha
        return wt.unscale(p, cholesky_solve(M, AtZ, "the normal equations K^T K + alpha I", _HINT)), \
            {"n_iter": None}
    except ValueError:
        # K^T K is positive semi-definite in exact arithmetic; round-off (cond(K)^2 > 1/eps) made it
        # indefinite. Solve in its eigenbasis with the round-off eigenvalues clipped at 0, and say so.
        lam, U = scipy.linalg.eigh(AtA, overwrite_a=True, check_finite=False)
        denom = np.maximum(lam, 0.0) + p.alpha
        if denom.min() <= 0:
            raise ValueError("the normal equations K^T K + alpha I are singular (alpha = 0 and K rank deficient); "
                             "use solver='lstsq' (pseudo-inverse) or alpha > 0") from None
        warn_condition(np.inf, "the normal equations K^T K + alpha I (Cholesky failed; solved by eigh)", _HINT)
        return wt.unscale(p, U @ ((U.T @ AtZ) / denom[:, None])), {"n_iter": None}


def _lstsq(p: RepresenterProblem) -> tuple[np.ndarray, dict]:
    A = wt.gram(p)
    U, s, Vt = scipy.linalg.svd(A, full_matrices=False, overwrite_a=True, check_finite=False)
    denom = s**2 + p.alpha
    # alpha = 0 gives the pseudo-inverse: directions with s = 0 get coefficient 0
    gain = np.divide(s, denom, out=np.zeros_like(s), where=denom > s[0] ** 2 * np.finfo(float).eps)
    beta = Vt.T @ (gain[:, None] * (U.T @ wt.targets(p)))
    if p.alpha > 0:
        warn_condition((s[0] ** 2 + p.alpha) / (s[-1] ** 2 + p.alpha), "K^T K + alpha I", _HINT)
    return wt.unscale(p, beta), {"n_iter": None}


def _lsqr_residual(A, b: np.ndarray, x: np.ndarray, damp: float, anorm: float) -> float:
    """LSQR's stopping quantity recomputed from the returned x: the smaller of the relative residual
    |[b; 0] - [A; damp I] x| / |b| (a compatible system) and the normal-equations residual
    |A^T r - damp^2 x| / (|[A; damp I]| |[r; -damp x]|) (a least-squares solution)."""
    r = b - A.matvec(x)
    rbar = np.sqrt(r @ r + damp**2 * (x @ x))
    bnorm = max(np.linalg.norm(b), 1e-300)
    normal = np.linalg.norm(A.rmatvec(r) - damp**2 * x) / max(anorm * rbar, 1e-300)
    return float(min(rbar / bnorm, normal))


def _lsqr(p: RepresenterProblem) -> tuple[np.ndarray, dict]:
    A = wt.design(p)
    Z = wt.targets(p)
    beta = np.empty((p.m, Z.shape[1]))
    n_iter = []
    damp = np.sqrt(p.alpha)
    for j in range(Z.shape[1]):
        out = lsqr(A, Z[:, j], damp=damp, atol=p.tol, btol=p.tol, conlim=1e14, iter_lim=p.max_iter)
        beta[:, j], istop, itn, anorm, acond = out[0], out[1], out[2], out[5], out[6]
        n_iter.append(itn)
        if np.linalg.norm(Z[:, j]) > 0:
            # LSQR's own test uses its running estimate of |[A; damp I]|; its residuals are recursions
            check_residual("lsqr", itn, _lsqr_residual(A, Z[:, j], beta[:, j], damp, anorm), p.tol,
                           hit_limit=istop == 7)
        warn_condition(acond, "the damped least-squares operator [K; sqrt(alpha) I]", _HINT)
    return wt.unscale(p, beta), {"n_iter": max(n_iter)}


_SOLVERS = {"cholesky": _cholesky, "lstsq": _lstsq, "lsqr": _lsqr}


def solve_coef(p: RepresenterProblem, solver: str) -> tuple[np.ndarray, dict]:
    """Coefficients ``beta`` of shape (m, n_targets) and an info dict (``n_iter``)."""
    return _SOLVERS[solver](p)

"""Square systems ``(K + alpha I) beta = Z`` and their Nystroem form.

- ``penalty="rkhs"`` (Mercer kernels): min |K beta - Z|^2 + alpha beta^T K beta. Full Gram: (K + alpha I) beta
  = Z by Cholesky or CG, exactly scikit-learn's KernelRidge. Nystroem landmarks C:
  (A^T A + alpha K_CC) beta = A^T Z with A = K(X, C), the same estimator as Nystroem features + Ridge
  (solved over row blocks by :mod:`rkbs.solvers.nystroem`).
- ``spectrum="clip" | "flip" | "shift"``: an indefinite symmetric Gram matrix K = U diag(lam) U^T is replaced by
  U diag(t(lam)) U^T, t = max(lam, 0), |lam| or lam - min(lam_min, 0), which is positive semi-definite; the
  RKHS problem is then solved exactly in the eigenbasis, and new points see the same transformation
  (K'(x, X) = K(x, X) U diag(t(lam) / lam) U^T), folded into the stored coefficients.
- ``penalty="krein"`` (indefinite kernels, Krein-space stabilization): the same stationarity system
  (K + alpha I) beta = Z without positive definiteness, by LU, GMRES or (symmetric kernels) MINRES. For a
  symmetric K it is the stationary point (a saddle, not a minimum) of |K beta - Z|^2 + alpha beta^T K beta;
  for an asymmetric K it is the Tikhonov-shifted interpolation system.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import LinearOperator, cg, gmres, minres

from ..operators import kernel_gram
from . import _weighting as wt
from ._linalg import check_residual, cholesky_solve, lu_solve, warn_condition
from ._problem import RepresenterProblem

__all__ = ["solve_square", "transform_spectrum", "SPECTRUM_TRANSFORMS"]

SPECTRUM_TRANSFORMS = ("clip", "flip", "shift")

_HINT_RKHS = (
    "Increase alpha; for an indefinite kernel use penalty='coef', penalty='krein' or spectrum='clip'."
)
_HINT_KREIN = "Increase alpha (an eigenvalue of K near -alpha makes K + alpha I singular) or use penalty='coef'."


def transform_spectrum(eigenvalues: np.ndarray, spectrum: str) -> np.ndarray:
    """Map the eigenvalues of an indefinite symmetric matrix to non-negative ones.

    Parameters
    ----------
    eigenvalues : numpy.ndarray
    spectrum : {"clip", "flip", "shift"}
        ``clip``: max(lam, 0); ``flip``: |lam|; ``shift``: lam - min(lam_min, 0).
    """
    if spectrum == "clip":
        return np.maximum(eigenvalues, 0.0)
    if spectrum == "flip":
        return np.abs(eigenvalues)
    if spectrum == "shift":
        return eigenvalues - min(eigenvalues.min(), 0.0)
    raise ValueError(f"spectrum must be one of {SPECTRUM_TRANSFORMS} or None, got {spectrum!r}")


def _system(p: RepresenterProblem) -> tuple[np.ndarray, np.ndarray]:
    """The dense system matrix and right-hand side (of the rescaled problem, :mod:`._weighting`)."""
    if p.square:
        M = wt.gram(p)
        M[np.diag_indices_from(M)] += p.alpha
        return M, wt.targets(p)
    AtA, AtZ = wt.normal_equations(p)
    Kcc = kernel_gram(p.kernel, p.C, p.C, block_size=p.block_size)
    AtA += p.alpha * Kcc
    return AtA, AtZ


def _operator(p: RepresenterProblem) -> tuple[LinearOperator, np.ndarray]:
    """The matrix-free system operator and right-hand side (of the rescaled problem)."""
    A = wt.design(p)
    if p.square:
        return LinearOperator(A.shape, matvec=lambda v: A.matvec(v) + p.alpha * np.ravel(v),
                              dtype=np.float64), wt.targets(p)
    Kcc = p.center_gram_operator()
    op = LinearOperator((p.m, p.m), matvec=lambda v: wt.normal_matvec(p, A, v) + p.alpha * Kcc.matvec(v),
                        dtype=np.float64)
    return op, A.rmatmat(wt.targets(p))


# Refinement passes after a Krylov solve that stopped on its own criterion above the relative tolerance.
_REFINE_STEPS = 3


def _krylov(p: RepresenterProblem, method, name: str, **kwargs) -> tuple[np.ndarray, dict]:
    op, rhs = _operator(p)
    beta = np.zeros((op.shape[1], rhs.shape[1]))
    n_iter = []
    for j in range(rhs.shape[1]):
        count = [0]

        def _count(*_args, count=count):
            count[0] += 1

        bnorm = np.linalg.norm(rhs[:, j])
        if bnorm == 0:  # x = 0 solves it exactly; scipy would still iterate
            n_iter.append(0)
            continue
        x, info = method(op, rhs[:, j], rtol=p.tol, maxiter=p.max_iter, callback=_count, **kwargs)
        if info < 0:
            raise ValueError(f"solver={name!r} broke down (info={info}); use a direct solver")
        # the solvers stop on a recursively updated or estimated residual (MINRES on a normwise backward error,
        # |r| <= tol (|A| |x| + |b|), or on a least-squares test for singular systems); the true relative
        # residual |r| / |b| is recomputed here, refined by solving for the correction while that helps
        r = rhs[:, j] - op.matvec(x)
        res = np.linalg.norm(r) / bnorm
        for _ in range(_REFINE_STEPS):
            if info != 0 or res <= p.tol:
                break
            d, info = method(op, r, rtol=min(0.5, p.tol / res), maxiter=p.max_iter, callback=_count, **kwargs)
            r_new = rhs[:, j] - op.matvec(x + d)
            if not np.linalg.norm(r_new) < 0.5 * np.linalg.norm(r):
                break  # no progress: a singular or inconsistent system
            x, r = x + d, r_new
            res = np.linalg.norm(r) / bnorm
        beta[:, j] = x
        n_iter.append(count[0])
        check_residual(name, count[0], res, p.tol, hit_limit=info > 0)
    return wt.unscale(p, beta), {"n_iter": max(max(n_iter), 1)}


def _cholesky(p):
    M, rhs = _system(p)
    return wt.unscale(p, cholesky_solve(M, rhs, "the system K + alpha I" if p.square else
                                        "the Nystroem system K_nm^T K_nm + alpha K_mm", _HINT_RKHS)), \
        {"n_iter": None}


def _lu(p):
    M, rhs = _system(p)
    return wt.unscale(p, lu_solve(M, rhs, "the system K + alpha I" if p.square else
                                  "the Nystroem system K_nm^T K_nm + alpha K_mm", _HINT_KREIN)), \
        {"n_iter": None}


def _eigh(p, spectrum):
    if spectrum is None:  # the rescaled problem's Gram matrix R K R directly
        lam, U = scipy.linalg.eigh(wt.gram(p), overwrite_a=True, check_finite=False)
        P = None
    else:
        lam, U = scipy.linalg.eigh(kernel_gram(p.kernel, p.X, p.X, block_size=p.block_size), overwrite_a=True,
                                   check_finite=False)
        t = transform_spectrum(lam, spectrum)
        # Predictions use the transformed kernel also at new points: K'(x, X) = K(x, X) P with
        # P = U diag(t / lam) U^T (Chen et al., 2009), so the stored coefficients are P beta and the model stays
        # f(x) = K(x, X) @ coef. Directions with lam ~ 0 carry no information about K'(x, .) and are dropped.
        tiny = np.abs(lam).max() * lam.shape[0] * np.finfo(float).eps
        ratio = np.divide(t, lam, out=np.zeros_like(lam), where=np.abs(lam) > tiny)
        U0 = U
        P = lambda B: U0 @ (ratio[:, None] * (U0.T @ B))  # noqa: E731
        if p.sample_weight is None:
            lam = t
        else:  # the weighted problem on K' = U diag(t) U^T: one more eigendecomposition
            Kt = wt._scale_rows_cols((U * t) @ U.T, wt.row_scale(p), wt.col_scale(p))
            lam, U = scipy.linalg.eigh(Kt, overwrite_a=True, check_finite=False)
    denom = lam + p.alpha
    if denom.min() <= 0:
        raise ValueError(f"K + alpha I is singular or indefinite (smallest eigenvalue {denom.min():.3g}); "
                         + _HINT_RKHS)
    warn_condition(denom.max() / denom.min(), "the system K + alpha I", _HINT_RKHS)
    # (K + alpha I)^{-1} Z over every eigenvector, null space of K included: the same solution as a Cholesky
    # solve (KernelRidge's dual coefficients), not only its projection on the range of K
    beta = wt.unscale(p, U @ ((U.T @ wt.targets(p)) / denom[:, None]))
    return (beta if P is None else P(beta)), {"n_iter": None}


def solve_square(p: RepresenterProblem, solver: str, spectrum: str | None = None) -> tuple[np.ndarray, dict]:
    """Coefficients ``beta`` of shape (m, n_targets) and an info dict (``n_iter``)."""
    if solver == "eigh":
        return _eigh(p, spectrum)
    if solver == "cholesky":
        return _cholesky(p)
    if solver == "lu":
        return _lu(p)
    if solver == "cg":
        return _krylov(p, cg, "cg")
    if solver == "gmres":
        return _krylov(p, gmres, "gmres", restart=min(p.m, 100), callback_type="pr_norm")
    if solver == "minres":
        return _krylov(p, minres, "minres")
    raise ValueError(f"unknown solver {solver!r}")

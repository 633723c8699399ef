"""Square systems ``(K + alpha I) beta = Z`` and their Nystroem form.

- ``penalty="rkhs"`` (Mercer kernels): min |K beta - Z|^2 + alpha beta^T K beta. Full Gram: (K + alpha I) beta
  = Z by Cholesky or CG, exactly scikit-learn's KernelRidge. Nystroem landmarks C:
  (A^T A + alpha K_CC) beta = A^T Z with A = K(X, C), the same estimator as Nystroem features + Ridge
  (CG runs with a Falkon-style preconditioner built from K_CC).
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

from ..operators import kernel_gram, kernel_normal_equations
from ._linalg import cholesky_solve, lu_solve, warn_condition, warn_not_converged
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
    """The dense system matrix and right-hand side."""
    if p.square:
        M = kernel_gram(p.kernel, p.X, p.X, normalize=p.normalize, block_size=p.block_size)
        M[np.diag_indices_from(M)] += p.alpha
        return M, p.Z
    AtA, AtZ = kernel_normal_equations(p.kernel, p.X, p.C, p.torch_Z(), block_size=p.block_size)
    Kcc = kernel_gram(p.kernel, p.C, p.C, block_size=p.block_size)
    AtA += p.alpha * Kcc
    return AtA, AtZ


def _operator(p: RepresenterProblem) -> tuple[LinearOperator, np.ndarray]:
    """The matrix-free system operator and right-hand side."""
    A = p.design()
    if p.square:
        return LinearOperator(A.shape, matvec=lambda v: A.matvec(v) + p.alpha * np.ravel(v),
                              dtype=np.float64), p.Z
    Kcc = p.center_gram_operator()
    op = LinearOperator((p.m, p.m), matvec=lambda v: A.normal_matvec(v) + p.alpha * Kcc.matvec(v),
                        dtype=np.float64)
    return op, A.rmatmat(p.Z)


def _nystroem_preconditioner(p: RepresenterProblem) -> LinearOperator:
    """Falkon-style preconditioner for the landmark system (A^T A + alpha K_mm).

    Uniform landmarks give A^T A ~ (n / m) K_mm^2, so (n/m K_mm^2 + alpha K_mm)^{-1}, applied through the
    eigendecomposition of the m x m matrix K_mm, clusters the spectrum of the preconditioned system near 1.
    """
    lam, U = scipy.linalg.eigh(kernel_gram(p.kernel, p.C, p.C, block_size=p.block_size), check_finite=False)
    lam = np.maximum(lam, 0.0)
    d = (p.n / p.m) * lam**2 + p.alpha * lam
    d = np.maximum(d, d.max() * p.m * np.finfo(float).eps)
    return LinearOperator((p.m, p.m), matvec=lambda v: U @ ((U.T @ np.ravel(v)) / d), dtype=np.float64)


def _krylov(p: RepresenterProblem, method, name: str, **kwargs) -> tuple[np.ndarray, dict]:
    op, rhs = _operator(p)
    if name == "cg" and not p.square:
        kwargs["M"] = _nystroem_preconditioner(p)
    beta = np.empty((op.shape[1], rhs.shape[1]))
    n_iter = []
    for j in range(rhs.shape[1]):
        count = [0]

        def _count(_xk, count=count):
            count[0] += 1

        x, info = method(op, rhs[:, j], rtol=p.tol, maxiter=p.max_iter, callback=_count, **kwargs)
        beta[:, j] = x
        n_iter.append(count[0])
        if info != 0:
            res = np.linalg.norm(op.matvec(x) - rhs[:, j]) / max(np.linalg.norm(rhs[:, j]), 1e-300)
            if info < 0:
                raise ValueError(f"solver={name!r} broke down (info={info}); use a direct solver")
            warn_not_converged(name, count[0], res)
    return beta, {"n_iter": max(n_iter)}


def _cholesky(p):
    M, rhs = _system(p)
    return cholesky_solve(M, rhs, "the system K + alpha I" if p.square else
                          "the Nystroem system K_nm^T K_nm + alpha K_mm", _HINT_RKHS), {"n_iter": None}


def _lu(p):
    M, rhs = _system(p)
    return lu_solve(M, rhs, "the system K + alpha I" if p.square else
                    "the Nystroem system K_nm^T K_nm + alpha K_mm", _HINT_KREIN), {"n_iter": None}


def _eigh(p, spectrum):
    K = kernel_gram(p.kernel, p.X, p.X, block_size=p.block_size)
    lam, U = scipy.linalg.eigh(K, overwrite_a=True, check_finite=False)
    t = lam if spectrum is None else transform_spectrum(lam, spectrum)
    denom = t + p.alpha
    if denom.min() <= 0:
        raise ValueError(f"K + alpha I is singular or indefinite (smallest eigenvalue {denom.min():.3g}); "
                         + _HINT_RKHS)
    warn_condition(denom.max() / denom.min(), "the system K + alpha I", _HINT_RKHS)
    # Predictions use the transformed kernel also at new points: K'(x, X) = K(x, X) P with
    # P = U diag(t / lam) U^T (Chen et al., 2009), so the stored coefficients are P beta and the model stays
    # f(x) = K(x, X) @ coef. Directions with lam ~ 0 carry no information about K'(x, .) and are dropped.
    tiny = np.abs(lam).max() * lam.shape[0] * np.finfo(float).eps
    ratio = np.divide(t, lam, out=np.zeros_like(lam), where=np.abs(lam) > tiny)
    beta = U @ ((U.T @ p.Z) * (ratio / denom)[:, None])
    return beta, {"n_iter": None, "eigenvalues": lam}


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

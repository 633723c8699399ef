"""Dense factorizations with a condition estimate, and the warnings the solvers raise.

An ill-conditioned system is solved, but never silently: the caller gets a :class:`ConditioningWarning` with
a 1-norm condition estimate (Hager's method for Cholesky, LAPACK's ``*gecon`` for LU; O(n^2) after the
factorization).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from scipy.linalg import lapack
from sklearn.exceptions import ConvergenceWarning

__all__ = ["ConditioningWarning", "check_residual", "cholesky_solve", "lu_solve", "warn_condition",
           "warn_not_converged"]

# Warn when cond > 1e12: beyond it a float64 solution keeps fewer than ~4 significant digits.
RCOND_WARN = 1e-12


class ConditioningWarning(scipy.linalg.LinAlgWarning):
    """The linear system of a fit is ill-conditioned; the message carries the condition estimate."""


def warn_condition(cond: float, what: str, hint: str) -> None:
    """Warn when the condition number estimate ``cond`` of ``what`` exceeds 1e12."""
    if not np.isfinite(cond) or cond > 1.0 / RCOND_WARN:
        warnings.warn(
            ConditioningWarning(
                f"{what} is ill-conditioned (condition number estimate {cond:.3g}); the solution may be "
                f"inaccurate. {hint}"
            ),
            stacklevel=4,
        )


def warn_not_converged(solver: str, info: int, residual: float, tol: float | None = None) -> None:
    """Warn (``ConvergenceWarning``) that an iterative solver stopped short of its tolerance."""
    target = "" if tol is None else f" above tol={tol:.3g}"
    warnings.warn(
        ConvergenceWarning(
            f"solver={solver!r} did not converge in {info} iterations (relative residual {residual:.3g}"
            f"{target}); increase max_iter, loosen tol, increase alpha, or use a direct solver"
        ),
        stacklevel=4,
    )


# A solution is accepted when its recomputed (true) residual is within this factor of tol: the recursively
# updated residual a Krylov method stops on drifts from the true one by round-off of order eps * cond.
RESIDUAL_SLACK = 10.0


def check_residual(solver: str, n_iter: int, residual: float, tol: float, hit_limit: bool = False) -> None:
    """Warn when the true relative ``residual`` of a finished iterative solve exceeds ``RESIDUAL_SLACK * tol``
    (or ``tol`` itself when the solver stopped at its iteration limit)."""
    if not np.isfinite(residual) or residual > (tol if hit_limit else RESIDUAL_SLACK * tol):
        warn_not_converged(solver, n_iter, residual, tol)


def _inverse_norm1_estimate(solve, n: int, dtype: torch.dtype) -> float:
    """Hager's estimate of ``|A^{-1}|_1`` for symmetric ``A`` from a few solves (LAPACK's ``*lacon`` idea)."""
    x = torch.full((n, 1), 1.0 / n, dtype=dtype)
    estimate = 0.0
    for _ in range(5):
        y = solve(x)
        estimate = float(y.abs().sum())
        z = solve(torch.sign(y))  # A^{-T} = A^{-1}
        j = int(z.abs().argmax())
        if float(z[j].abs()) <= float((z * x).sum()):
            break
        x = torch.zeros_like(x)
        x[j] = 1.0
    return estimate


def _norm1_symmetric(Mt: torch.Tensor) -> float:
    """``|M|_1`` (largest column abs-sum) of a symmetric matrix, a slab of columns at a time.

    ``Mt.abs()`` would allocate a second n x n array; slabs of ~1M elements keep the temporary O(n).
    """
    n = Mt.shape[0]
    step = max(1, (1 << 20) // max(n, 1))
    return max(float(Mt[:, j : j + step].abs().sum(dim=0).max()) for j in range(0, n, step))


def _triangular_solve(L: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``(L L^T)^{-1} B`` by two triangular solves that read ``L`` in place.

    ``torch.cholesky_solve`` copies the whole n x n factor on every call (measured 20x slower for one column
    at n = 6,000); ``solve_triangular`` on the Fortran-ordered factor and its transpose view copies nothing.
    """
    return torch.linalg.solve_triangular(L.mT, torch.linalg.solve_triangular(L, B, upper=False), upper=True)


def cholesky_solve(M: np.ndarray, B: np.ndarray, what: str, hint: str) -> np.ndarray:
    """Solve ``M x = B`` for symmetric positive definite ``M`` (overwritten) by Cholesky, with a condition estimate.

    Factorization, solves and the estimate all run in torch, on the thread pool that computed the kernel
    blocks: calling scipy's LAPACK in between wakes OpenBLAS threads that compete with torch's for the cores
    (measured 4x slower fits at n = 1,000 on two cores). Peak memory is ``M`` itself plus O(n): the factor
    overwrites ``M`` and every solve reads it in place.

    Raises
    ------
    ValueError
        When ``M`` is not numerically positive definite.
    """
    # factor in place (M is overwritten): the symmetric M read in Fortran order is M itself, and LAPACK
    # factors a Fortran-ordered matrix without a second n x n buffer
    Mt = torch.from_numpy(M.T if M.flags.c_contiguous else np.asfortranarray(M))
    anorm = _norm1_symmetric(Mt)
    L, info = torch.linalg.cholesky_ex(Mt, out=(Mt, torch.empty((), dtype=torch.int32)))
    if int(info) != 0:
        raise ValueError(f"{what} is not positive definite (numerically); {hint}")
    inv_norm = _inverse_norm1_estimate(lambda b: _triangular_solve(L, b), M.shape[0], Mt.dtype)
    warn_condition(anorm * inv_norm, what, hint)
    Bt = torch.tensor(np.asarray(B), dtype=torch.float64)  # a copy: B may be a read-only memmap
    return _triangular_solve(L, Bt.reshape(Bt.shape[0], -1)).reshape(Bt.shape).numpy()


def lu_solve(M: np.ndarray, B: np.ndarray, what: str, hint: str) -> np.ndarray:
    """Solve the general square system ``M x = B`` (``M`` overwritten) by LU with partial pivoting.

    Raises
    ------
    ValueError
        When ``M`` is exactly singular.
    """
    anorm = np.abs(M).sum(axis=0).max()
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            lu, piv = scipy.linalg.lu_factor(M, overwrite_a=True, check_finite=False)
        except scipy.linalg.LinAlgWarning:
            raise ValueError(f"{what} is singular; {hint}") from None
    rcond, _ = lapack.dgecon(lu, anorm, norm="1")
    warn_condition(1.0 / rcond if rcond > 0 else np.inf, what, hint)
    return scipy.linalg.lu_solve((lu, piv), B, check_finite=False)

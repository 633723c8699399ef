"""Dense factorizations with a condition estimate, and the warnings the solvers raise.

An ill-conditioned system is solved, but never silently: the caller gets a :class:`ConditioningWarning` with
LAPACK's reciprocal condition estimate (``*pocon`` / ``*gecon``, O(n^2) after the factorization).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from scipy.linalg import lapack
from sklearn.exceptions import ConvergenceWarning

__all__ = ["ConditioningWarning", "cholesky_solve", "lu_solve", "warn_condition", "warn_not_converged"]

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


def warn_not_converged(solver: str, info: int, residual: float) -> None:
    warnings.warn(
        ConvergenceWarning(
            f"solver={solver!r} did not converge in {info} iterations (relative residual {residual:.3g}); "
            "increase max_iter, loosen tol, increase alpha, or use a direct solver"
        ),
        stacklevel=4,
    )


def cholesky_solve(M: np.ndarray, B: np.ndarray, what: str, hint: str) -> np.ndarray:
    """Solve ``M x = B`` for symmetric positive definite ``M`` (overwritten) by Cholesky.

    Raises
    ------
    ValueError
        When ``M`` is not numerically positive definite.
    """
    anorm = np.abs(M).sum(axis=0).max()
    try:
        c, lower = scipy.linalg.cho_factor(M, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise ValueError(f"{what} is not positive definite (numerically); {hint}") from None
    rcond, _ = lapack.dpocon(c, anorm, uplo="L")
    warn_condition(1.0 / rcond if rcond > 0 else np.inf, what, hint)
    return scipy.linalg.cho_solve((c, lower), B, check_finite=False)


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

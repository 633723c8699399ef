"""Solvers of the binary kernel machine: closed forms with their regularisation paths, and Krylov solvers.

Two-sided: min |P_obs(K C K) - Z|^2 + alpha |C|^2 with one cross-domain Gram matrix K (n_x, n_y).
Kronecker: (K_y (x) K_x + alpha I) vec(A) = vec(Z) restricted to the observed pairs.

On a full grid both are linear smoothers vec(Z) -> vec(H) diagonalised by one decomposition (the SVD of K, or
the eigendecompositions of K_x and K_y), so every alpha of a path and its exact leave-one-pair-out residuals
(Z - H) / (1 - diag(hat)) cost two matrix products each, and its generalized cross-validation score
(|Z - H|^2 / n) / (1 - tr(hat) / n)^2 (Golub, Heath and Wahba 1979) costs O(n) from the rotated responses alone.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse
import torch
from scipy.sparse.linalg import LinearOperator, cg, lsqr

from ..solvers._linalg import warn_not_converged

__all__ = ["two_sided_path", "kronecker_path", "two_sided_lsqr", "kronecker_cg"]


def _mm(*mats: np.ndarray) -> np.ndarray:
    """A chain of float64 products in torch (its thread pool; numpy's BLAS threads would compete with it).

    Transposed (Fortran-ordered) operands are passed as strided views: GEMM reads them transposed, no copy.
    """
    out = torch.from_numpy(mats[0])
    for M in mats[1:]:
        out = out @ torch.from_numpy(M)
    return out.numpy()


def _eigh(K: np.ndarray, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a symmetric Gram matrix by LAPACK's divide and conquer (syevd).

    A C-ordered K is handed to LAPACK as K.T (Fortran order, the same symmetric matrix), so with
    ``overwrite`` (the caller owns K) it is factorized in place, without a copy.
    """
    A = K.T if K.flags.c_contiguous else K
    return scipy.linalg.eigh(A, driver="evd", check_finite=False, overwrite_a=overwrite)


def _gcv(residual_sq: float, trace: float, n: int) -> float:
    """Generalized cross-validation: the mean squared residual inflated by (1 - degrees of freedom / n)^-2."""
    dof = 1.0 - trace / n
    return residual_sq / n / dof**2 if dof > 0 else np.inf


def two_sided_path(K: np.ndarray, Z: np.ndarray, alphas, loo: bool = False, gcv: bool = False):
    """Coefficients C (n_y, n_x) of argmin |K C K - Z|^2 + alpha |C|^2 for each alpha (minimum norm at 0).

    Returns the list of C, with ``loo`` the leave-one-pair-out residual matrices (else []), and with ``gcv``
    the GCV score of each alpha (else []).
    """
    U, s, Vt = scipy.linalg.svd(K, full_matrices=False, check_finite=False)
    M = U.T @ Z @ Vt.T
    ss = np.outer(s, s)
    ss2 = ss**2
    keep = ss2 > (s[0] ** 4 if s.size else 0.0) * np.finfo(float).eps
    coefs, residuals, scores = [], [], []
    # |Z - U (F M) V^T|^2 = |Z|^2 - |M|^2 + |(1 - F) M|^2: Z's part outside the singular subspaces is constant
    outside = max(float(np.sum(Z**2) - np.sum(M**2)), 0.0)
    for alpha in alphas:
        denom = ss2 + alpha
        gain = np.divide(ss, denom, out=np.zeros_like(ss), where=keep)
        coefs.append(Vt.T @ (gain * M) @ U.T)
        if gcv:
            F = gain * ss
            scores.append(_gcv(outside + float(np.sum(((1.0 - F) * M) ** 2)), float(F.sum()), Z.size))
        if loo:
            F = gain * ss  # the smoother's eigenvalues s_i^2 s_j^2 / (s_i^2 s_j^2 + alpha)
            H = U @ (F * M) @ Vt
            h = (U**2) @ F @ (Vt.T**2).T
            residuals.append(_loo_residual(Z, H, h))
    return coefs, residuals, scores


def kronecker_path(Kx: np.ndarray, Ky: np.ndarray, Z: np.ndarray, alphas, loo: bool = False, gcv: bool = False,
                   overwrite: bool = False):
    """Dual coefficients A (n_x, n_y) of (K_y (x) K_x + alpha I) vec(A) = vec(Z) for each alpha (KronRLS).

    Returns the list of A, with ``loo`` the leave-one-pair-out residual matrices (else []), and with ``gcv``
    the GCV score of each alpha (else []). With ``overwrite`` Kx and Ky are destroyed (no copies).
    """
    lx, Qx = _eigh(Kx, overwrite)
    ly, Qy = _eigh(Ky, overwrite)
    # Mercer Gram matrices (checked by the caller): eigenvalues below 0 are round-off
    lam = np.outer(np.maximum(lx, 0.0), np.maximum(ly, 0.0))
    M = _mm(Qx.T, Z, Qy)
    coefs, residuals, scores = [], [], []
    for alpha in alphas:
        denom = lam + alpha
        coefs.append(_mm(Qx, M / denom, Qy.T))
        if gcv:  # Qx, Qy are square orthogonal: |Z - H| = |(1 - F) M|
            F = lam / denom
            scores.append(_gcv(float(np.sum(((1.0 - F) * M) ** 2)), float(F.sum()), Z.size))
        if loo:
            F = lam / denom
            H = _mm(Qx, F * M, Qy.T)
            h = _mm(Qx**2, F, (Qy**2).T)
            residuals.append(_loo_residual(Z, H, h))
    return coefs, residuals, scores


def _loo_residual(Z: np.ndarray, H: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Leave-one-out residuals of a linear smoother: (z - H) / (1 - h), exact for ridge regression."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (Z - H) / (1.0 - h)


def two_sided_lsqr(K, a, b, z, alpha, tol, max_iter):
    """argmin over C of sum_obs ((K C K)[a, b] - z)^2 + alpha |C|^2 by matrix-free LSQR."""
    nx, ny = K.shape
    rows, cols = a, b

    def matvec(c):  # (K C K)[a_i, b_i]
        T = K @ c.reshape(ny, nx)
        return np.einsum("ij,ji->i", T[a], K[:, b])

    def rmatvec(r):  # K^T R K^T with R the scatter of r
        R = scipy.sparse.coo_matrix((r, (rows, cols)), shape=(nx, ny)).tocsr()
        return (K.T @ (R @ K.T)).ravel()

    op = LinearOperator((z.shape[0], nx * ny), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    out = lsqr(op, z, damp=np.sqrt(alpha), atol=tol, btol=tol, iter_lim=max_iter)
    if out[1] == 7:
        warn_not_converged("lsqr", out[2], out[3] / max(np.linalg.norm(z), 1e-300))
    return out[0].reshape(ny, nx), int(out[2])


def kronecker_cg(Kx, Ky, a, b, z, alpha, tol, max_iter):
    """Kronecker kernel ridge over the observed pairs by CG with the generalized vec trick; A is (n_x, n_y)."""
    nx, ny = Kx.shape[0], Ky.shape[0]

    def scatter(v):
        return scipy.sparse.coo_matrix((v, (a, b)), shape=(nx, ny)).tocsr()

    def matvec(v):  # the pairwise Gram matrix of the observed pairs, by the generalized vec trick
        return (Kx @ (scatter(v) @ Ky))[a, b] + alpha * v

    op = LinearOperator((z.shape[0], z.shape[0]), matvec=matvec, dtype=np.float64)
    count = [0]
    coef, info = cg(op, z, rtol=tol, maxiter=max_iter, callback=lambda _x: count.__setitem__(0, count[0] + 1))
    if info > 0:
        warn_not_converged("cg", count[0], np.linalg.norm(op.matvec(coef) - z) / max(np.linalg.norm(z), 1e-300))
    return scatter(coef).toarray(), count[0]

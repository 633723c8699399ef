"""Solvers of the binary kernel machine: closed forms with their regularisation paths, the dual of observed pairs
by Cholesky, and Krylov solvers.

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

from ..solvers._linalg import cholesky_solve, warn_not_converged

__all__ = ["two_sided_path", "kronecker_path", "two_sided_dual", "kronecker_dual", "two_sided_lsqr", "kronecker_cg"]


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


def _svd_basis(K: np.ndarray):
    """K = U diag(s) Vt, and the mask of the directions (i, j) of C's basis that K C K does not annihilate."""
    U, s, Vt = scipy.linalg.svd(K, full_matrices=False, check_finite=False)
    keep = np.outer(s, s) ** 2 > (s[0] ** 4 if s.size else 0.0) * np.finfo(float).eps
    return U, s, Vt, keep


def two_sided_path(K: np.ndarray, Z: np.ndarray, alphas, loo: bool = False, gcv: bool = False):
    """Coefficients C (n_y, n_x) of argmin |K C K - Z|^2 + alpha |C|^2 for each alpha (minimum norm at 0).

    Returns the list of C, with ``loo`` the leave-one-pair-out residual matrices (else []), and with ``gcv``
    the GCV score of each alpha (else []).
    """
    U, s, Vt, keep = _svd_basis(K)
    M = U.T @ Z @ Vt.T
    ss = np.outer(s, s)
    ss2 = ss**2
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


def _scatter(v: np.ndarray, a: np.ndarray, b: np.ndarray, shape) -> scipy.sparse.csr_matrix:
    """The (n_x, n_y) sparse matrix with v at the observed pairs (a_i, b_i); repeated pairs add up."""
    return scipy.sparse.coo_matrix((v, (a, b)), shape=shape).tocsr()


def _pair_dual(Kx: np.ndarray, Ky: np.ndarray, a, b, z, alpha: float) -> np.ndarray:
    """Dual coefficients c of ridge regression over the observed pairs with the pair kernel Kx[a, a'] Ky[b, b'].

    (G + alpha I) c = z with G = Kx[a][:, a] * Ky[b][:, b] (elementwise), by Cholesky: exact and independent of
    the conditioning that slows the Krylov solvers, at O(n_obs^3) time and O(n_obs^2) memory.
    """
    G = Kx[np.ix_(a, a)]
    G *= Ky[np.ix_(b, b)]
    G[np.diag_indices_from(G)] += alpha
    return cholesky_solve(G, z, "the system of the observed pairs (pair Gram matrix + alpha I)",
                          "increase alpha, or use solver='lsqr' (two-sided) or 'cg' (Kronecker)")


def two_sided_dual(K, a, b, z, alpha):
    """The two-sided machine over the observed pairs, exactly, through its dual.

    (K C K)[a, b] = <C, K[a, :]^T K[:, b]^T> is linear in C with these features, whose inner products are
    (K K^T)[a, a'] (K^T K)[b, b']: the two-sided machine is Kronecker ridge regression with the kernels K K^T and
    K^T K, and C = K^T E K^T with E the scatter of the dual coefficients.
    """
    c = _pair_dual(K @ K.T, K.T @ K, a, b, z, alpha)
    return np.asarray(K.T @ (_scatter(c, a, b, K.shape) @ K.T)), 1


def kronecker_dual(Kx, Ky, a, b, z, alpha):
    """Kronecker kernel ridge over the observed pairs, exactly, through its dual; A is (n_x, n_y)."""
    c = _pair_dual(Kx, Ky, a, b, z, alpha)
    return _scatter(c, a, b, (Kx.shape[0], Ky.shape[0])).toarray(), 1


def two_sided_lsqr(K, a, b, z, alpha, tol, max_iter):
    """argmin over C of sum_obs ((K C K)[a, b] - z)^2 + alpha |C|^2 by LSQR, preconditioned in K's SVD basis.

    With K = U S V^T the minimizer is C = V D U^T: a part of C outside those ranges leaves K C K unchanged and
    only adds to the penalty, and |C| = |D|. On a full grid the normal operator of D is diagonal,
    s_i^2 s_j^2 + alpha, so the plain operator's condition number s_max^2 / sqrt(alpha) is all in its diagonal;
    with missing pairs it is the sum over the observed (a, b) of (U S)[a, i]^2 (S V^T)[j, b]^2, plus alpha.
    Solving for Y with D = M * Y, M = diag^(-1/2) (Jacobi), LSQR needed 0.9 to 180 times fewer iterations than
    on the plain operator in benchmarks/pairwise_solvers.py (2.7 to 180 with maps scaled by 1/sqrt(d), and it
    converged on 6 problems where the plain one did not). The penalty becomes rows of the operator
    ([P(U S D S V^T); sqrt(alpha) D] = [z; 0]) because LSQR's own damping would penalize |Y|. At alpha = 0 there
    is no scaling (M = 1), so LSQR still returns the minimum-norm C.
    """
    U, s, Vt, keep = _svd_basis(K)  # numerically null directions stay 0
    left, right = U * s, s[:, None] * Vt  # K C K = left D right
    if alpha > 0:  # Jacobi: the exact diagonal of the normal operator, sum over observed (a, b) of left^2 right^2
        counts = _scatter(np.ones(z.shape[0]), a, b, K.shape)
        diag = left.T**2 @ (counts @ (right.T**2)) + alpha
        M = np.divide(1.0, np.sqrt(diag), out=np.zeros_like(diag), where=keep)
    else:
        M = keep.astype(np.float64)
    r, n_obs, root = s.size, z.shape[0], np.sqrt(alpha)

    def fit(D):  # (left D right)[a_i, b_i]
        return np.einsum("ij,ji->i", (left @ D)[a], right[:, b])

    def matvec(y):
        D = M * y.reshape(r, r)
        return np.concatenate([fit(D), root * D.ravel()])

    def rmatvec(v):  # left^T R right^T with R the scatter of the data rows, plus the penalty rows
        R = _scatter(v[:n_obs], a, b, K.shape)
        return (M * (left.T @ (R @ right.T) + root * v[n_obs:].reshape(r, r))).ravel()

    op = LinearOperator((n_obs + r * r, r * r), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    rhs = np.concatenate([z, np.zeros(r * r)])
    out = lsqr(op, rhs, atol=tol, btol=tol, iter_lim=max_iter)
    D = M * out[0].reshape(r, r)
    if out[1] == 7:
        warn_not_converged("lsqr", out[2], np.linalg.norm(fit(D) - z) / max(np.linalg.norm(z), 1e-300))
    return Vt.T @ D @ U.T, int(out[2])


def kronecker_cg(Kx, Ky, a, b, z, alpha, tol, max_iter):
    """Kronecker kernel ridge over the observed pairs by CG with the generalized vec trick; A is (n_x, n_y)."""
    shape = (Kx.shape[0], Ky.shape[0])

    def matvec(v):  # the pairwise Gram matrix of the observed pairs, by the generalized vec trick
        return (Kx @ (_scatter(v, a, b, shape) @ Ky))[a, b] + alpha * v

    op = LinearOperator((z.shape[0], z.shape[0]), matvec=matvec, dtype=np.float64)
    count = [0]
    coef, info = cg(op, z, rtol=tol, maxiter=max_iter, callback=lambda _x: count.__setitem__(0, count[0] + 1))
    if info > 0:
        warn_not_converged("cg", count[0], np.linalg.norm(op.matvec(coef) - z) / max(np.linalg.norm(z), 1e-300))
    return _scatter(coef, a, b, shape).toarray(), count[0]

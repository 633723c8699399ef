"""Multinomial logistic loss on a kernel expansion, by trust-region Newton-CG on whitened features.

The problem ``min_B sum_i w_i CE(softmax(K_i B + b), y_i) + alpha pen(B)`` is a linear logistic regression on
features ``Phi`` with an l2 penalty, after the change of variables ``B = T C``:

- ``penalty="rkhs"`` (``pen = tr(B^T K_mm B)``): a pivoted Cholesky factorization ``P^T K_mm P = L L^T`` of
  rank r (LAPACK ``pstrf``, n^3/3 flops and rank revealing; an eigendecomposition costs ~20x more) gives
  ``T = P [L_11^{-T}; 0]``, so ``tr(B^T K_mm B) = |C|^2`` and ``Phi = K(X, C) T`` (``= P L`` for the square
  problem, no product needed).
- ``penalty="coef"`` (``pen = |B|^2``): ``Phi = K(X, C) Q``, ``T = Q``, with ``Q = diag(sqrt(w))`` when the
  centers are the weighted training inputs (a center of weight w stands for w copies, as in the least-squares
  fits; see :mod:`rkbs.solvers._weighting`), else ``Q = I``.

Newton's method is affine invariant, so it needs a few tens of iterations where first-order methods on the
original coordinates need thousands; each Hessian-vector product costs two products with ``Phi``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.optimize
from scipy.linalg import lapack
from scipy.special import log_softmax
from sklearn.exceptions import ConvergenceWarning

from ..solvers import RepresenterProblem

__all__ = ["fit_logistic"]

# Dense design up to this many entries (128 MiB in float64); beyond, products go through the kernel operator.
_DENSE_MAX = 1 << 24


def _whitening(p: RepresenterProblem, penalty: str, A: np.ndarray | None):
    """``(Phi or None, T)``: ``Phi`` is dense when it is cheaper to form than to apply (``A`` given)."""
    q = None if p.sample_weight is None or not p.square else np.sqrt(p.sample_weight)
    if penalty == "coef":
        T = np.eye(p.m) if q is None else np.diag(q)
        return (None if A is None else (A if q is None else A * q[None, :])), T
    Kmm = A.copy() if (p.square and A is not None) else p.center_gram_operator().to_dense()
    c, piv, rank, info = lapack.dpstrf(Kmm, lower=1, overwrite_a=1)
    if info < 0:
        raise ValueError(f"pivoted Cholesky failed (LAPACK info={info})")
    piv = piv - 1
    L = np.tril(c[:, :rank])
    T = np.zeros((p.m, rank))
    T[piv[:rank]] = scipy.linalg.solve_triangular(L[:rank], np.eye(rank), lower=True, trans="T")
    if A is None:
        return None, T
    if p.square:
        Phi = np.empty((p.n, rank))
        Phi[piv] = L
        return Phi, T
    return A @ T, T


def fit_logistic(p: RepresenterProblem, penalty: str, Y: np.ndarray, *, fit_intercept: bool,
                 max_iter: int | None, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Coefficients ``B`` (m, k), intercepts ``b`` (k,) and the number of Newton iterations.

    Parameters
    ----------
    p : RepresenterProblem
        ``p.alpha`` is the penalty strength, ``p.sample_weight`` the loss weights.
    penalty : {"coef", "rkhs"}
    Y : numpy.ndarray of shape (n, k)
        One-hot targets.
    fit_intercept : bool
        Add unpenalized class intercepts.
    max_iter : int or None
        Newton iterations (``None``: 100).
    tol : float
        Stop when the gradient's 2-norm is below ``tol * sum(sample_weight)``.
    """
    op = p.design()
    A = op.to_dense() if p.n * p.m <= _DENSE_MAX else None
    Phi, T = _whitening(p, penalty, A)
    r, k = T.shape[1], Y.shape[1]
    w = np.ones(p.n) if p.sample_weight is None else p.sample_weight
    rows = r + int(fit_intercept)
    pen = np.ones((rows, 1))
    if fit_intercept:
        pen[-1] = 0.0  # the intercept row is not penalized
    alpha = float(p.alpha)

    def forward(V):  # [Phi, 1] @ V
        F = (Phi @ V[:r]) if Phi is not None else op.matmat(T @ V[:r])
        return F + V[r] if fit_intercept else F

    def backward(G):  # [Phi, 1]^T @ G
        top = (Phi.T @ G) if Phi is not None else T.T @ op.rmatmat(G)
        return np.vstack([top, G.sum(0, keepdims=True)]) if fit_intercept else top

    cache = {}

    def state(x):
        if cache.get("x") is None or not np.array_equal(cache["x"], x):
            logp = log_softmax(forward(x.reshape(rows, k)), axis=1)
            cache.update(x=x.copy(), logp=logp, P=np.exp(logp))
        return cache

    def fun(x):
        s, C = state(x), x.reshape(rows, k)
        loss = -(w * (Y * s["logp"]).sum(1)).sum() + alpha * (pen * C * C).sum()
        grad = backward(w[:, None] * (s["P"] - Y)) + 2.0 * alpha * pen * C
        return loss, grad.ravel()

    def hessp(x, v):
        P, V = state(x)["P"], v.reshape(rows, k)
        G = forward(V)
        PG = P * G
        return (backward(w[:, None] * (PG - P * PG.sum(1, keepdims=True))) + 2.0 * alpha * pen * V).ravel()

    limit = 100 if max_iter is None else max_iter
    gtol = tol * float(w.sum())
    with warnings.catch_warnings():
        # trust-ncg warns (OptimizeWarning / RuntimeWarning) on its own stops; convergence is judged below
        warnings.simplefilter("ignore")
        res = scipy.optimize.minimize(fun, np.zeros(rows * k), jac=True, hessp=hessp, method="trust-ncg",
                                      options={"gtol": gtol, "maxiter": limit})
    x, nit = res.x, int(res.nit)
    x, gnorm, extra = _polish(fun, hessp, x, gtol, steps=min(5, limit - nit))
    nit += extra
    if not gnorm <= gtol:
        warnings.warn(ConvergenceWarning(
            f"the logistic Newton solver stopped after {nit} iterations with gradient norm {gnorm:.3g} above "
            f"tol * sum(sample_weight) = {gtol:.3g} ({res.message}); increase max_iter or alpha, or loosen tol"),
            stacklevel=3)
    C = x.reshape(rows, k)
    b = C[r].copy() if fit_intercept else np.zeros(k)
    return T @ C[:r], b, max(nit, 1)


def _polish(fun, hessp, x: np.ndarray, gtol: float, steps: int = 5) -> tuple[np.ndarray, float, int]:
    """Full Newton steps (CG on the Hessian) from a point near the optimum, kept while the gradient shrinks
    (at least one, at most ``steps``).

    Close to the optimum the trust region compares objective decreases below the objective's round-off and
    stops ("bad approximation") with a gradient still above a tight ``gtol``; Newton's local quadratic
    convergence needs no such test.
    """
    from scipy.sparse.linalg import LinearOperator, cg

    g = fun(x)[1]
    gnorm, done = float(np.linalg.norm(g)), 0
    # one step even when converged: from the trust region's stop it squares the (relative) gradient, so a fit
    # is reproducible to far below tol (weighted and repeated data give the same model to round-off)
    while (gnorm > gtol or done == 0) and done < steps and gnorm > 0:
        H = LinearOperator((x.size, x.size), matvec=lambda v, x=x: hessp(x, v), dtype=np.float64)
        d, _ = cg(H, -g, rtol=min(0.1, gtol / gnorm, 1e-3), maxiter=10 * x.size)
        g_new = fun(x + d)[1]
        if not np.linalg.norm(g_new) < gnorm:
            break
        x, g, gnorm, done = x + d, g_new, float(np.linalg.norm(g_new)), done + 1
    return x, gnorm, done

"""BinaryKernelRidge: responses z_ab for cross-domain pairs (x_a, y_b), the binary kernel machine.

Two-sided mode, one cross-domain kernel kappa: X x Y -> R (asymmetric and indefinite allowed):
h(x, y) = kappa(x, Y_c) @ C @ kappa(X_c, y), so on a full grid H = K C K with K = kappa(X_c, Y_c), and
min |K C K - Z|^2 + alpha |C|^2 has the closed form C = V [s_i s_j (U^T Z V)_ij / (s_i^2 s_j^2 + alpha)] U^T
with K = U S V^T. Kronecker mode, two Mercer kernels: h(x, y) = k_x(x, X_c) @ A @ k_y(Y_c, y), the Kronecker
kernel ridge regression (K_y (x) K_x + alpha I) vec(A) = vec(Z), solved on a full grid by the two
eigendecompositions. Observed pairs that do not fill the grid use matrix-free LSQR (two-sided) or CG (Kronecker)
with the vec trick, never the n_x n_y x n_x n_y matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse
from scipy.sparse.linalg import LinearOperator, cg, lsqr
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..operators import kernel_gram
from ..solvers._linalg import warn_not_converged
from ._common import as_device_tensor, check_scalar_param, resolve_device, resolve_kernel
from ._pairs import check_grid, index_domain, resolve_split, split_pairs

__all__ = ["BinaryKernelRidge"]

_SOLVERS = {"two_sided": ("svd", "lsqr"), "kronecker": ("eigh", "cg")}
_ROWS = 4096  # pairs per prediction block


class BinaryKernelRidge(RegressorMixin, BaseEstimator):
    """Kernel ridge regression on pairs ``(x, y)`` from two domains.

    Pairs are rows of ``X``: the first ``n_features_x`` columns are the query-side point x, the rest the
    key-side point y, so the estimator works in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.
    :meth:`fit_grid` and :meth:`predict_grid` take the two point sets and a full response matrix instead.

    Parameters
    ----------
    kernel : str or Kernel, default="rbf"
        Two-sided mode: the cross-domain kernel kappa(x, y) (an ``AttentionKernel`` when the domains have
        different dimensions). Kronecker mode: the Mercer kernel of the x domain.
    kernel_params : dict, default=None
    kernel_y : str or Kernel, default=None
        Kronecker mode: the Mercer kernel of the y domain (``None``: the same as ``kernel``).
    kernel_y_params : dict, default=None
    alpha : float, default=1.0
        Regularization: ``alpha |C|^2`` (two-sided) or the tensor-product RKHS norm (Kronecker).
    mode : {"two_sided", "kronecker"}, default="two_sided"
    solver : {"auto", "svd", "lsqr", "eigh", "cg"}, default="auto"
        ``"svd"`` / ``"lsqr"`` for two-sided, ``"eigh"`` / ``"cg"`` for Kronecker; ``"auto"`` takes the
        closed form when the observed pairs fill the grid of distinct x and y points, else the iterative one.
    n_features_x : int, default=None
        Number of query-side columns of ``X``; ``None`` splits the columns in half.
    tol : float, default=1e-8
        Relative tolerance of LSQR / CG.
    max_iter : int, default=None
    device : str or torch.device, default="cpu"
        Where the Gram matrices are computed.

    Attributes
    ----------
    kernel_ : Kernel
        The cross-domain kernel (two-sided) or the x-domain kernel (Kronecker).
    kernel_y_ : Kernel or None
        The y-domain kernel (Kronecker mode).
    x_centers_ : ndarray of shape (n_x, n_features_x)
        Distinct query-side training points.
    y_centers_ : ndarray of shape (n_y, n_features_y)
        Distinct key-side training points.
    dual_coef_ : ndarray
        ``C`` of shape (n_y, n_x) (two-sided) or ``A`` of shape (n_x, n_y) (Kronecker).
    solver_ : str
    n_iter_ : int or None
    n_features_in_ : int
    n_features_x_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from rkbs.estimators import BinaryKernelRidge
    >>> from rkbs.kernels import AttentionKernel, get_kernel
    >>> rng = np.random.default_rng(0)
    >>> Xx, Xy = rng.normal(size=(20, 3)), rng.normal(size=(15, 5))
    >>> Z = np.tanh(Xx[:, :1] @ Xy[:, :1].T)
    >>> kappa = AttentionKernel(get_kernel("edp"), rng.normal(size=(3, 4)), rng.normal(size=(5, 4)))
    >>> model = BinaryKernelRidge(kernel=kappa, alpha=1e-3).fit_grid(Xx, Xy, Z)
    >>> model.predict_grid(Xx, Xy).shape
    (20, 15)
    """

    def __init__(self, kernel="rbf", *, kernel_params=None, kernel_y=None, kernel_y_params=None, alpha=1.0,
                 mode="two_sided", solver="auto", n_features_x=None, tol=1e-8, max_iter=None, device="cpu"):
        self.kernel = kernel
        self.kernel_params = kernel_params
        self.kernel_y = kernel_y
        self.kernel_y_params = kernel_y_params
        self.alpha = alpha
        self.mode = mode
        self.solver = solver
        self.n_features_x = n_features_x
        self.tol = tol
        self.max_iter = max_iter
        self.device = device

    # ------------------------------------------------------------------------------------------- fitting
    def fit(self, X, y):
        """Fit on observed pairs (rows of ``X``) and their responses ``y``.

        Parameters
        ----------
        X : array-like of shape (n_pairs, n_features_x + n_features_y)
        y : array-like of shape (n_pairs,)

        Returns
        -------
        self : BinaryKernelRidge
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self.n_features_x_ = resolve_split(X.shape[1], self.n_features_x)
        Xx, Xy = split_pairs(X, self.n_features_x_)
        Xu, a = index_domain(Xx)
        Yu, b = index_domain(Xy)
        return self._fit(Xu, Yu, a, b, np.asarray(y, dtype=np.float64))

    def fit_grid(self, X_x, X_y, Z):
        """Fit on the full response matrix ``Z[a, b]`` for the pairs ``(X_x[a], X_y[b])``.

        Parameters
        ----------
        X_x : array-like of shape (n_x, n_features_x)
        X_y : array-like of shape (n_y, n_features_y)
        Z : array-like of shape (n_x, n_y)

        Returns
        -------
        self : BinaryKernelRidge
        """
        X_x, X_y, Z = check_grid(X_x, X_y, Z)
        self.n_features_x_ = X_x.shape[1]
        self.n_features_in_ = X_x.shape[1] + X_y.shape[1]
        a, b = np.meshgrid(np.arange(X_x.shape[0]), np.arange(X_y.shape[0]), indexing="ij")
        return self._fit(X_x, X_y, a.ravel(), b.ravel(), Z.ravel())

    def _kernels(self):
        if self.mode not in _SOLVERS:
            raise ValueError(f"mode must be 'two_sided' or 'kronecker', got {self.mode!r}")
        kx = resolve_kernel(self.kernel, self.kernel_params)
        if self.mode == "two_sided":
            if self.kernel_y is not None or self.kernel_y_params is not None:
                raise ValueError("kernel_y / kernel_y_params apply to mode='kronecker'; two-sided mode uses "
                                 "one cross-domain kernel")
            return kx, None
        ky = resolve_kernel(self.kernel if self.kernel_y is None else self.kernel_y,
                            self.kernel_y_params if self.kernel_y is not None else self.kernel_params,
                            "kernel_y")
        for name, k in (("kernel", kx), ("kernel_y", ky)):
            if not (k.positive_definite and k.symmetric):
                raise ValueError(f"mode='kronecker' needs two Mercer kernels, but {name} {k.name!r} is not "
                                 "symmetric positive definite; use mode='two_sided' (any kernel)")
        return kx, ky

    def _gram(self, kernel, A, B):
        device, dtype = resolve_device(self.device)
        kernel(A[:2], B[:2])  # the catalogue's dimension checks
        return kernel_gram(kernel, as_device_tensor(A, device, dtype), as_device_tensor(B, device, dtype))

    def _fit(self, Xu, Yu, a, b, z):
        kx, ky = self._kernels()
        alpha = check_scalar_param("alpha", self.alpha, minimum=0.0)
        tol = check_scalar_param("tol", self.tol, minimum=0.0, strict=True)
        max_iter = check_scalar_param("max_iter", self.max_iter, minimum=1, integer=True, allow_none=True)
        nx, ny = Xu.shape[0], Yu.shape[0]
        complete = z.shape[0] == nx * ny and np.unique(a * ny + b).shape[0] == nx * ny
        closed, iterative = _SOLVERS[self.mode]
        solver = (closed if complete else iterative) if self.solver == "auto" else self.solver
        if solver not in _SOLVERS[self.mode]:
            raise ValueError(f"solver={self.solver!r} does not apply to mode={self.mode!r}; choose 'auto' or "
                             f"one of {_SOLVERS[self.mode]}")
        if solver == closed and not complete:
            raise ValueError(f"solver={solver!r} needs responses for the full grid of distinct x and y points "
                             f"({nx} x {ny} pairs, each once); got {z.shape[0]} observations. Use "
                             f"solver={iterative!r} or 'auto'")
        if self.mode == "kronecker" and solver == "eigh" and alpha == 0:
            raise ValueError("alpha must be > 0 for mode='kronecker'")
        self.kernel_, self.kernel_y_ = kx, ky
        self.x_centers_, self.y_centers_ = Xu, Yu
        self.solver_, self.n_iter_ = solver, None
        if self.mode == "two_sided":
            K = self._gram(kx, Xu, Yu)
            if solver == "svd":
                Z = np.empty((nx, ny))
                Z[a, b] = z
                self.dual_coef_ = _two_sided_closed_form(K, Z, alpha)
            else:
                self.dual_coef_, self.n_iter_ = _two_sided_lsqr(K, a, b, z, alpha, tol, max_iter)
        else:
            Kx, Ky = self._gram(kx, Xu, Xu), self._gram(ky, Yu, Yu)
            if solver == "eigh":
                Z = np.empty((nx, ny))
                Z[a, b] = z
                self.dual_coef_ = _kronecker_closed_form(Kx, Ky, Z, alpha)
            else:
                self.dual_coef_, self.n_iter_ = _kronecker_cg(Kx, Ky, a, b, z, alpha, tol, max_iter)
        return self

    # ---------------------------------------------------------------------------------------- prediction
    def _sides(self, Xx, Xy):
        """Left (n, .) and right (., n) factors of h = left @ dual_coef_ @ right."""
        if self.mode == "two_sided":
            return self._gram(self.kernel_, Xx, self.y_centers_), self._gram(self.kernel_, self.x_centers_, Xy)
        return self._gram(self.kernel_, Xx, self.x_centers_), self._gram(self.kernel_y_, self.y_centers_, Xy)

    def predict(self, X):
        """Responses for pairs given as rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_pairs, n_features_x + n_features_y)

        Returns
        -------
        ndarray of shape (n_pairs,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        Xx, Xy = split_pairs(X, self.n_features_x_)
        out = np.empty(X.shape[0])
        for i in range(0, X.shape[0], _ROWS):
            L, R = self._sides(Xx[i : i + _ROWS], Xy[i : i + _ROWS])
            out[i : i + _ROWS] = np.einsum("ij,ji->i", L @ self.dual_coef_, R)
        return out

    def predict_grid(self, X_x, X_y):
        """The full response matrix for every pair of ``X_x`` and ``X_y``.

        Parameters
        ----------
        X_x : array-like of shape (n_x, n_features_x)
        X_y : array-like of shape (n_y, n_features_y)

        Returns
        -------
        ndarray of shape (n_x, n_y)
        """
        check_is_fitted(self)
        X_x, X_y = check_grid(X_x, X_y)
        if X_x.shape[1] != self.n_features_x_ or X_y.shape[1] != self.n_features_in_ - self.n_features_x_:
            raise ValueError(f"X_x and X_y must have {self.n_features_x_} and "
                             f"{self.n_features_in_ - self.n_features_x_} features, got {X_x.shape[1]} and "
                             f"{X_y.shape[1]}")
        L, R = self._sides(X_x, X_y)
        return L @ self.dual_coef_ @ R


def _two_sided_closed_form(K: np.ndarray, Z: np.ndarray, alpha: float) -> np.ndarray:
    """argmin_C |K C K - Z|^2 + alpha |C|^2 (minimum norm when alpha = 0), C of shape (n_y, n_x)."""
    U, s, Vt = scipy.linalg.svd(K, full_matrices=False, check_finite=False)
    ss = np.outer(s, s)
    denom = ss**2 + alpha
    gain = np.divide(ss, denom, out=np.zeros_like(ss), where=denom > (s[0] ** 4) * np.finfo(float).eps)
    return Vt.T @ (gain * (U.T @ Z @ Vt.T)) @ U.T


def _two_sided_lsqr(K, a, b, z, alpha, tol, max_iter):
    nx, ny = K.shape
    R_index = scipy.sparse.coo_matrix((np.ones_like(z), (a, b)), shape=(nx, ny))

    def matvec(c):  # (K C K)[a_i, b_i]
        T = K @ c.reshape(ny, nx)
        return np.einsum("ij,ji->i", T[a], K[:, b])

    def rmatvec(r):  # K^T R K^T with R the scatter of r
        R = scipy.sparse.coo_matrix((r, (R_index.row, R_index.col)), shape=(nx, ny)).tocsr()
        return (K.T @ (R @ K.T)).ravel()

    op = LinearOperator((z.shape[0], nx * ny), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    out = lsqr(op, z, damp=np.sqrt(alpha), atol=tol, btol=tol, iter_lim=max_iter)
    if out[1] == 7:
        warn_not_converged("lsqr", out[2], out[3] / max(np.linalg.norm(z), 1e-300))
    return out[0].reshape(ny, nx), int(out[2])


def _kronecker_closed_form(Kx, Ky, Z, alpha):
    """(K_y (x) K_x + alpha I)^{-1} vec(Z) by the eigendecompositions of K_x and K_y, as an (n_x, n_y) matrix."""
    lx, Qx = scipy.linalg.eigh(Kx, check_finite=False)
    ly, Qy = scipy.linalg.eigh(Ky, check_finite=False)
    # Mercer Gram matrices: eigenvalues below 0 are round-off
    denom = np.outer(np.maximum(lx, 0.0), np.maximum(ly, 0.0)) + alpha
    return Qx @ ((Qx.T @ Z @ Qy) / denom) @ Qy.T


def _kronecker_cg(Kx, Ky, a, b, z, alpha, tol, max_iter):
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

"""BinaryKernelRidge: responses z_ab for cross-domain pairs (x_a, y_b), the binary kernel machine.

Two-sided mode, one cross-domain kernel kappa: X x Y -> R (asymmetric and indefinite allowed):
h(x, y) = kappa(x, Y_c) @ C @ kappa(X_c, y), so on a full grid H = K C K with K = kappa(X_c, Y_c), and
min |K C K - Z|^2 + alpha |C|^2 has the closed form C = V [s_i s_j (U^T Z V)_ij / (s_i^2 s_j^2 + alpha)] U^T
with K = U S V^T. Kronecker mode, two Mercer kernels: h(x, y) = k_x(x, X_c) @ A @ k_y(Y_c, y), the Kronecker
kernel ridge regression (K_y (x) K_x + alpha I) vec(A) = vec(Z), solved on a full grid by the two
eigendecompositions. Observed pairs that do not fill the grid are solved exactly through the dual, an
n_obs x n_obs system (the two-sided machine is Kronecker ridge regression with the kernels K K^T and K^T K), by
Cholesky, or by matrix-free LSQR (two-sided, preconditioned in K's SVD basis) or CG (Kronecker) with the vec
trick, never the n_x n_y x n_x n_y matrix.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..operators import kernel_gram
from ._binary_solvers import (kronecker_cg, kronecker_dual, kronecker_path, two_sided_dual, two_sided_lsqr,
                              two_sided_path)
from ._common import as_device_tensor, check_scalar_param, resolve_device, resolve_kernel
from ._pairs import check_grid, index_domain, resolve_split, split_pairs

__all__ = ["BinaryKernelRidge"]

# per mode: the closed form of a full grid, the dual by Cholesky and the Krylov solver of observed pairs
_SOLVERS = {"two_sided": ("svd", "cholesky", "lsqr"), "kronecker": ("eigh", "cholesky", "cg")}
# "auto" on observed pairs takes the exact dual up to this many pairs, the Krylov solver beyond. Two-sided LSQR
# stalls on exponential kernels (benchmarks/pairwise_solvers.py: 4 of 27 problems unconverged at 20,000
# iterations, preconditioned), where the dual takes 0.3-0.5 s at 2,880 pairs; Kronecker CG (a symmetric positive
# definite system) converged on all 9, in the dual's time or up to 50x less
_AUTO_DUAL_MAX_PAIRS = {"two_sided": 4096, "kronecker": 0}
_PAIR_SOLVERS = {("two_sided", "cholesky"): two_sided_dual, ("kronecker", "cholesky"): kronecker_dual,
                 ("two_sided", "lsqr"): two_sided_lsqr, ("kronecker", "cg"): kronecker_cg}
_MODES = ("auto", "two_sided", "kronecker")
_ROWS = 4096  # pairs per prediction block
_PSD_TOL = 1e-6  # relative size of a negative eigenvalue that is more than round-off


class BinaryKernelRidge(RegressorMixin, BaseEstimator):
    """Kernel ridge regression on pairs ``(x, y)`` from two domains.

    Pairs are rows of ``X``: the first ``n_features_x`` columns are the query-side point x, the rest the
    key-side point y, so the estimator works in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.
    :meth:`fit_grid` and :meth:`predict_grid` take the two point sets and a response matrix instead, in which
    NaN (or ``False`` in ``observed``) marks a pair that was not observed.

    Parameters
    ----------
    kernel : str or Kernel, default="rbf"
        Two-sided mode: the cross-domain kernel kappa(x, y) (an ``AttentionKernel`` when the domains have
        different dimensions). Kronecker mode: the Mercer kernel of the x domain. ``"precomputed"``:
        :meth:`fit_grid` and :meth:`predict_grid` take kernel matrices instead of points (see there).
    kernel_params : dict, default=None
    kernel_y : str or Kernel, default=None
        Kronecker mode: the Mercer kernel of the y domain (``None``: the same as ``kernel``).
    kernel_y_params : dict, default=None
    alpha : float, default=1.0
        Regularization: ``alpha |C|^2`` (two-sided) or the tensor-product RKHS norm (Kronecker).
    alphas : array-like of float, default=None
        A regularisation path (values > 0): with responses on the full grid, one decomposition gives every
        alpha's coefficients and its ``path_criterion``; the alpha with the smallest one is chosen
        (``alpha_``), as in scikit-learn's ``RidgeCV``. ``alpha`` is then ignored.
    path_criterion : {"loo", "gcv"}, default="loo"
        How ``alphas`` are compared: the exact leave-one-pair-out mean squared error (two extra matrix
        products per alpha), or generalized cross-validation, its rotation-invariant approximation
        ``(|Z - H|^2 / n) / (1 - tr(hat) / n)^2`` (O(n) per alpha from the decomposition alone).
    mode : {"auto", "two_sided", "kronecker"}, default="auto"
        ``"auto"``: Kronecker when the kernels are Mercer (symmetric positive definite) or precomputed,
        two-sided otherwise (asymmetric or indefinite kernels such as ``AttentionKernel``).
    solver : {"auto", "svd", "eigh", "cholesky", "lsqr", "cg"}, default="auto"
        ``"svd"`` (two-sided) / ``"eigh"`` (Kronecker): the closed form, for responses on the full grid of
        distinct x and y points. ``"lsqr"`` (two-sided, preconditioned in the SVD basis of K) / ``"cg"``
        (Kronecker): matrix-free Krylov solvers over the observed pairs, to ``tol``. ``"cholesky"``: the dual
        system of the observed pairs (n_obs x n_obs), exact whatever the conditioning, O(n_obs^3) time and
        O(n_obs^2) memory; needs ``alpha > 0``. ``"auto"`` takes the closed form on a full grid; on observed
        pairs, Cholesky in two-sided mode up to 4,096 pairs (LSQR stalls on exponential kernels), else the
        Krylov solver. Use ``"cholesky"`` when a Krylov solver does not converge (a ``ConvergenceWarning``).
    n_features_x : int, default=None
        Number of query-side columns of ``X``; ``None`` splits the columns in half.
    tol : float, default=1e-8
        Relative tolerance of LSQR / CG.
    max_iter : int, default=None
    device : str or torch.device, default="cpu"
        Where the Gram matrices are computed.

    Attributes
    ----------
    mode_ : str
        The resolved mode.
    kernel_ : Kernel or None
        The cross-domain kernel (two-sided) or the x-domain kernel (Kronecker); None when precomputed.
    kernel_y_ : Kernel or None
        The y-domain kernel (Kronecker mode).
    x_centers_ : ndarray of shape (n_x, n_features_x) or None
        Distinct query-side training points (None when precomputed).
    y_centers_ : ndarray of shape (n_y, n_features_y) or None
        Distinct key-side training points (None when precomputed).
    dual_coef_ : ndarray
        ``C`` of shape (n_y, n_x) (two-sided) or ``A`` of shape (n_x, n_y) (Kronecker).
    alpha_ : float
        The regularization used (chosen from ``alphas`` when given).
    dual_coef_path_ : ndarray of shape (n_alphas, *dual_coef_.shape)
        With ``alphas``: the coefficients of every alpha.
    loo_mse_ : ndarray of shape (n_alphas,)
        With ``alphas`` and ``path_criterion="loo"``: the leave-one-pair-out mean squared error of every alpha.
    gcv_mse_ : ndarray of shape (n_alphas,)
        With ``alphas`` and ``path_criterion="gcv"``: the GCV score of every alpha.
    solver_ : str
    n_iter_ : int
        Iterations of the Krylov solver (LSQR, CG); 1 for a direct solve (closed form, Cholesky).
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
    >>> Z[0, 0] = np.nan  # not observed: solved over the other pairs
    >>> BinaryKernelRidge(kernel="rbf", kernel_y="rbf", mode="kronecker").fit_grid(Xx, Xy, Z).solver_
    'cg'
    """

    def __init__(self, kernel="rbf", *, kernel_params=None, kernel_y=None, kernel_y_params=None, alpha=1.0,
                 alphas=None, path_criterion="loo", mode="auto", solver="auto", n_features_x=None, tol=1e-8,
                 max_iter=None, device="cpu"):
        self.kernel = kernel
        self.kernel_params = kernel_params
        self.kernel_y = kernel_y
        self.kernel_y_params = kernel_y_params
        self.alpha = alpha
        self.alphas = alphas
        self.path_criterion = path_criterion
        self.mode = mode
        self.solver = solver
        self.n_features_x = n_features_x
        self.tol = tol
        self.max_iter = max_iter
        self.device = device

    def _precomputed(self) -> bool:
        return isinstance(self.kernel, str) and self.kernel == "precomputed"

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
        self._check_rows_allowed()
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self.n_features_x_ = resolve_split(X.shape[1], self.n_features_x)
        Xx, Xy = split_pairs(X, self.n_features_x_)
        Xu, a = index_domain(Xx)
        Yu, b = index_domain(Xy)
        return self._fit(Xu, Yu, a, b, np.asarray(y, dtype=np.float64))

    def fit_grid(self, X_x, X_y, Z, observed=None):
        """Fit on the response matrix ``Z[a, b]`` of the pairs ``(X_x[a], X_y[b])``; NaN = not observed.

        Parameters
        ----------
        X_x : array-like of shape (n_x, n_features_x)
            The x points. With ``kernel="precomputed"``: Kronecker mode, the x-domain Gram matrix (n_x, n_x);
            two-sided mode, the cross-domain matrix ``kappa(X_train, Y_train)`` of shape (n_x, n_y).
        X_y : array-like of shape (n_y, n_features_y)
            The y points. With ``kernel="precomputed"``: Kronecker mode, the y-domain Gram matrix (n_y, n_y);
            two-sided mode, ``kappa(X_train, Y_train).T`` of shape (n_y, n_x) (or ``None`` for it).
        Z : array-like of shape (n_x, n_y)
            Responses; NaN marks a pair that was not observed.
        observed : array-like of bool of shape (n_x, n_y), default=None
            Which pairs are observed (``Z`` may hold anything where it is False).

        Returns
        -------
        self : BinaryKernelRidge
        """
        if self._precomputed() and X_y is None:
            X_y = np.asarray(X_x, dtype=np.float64).T
        X_x, X_y, Z, mask = check_grid(X_x, X_y, Z, observed)
        self.n_features_x_ = X_x.shape[1]
        self.n_features_in_ = X_x.shape[1] + X_y.shape[1]
        if mask.all():  # the whole grid: no pair indices (a 2,000 x 3,000 grid has 6 million)
            return self._fit(X_x, X_y, None, None, None, Z)
        a, b = np.nonzero(mask)
        return self._fit(X_x, X_y, a, b, Z[a, b])

    def _check_rows_allowed(self):
        if self._precomputed():
            raise ValueError("kernel='precomputed' takes kernel matrices through fit_grid / predict_grid; pair "
                             "rows (fit / predict) need kernels evaluated on points")

    def _resolve_mode(self) -> str:
        if not isinstance(self.mode, str) or self.mode not in _MODES:
            raise ValueError(f"mode must be 'auto', 'two_sided' or 'kronecker', got {self.mode!r}")
        if self.mode != "auto":
            return self.mode
        if self._precomputed():
            return "kronecker"
        kernels = [resolve_kernel(self.kernel, self.kernel_params)]
        if self.kernel_y is not None:
            kernels.append(resolve_kernel(self.kernel_y, self.kernel_y_params, "kernel_y"))
        return "kronecker" if all(k.positive_definite and k.symmetric for k in kernels) else "two_sided"

    def _kernels(self, mode):
        if self._precomputed():
            if self.kernel_params is not None or self.kernel_y is not None or self.kernel_y_params is not None:
                raise ValueError("kernel='precomputed' takes no kernel_params, kernel_y or kernel_y_params")
            return None, None
        kx = resolve_kernel(self.kernel, self.kernel_params)
        if mode == "two_sided":
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

    def _alphas(self):
        if self.alphas is None:
            return None
        alphas = np.asarray(self.alphas, dtype=np.float64)
        if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"alphas must be a non-empty 1-d array of finite values > 0, got {self.alphas!r}")
        if self.path_criterion not in ("loo", "gcv"):
            raise ValueError(f"path_criterion must be 'loo' or 'gcv', got {self.path_criterion!r}")
        return alphas

    def _training_grams(self, mode, kx, ky, Xu, Yu):
        """The Gram matrices the solvers need: (K,) two-sided, (K_x, K_y) Kronecker."""
        if not self._precomputed():
            if mode == "two_sided":
                return (self._gram(kx, Xu, Yu),)
            return self._gram(kx, Xu, Xu), self._gram(ky, Yu, Yu)
        nx, ny = Xu.shape[0], Yu.shape[0]
        if mode == "two_sided":
            if Xu.shape != (nx, ny) or Yu.shape != (ny, nx) or not np.allclose(Xu, Yu.T, rtol=1e-12, atol=0):
                raise ValueError(f"kernel='precomputed' in mode='two_sided' takes X_x = kappa(X_train, Y_train) "
                                 f"of shape (n_x, n_y) and X_y = its transpose (or None); got {Xu.shape} and "
                                 f"{Yu.shape}")
            return (Xu,)
        for name, K in (("X_x", Xu), ("X_y", Yu)):
            if K.shape[0] != K.shape[1]:
                raise ValueError(f"kernel='precomputed' in mode='kronecker' takes square Gram matrices; {name} "
                                 f"has shape {K.shape}")
            scale = max(float(np.abs(K).max()), 1e-300)
            if not np.allclose(K, K.T, rtol=0, atol=1e-10 * scale):
                raise ValueError(f"{name} is not symmetric (max |K - K.T| = {np.abs(K - K.T).max():.3g}); "
                                 "mode='kronecker' needs Mercer kernels: symmetrize it, (K + K.T) / 2, or use "
                                 "mode='two_sided'")
        return Xu, Yu

    def _fit(self, Xu, Yu, a, b, z, Z_full=None):
        """Fit on the observed pairs (a_i, b_i, z_i), or on the full grid ``Z_full`` (then a, b, z are None)."""
        mode = self._resolve_mode()
        kx, ky = self._kernels(mode)
        alpha = check_scalar_param("alpha", self.alpha, minimum=0.0)
        alphas = self._alphas()
        tol = check_scalar_param("tol", self.tol, minimum=0.0, strict=True)
        max_iter = check_scalar_param("max_iter", self.max_iter, minimum=1, integer=True, allow_none=True)
        nx, ny = Xu.shape[0], Yu.shape[0]
        n_obs = nx * ny if Z_full is not None else z.shape[0]
        complete = Z_full is not None or (n_obs == nx * ny and np.unique(a * ny + b).shape[0] == nx * ny)
        closed, dual, iterative = _SOLVERS[mode]
        solver = self.solver
        if solver == "auto":
            small = alpha > 0 and n_obs <= _AUTO_DUAL_MAX_PAIRS[mode]
            solver = closed if complete else dual if small else iterative
        if solver not in _SOLVERS[mode]:
            raise ValueError(f"solver={self.solver!r} does not apply to mode={mode!r}; choose 'auto' or "
                             f"one of {_SOLVERS[mode]}")
        if solver == dual and alpha == 0:
            raise ValueError(f"solver={solver!r} needs alpha > 0 (the dual system is singular at 0); use "
                             f"solver={iterative!r} for the minimum-norm solution")
        if solver == closed and not complete:
            raise ValueError(f"solver={solver!r} needs responses for the full grid of distinct x and y points "
                             f"({nx} x {ny} pairs, each once); got {n_obs} observations. Use "
                             f"solver={iterative!r} or 'auto'")
        if alphas is not None and solver != closed:
            raise ValueError(f"alphas (a regularisation path) needs the closed form solver={closed!r}, i.e. "
                             f"responses for the full grid; got {n_obs} of {nx * ny} pairs. Search alpha "
                             "with rkbs.model_selection splitters and GridSearchCV instead")
        if mode == "kronecker" and solver == "eigh" and alpha == 0 and alphas is None:
            raise ValueError("alpha must be > 0 for mode='kronecker'")
        grams = self._training_grams(mode, kx, ky, Xu, Yu)
        for stale in ("loo_mse_", "gcv_mse_", "dual_coef_path_"):  # path results of an earlier fit
            self.__dict__.pop(stale, None)
        self.mode_, self.kernel_, self.kernel_y_ = mode, kx, ky
        self.x_centers_, self.y_centers_ = (None, None) if self._precomputed() else (Xu, Yu)
        self.solver_, self.n_iter_, self.alpha_ = solver, 1, alpha
        if solver == closed:
            if Z_full is None:
                Z = np.empty((nx, ny))
                Z[a, b] = z
            else:
                Z = Z_full
            path, extra = two_sided_path, {}
            if mode == "kronecker":
                _check_psd(grams, self._precomputed())
                # our own Gram matrices are not needed after their eigendecomposition: factorized in place
                path, extra = kronecker_path, {"overwrite": not self._precomputed()}
            loo = alphas is not None and self.path_criterion == "loo"
            coefs, residuals, gcv = path(*grams, Z, [alpha] if alphas is None else alphas, loo=loo,
                                         gcv=alphas is not None and not loo, **extra)
            if alphas is not None:
                if loo:
                    self.loo_mse_ = scores = np.array([np.mean(r**2) for r in residuals])
                else:
                    self.gcv_mse_ = scores = np.array(gcv)
                if not np.isfinite(scores).any():
                    raise ValueError(f"no alpha of the path has a finite {self.path_criterion} score (the smoother "
                                     "interpolates the grid); use larger alphas")
                best = int(np.nanargmin(np.where(np.isfinite(scores), scores, np.nan)))
                self.alpha_ = float(alphas[best])
                self.dual_coef_path_ = np.stack(coefs)
                coefs = [coefs[best]]
            self.dual_coef_ = coefs[0]
        else:
            if Z_full is not None:  # a solver of observed pairs asked for on the full grid
                a, b = (ix.ravel() for ix in np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij"))
                z = Z_full.ravel()
            krylov = () if solver == dual else (tol, max_iter)
            self.dual_coef_, self.n_iter_ = _PAIR_SOLVERS[mode, solver](*grams, a, b, z, alpha, *krylov)
        return self

    # ---------------------------------------------------------------------------------------- prediction
    def _sides(self, Xx, Xy):
        """Left (n, .) and right (., n) factors of h = left @ dual_coef_ @ right."""
        if self._precomputed():
            return Xx, Xy.T
        if self.mode_ == "two_sided":
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
        self._check_rows_allowed()
        X = validate_data(self, X, dtype=np.float64, reset=False)
        Xx, Xy = split_pairs(X, self.n_features_x_)
        out = np.empty(X.shape[0])
        for i in range(0, X.shape[0], _ROWS):
            L, R = self._sides(Xx[i : i + _ROWS], Xy[i : i + _ROWS])
            out[i : i + _ROWS] = np.einsum("ij,ji->i", L @ self.dual_coef_, R)
        return out

    def predict_grid(self, X_x, X_y):
        """The full response matrix for every pair of ``X_x`` and ``X_y`` (new rows and columns allowed).

        Parameters
        ----------
        X_x : array-like of shape (n_x, n_features_x)
            x points. With ``kernel="precomputed"``: the kernel between them and the training x points
            (Kronecker, (n_x, n_x_train)) or the training y points (two-sided, (n_x, n_y_train)).
        X_y : array-like of shape (n_y, n_features_y)
            y points. With ``kernel="precomputed"``: the kernel between the training y points and them,
            transposed (Kronecker, (n_y, n_y_train)), or ``kappa(X_train, y).T`` (two-sided, (n_y, n_x_train)).

        Returns
        -------
        ndarray of shape (n_x, n_y)
        """
        check_is_fitted(self)
        X_x, X_y = check_grid(X_x, X_y)
        if X_x.shape[1] != self.n_features_x_ or X_y.shape[1] != self.n_features_in_ - self.n_features_x_:
            raise ValueError(f"X_x and X_y must have {self.n_features_x_} and "
                             f"{self.n_features_in_ - self.n_features_x_} features (columns), got {X_x.shape[1]} "
                             f"and {X_y.shape[1]}")
        L, R = self._sides(X_x, X_y)
        return L @ self.dual_coef_ @ R

    def loo_predict_grid(self, Z):
        """Exact leave-one-pair-out predictions of the fitted alpha on the training grid (full grids only).

        Parameters
        ----------
        Z : array-like of shape (n_x, n_y)
            The training responses.

        Returns
        -------
        ndarray of shape (n_x, n_y)
            Entry (a, b) is the prediction for pair (a, b) of the model fitted on every other pair.
        """
        check_is_fitted(self)
        if self.solver_ not in ("svd", "eigh"):
            raise ValueError("loo_predict_grid needs a closed-form fit (a full grid of responses)")
        Z = np.asarray(Z, dtype=np.float64)
        grams = self._stored_grams()
        if Z.shape != (grams[0].shape[0], grams[-1].shape[-1]):
            raise ValueError(f"Z must have the training grid's shape, got {Z.shape}")
        path = two_sided_path if self.mode_ == "two_sided" else kronecker_path
        _, residuals, _ = path(*grams, Z, [self.alpha_], loo=True)
        return Z - residuals[0]

    def _stored_grams(self):
        if self._precomputed():
            raise ValueError("loo_predict_grid is not available with kernel='precomputed' (the training "
                             "matrices are not stored)")
        if self.mode_ == "two_sided":
            return (self._gram(self.kernel_, self.x_centers_, self.y_centers_),)
        return (self._gram(self.kernel_, self.x_centers_, self.x_centers_),
                self._gram(self.kernel_y_, self.y_centers_, self.y_centers_))


def _check_psd(grams, precomputed: bool) -> None:
    """Kronecker mode: a precomputed Gram matrix with clearly negative eigenvalues is no Mercer kernel."""
    if not precomputed:
        return
    for name, K in zip(("X_x", "X_y"), grams):
        lam = np.linalg.eigvalsh(K)
        if lam[0] < -_PSD_TOL * max(lam[-1], 1e-300):
            raise ValueError(f"{name} is not positive semi-definite (smallest eigenvalue {lam[0]:.3g}, largest "
                             f"{lam[-1]:.3g}); mode='kronecker' needs Mercer kernels: clip its spectrum or use "
                             "mode='two_sided'")

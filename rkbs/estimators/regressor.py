"""RKBSRegressor: kernel ridge regression with any kernel of the catalogue (Mercer or not)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._common import accepts_sparse, check_sample_weight, fit_representer, output_dtype, predict_expansion
from ._precomputed import is_precomputed
from ._scale import fit_streamed, is_streamed, predict_streamed

__all__ = ["RKBSRegressor"]


class RKBSRegressor(RegressorMixin, BaseEstimator):
    """Kernel machine ``f(x) = sum_j beta_j kappa(x, c_j)`` for asymmetric and indefinite kernels.

    The centers ``c_j`` are the training inputs, or ``n_components`` Nystroem landmarks drawn from them. With a
    Mercer kernel and ``penalty="rkhs"`` this is exactly scikit-learn's ``KernelRidge``; ``penalty="coef"`` is
    well posed for any kernel; ``penalty="krein"`` solves the indefinite system ``(K + alpha I) beta = y``.
    ``normalize=True`` is the attention (Nadaraya-Watson) form
    ``f(x) = sum_j beta_j kappa(x, c_j) / sum_j kappa(x, c_j)``: an attention layer whose values are learned.

    Parameters
    ----------
    kernel : str or Kernel, default="rbf"
        A name of :func:`rkbs.kernels.list_kernels` or a kernel object (e.g. an ``AttentionKernel``), or
        ``"precomputed"``: ``fit`` takes the training kernel matrix (n, n), ``predict`` the kernel between new
        and training points (n_new, n), as in ``KernelRidge``; its symmetry and definiteness decide the penalty.
    kernel_params : dict, default=None
        Parameters of the kernel (``{"gamma": 0.1}``); with a kernel object, a clone with them is used. A grid
        search can also search ``kernel__gamma`` when ``kernel`` is an object.
    alpha : float or array-like of shape (n_targets,), default=1.0
        Regularization strength (>= 0); an array gives each target its own (as in ``KernelRidge``).
    penalty : {"auto", "coef", "rkhs", "krein"}, default="auto"
        ``"coef"``: min |K beta - y|^2 + alpha |beta|^2 (any kernel). ``"rkhs"``: min |K beta - y|^2 +
        alpha beta^T K beta (Mercer kernels; KernelRidge). ``"krein"``: (K + alpha I) beta = y for indefinite
        kernels. ``"auto"``: ``"rkhs"`` for Mercer kernels (or with ``spectrum``), else ``"coef"``.
    solver : str, default="auto"
        ``"cholesky"``, ``"lstsq"`` (SVD) or ``"lsqr"`` for ``"coef"``; ``"cholesky"``, ``"cg"`` or ``"eigh"``
        for ``"rkhs"``; ``"lu"``, ``"gmres"`` or ``"minres"`` for ``"krein"``. ``"auto"`` picks a dense
        factorization up to 12,000 centers, else the matrix-free Krylov solver. With ``n_components``,
        ``"falkon"`` (``"rkhs"`` or ``"coef"``) is preconditioned CG over row blocks, O(n m) per iteration;
        ``"auto"`` picks it when n m^2 > 2e11.
    normalize : bool, default=False
        Attention form (needs a positive-valued kernel; computed with log-sum-exp for exponential kernels).
    n_components : int, default=None
        Number of Nystroem landmarks; ``None`` uses every training input.
    spectrum : {"clip", "flip", "shift"}, default=None
        For a symmetric indefinite kernel with ``penalty="rkhs"``: make the training Gram matrix positive
        semi-definite (eigenvalues clipped at 0, absolute values, or shifted by the most negative one).
        Prediction evaluates the original kernel at new points.
    tol : float, default=1e-8
        Relative tolerance of the iterative solvers.
    max_iter : int, default=None
        Iteration cap of the iterative solvers (``None``: scipy's default).
    block_size : int, default=None
        Rows per block of the matrix-free kernel products (memory O(block_size * n_centers)).
    random_state : int, RandomState instance or None, default=None
        Draws the Nystroem landmarks.
    landmarks : {"uniform", "leverage"}, default="uniform"
        How the Nystroem landmarks are drawn: uniformly without replacement, or proportionally to approximate
        ridge leverage scores of a uniform pool of 3 n_components rows (Mercer kernels).
    device : str or torch.device, default="cpu"
        Where the kernel products run (float64 on CPU, float32 on CUDA, through the fused Triton kernel when
        one exists for the kernel). Float32 input runs the kernel products in float32 and gives float32
        coefficients and predictions.
    fit_intercept : bool, default=False
        Fit an unpenalized constant ``b``: ``f(x) = K(x, C) beta + b``. Off by default, as ``KernelRidge``
        (which has none).

    Attributes
    ----------
    kernel_ : Kernel
        The resolved kernel.
    centers_ : ndarray of shape (n_centers, n_features)
        Training inputs or Nystroem landmarks.
    dual_coef_ : ndarray of shape (n_centers,) or (n_centers, n_targets)
        The coefficients ``beta``.
    intercept_ : float or ndarray of shape (n_targets,)
        ``b`` (0 unless ``fit_intercept=True``).
    penalty_, solver_ : str
        The resolved penalty and solver.
    n_iter_ : int
        Iterations of an iterative solver (the most over targets); 1 for a direct factorization.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string feature names.

    Examples
    --------
    >>> import numpy as np
    >>> from rkbs.estimators import RKBSRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = np.sin(X[:, 0])
    >>> model = RKBSRegressor(kernel="tanh", penalty="coef", alpha=1e-3).fit(X, y)
    >>> model.predict(X[:2]).shape
    (2,)
    """

    def __init__(self, kernel="rbf", *, kernel_params=None, alpha=1.0, penalty="auto", solver="auto",
                 normalize=False, n_components=None, spectrum=None, tol=1e-8, max_iter=None, block_size=None,
                 random_state=None, device="cpu", fit_intercept=False,
                 landmarks="uniform"):
        self.kernel = kernel
        self.kernel_params = kernel_params
        self.alpha = alpha
        self.penalty = penalty
        self.solver = solver
        self.normalize = normalize
        self.n_components = n_components
        self.spectrum = spectrum
        self.tol = tol
        self.max_iter = max_iter
        self.block_size = block_size
        self.random_state = random_state
        self.device = device
        self.fit_intercept = fit_intercept
        self.landmarks = landmarks

    def fit(self, X, y=None, sample_weight=None):
        """Fit the coefficients by (weighted) penalized least squares.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), numpy.memmap or rkbs.rows.RowChunks
            With ``n_components`` set, a memory map or a RowChunks is read block by block, never copied to
            memory (out of core); without, a memory map is read like any array (a RowChunks needs
            ``n_components``). A RowChunks carries the targets and takes ``y=None``.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the squared errors. An integer weight k is the same as k copies of the
            sample, and a zero weight the same as leaving it out (the centers carry the weights).

        Returns
        -------
        self : RKBSRegressor
        """
        if is_streamed(X, self, sample_weight):
            beta = fit_streamed(self, X, y, sample_weight)
            single = beta.shape[1] == 1 and (y is None or np.ndim(y) == 1)
            self.dual_coef_ = beta[:, 0].copy() if single else beta
            self.intercept_ = 0.0 if single else np.zeros(beta.shape[1])
            return self
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], accept_sparse=("csr", "csc"),
                             multi_output=True, y_numeric=True)
        sw = check_sample_weight(sample_weight, X)
        Z = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
        beta, b = fit_representer(self, X, Z, sw, self.fit_intercept)
        beta, b = beta.astype(X.dtype, copy=False), b.astype(X.dtype, copy=False)
        self.dual_coef_ = beta[:, 0].copy() if y.ndim == 1 else beta
        self.intercept_ = b[0] if y.ndim == 1 else b
        return self

    def predict(self, X):
        """``f(X) = kernel_(X, centers_) @ dual_coef_`` (divided by the row sums with ``normalize=True``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), numpy.memmap or rkbs.rows.RowChunks
            Memory maps and RowChunks are read block by block.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        check_is_fitted(self)
        if is_streamed(X, self):
            out = predict_streamed(self, X, self.dual_coef_) + np.asarray(self.intercept_)
            return out[:, 0] if self.dual_coef_.ndim == 1 else out
        X = validate_data(self, X, dtype=[np.float64, np.float32], accept_sparse=("csr", "csc"), reset=False)
        out = predict_expansion(self, X, self.dual_coef_)
        out += np.asarray(self.intercept_, dtype=out.dtype)
        out = out.astype(output_dtype(X, self), copy=False)
        return out[:, 0] if self.dual_coef_.ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.pairwise = is_precomputed(self.kernel)  # cross-validation slices rows and columns
        tags.input_tags.sparse = accepts_sparse(self)
        return tags

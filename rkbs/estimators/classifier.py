"""RKBSClassifier: one-vs-rest least squares or multinomial logistic loss on a kernel expansion."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._common import (accepts_sparse, check_sample_weight, check_scalar_param, fit_representer, output_dtype,
                      predict_expansion, prepare_representer)
from ._logistic import fit_logistic
from ._precomputed import is_precomputed
from ._scale import fit_streamed, is_streamed, predict_streamed

__all__ = ["RKBSClassifier"]


def _is_logistic(est) -> bool:
    return est.loss == "logistic"


class RKBSClassifier(ClassifierMixin, BaseEstimator):
    """Kernel classifier ``f_c(x) = sum_j B_jc kappa(x, c_j)`` for any kernel of the catalogue.

    ``loss="squared"`` fits one-vs-rest least squares on {-1, +1} targets with the penalties and solvers of
    :class:`RKBSRegressor` (kernel ridge classification). ``loss="logistic"`` minimizes the multinomial
    cross-entropy ``sum_i -log softmax(f(x_i))_{y_i}`` plus ``alpha |B|^2`` (``penalty="coef"``) or
    ``alpha tr(B^T K B)`` (``penalty="rkhs"``) by a trust-region Newton-CG method on whitened features, and
    provides ``predict_proba``.

    Parameters
    ----------
    kernel : str or Kernel, default="rbf"
        A catalogue name, a kernel object, or ``"precomputed"`` (kernel matrices as in ``SVC``).
    kernel_params : dict, default=None
    alpha : float, default=1.0
    loss : {"squared", "logistic"}, default="squared"
    penalty : {"auto", "coef", "rkhs", "krein"}, default="auto"
        As in :class:`RKBSRegressor`; the logistic loss takes ``"coef"`` or ``"rkhs"`` (a convex problem).
    solver : str, default="auto"
        Least-squares solver (``loss="squared"``), see :class:`RKBSRegressor`. The logistic loss uses
        trust-region Newton-CG (``solver_ == "newton-cg"``).
    normalize : bool, default=False
    n_components : int, default=None
    spectrum : {"clip", "flip", "shift"}, default=None
    tol : float, default=1e-6
        Iterative solvers' relative tolerance; the logistic Newton solver stops when the gradient's 2-norm is
        below ``tol * sum(sample_weight)`` (``tol * n_samples`` without weights).
    max_iter : int, default=None
        Iteration cap (``None``: scipy's default for the Krylov solvers, 100 Newton iterations).
    block_size : int, default=None
    random_state : int, RandomState instance or None, default=None
    landmarks : {"uniform", "leverage"}, default="uniform"
        How the Nystroem landmarks are drawn (see :class:`RKBSRegressor`).
    device : str or torch.device, default="cpu"
    fit_intercept : bool, default=False
        Fit unpenalized per-output intercepts.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    kernel_ : Kernel
    centers_ : ndarray of shape (n_centers, n_features)
    dual_coef_ : ndarray of shape (n_centers, n_outputs)
        One column for a binary squared-loss problem, else one per class.
    intercept_ : ndarray of shape (n_outputs,)
        Zeros unless ``fit_intercept=True``.
    penalty_, solver_ : str
    n_iter_ : int
        Iterations of the iterative solver (Krylov or Newton); 1 for a direct factorization.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.preprocessing import StandardScaler
    >>> from rkbs.estimators import RKBSClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> clf = RKBSClassifier(kernel="sigmoid", loss="logistic", alpha=1e-2).fit(X, y)
    >>> clf.predict_proba(X[:1]).shape
    (1, 2)
    """

    def __init__(self, kernel="rbf", *, kernel_params=None, alpha=1.0, loss="squared", penalty="auto",
                 solver="auto", normalize=False, n_components=None, spectrum=None, tol=1e-6, max_iter=None,
                 block_size=None, random_state=None, device="cpu", fit_intercept=False,
                 landmarks="uniform"):
        self.kernel = kernel
        self.kernel_params = kernel_params
        self.alpha = alpha
        self.loss = loss
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

    def fit(self, X, y, sample_weight=None):
        """Fit the classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or numpy.memmap
            With ``n_components`` set and ``loss="squared"``, a memory map is read block by block, never copied
            to memory (out of core; see :class:`RKBSRegressor`).
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the per-sample losses (an integer weight k is k copies of the sample).

        Returns
        -------
        self : RKBSClassifier
        """
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept must be a bool, got {self.fit_intercept!r}")
        if self.loss not in ("squared", "logistic"):
            raise ValueError(f"loss must be 'squared' or 'logistic', got {self.loss!r}")
        streamed = is_streamed(X, self, sample_weight)
        if streamed and (not isinstance(X, np.memmap) or self.loss != "squared"):
            raise ValueError("X: RKBSClassifier reads out-of-core rows from a numpy memory map with "
                             "loss='squared' (labels in memory as y); a RowChunks carries numeric targets: fit "
                             "RKBSRegressor on -1/+1 columns, or load the rows")
        if streamed:
            y = np.asarray(y)
            if y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(f"y must be 1-d with one label per row of X ({X.shape[0]}), got shape {y.shape}")
        else:
            X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], accept_sparse=("csr", "csc"))
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if self.classes_.shape[0] < 2:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}); a classifier needs at least two "
                             "classes")
        if self.loss == "squared":
            Z = LabelBinarizer(neg_label=-1, pos_label=1).fit_transform(y_idx).astype(np.float64)
            check_scalar_param("alpha", self.alpha, minimum=0.0)  # one alpha for every class
            if streamed:
                self.dual_coef_ = fit_streamed(self, X, Z)
                self.intercept_ = np.zeros(Z.shape[1])
                return self
            sw = check_sample_weight(sample_weight, X)
            beta, b = fit_representer(self, X, Z, sw, self.fit_intercept)
            self.dual_coef_, self.intercept_ = beta.astype(X.dtype, copy=False), b.astype(X.dtype, copy=False)
            return self
        if self.spectrum is not None:
            raise ValueError("spectrum applies to loss='squared' only")
        if self.penalty not in ("auto", "coef", "rkhs"):
            raise ValueError(f"loss='logistic' takes penalty 'auto', 'coef' or 'rkhs' (a convex problem), got "
                             f"{self.penalty!r}")
        check_scalar_param("alpha", self.alpha, minimum=0.0)
        sw = check_sample_weight(sample_weight, X)
        Y = np.eye(self.classes_.shape[0])[y_idx]
        problem = prepare_representer(self, X, Y, sw)
        B, b, self.n_iter_ = fit_logistic(problem, self.penalty_, Y, fit_intercept=bool(self.fit_intercept),
                                          max_iter=problem.max_iter, tol=problem.tol)
        self.dual_coef_, self.intercept_ = B.astype(X.dtype, copy=False), b.astype(X.dtype, copy=False)
        self.solver_ = "newton-cg"
        return self

    def _scores(self, X):
        check_is_fitted(self)
        if is_streamed(X, self):
            return predict_streamed(self, X, self.dual_coef_) + np.asarray(self.intercept_)
        X = validate_data(self, X, dtype=[np.float64, np.float32], accept_sparse=("csr", "csc"), reset=False)
        F = predict_expansion(self, X, self.dual_coef_)
        F += np.asarray(self.intercept_, dtype=F.dtype)
        return F.astype(output_dtype(X, self), copy=False)

    def decision_function(self, X):
        """Class scores ``kernel_(X, centers_) @ dual_coef_``; shape (n_samples,) for two classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        F = self._scores(X)
        if F.shape[1] == 2:  # logistic binary: the log-odds of the second class
            return F[:, 1] - F[:, 0]
        return F[:, 0] if F.shape[1] == 1 else F

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        idx = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[idx]

    @available_if(_is_logistic)
    def predict_proba(self, X):
        """Class probabilities (``loss="logistic"`` only): the softmax of the class scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return softmax(self._scores(X), axis=1)

    @available_if(_is_logistic)
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably."""
        return log_softmax(self._scores(X), axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = is_precomputed(self.kernel)  # cross-validation slices rows and columns
        tags.input_tags.sparse = accepts_sparse(self)
        return tags

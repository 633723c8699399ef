"""RKBSClassifier: one-vs-rest least squares or multinomial logistic loss on a kernel expansion."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.optimize
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._common import fit_representer, predict_expansion, prepare_representer

__all__ = ["RKBSClassifier"]


def _is_logistic(est) -> bool:
    return est.loss == "logistic"


class RKBSClassifier(ClassifierMixin, BaseEstimator):
    """Kernel classifier ``f_c(x) = sum_j B_jc kappa(x, c_j)`` for any kernel of the catalogue.

    ``loss="squared"`` fits one-vs-rest least squares on {-1, +1} targets with the penalties and solvers of
    :class:`RKBSRegressor` (kernel ridge classification). ``loss="logistic"`` minimizes the multinomial
    cross-entropy ``sum_i -log softmax(f(x_i))_{y_i}`` plus ``alpha |B|^2`` (``penalty="coef"``) or
    ``alpha tr(B^T K B)`` (``penalty="rkhs"``) by L-BFGS, and provides ``predict_proba``.

    Parameters
    ----------
    kernel : str or Kernel, default="rbf"
    kernel_params : dict, default=None
    alpha : float, default=1.0
    loss : {"squared", "logistic"}, default="squared"
    penalty : {"auto", "coef", "rkhs", "krein"}, default="auto"
        As in :class:`RKBSRegressor`; the logistic loss takes ``"coef"`` or ``"rkhs"`` (a convex problem).
    solver : str, default="auto"
        Least-squares solver (``loss="squared"``), see :class:`RKBSRegressor`. The logistic loss uses L-BFGS.
    normalize : bool, default=False
    n_components : int, default=None
    spectrum : {"clip", "flip", "shift"}, default=None
    tol : float, default=1e-6
        Iterative solvers' relative tolerance; L-BFGS stops when the largest gradient entry is below
        ``tol * n_samples``.
    max_iter : int, default=None
        Iteration cap (``None``: scipy's default, 1000 for L-BFGS).
    block_size : int, default=None
    random_state : int, RandomState instance or None, default=None
    device : str or torch.device, default="cpu"
    landmarks : {"uniform", "leverage"}, default="uniform"
        How the Nystroem landmarks are drawn (see :class:`RKBSRegressor`).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    kernel_ : Kernel
    centers_ : ndarray of shape (n_centers, n_features)
    dual_coef_ : ndarray of shape (n_centers, n_outputs)
        One column for a binary squared-loss problem, else one per class.
    penalty_, solver_ : str
    n_iter_ : int or None
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
                 block_size=None, random_state=None, device="cpu", landmarks="uniform"):
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
        self.landmarks = landmarks

    def fit(self, X, y):
        """Fit the classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self : RKBSClassifier
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        if self.loss not in ("squared", "logistic"):
            raise ValueError(f"loss must be 'squared' or 'logistic', got {self.loss!r}")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if self.classes_.shape[0] < 2:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}); a classifier needs at least two "
                             "classes")
        if self.loss == "squared":
            Z = LabelBinarizer(neg_label=-1, pos_label=1).fit_transform(y_idx).astype(np.float64)
            self.dual_coef_ = fit_representer(self, X, Z)
            return self
        if self.spectrum is not None:
            raise ValueError("spectrum applies to loss='squared' only")
        if self.penalty not in ("auto", "coef", "rkhs"):
            raise ValueError(f"loss='logistic' takes penalty 'auto', 'coef' or 'rkhs' (a convex problem), got "
                             f"{self.penalty!r}")
        Y = np.eye(self.classes_.shape[0])[y_idx]
        problem = prepare_representer(self, X, Y)
        self.dual_coef_ = self._fit_logistic(problem)
        self.solver_ = "lbfgs"
        return self

    def _fit_logistic(self, problem):
        A = problem.design()
        if A.shape[0] * A.shape[1] <= 1 << 24:
            A = A.to_dense()  # small problems: one Gram matrix instead of two kernel passes per iteration
        # alpha tr(B^T K B) whitened: B = T W with T = U diag(lam^-1/2) over K's numerically positive
        # eigenvalues turns the penalty into alpha |W|^2, which L-BFGS solves in far fewer steps
        T = None
        if self.penalty_ == "rkhs":
            lam, U = scipy.linalg.eigh(problem.center_gram_operator().to_dense())
            keep = lam > lam.max() * lam.shape[0] * np.finfo(float).eps
            T = U[:, keep] / np.sqrt(lam[keep])
        Y = problem.Z
        shape, alpha = (problem.m if T is None else T.shape[1], Y.shape[1]), float(self.alpha)

        def objective(wflat):
            W = wflat.reshape(shape)
            B = W if T is None else T @ W
            logp = log_softmax(A @ B, axis=1)
            G = A.T @ (np.exp(logp) - Y)
            grad = (G if T is None else T.T @ G) + 2.0 * alpha * W
            return -(Y * logp).sum() + alpha * (W * W).sum(), grad.ravel()

        res = scipy.optimize.minimize(
            objective, np.zeros(shape[0] * shape[1]), jac=True, method="L-BFGS-B",
            options={"maxiter": self.max_iter or 1000, "gtol": self.tol * problem.n, "ftol": 1e-15},
        )
        if not res.success and res.nit >= (self.max_iter or 1000):
            warnings.warn(ConvergenceWarning(f"L-BFGS did not converge in {res.nit} iterations: {res.message}; "
                                             "increase max_iter or alpha"), stacklevel=3)
        self.n_iter_ = int(res.nit)
        W = res.x.reshape(shape)
        return W if T is None else T @ W

    def decision_function(self, X):
        """Class scores ``kernel_(X, centers_) @ dual_coef_``; shape (n_samples,) for two classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        F = predict_expansion(self, X, self.dual_coef_)
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
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return softmax(predict_expansion(self, X, self.dual_coef_), axis=1)

    @available_if(_is_logistic)
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return log_softmax(predict_expansion(self, X, self.dual_coef_), axis=1)

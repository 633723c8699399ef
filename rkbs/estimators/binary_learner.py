"""BinaryKernelLearner: the Transformer as a kernel learner.

It fits h(x, y) = sum_h w_h exp(<x W_q^h, y W_k^h> / sqrt(d)) -- H heads of the attention kernel, each an
``AttentionKernel(EDP(), W_q^h, W_k^h)``, mixed by output weights -- to pairwise responses by gradient descent
(Adam, full batch) in torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..kernels import EDP, AttentionKernel
from ._common import as_device_tensor, check_scalar_param, resolve_device
from ._pairs import check_grid, resolve_split, split_pairs

__all__ = ["BinaryKernelLearner"]


class BinaryKernelLearner(RegressorMixin, BaseEstimator):
    """Learn an attention-form binary kernel from responses on pairs ``(x, y)``.

    The model is ``h(x, y) = sum_{h=1}^H w_h exp(<x W_q^h, y W_k^h> / sqrt(d))`` with ``W_q^h`` of shape
    (n_features_x, d) and ``W_k^h`` of shape (n_features_y, d). The parameters minimize the mean squared error
    plus ``alpha`` times their squared norm, by full-batch Adam from a seeded initialization.

    Parameters
    ----------
    n_heads : int, default=4
        H, the number of heads.
    head_dim : int, default=8
        d, the dimension of the query and key maps.
    alpha : float, default=0.0
        Weight decay (l2 on all parameters).
    learning_rate : float, default=0.01
        Adam's step size.
    max_iter : int, default=500
        Number of Adam steps at most.
    tol : float, default=1e-6
        Stop when the loss has improved by less than ``tol`` (relative) over the last 20 steps.
    n_features_x : int, default=None
        Number of query-side columns of ``X``; ``None`` splits the columns in half.
    random_state : int, RandomState instance or None, default=0
        Seeds the initialization.
    device : str or torch.device, default="cpu"

    Attributes
    ----------
    query_maps_ : ndarray of shape (n_heads, n_features_x, head_dim)
    key_maps_ : ndarray of shape (n_heads, n_features_y, head_dim)
    head_weights_ : ndarray of shape (n_heads,)
    loss_curve_ : list of float
        Training loss (mean squared error + penalty) per step.
    n_iter_ : int
    n_features_in_ : int
    n_features_x_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from rkbs.estimators import BinaryKernelLearner
    >>> rng = np.random.default_rng(0)
    >>> Xx, Xy = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    >>> Z = np.exp(-0.5 * ((Xx[:, None, :] - Xy[None]) ** 2).sum(-1))
    >>> model = BinaryKernelLearner(n_heads=2, head_dim=2, max_iter=50).fit_grid(Xx, Xy, Z)
    >>> model.predict_grid(Xx, Xy).shape
    (30, 30)
    """

    def __init__(self, n_heads=4, head_dim=8, *, alpha=0.0, learning_rate=0.01, max_iter=500, tol=1e-6,
                 n_features_x=None, random_state=0, device="cpu"):
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.n_features_x = n_features_x
        self.random_state = random_state
        self.device = device

    @property
    def kernels_(self) -> list[AttentionKernel]:
        """The learned heads as catalogue kernels ``AttentionKernel(EDP(1/sqrt(d)), W_q^h, W_k^h)``."""
        check_is_fitted(self)
        scale = 1.0 / math.sqrt(self.query_maps_.shape[2])
        return [AttentionKernel(EDP(scale=scale), Wq, Wk) for Wq, Wk in zip(self.query_maps_, self.key_maps_)]

    def fit(self, X, y):
        """Fit on pairs given as rows of ``X`` and their responses ``y``.

        Parameters
        ----------
        X : array-like of shape (n_pairs, n_features_x + n_features_y)
        y : array-like of shape (n_pairs,)

        Returns
        -------
        self : BinaryKernelLearner
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self.n_features_x_ = resolve_split(X.shape[1], self.n_features_x)
        Xx, Xy = split_pairs(X, self.n_features_x_)
        return self._fit(Xx, Xy, np.asarray(y, dtype=np.float64))

    def fit_grid(self, X_x, X_y, Z):
        """Fit on the full response matrix ``Z[a, b]`` of the pairs ``(X_x[a], X_y[b])``.

        Parameters
        ----------
        X_x : array-like of shape (n_x, n_features_x)
        X_y : array-like of shape (n_y, n_features_y)
        Z : array-like of shape (n_x, n_y)

        Returns
        -------
        self : BinaryKernelLearner
        """
        X_x, X_y, Z = check_grid(X_x, X_y, Z)
        self.n_features_x_ = X_x.shape[1]
        self.n_features_in_ = X_x.shape[1] + X_y.shape[1]
        a, b = np.meshgrid(np.arange(X_x.shape[0]), np.arange(X_y.shape[0]), indexing="ij")
        return self._fit(X_x[a.ravel()], X_y[b.ravel()], Z.ravel())

    def _fit(self, Xx, Xy, z):
        H = check_scalar_param("n_heads", self.n_heads, minimum=1, integer=True)
        d = check_scalar_param("head_dim", self.head_dim, minimum=1, integer=True)
        alpha = check_scalar_param("alpha", self.alpha, minimum=0.0)
        lr = check_scalar_param("learning_rate", self.learning_rate, minimum=0.0, strict=True)
        max_iter = check_scalar_param("max_iter", self.max_iter, minimum=1, integer=True)
        tol = check_scalar_param("tol", self.tol, minimum=0.0)
        device, dtype = resolve_device(self.device)
        gen = torch.Generator(device="cpu").manual_seed(int(check_random_state(self.random_state).randint(2**31)))
        dx, dy = Xx.shape[1], Xy.shape[1]
        # unit-variance logits at initialization: <x Wq, y Wk> / sqrt(d) has variance ~1 whatever the input scale
        rms_x = max(float(np.sqrt(np.mean(Xx**2))), 1e-12)
        rms_y = max(float(np.sqrt(np.mean(Xy**2))), 1e-12)
        Wq = (torch.randn(H, dx, d, generator=gen, dtype=torch.float64) / (math.sqrt(dx) * rms_x)).to(device, dtype)
        Wk = (torch.randn(H, dy, d, generator=gen, dtype=torch.float64) / (math.sqrt(dy) * rms_y)).to(device, dtype)
        w = torch.full((H,), float(np.mean(z)) / (H * math.e ** 0.5), dtype=dtype, device=device)
        params = [p.requires_grad_() for p in (Wq, Wk, w)]
        xs, ys, zs = (as_device_tensor(v, device, dtype) for v in (Xx, Xy, z))
        opt = torch.optim.Adam(params, lr=lr)
        self.loss_curve_ = []
        for it in range(max_iter):
            opt.zero_grad()
            loss = torch.mean((_pair_response(xs, ys, Wq, Wk, w) - zs) ** 2)
            if alpha > 0:
                loss = loss + alpha * sum((p**2).sum() for p in params)
            if not torch.isfinite(loss):
                raise ValueError("the training loss became non-finite (exp overflow); lower learning_rate or "
                                 "standardize the inputs")
            loss.backward()
            opt.step()
            self.loss_curve_.append(float(loss.detach()))
            window = 20
            if it >= window and self.loss_curve_[-window - 1] - self.loss_curve_[-1] <= tol * abs(
                    self.loss_curve_[-window - 1]):
                break
        self.n_iter_ = it + 1
        self.query_maps_ = Wq.detach().double().cpu().numpy()
        self.key_maps_ = Wk.detach().double().cpu().numpy()
        self.head_weights_ = w.detach().double().cpu().numpy()
        return self

    def _tensors(self):
        device, dtype = resolve_device(self.device)
        return tuple(as_device_tensor(v, device, dtype) for v in (self.query_maps_, self.key_maps_,
                                                                   self.head_weights_))

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
        device, dtype = resolve_device(self.device)
        with torch.no_grad():
            out = _pair_response(as_device_tensor(Xx, device, dtype), as_device_tensor(Xy, device, dtype),
                                 *self._tensors())
        return _finite(out)

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
        if X_x.shape[1] != self.query_maps_.shape[1] or X_y.shape[1] != self.key_maps_.shape[1]:
            raise ValueError(f"X_x and X_y must have {self.query_maps_.shape[1]} and {self.key_maps_.shape[1]} "
                             f"features, got {X_x.shape[1]} and {X_y.shape[1]}")
        device, dtype = resolve_device(self.device)
        Wq, Wk, w = self._tensors()
        with torch.no_grad():
            Q = as_device_tensor(X_x, device, dtype) @ Wq  # (H, n_x, d)
            K = as_device_tensor(X_y, device, dtype) @ Wk  # (H, n_y, d)
            out = torch.einsum("h,hab->ab", w, torch.exp(Q @ K.transpose(1, 2) / math.sqrt(Wq.shape[2])))
        return _finite(out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a sum of H exponential heads fitted by a fixed number of Adam steps is not a universal regressor
        # on arbitrary pair rows (scikit-learn's generic regression data): no promise of R^2 > 0.5 there
        tags.regressor_tags.poor_score = True
        return tags


def _pair_response(x, y, Wq, Wk, w):
    """h(x_i, y_i) for paired rows: (n,)."""
    logits = ((x @ Wq) * (y @ Wk)).sum(-1) / math.sqrt(Wq.shape[2])  # (H, n)
    return w @ torch.exp(logits)


def _finite(out: torch.Tensor) -> np.ndarray:
    if not bool(torch.isfinite(out).all()):
        raise ValueError("the learned kernel overflows on these inputs (non-finite responses); standardize them")
    return out.double().cpu().numpy()

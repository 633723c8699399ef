"""BinaryKernelLearner: the Transformer as a kernel learner.

It fits h(x, y) = sum_h w_h exp(s(<x W_q^h + b_q^h, y W_k^h + b_k^h> / sqrt(d))) -- H heads of the attention
kernel with soft-capped logits s, mixed by output weights -- to pairwise responses by gradient descent (Adam,
full batch) in torch, with weight decay, a validation split, early stopping with best-parameter restore and a
learning-rate schedule. It trains on standardized features and responses scaled to unit mean square, and folds
the scales back into the maps, biases and weights, so the returned kernel takes the raw features.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._common import as_device_tensor, check_scalar_param, resolve_device
from ._learned_kernel import LearnedAttentionKernel, check_head
from ._learner_training import (EXPLODED, INIT_STD, finite, initial_head_mean, pair_response, scheduler,
                                snapshot, standardizer, warn_training)
from ._pairs import check_grid, index_domain, resolve_split, split_pairs

__all__ = ["BinaryKernelLearner"]

_SCHEDULES = ("constant", "cosine", "plateau")
_VALIDATION_SPLITS = ("pairs", "rows", "columns", "both")


class BinaryKernelLearner(RegressorMixin, BaseEstimator):
    """Learn an attention-form binary kernel from responses on pairs ``(x, y)``.

    The model is ``h(x, y) = sum_{h=1}^H w_h exp(s(<x W_q^h + b_q^h, y W_k^h + b_k^h> / sqrt(d)))`` with
    ``W_q^h`` of shape (n_features_x, d) and ``W_k^h`` of shape (n_features_y, d); the biases (``bias=True``) let
    heads carry per-row and per-column effects, and ``s(l) = c tanh(l / c)`` soft-caps the logits at
    ``c = logit_cap``, so that no head exceeds ``exp(c)`` on points unlike the training ones (an uncapped
    exponential head extrapolates to new rows or columns without bound). The parameters minimize the mean
    squared error on the observed pairs plus ``alpha`` times their squared norm (weight decay), by full-batch
    Adam from a seeded initialization. Training is scale-free: the features of each side are standardized and
    the responses divided by their root mean square (so ``alpha`` and ``learning_rate`` mean the same on any
    data), and the scales are folded back into the returned parameters.

    With ``early_stopping`` a random ``validation_fraction`` of the observed pairs is held out; training stops
    when its loss has not improved by ``tol`` (relative) for ``n_iter_no_change`` steps, and the parameters with
    the best validation loss are restored (the initialization included, so the model returned is never worse
    on the validation pairs than the initial one). Without it, the training objective is monitored the same
    way. A ``ConvergenceWarning`` is raised when training stops at ``max_iter``, when the loss diverges
    (non-finite, or ten times its initial value), when it was rising (twice its best) at the stop, and when no
    step improved on the initialization.

    The learned kernel (``kernel_``) can be handed to :class:`BinaryKernelRidge` (learn the kernel, then solve
    the two-sided expansion in closed form), and ``KernelAttention.from_estimator`` builds the attention layer
    whose output for a query x is ``h(x, Y_train)`` (keys: the distinct training y points, values: identity).

    Parameters
    ----------
    n_heads : int, default=4
        H, the number of heads.
    head_dim : int, default=8
        d, the dimension of the query and key maps.
    alpha : float, default=1e-2
        Weight decay (l2 on all parameters, in the standardized units): it keeps the maps small, hence the
        kernel smooth, which is what lets it generalise to new rows and columns.
    learning_rate : float, default=0.01
        Adam's initial step size.
    learning_rate_schedule : {"constant", "cosine", "plateau"}, default="plateau"
        ``"cosine"`` anneals to 0 over ``max_iter`` steps; ``"plateau"`` halves the step size when the
        monitored loss has not improved for ``max(1, n_iter_no_change // 4)`` steps.
    max_iter : int, default=500
        Number of Adam steps at most.
    tol : float, default=1e-6
        Relative improvement of the monitored loss that counts as progress.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the pairs and monitor their loss (when there are at least 2 pairs
        on both sides of the split; else the training objective is monitored).
    validation_fraction : float, default=0.1
    validation_split : {"pairs", "rows", "columns", "both"}, default="pairs"
        What the held-out pairs have in common, as in :class:`rkbs.model_selection.PairwiseKFold`: random pairs,
        every pair of a random ``validation_fraction`` of the rows (to stop where new rows are predicted best),
        of the columns, or of both (``validation_fraction`` of the rows and of the columns; pairs sharing a row
        or a column with the validation block are left out of training).
    n_iter_no_change : int, default=50
    bias : bool, default=True
        Biases of the query and key maps.
    logit_cap : float or None, default=None
        ``c`` of the soft cap ``c tanh(l / c)`` of the (standardized-input) logits; None for none.
    head : {"exp", "rbf"}, default="exp"
        ``"rbf"`` replaces every head by ``exp(-|q - k|^2 / (2 sqrt(d)))`` with ``q = x W_q^h + b_q^h`` and
        ``k = y W_k^h + b_k^h``: the exponential head without its row and column factors, bounded by 1, so
        it extrapolates to new rows and columns as smoothly as an RBF kernel (see ``docs/pairs.md``).
    ensemble_size : int, default=1
        R, the number of learners averaged: each trains from its own initialization and validation split (the
        first from ``random_state``, the others from seeds drawn from it), and the model is their mean, itself
        a learned kernel with ``R * n_heads`` heads (weights divided by R). Averaging removes much of the
        variance between initializations and validation splits, the largest error of a single learner on
        new rows and columns (``docs/pairs.md``); it costs R fits.
    n_features_x : int, default=None
        Number of query-side columns of ``X``; ``None`` splits the columns in half.
    random_state : int, RandomState instance or None, default=0
        Seeds the initialization and the validation split.
    device : str or torch.device, default="cpu"

    Attributes
    ----------
    query_maps_ : ndarray of shape (ensemble_size * n_heads, n_features_x, head_dim)
    key_maps_ : ndarray of shape (ensemble_size * n_heads, n_features_y, head_dim)
    query_bias_, key_bias_ : ndarray of shape (ensemble_size * n_heads, head_dim)
    head_weights_ : ndarray of shape (ensemble_size * n_heads,)
    kernel_ : LearnedAttentionKernel
        The learned kernel: ``predict_grid(X_x, X_y) == kernel_(X_x, X_y)``.
    centers_ : ndarray of shape (n_y, n_features_y)
        The distinct training y points (keys of ``KernelAttention.from_estimator``).
    dual_coef_ : ndarray of shape (n_y, n_y)
        The identity (values of ``KernelAttention.from_estimator``).
    estimators_ : list of BinaryKernelLearner
        The ``ensemble_size`` fitted members (each an ensemble of one).
    loss_curve_ : list of float
        Training objective (mean squared error + penalty) per step, in units of the responses' mean square
        (of the first member; every member's is in ``estimators_``, as are the three attributes below).
    validation_scores_ : list of float
        Monitored loss per step, starting with the initialization's (validation MSE with early stopping), in
        units of the responses' mean square.
    best_iter_ : int
        The step whose parameters were restored (0: the initialization).
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
    >>> model = BinaryKernelLearner(n_heads=2, head_dim=2, max_iter=100, learning_rate=0.05).fit_grid(Xx, Xy, Z)
    >>> model.predict_grid(Xx, Xy).shape
    (30, 30)
    """

    def __init__(self, n_heads=4, head_dim=8, *, alpha=1e-2, learning_rate=0.01, learning_rate_schedule="plateau",
                 max_iter=500, tol=1e-6, early_stopping=True, validation_fraction=0.1, validation_split="pairs",
                 n_iter_no_change=50, bias=True, logit_cap=None, head="exp", ensemble_size=1, n_features_x=None,
                 random_state=0, device="cpu"):
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.validation_split = validation_split
        self.n_iter_no_change = n_iter_no_change
        self.bias = bias
        self.logit_cap = logit_cap
        self.head = head
        self.ensemble_size = ensemble_size
        self.n_features_x = n_features_x
        self.random_state = random_state
        self.device = device

    @property
    def kernel_(self) -> LearnedAttentionKernel:
        """The learned kernel (all heads, weighted)."""
        check_is_fitted(self)
        return LearnedAttentionKernel(self.query_maps_, self.key_maps_, self.head_weights_, self.query_bias_,
                                      self.key_bias_, self.logit_cap_, self.head)

    @property
    def kernels_(self) -> list[LearnedAttentionKernel]:
        """The learned heads, each with unit weight (``kernel_`` is their sum weighted by ``head_weights_``)."""
        check_is_fitted(self)
        return [LearnedAttentionKernel(Wq[None], Wk[None], np.ones(1), bq[None], bk[None], self.logit_cap_, self.head)
                for Wq, Wk, bq, bk in zip(self.query_maps_, self.key_maps_, self.query_bias_, self.key_bias_)]

    @property
    def dual_coef_(self) -> np.ndarray:
        check_is_fitted(self)
        return np.eye(self.centers_.shape[0])

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
        Xu, a = index_domain(Xx)
        Yu, b = index_domain(Xy)
        return self._fit(Xu, Yu, a, b, np.asarray(y, dtype=np.float64))

    def fit_grid(self, X_x, X_y, Z, observed=None):
        """Fit on the response matrix ``Z[a, b]`` of the pairs ``(X_x[a], X_y[b])``; NaN = not observed.

        Parameters
        ----------
        X_x : array-like of shape (n_x, n_features_x)
        X_y : array-like of shape (n_y, n_features_y)
        Z : array-like of shape (n_x, n_y)
            Responses; NaN marks a pair that was not observed.
        observed : array-like of bool of shape (n_x, n_y), default=None
            Which pairs are observed.

        Returns
        -------
        self : BinaryKernelLearner
        """
        X_x, X_y, Z, mask = check_grid(X_x, X_y, Z, observed)
        self.n_features_x_ = X_x.shape[1]
        self.n_features_in_ = X_x.shape[1] + X_y.shape[1]
        a, b = np.nonzero(mask)
        return self._fit(X_x, X_y, a, b, Z[a, b])

    def _check_params(self):
        p = {
            "H": check_scalar_param("n_heads", self.n_heads, minimum=1, integer=True),
            "d": check_scalar_param("head_dim", self.head_dim, minimum=1, integer=True),
            "alpha": check_scalar_param("alpha", self.alpha, minimum=0.0),
            "lr": check_scalar_param("learning_rate", self.learning_rate, minimum=0.0, strict=True),
            "max_iter": check_scalar_param("max_iter", self.max_iter, minimum=1, integer=True),
            "tol": check_scalar_param("tol", self.tol, minimum=0.0),
            "frac": check_scalar_param("validation_fraction", self.validation_fraction, minimum=0.0, strict=True),
            "patience": check_scalar_param("n_iter_no_change", self.n_iter_no_change, minimum=1, integer=True),
            "cap": check_scalar_param("logit_cap", self.logit_cap, minimum=0.0, strict=True, allow_none=True),
            "R": check_scalar_param("ensemble_size", self.ensemble_size, minimum=1, integer=True),
        }
        p["head"] = check_head(self.head, p["cap"])
        if p["frac"] >= 1:
            raise ValueError(f"validation_fraction must be < 1, got {self.validation_fraction!r}")
        if self.validation_split not in _VALIDATION_SPLITS:
            raise ValueError(f"validation_split must be one of {_VALIDATION_SPLITS}, got {self.validation_split!r}")
        if self.learning_rate_schedule not in _SCHEDULES:
            raise ValueError(f"learning_rate_schedule must be one of {_SCHEDULES}, got "
                             f"{self.learning_rate_schedule!r}")
        for name in ("early_stopping", "bias"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        return p

    def _validation_split(self, a, b, n_x, n_y, frac, rng):
        """Validation and training masks over the pairs; pairs in neither are dropped (``"both"``)."""
        n = a.shape[0]
        val, train = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
        if not self.early_stopping:
            return val, train
        if self.validation_split == "pairs":
            val[rng.permutation(n)[: int(round(frac * n))]] = True
        else:
            # "both": frac of the rows and of the columns. Pairs sharing a row or a column with the validation
            # block are dropped, so training keeps (1 - frac)^2 of the grid (holding out sqrt(frac) of each side
            # kept only 30% of it at frac = 0.2, too little to learn from)
            side = frac
            rows = np.isin(a, rng.permutation(n_x)[: int(round(side * n_x))]) if self.validation_split in (
                "rows", "both") else np.ones(n, dtype=bool)
            cols = np.isin(b, rng.permutation(n_y)[: int(round(side * n_y))]) if self.validation_split in (
                "columns", "both") else np.ones(n, dtype=bool)
            val = rows & cols
            if self.validation_split == "both":
                train = ~rows & ~cols
        train = train | val
        if val.sum() < 2 or (train & ~val).sum() < 2:  # too few pairs to hold any out: monitor training
            return np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
        return val, train

    def _fit(self, Xu, Yu, a, b, z):
        """Fit ``ensemble_size`` members and average them: their heads side by side, weights divided by R."""
        R = self._check_params()["R"]  # before any member trains
        rng = check_random_state(self.random_state)
        # the first member keeps random_state itself, so an ensemble of one is the single learner
        seeds = [self.random_state] + [int(s) for s in rng.randint(2**31, size=R - 1)]
        members = []
        for seed in seeds:  # a loop, not a comprehension: the training warnings point at the caller's line
            members.append(clone(self).set_params(ensemble_size=1, random_state=seed)._fit_member(Xu, Yu, a, b, z))
        for name in ("query_maps_", "key_maps_", "query_bias_", "key_bias_"):
            setattr(self, name, np.concatenate([getattr(m, name) for m in members]))
        self.head_weights_ = np.concatenate([m.head_weights_ for m in members]) / R
        first = members[0]
        for name in ("logit_cap_", "response_scale_", "centers_", "loss_curve_", "validation_scores_", "n_iter_",
                     "best_iter_"):
            setattr(self, name, getattr(first, name))
        for m in members:  # the members predict on their own, too
            m.n_features_x_, m.n_features_in_ = self.n_features_x_, self.n_features_in_
        self.estimators_ = members
        return self

    def _fit_member(self, Xu, Yu, a, b, z):
        p = self._check_params()
        H, d = p["H"], p["d"]
        device, dtype = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        gen = torch.Generator(device="cpu").manual_seed(int(rng.randint(2**31)))
        val, train = self._validation_split(a, b, Xu.shape[0], Yu.shape[0], p["frac"], rng)
        a, b, z, val = a[train], b[train], z[train], val[train]
        dx, dy = Xu.shape[1], Yu.shape[1]
        # scale-free training: standardized features, responses of unit mean square (folded back at the end)
        (mu_x, sd_x), (mu_y, sd_y) = standardizer(Xu), standardizer(Yu)
        z_scale = max(float(np.sqrt(np.mean(z[~val] ** 2))), 1e-300)
        Yu_raw = Yu
        Xu, Yu, z = (Xu - mu_x) / sd_x, (Yu - mu_y) / sd_y, z / z_scale
        # logits <x Wq, y Wk> / sqrt(d) of standard deviation INIT_STD whatever the input scale: the initial
        # model is nearly the constant mean, and no exp() outlier dominates the first steps
        rms_x = max(float(np.sqrt(np.mean(Xu**2))), 1e-12)
        rms_y = max(float(np.sqrt(np.mean(Yu**2))), 1e-12)
        side = math.sqrt(INIT_STD)
        Wq = side * torch.randn(H, dx, d, generator=gen, dtype=torch.float64) / (math.sqrt(dx) * rms_x)
        Wk = side * torch.randn(H, dy, d, generator=gen, dtype=torch.float64) / (math.sqrt(dy) * rms_y)
        w = torch.full((H,), float(np.mean(z[~val])) / (H * initial_head_mean(p["head"], d)), dtype=torch.float64)
        params = [t.to(device, dtype).requires_grad_() for t in (Wq, Wk, w)]
        if self.bias:
            params += [torch.zeros(H, d, dtype=dtype, device=device, requires_grad=True) for _ in range(2)]
        xs, ys = as_device_tensor(Xu, device, dtype), as_device_tensor(Yu, device, dtype)
        idx = [(torch.as_tensor(a[m], device=device), torch.as_tensor(b[m], device=device),
                as_device_tensor(z[m], device, dtype)) for m in (~val, val)]
        monitor = idx[1] if val.any() else None

        def mse(part, ps):
            ia, ib, zt = part
            return torch.mean((pair_response(xs, ys, ia, ib, *ps, cap=p["cap"], head=p["head"]) - zt) ** 2)

        def objective(ps):
            loss = mse(idx[0], ps)
            return loss + p["alpha"] * sum((t**2).sum() for t in ps) if p["alpha"] > 0 else loss

        def score(ps):
            with torch.no_grad():
                return float(mse(monitor, ps) if monitor is not None else objective(ps))

        opt = torch.optim.Adam(params, lr=p["lr"])
        sched = scheduler(self.learning_rate_schedule, opt, p["max_iter"], p["patience"])
        self.loss_curve_, self.validation_scores_ = [], [score(params)]
        best, best_iter, best_params, stall, reason = self.validation_scores_[0], 0, snapshot(params), 0, "max_iter"
        for it in range(1, p["max_iter"] + 1):
            opt.zero_grad()
            loss = objective(params)
            if not torch.isfinite(loss):
                reason = "diverged"
                break
            loss.backward()
            opt.step()
            self.loss_curve_.append(float(loss.detach()))
            current = score(params)
            self.validation_scores_.append(current)
            if not np.isfinite(current) or current > EXPLODED * self.validation_scores_[0] + 1e-12:
                reason = "diverged"
                break
            if current < best - p["tol"] * abs(best):
                best, best_iter, best_params, stall = current, it, snapshot(params), 0
            else:
                stall += 1
            if sched is not None:
                sched.step(current) if self.learning_rate_schedule == "plateau" else sched.step()
            if stall >= p["patience"]:
                reason = "converged"
                break
        self.n_iter_, self.best_iter_ = it, best_iter
        warn_training(reason, it, best_iter, self.validation_scores_, monitor is not None)
        Wq, Wk, w, *biases = best_params
        bq, bk = biases if biases else (np.zeros((H, d)), np.zeros((H, d)))
        # fold the standardization back: ((x - mu) / sd) W + b = x (W / sd) + (b - (mu / sd) W)
        self.query_maps_, self.query_bias_ = Wq / sd_x[None, :, None], bq - np.einsum("f,hfd->hd", mu_x / sd_x, Wq)
        self.key_maps_, self.key_bias_ = Wk / sd_y[None, :, None], bk - np.einsum("f,hfd->hd", mu_y / sd_y, Wk)
        self.head_weights_, self.logit_cap_ = w * z_scale, p["cap"]
        self.response_scale_ = z_scale
        self.centers_ = np.array(Yu_raw, dtype=np.float64)
        return self

    def _tensors(self):
        device, dtype = resolve_device(self.device)
        return tuple(as_device_tensor(v, device, dtype) for v in (self.query_maps_, self.key_maps_,
                                                                   self.head_weights_, self.query_bias_,
                                                                   self.key_bias_))

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
        rows = torch.arange(X.shape[0], device=device)
        with torch.no_grad():
            out = pair_response(as_device_tensor(Xx, device, dtype), as_device_tensor(Xy, device, dtype), rows,
                                 rows, *self._tensors(), cap=self.logit_cap_, head=self.head)
        return finite(out)

    def predict_grid(self, X_x, X_y):
        """The full response matrix for every pair of ``X_x`` and ``X_y``: ``kernel_(X_x, X_y)``.

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
        with torch.no_grad():
            out = self.kernel_.evaluate(as_device_tensor(X_x, device, dtype), as_device_tensor(X_y, device, dtype))
        return finite(out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a sum of H exponential heads fitted by a fixed number of Adam steps is not a universal regressor
        # on arbitrary pair rows (scikit-learn's generic regression data): no promise of R^2 > 0.5 there
        tags.regressor_tags.poor_score = True
        return tags

"""In-context linear regression (Raj & Reddy) with a Gaussian or a hierarchical (tree) prior on the task.

Each task draws a weight vector ``w``, context pairs ``(x_i, w.x_i + noise)`` and a query ``x``. Under the
Gaussian prior the Bayes-optimal prediction is ridge regression; under the tree prior (cluster center,
sub-cluster center, ..., then Gaussian jitter) it is a posterior-weighted mixture over the tree's leaves, which
ridge cannot match: this is the prior under which extra depth can help a Transformer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from ._validation import check_finite_array, check_float, check_int

__all__ = [
    "GaussianTaskPrior",
    "TreeTaskPrior",
    "make_tree_task_prior",
    "make_incontext_regression",
    "bayes_optimal_prediction",
    "ridge_prediction",
]


@dataclass(frozen=True)
class GaussianTaskPrior:
    """``w ~ N(0, scale**2 I_dim)``."""

    dim: int
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_int(self.dim, "dim", minimum=1)
        check_float(self.scale, "scale", minimum=0.0)

    def sample(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        return self.scale * rng.standard_normal((n, self.dim))

    @property
    def variance(self) -> float:
        """Per-coordinate variance of ``w``."""
        return self.scale**2


@dataclass(frozen=True)
class TreeTaskPrior:
    """``w = centers[m] + jitter * N(0, I)`` with the leaf ``m`` uniform over the tree's leaves.

    Attributes
    ----------
    centers : ndarray of shape (n_leaves, dim)
        Leaf centers of the tree (each the sum of the offsets along its root-to-leaf path).
    jitter : float
        Standard deviation of the Gaussian jitter around a leaf center.
    level_scales : tuple of float
        The offset standard deviation at each tree level (for reference).
    """

    centers: np.ndarray
    jitter: float
    level_scales: tuple = ()

    def __post_init__(self) -> None:
        check_finite_array(self.centers, "centers", ndim=2)
        check_float(self.jitter, "jitter", minimum=0.0)

    @property
    def dim(self) -> int:
        return self.centers.shape[1]

    @property
    def variance(self) -> float:
        """Per-coordinate variance of ``w`` under the prior (average over leaves and coordinates)."""
        return float(np.mean(self.centers**2) + self.jitter**2)

    def sample(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        leaf = rng.randint(len(self.centers), size=n)
        return self.centers[leaf] + self.jitter * rng.standard_normal((n, self.dim))


def make_tree_task_prior(
    dim: int, tree_depth: int = 2, branching: int = 4, jitter: float = 0.1, level_scales=None, random_state=None
) -> TreeTaskPrior:
    """Draw a tree of task centers: ``branching`` children per node, ``tree_depth`` levels below the root.

    Parameters
    ----------
    dim : int
        Dimension of the task vectors.
    tree_depth : int, default=2
        Number of levels of centers (1: clusters only; 2: clusters and sub-clusters; ...).
    branching : int, default=4
        Children per node; the tree has ``branching**tree_depth`` leaves.
    jitter : float, default=0.1
        Standard deviation of the final Gaussian jitter (>= 0).
    level_scales : sequence of float, optional
        Standard deviation of the center offsets at each level. Default: equal scales with
        ``sum(level_scales**2) + jitter**2 = 1``, so that ``E[w_i**2] = 1`` as under the unit Gaussian prior.
    random_state : int, RandomState instance or None

    Returns
    -------
    TreeTaskPrior
    """
    dim = check_int(dim, "dim", minimum=1)
    tree_depth = check_int(tree_depth, "tree_depth", minimum=1)
    branching = check_int(branching, "branching", minimum=1)
    jitter = check_float(jitter, "jitter", minimum=0.0)
    if level_scales is None:
        if jitter >= 1.0:
            raise ValueError(f"jitter must be < 1 when level_scales is not given (unit total variance), got {jitter}")
        level_scales = np.full(tree_depth, np.sqrt((1.0 - jitter**2) / tree_depth))
    level_scales = check_finite_array(level_scales, "level_scales", ndim=1)
    if level_scales.shape[0] != tree_depth:
        raise ValueError(f"level_scales must have tree_depth={tree_depth} entries, got {level_scales.shape[0]}")
    if np.any(level_scales < 0):
        raise ValueError("level_scales must be non-negative")
    if branching**tree_depth > 1_000_000:
        raise ValueError(f"branching**tree_depth = {branching**tree_depth} leaves is too many (max 1e6)")
    rng = check_random_state(random_state)
    centers = np.zeros((1, dim))
    for scale in level_scales:
        offsets = scale * rng.standard_normal((len(centers), branching, dim))
        centers = (centers[:, None, :] + offsets).reshape(-1, dim)
    return TreeTaskPrior(centers=centers, jitter=jitter, level_scales=tuple(float(s) for s in level_scales))


def make_incontext_regression(
    n_tasks: int = 1000,
    n_context: int = 20,
    dim: int = 8,
    prior="gaussian",
    noise: float = 0.25,
    random_state=None,
    **tree_kwargs,
):
    """Sample in-context regression prompts ``(x_1, y_1, .., x_n, y_n, x_query)``.

    Parameters
    ----------
    n_tasks : int, default=1000
        Number of prompts (one task vector each).
    n_context : int, default=20
        Context pairs per prompt (>= 0).
    dim : int, default=8
        Input dimension.
    prior : {"gaussian", "tree"} or GaussianTaskPrior or TreeTaskPrior, default="gaussian"
        Prior of the task vector. ``"tree"`` draws a fresh tree with :func:`make_tree_task_prior`
        (``tree_kwargs`` are passed on: ``tree_depth``, ``branching``, ``jitter``, ``level_scales``); pass the
        returned prior back in to draw a test set from the same tree.
    noise : float, default=0.25
        Standard deviation of the label noise (>= 0).
    random_state : int, RandomState instance or None

    Returns
    -------
    X : ndarray of shape (n_tasks, n_context + 1, dim)
        Inputs ``x_i ~ N(0, I)``; the last row of each prompt is the query.
    y : ndarray of shape (n_tasks, n_context + 1)
        Noisy labels ``w.x_i + noise * eps``; the last entry is the query's target.
    w : ndarray of shape (n_tasks, dim)
        The task vectors.
    prior : GaussianTaskPrior or TreeTaskPrior
        The prior, for :func:`bayes_optimal_prediction`.
    """
    n_tasks = check_int(n_tasks, "n_tasks", minimum=1)
    n_context = check_int(n_context, "n_context", minimum=0)
    dim = check_int(dim, "dim", minimum=1)
    noise = check_float(noise, "noise", minimum=0.0)
    rng = check_random_state(random_state)
    if isinstance(prior, str):
        if prior == "gaussian":
            if tree_kwargs:
                raise TypeError(f"tree options {sorted(tree_kwargs)} only apply to prior='tree'")
            prior = GaussianTaskPrior(dim)
        elif prior == "tree":
            prior = make_tree_task_prior(dim, random_state=rng, **tree_kwargs)
        else:
            raise ValueError(f"prior must be 'gaussian', 'tree' or a prior object, got {prior!r}")
    elif isinstance(prior, (GaussianTaskPrior, TreeTaskPrior)):
        if tree_kwargs:
            raise TypeError(f"tree options {sorted(tree_kwargs)} cannot be combined with a prior object")
        if prior.dim != dim:
            raise ValueError(f"prior has dim={prior.dim}, which does not match dim={dim}")
    else:
        raise TypeError(f"prior must be 'gaussian', 'tree' or a prior object, got {type(prior).__name__}")
    w = prior.sample(n_tasks, rng)
    X = rng.standard_normal((n_tasks, n_context + 1, dim))
    y = np.einsum("tnd,td->tn", X, w) + noise * rng.standard_normal((n_tasks, n_context + 1))
    return X, y, w, prior


def _check_prompts(X_context, y_context, x_query):
    X_context = np.asarray(X_context, dtype=np.float64)
    y_context = np.asarray(y_context, dtype=np.float64)
    x_query = check_finite_array(x_query, "x_query", ndim=2)
    if X_context.ndim != 3:
        raise ValueError(f"X_context must be 3-dimensional (n_tasks, n_context, dim), got shape {X_context.shape}")
    if y_context.shape != X_context.shape[:2]:
        raise ValueError(f"y_context must have shape {X_context.shape[:2]} to match X_context, got {y_context.shape}")
    if x_query.shape != (X_context.shape[0], X_context.shape[2]):
        raise ValueError(
            f"x_query must have shape {(X_context.shape[0], X_context.shape[2])} to match X_context, "
            f"got {x_query.shape}"
        )
    if not (np.all(np.isfinite(X_context)) and np.all(np.isfinite(y_context))):
        raise ValueError("X_context and y_context must not contain NaN or infinite values")
    return X_context, y_context, x_query


def ridge_prediction(X_context, y_context, x_query, alpha: float):
    """Ridge regression without intercept fitted per prompt, evaluated at its query.

    ``w_hat = (X^T X + alpha I)^{-1} X^T y``, solved as a batch of ``dim x dim`` systems.

    Parameters
    ----------
    X_context : array-like of shape (n_tasks, n_context, dim)
    y_context : array-like of shape (n_tasks, n_context)
    x_query : array-like of shape (n_tasks, dim)
    alpha : float
        Ridge penalty (> 0).

    Returns
    -------
    ndarray of shape (n_tasks,)
    """
    X_context, y_context, x_query = _check_prompts(X_context, y_context, x_query)
    alpha = check_float(alpha, "alpha", minimum=0.0, min_inclusive=False)
    dim = X_context.shape[2]
    gram = np.einsum("tni,tnj->tij", X_context, X_context) + alpha * np.eye(dim)
    rhs = np.einsum("tni,tn->ti", X_context, y_context)
    w_hat = np.linalg.solve(gram, rhs[..., None])[..., 0]
    return np.einsum("ti,ti->t", w_hat, x_query)


def bayes_optimal_prediction(X_context, y_context, x_query, prior, noise: float):
    """Posterior-mean prediction ``E[w.x_query | context]``: the minimum-MSE predictor of the query's target.

    Parameters
    ----------
    X_context : array-like of shape (n_tasks, n_context, dim)
        Context inputs (``n_context`` may be 0: the prediction is then the prior mean).
    y_context : array-like of shape (n_tasks, n_context)
        Context labels.
    x_query : array-like of shape (n_tasks, dim)
        Query inputs.
    prior : GaussianTaskPrior or TreeTaskPrior
        The prior of the task vectors (as returned by :func:`make_incontext_regression`).
    noise : float
        Label-noise standard deviation (> 0; with noise-free labels the posterior can be degenerate).

    Returns
    -------
    ndarray of shape (n_tasks,)

    Notes
    -----
    Gaussian prior: ridge with ``alpha = noise**2 / scale**2``. Tree prior: a mixture of Gaussians
    ``N(c_m, s**2 I)``; the posterior weight of leaf ``m`` is proportional to
    ``N(y; X c_m, s**2 X X^T + noise**2 I)`` and its posterior mean is
    ``c_m + s**2 X^T (s**2 X X^T + noise**2 I)^{-1} (y - X c_m)``.
    """
    X_context, y_context, x_query = _check_prompts(X_context, y_context, x_query)
    noise = check_float(noise, "noise", minimum=0.0, min_inclusive=False)
    if isinstance(prior, GaussianTaskPrior):
        if prior.dim != X_context.shape[2]:
            raise ValueError(f"prior has dim={prior.dim}, which does not match X_context's dim={X_context.shape[2]}")
        if X_context.shape[1] == 0:
            return np.zeros(len(x_query))
        if prior.scale == 0.0:
            return np.zeros(len(x_query))
        with np.errstate(over="ignore"):
            alpha = float(np.float64(noise / prior.scale) ** 2)
        if alpha == 0.0:
            raise ValueError(f"noise={noise!r} is too small: noise**2 / scale**2 underflows to 0 in float64 "
                             f"(prior scale {prior.scale}); use noise >= 1e-150 * scale")
        if not np.isfinite(alpha):  # a prior this narrow pins w to 0
            return np.zeros(len(x_query))
        return ridge_prediction(X_context, y_context, x_query, alpha=alpha)
    if not isinstance(prior, TreeTaskPrior):
        raise TypeError(f"prior must be a GaussianTaskPrior or TreeTaskPrior, got {type(prior).__name__}")
    if prior.dim != X_context.shape[2]:
        raise ValueError(f"prior has dim={prior.dim}, which does not match X_context's dim={X_context.shape[2]}")
    n_ctx = X_context.shape[1]
    centers = prior.centers
    if n_ctx == 0:
        return x_query @ centers.mean(axis=0)
    cov = prior.jitter**2 * np.einsum("tni,tmi->tnm", X_context, X_context) + noise**2 * np.eye(n_ctx)
    resid = y_context[:, :, None] - np.einsum("tni,mi->tnm", X_context, centers)  # (T, n, M)
    try:
        solved = np.linalg.solve(cov, resid)  # cov^{-1} (y - X c_m)
    except np.linalg.LinAlgError:
        solved = None
    if solved is None or not np.all(np.isfinite(solved)):
        raise ValueError(
            f"noise={noise!r} is too small for this prompt: the context covariance jitter**2 X X^T + noise**2 I "
            f"(jitter={prior.jitter}, {n_ctx} context pairs in dimension {X_context.shape[2]}) is singular in "
            "float64; use a larger noise") from None
    log_w = -0.5 * np.einsum("tnm,tnm->tm", resid, solved)
    log_w -= log_w.max(axis=1, keepdims=True)
    weights = np.exp(log_w)
    weights /= weights.sum(axis=1, keepdims=True)
    # x_q . posterior mean of leaf m = x_q . c_m + s^2 (X x_q) . cov^{-1} (y - X c_m)
    x_proj = np.einsum("tni,ti->tn", X_context, x_query)
    per_leaf = x_query @ centers.T + prior.jitter**2 * np.einsum("tn,tnm->tm", x_proj, solved)
    return np.sum(weights * per_leaf, axis=1)

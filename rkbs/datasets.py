"""Pairwise data sets: a generator with a known asymmetric ground truth, and the nuclear-receptor data.

- :func:`make_pairwise_regression`: features on both sides, z(x, y) = f(x) + g(y) + q(x, y) + noise with
  per-row and per-column effects f, g and an asymmetric, non-separable interaction q.
- :func:`load_nuclear_receptor`: 54 drugs x 26 targets with drug-drug and target-target similarity matrices and
  the standard folds (Yamanishi et al., Bioinformatics 24(13), 2008; the files of RLScore, MIT licence).
"""

from __future__ import annotations

import json
import math
import numbers
from importlib import resources

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_pairwise_regression", "load_nuclear_receptor"]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name: str, value, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite real >= {minimum}, got {value!r}")
    return float(value)


def make_pairwise_regression(n_rows: int = 100, n_columns: int = 80, n_features_x: int = 6, n_features_y: int = 4,
                             *, rank: int = 2, row_effect: float = 1.0, column_effect: float = 1.0,
                             interaction: float = 1.0, noise: float = 0.1, observed_fraction: float = 1.0,
                             random_state=None) -> Bunch:
    """Pairwise regression data with features on both sides and a known ground truth.

    Rows are points x ~ N(0, I) in R^{n_features_x}, columns points y ~ N(0, I) in R^{n_features_y}, and

        z(x, y) = row_effect f(x) + column_effect g(y) + interaction q(x, y) + noise e,

    with f(x) = tanh(<u, x>), g(y) = tanh(<v, y>), and the interaction
    q(x, y) = exp(<x A, y B> / sqrt(rank)) - 1 for random A (n_features_x, rank), B (n_features_y, rank) scaled to
    logits of unit variance: asymmetric (the two sides have different maps, even different dimensions) and not
    separable (no sum of a few products a(x) b(y)). Each of f, g, q is scaled to unit standard deviation over the
    grid, so the three coefficients are their standard deviations; e ~ N(0, 1).

    Parameters
    ----------
    n_rows, n_columns : int, default=100, 80
    n_features_x, n_features_y : int, default=6, 4
    rank : int, default=2
        Dimension of the interaction's query and key maps.
    row_effect, column_effect, interaction, noise : float, default=1, 1, 1, 0.1
        Standard deviations of the four terms (>= 0).
    observed_fraction : float, default=1.0
        Fraction of the pairs that are observed (in (0, 1]); the others are NaN in ``Z``.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    Bunch with
        X_x : ndarray of shape (n_rows, n_features_x)
        X_y : ndarray of shape (n_columns, n_features_y)
        Z : ndarray of shape (n_rows, n_columns), NaN where not observed
        truth : ndarray of shape (n_rows, n_columns), the noiseless response on every pair
        truth_function : callable (X_x, X_y) -> ndarray, the noiseless response for any points

    Examples
    --------
    >>> import numpy as np
    >>> from rkbs.datasets import make_pairwise_regression
    >>> data = make_pairwise_regression(30, 20, observed_fraction=0.5, random_state=0)
    >>> data.Z.shape, bool(abs(data.Z[~np.isnan(data.Z)].size - 300) < 40)
    ((30, 20), True)
    """
    n_rows, n_columns = _check_int("n_rows", n_rows, 1), _check_int("n_columns", n_columns, 1)
    dx, dy = _check_int("n_features_x", n_features_x, 1), _check_int("n_features_y", n_features_y, 1)
    rank = _check_int("rank", rank, 1)
    coefs = [_check_real(name, value) for name, value in (("row_effect", row_effect),
                                                           ("column_effect", column_effect),
                                                           ("interaction", interaction))]
    noise = _check_real("noise", noise)
    observed_fraction = _check_real("observed_fraction", observed_fraction)
    if not 0 < observed_fraction <= 1:
        raise ValueError(f"observed_fraction must be in (0, 1], got {observed_fraction!r}")
    rng = check_random_state(random_state)
    u, v = rng.normal(size=dx) / math.sqrt(dx), rng.normal(size=dy) / math.sqrt(dy)
    A, B = rng.normal(size=(dx, rank)) / math.sqrt(dx), rng.normal(size=(dy, rank)) / math.sqrt(dy)
    # scale each term to unit standard deviation under the input distribution, estimated on a fixed sample
    ref = np.random.default_rng(12345)
    Rx, Ry = ref.normal(size=(400, dx)), ref.normal(size=(400, dy))
    raw = [np.tanh(Rx @ u), np.tanh(Ry @ v), np.exp((Rx @ A) @ (Ry @ B).T / math.sqrt(rank)) - 1.0]
    scales = [c / max(float(np.std(t)), 1e-12) for c, t in zip(coefs, raw)]
    centers = [float(np.mean(t)) for t in raw]

    def truth_function(X_x, X_y):
        X_x, X_y = np.asarray(X_x, dtype=np.float64), np.asarray(X_y, dtype=np.float64)
        f = scales[0] * (np.tanh(X_x @ u) - centers[0])
        g = scales[1] * (np.tanh(X_y @ v) - centers[1])
        q = scales[2] * (np.exp((X_x @ A) @ (X_y @ B).T / math.sqrt(rank)) - 1.0 - centers[2])
        return f[:, None] + g[None, :] + q

    X_x, X_y = rng.normal(size=(n_rows, dx)), rng.normal(size=(n_columns, dy))
    truth = truth_function(X_x, X_y)
    Z = truth + noise * rng.normal(size=truth.shape)
    if observed_fraction < 1:
        Z[rng.random_sample(Z.shape) >= observed_fraction] = np.nan
    return Bunch(X_x=X_x, X_y=X_y, Z=Z, truth=truth, truth_function=truth_function)


def load_nuclear_receptor() -> Bunch:
    """The nuclear-receptor drug-target interaction data (54 drugs x 26 targets).

    Returns
    -------
    Bunch with
        Y : ndarray of shape (54, 26), 1 for a known interaction (90 ones), else 0
        drug_similarity : ndarray of shape (54, 54), chemical structure similarity (SIMCOMP); NOT exactly
            symmetric (max asymmetry 0.075)
        target_similarity : ndarray of shape (26, 26), normalized Smith-Waterman sequence similarity, symmetric
            positive definite
        drug_folds, target_folds : list of 3 ndarrays of indices, the standard folds of the "new drugs",
            "new targets" and "both new" settings

    Examples
    --------
    >>> from rkbs.datasets import load_nuclear_receptor
    >>> nr = load_nuclear_receptor()
    >>> nr.Y.shape, int(nr.Y.sum())
    ((54, 26), 90)
    """
    root = resources.files("rkbs") / "data" / "drug_target_nr"
    with resources.as_file(root) as path:
        Y = np.loadtxt(path / "nr_admat_dgc.txt")
        drugs = np.loadtxt(path / "nr_simmat_dc.txt")
        targets = np.loadtxt(path / "nr_simmat_dg.txt")
        folds = json.loads((path / "folds.json").read_text())
    return Bunch(Y=Y, drug_similarity=drugs, target_similarity=targets,
                 drug_folds=[np.asarray(f) for f in folds[0]], target_folds=[np.asarray(f) for f in folds[1]])

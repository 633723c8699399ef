"""Feature-map kernels: kappa(q, k) = <phi_x(q), phi_y(k)> with a finite map, exactly.

Some are kernels in their own right (elu+1, relu); the others approximate an infinite-dimensional kernel
(``target``) with a knob that trades feature dimension for accuracy: the Taylor degree of EDP, or the number of
random features. ``evaluate`` is always the inner product of the features, so a linear-time attention that uses
the features computes the same function as the quadratic form.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state

from ._base import Kernel
from ._monomials import monomial_features, n_monomials_up_to
from ._validation import check_int, check_positive, default_gamma, default_scale

__all__ = [
    "EluFeatures",
    "ReluFeatures",
    "TaylorEDP",
    "PositiveRandomFeatures",
    "RandomFourierFeatures",
]


class _FeatureMapKernel(Kernel):
    family = "feature_map"
    has_features = True
    positive_definite = True  # same map on both sides
    target: str | None = None  # the kernel this map approximates, if any

    def evaluate(self, x, y):
        return self.feature_map_x(x) @ self.feature_map_y(y).transpose(-1, -2)

    def feature_map_y(self, y):
        return self.feature_map_x(y)


class EluFeatures(_FeatureMapKernel):
    """``<elu(q) + 1, elu(k) + 1>``: the map of Katharopoulos et al.'s linear Transformer. Positive-valued."""

    name = "elu"
    formula = "<elu(q) + 1, elu(k) + 1>"
    positive_valued = True

    def __init__(self):
        pass

    def feature_dim(self, d: int) -> int:
        return d

    def feature_map_x(self, x):
        return F.elu(x) + 1.0


class ReluFeatures(_FeatureMapKernel):
    """``<relu(q), relu(k)>``. Non-negative, but a row can sum to zero when no feature is shared."""

    name = "relu"
    formula = "<relu(q), relu(k)>"
    positive_valued = True

    def __init__(self):
        pass

    def feature_dim(self, d: int) -> int:
        return d

    def feature_map_x(self, x):
        return F.relu(x)


class TaylorEDP(_FeatureMapKernel):
    """EDP truncated to its Taylor polynomial: ``sum_{t <= T} (s q.k)^t / t!``, with ``C(d + T, T)`` features.

    Converges to ``exp(s q.k)`` as ``degree`` grows; for even ``degree`` it is positive everywhere.

    Parameters
    ----------
    degree : int, default=2
        The truncation degree T.
    scale : float, default=None
        ``None`` means ``1 / sqrt(d)``.
    """

    name = "taylor_edp"
    formula = "sum_{t<=T} (s q.k)^t / t!"
    depends_on = "dot"
    target = "edp"

    def __init__(self, degree: int = 2, scale: float | None = None):
        self.degree = degree
        self.scale = scale
        check_int("degree", degree, 0)
        check_positive("scale", scale)

    exact_features = True  # exact for the truncated kernel itself

    @property
    def positive_valued(self) -> bool:
        return check_int("degree", self.degree, 0) % 2 == 0

    def feature_dim(self, d: int) -> int:
        return n_monomials_up_to(d, check_int("degree", self.degree, 0))

    def resolved_params(self, d: int) -> dict[str, Any]:
        scale = check_positive("scale", self.scale)
        return {
            "degree": check_int("degree", self.degree, 0),
            "scale": default_scale(scale, d),
        }

    def evaluate(self, x, y):
        p = self.resolved_params(x.shape[-1])
        z = p["scale"] * (x @ y.transpose(-1, -2))
        total, term = torch.ones_like(z), torch.ones_like(z)
        for t in range(1, p["degree"] + 1):
            term = term * z / t
            total = total + term
        return total

    def feature_map_x(self, x):
        p = self.resolved_params(x.shape[-1])
        return torch.cat(
            [
                math.sqrt(p["scale"] ** t / math.factorial(t)) * monomial_features(x, t)
                for t in range(p["degree"] + 1)
            ],
            dim=-1,
        )


# Guards the lazy draw cache: two threads sharing a kernel must not draw twice (with random_state=None they
# would get different features and one could pair its query features with the other's key features).
# One module-level lock, not one per kernel: kernels are cloned, pickled and deep-copied as parameters.
_DRAW_LOCK = threading.Lock()


class _RandomFeatureKernel(_FeatureMapKernel):
    """Random features drawn once per input dimension from ``random_state`` and reused on both sides.

    The draw is made on first use, under a lock, so every thread sharing the kernel sees the same features.
    """

    exact_features = False

    def _draw(self, d: int, rng: np.random.RandomState) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def _params(self, d: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
        check_int("n_features", self.n_features, 1)
        key = (d, self.n_features)
        with _DRAW_LOCK:
            cache = self.__dict__.setdefault("_draws", {})
            if key not in cache:
                cache[key] = self._draw(d, check_random_state(self.random_state))
            draw = cache[key]
        return tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in draw)

    def set_params(self, **params):
        with _DRAW_LOCK:
            self.__dict__.pop("_draws", None)  # new parameters, new draw
        return super().set_params(**params)

    def feature_dim(self, d: int) -> int:
        return check_int("n_features", self.n_features, 1)


class PositiveRandomFeatures(_RandomFeatureKernel):
    """Positive random features for EDP (FAVOR+): ``phi(x) = exp(w^T x' - |x'|^2 / 2) / sqrt(m)``, ``x' = sqrt(s) x``.

    An unbiased estimate of ``exp(s q.k)`` with positive features, so normalized attention stays well defined.
    With ``orthogonal=True`` the directions are drawn in orthogonal blocks (lower variance).

    Parameters
    ----------
    n_features : int, default=128
    scale : float, default=None
        ``None`` means ``1 / sqrt(d)``.
    orthogonal : bool, default=True
    random_state : int, RandomState instance or None, default=None
    """

    name = "positive_random_features"
    formula = "<exp(W q' - |q'|^2/2), exp(W k' - |k'|^2/2)> / m"
    target = "edp"
    positive_valued = True

    def __init__(self, n_features: int = 128, scale: float | None = None, orthogonal: bool = True,
                 random_state=None):
        self.n_features = n_features
        self.scale = scale
        self.orthogonal = orthogonal
        self.random_state = random_state
        check_int("n_features", n_features, 1)
        check_positive("scale", scale)

    def _draw(self, d, rng):
        m = self.n_features
        if not self.orthogonal:
            return (rng.standard_normal((d, m)),)
        blocks = []
        for start in range(0, m, d):
            q, r = np.linalg.qr(rng.standard_normal((d, d)))
            q = q * np.sign(np.diag(r))[None, :]  # without this sign fix Q is not Haar-distributed (biased)
            # rows of q have norm 1; rescale to chi-distributed norms so each column is marginally N(0, I)
            norms = np.sqrt(rng.chisquare(d, size=d))
            blocks.append(q * norms[None, :])
        return (np.concatenate(blocks, axis=1)[:, :m],)

    def resolved_params(self, d: int) -> dict[str, Any]:
        scale = check_positive("scale", self.scale)
        return {"scale": default_scale(scale, d), "n_features": self.n_features}

    def feature_map_x(self, x):
        d = x.shape[-1]
        (w,) = self._params(d, x.dtype, x.device)
        xs = math.sqrt(self.resolved_params(d)["scale"]) * x
        log_phi = xs @ w - 0.5 * (xs * xs).sum(-1, keepdim=True)
        return torch.exp(log_phi) / math.sqrt(self.n_features)


class RandomFourierFeatures(_RandomFeatureKernel):
    """Random Fourier features for RBF (Rahimi & Recht): ``phi(x) = sqrt(2 / m) cos(x W + b)``.

    ``W ~ N(0, 2 gamma I)``, ``b ~ U(0, 2 pi)``; an unbiased estimate of ``exp(-gamma |q - k|^2)`` that can be
    negative, so it is not for normalized attention.

    Parameters
    ----------
    n_features : int, default=128
    gamma : float, default=None
        ``None`` means ``1 / (2 sqrt(d))``.
    random_state : int, RandomState instance or None, default=None
    """

    name = "random_fourier_features"
    formula = "<sqrt(2/m) cos(W q + b), sqrt(2/m) cos(W k + b)>"
    target = "rbf"
    positive_valued = False

    def __init__(self, n_features: int = 128, gamma: float | None = None, random_state=None):
        self.n_features = n_features
        self.gamma = gamma
        self.random_state = random_state
        check_int("n_features", n_features, 1)
        check_positive("gamma", gamma)

    def _draw(self, d, rng):
        m = self.n_features
        return rng.standard_normal((d, m)), rng.uniform(0.0, 2.0 * np.pi, size=m)

    def resolved_params(self, d: int) -> dict[str, Any]:
        gamma = check_positive("gamma", self.gamma)
        return {"gamma": default_gamma(gamma, d), "n_features": self.n_features}

    def feature_map_x(self, x):
        d = x.shape[-1]
        z, b = self._params(d, x.dtype, x.device)
        w = math.sqrt(2.0 * self.resolved_params(d)["gamma"]) * z
        return math.sqrt(2.0 / self.n_features) * torch.cos(x @ w + b)
